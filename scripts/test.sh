#!/usr/bin/env bash
# The test command: installs what the tests need (Debian redis-server and ffmpeg, the Python
# environment), checks lint, format and types (ruff, mypy), and runs the whole suite. Shared
# footage is used when ../shared exists (or STREETSCAN_ASSETS points elsewhere); tests that need it
# skip with the reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh --train
if [ -z "${STREETSCAN_ASSETS:-}" ] && [ -d ../shared ]; then export STREETSCAN_ASSETS="$(cd ../shared && pwd)"; fi
# Lint, format and types first: a minute, and a failure here is cheaper than one found by review.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -rs "$@"
