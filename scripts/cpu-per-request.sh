#!/usr/bin/env bash
# Shard CPU per request at a fixed open-loop rate: starts GLUST (which pins its one shard to
# core 0), runs loadgen on core 1 at RATE items/s (spans or log records, 100 a request) for 8 s,
# and reads the shard thread's CPU time over 5 s from 2 s in.
#
#   scripts/cpu-per-request.sh GLUST [RATE=500000] [traces|logs]
#
# Needs target/release/loadgen and python3 scripts/make-payload.py /tmp/glust-payload.
# Uses ports 34318/34317/33200 and /tmp/glust-cpr.
set -euo pipefail
bin=${1:?usage: cpu-per-request.sh GLUST [RATE] [traces|logs]}; rate=${2:-500000}; signal=${3:-traces}
here=$(cd "$(dirname "$0")/.." && pwd)
data=/tmp/glust-cpr
rm -rf "$data"
"$bin" serve --data-dir "$data" --shards 1 --otlp-http 127.0.0.1:34318 \
  --otlp-grpc 127.0.0.1:34317 --query 127.0.0.1:33200 >"$data.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:33200/readyz >/dev/null && break; sleep 0.1; done
taskset -c 1 "$here/target/release/loadgen" --endpoint 127.0.0.1:34318 --rate "$rate" \
  --signal "$signal" --payload-file "/tmp/glust-payload/$signal.pb" --duration 8s --connections 16 --cores 1 -q \
  >/dev/null 2>&1 &
lg=$!
sleep 2
# The shard thread: the one that has used the most CPU by now (its blocking threads share
# its name).
tid=$(for t in /proc/$pid/task/*; do echo "$(awk '{print $14 + $15}' "$t/stat") ${t##*/}"; done \
  | sort -n | tail -1 | cut -d' ' -f2)
ticks() { awk '{print $14 + $15}' "/proc/$pid/task/$tid/stat"; }
a=$(ticks); sleep 5; b=$(ticks)
wait $lg
hz=$(getconf CLK_TCK)
python3 -c "d=($b-$a)/$hz; r=$rate/100*5; print('shard %.0f%% of a core, %.0f us per request' % (100*d/5, 1e6*d/r))"
