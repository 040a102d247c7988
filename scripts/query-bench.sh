#!/usr/bin/env bash
# Search timings on a store filled by loadgen: one shard with its defaults (128 MiB segments,
# sealing on) first gets a planted needle (one span with order.id=ord-needle-4711, one log
# record saying "payment 8f3a2b9c declined", both of trace 4711…), then loadgen's default
# traces and logs (fixed seed) at RATE spans/s and LOG_RATE records/s for SECONDS; once
# sealing has caught up, each search below is timed 5 times with a warm page cache and 5
# times with it dropped before each run (p50 of each, and the sealed blocks the search read,
# from glust_sealed_blocks_read_total).
#
#   scripts/query-bench.sh GLUST [RATE=120000] [SECONDS=240] [LOG_RATE=40000]
#   KEEP=1 scripts/query-bench.sh GLUST   # time the searches again on the store left behind
#
# Needs target/release/loadgen, root (to drop the page cache), python3, curl. Uses ports
# 25318/25317/25200 (below the ephemeral range) and /tmp/glust-query.
# Then two scans that no sidecar or filter can skip, with their rate in sealed spans per second.
set -euo pipefail
bin=${1:?usage: query-bench.sh GLUST [RATE] [SECONDS]}
rate=${2:-120000}; secs=${3:-240}; log_rate=${4:-40000}
here=$(cd "$(dirname "$0")/.." && pwd)
data=/tmp/glust-query
q=http://127.0.0.1:25200
keep=${KEEP:-0}
if [ "$keep" != 1 ]; then rm -rf "$data" "$data.log"; fi
"$bin" serve --data-dir "$data" --shards 1 --otlp-http 127.0.0.1:25318 \
  --otlp-grpc 127.0.0.1:25317 --query 127.0.0.1:25200 >>"$data.log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT
for _ in $(seq 6000); do curl -sf $q/readyz >/dev/null && break; sleep 0.01; done
metric() { curl -s $q/metrics | awk -v n="glust_$1" '$1 == n {print $2}'; }

needle_trace=47110000000000000000000000004711
if [ "$keep" != 1 ]; then
now=$(date +%s%N)
curl -sf -H 'content-type: application/json' 127.0.0.1:25318/v1/traces -d '{"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"payments"}}]},
  "scopeSpans":[{"spans":[{"traceId":"'$needle_trace'","spanId":"4711471147114711",
  "name":"charge","kind":2,"startTimeUnixNano":"'$now'","endTimeUnixNano":"'$((now + 5000000))'",
  "attributes":[{"key":"order.id","value":{"stringValue":"ord-needle-4711"}}]}]}]}]}' >/dev/null
curl -sf -H 'content-type: application/json' 127.0.0.1:25318/v1/logs -d '{"resourceLogs":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"payments"}}]},
  "scopeLogs":[{"logRecords":[{"timeUnixNano":"'$now'","severityNumber":17,
  "body":{"stringValue":"payment 8f3a2b9c declined"},"traceId":"'$needle_trace'"}]}]}]}' >/dev/null

echo "filling: $rate spans/s and $log_rate log records/s for $secs s"
"$here/target/release/loadgen" --endpoint 127.0.0.1:25318 --rate "$log_rate" --signal logs \
  --duration "${secs}s" --connections 8 --cores 1 -q --seed 2 >"$data.loadgen-logs" 2>&1 &
logs_pid=$!
"$here/target/release/loadgen" --endpoint 127.0.0.1:25318 --rate "$rate" --signal traces \
  --duration "${secs}s" --connections 16 --cores 1 -q --seed 1 >"$data.loadgen" 2>&1
wait $logs_pid
fi
for _ in $(seq 120); do
  [ "$(metric segments)" -le 1 ] && break
  sleep 5
done
echo "stored: $(metric spans_accepted_total) spans, $(metric logs_accepted_total) log records;" \
  "$(metric sealed_segments) sealed segments ($(metric sealed_spans) spans," \
  "$(metric sealed_logs) log records), $(metric segments) raw"
