#!/usr/bin/env bash
# Benchmarks against the peers the issues name, side by side in one run. Not tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
exec node dist/bench/main.js "$@"
