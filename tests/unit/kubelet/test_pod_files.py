"""A pod's place on the kubelet's fakes: the hosts file as upstream renders it, the hostname rules, the
identity and env a container gets, and what the kubelet asks the kernel to make (netsim's PodPlace)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from control.kubelet.envvars import expand, expand_command
from control.kubelet.podfiles import PodFileError, hosts_file, pod_hostname, uts_hostname
from control.kubelet.workloads import ContainerError, ContainerLog, ProcessContainer, make_container, run_as
from netsim import names
from netsim.errors import NamespaceError
from netsim.place import PodPlace
from tests.unit.kubelet.kit import CLUSTER, NODE, Node, RecordingKernel, running_node

HEADER = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
          "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")


def pod(name: str = "web-0", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


# -- /etc/hosts and the hostname ----------------------------------------------------------------------

def test_the_hosts_file_is_upstreams_with_the_pod_ip_and_hostname() -> None:
    assert hosts_file(["10.244.1.7"], "web-0", "") == HEADER + "10.244.1.7\tweb-0\n"


def test_with_a_subdomain_the_pod_ip_carries_the_fqdn_first() -> None:
    assert hosts_file(["10.244.1.7"], "db-0", "db.shop.svc.cluster.local") == (
        HEADER + "10.244.1.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n")


def test_host_aliases_follow_one_line_per_ip() -> None:
    aliases = [{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
               {"ip": "10.1.2.3", "hostnames": ["foo.remote"]}]
    assert hosts_file(["10.244.1.7"], "web-0", "", aliases) == (
        HEADER + "10.244.1.7\tweb-0\n\n# Entries added by HostAliases.\n"
        "127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n")


def test_hostname_is_the_pod_name_or_spec_hostname_and_subdomain_makes_the_domain() -> None:
    assert pod_hostname(pod(), "cluster.local") == ("web-0", "")
    assert pod_hostname(pod(hostname="db-0", subdomain="db"), "cluster.local") == ("db-0", "db.shop.svc.cluster.local")
    assert pod_hostname(pod(subdomain="db"), "corp.example") == ("web-0", "db.shop.svc.corp.example")


def test_a_long_pod_name_is_cut_to_a_label_without_a_trailing_dash() -> None:
    name = "a" * 62 + "-bcd"
    assert pod_hostname(pod(name), "cluster.local")[0] == "a" * 62


def test_set_hostname_as_fqdn_and_its_limit() -> None:
    assert uts_hostname(pod(hostname="db-0", subdomain="db", setHostnameAsFQDN=True), "cluster.local") == \
        "db-0.db.shop.svc.cluster.local"
    assert uts_hostname(pod(hostname="db-0", setHostnameAsFQDN=True), "cluster.local") == "db-0"  # no domain
    with pytest.raises(PodFileError, match=r"spec\.setHostnameAsFQDN.*longer than the 64"):
        uts_hostname(pod(hostname="h" * 40, subdomain="s" * 20, setHostnameAsFQDN=True), "cluster.local")


# -- identity, env, command lines -----------------------------------------------------------------------

def test_run_as_the_container_wins_field_by_field() -> None:
    spec = {"securityContext": {"runAsUser": 2000, "runAsGroup": 3000}}
    assert run_as(spec, {"name": "c", "securityContext": {"runAsUser": 1000}}) == (1000, 3000)
    assert run_as(spec, {"name": "c"}) == (2000, 3000)
    assert run_as({}, {"name": "c"}) == (None, None)
    assert run_as({}, {"name": "c", "securityContext": {"runAsGroup": 5}}) == (None, 5)


def test_run_as_a_user_alone_takes_its_primary_group_or_zero() -> None:
    assert run_as({}, {"name": "c", "securityContext": {"runAsUser": 0}}) == (0, 0)  # root's group
    assert run_as({}, {"name": "c", "securityContext": {"runAsUser": 4_000_000}}) == (4_000_000, 0)  # no such user


def test_run_as_non_root_refuses_root_and_bad_ids_are_named() -> None:
    with pytest.raises(ContainerError, match="runAsNonRoot and image will run as root") as caught:
        run_as({"securityContext": {"runAsNonRoot": True}}, {"name": "c"})
    assert caught.value.reason == "CreateContainerConfigError"
    non_root = {"securityContext": {"runAsNonRoot": True}}
    assert run_as(non_root, {"name": "c", "securityContext": {"runAsUser": 7}})[0] == 7
    with pytest.raises(ContainerError, match=r"securityContext\.runAsUser -1 of container 'c'"):
        run_as({}, {"name": "c", "securityContext": {"runAsUser": -1}})


def test_var_references_expand_as_upstream() -> None:
    env = {"NAME": "web", "EMPTY": ""}
    assert expand("hello $(NAME)!", env) == "hello web!"
    assert expand("$(MISSING) stays, $$(NAME) escapes, $$ is $", env) == "$(MISSING) stays, $(NAME) escapes, $ is $"
    assert expand("[$(EMPTY)]", env) == "[]"


def test_a_process_container_enters_all_of_the_pods_namespaces_as_its_user(tmp_path: Path) -> None:
    spec = {"name": "c", "image": "busybox", "command": ["sh", "-c", "echo $(GREETING)"], "workingDir": "/tmp"}
    env = {"GREETING": "hi"}
    container = make_container(expand_command(spec, env), netns="ksim-a.pod.u1", hostname="web-0",
                               log=ContainerLog(tmp_path / "c.log"), env=env, run_as=(1000, 3000))
    assert isinstance(container, ProcessContainer)
    line = container.command_line()
    assert line[:6] == ["nsenter", "--net=/run/netns/ksim-a.pod.u1", "--uts=/run/kubesim-ns/ksim-a.pod.u1.uts",
                        "--mount=/run/kubesim-ns/ksim-a.pod.u1.mnt", "--setgid=3000", "--setuid=1000"]
    assert line[-3:] == ["sh", "-c", "echo hi"]
    assert "/tmp" in line
    env = container.environment()
    assert env["HOSTNAME"] == "web-0" and env["GREETING"] == "hi"


def test_a_shell_image_without_a_command_runs_its_shell_and_others_are_refused(tmp_path: Path) -> None:
    # busybox's and alpine's CMD is a shell: `kubectl debug -it POD --image=busybox` sends no command
    for image in ("busybox", "docker.io/library/alpine:3.20"):
        container = make_container({"name": "c", "image": image, "stdin": True}, netns="ksim-a.pod.u1",
                                   hostname="web-0", log=ContainerLog(tmp_path / "c.log"), env={})
        assert isinstance(container, ProcessContainer) and container.keeps_stdin
        assert container.command_line()[-2:] == ["--", "sh"]
    with pytest.raises(ContainerError) as refused:
        make_container({"name": "c", "image": "example/tools"}, netns="ksim-a.pod.u1", hostname="web-0",
                       log=ContainerLog(tmp_path / "c.log"), env={})
    assert refused.value.reason == "ErrImagePull" and 'image "example/tools"' in refused.value.message


# -- what the kubelet asks the kernel for -------------------------------------------------------------

def placed(node: Node, pod: str) -> PodPlace | None:
    """The place of POD's sandbox, once made (after its network: the netns exists a moment before)."""
    space = node.kernel.namespaces.get(node.sandbox_ns(pod))
    return space.place if space is not None else None


