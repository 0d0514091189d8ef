#!/usr/bin/env bash
# The main job end to end on an embedded default; see `gridbox demo --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec node dist/cli/main.js demo "$@"
