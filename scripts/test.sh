#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, and runs every *.test.js under Node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# Unprivileged FUSE tests need /dev/fuse usable by a normal user (CI runs as root, tests drop with setpriv).
if [ "$(id -u)" = 0 ] && [ -c /dev/fuse ]; then chmod 0666 /dev/fuse; fi
mapfile -t files < <(find dist -name '*.test.js' | sort)
if [ ${#files[@]} -eq 0 ]; then echo "no test files found under dist/" >&2; exit 1; fi
# A test that hangs fails after 20 minutes (the 10^6-entry scale test takes ~10) instead of holding the whole
# run until CI's 90-minute limit, which would lose the summary of every other test.
exec node --test --test-reporter=spec --test-concurrency=2 --test-timeout=1200000 "$@" "${files[@]}"
