"""The `kubesim` command line. Rich output on a terminal, plain text otherwise, --json for scripts.

Exit codes: 0 done; 1 failed (the message says why and what to do); 2 bad input (a topology file or
an option), with nothing made.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.status import Status
from rich.table import Table

from control.api.duration import parse_duration
from control.client import KubeClientError, NotFound
from kubesim import cluster, components
from kubesim.errors import (
    ComponentError,
    KubesimError,
    PolicyQueryError,
    PortForwardInputError,
    PortForwardTargetError,
    StateError,
    StateInputError,
)
from kubesim.podexec import run_in_pod
from kubesim.portforward import run_port_forward
from kubesim.state import ClusterState, known_clusters, state_root
from netsim import namespaces
from netsim.errors import FaultInputError, NetsimError, TopologyError
from netsim.topology import cluster_name_problem, load_topology

DEFAULT_TOPOLOGY = cluster.DEFAULT_TOPOLOGY

# Off a terminal rich would wrap tables at 80 columns; logs and pipes want whole lines.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}" if err.is_terminal else f"error: {message}", markup=err.is_terminal,
              soft_wrap=True)
    sys.exit(code)


def _exit_code(exc: Exception) -> int:
    """2 for bad input (nothing was touched), 1 for everything else."""
    return 2 if isinstance(exc, (StateInputError, TopologyError, FaultInputError)) else 1


def _need_root(command: str) -> None:
    if os.geteuid() != 0:
        _fail(f"`kubesim {command}` makes network namespaces and needs root; run it with sudo")


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


class _Interrupted(BaseException):
    pass


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A timing flag the controller-manager receives as written: a non-negative Go duration."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise click.BadParameter(f"{value!r} is not a duration; write it like 40s, 1m30s or 500ms")
    return value


_USER_NAME = re.compile(r"[a-z0-9]([a-z0-9._@-]*[a-z0-9])?")


def parse_users(ctx: click.Context | None, param: click.Parameter | None, values: tuple[str, ...]
                ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """--user NAME[:GROUP,GROUP...]: a user with a token and kubeconfig of its own and no power until RBAC
    objects bind it. NAME is lower case (it names a file); system: names belong to the cluster's components."""
    users: list[tuple[str, tuple[str, ...]]] = []
    for value in values:
        name, _, groups_text = value.partition(":")
        groups = tuple(g for g in groups_text.split(",") if g)
        if not _USER_NAME.fullmatch(name) or len(name) > 63:
            raise click.BadParameter(f"{value!r}: the user name must be lower-case letters, digits, '.', '_', '@' "
                                     "or '-' (at most 63), optionally followed by :GROUP,GROUP; e.g. alice:devs")
        if any(g.startswith("system:") for g in groups):
            raise click.BadParameter(f"{value!r}: system: groups belong to the cluster's own identities; grant "
                                     "the user a role with a RoleBinding instead")
        if name in {u for u, _ in users}:
            raise click.BadParameter(f"{value!r}: user {name!r} is given twice")
        users.append((name, groups))
    return tuple(users)


