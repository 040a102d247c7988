#!/usr/bin/env bash
# A/B throughput of two Glust binaries on a noisy machine: alternating pairs of short wrk runs,
# each against a fresh server with an empty data dir, and the median of the per-pair ratios.
#
#   scripts/ab-wrk.sh BIN_A BIN_B [traces|logs] [PAIRS=10] [DURATION=5s]
#
# Each server runs whole on core 0 (taskset), one shard, on ports 34318/34317/33200 and
# /tmp/glust-ab; wrk (Debian package) posts PAYLOAD_DIR/SIGNAL.pb (default /tmp/glust-payload,
# from `python3 scripts/make-payload.py /tmp/glust-payload`) from core 1 over 16 connections.
# Odd pairs run A first, even pairs B first. Prints requests/s per run, B/A per pair, then the
# median ratio and how many pairs B won. Needs wrk, curl and python3.
set -euo pipefail
A=$1; B=$2; SIG=${3:-traces}; N=${4:-10}; DUR=${5:-5s}
PAYLOAD_DIR=${PAYLOAD_DIR:-/tmp/glust-payload}
here=$(cd "$(dirname "$0")" && pwd)
data=/tmp/glust-ab

run() {
  pkill -f "data-dir $data" 2>/dev/null || true; sleep 0.3; rm -rf "$data"
  taskset -c 0 "$1" serve --data-dir "$data" --shards 1 --otlp-http 127.0.0.1:34318 \
    --otlp-grpc 127.0.0.1:34317 --query 127.0.0.1:33200 >"$data.log" 2>&1 &
  for _ in $(seq 100); do curl -sf http://127.0.0.1:33200/readyz >/dev/null && break; sleep 0.1; done
  PAYLOAD="$PAYLOAD_DIR/$SIG.pb" taskset -c 1 wrk -t1 -c16 -d"$DUR" -s "$here/wrk-post.lua" \
    "http://127.0.0.1:34318/v1/$SIG" | awk '/Requests\/sec/{print $2}'
  pkill -f "data-dir $data" 2>/dev/null || true; sleep 0.3
}

ratios=()
for i in $(seq "$N"); do
  if [ $((i % 2)) = 1 ]; then a=$(run "$A"); b=$(run "$B"); else b=$(run "$B"); a=$(run "$A"); fi
  r=$(python3 -c "print(f'{$b / $a:.3f}')")
  ratios+=("$r")
  echo "pair $i: A=$a B=$b B/A=$r"
done
rm -rf "$data" "$data.log"
python3 -c "
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
print(f'median B/A {statistics.median(v):.3f} over {len(v)} pairs, B ahead in {sum(x > 1 for x in v)}')
" "${ratios[@]}"