# What the head still holds (counted since this start): an attr= search reads its records.
[ "$keep" = 1 ] || echo "head: $(python3 -c "print(int($(metric spans_accepted_total) - $(metric sealed_spans)))") spans," \
  "$(python3 -c "print(int($(metric logs_accepted_total) - $(metric sealed_logs)))") log records"

# A minute before the newest span stored, for the time-window searches (loadgen's spans start
# near now): `start=` is answered by the head, `end=` from sealed segments.
now_ns=$(curl -s "$q/api/v1/traces?limit=1" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["traces"][0]["startTimeUnixNano"])')
minute_ago=$((now_ns - 60 * 1000000000))
searches=(
  "limit=20"
  "limit=3"
  "service=checkout&minDuration=100ms&limit=20"
  "attr=http.response.status_code=500&limit=5"
  "start=$minute_ago&limit=20"
  "end=$minute_ago&limit=20"
  "end=$minute_ago&limit=3"
  "limit=1000"
  "attr=order.id=ord-needle-4711&limit=20"
  "attr=order.id=ord-absent&limit=20"
  "/traces/$needle_trace"
  "/logs?contains=8f3a2b9c&limit=20"
  "/logs?traceId=$needle_trace&limit=20"
  "/logs?limit=20"
  "/logs?minSeverity=ERROR&limit=20"
  "/logs?contains=absentword&limit=20"
  "error=true&limit=20"
  "/services/checkout/operations"
  "/tags"
  "/tags/http.response.status_code/values"
  "/tags/service.name/values?signal=logs"
)

time_one() { # prints the seconds one search took, fails on a non-200
  case $1 in /*) path=$1 ;; *) path="/traces?$1" ;; esac
  curl -s --max-time 300 -o /dev/null -w '%{http_code} %{time_total}\n' "$q/api/v1$path" |
    awk '$1 != 200 {print "HTTP " $1 > "/dev/stderr"; exit 1} {print $2}'
}
p50() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

printf '%-50s %12s %12s %14s\n' search warm_p50_ms cold_p50_ms blocks_read
for s in "${searches[@]}"; do
  before=$(metric sealed_blocks_read_total)
  time_one "$s" >/dev/null # one read to count the blocks, and to warm the cache
  blocks=$(python3 -c "print(int($(metric sealed_blocks_read_total) - $before))")
  warm=$(for _ in 1 2 3 4 5; do time_one "$s"; done | p50)
  cold=$(for _ in 1 2 3 4 5; do
    sync; echo 3 >/proc/sys/vm/drop_caches
    time_one "$s"
  done | p50)
  printf '%-50s %12.1f %12.1f %14s\n' "${s/$minute_ago/NEWEST-60s}" \
    "$(python3 -c "print($warm * 1000)")" "$(python3 -c "print($cold * 1000)")" "$blocks"
done

# Scans that cannot skip: filters every block's description and filters pass but no span
# matches (checkout has no operation "GET /api/carts"; no span has two status codes). Every
# sealed block is read; the rate is sealed spans over the warm p50.
sealed_spans=$(metric sealed_spans)
printf '\n%-50s %12s %12s %14s\n' scan warm_p50_ms spans_per_s blocks_read
for s in "service=checkout&name=GET%20%2Fapi%2Fcarts&limit=20" \
  "attr=http.response.status_code=500&attr=http.response.status_code=200&limit=20"; do
  before=$(metric sealed_blocks_read_total)
  time_one "$s" >/dev/null
  blocks=$(python3 -c "print(int($(metric sealed_blocks_read_total) - $before))")
  warm=$(for _ in 1 2 3 4 5; do time_one "$s"; done | p50)
  printf '%-50s %12.1f %12.0f %14s\n' "$s" "$(python3 -c "print($warm * 1000)")" \
    "$(python3 -c "print($sealed_spans / $warm)")" "$blocks"
done
