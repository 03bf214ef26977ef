#!/usr/bin/env bash
# Installs everything, then runs every test (each package's unit tests and the
# e2e tests) in one mocha run, so the closing "tests: N passed, N failed" line
# covers all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export FTCP_REPO_ROOT="$PWD"
exec pnpm run -s test:all
