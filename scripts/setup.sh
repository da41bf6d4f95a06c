#!/usr/bin/env bash
# Installs what kubesim needs on Debian 12, as root, idempotently: the kernel tools from apt, and a
# Python venv in .venv with kubesim installed in editable mode. Both README commands start with it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [ "$(id -u)" -ne 0 ]; then
  echo "kubesim set-up must run as root (it installs packages and makes network namespaces): use sudo" >&2
  exit 1
fi

apt_packages=(iproute2 iputils-ping util-linux curl nftables iptables conntrack tcpdump tshark dnsutils python3 python3-venv python3-pip etcd-server chromium chromium-driver gcc libc6-dev)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # etcd-server's package starts a daemon on 2379 by default; kubesim starts its own etcd, so don't.
  if printf '%s\n' "${missing[@]}" | grep -qx etcd-server; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The venv uses Debian's own Python so that the same interpreter is there on every fresh machine.
python=/usr/bin/python3
stamp=.venv/.kubesim-installed
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
ln -sf "$repo/.venv/bin/kubesim" /usr/local/bin/kubesim
