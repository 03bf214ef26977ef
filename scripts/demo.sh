#!/usr/bin/env bash
# Installs everything, then shows the stable buffer at work: its --help, a
# buffer started on loopback, a primary's records going in and a backup's
# reads coming out, round-trip times and the buffer's status. Cleans up after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

ftcp=bin/ftcp
work=$(mktemp -d /tmp/ftcp-demo.XXXXXX)
buffer_pid=""
cleanup() {
  [[ -n $buffer_pid ]] && kill "$buffer_pid" 2>/dev/null && wait "$buffer_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo; echo "== ftcp buffer serve --help"
$ftcp buffer serve --help

echo; echo "== starting a buffer on loopback (commit durability)"
$ftcp buffer serve --listen tcp://127.0.0.1:0 --data-dir "$work/data" --probe-interval 10 --failure-timeout 30 \
  >"$work/ready" 2>"$work/buffer.log" &
buffer_pid=$!
for _ in $(seq 1 100); do grep -q '"ready"' "$work/ready" 2>/dev/null && break; sleep 0.1; done
endpoint=$(sed -n 's/.*"endpoint":"\([^"]*\)".*/\1/p' "$work/ready")
[[ -n $endpoint ]] || { echo "demo: the buffer did not start" >&2; exit 1; }
echo "listening on $endpoint"

echo; echo "== a round trip: a primary writes, a backup reads"
node scripts/demo-roundtrip.mjs "$endpoint"

echo; echo "== the demo primary has exited without a word: the buffer's failure detector"
for _ in $(seq 1 50); do grep -q primary-failed "$work/buffer.log" && break; sleep 0.1; done
grep -h -e writer-attached -e primary-failed "$work/buffer.log" || { echo "demo: no failure declared" >&2; exit 1; }

echo; echo "== ftcp buffer ping"
$ftcp buffer ping --buffer "$endpoint" --count 1000

echo; echo "== ftcp buffer status"
$ftcp buffer status --buffer "$endpoint"
