"""The packet-trace tests a user writes: examples/tests, copied outside the repository, run by a plain
`pytest` with nothing but kubesim's plugin (its pytest11 entry point) and public API, and pass; the
cluster the fixture brought up is gone afterwards."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from netsim import namespaces
from tests.e2e.test_cluster import REPO

NAME = "usertests"


def test_the_shipped_example_tests_pass_from_outside_the_repository(tmp_path: Path) -> None:
    tests = tmp_path / "my-tests"
    shutil.copytree(REPO / "examples" / "tests", tests)
    state = tmp_path / "state"
    env = {**os.environ, "KUBESIM_STATE_DIR": str(state), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
                           "--kubesim-name", NAME], cwd=tests, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    print(done.stdout[-4000:])  # the durations of each check, for whoever reads the log
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-4000:]
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) == len(list(tests.glob("test_*.py"))), done.stdout[-2000:]
    assert [ns for ns in namespaces.list_names() if ns.startswith(f"ksim-{NAME}.")] == []
    assert not (state / NAME).exists()
