"""The runtime's API: CRI's RuntimeService verbs as JSON over HTTP on a Unix socket.

POST /runtime.v1.RuntimeService/<Method> with a JSON object; the answer is a JSON object, or an error
{code, reason, message} with 400/404/409/500. /streaming/<kind>/<token> serves the exec, attach and
port-forward sessions whose URLs Exec, Attach and PortForward answer (streams.py). The socket is the
node's and root's alone (mode 0600): whoever can speak to it runs processes in every pod of the node.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from control.runtime.service import METHODS, Runtime, RuntimeServiceError

log = logging.getLogger("runtime")
PREFIX = "/runtime.v1.RuntimeService/"


SUN_PATH_MAX = 107  # sockaddr_un's sun_path, less its terminating NUL
_dir_fds: dict[str, int] = {}


def socket_address(path: Path) -> str:
    """PATH as bind/connect can take it: a state directory deep in a temporary tree makes the path
    longer than sockaddr_un holds, so then it goes through a descriptor of its directory
    (/proc/self/fd/N/NAME), kept open for the process's life."""
    if len(str(path).encode()) <= SUN_PATH_MAX:
        return str(path)
    directory = str(path.parent)
    if directory not in _dir_fds:
        _dir_fds[directory] = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{_dir_fds[directory]}/{path.name}"


def make_app(runtime: Runtime) -> web.Application:
    async def call(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        attribute = METHODS.get(method)
        if attribute is None:
            return _error(404, "Unimplemented", f"method {method!r} is not served: use one of {', '.join(METHODS)}")
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError as exc:
            return _error(400, "InvalidRequest", f"{method}: the body is not JSON ({exc}): send a JSON object")
        if not isinstance(body, dict):
            return _error(400, "InvalidRequest", f"{method}: the body must be a JSON object")
        try:
            result: dict[str, Any] = await getattr(runtime, attribute)(body)
        except RuntimeServiceError as exc:
            return _error(exc.status, exc.reason, exc.message)
        except Exception as exc:
            log.exception("%s failed", method)
            return _error(500, "Internal", f"{method}: {exc}")
        return web.json_response(result)

    app = web.Application()
    app.router.add_post(PREFIX + "{method}", call)
    runtime.streams.add_routes(app)  # the sessions Exec, Attach and PortForward answer the URLs of
    return app


def _error(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"code": code, "reason": reason, "message": message}, status=code)


#: seconds requests in flight get to finish when the runtime stops
SHUTDOWN_TIMEOUT = 0.5


@contextlib.asynccontextmanager
async def serving(runtime: Runtime, socket_path: Path):  # type: ignore[no-untyped-def]
    """Serve RUNTIME on SOCKET_PATH (made 0600 before it listens: no moment others may connect)."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()  # a socket left by a runtime that was killed
    # A kubelet's long-poll (WaitContainer) outlives the kubelet that sent it, and aiohttp waits a minute
    # for requests in flight when it stops: cut that short so a SIGTERM ends the runtime at once. (Requests
    # are not cancelled when their client goes: a sandbox being made is finished for the next kubelet.)
    runner = web.AppRunner(make_app(runtime), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    old = os.umask(0o177)
    try:
        site = web.UnixSite(runner, socket_address(socket_path))
        await site.start()
    finally:
        os.umask(old)
    os.chmod(socket_path, 0o600)
    try:
        yield runner
    finally:
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
