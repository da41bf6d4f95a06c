#!/usr/bin/env bash
# From a fresh Debian 12 machine, as root: install what is missing, bring up the default cluster
# (topologies/two-node.yaml) and show it working.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup.sh"
kubesim="$repo/.venv/bin/kubesim"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

if "$kubesim" status --name kubesim >/dev/null 2>&1; then
  echo "cluster 'kubesim' is already up"
else
  step kubesim up "$repo/topologies/two-node.yaml"
fi
step kubesim status --name kubesim
worker2=$("$kubesim" status --name kubesim --json | python3 -c 'import json,sys; print(next(n["address"] for n in json.load(sys.stdin)["nodes"] if n["name"] == "worker-2"))')
step kubesim exec --name kubesim worker-1 -- ping -c3 "$worker2"
step kubesim exec --name kubesim client -- ping -c1 "$worker2"
step kubesim exec --name kubesim worker-1 -- ip route
printf '\nThe cluster stays up. Look around with `kubesim exec NODE -- CMD`; remove it with `kubesim down`.\n'
