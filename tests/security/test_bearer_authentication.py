"""Defect 12 (part): the Bearer scheme is case-insensitive, as upstream's bearertoken authenticator, and
an Authorization header of any other shape is 401 Unauthorized, never a 500."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.harness import LocalAPIServer, local_apiserver

PATH = "/api/v1/namespaces/default/services"


async def status_with(api: LocalAPIServer, authorization: str) -> int:
    async with aiohttp.ClientSession() as session, \
            session.get(api.url + PATH, headers={"Authorization": authorization}) as response:
        return response.status


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(tmp_path: Path, scheme: str) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            assert await status_with(api, f"{scheme} token-admin") == 200

    asyncio.run(main())


@pytest.mark.parametrize("header", [
    "", "Bearer", "Bearer ", "Bearer  token-admin", "Basic dG9rZW4tYWRtaW4=", "token-admin", "Bearer\ttoken-admin",
    "Bearer token-admi", "Bearer token-adminx", "Bearer tökén", "Bearer " + "x" * 4000,
])
def test_malformed_or_wrong_authorization_is_401(tmp_path: Path, header: str) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            assert await status_with(api, header) == 401

    asyncio.run(main())


def test_authorization_header_with_bytes_that_are_not_utf8_is_401(tmp_path: Path) -> None:
    """Sent on a raw socket: no HTTP client library lets a header carry such bytes."""
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            url = urlsplit(api.url)
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            try:
                writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n".encode()
                             + b"Authorization: Bearer \xff\xfe\x80token\r\n\r\n")
                await writer.drain()
                response = await reader.read()
            finally:
                writer.close()
                await writer.wait_closed()
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.split(b" ")[1] == b"401", head
            assert json.loads(body)["reason"] == "Unauthorized"

    asyncio.run(main())
