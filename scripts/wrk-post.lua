-- wrk script: POST the protobuf body named by $PAYLOAD (default /tmp/glust-payload/traces.pb).
--   PAYLOAD=/tmp/glust-payload/traces.pb wrk -t1 -c16 -d15s -s scripts/wrk-post.lua --latency \
--     http://127.0.0.1:4318/v1/traces
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-protobuf"
local f = assert(io.open(os.getenv("PAYLOAD") or "/tmp/glust-payload/traces.pb", "rb"))
wrk.body = f:read("*a")
f:close()
