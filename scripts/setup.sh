#!/usr/bin/env bash
# Makes a fresh Debian 12 machine (root, node 20, npm, nothing else) ready to
# build, run and test ftcp. Safe to run again: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

PNPM_VERSION=10.34.8
# Everything the wraps, the demo and the e2e tests call at run time.
APT_PACKAGES=(
  iptables iproute2 libnetfilter-queue-dev tcpdump iperf3 redis-server redis-tools
  socat ethtool gcc make python3 curl openssl ca-certificates procps psmisc
)

log() { printf '[setup] %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || { echo "setup: installing ${missing[*]} needs root (try: sudo $0)" >&2; exit 1; }
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting daemons (redis, iperf3) we start ourselves.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
else
  log "Debian packages present"
fi

if [[ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]]; then
  log "installing pnpm $PNPM_VERSION"
  npm install -g --silent "pnpm@$PNPM_VERSION"
fi

# node-gyp would otherwise try to download node headers, and this machine has no
# internet but the registries; Debian's nodejs ships them under /usr/include/node.
export npm_config_nodedir=/usr
log "installing workspace dependencies"
pnpm install --frozen-lockfile --reporter=silent
log "building"
pnpm run -s build
log "ready"
