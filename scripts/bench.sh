#!/usr/bin/env bash
# End-to-end benchmark: finds Glust's peak with loadgen in closed loop, then runs open loop at
# 50% and 80% of that peak (all three with one pre-encoded payload, so the generator costs
# nothing and the rates compare), collecting .hgrm files and a summary table.
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
# Each run (peak, open50, open80) gets a fresh Glust with an empty data dir, because the
# server's histograms count from its start: server-<run>.hgrm (/debug/hdr, the request
# latency of that transport and signal, ms) and metrics-<run>.txt hold that run only, next to
# loadgen's <run>.json/.hgrm (open runs also .hlog) and glust-<run>.log. summary.md: achieved
# vs target rate, latency, partial successes, failures and exports never sent (backlog).
#
# Glust pins shard i to core i; give loadgen the other cores. Runs on loopback only and stops
# by itself. Needs python3 for the summary table.
set -euo pipefail

shards=1
lg_cores=1
duration=15s
transport="http-protobuf"
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
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;  # the header
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
mkdir -p "$out"
echo "== building (release)"
cargo build --release --workspace --quiet
# Ports unlikely to clash with a Glust on the defaults.
http=127.0.0.1:24318 grpc=127.0.0.1:24317 query=127.0.0.1:23200
endpoint=$http; [ "$transport" = grpc ] && endpoint=$grpc
metric=request_http_traces
case "$transport-$signal" in
  grpc-traces) metric=request_grpc_traces ;;
  grpc-logs) metric=request_grpc_logs ;;
  *-logs) metric=request_http_logs ;;
esac

server="" data=""
stop_server() {
  if [ -n "$server" ]; then kill -INT "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=""
  if [ -n "$data" ]; then rm -rf "$data"; fi
  data=""
}
trap stop_server EXIT

# A fresh Glust (empty data dir) for run $1: its histograms then hold that run only.
start_server() {
  data=$(mktemp -d /tmp/glust-bench.XXXXXX)
  target/release/glust serve --data-dir "$data" --shards "$shards" --fsync "$fsync" \
    --otlp-http "$http" --otlp-grpc "$grpc" --query "$query" >"$out/glust-$1.stdout" 2>"$out/glust-$1.log" &
  server=$!
  for _ in $(seq 1 100); do
    grep -q "glust ready" "$out/glust-$1.stdout" 2>/dev/null && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "glust ready" "$out/glust-$1.stdout" && return 0
  echo "glust did not start for the $1 run; see $out/glust-$1.log" >&2
  exit 1
}

# The server side of run $1, fetched before its Glust stops.
fetch_server() {
  if ! curl -sSf "http://$query/debug/hdr?metric=$metric&unit=ms" >"$out/server-$1.hgrm" \
      || ! curl -sSf "http://$query/metrics" >"$out/metrics-$1.txt"; then
    echo "could not fetch the server side of the $1 run; see $out/glust-$1.log" >&2
    exit 1
  fi
}

lg() {
  target/release/loadgen --endpoint "$endpoint" --transport "$transport" --signal "$signal" \
    --cores "$lg_cores" --connections "$connections" --duration "$duration" "$@"
}

echo "== closed loop (peak), $transport $signal, $shards shard(s)"
start_server peak
lg --max "${payload[@]}" --json-out "$out/peak.json" --hdr-out "$out/peak.hgrm" -q | tail -4
fetch_server peak
stop_server
peak=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['items_accepted_per_sec']))" "$out/peak.json")
echo "peak: $peak items/s"
[ "$peak" -ge 2 ] || { echo "no usable peak ($peak items/s accepted); see $out/peak.json" >&2; exit 1; }

targets=()
for pct in 50 80; do
  rate=$((peak * pct / 100))
  targets+=("open$pct=$rate")
  echo "== open loop at ${pct}% of peak: $rate items/s (fresh Glust)"
  start_server "open$pct"
  lg --rate "$rate" "${payload[@]}" --json-out "$out/open$pct.json" --hdr-out "$out/open$pct.hgrm" \
    --hdr-log "$out/open$pct.hlog" -q | tail -4
  fetch_server "open$pct"
  stop_server
