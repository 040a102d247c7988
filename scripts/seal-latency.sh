#!/usr/bin/env bash
# Ingest latency with sealing on against off, at a fixed open-loop rate, and what sealing
# costs of the CPU: alternating runs of one binary, each against a fresh server.
#
#   scripts/seal-latency.sh BIN [RATE=280000] [DURATION=60s] [ROUNDS=2]
#
# "Off" is the same binary with sealing stopped at its first segment (the crash tests' pause
# point, GLUST_TEST_SEAL_PAUSE=written) and no bound on the raw backlog; "on" seals as
# shipped (past --seal-backlog-bytes of full segments waiting, 1G, it refuses with 503). The
# server runs whole on core 0 (taskset), one shard, ports 24318/24317/24200, data in
# /tmp/glust-seal-lat; loadgen (target/release/loadgen, loadgen's default traces, 16
# connections) runs on core 1 at RATE spans/s. Per run: the spans/s accepted, the 503s,
# loadgen's latency (from each export's intended send time), the raw segments waiting at the
# end, segments sealed, and the CPU seconds of the shard thread and of the rest of the
# process (sealing, on the "on" runs: the sealing threads have exited, their time stays in
# the process's total).
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
BIN=$1; RATE=${2:-280000}; DUR=${3:-60s}; ROUNDS=${4:-2}
here=$(cd "$(dirname "$0")" && pwd)
loadgen="$here/../target/release/loadgen"
data=/tmp/glust-seal-lat
[ -x "$loadgen" ] || { echo "build loadgen first: cargo build --release -p loadgen" >&2; exit 2; }
pidfile=$data.pid
# shellcheck source=server-pidfile.sh
. "$here/server-pidfile.sh"
tick=$(getconf CLK_TCK)

metric() { curl -s http://127.0.0.1:24200/metrics | awk -v m="$1" '$1 == m {print $2}'; }

run() {
  local mode=$1
  rm -rf "$data"
  local env=() extra=()
  if [ "$mode" = off ]; then env=(GLUST_TEST_SEAL_PAUSE=written); extra=(--seal-backlog-bytes 1000G); fi
  env "${env[@]}" taskset -c 0 "$BIN" serve --data-dir "$data" --shards 1 \
    --otlp-http 127.0.0.1:24318 --otlp-grpc 127.0.0.1:24317 --query 127.0.0.1:24200 \
    "${extra[@]}" >"$data.log" 2>&1 &
  local pid=$!
  echo $pid >"$pidfile"
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:24200/readyz >/dev/null && break
    sleep 0.1
  done
  local out
  out=$(taskset -c 1 "$loadgen" --endpoint 127.0.0.1:24318 --rate "$RATE" --duration "$DUR" \
    --connections 16 2>&1 | grep -E '^(achieved|answers|latency)')
  local raw sealed
  raw=$(metric glust_segments); sealed=$(metric glust_segments_sealed_total)
  local total shard
  total=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  shard=$(for t in /proc/$pid/task/*; do
    if grep -q '^glust-shard' "$t/comm"; then awk '{print $14 + $15}' "$t/stat"; fi
  done | sort -n | tail -1)
  stop_server
  python3 - "$mode" "$out" "$raw" "$sealed" "$total" "$shard" "$tick" <<'EOF'
import re, sys
mode, out, raw, sealed, total, shard, tick = sys.argv[1:]
ach = re.search(r"\((\S+) spans/s accepted\)", out).group(1)
refused = re.search(r"503 (\d+)", out).group(1)
lat = dict(re.findall(r"(p50|p99|p99\.9|max) (\S+)", out.split("latency", 1)[1]))
total, shard, tick = float(total), float(shard), float(tick)
print(f"{mode:3}  accepted {ach:>7} spans/s  503s {refused:>5}  p50 {lat['p50']:>8}  p99 {lat['p99']:>8}  "
      f"p99.9 {lat['p99.9']:>8}  max {lat['max']:>8}  raw segments {raw:>3}  sealed {sealed:>3}  "
      f"cpu: shard {shard / tick:6.1f} s, rest {(total - shard) / tick:6.1f} s")
EOF
}

for i in $(seq "$ROUNDS"); do
  if [ $((i % 2)) = 1 ]; then run off; run on; else run on; run off; fi
done
rm -rf "$data" "$data.log"
