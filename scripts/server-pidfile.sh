# Sourced by the benchmark scripts that start one server after another (ab-wrk.sh,
# signals-wrk.sh). Their runs execute in command substitutions (subshells), so the running
# server's pid is kept in the file $pidfile, where the EXIT trap of the main shell finds it too
# (Ctrl-C included). The sourcing script sets $pidfile first.
stop_server() {
  if [ -s "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    # The ports are free and the data dir is idle once it is gone.
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$pidfile"
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM
