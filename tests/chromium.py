"""Headless Chromium (Debian's `chromium`) for tests that check what a page really renders: its DOM after
layout (--dump-dom) and a screenshot (--screenshot). No WebDriver: one browser process per call.

The flags keep it offline and self-contained: no sandbox (the suite runs as root, where Chromium's
sandbox refuses to start), no GPU, and none of the background fetches (component updates, sync, QUIC
probes) a fresh profile would otherwise try on a machine with no network. Every call gets a new profile
directory, so runs never share state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import require_tool

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium() -> str:
    """The chromium program; without it the test skips on a laptop and fails in CI."""
    return require_tool("chromium", install="Debian's chromium package; scripts/setup.sh installs it")


def run(page: Path, *args: str, timeout: float = 90) -> str:
    """Open PAGE (a local file) with ARGS; Chromium's standard output."""
    binary = chromium()
    with tempfile.TemporaryDirectory(prefix="kubesim-chromium-") as profile:
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
        # Its own process group, so a hung browser is ended with all its helpers, by that group's id.
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(f"chromium did not finish {page} within {timeout:g}s") from None
    if process.returncode != 0:
        raise AssertionError(f"chromium {' '.join(args)} {page} failed ({process.returncode}):\n{err[-3000:]}")
    return out


def dump_dom(page: Path) -> str:
    """PAGE's DOM, serialized after it loaded and laid out."""
    return run(page, "--dump-dom")


def screenshot(page: Path, png: Path, *, width: int = 1400, height: int = 1000) -> None:
    """A WIDTHxHEIGHT screenshot of PAGE, written to PNG."""
    run(page, f"--screenshot={png}", f"--window-size={width},{height}", "--hide-scrollbars")
    if not png.is_file():
        raise AssertionError(f"chromium wrote no screenshot to {png}")
