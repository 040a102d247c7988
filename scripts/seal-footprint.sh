#!/usr/bin/env bash
# What sealing makes of loadgen's default traces or logs: starts GLUST with one shard and
# 64 MiB segments, sends RATE items/s (spans or log records) for SECONDS, waits until the full
# segments are sealed, and prints the sealed bytes per item against the protobuf received,
# the sidecars' memory per item, the time sealing took and the resident memory.
#
#   scripts/seal-footprint.sh GLUST [traces|logs] [RATE=300000] [SECONDS=30]
#
# Needs target/release/loadgen. Uses ports 24318/24317/24200 (below the ephemeral range, so
# that no client connection can take them) and /tmp/glust-seal.
set -euo pipefail
bin=${1:?usage: seal-footprint.sh GLUST [traces|logs] [RATE] [SECONDS]}
signal=${2:-traces}; rate=${3:-300000}; secs=${4:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
data=/tmp/glust-seal
rm -rf "$data" "$data.log"
"$bin" serve --data-dir "$data" --shards 1 --segment-bytes 64M --otlp-http 127.0.0.1:24318 \
  --otlp-grpc 127.0.0.1:24317 --query 127.0.0.1:24200 >"$data.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:24200/readyz >/dev/null && break; sleep 0.1; done
"$here/target/release/loadgen" --endpoint 127.0.0.1:24318 --rate "$rate" --signal "$signal" \
  --duration "${secs}s" --connections 16 --cores 1 -q >/dev/null 2>&1
sleep 5 # the last full segment's sealing
m=$(curl -s http://127.0.0.1:24200/metrics)
get() { echo "$m" | awk -v n="glust_$1" '$1 == n {print $2}'; }
item=$([ "$signal" = traces ] && echo spans || echo logs)
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
python3 - "$(get bytes_received_total)" "$(get ${item}_accepted_total)" "$(get sealed_bytes)" \
  "$(get sealed_$item)" "$(get sealed_memory_bytes)" "$(get segments_sealed_total)" "$rss" "$item" <<'PY'
import sys
received, accepted, sealed, sealed_items, memory, segments, rss = map(float, sys.argv[1:8])
item = sys.argv[8]
per_item_pb = received / accepted
per_item = sealed / sealed_items
print(f"{accepted:.0f} {item} received, {per_item_pb:.1f} B protobuf each; {segments:.0f} segments "
      f"sealed holding {sealed_items:.0f}: {per_item:.1f} B each on disk "
      f"({100 * per_item / per_item_pb:.1f}% of the protobuf), sidecars {memory / sealed_items:.3f} B "
      f"of memory each; resident {rss / 1024:.0f} MiB")
PY
grep 'segment sealed' "$data.log" | grep -o 'elapsed_ms=[0-9]*' | sed 's/elapsed_ms=//' | sort -n | awk \
  '{a[NR]=$1} END {if (NR) printf "sealing a 64 MiB segment: median %d ms over %d\n", a[int((NR+1)/2)], NR}'
