#!/usr/bin/env bash
# Train on a bare GPU machine lent through the device tool, in calls of at most 10 minutes.
#   unpack build/gpu/chunk-NN.tar ...   add dataset chunks (scripts/pack_dataset.py) to $DS
#   start ARGS...                       start scripts/train.py in its own session, so it outlives the call
#   watch SECONDS                       wait for the run (or SECONDS), then copy last.pt, best.pt,
#                                       results.csv and the log's tail to $OUT: the weights never
#                                       stay only on a machine that is given back ~30 s after a call
set -uo pipefail
DS=${DS:-/root/ds}
RUNS=${RUNS:-/root/runs}
LOG=$RUNS/train.log
mkdir -p "$DS" "$RUNS"
if [ -d .whl ] && [ ! -d /tmp/site/ultralytics ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
cmd=$1; shift
case $cmd in
  unpack)
    for t in "$@"; do tar -xf "$t" -C "$DS" || exit 1; done
    [ -f "$DS/data.yaml" ] && sed -i "s#^path: .*#path: $DS#" "$DS/data.yaml"  # Ultralytics reads a relative path under its own datasets dir
    echo "unpacked $*: $(find "$DS/images" -name '*.jpg' | wc -l) images in $DS" ;;
  start)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    setsid nohup python3 scripts/train.py --data "$DS/data.yaml" --project "$RUNS" "$@" >"$LOG" 2>&1 &
    echo $! >"$RUNS/pid"; sleep 60; tail -c 3000 "$LOG" ;;
  watch)
    end=$((SECONDS + $1))
    while [ $SECONDS -lt $end ] && kill -0 "$(cat "$RUNS/pid")" 2>/dev/null; do sleep 10; done
    find "$RUNS" \( -name last.pt -o -name best.pt -o -name results.csv \) -exec cp {} "${OUT:-/tmp}/" \;
    tail -c 200000 "$LOG" | tr '\r' '\n' | grep -v "━\|──" >"${OUT:-/tmp}/train.log"
    tail -n 30 "${OUT:-/tmp}/train.log"
    kill -0 "$(cat "$RUNS/pid")" 2>/dev/null && echo "still training" || echo "training ended" ;;
  *) echo "usage: $0 unpack TAR... | start ARGS... | watch SECONDS" >&2; exit 2 ;;
esac
