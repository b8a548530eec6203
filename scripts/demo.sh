#!/usr/bin/env bash
# The main job on a fresh machine: set up StreetScan, replay the staged street footage with the
# default model, then serve the operator console on the demo's cases. Events go to
# out/demo/events.jsonl, evidence to out/demo/evidence/, the analyst's report to out/demo/report.md.
# Pass --redis redis://host:6379/0 to also feed a case queue.
#
# The console has no default account: on a terminal the script asks for the first admin's
# password (or takes STREETSCAN_USER_PASSWORD); without either it prints how to start the console.
# STREETSCAN_DEMO_CONSOLE=0 stops after the replay; STREETSCAN_CONSOLE_PORT picks the port (8080).
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
out=out/demo
mkdir -p "$out"
# The demo's own copy of the sample cameras: the console's zone editor writes this one, and the
# next run of this script replays with what was drawn.
[ -f "$out/streams.yaml" ] || cp examples/footage.yaml "$out/streams.yaml"
.venv/bin/streetscan replay "${clips[@]}" --streams "$out/streams.yaml" --out "$out" "$@"

[ "${STREETSCAN_DEMO_CONSOLE:-1}" = "0" ] && exit 0
port="${STREETSCAN_CONSOLE_PORT:-8080}"
if [ -z "$(.venv/bin/streetscan users list --out "$out")" ]; then
  if [ -n "${STREETSCAN_USER_PASSWORD:-}" ] || [ -t 0 ]; then
    echo "The console's first user: admin (choose a password of 10 or more characters)."
    .venv/bin/streetscan users add admin --role admin --out "$out"
  else
    echo "console: create a user, then serve the demo's cases:"
    echo "  .venv/bin/streetscan users add admin --role admin --out $out"
    echo "  .venv/bin/streetscan console --out $out --streams $out/streams.yaml --port $port"
    exit 0
  fi
fi
echo "console: open http://127.0.0.1:$port/ (Ctrl-C stops it)"
exec .venv/bin/streetscan console --out "$out" --streams "$out/streams.yaml" --port "$port"
