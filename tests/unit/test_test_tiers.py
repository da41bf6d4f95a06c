"""The suite's own rule: a test that lacks a tool, a module or root skips on a laptop and fails in CI."""

from __future__ import annotations

import pytest

import tests.conftest as tiers

MISSING = "kubesim-no-such-tool"


@pytest.mark.parametrize("ask", [lambda: tiers.require_tool(MISSING), lambda: tiers.require_module(MISSING)])
def test_missing_things_fail_in_ci(monkeypatch: pytest.MonkeyPatch, ask: object) -> None:
    monkeypatch.setattr(tiers, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match=f"needs .*{MISSING}.*in CI this test must run"):
        ask()  # type: ignore[operator]


@pytest.mark.parametrize("ask", [lambda: tiers.require_tool(MISSING), lambda: tiers.require_module(MISSING)])
def test_missing_things_skip_outside_ci(monkeypatch: pytest.MonkeyPatch, ask: object) -> None:
    monkeypatch.setattr(tiers, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        ask()  # type: ignore[operator]


def test_root_is_required_like_a_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiers, "IN_CI", True)
    monkeypatch.setattr(tiers, "IS_ROOT", False)
    with pytest.raises(pytest.fail.Exception, match="needs root"):
        tiers.require_root()


def test_present_things_are_returned() -> None:
    assert tiers.require_tool("sh").endswith("/sh")
    assert tiers.require_module("json").dumps([]) == "[]"