def _cluster_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--name of every command: a DNS-1123 label, never a path (it names a directory in the state root)."""
    if value is None:
        return None
    problem = cluster_name_problem(value)
    if problem:
        raise click.BadParameter(f"{problem}; a cluster name is never a path")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kubesim", prog_name="kubesim", message="%(prog)s %(version)s")
def main() -> None:
    """kubesim: a Kubernetes-shaped cluster made of real Linux network namespaces."""
    try:
        state_root()  # a bad KUBESIM_STATE_DIR is bad input: refuse it before any command touches it
    except StateInputError as exc:
        _fail(str(exc), code=2)


@main.command()
@click.argument("topology", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", callback=_cluster_name, help="Cluster name (overrides the topology's `name`).")
@click.option("--store", default="sqlite", show_default=True,
              help="sqlite (a file in the state directory), etcd (etcd-server in the control-plane node) or "
                   "etcd=URL (an existing etcd).")
@click.option("--proxy-mode", type=click.Choice(["nftables", "iptables"]),
              help="kube-proxy's mode (overrides the topology's proxy.mode).")
@click.option("--node-grace-period", default="40s", show_default=True, callback=_duration,
              help="How long a silent node stays Ready before it is marked Unknown (node lifecycle).")
@click.option("--eviction-timeout", default="60s", show_default=True, callback=_duration,
              help="How long pods stay on an unreachable node before they are evicted.")
@click.option("--network-only", is_flag=True, help="Build the network but start no control plane.")
@click.option("--user", "users", multiple=True, callback=parse_users, metavar="NAME[:GROUPS]",
              help="Also issue a token and kubeconfig for user NAME (in the comma-separated GROUPS), with no "
                   "permissions until RBAC binds them; `kubesim kubeconfig --user NAME` prints its path.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def up(topology: Path | None, name: str | None, store: str, proxy_mode: str | None, node_grace_period: str,
       eviction_timeout: str, network_only: bool, users: tuple[tuple[str, tuple[str, ...]], ...],
       as_json: bool) -> None:
    """Build the cluster described by TOPOLOGY (default: topologies/two-node.yaml).

    Waits until it is ready and prints a summary. On any failure everything made is removed and the
    exit code is non-zero."""
    try:
        topo = load_topology(topology or DEFAULT_TOPOLOGY)
        if name:
            topo = topo.with_name(name)
        if proxy_mode:
            topo = dataclasses.replace(topo, proxy_mode=proxy_mode)
    except TopologyError as exc:
        _fail(str(exc), code=2)
    _need_root("up")
    # SIGTERM and SIGHUP roll back like Ctrl-C does; SIGKILL can't be caught, and `down` handles that.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    with _progress() as progress:
        try:
            result = cluster.up(topo, progress=progress, store=store, control_plane=not network_only,
                                timings={"node_grace_period": node_grace_period,
                                         "eviction_timeout": eviction_timeout}, users=users)
        except (KubesimError, NetsimError) as exc:
            _fail(f"{exc}\nnothing of cluster {topo.name!r} was left behind")
        except (KeyboardInterrupt, _Interrupted):
            _fail(f"interrupted; nothing of cluster {topo.name!r} was left behind", code=130)
    info = cluster.status(result.topology.name)
    if as_json:
        _print_json(info)
    else:
        _print_summary(info)


class _progress:
    """A spinner on a terminal, plain lines otherwise."""

    def __enter__(self) -> cluster.Progress:
        self._status: Status | None = None
        if not err.is_terminal:
            return lambda message: err.print(f"kubesim: {message}", markup=False)
        status = self._status = err.status("starting")
        status.__enter__()
        return lambda message: status.update(message)

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)


def _print_summary(info: dict[str, Any]) -> None:
    out.print(f"cluster [bold]{info['name']}[/] is up ({info['mode']}, proxy mode {info['proxyMode']})")
    _print_tables(info)
    first_two = [n for n in info["nodes"] if n["role"] == "worker"][:2] or info["nodes"]
    if len(first_two) > 1:
        out.print(f"\ntry: kubesim exec {first_two[0]['name']} -- ping -c1 {first_two[1]['address']}")
    named = "" if info["name"] == "kubesim" else f" --name {info['name']}"
    out.print(f"     kubesim kubectl{named} get nodes,svc -A")
    out.print(f"     kubesim status{named}")
    out.print(f"     kubesim down{named}")


def _print_tables(info: dict[str, Any]) -> None:
    nodes = Table("NODE", "ROLE", "ADDRESS", "POD CIDR", "NAMESPACE", "PRESENT", box=None, pad_edge=False)
    for n in info["nodes"]:
        nodes.add_row(n["name"], n["role"], n["address"], n["podCIDR"], n["namespace"], _yes(n["present"]))
    out.print(nodes)
    if info["externalHosts"]:
        hosts = Table("EXTERNAL HOST", "ADDRESS", "NAMESPACE", "PRESENT", box=None, pad_edge=False)
        for h in info["externalHosts"]:
            hosts.add_row(h["name"], h["address"], h["namespace"], _yes(h["present"]))
        out.print(hosts)
    if info["processes"]:
        procs = Table("COMPONENT", "PID", "ALIVE", box=None, pad_edge=False)
        for p in info["processes"]:
            procs.add_row(p["role"], str(p["pid"]), _yes(p["alive"]))
        out.print(procs)


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


@main.command(name="port-forward")
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("-n", "--namespace", default="default", show_default=True, help="The target's namespace.")
@click.argument("target")
@click.argument("ports", nargs=-1, required=True)
def port_forward(name: str | None, namespace: str, target: str, ports: tuple[str, ...]) -> None:
    """Forward local ports on 127.0.0.1 to a pod's ports through the API, as kubectl port-forward does:
    TARGET is POD, svc/NAME or deploy/NAME; each port is [LOCAL:]REMOTE (kubesim port-forward svc/web 8080:80).
    Ctrl-C stops it."""
    cluster_name = cluster.resolve_name(name)
    try:
        info = cluster.status(cluster_name)
    except StateError as exc:
        _fail(str(exc), code=_exit_code(exc))
    if not Path(info["kubeconfig"]).is_file():
        _fail(f"cluster {cluster_name!r} runs no control plane (up --network-only), so it has no pods")

    def say(line: str) -> None:
        click.echo(line)

    def warn(line: str) -> None:
        click.echo(line, err=True)

    try:
        run_port_forward(Path(info["kubeconfig"]), namespace, target, list(ports), say=say, warn=warn)
    except PortForwardInputError as exc:
        _fail(str(exc), code=2)
    except PortForwardTargetError as exc:
        _fail(str(exc))
    except KubeClientError as exc:
        _fail(f"port-forward to {namespace}/{target}: {exc}")


@main.command()
@click.option("--name", callback=_cluster_name,
              help="The cluster to remove (default: the only one there is, else 'kubesim').")
@click.option("--all", "everything", is_flag=True, help="Remove every kubesim cluster on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed, per cluster, as JSON.")
def down(name: str | None, everything: bool, as_json: bool) -> None:
    """Remove exactly what a cluster made. Safe to repeat; works after a crash."""
    _need_root("down")
    report = []
    try:
        targets = known_clusters() if everything else [cluster.resolve_name(name)]
        for target in targets:
            removed = cluster.down(target)
            report.append({"name": target, "removed": removed})
            if not as_json:
                click.echo(f"cluster {target!r}: removed {len(removed)} object(s)" if removed
                           else f"cluster {target!r}: nothing to remove")
    except (StateError, NetsimError) as exc:
        _fail(str(exc), code=_exit_code(exc))
    if as_json:
        _print_json(report)


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(name: str | None, as_json: bool) -> None:
    """Show a cluster's nodes, external hosts, namespaces and component processes."""
    try:
        info = cluster.status(cluster.resolve_name(name))
    except (StateError, NetsimError) as exc:
        _fail(str(exc), code=_exit_code(exc))
    if as_json:
        _print_json(info)
        return
    out.print(f"cluster [bold]{info['name']}[/]: {info['phase']} ({info['mode']}, proxy mode {info['proxyMode']}); "
              f"state in {info['stateDir']}")
    _print_tables(info)
    if info["faults"]:
        out.print(f"faults in force: {len(info['faults'])} (kubesim fault list)")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("-n", "--namespace", help="The pod's namespace (default: default); TARGET is then a pod.")
