#!/usr/bin/env bash
# Items per second of traces and of logs, for Glust and for a no-op peer (Rotel, a Rust OTLP
# collector, with its blackhole exporter), in one run: rounds of four short wrk runs (Glust
# traces, Glust logs, Rotel traces, Rotel logs; the order rotates each round), each against a
# fresh server pinned to core 0, wrk on core 1, 16 connections, 100 items a request.
#
#   scripts/signals-wrk.sh GLUST_BIN [ROUNDS=5] [DURATION=5s]
#
# Prints requests/s per run, then per signal the median items/s of each server, and the
# ratios the hardening issue tracks: logs/traces for each server, Glust/Rotel per signal.
# Rotel: `pip install rotel` (the binary is rotel/rotel-agent in its package); set ROTEL to
# its path if the script does not find it. Payloads: `python3 scripts/make-payload.py
# /tmp/glust-payload` (or PAYLOAD_DIR). Needs wrk, curl, taskset and python3.
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
GLUST=$1; N=${2:-5}; DUR=${3:-5s}
PAYLOAD_DIR=${PAYLOAD_DIR:-/tmp/glust-payload}
ITEMS=100
here=$(cd "$(dirname "$0")" && pwd)
ROTEL=${ROTEL:-$(python3 -c 'import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))' 2>/dev/null || true)}
[ -x "$ROTEL" ] || { echo "no Rotel binary (pip install rotel, or set ROTEL)" >&2; exit 2; }
for sig in traces logs; do
  [ -f "$PAYLOAD_DIR/$sig.pb" ] || { echo "no $PAYLOAD_DIR/$sig.pb: run python3 scripts/make-payload.py $PAYLOAD_DIR" >&2; exit 2; }
done
data=/tmp/glust-signals
pidfile=$data.pid
# shellcheck source=server-pidfile.sh
. "$here/server-pidfile.sh"

# Starts SERVER (glust|rotel) on core 0 and waits until its OTLP/HTTP port answers.
start() {
  rm -rf "$data"
  case $1 in
    glust) taskset -c 0 "$GLUST" serve --data-dir "$data" --shards 1 --otlp-http 127.0.0.1:34318 \
             --otlp-grpc 127.0.0.1:34317 --query 127.0.0.1:33200 >"$data.log" 2>&1 & ;;
    rotel) taskset -c 0 "$ROTEL" start --exporter blackhole --otlp-http-endpoint 127.0.0.1:34318 \
             --otlp-grpc-endpoint 127.0.0.1:34317 >"$data.log" 2>&1 & ;;
  esac
  echo $! >"$pidfile"
  for _ in $(seq 100); do
    # Any HTTP answer (even 4xx to an empty POST) means it listens.
    if curl -s -o /dev/null -X POST http://127.0.0.1:34318/v1/traces; then return; fi
    sleep 0.1
  done
  stop_server; echo "$1 did not start; its log: $data.log" >&2; exit 1
}

run() { # SERVER SIGNAL -> requests/s
  start "$1"
  local out
  out=$(PAYLOAD="$PAYLOAD_DIR/$2.pb" taskset -c 1 wrk -t1 -c16 -d"$DUR" \
    -s "$here/wrk-post.lua" "http://127.0.0.1:34318/v1/$2")
  stop_server
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "$1 $2: errors during the run:" >&2; echo "$out" >&2; exit 1
  fi
  awk '/Requests\/sec/{print $2}' <<<"$out"
}

combos=("glust traces" "glust logs" "rotel traces" "rotel logs")
results=()
for i in $(seq "$N"); do
  for k in 0 1 2 3; do
    c=${combos[$(( (k + i) % 4 ))]}
    # shellcheck disable=SC2086
    r=$(run $c)
    echo "round $i: $c $r requests/s"
    results+=("$c $r")
  done
done
rm -rf "$data" "$data.log"
python3 - "$ITEMS" "${results[@]}" <<'PY'
import statistics, sys
items = int(sys.argv[1])
runs = {}
for line in sys.argv[2:]:
    server, sig, rps = line.split()
    runs.setdefault((server, sig), []).append(float(rps) * items)
med = {k: statistics.median(v) for k, v in runs.items()}
for k in sorted(med):
    print(f"{k[0]:5} {k[1]:6} median {med[k]:>12,.0f} items/s over {len(runs[k])} runs")
for s in ("glust", "rotel"):
    print(f"{s}: logs/traces {med[(s, 'logs')] / med[(s, 'traces')]:.2f} log records per span")
for sig in ("traces", "logs"):
    print(f"{sig}: glust/rotel {med[('glust', sig)] / med[('rotel', sig)]:.2f}")
PY
