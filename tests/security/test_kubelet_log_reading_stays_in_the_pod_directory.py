"""Defect 3: the kubelet's log reading took names from the URL as they came, so
`?container=../../logs/apiserver` read the apiserver's log, and any *.log on the machine. Names are now
validated as Kubernetes names, and a log is opened only by a resolved path inside the pod's directory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from control.kubelet.logs import LogRequestError, read_container_log
from tests.security.kubelet_testlib import POD_LOG, SECRET, kubelet_with_pod

TRAVERSALS = ["../../logs/apiserver", "../../../../logs/apiserver", "..", "app/../../x", "/etc/passwd", "APP",
              "a" * 64, "app.log", "-app"]


def read(state: Path, namespace: str, pod: str, container: str | None, tail: int | None = None) -> bytes:
    setup = kubelet_with_pod(state)
    return asyncio.run(setup.kubelet.container_log(namespace, pod, container, tail))


@pytest.mark.parametrize("container", TRAVERSALS)
def test_a_container_name_that_is_not_a_dns_label_is_refused(tmp_path: Path, container: str) -> None:
    with pytest.raises(LogRequestError) as refused:
        read(tmp_path, "default", "web", container)
    assert refused.value.code == 400
    assert "invalid container name" in refused.value.message


@pytest.mark.parametrize(("namespace", "pod"), [("..", "web"), ("../../logs", "web"), ("default", "../web"),
                                               ("default", "web/../../x"), ("Default", "web")])
def test_a_namespace_or_pod_that_is_not_a_kubernetes_name_is_refused(tmp_path: Path, namespace: str,
                                                                      pod: str) -> None:
    with pytest.raises(LogRequestError) as refused:
        read(tmp_path, namespace, pod, "app")
    assert refused.value.code == 400


def test_the_pods_own_log_is_read(tmp_path: Path) -> None:
    assert read(tmp_path, "default", "web", "app") == POD_LOG
    assert read(tmp_path, "default", "web", None) == POD_LOG  # its only container by default


def test_tail_lines_zero_gives_no_lines(tmp_path: Path) -> None:
    assert read(tmp_path, "default", "web", "app", tail=0) == b""
    assert read(tmp_path, "default", "web", "app", tail=1) == POD_LOG


def test_a_container_not_in_the_pod_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(LogRequestError) as refused:
        read(tmp_path, "default", "web", "other")
    assert refused.value.code == 404


def test_a_symbolic_link_out_of_the_pod_directory_is_not_followed(tmp_path: Path) -> None:
    setup = kubelet_with_pod(tmp_path)
    link = setup.worker.logs_dir() / "app.log"
    link.unlink()
    os.symlink(setup.secret_log, link)
    with pytest.raises(LogRequestError) as refused:
        read_container_log(setup.worker.logs_dir(), "app", None)
    assert refused.value.code == 400
    assert SECRET not in refused.value.message.encode()


def test_reading_by_path_alone_refuses_to_leave_the_directory(tmp_path: Path) -> None:
    setup = kubelet_with_pod(tmp_path)
    for name in ("../../../../logs/apiserver", "../app"):
        with pytest.raises(LogRequestError):
            read_container_log(setup.worker.logs_dir(), name, None)
