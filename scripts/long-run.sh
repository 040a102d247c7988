#!/usr/bin/env bash
# A long run of one shard with its defaults (128 MiB segments, sealing on): loadgen's default
# traces at RATE spans/s for SECONDS, then
#   - resident memory, raw and sealed segments and sidecar memory every 10 s (CSV, to plot);
#   - loadgen's --verify: TRACES traces sampled over the whole run read back and compared;
#   - lookups by id of those traces: warm page cache (p50, p99 of each of two passes), then
#     cold (the page cache dropped before every lookup);
#   - restart time to /readyz after a clean stop, after kill -9, and after a clean stop with
#     the page cache dropped.
#
#   scripts/long-run.sh GLUST [RATE=120000] [SECONDS=600] [TRACES=200]
#
# Needs target/release/loadgen, root (to drop the page cache), python3. Uses ports
# 24318/24317/24200 (below the ephemeral range) and /tmp/glust-long; writes the samples to
# target/long-run.csv.
set -euo pipefail
bin=${1:?usage: long-run.sh GLUST [RATE] [SECONDS] [TRACES]}
rate=${2:-120000}; secs=${3:-600}; traces=${4:-200}
here=$(cd "$(dirname "$0")/.." && pwd)
data=/tmp/glust-long
csv=$here/target/long-run.csv
q=http://127.0.0.1:24200
rm -rf "$data" "$data.log"
mkdir -p "$here/target"

start_glust() {
  "$bin" serve --data-dir "$data" --shards 1 --otlp-http 127.0.0.1:24318 \
    --otlp-grpc 127.0.0.1:24317 --query 127.0.0.1:24200 >>"$data.log" 2>&1 &
  pid=$!
  local t0; t0=$(date +%s.%N)
  for _ in $(seq 600); do curl -sf $q/readyz >/dev/null && break; sleep 0.01; done
  ready_secs=$(python3 -c "import time; print(f'{time.time() - $t0:.2f}')")
}
metric() { curl -s $q/metrics | awk -v n="glust_$1" '$1 == n {print $2}'; }
sample() {
  local m; m=$(curl -s $q/metrics)
  get() { echo "$m" | awk -v n="glust_$1" '$1 == n {print $2}'; }
  echo "$1,$(awk '/VmRSS/ {print $2}' /proc/$pid/status),$(awk '/RssAnon/ {print $2}' /proc/$pid/status),$(get spans_accepted_total),$(get segments),$(get bytes_stored),$(get sealed_segments),$(get sealed_bytes),$(get sealed_memory_bytes)" >>"$csv"
}

start_glust
trap 'kill -9 $pid 2>/dev/null || true' EXIT
echo "elapsed_s,rss_kib,rss_anon_kib,spans_accepted,raw_segments,raw_bytes,sealed_segments,sealed_bytes,sealed_memory_bytes" >"$csv"
# A sample of traces over the whole run: ~4 x TRACES kept, TRACES read back at the end.
ratio=$(python3 -c "print(min(1.0, 4 * $traces * 10 / ($rate * $secs)))")
"$here/target/release/loadgen" --endpoint 127.0.0.1:24318 --rate "$rate" --signal traces \
  --duration "${secs}s" --connections 16 --cores 1 -q --verify --query 127.0.0.1:24200 \
  --verify-ratio "$ratio" --verify-traces "$traces" --trace-ids-out /tmp/glust-long.ids \
  >"$data.loadgen" 2>&1 &
lg=$!
t=0
while kill -0 $lg 2>/dev/null; do sample $t; sleep 10; t=$((t + 10)); done
# (loadgen's --verify read its sample back before it exited.)
echo "verify: $(grep -E '^verify|spans:' "$data.loadgen" | tr '\n' ' ')"
# Until sealing has caught up (one raw segment left: the head), at most 10 minutes.
for _ in $(seq 60); do
  sample $t
  [ "$(metric segments)" -le 1 ] && break
  sleep 10; t=$((t + 10))
done
echo "loadgen: $(grep -E '^(spans|achieved|answers) ' "$data.loadgen" | tr '\n' ';')"
echo "after the load: $(tail -1 "$csv")"

echo "$(wc -l </tmp/glust-long.ids) trace ids sampled by loadgen"
lookups() { # label, drop the page cache before each lookup (1) or not (0)
  while read -r id; do
    [ "$2" = 1 ] && { sync; echo 1 >/proc/sys/vm/drop_caches; }
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$q/api/v1/traces/$id"
  done </tmp/glust-long.ids | python3 -c "
import sys
rows = [l.split() for l in sys.stdin]
bad = sum(1 for r in rows if r[0] != '200')
t = sorted(float(r[1]) * 1000 for r in rows)
pct = lambda p: t[min(len(t) - 1, int(p * len(t)))]
print(f'trace by id, $1: {len(t)} lookups, p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {t[-1]:.1f} ms, not 200: {bad}')"
}
lookups "warm, first pass" 0
lookups "warm, second pass" 0
lookups "cold (page cache dropped before each)" 1

sealed_gb=$(python3 -c "print(f'{$(metric sealed_bytes) / 1e9:.2f}')")
kill $pid; wait $pid || true
start_glust
echo "restart after a clean stop: ready in $ready_secs s with $sealed_gb GB sealed"
kill -9 $pid; wait $pid 2>/dev/null || true
start_glust
echo "restart after kill -9: ready in $ready_secs s"
kill $pid; wait $pid || true
sync; echo 3 >/proc/sys/vm/drop_caches
start_glust
echo "restart after a clean stop, page cache dropped: ready in $ready_secs s ($(grep 'storage recovered' "$data.log" | tail -1 | grep -o 'sealed_segments=[0-9]* elapsed_ms=[0-9]*'))"
echo "samples: $csv"
