#!/usr/bin/env bash
# A cold `make run`, measured: no .venv, an empty installer cache, a fresh output folder and data
# cache. Set-up is timed here, the quickstart by benchmarks/quickstart/run.py, which records both
# (benchmarks/quickstart/results/quickstart.json). Run it from the project root with nothing else running.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .venv
export UV_CACHE_DIR PIP_NO_CACHE_DIR=1
UV_CACHE_DIR="$(mktemp -d)"
trap 'rm -rf "$UV_CACHE_DIR"' EXIT
started=$EPOCHREALTIME
make setup
setup_s=$(python3 -c "print(round($EPOCHREALTIME - $started, 1))")
.venv/bin/python -m benchmarks.quickstart.run --setup-seconds "$setup_s" "$@"
