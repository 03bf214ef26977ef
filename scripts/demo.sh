#!/usr/bin/env bash
# Installs everything, then runs the failover demo (`ftcp demo`): a client
# streams through a replicated unmodified server, the primary host crashes
# mid-stream, the backup takes over the live connection, and the timeline is
# printed. Everything the demo builds (namespaces, rules, processes) is
# removed afterwards. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo
exec bin/ftcp demo "$@"
