#!/usr/bin/env bash
# Where one shard spends its time under a closed-loop wrk load of one signal: starts Glust
# pinned to core 0 (one shard, fresh data dir), drives it from core 1 with wrk (16
# connections, PAYLOAD_DIR/SIGNAL.pb), records 4 s of it with perf, and prints the top symbols.
#
#   scripts/perf-signal.sh GLUST_BIN traces|logs [OUT=/tmp/perf-SIGNAL.data]
#
# Needs perf (Debian's linux-perf), wrk and the payloads of
# `python3 scripts/make-payload.py /tmp/glust-payload`.
set -euo pipefail
if [ $# -lt 2 ]; then sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; fi
BIN=$1; SIG=$2; OUT=${3:-/tmp/perf-$SIG.data}
PAYLOAD_DIR=${PAYLOAD_DIR:-/tmp/glust-payload}
here=$(cd "$(dirname "$0")" && pwd)
data=/tmp/glust-perf
rm -rf "$data"
taskset -c 0 "$BIN" serve --data-dir "$data" --shards 1 --otlp-http 127.0.0.1:34318 \
  --otlp-grpc 127.0.0.1:34317 --query 127.0.0.1:33200 >"$data.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1.5
PAYLOAD="$PAYLOAD_DIR/$SIG.pb" taskset -c 1 wrk -t1 -c16 -d8s -s "$here/wrk-post.lua" \
  "http://127.0.0.1:34318/v1/$SIG" >"$data.wrk" &
sleep 2
perf record -F 2000 -g -p "$pid" -o "$OUT" -- sleep 4 >/dev/null 2>&1
wait %2 || true
grep Requests "$data.wrk"
perf report -i "$OUT" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
