"""The kubelet's side of the runtime's socket: one call per CRI verb."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from control.runtime.server import PREFIX, socket_address


class RuntimeCallError(Exception):
    """The runtime answered CODE (404 not found, 400 bad request, 409 start failed) with REASON."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.code, self.reason, self.message = code, reason, message


class RuntimeClient:
    def __init__(self, socket_path: Path):
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    async def call(self, method: str, body: dict[str, Any] | None = None, *,
                   timeout: float | None = 30.0) -> dict[str, Any]:
        if self._session is None:
            # No connection limit: every running container holds one open in WaitContainer.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=socket_address(self.socket_path), limit=0))
        async with self._session.post(f"http://runtime{PREFIX}{method}", json=body or {},
                                      timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            answer: dict[str, Any] = await response.json()
            if response.status != 200:
                raise RuntimeCallError(response.status, str(answer.get("reason")), str(answer.get("message")))
            return answer

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
