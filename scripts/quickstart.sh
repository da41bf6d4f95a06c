#!/usr/bin/env bash
# From a fresh Debian 12 machine, as root: install what is missing, bring up the default cluster
# (topologies/two-node.yaml), run three agnhost replicas behind a Service, and show requests to the
# Service IP load-balancing over them. Uses kubectl when the machine has one.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup.sh"
export PATH="$repo/.venv/bin:$PATH"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
have_kubectl=$(command -v kubectl >/dev/null && echo yes || echo no)

if kubesim status --name kubesim >/dev/null 2>&1; then
  echo "cluster 'kubesim' is already up"
else
  step kubesim up "$repo/topologies/two-node.yaml"
fi
if [ "$have_kubectl" = yes ]; then
  step kubesim kubectl --name kubesim apply -f "$repo/examples/echo.yaml"
  step kubesim kubectl --name kubesim rollout status deployment/echo --timeout=60s
  step kubesim kubectl --name kubesim get pods,svc,endpointslices -o wide
else
  step kubesim apply --name kubesim -f "$repo/examples/echo.yaml"
fi

# The Service's address, from the API (python, since kubectl may be missing).
vip=""
for _ in $(seq 100); do
  vip=$("$repo/.venv/bin/python" - <<'PY' || true
import asyncio
from control.client import SERVICES, load_kubeconfig
from kubesim.cluster import status
async def main():
    client = load_kubeconfig(status("kubesim")["kubeconfig"])
    try:
        print((await client.get(SERVICES, "echo", namespace="default"))["spec"]["clusterIP"])
    finally:
        await client.close()
asyncio.run(main())
PY
)
  [ -n "$vip" ] && curl -s --max-time 1 "$vip/hostname" >/dev/null && break
  sleep 0.3
done
printf '\n\033[1m$ for i in $(seq 30); do curl -s %s/hostname; echo; done | sort | uniq -c\033[0m\n' "$vip"
for i in $(seq 30); do curl -s --max-time 2 "$vip/hostname"; echo; done | sort | uniq -c
printf '\nEach line is a pod that answered: kube-proxy (nftables, in every node) spread the requests.\n'
printf 'See the rules: kubesim exec worker-1 -- nft list table ip kubesim-proxy\n'
printf 'The cluster stays up; remove it with: kubesim down\n'