@click.option("-c", "--container", help="The pod's container (default: its only one).")
@click.option("-i", "--stdin", "interactive", is_flag=True, help="Pass stdin to the pod's command.")
@click.option("-t", "--tty", is_flag=True, help="Give the pod's command a terminal.")
@click.argument("target")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec(name: str | None, namespace: str | None, container: str | None, interactive: bool, tty: bool, target: str,
         command: tuple[str, ...]) -> None:
    """Run COMMAND inside node or external host TARGET, or in pod TARGET (POD or NAMESPACE/POD) through the
    API as kubectl exec does: kubesim exec worker-1 -- ping -c1 172.18.0.4; kubesim exec web -it -- sh"""
    cluster_name = cluster.resolve_name(name)
    pod_options = namespace is not None or container is not None or interactive or tty or "/" in target
    if not pod_options:
        if not ClusterState(cluster_name, state_root()).exists:
            _fail(f"cluster {cluster_name!r} does not exist; bring it up with `kubesim up`")
        try:
            ns = cluster.target_namespace(cluster_name, target)
        except StateError as exc:
            not_a_member = str(exc)  # then it may be a pod
        else:
            _need_root("exec")
            try:
                os.execvp("ip", ["ip", "netns", "exec", ns, *command])
            except OSError as exc:
                _fail(f"cannot run `ip netns exec`: {exc.strerror}")
    else:
        not_a_member = ""
    _exec_in_pod(cluster_name, namespace, target, container, list(command), interactive, tty, not_a_member)