def test_the_kubelet_makes_each_sandbox_a_place_with_its_files(tmp_path: Path) -> None:
    hidden = tmp_path / "state-root"
    hidden.mkdir()
    resolv = tmp_path / "node-resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\nsearch corp.example\n")

    async def main() -> None:
        async with running_node(tmp_path, cluster_dns=["10.96.0.10"], hidden_dirs=[hidden, tmp_path / "absent"],
                                resolv_conf=resolv) as node:
            await node.create_pod("db-0", hostname="db-0", subdomain="db",
                                  hostAliases=[{"ip": "10.1.2.3", "hostnames": ["legacy"]}])
            place = await node.eventually(lambda: placed(node, "db-0"), "db-0's sandbox and its place")
            assert place.hostname == "db-0"
            files = {target: Path(source).read_text() for target, source in place.files}
            ip = node.ipam()[node.pods["db-0"]["metadata"]["uid"]]
            assert files["/etc/hosts"] == (HEADER + f"{ip}\tdb-0.db.default.svc.cluster.local\tdb-0\n\n"
                                           "# Entries added by HostAliases.\n10.1.2.3\tlegacy\n")
            assert files["/etc/hostname"] == "db-0\n"
            assert files["/etc/resolv.conf"] == ("search default.svc.cluster.local svc.cluster.local cluster.local "
                                                 "corp.example\nnameserver 10.96.0.10\noptions ndots:5\n")
            # The state root and the kubelet's own directory (not under it here); a missing one is skipped.
            assert set(place.hidden) == {str(hidden.resolve()), str((tmp_path / "kubelet").resolve())}
            assert place.exposed == ()  # no ServiceAccount credentials issued to this node
            # The container starts after its sandbox's place is made: wait for it, not just for the place.
            await node.eventually(lambda: node.containers.of("db-0", "c"), "db-0's container")
            (container,) = node.containers.of("db-0", "c")
            assert container.hostname == "db-0"

    asyncio.run(main())


