"""Into the pod, on one single-node cluster: unmodified kubectl (1.27, which speaks SPDY/3.1; 1.30, the
first to speak WebSocket by default; and 1.33) runs `exec` (output, stderr, exit code 3, piped stdin, a
terminal with its size), `attach` (and `attach -it` to a terminal container: its echo, its size, a
killed client that leaves it running and attachable), `cp` both ways, `logs -f` and `logs --tail --timestamps --since`
through the apiserver and the kubelet; the Python `kubernetes` client's `stream()` gets its exit code
and its `portforward()` reaches a pod's port, raw and as urllib's connections; `kubesim exec POD` runs a
command there, in the pod's network, UTS and mount namespaces; the node's kubelet API answers through
nodes/NAME/proxy (healthz, pods, a container's log) for those RBAC lets get nodes/proxy; and bad requests
(a pod not placed or completed, a container that is not there or not running) get upstream's answers
without leaving anything stuck (a client killed mid-session takes its command with it; 50 sessions at
once each get theirs)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from control.runtime.crilog import parse_rfc3339
from kubesim import testing
from kubesim.state import ClusterState
from netsim import names
from tests.conftest import unavailable
from tests.e2e.test_cluster import AGNHOST, REPO
from tests.e2e.test_kubectl_apply import SDK_BIN, _kubectl_binary
from tests.waiting import wait_until

NAME = "exec"
VERSIONS = ("1.27", "1.30", "1.33")
#: kubectl speaking SPDY/3.1 (before 1.30) and WebSocket
TRANSPORTS = ("1.27", "1.33")
TALKER = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.3; done"


class Exec:
    """The cluster and the kubectl binaries the tests drive it with."""

    def __init__(self, state: Path, name: str = NAME) -> None:
        self.state = state
        self.env = {**os.environ, "KUBESIM_STATE_DIR": str(state), "PYTHONPATH": str(REPO)}
        self.kubeconfig = str(state / name / "kubeconfig")

    def kubesim(self, *args: str, check: bool = True, stdin: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "kubesim", *args], capture_output=True, text=True, env=self.env,
                              cwd=REPO, input=stdin, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubesim {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    @staticmethod
    def binary(version: str) -> str:
        found = _kubectl_binary(version)
        if found is None:
            unavailable(f"kubectl.{version} not found (in KUBESIM_KUBECTL_DIR, {SDK_BIN} or on PATH)")
        return found

    def argv(self, version: str, *args: str) -> list[str]:
        return [self.binary(version), "--kubeconfig", self.kubeconfig, *args]

    def kubectl(self, *args: str, version: str = "1.33", stdin: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(version, *args), capture_output=True, text=True, input=stdin,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def pod(self, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", "pod", name, "-o", "json").stdout)

    def wait_ready(self, *pods: str) -> None:
        self.kubectl("wait", "--for=condition=Ready", *(f"pod/{p}" for p in pods), "--timeout=60s", timeout=70)


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": list(containers), "terminationGracePeriodSeconds": 2, **spec}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exec]:
    c = Exec(tmp_path_factory.mktemp("state"))
    c.kubesim("up", str(REPO / "topologies" / "single-node.yaml"), "--name", NAME)
    try:
        c.apply(pod("web", {"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                            "env": [{"name": "GREETING", "value": "hello from web"}]}),
                pod("talker", {"name": "talk", "image": "busybox", "command": ["sh", "-c", TALKER]},
                    {"name": "cat", "image": "busybox", "command": ["cat"], "stdin": True}),
                pod("shell", {"name": "term", "image": "busybox", "command": ["sh"], "stdin": True, "tty": True}))
        c.wait_ready("web", "talker", "shell")
        yield c
    finally:
        c.kubesim("down", "--name", NAME, check=False)


@pytest.mark.parametrize("version", VERSIONS)
def test_exec_carries_stdout_stderr_and_the_exit_code(cluster: Exec, version: str) -> None:
    done = cluster.kubectl("exec", "web", "--", "sh", "-c", 'echo "$GREETING"; echo oops >&2; exit 3',
                           version=version, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "hello from web\n"
    assert "oops\n" in done.stderr and "command terminated with exit code 3" in done.stderr
    # the command runs in the pod's network namespace: it has the pod's address
    ip = cluster.pod("web")["status"]["podIP"]
    assert f"inet {ip}/" in cluster.kubectl("exec", "web", "--", "ip", "-4", "addr", "show", "eth0",
                                            version=version).stdout
    # and in its UTS and mount namespaces: the pod's hostname, and the state directory is not there
    assert cluster.kubectl("exec", "web", "--", "hostname", version=version).stdout == "web\n"
    hidden = cluster.kubectl("exec", "web", "--", "cat", cluster.kubeconfig, version=version, check=False)
    assert hidden.returncode == 1 and hidden.stdout == "" and "No such file" in hidden.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_exec_with_piped_stdin_ends_when_the_input_does(cluster: Exec, version: str) -> None:
    lines = "".join(f"{i}\n" for i in range(2000))  # more than one frame's worth
    done = cluster.kubectl("exec", "-i", "web", "--", "sh", "-c", "wc -l; echo done", version=version, stdin=lines)
    assert done.stdout == "2000\ndone\n"


def _on_a_terminal(argv: list[str], prompt: bytes, keys: bytes, *, rows: int, columns: int) -> tuple[int, bytes]:
    """ARGV run with a terminal of ROWS x COLUMNS as its stdin/stdout/stderr, KEYS typed into it once it
    printed PROMPT; its exit code and everything it printed."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    output = b""
    typed = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not typed and prompt in output:
                os.write(controller, keys)
                typed = True
            ready, _, _ = select.select([controller], [], [], 1)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the terminal's last user is gone
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        return process.wait(timeout=10), output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