def _exec_in_pod(cluster_name: str, namespace: str | None, target: str, container: str | None, command: list[str],
                 interactive: bool, tty: bool, not_a_member: str) -> NoReturn:
    """NOT_A_MEMBER: why TARGET is not a node or external host, when it was looked for as one too."""
    if "/" in target:
        if namespace is not None:
            _fail(f"{target!r} names its namespace already: drop -n {namespace}, or give the pod's name alone")
        namespace, _, target = target.partition("/")
    try:
        info = cluster.status(cluster_name)
    except StateError as exc:
        _fail(str(exc), code=_exit_code(exc))
    if not Path(info["kubeconfig"]).is_file():  # a --network-only cluster: no API, so no pods
        why = f"{not_a_member}; " if not_a_member else ""
        _fail(f"{why}cluster {cluster_name!r} runs no control plane (up --network-only), so it has no pods")
    try:
        code = run_in_pod(Path(info["kubeconfig"]), namespace or "default", target, command, container=container,
                          stdin=interactive, tty=tty)
    except NotFound as exc:
        _fail(f"{not_a_member}; nor is it a pod: {exc}" if not_a_member else str(exc))
    except KubeClientError as exc:
        where = f"{namespace or 'default'}/{target}"
        _fail(f"exec in pod {where}: {exc}" if str(exc) else f"exec in pod {where} failed")
    sys.exit(code)


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--user", help="A user `up --user` made: print its kubeconfig's path instead of the admin's.")
@click.option("--json", "as_json", is_flag=True, help="Print the cluster's name and kubeconfig path as JSON.")
def kubeconfig(name: str | None, user: str | None, as_json: bool) -> None:
    """Print the path of the cluster's admin kubeconfig (export KUBECONFIG=$(kubesim kubeconfig))."""
    try:
        info = cluster.status(cluster.resolve_name(name))
    except StateError as exc:
        _fail(str(exc), code=_exit_code(exc))
    if user is not None:
        path = Path(info["kubeconfig"]).parent / "kubeconfigs" / f"user-{user}.kubeconfig"
        if "/" in user or not path.is_file():
            _fail(f"cluster {info['name']!r} has no user {user!r}: give it with `kubesim up --user {user}`", code=2)
        info = {**info, "kubeconfig": str(path)}
    if as_json:
        _print_json({"name": info["name"], "kubeconfig": info["kubeconfig"]})
    else:
        click.echo(info["kubeconfig"])


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(name: str | None, args: tuple[str, ...]) -> None:
    """Run kubectl against the cluster: kubesim kubectl get pods -A"""
    try:
        info = cluster.status(cluster.resolve_name(name))
    except StateError as exc:
        _fail(str(exc), code=_exit_code(exc))
    os.environ["KUBECONFIG"] = info["kubeconfig"]
    try:
        os.execvp("kubectl", ["kubectl", *args])
    except OSError as exc:
        _fail(f"cannot run kubectl: {exc.strerror}; install kubectl or use KUBECONFIG={info['kubeconfig']}")


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("-f", "--filename", "files", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print what was done to each object as JSON.")
def apply(name: str | None, files: tuple[str, ...], as_json: bool) -> None:
    """Create or replace the objects of manifest files (for machines without kubectl)."""
    try:
        done = components.apply_manifests(_component_state(name), [Path(f) for f in files])
    except (ComponentError, OSError) as exc:
        _fail(str(exc), code=_exit_code(exc))
    except Exception as exc:  # the API's answer (an invalid object, say): say it, don't crash
        _fail(f"{type(exc).__name__}: {exc}")
    if as_json:
        # Each line is "kind/name created|configured" (components.apply_documents).
        _print_json([dict(zip(("object", "result"), line.rsplit(" ", 1), strict=True)) for line in done])
        return
    for line in done:
        click.echo(line)


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("-n", "--lines", default=50, show_default=True, help="How many of the last lines to print.")
@click.argument("component")
def logs(name: str | None, lines: int, component: str) -> None:
    """Print the end of a component's log (apiserver, etcd, kubelet-NODE, ...)."""
    state = _component_state(name)
    roles = sorted(p.role for p in state.processes())
    if component not in roles:
        _fail(f"no component {component!r} in cluster {state.name!r}; there are: {', '.join(roles) or 'none'}")
    click.echo(components.log_tail(state, component, lines))


def _component_state(name: str | None) -> ClusterState:
    try:
        state = ClusterState(cluster.resolve_name(name))
        if not state.exists:
            raise StateError(f"cluster {state.name!r} does not exist")
    except StateError as exc:
        _fail(str(exc), code=_exit_code(exc))
    return state


@main.command(name="add-scheduler")
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--profile", type=click.Choice(["default", "most-allocated"]), default="most-allocated",
              show_default=True, help="Scoring: spread (default) or bin-pack (most-allocated).")
