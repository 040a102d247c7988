#!/usr/bin/env bash
# End-to-end benchmark: starts Glust, finds its peak with loadgen in closed loop, then runs
# open loop at 50% and 80% of that peak (all three with one pre-encoded payload, so the
# generator costs nothing and the rates compare), collecting .hgrm files (client side from loadgen,
# server side from /debug/hdr) and a summary table.
#
#   scripts/bench.sh [--shards 1] [--loadgen-cores 1] [--duration 15s] [--transport http-protobuf]
#                    [--signal traces] [--connections 8] [--fsync interval] [--out bench-results]
#                    [--payload-file FILE]
#
# --payload-file sends FILE as every body instead of loadgen's generated fixed payload (for
# issue 4's shape: python3 scripts/make-payload.py /tmp/glust-payload, then
# --payload-file /tmp/glust-payload/traces.pb, for HTTP and gRPC alike). Rates stay in items
# per second, so the file must hold 100 items (loadgen's --items-per-request), or the open-loop
# runs stop with loadgen's error saying so. --out is relative to the repository.
#
# Glust pins shard i to core i; give loadgen the other cores. Runs on loopback only and stops
# by itself. Needs python3 for the summary table.
set -euo pipefail

shards=1
lg_cores=1
duration=15s
transport=http-protobuf
signal=traces
connections=8
fsync=interval
out=bench-results
payload=(--fixed-payload)
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) shards="$2"; shift ;;
    --loadgen-cores) lg_cores="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --transport) transport="$2"; shift ;;
    --signal) signal="$2"; shift ;;
    --connections) connections="$2"; shift ;;
    --fsync) fsync="$2"; shift ;;
    --out) out="$2"; shift ;;
    --payload-file) payload=(--payload-file "$(realpath "$2")"); shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
mkdir -p "$out"
echo "== building (release)"
cargo build --release --workspace --quiet
data=$(mktemp -d /tmp/glust-bench.XXXXXX)
log="$out/glust.log"
# Ports unlikely to clash with a Glust on the defaults.
http=127.0.0.1:24318 grpc=127.0.0.1:24317 query=127.0.0.1:23200
endpoint=$http; [ "$transport" = grpc ] && endpoint=$grpc

target/release/glust serve --data-dir "$data" --shards "$shards" --fsync "$fsync" \
  --otlp-http "$http" --otlp-grpc "$grpc" --query "$query" >"$out/glust.stdout" 2>"$log" &
server=$!
cleanup() { kill -INT "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q "glust ready" "$out/glust.stdout" 2>/dev/null && break
  sleep 0.1
done
grep -q "glust ready" "$out/glust.stdout" || { echo "glust did not start; see $log" >&2; exit 1; }

lg() {
  target/release/loadgen --endpoint "$endpoint" --transport "$transport" --signal "$signal" \
    --cores "$lg_cores" --connections "$connections" --duration "$duration" "$@"
}

echo "== closed loop (peak), $transport $signal, $shards shard(s)"
lg --max "${payload[@]}" --json-out "$out/peak.json" --hdr-out "$out/peak.hgrm" -q | tail -4
peak=$(python3 -c "import json,sys; print(int(json.load(open('$out/peak.json'))['items_accepted_per_sec']))")
echo "peak: $peak items/s"

for pct in 50 80; do
  rate=$((peak * pct / 100))
  echo "== open loop at ${pct}% of peak: $rate items/s"
  lg --rate "$rate" "${payload[@]}" --json-out "$out/open$pct.json" --hdr-out "$out/open$pct.hgrm" \
    --hdr-log "$out/open$pct.hlog" -q | tail -4
done

metric=request_http_traces
case "$transport-$signal" in
  grpc-traces) metric=request_grpc_traces ;;
  grpc-logs) metric=request_grpc_logs ;;
  *-logs) metric=request_http_logs ;;
esac
curl -s "http://$query/debug/hdr?metric=$metric&unit=ms" >"$out/server-$metric.hgrm"
curl -s "http://$query/metrics" >"$out/metrics.txt"

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
rows = []
for name in ["peak", "open50", "open80"]:
    d = json.load(open(os.path.join(out, name + ".json")))
    l = d["latency"]; c = d["counts"]
    ms = lambda k: "%.2f" % (l[k] / 1e6)
    rows.append((name, "%.0f" % d["items_accepted_per_sec"], "%.0f" % d["requests_per_sec"],
                 ms("p50_ns"), ms("p99_ns"), ms("p999_ns"), ms("max_ns"),
                 str(sum(v for k, v in c["outcomes"].items() if k != "2xx"))))
hdr = ("run", "items/s", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "non-2xx")
table = "| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr) + "\n"
table += "".join("| " + " | ".join(r) + " |\n" for r in rows)
open(os.path.join(out, "summary.md"), "w").write(table)
print(table)
PY
echo "results in $out/ (plot with: scripts/plot-hdr.py -o $out/latency.png $out/*.hgrm)"
