"""The channel protocol of `pods/exec` and `pods/attach` over WebSocket (k8s.io/apimachinery's
wsstream and client-go's remotecommand), shared by the kubelet (which serves it), the apiserver (which
relays it) and kubesim's own client.

Every binary WebSocket message is one byte naming a channel, then that channel's data:

    0 stdin  (client -> server)      3 error  (server -> client: one metav1.Status, then the close)
    1 stdout (server -> client)      4 resize (client -> server: {"Width": W, "Height": H})
    2 stderr (server -> client)    255 close  (v5 only, client -> server: one byte, the channel it ends)

Port-forward uses the same v4 framing with two channels per port (2i data, 2i+1 error), each opened
by the port's number in two little-endian bytes.

v4.channel.k8s.io is what the Python `kubernetes` client speaks; v5.channel.k8s.io (kubectl 1.30 on)
adds the close signal, so that a piped stdin's end reaches the command as EOF. The error channel's
Status says how the command ended: Success, or Failure with reason NonZeroExitCode and the exit code
as a cause, which kubectl turns back into its own exit code.

    FrameError   a message that is not a frame (empty, or a resize that is not {"Width", "Height"})
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CLOSE",
    "ERROR",
    "PORT_FORWARD_PROTOCOLS",
    "PROTOCOLS",
    "RESIZE",
    "STDERR",
    "STDIN",
    "STDOUT",
    "V4",
    "V5",
    "FrameError",
    "decode",
    "decode_resize",
    "encode",
    "exit_code_of",
    "failure_status",
    "negotiate",
    "port_announcement",
    "port_channels",
    "status_for_exit",
]

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
#: the subprotocols served, in the server's order of preference
PROTOCOLS = (V5, V4)
#: metav1 StatusReasonNonZeroExitCode and its cause type (k8s.io/client-go/util/exec)
NON_ZERO_EXIT_CODE = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"


class FrameError(ValueError):
    """A WebSocket message that is not a frame of this protocol."""


def encode(channel: int, data: bytes = b"") -> bytes:
    if not 0 <= channel <= 255:
        raise FrameError(f"channel {channel} does not fit in the frame's one byte")
    return bytes((channel,)) + data


def decode(message: bytes) -> tuple[int, bytes]:
    """(channel, data) of one binary message."""
    if not message:
        raise FrameError("an empty message names no channel: every frame starts with its channel byte")
    return message[0], message[1:]


def negotiate(offered: list[str], served: tuple[str, ...] = PROTOCOLS) -> str | None:
    """The subprotocol to answer a client offering OFFERED with (SERVED's first it offers), or None."""
    wanted = {p.strip() for p in offered}
    return next((p for p in served if p in wanted), None)


# -- port-forward (pkg/kubelet/cri/streaming/portforward/websocket.go) ------------------------------
#: port-forward's subprotocol: the v4 channel framing (v5's close signal has no use there)
PORT_FORWARD_PROTOCOLS = (V4,)


def port_channels(index: int) -> tuple[int, int]:
    """The (data, error) channels of the INDEXth port of a port-forward session."""
    if not 0 <= index < 128:
        raise FrameError(f"a port-forward session carries at most 128 ports, not {index + 1}")
    return 2 * index, 2 * index + 1


def port_announcement(port: int) -> bytes:
    """The first data of each of a port's channels: its number, two bytes little-endian."""
    return port.to_bytes(2, "little")


def decode_resize(data: bytes) -> tuple[int, int]:
    """(width, height) of a resize frame: client-go's TerminalSize as JSON."""
    try:
        size = json.loads(data)
        width, height = size["Width"], size["Height"]
    except (ValueError, TypeError, KeyError):
        raise FrameError(f"a resize frame is JSON {{\"Width\": W, \"Height\": H}}, not {data[:64]!r}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 65536 for v in (width, height)):
        raise FrameError(f"a terminal's width and height are integers in [0, 65535], not {width!r} x {height!r}")
    return width, height


SUCCESS: dict[str, Any] = {"metadata": {}, "status": "Success"}


def status_for_exit(code: int, command: list[str]) -> dict[str, Any]:
    """The error channel's Status for a command that ended with CODE (the kubelet's wording, from CRI's
    exec error)."""
    if code == 0:
        return dict(SUCCESS)
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(command)}], exit code {code}",
            "reason": NON_ZERO_EXIT_CODE,
            "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]}}


def failure_status(message: str, *, reason: str = "InternalError", code: int = 500) -> dict[str, Any]:
    """The error channel's Status for a session that failed for a reason other than the command's exit."""
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


def exit_code_of(status: dict[str, Any]) -> int | None:
    """The exit code an error channel's Status reports: 0 for Success, the ExitCode cause's for
    NonZeroExitCode, None for any other failure (the session itself failed)."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") != NON_ZERO_EXIT_CODE:
        return None
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == EXIT_CODE_CAUSE:
            try:
                return int(cause.get("message", ""))
            except ValueError:
                return None
    return None