@click.option("--json", "as_json", is_flag=True, help="Print the started component as JSON.")
@click.argument("scheduler_name")
def add_scheduler(name: str | None, profile: str, as_json: bool, scheduler_name: str) -> None:
    """Run a second scheduler named SCHEDULER_NAME (pods choose it with spec.schedulerName)."""
    _need_root("add-scheduler")
    state = _component_state(name)
    topology = state.topology()
    assert topology is not None
    pid = components.start_scheduler(state, topology, scheduler_name, profile)
    if as_json:
        _print_json({"scheduler": scheduler_name, "profile": profile, "component": f"scheduler-{scheduler_name}",
                     "pid": pid})
        return
    click.echo(f"started scheduler {scheduler_name!r} ({profile}), component scheduler-{scheduler_name} (pid {pid})")


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--json", "as_json", is_flag=True, help="Print the component, its pid and whether it ran, as JSON.")
@click.argument("component")
def stop(name: str | None, as_json: bool, component: str) -> None:
    """Stop one component (apiserver, kubelet-NODE, kube-proxy-NODE, ...) by its recorded pid."""
    _need_root("stop")
    state = _component_state(name)
    found = {p.role: p for p in state.processes()}
    if component not in found:
        _fail(f"no component {component!r}; there are: {', '.join(sorted(found)) or 'none'}")
    was_running = found[component].stop()
    if as_json:
        _print_json({"component": component, "pid": found[component].pid, "wasRunning": was_running})
        return
    click.echo(f"stopped {component} (pid {found[component].pid})" if was_running else f"{component} was not running")


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--json", "as_json", is_flag=True, help="Print the component and its new pid as JSON.")
@click.argument("component")
def start(name: str | None, as_json: bool, component: str) -> None:
    """Start a stopped component again, as it was first started."""
    _need_root("start")
    try:
        pid = components.restart(_component_state(name), component, stop_first=False)
    except ComponentError as exc:
        _fail(str(exc), code=_exit_code(exc))
    if as_json:
        _print_json({"component": component, "pid": pid})
        return
    click.echo(f"started {component} (pid {pid})")


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--json", "as_json", is_flag=True, help="Print the component and its new pid as JSON.")
@click.argument("component")
def restart(name: str | None, as_json: bool, component: str) -> None:
    """Stop a component (if it runs) and start it again."""
    _need_root("restart")
    try:
        pid = components.restart(_component_state(name), component)
    except ComponentError as exc:
        _fail(str(exc), code=_exit_code(exc))
    if as_json:
        _print_json({"component": component, "pid": pid})
        return
    click.echo(f"restarted {component} (pid {pid})")


@main.command(name="proxy", add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def proxy_command(args: tuple[str, ...]) -> None:
    """kube-proxy (`python -m proxy`; `kubesim proxy --help` for its flags). With `--cleanup --node NODE
    [--name CLUSTER]`, the cleanup runs inside that node of the cluster."""
    argv = list(args)
    entry = [sys.executable, "-m", "proxy"]
    node = _take_option(argv, "--node")
    name = _take_option(argv, "--name")
    if node is None:
        if name is not None:
            _fail("kubesim proxy: --name goes with --cleanup --node NODE", code=2)
        os.execv(sys.executable, [*entry, *argv])
    if "--cleanup" not in argv:
        _fail("kubesim proxy: --node goes with --cleanup (a running kube-proxy is started by `kubesim up`)", code=2)
    name = _cluster_name_or_fail(name)
    _need_root("proxy --cleanup")
    try:
        ns = cluster.target_namespace(cluster.resolve_name(name), node)
    except StateError as exc:
        _fail(str(exc), code=_exit_code(exc))
    command = namespaces.command_in(ns, [*entry, *argv])
    os.execvp(command[0], command)


def _take_option(argv: list[str], flag: str) -> str | None:
    """Remove `FLAG VALUE` or `FLAG=VALUE` from ARGV and return the value (None when absent)."""
    for i, arg in enumerate(argv):
        if arg == flag:
            if i + 1 == len(argv):
                _fail(f"kubesim proxy: {flag} needs a value", code=2)
            value = argv[i + 1]
            del argv[i:i + 2]
            return value
        if arg.startswith(flag + "="):
            del argv[i]
            return arg.partition("=")[2]
    return None


def _cluster_name_or_fail(name: str | None) -> str | None:
    problem = cluster_name_problem(name) if name is not None else None
    if problem:
        _fail(f"--name: {problem}; a cluster name is never a path", code=2)
    return name


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--node", help="The node whose handling is traced (default: the source's own node, or the gateway "
                             "node for traffic from outside).")
@click.option("--src", "src", required=True,
              help="Where the probes start: an address, a pod (NAMESPACE/NAME or NAME), a node or an external host.")
@click.option("--dst", "dst", required=True, help="IP:PORT the probes are sent to.")
@click.option("--proto", type=click.Choice(["tcp", "udp", "sctp"]), default="tcp", show_default=True)
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="How many probes (each with its own source port).")
@click.option("--ingress", type=click.Choice(["pod", "node", "external"]),
              help="Override where the probes enter: the node's pod bridge, the node itself, or the fabric.")
@click.option("--timeout", default=1.0, show_default=True, type=click.FloatRange(0.05, 30),
              help="Seconds to wait for probes that are neither seen leaving nor refused (a drop).")
