#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine, as root: installs what is missing, then runs
# every tier (unit, kernel, e2e, packet, security). Extra arguments go to a single pytest run instead,
# e.g. `scripts/test.sh tests/unit -x`.
#
# Without arguments the unit tier runs beside the privileged tiers, at a lower CPU priority: the
# privileged tests spend much of their time waiting on whole clusters, and the unit tier (no
# privileges, no namespaces, nothing in the root namespace) fills those pauses. Its report is printed
# when it ends; the run fails if either part fails (pytest's "no tests ran" included).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup.sh"
cd "$repo"
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi

unit_report=$(mktemp)
nice -n 10 .venv/bin/python -m pytest tests/unit >"$unit_report" 2>&1 &
unit_pid=$!
trap 'kill "$unit_pid" 2>/dev/null || true; rm -f "$unit_report"' EXIT

privileged=0
.venv/bin/python -m pytest tests/kernel tests/e2e tests/packet tests/security || privileged=$?
unit=0
wait "$unit_pid" || unit=$?
echo
echo "================================ the unit tier (run alongside) ================================"
cat "$unit_report"
echo "privileged tiers: exit $privileged; unit tier: exit $unit"
[ "$privileged" -eq 0 ] && [ "$unit" -eq 0 ]
