#!/usr/bin/env bash
# Ingest latency while a search scans the whole index: starts GLUST (one shard, pinned by
# Glust to core 0), fills it for 10 s with loadgen closed loop on core 1, times one search on
# the idle shard, then runs loadgen open loop at RATE spans/s for 12 s and sends the same
# search 3 s in. Prints loadgen's per-second lines (the p99 of the seconds the search ran
# in), its latency summary, and how long each search took.
#
#   scripts/search-under-load.sh GLUST [RATE=300000] [GLUST SERVE OPTIONS...]
#
# With the default --page-cache-keep (64M) the search reads most records from disk (~3 GB
# after the fill); with `--page-cache-keep off` they stay in the page cache and the search is
# bound by the CPU.
#
# The search, `attr=http.request.method=NOPE`, matches no span, so it visits every span and
# reads its record. Needs target/release/loadgen and python3 scripts/make-payload.py
# /tmp/glust-payload. Uses ports 34318/34317/33200 and /tmp/glust-slu.
set -euo pipefail
bin=${1:?usage: search-under-load.sh GLUST [RATE] [OPTIONS...]}; rate=${2:-300000}
shift; shift || true
here=$(cd "$(dirname "$0")/.." && pwd)
loadgen="$here/target/release/loadgen"
payload=/tmp/glust-payload/traces.pb
data=/tmp/glust-slu
search='http://127.0.0.1:33200/api/v1/traces?attr=http.request.method=NOPE&limit=5'
rm -rf "$data"
"$bin" serve --data-dir "$data" --shards 1 --otlp-http 127.0.0.1:34318 \
  --otlp-grpc 127.0.0.1:34317 --query 127.0.0.1:33200 "$@" >"$data.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:33200/readyz >/dev/null && break; sleep 0.1; done
taskset -c 1 "$loadgen" --endpoint 127.0.0.1:34318 --max --payload-file "$payload" \
  --connections 16 --cores 1 --duration 10s -q >/dev/null
curl -s http://127.0.0.1:33200/metrics | grep '^glust_index_spans '
timed() { local t0 t1; t0=$(date +%s.%N); curl -sf "$search" >/dev/null; t1=$(date +%s.%N);
  python3 -c "print(f'{$t1 - $t0:.2f}')"; }
echo "search on the idle shard: $(timed) s"
(sleep 3; echo "search under load: $(timed) s") &
searcher=$!
taskset -c 1 "$loadgen" --endpoint 127.0.0.1:34318 --rate "$rate" --payload-file "$payload" \
  --connections 16 --cores 1 --duration 12s --timeout 30s 2>&1 | grep -E '^\[|^latency|^answers'
wait $searcher