@click.option("--pcap", type=click.Path(dir_okay=False), help="Write what was captured to this pcap file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def trace(name: str | None, node: str | None, src: str, dst: str, proto: str, count: int, ingress: str | None,
          timeout: float, pcap: str | None, as_json: bool) -> None:
    """Send probes from SRC to DST and show what a node did with them: DNAT (to which endpoints), masquerade,
    local delivery, REJECT, DROP or nothing, with the nftables chains and rules they went through."""
    from kubesim.trace import render_human, run_trace

    _need_root("trace")
    try:
        result = run_trace(cluster.resolve_name(name), node=node, src=src, dst=dst, proto=proto, count=count,
                           ingress=ingress, pcap=pcap, timeout=timeout)
    except (StateError, NetsimError) as exc:
        _fail(str(exc), code=_exit_code(exc))
    except KeyboardInterrupt:
        _fail("interrupted; the probe namespace and the trace table were removed", code=130)
    if as_json:
        _print_json(result)
    else:
        render_human(result, out)


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--pod", "pods", multiple=True, help="Only flows from or to pods NAMESPACE/NAME-PREFIX, NAMESPACE/ "
                                                   "or NAME-PREFIX (in default). Repeatable.")
@click.option("--service", "services", multiple=True, help="Only flows to Service NAMESPACE/NAME or NAME. Repeatable.")
@click.option("--node", "nodes", multiple=True, help="Watch only this node (default: all). Repeatable.")
@click.option("--verdict", "verdicts", multiple=True, type=click.Choice(["FORWARDED", "DROPPED", "REJECTED"]),
              help="Only flows with this verdict. Repeatable.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON object per line.")
@click.option("--json", "as_json", is_flag=True, help="The same as -o json (every command's --json).")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Follow until Ctrl-C; --no-follow shows what happens within --window, then ends.")
@click.option("--window", default="5s", show_default=True, callback=_duration,
              help="With --no-follow: how long to watch (there is no history to look back into).")
@click.option("--count", type=click.IntRange(1), help="End after this many flows.")
def observe(name: str | None, pods: tuple[str, ...], services: tuple[str, ...], nodes: tuple[str, ...],
            verdicts: tuple[str, ...], output: str, as_json: bool, follow: bool, window: str,
            count: int | None) -> None:
    """Flows as they happen, like hubble observe: each new connection a node forwarded (conntrack), and
    each one it dropped or rejected (nftables trace), with pods, Services and nodes by name."""
    from kubesim.flows import Filter, check_filter_values
    from kubesim.observe import observe as run_observe

    problem = check_filter_values(pods, services, verdicts)
    if problem:
        _fail(problem, code=2)
    _need_root("observe")
    state = _component_state(name)

    def emit(record: dict[str, Any]) -> None:
        click.echo(json.dumps(record) if output == "json" or as_json else record["summary"])
        sys.stdout.flush()

    try:
        run_observe(state, flt=Filter(pods, services, nodes, verdicts), emit=emit, follow=follow,
                    window=parse_duration(window), count=count,
                    status=lambda message: click.echo(f"kubesim observe: {message}", err=True))
    except (KubesimError, NetsimError) as exc:
        _fail(str(exc), code=_exit_code(exc))


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("-i", "--interface", "iface",
              help="Interface to capture on (default: any on a node, eth0 on a pod or external host).")
@click.option("-w", "--write", type=click.Path(dir_okay=False), help="Write packets to this pcap file.")
@click.argument("target")
@click.argument("bpf", nargs=-1, type=click.UNPROCESSED)
def capture(name: str | None, iface: str | None, write: str | None, target: str, bpf: tuple[str, ...]) -> None:
    """tcpdump inside TARGET (a node, a pod NAMESPACE/NAME or NAME, or an external host), with an optional
    FILTER: kubesim capture worker-1 -i cbr0 tcp port 80"""
    from kubesim.trace import run_capture

    _need_root("capture")
    try:
        code = run_capture(cluster.resolve_name(name), target, iface=iface, write=write, bpf=bpf)
    except (StateError, NetsimError) as exc:
        _fail(str(exc), code=_exit_code(exc))
    except OSError as exc:
        _fail(f"cannot run tcpdump: {exc.strerror}; install tcpdump")
    sys.exit(code)


@main.group()
def fault() -> None:
    """Inject network faults into a live cluster, list and clear them. Each lives only inside the
    cluster's namespaces, is recorded in its state directory, and goes with `fault clear` or `down`:

    \b
      kubesim fault partition worker-1 control-plane   the kubelet of worker-1 loses the apiserver
      kubesim fault loss 30 worker-2                   30% of what worker-2 sends is dropped
      kubesim fault rate 10mbit worker-2               worker-2 sends at most 10 Mbit/s (tbf)
      kubesim fault link-down worker-1                 worker-1's cable is cut (link-up mends it)
      kubesim fault delay 100ms worker-1               needs netem (sch_netem) in the kernel
      kubesim fault list ; kubesim fault clear [NODE | --all]
    """


_NAME_OPTION = click.option("--name", callback=_cluster_name,
                            help="The cluster (default: the only one there is, else 'kubesim').")
_JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _inject(name: str | None, as_json: bool, kind: str, nodes: tuple[str, ...], **values: str | None) -> None:
    from kubesim import faults
    from netsim.faults import make_fault

    try:
        wanted = make_fault(kind, nodes, **values)  # bad input is refused before anything else is asked
    except FaultInputError as exc:
        _fail(str(exc), code=2)
    _need_root("fault")
    try:
        faults.add(_component_state(name), wanted)
    except (KubesimError, NetsimError) as exc:
        _fail(str(exc), code=_exit_code(exc))
    if as_json:
        _print_json({"injected": wanted.to_dict()})
    else:
        click.echo(f"injected: {wanted.describe()}")


@fault.command(name="link-down")
@_NAME_OPTION
@_JSON_OPTION
@click.argument("node")
def fault_link_down(name: str | None, as_json: bool, node: str) -> None:
    """Cut NODE's cable: its fabric port goes down, so eth0 loses carrier (addresses and routes stay)."""
    _inject(name, as_json, "link-down", (node,))


@fault.command(name="link-up")
@_NAME_OPTION
@_JSON_OPTION
@click.argument("node")
def fault_link_up(name: str | None, as_json: bool, node: str) -> None:
    """Mend the cable `link-down` cut."""
    from kubesim import faults
    from netsim.faults import make_fault

    _need_root("fault")
    try:
        lifted = faults.remove(_component_state(name), make_fault("link-down", (node,)))
    except (KubesimError, NetsimError) as exc:
        _fail(str(exc), code=_exit_code(exc))
    if as_json:
        _print_json({"node": node, "lifted": bool(lifted)})
    else:
        click.echo(f"{node}: link up" if lifted else f"{node}: the link was not down")


@fault.command(name="partition")
@_NAME_OPTION
@_JSON_OPTION
@click.argument("a")
@click.argument("b")
def fault_partition(name: str | None, as_json: bool, a: str, b: str) -> None:
    """A and B (nodes or external hosts; the control plane is the node `control-plane`) cannot reach each
    other: the fabric drops every frame between them, both ways."""
    _inject(name, as_json, "partition", (a, b))


@fault.command(name="loss")
@_NAME_OPTION
@_JSON_OPTION
@click.argument("percent", metavar="PCT")
@click.argument("node")
def fault_loss(name: str | None, as_json: bool, percent: str, node: str) -> None:
    """Drop PCT% (0-100) of the packets NODE sends out of eth0, at random (nftables numgen)."""
    _inject(name, as_json, "loss", (node,), percent=percent)


@fault.command(name="rate")
@_NAME_OPTION
@_JSON_OPTION
@click.argument("rate")
@click.argument("node")
def fault_rate(name: str | None, as_json: bool, rate: str, node: str) -> None:
    """Limit what NODE sends out of eth0 to RATE, in tc's units (10mbit, 500kbit, 1mbps): a tbf qdisc."""
    _inject(name, as_json, "rate", (node,), rate=rate)


@fault.command(name="delay")
@_NAME_OPTION
@_JSON_OPTION
@click.option("--jitter", help="Spread the delay by up to this much, such as 10ms.")
@click.argument("delay")
@click.argument("node")
def fault_delay(name: str | None, as_json: bool, jitter: str | None, delay: str, node: str) -> None:
    """Delay what NODE sends out of eth0 by DELAY, such as 100ms: a netem qdisc, so only on a kernel
    with sch_netem (checked first; refused otherwise)."""
    _inject(name, as_json, "delay", (node,), delay=delay, jitter=jitter)


@fault.command(name="list")
@_NAME_OPTION
@_JSON_OPTION
def fault_list(name: str | None, as_json: bool) -> None:
    """The faults in force."""
    from kubesim import faults

    found = faults.recorded(_component_state(name))
    if as_json:
        _print_json([f.to_dict() for f in found])
        return
    if not found:
        click.echo("no faults")
        return
    table = Table("TYPE", "NODES", "DETAIL", box=None, pad_edge=False)
    for f in found:
        detail = {"loss": f"{f.percent}%", "rate": f.rate or "",
                  "delay": (f.delay or "") + (f" jitter {f.jitter}" if f.jitter else "")}.get(f.kind, "")
        table.add_row(f.kind, " ".join(f.nodes), detail)
    out.print(table)


