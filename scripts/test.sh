#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine, as root: installs what is missing, then runs
# every tier (unit, kernel, e2e). Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -x`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup.sh"
cd "$repo"
exec .venv/bin/python -m pytest "$@"