@pytest.mark.parametrize("version", VERSIONS)
def test_exec_it_gives_the_command_a_terminal_of_the_callers_size(cluster: Exec, version: str) -> None:
    # the initial resize goes out as the session starts, so before the keys typed at the prompt: one
    # WebSocket keeps frames in order
    code, output = _on_a_terminal(
        cluster.argv(version, "exec", "-it", "web", "--", "sh", "-c", "echo ready; read key; stty size; tty; exit 4"),
        b"ready", b"go\r", rows=33, columns=101)
    text = output.decode(errors="replace").replace("\r", "")
    assert code == 4, text
    assert "33 101\n" in text and "/dev/pts/" in text


@pytest.mark.parametrize("version", VERSIONS)
def test_attach_streams_the_containers_output_and_feeds_its_stdin(cluster: Exec, version: str) -> None:
    with subprocess.Popen(cluster.argv(version, "attach", "talker", "-c", "talk"), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as follower:
        try:
            assert follower.stdout is not None
            first = follower.stdout.readline()
            second = follower.stdout.readline()
            assert first.startswith("line ") and second.startswith("line ")
            assert int(second.split()[1]) == int(first.split()[1]) + 1
        finally:
            follower.kill()
    # -i writes into the container's own stdin (`stdin: true`): cat prints it to its log
    with subprocess.Popen(cluster.argv(version, "attach", "-i", "talker", "-c", "cat"), stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as writer:
        try:
            assert writer.stdin is not None
            writer.stdin.write(f"through attach {version}\n".encode())
            writer.stdin.flush()
            wait_until(lambda: f"through attach {version}" in cluster.kubectl("logs", "talker", "-c", "cat").stdout,
                       timeout=20, message="the attached line in cat's log")
        finally:
            writer.kill()


def _attached_until(argv: list[str], keys: bytes, expected: bytes, *, rows: int, columns: int,
                    probe: Callable[[], int]) -> tuple[bytes, int]:
    """ARGV (an attach -it to a shell) on a terminal of ROWS x COLUMNS, KEYS typed once it is attached (its
    hint printed), its output until EXPECTED shows, and PROBE's answer then; then the client is killed
    (SIGKILL), mid-session. Over
    SPDY the client's size goes on a stream of its own, which may reach the container after the keys: the
    keys are typed again at each new prompt until EXPECTED shows (a few times at most)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    output, typed, prompts = b"", 0, 0
    try:
        deadline = time.monotonic() + 60
        while expected not in output and time.monotonic() < deadline and process.poll() is None:
            # "If you don't see a command prompt, try pressing enter.", then the shell's prompt after each line
            if typed < 5 and b"press" in output and (typed == 0 or output.count(b"# ") > prompts):
                prompts = output.count(b"# ")
                os.write(controller, keys)
                typed += 1
            if select.select([controller], [], [], 1)[0]:
                try:
                    output += os.read(controller, 65536)
                except OSError:
                    break
        return output, probe()
    finally:
        process.kill()
        process.wait()
        os.close(controller)


def test_attach_it_reaches_a_terminal_container_sized_as_the_client_and_survives_a_killed_client(
        cluster: Exec) -> None:
    uid = cluster.pod("shell")["metadata"]["uid"]
    runtime = next(p.pid for p in ClusterState(NAME, cluster.state).processes() if p.role.startswith("runtime"))

    def log_handles() -> int:
        """The runtime's open files on the shell's log: an attach session follows it while it lasts."""
        count = 0
        for fd in Path(f"/proc/{runtime}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except FileNotFoundError:  # closed meanwhile
                continue
            count += target.endswith("/term.log") and uid in target
        return count

    before = log_handles()
    for version, (rows, columns) in (("1.27", (33, 101)), ("1.33", (41, 97))):
        # typed keys echo on the container's terminal; `stty size` answers the client's size (its resize)
        output, attached = _attached_until(cluster.argv(version, "attach", "-it", "shell", "-c", "term"),
                                           b"echo sized; stty size\r", f"{rows} {columns}".encode(), rows=rows,
                                           columns=columns, probe=log_handles)
        text = output.decode(errors="replace")
        assert "echo sized; stty size" in text and f"\n{rows} {columns}" in text.replace("\r", ""), text
        assert attached == before + 1  # the session follows the log while it lasts
        # the client was killed mid-session: the shell runs on, and the session's follower is gone
        wait_until(lambda: log_handles() == before, timeout=20, message="the killed attach's session ended")
        state = cluster.pod("shell")["status"]["containerStatuses"][0]
        assert "running" in state["state"] and state["restartCount"] == 0, state


@pytest.mark.parametrize("version", VERSIONS)
def test_cp_copies_into_the_pod_and_back(cluster: Exec, version: str, tmp_path: Path) -> None:
    # kubectl cp is tar over exec: tar xf with stdin's end into the pod, tar cf out of it
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(300_000))  # many frames' worth
    remote = f"/tmp/kubesim-cp-{version}.bin"
    try:
        cluster.kubectl("cp", str(source), f"web:{remote}", version=version)
        back = tmp_path / "back.bin"
        cluster.kubectl("cp", f"web:{remote}", str(back), version=version)
        assert back.read_bytes() == source.read_bytes()
    finally:
        cluster.kubectl("exec", "web", "--", "rm", "-f", remote, check=False)


def test_logs_follow_gets_new_lines_and_ends_when_the_pod_is_deleted(cluster: Exec) -> None:
    # one follower per kubectl version on one pod: each must see new lines and end with the container
    cluster.apply(pod("follow-me", {"name": "talk", "image": "busybox", "command": ["sh", "-c", TALKER]}))
    cluster.wait_ready("follow-me")
    followers = [subprocess.Popen(cluster.argv(version, "logs", "-f", "follow-me", "--tail=1"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for version in VERSIONS]
    try:
        for version, follower in zip(VERSIONS, followers, strict=True):
            assert follower.stdout is not None
            first = int(follower.stdout.readline().split()[1])
            later = int(follower.stdout.readline().split()[1])
            assert later == first + 1, version  # a line written after the request came in
        cluster.kubectl("delete", "pod", "follow-me", "--wait=false")
        for version, follower in zip(VERSIONS, followers, strict=True):
            rest, err = follower.communicate(timeout=60)  # to its end: the follow ends with the container
            assert follower.returncode == 0, f"kubectl {version}: {err}"
            assert all(line.startswith("line ") for line in rest.splitlines()), version
    finally:
        for follower in followers:
            if follower.poll() is None:
                follower.kill()
                follower.wait()


def test_log_options_tail_limit_and_previous(cluster: Exec) -> None:
    assert len(cluster.kubectl("logs", "talker", "-c", "talk", "--tail=2").stdout.splitlines()) == 2
    assert cluster.kubectl("logs", "talker", "-c", "talk", "--limit-bytes=4").stdout == "line"
    refused = cluster.kubectl("logs", "talker", "-c", "talk", "--previous", check=False)
    assert refused.returncode == 1
    assert 'previous terminated container "talk" in pod "talker" not found' in refused.stderr


@pytest.mark.parametrize("version", TRANSPORTS)
def test_logs_tail_timestamps_and_since_by_line_time(cluster: Exec, version: str) -> None:
    # the talker writes `line N` every 0.3 s from its start: known output, each line stored with its time
    wait_until(lambda: "line 5\n" in cluster.kubectl("logs", "talker", "-c", "talk").stdout, timeout=60,
               message="the talker's sixth line")
    stamped = cluster.kubectl("logs", "talker", "-c", "talk", "--tail=2", "--timestamps", version=version).stdout
    (first_time, first), (second_time, second) = (line.split(" ", 1) for line in stamped.splitlines())
    assert int(second.split()[1]) == int(first.split()[1]) + 1
    assert first.startswith("line ") and parse_rfc3339(first_time) <= parse_rfc3339(second_time)
    # --since=1s: only lines stamped in the last second before the kubelet answered, so not the first ones
    asked = time.time_ns()
    recent = cluster.kubectl("logs", "talker", "-c", "talk", "--since=1s", "--timestamps", version=version).stdout
    assert "line 0\n" not in recent
    assert all(parse_rfc3339(line.split(" ", 1)[0]) >= asked - 1_000_000_000 for line in recent.splitlines())
    everything = cluster.kubectl("logs", "talker", "-c", "talk", "--since=1h", version=version).stdout
    assert everything.startswith("line 0\nline 1\n")


def test_the_python_client_stream_gets_output_and_exit_code(cluster: Exec) -> None:
    script = """
import sys
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config(sys.argv[1])
api = client.CoreV1Api()
session = stream(api.connect_get_namespaced_pod_exec, "web", "default", command=["sh", "-c", "echo py; exit 4"],
                 stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
session.run_forever(timeout=30)
print(repr(session.read_stdout()), session.returncode)
"""
    done = subprocess.run([sys.executable, "-c", script, cluster.kubeconfig], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "'py\\n' 4"


def test_the_python_client_port_forwards_into_the_pod(cluster: Exec) -> None:
    script = """
import socket
import sys
import urllib.request
from kubernetes import client, config
from kubernetes.stream import portforward
config.load_kube_config(sys.argv[1])
api = client.CoreV1Api()
forward = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="8080,9999")
sock = forward.socket(8080)
sock.setblocking(True)
sock.sendall(b"GET /hostname HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n")
answer = b""
while chunk := sock.recv(4096):
    answer += chunk
print(answer.split(b"\\r\\n\\r\\n", 1)[1].decode())
print(forward.error(8080))
refused = forward.socket(9999)
refused.setblocking(True)
refused.recv(1)  # closed once its error arrived
print(forward.error(9999))

# HTTP, as the client's own e2e test does it: every connection urllib makes is a port-forward of its own
def through_a_forward(address, *args, **kwargs):
    host, port = address
    assert host == "web.default.kubernetes", host
    return portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports=str(port)).socket(port)

socket.create_connection = through_a_forward
for path in ("/hostname", "/echo?msg=over-http"):
    with urllib.request.urlopen("http://web.default.kubernetes:8080" + path, timeout=30) as answer:
        print(answer.status, answer.read().decode())
"""
    done = subprocess.run([sys.executable, "-c", script, cluster.kubeconfig], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    hostname, no_error, refused, *http = done.stdout.splitlines()
    assert (hostname, no_error) == ("web", "None")
    assert "error forwarding port 9999 to pod default/web" in refused and "connection refused" in refused
    assert http == ["200 web", "200 over-http"]


def test_kubesim_exec_runs_in_a_pod_and_returns_its_exit_code(cluster: Exec) -> None:
    done = cluster.kubesim("exec", "--name", NAME, "web", "--", "sh", "-c", 'echo "$GREETING"; exit 5', check=False)
    assert (done.returncode, done.stdout) == (5, "hello from web\n"), done.stderr
    ip = cluster.pod("web")["status"]["podIP"]
    assert f"inet {ip}/" in cluster.kubesim("exec", "--name", NAME, "default/web", "--", "ip", "-4", "addr").stdout
    assert cluster.kubesim("exec", "--name", NAME, "default/web", "--", "hostname").stdout == "web\n"
    hidden = cluster.kubesim("exec", "--name", NAME, "web", "--", "ls", "-A", str(cluster.state), check=False)
    assert hidden.stdout == "", "the state directory, seen from the pod"
    piped = cluster.kubesim("exec", "--name", NAME, "-i", "default/talker", "-c", "talk", "--", "wc", "-c",
                            stdin="four")
    assert piped.stdout.strip() == "4"
    # nodes keep working as before
    node = cluster.kubesim("exec", "--name", NAME, "control-plane", "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert "inet 172.19." in node.stdout
    missing = cluster.kubesim("exec", "--name", NAME, "nobody", "--", "true", check=False)
    assert missing.returncode == 1 and 'pods "nobody" not found' in missing.stderr
    # and the testing API reaches a pod's namespace by NAMESPACE/NAME
    api = testing.Cluster(NAME, root=cluster.state)
    assert cluster.pod("web")["status"]["podIP"] in api.exec("default/web", "ip", "-4", "addr").stdout


def test_bad_requests_get_upstreams_answers(cluster: Exec) -> None:
    cluster.apply(pod("nowhere", {"name": "c", "image": "pause"}, nodeSelector={"no-such": "node"}))
    unplaced = cluster.kubectl("exec", "nowhere", "--", "true", check=False)
    assert unplaced.returncode == 1 and "pod nowhere does not have a host assigned" in unplaced.stderr
    wrong = cluster.kubectl("exec", "web", "-c", "nope", "--", "true", check=False)
    assert wrong.returncode == 1 and "container nope is not valid for pod web" in wrong.stderr
    cluster.kubectl("delete", "pod", "nowhere", "--wait=false")
    # a container of the pod that is not running: the kubelet's (the runtime's) words, passed on
    cluster.apply(pod("half", {"name": "done", "image": "busybox", "command": ["true"]},
                      {"name": "idle", "image": "pause"}, restartPolicy="Never"),
                  pod("finished", {"name": "c", "image": "busybox", "command": ["true"]}, restartPolicy="Never"))

    def done_terminated() -> bool:
        statuses = (cluster.pod("half").get("status") or {}).get("containerStatuses") or []
        return any(s["name"] == "done" and "terminated" in (s.get("state") or {}) for s in statuses)

    wait_until(done_terminated, timeout=30, message="container done of pod half terminated")
    stopped = cluster.kubectl("exec", "half", "-c", "done", "--", "true", check=False)
    assert stopped.returncode == 1 and 'container not found ("done")' in stopped.stderr
    cluster.kubectl("delete", "pod", "half", "--wait=false")
    # a pod that has completed: kubectl refuses with its own words; a client without that check gets the
    # kubelet's (as for any container that is not running)
    wait_until(lambda: cluster.pod("finished").get("status", {}).get("phase") == "Succeeded", timeout=30,
               message="pod finished Succeeded")
    completed = cluster.kubectl("exec", "finished", "--", "true", check=False)
    assert completed.returncode == 1
    assert "cannot exec into a container in a completed pod; current phase is Succeeded" in completed.stderr
    script = """
import sys
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream
config.load_kube_config(sys.argv[1])
try:
    stream(client.CoreV1Api().connect_get_namespaced_pod_exec, "finished", "default", command=["true"],
           stderr=True, stdin=False, stdout=True, tty=False)
except ApiException as exc:
    print(exc)
"""
    refused = subprocess.run([sys.executable, "-c", script, cluster.kubeconfig], capture_output=True, text=True,
                             timeout=60, check=False)
    assert refused.returncode == 0, refused.stderr
    assert 'container not found (\\"c\\")' in refused.stdout, refused.stdout
    cluster.kubectl("delete", "pod", "finished", "--wait=false")
    # over SPDY (kubectl 1.27) the apiserver refuses before the upgrade with the same words
    old = cluster.kubectl("exec", "web", "-c", "nope", "--", "true", version="1.27", check=False)
    assert old.returncode == 1 and "container nope is not valid for pod web" in old.stderr


def test_a_client_killed_mid_session_takes_its_command_with_it_and_many_run_at_once(cluster: Exec) -> None:
    netns = names.pod_ns(NAME, cluster.pod("web")["metadata"]["uid"])

    def pids() -> list[str]:
        return subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                              check=True).stdout.split()

    assert pids() == []  # web is a built-in: no process of its own
    for version in VERSIONS:
        with subprocess.Popen(cluster.argv(version, "exec", "web", "--", "sleep", "600")) as sleeper:
            wait_until(lambda: len(pids()) == 1, timeout=30, message="the exec'd sleep running in the pod")
            sleeper.send_signal(signal.SIGKILL)
        wait_until(lambda: pids() == [], timeout=30, message=f"the sleep gone with its client (kubectl {version})")
    # Sessions at once, from all three kubectl versions: each gets its own output and exit code. (One 1.30
    # session once ended empty with exit 0: its client discarded frames that came before it had made its
    # streams, and the relay's close was a normal one. See kubeletproxy._relay.)
    count = 50
    sessions = [subprocess.Popen(cluster.argv(VERSIONS[i % 3], "exec", "web", "--", "sh", "-c",
                                              f"echo {i}; exit {i % 4}"),
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for i in range(count)]
    try:
        results = [(s.communicate(timeout=120)[0], s.returncode) for s in sessions]
    finally:
        for s in sessions:
            if s.poll() is None:
                s.kill()
                s.wait()
    assert results == [(f"{i}\n", i % 4) for i in range(count)]
    # nothing of them left in the pod, and the apiserver, kubelet and runtime answer the next one at once
    wait_until(lambda: pids() == [], timeout=30, message="no exec'd process left in the pod")
    assert cluster.kubectl("exec", "web", "--", "echo", "after").stdout == "after\n"


@pytest.mark.parametrize("version", TRANSPORTS)
def test_nodes_proxy_reaches_the_kubelet_api_as_rbac_allows(cluster: Exec, version: str) -> None:
    node = cluster.pod("web")["spec"]["nodeName"]
    base = f"/api/v1/nodes/{node}/proxy"
    assert cluster.kubectl("get", "--raw", f"{base}/healthz", version=version).stdout == "ok"
    listed = json.loads(cluster.kubectl("get", "--raw", f"{base}/pods", version=version).stdout)
    assert listed["kind"] == "PodList"
    by_name = {p["metadata"]["name"]: p for p in listed["items"]}
    assert {"web", "talker"} <= set(by_name) and by_name["web"]["status"]["phase"] == "Running"
    tail = cluster.kubectl("get", "--raw", f"{base}/containerLogs/default/talker/talk?tailLines=2", version=version)
    assert [line.split()[0] for line in tail.stdout.splitlines()] == ["line", "line"]
    # RBAC's nodes/proxy, as upstream authorizes it: get on the proxy subresource of the node
    refused = cluster.kubectl("get", "--raw", f"{base}/healthz", "--as", "jane", version=version, check=False)
    assert refused.returncode == 1
    assert f'nodes "{node}" is forbidden: User "jane" cannot get resource "nodes/proxy"' in refused.stderr
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "node-proxy-reader"},
                   "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}]},
                  {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "jane-node-proxy"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "node-proxy-reader"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]})
    try:
        wait_until(lambda: cluster.kubectl("get", "--raw", f"{base}/healthz", "--as", "jane", version=version,
                                           check=False).stdout == "ok",
                   timeout=20, message="jane, bound to nodes/proxy get, reaching the kubelet's healthz")
    finally:
        cluster.kubectl("delete", "clusterrolebinding/jane-node-proxy", "clusterrole/node-proxy-reader")


# -- kubectl debug: ephemeral containers ------------------------------------------------------------------

#: what the debug shell is fed: it runs once attach delivers it, so no output can go before the session
DEBUG_SCRIPT = "hostname; ip -4 addr show eth0; exit 0\n"


def _ephemeral_state(cluster: Exec, pod: str, name: str) -> dict[str, Any]:
    statuses = (cluster.pod(pod).get("status") or {}).get("ephemeralContainerStatuses") or []
    return next((dict(s.get("state") or {}) for s in statuses if s["name"] == name), {})


@pytest.mark.parametrize("version", TRANSPORTS)
def test_debug_attaches_a_shell_in_the_pods_namespaces(cluster: Exec, version: str) -> None:
    name = f"debug-{version.replace('.', '-')}"
    done = cluster.kubectl("debug", "-i", "web", "--image=busybox", f"--container={name}", "--", "sh",
                           version=version, stdin=DEBUG_SCRIPT, check=False, timeout=90)
    assert done.returncode == 0 and "panic" not in done.stderr, done.stderr
    ip = cluster.pod("web")["status"]["podIP"]
    # the pod's UTS namespace (its hostname) and network namespace (its address), from the container's shell
    assert done.stdout.splitlines()[0] == "web", done.stdout
    assert f"inet {ip}/" in done.stdout
    wait_until(lambda: _ephemeral_state(cluster, "web", name).get("terminated", {}).get("exitCode") == 0,
               timeout=30, message=f"{name} terminated with 0")
    assert cluster.kubectl("logs", "web", "-c", name).stdout.splitlines()[0] == "web"


@pytest.mark.parametrize("version", TRANSPORTS)
def test_debug_it_on_a_terminal_gets_an_interactive_shell(cluster: Exec, version: str) -> None:
    # no command: busybox's own, a shell, on a terminal of the container's own; kubectl's raw terminal sends
    # Enter as CR, which the container's terminal ends the line with
    code, output = _on_a_terminal(
        cluster.argv(version, "debug", "-it", "web", "--image=busybox", f"--container=tty-{version[2:]}"),
        b"If you don't see a command prompt", b"hostname; tty; echo debugged-$((6 * 7)); exit\r", rows=24,
        columns=80)
    text = output.decode(errors="replace").replace("\r", "")
    assert code == 0 and "panic" not in text, text
    assert "\nweb\n" in text and "\n/dev/pts/" in text and "\ndebugged-42\n" in text


@pytest.mark.parametrize("version", TRANSPORTS)
def test_bad_debug_requests_get_a_status(cluster: Exec, version: str) -> None:
    taken = cluster.kubectl("debug", "web", "--image=busybox", "--container=agnhost", "--", "true", version=version,
                            check=False)
    assert taken.returncode == 1 and "panic" not in taken.stderr, taken.stderr
    assert 'The Pod "web" is invalid: spec.ephemeralContainers' in taken.stderr
    assert 'name: Duplicate value: "agnhost"' in taken.stderr
    target = cluster.kubectl("debug", "web", "--image=busybox", "--target=nope", f"--container=t-{version[2:]}",
                             "--", "true", version=version, check=False)
    assert target.returncode == 1 and 'targetContainerName: Not found: "nope"' in target.stderr, target.stderr


def test_debug_without_stdin_runs_in_the_node_runtime_to_its_end(cluster: Exec) -> None:
    cluster.kubectl("debug", "web", "--image=busybox", "--container=quick", "--", "sh", "-c",
                    'echo "ran in $(hostname)"; exit 4')
    wait_until(lambda: _ephemeral_state(cluster, "web", "quick").get("terminated", {}).get("exitCode") == 4,
               timeout=30, message="quick terminated with 4")
    assert cluster.kubectl("logs", "web", "-c", "quick").stdout == "ran in web\n"


def test_an_image_kubesim_cannot_run_waits_with_the_reason_and_an_event(cluster: Exec) -> None:
    cluster.kubectl("debug", "web", "--image=example.com/tools:1", "--container=cannot-run")

    def waiting() -> dict[str, Any]:
        return dict(_ephemeral_state(cluster, "web", "cannot-run").get("waiting") or {})

    wait_until(lambda: waiting().get("reason") == "ErrImagePull", timeout=30, message="cannot-run ErrImagePull")
    assert 'no built-in workload for image "example.com/tools:1"' in waiting()["message"]
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=web,reason=Failed",
                             "-o", "json").stdout
    assert "example.com/tools:1" in events
    # the pod itself goes on as before
    assert cluster.pod("web")["status"]["phase"] == "Running"


def test_debug_copy_to_makes_a_copy_with_the_debug_container(cluster: Exec) -> None:
    try:
        done = cluster.kubectl("debug", "-i", "web", "--copy-to=web-copy", "--image=busybox", "--container=copy",
                               "--", "sh", stdin=DEBUG_SCRIPT, check=False, timeout=90)
        assert done.returncode == 0, done.stderr
        copy = cluster.pod("web-copy")
        assert [c["name"] for c in copy["spec"]["containers"]] == ["agnhost", "copy"]
        assert done.stdout.splitlines()[0] == "web-copy"
        assert f"inet {copy['status']['podIP']}/" in done.stdout
    finally:
        cluster.kubectl("delete", "pod", "web-copy", "--wait=false", "--ignore-not-found", check=False)


def test_debug_node_gets_a_clear_refusal(cluster: Exec) -> None:
    # kubectl debug node/NAME makes a pod with the node's namespaces, which kubesim cannot give: kubectl
    # prints the kubelet's reason as it waits (it waits on, as for any container that does not start)
    with subprocess.Popen(cluster.argv("1.33", "debug", "-i", "node/control-plane", "--image=busybox",
                                       "--container=on-node", "--", "sh"),
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as debugger:
        try:
            assert debugger.stderr is not None
            seen = ""
            deadline = time.monotonic() + 60
            while "is not supported" not in seen and time.monotonic() < deadline:
                ready, _, _ = select.select([debugger.stderr], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                line = debugger.stderr.readline()
                if not line:
                    break
                seen += line
            assert "container on-node: kubesim runs every pod in namespaces of its own" in seen, seen
            assert "hostNetwork=true, hostPID=true, hostIPC=true is not supported" in seen
            assert "panic" not in seen
        finally:
            debugger.kill()
    pods = json.loads(cluster.kubectl("get", "pods", "-o", "json").stdout)["items"]
    for made in pods:
        if made["metadata"]["name"].startswith("node-debugger-control-plane-"):
            cluster.kubectl("delete", "pod", made["metadata"]["name"], "--wait=false")