@fault.command(name="clear")
@_NAME_OPTION
@_JSON_OPTION
@click.option("--all", "everything", is_flag=True, help="Every fault (the default without NODE).")
@click.argument("node", required=False)
def fault_clear(name: str | None, as_json: bool, everything: bool, node: str | None) -> None:
    """Lift the faults involving NODE, or every fault (and any left over by a crash)."""
    from kubesim import faults

    if node and everything:
        _fail("give NODE or --all, not both", code=2)
    _need_root("fault")
    try:
        lifted = faults.clear(_component_state(name), node)
    except (KubesimError, NetsimError) as exc:
        _fail(str(exc), code=_exit_code(exc))
    if as_json:
        _print_json({"cleared": [f.to_dict() for f in lifted]})
        return
    for f in lifted:
        click.echo(f"cleared: {f.describe()}")
    if not lifted:
        click.echo(f"no faults involving {node}" if node else "no faults")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
def clean(as_json: bool) -> None:
    """Remove everything carrying kubesim's prefix, from any cluster, crashed or not."""
    _need_root("clean")
    removed = cluster.clean()
    if as_json:
        _print_json({"removed": removed})
        return
    for item in removed:
        click.echo(f"removed {item}")
    click.echo(f"removed {len(removed)} object(s)" if removed else "nothing to remove")


@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--proto", type=click.Choice(["tcp", "udp", "sctp"]), default="tcp", show_default=True)
@click.option("--matrix", "namespace", metavar="NAMESPACE",
              help="Print the reachability matrix of NAMESPACE's pods on --port instead (upstream's truth tables).")
@click.option("--port", default=80, show_default=True, type=click.IntRange(1, 65535), help="The port for --matrix.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@click.argument("src", required=False)
@click.argument("dst", required=False)
def policy(name: str | None, proto: str, namespace: str | None, port: int, as_json: bool, src: str | None,
           dst: str | None) -> None:
    """Who may talk to whom, and why: judge SRC -> DST:PORT by the cluster's NetworkPolicies, without
    sending a packet (SRC and DST: a pod as NAMESPACE/NAME or NAME, or an address; a ClusterIP is judged
    on each endpoint, after DNAT). kubesim policy y/client x/server:8080 ; kubesim policy --matrix x"""
    from kubesim import policy as queries

    if namespace is None and (src is None or dst is None):
        _fail("give SRC and DST:PORT, or --matrix NAMESPACE", code=2)
    state = _component_state(name)
    try:
        snap = queries.snapshot(components.kubeconfig_path(state))
        if namespace is not None:
            if as_json:
                _print_json(queries.matrix_json(snap, namespace, port, proto.upper()))
            else:
                click.echo(queries.matrix(snap, namespace, port, proto.upper()))
            return
        assert src is not None and dst is not None
        verdicts = queries.explain(snap, src, dst, proto.upper())
    except PolicyQueryError as exc:
        _fail(str(exc), code=2)
    if as_json:
        _print_json([queries.verdict_json(snap, v) for v in verdicts])
        return
    for verdict in verdicts:
        for line in queries.render_verdict(snap, verdict):
            click.echo(line)



@main.command()
@click.option("--name", callback=_cluster_name, help="The cluster (default: the only one there is, else 'kubesim').")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "html"]),
              help="mermaid (the default; Markdown viewers draw it), dot (Graphviz) or html (a page).")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML page (an SVG drawing and tables) to this file.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@click.option("--json", "as_json", is_flag=True, help="Print the gathered facts and the graph model as JSON.")
def graph(name: str | None, fmt: str | None, html_file: Path | None, output: Path | None, as_json: bool) -> None:
    """Draw the cluster: nodes, pods with their IPs, Services with their ClusterIPs and endpoints, and the
    links between them (fabric bridge, host link, cbr0, veths, VXLAN). kubesim graph --html cluster.html"""
    from kubesim import graph as drawing
    from kubesim.errors import GraphError
    from kubesim.graph import facts as cluster_facts

    if html_file is not None:
        if fmt not in (None, "html") or (output is not None and output != html_file):
            _fail("--html FILE writes the HTML page; give it alone, or use --format with -o FILE", code=2)
        fmt, output = "html", html_file
    try:
        facts = cluster_facts.gather(cluster.resolve_name(name))
        model = drawing.build(facts)
    except (StateError, GraphError) as exc:
        _fail(str(exc), code=_exit_code(exc))
    except PermissionError as exc:
        _fail(f"cannot read {exc.filename}: kubesim's state directory is root's; run it with sudo")
    text = json.dumps({"facts": facts, "graph": model.to_dict()}, indent=2) + "\n" if as_json \
        else drawing.render(model, fmt or "mermaid")
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror}")
    click.echo(f"wrote {output}", err=True)


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL: eval "$(kubesim completion bash)" (zsh alike), or
    kubesim completion fish > ~/.config/fish/completions/kubesim.fish"""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # click ships bash, zsh and fish
    # The script calls `kubesim` back with _KUBESIM_COMPLETE set; click answers that in main() itself.
    click.echo(complete(main, {}, "kubesim", "_KUBESIM_COMPLETE").source())


if __name__ == "__main__":
    main()
