#!/usr/bin/env bash
# The main job on a fresh machine: set up StreetScan and replay the staged street footage with the
# default model. Events go to out/demo/events.jsonl, evidence to out/demo/evidence/, the analyst's
# report to out/demo/report.md. Pass --redis redis://host:6379/0 to also feed a case queue.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
assets="${STREETSCAN_ASSETS:-../shared}"
shopt -s nullglob
clips=("$assets"/footage/*.mp4)
if [ ${#clips[@]} -eq 0 ]; then
  echo "no footage in $assets/footage: set STREETSCAN_ASSETS, or run: .venv/bin/streetscan replay YOUR.mp4" >&2
  exit 2
fi
exec .venv/bin/streetscan replay "${clips[@]}" --streams examples/footage.yaml --out out/demo "$@"
