"""The local apiserver harness serves real objects and enforces identities."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from control.client import PODS, SERVICES, Forbidden
from tests.harness import local_apiserver


def test_harness_serves_the_real_api(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            svc = await api.client("admin").get(SERVICES, "kubernetes", namespace="default")
            assert svc["spec"]["clusterIP"] == "10.96.0.1"
            with pytest.raises(Forbidden):
                await api.client("kube-proxy").list(PODS)

    asyncio.run(main())
