#!/usr/bin/env bash
# The whole chain on real parts (src/testing/demo-real.ts): a Debian image built with mmdebstrap (cached),
# pushed to a loopback docker-registry, synced, served, mounted, `pilot setup`, two jobs as uid 65534, the
# accounting report, clean-up. Needs root (mmdebstrap, FUSE, setpriv). `--quick` runs the offline
# embedded demo (`gridbox demo`) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
if [ "${1:-}" = "--quick" ]; then shift; exec node dist/cli/main.js demo "$@"; fi
exec node dist/testing/demo-real.js "$@"
