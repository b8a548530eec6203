#!/usr/bin/env bash
# Creates .venv with StreetScan installed in editable mode.
#   scripts/setup.sh           runtime only (replay, daemon): no PyTorch
#   scripts/setup.sh --train   plus Ultralytics/PyTorch (training, export, the test suite)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/pip install -q --disable-pip-version-check)
if [ "${1:-}" = "--train" ]; then
  # Pinned so pip takes the build that machines here carry on disk instead of downloading another.
  .venv/bin/python -c "import torch, torchvision" 2>/dev/null || "${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
  "${PIP[@]}" -e '.[train,dev]'
else
  "${PIP[@]}" -e '.[dev]'
fi