done

python3 - "$out" "${targets[@]}" <<'PY'
import json, sys, os
out = sys.argv[1]
# Open-loop targets in items/s, as passed to loadgen --rate.
targets = {k: float(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
# loadgen's counts.outcomes keys: "2xx" and "partial" are successes (partial: 2xx with
# partial_success); everything else ("429", "503", "http-NNN", "grpc-NAME", "connect",
# "timeout", "io", "protocol") is a final failure.
SUCCESS = ("2xx", "partial")
UNDER = 0.95  # an open-loop run below this share of its target did not keep up
rows, notes = [], []
for name in ["peak", "open50", "open80"]:
    d = json.load(open(os.path.join(out, name + ".json")))
    l = d["latency"]; c = d["counts"]; o = c.get("outcomes", {})
    ms = lambda k: "%.2f" % (l[k] / 1e6)
    failed = {k: v for k, v in o.items() if k not in SUCCESS and v}
    partial = o.get("partial", 0)
    unsent = c.get("unsent", 0)
    target = targets.get(name)
    share = d["items_per_sec"] / target if target else None
    rows.append((name, "%.0f" % target if target else "max (closed)",
                 "%.0f" % d["items_per_sec"], "%.0f%%" % (100 * share) if share is not None else "-",
                 "%.0f" % d["items_accepted_per_sec"], "%.0f" % d["requests_per_sec"],
                 ms("p50_ns"), ms("p99_ns"), ms("p999_ns"), ms("max_ns"),
                 str(partial), str(sum(failed.values())), str(unsent)))
    if share is not None and share < UNDER:
        notes.append("%s: sent %.0f%% of its target rate (%.0f of %.0f items/s): overloaded, not a healthy run"
                     % (name, 100 * share, d["items_per_sec"], target))
    if unsent:
        notes.append("%s: %d exports were due but never sent (every connection busy): the target or loadgen could not keep up; their latency is a lower bound"
                     % (name, unsent))
    if failed:
        notes.append("%s: %d exports failed (%s)" % (name, sum(failed.values()),
                     ", ".join("%s %d" % kv for kv in sorted(failed.items()))))
    if partial:
        notes.append("%s: %d exports answered with partial success, %d items rejected"
                     % (name, partial, c.get("items_rejected", 0)))
hdr = ("run", "target items/s", "sent items/s", "of target", "accepted items/s", "req/s",
       "p50 ms", "p99 ms", "p99.9 ms", "max ms", "partial", "failed", "unsent")
table = "| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr) + "\n"
table += "".join("| " + " | ".join(r) + " |\n" for r in rows)
table += ("\nsent items/s: items in exports that finished (any answer) per second of the run; "
          "accepted: less failures and items rejected in partial successes. partial: 2xx with "
          "partial_success; failed: final answers other than 2xx/partial (after retries); "
          "unsent: open-loop exports due but never sent. Latency is loadgen's, from each "
          "export's intended send time in open loop.\n")
table += "".join("\n- " + n for n in notes) + ("\n" if notes else "")
open(os.path.join(out, "summary.md"), "w").write(table)
print(table)
PY
# Host settings that move open-loop latency on a VM (see scripts/tune-host.sh), for the record.
halt_poll=/sys/module/haltpoll/parameters/guest_halt_poll_ns
host="host: $(nproc) cores available, cpuidle driver $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none)"
[ -r "$halt_poll" ] && host+=", guest_halt_poll_ns $(cat "$halt_poll")"
printf '\n%s\n' "$host" | tee -a "$out/summary.md"
echo "results in $out/ (plot with: scripts/plot-hdr.py -o $out/latency.png $out/{peak,open50,open80}.hgrm $out/server-{peak,open50,open80}.hgrm)"