def test_env_from_field_refs_and_a_security_context_reach_the_container(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            containers = [{"name": "c", "image": "busybox", "command": ["sh"], "securityContext": {"runAsUser": 1000},
                           "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                   {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                   {"name": "TIER", "valueFrom": {"fieldRef": {
                                       "fieldPath": "metadata.labels['tier']"}}},
                                   {"name": "GREETING", "value": "hello $(POD)"}]}]
            body = await node.create_pod("web", containers, securityContext={"runAsGroup": 3000})
            await node.eventually(lambda: node.containers.of("web", "c"), "web's container")
            (container,) = node.containers.of("web", "c")
            ip = node.ipam()[body["metadata"]["uid"]]
            mine = {k: v for k, v in container.env.items() if k in ("POD", "IP", "TIER", "GREETING")}
            assert mine == {"POD": "web", "IP": ip, "TIER": "", "GREETING": "hello web"}
            assert container.run_as == (1000, 3000)

    asyncio.run(main())


def test_an_env_source_that_is_missing_is_a_config_error_naming_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            containers = [{"name": "c", "image": "busybox", "command": ["sh"],
                           "env": [{"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]
            await node.create_pod("web", containers)

            async def reason() -> str | None:
                state = (await node.container_status("web")).get("state", {})
                return state.get("waiting", {}).get("message") if state.get("waiting", {}).get(
                    "reason") == "CreateContainerConfigError" else None

            message = await node.eventually(reason, "CreateContainerConfigError")
            assert message == 'secret "s" not found', message  # upstream's words

    asyncio.run(main())


class _PlaceFailsOnce(RecordingKernel):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def ns_create_place(self, ns: str, place: PodPlace) -> None:
        if not self.failed:
            self.failed = True
            raise NamespaceError(f"setting up the pod namespaces of {ns}: pod setup: mounting tmpfs: busy")
        super().ns_create_place(ns, place)


def test_a_place_that_cannot_be_made_removes_the_sandbox_and_is_retried_with_an_event(tmp_path: Path) -> None:
    kernel = _PlaceFailsOnce()
    node_ns = names.node_ns(CLUSTER, NODE)
    kernel.ns_create(node_ns)
    kernel.add_bridge(node_ns, names.NODE_BRIDGE)

    async def main() -> None:
        async with running_node(tmp_path, kernel=kernel, restart_backoff=1.0) as node:
            await node.create_pod("web")
            (event,) = await node.eventually(lambda: node.events("web", "FailedCreatePodSandBox"), "the event")
            assert "mounting tmpfs: busy" in event["message"]
            assert not kernel.ns_exists(node.sandbox_ns("web")), "the half-made sandbox was removed"
            await node.clock.advance(1)
            await node.eventually(lambda: placed(node, "web"), "the sandbox made again, with its place")
            await node.eventually(lambda: node.containers.of("web", "c"), "web's container started")

    asyncio.run(main())
