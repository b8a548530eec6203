#!/usr/bin/env bash
# The test command: installs what the tests need (Debian redis-server and ffmpeg, the Python
# environment) and runs the whole suite. Shared footage is used when ../shared exists
# (or STREETSCAN_ASSETS points elsewhere); tests that need it skip with the reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh --train
if [ -z "${STREETSCAN_ASSETS:-}" ] && [ -d ../shared ]; then export STREETSCAN_ASSETS="$(cd ../shared && pwd)"; fi
exec .venv/bin/python -m pytest -q -rs "$@"
