"""One real apiserver process shared by the security tier's regression tests (the hostile-request suite starts
its own, so that its pid and store are its alone)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.apiserver_process import RunningAPIServer, running_apiserver


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAPIServer]:
    with running_apiserver(tmp_path_factory.mktemp("security-apiserver")) as api:
        yield api
        assert api.alive(), f"the apiserver died during the tests:\n{api.log()}"
