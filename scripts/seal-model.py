#!/usr/bin/env python3
"""How small could a sealed segment be? A model of encodings for loadgen's default traces.

Captures the OTLP/HTTP protobuf bodies loadgen sends (a tiny receiver on 127.0.0.1:45318 that
saves each body and answers 200), then measures, per span, in blocks compressed with zstd -3:

  E0  the protobuf bodies themselves, in 1 MiB chunks;
  E1  each span's protobuf, spans sorted by (trace id, start), resources apart;
  E2  columns per block: trace ids once per trace, span ids, parents as a back reference,
      starts as deltas from the trace's first, durations, name/kind/status/resource ids,
      attribute keys as ids and all values in one column with a dictionary;
  E3  E2's attribute values as one column per key (dictionary per key).

The goal of issue 15 is sealed data plus sidecars at most 20% of the protobuf received.

    pip install opentelemetry-proto zstandard
    cargo build --release -p loadgen
    python3 scripts/seal-model.py [target/release/loadgen] [SECONDS=3]
"""
import glob
import http.server
import itertools
import os
import struct
import subprocess
import sys
import tempfile
import threading

import zstandard
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PORT = 45318
LEVEL = 3


def capture(loadgen, seconds, into):
    counter = itertools.count()

    class Save(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with open(os.path.join(into, f"req-{next(counter):06d}.pb"), "wb") as f:
                f.write(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Save)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    subprocess.run([loadgen, "--endpoint", f"127.0.0.1:{PORT}", "--rate", "20000",
                    "--duration", f"{seconds}s", "--connections", "2", "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    server.shutdown()
    return [open(f, "rb").read() for f in sorted(glob.glob(os.path.join(into, "req-*.pb")))]


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return n * 2 if n >= 0 else -n * 2 - 1


def main():
    loadgen = sys.argv[1] if len(sys.argv) > 1 else "target/release/loadgen"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        bodies = capture(loadgen, seconds, tmp)
    spans = []
    for b in bodies:
        req = ExportTraceServiceRequest()
        req.ParseFromString(b)
        for rs in req.resource_spans:
            res = rs.resource.SerializeToString()
            for ss in rs.scope_spans:
                scope = ss.scope.SerializeToString()
                spans.extend((res + scope, s) for s in ss.spans)
    n = len(spans)
    wire = sum(map(len, bodies))
    zc = zstandard.ZstdCompressor(level=LEVEL)

    def z(data):
        return len(zc.compress(bytes(data))) if data else 0

    def report(name, total):
        print(f"{name}: {total / n:6.1f} B/span, {100 * total / wire:4.1f}% of the protobuf")

    print(f"{n} spans in {len(bodies)} requests, {wire / n:.0f} B/span of protobuf")
    report("E0 protobuf, 1 MiB chunks", sum(z(b"".join(bodies)[i:i + (1 << 20)])
                                           for i in range(0, wire, 1 << 20)))
    order = sorted(range(n), key=lambda i: (spans[i][1].trace_id, spans[i][1].start_time_unix_nano))
    flat = b"".join(spans[i][1].SerializeToString() for i in order)
    report("E1 spans sorted by trace", sum(z(flat[i:i + (1 << 20)]) for i in range(0, len(flat), 1 << 20)))

    block = 4096
    e2 = e3 = 0
    for b0 in range(0, n, block):
        cols = {k: bytearray() for k in ("trace", "span", "parent", "start", "duration", "name",
                                         "kind", "status", "resource", "keys", "values", "events")}
        per_key = {}
        names, keys, values, resources, seen = {}, {}, {}, {}, {}
        last, first_start = None, 0
        for j, i in enumerate(order[b0:b0 + block]):
            resource, s = spans[i]
            if s.trace_id != last:
                cols["trace"] += s.trace_id
                last, first_start = s.trace_id, s.start_time_unix_nano
            seen[s.span_id] = j
            cols["span"] += s.span_id
            if s.parent_span_id in seen:
                cols["parent"] += varint(1 + j - seen[s.parent_span_id])
            else:
                cols["parent"] += b"\0" + s.parent_span_id
            cols["start"] += varint(zigzag(s.start_time_unix_nano - first_start))
            cols["duration"] += varint(s.end_time_unix_nano - s.start_time_unix_nano)
            cols["name"] += varint(names.setdefault(s.name, len(names)))
            cols["kind"].append(s.kind)
            cols["status"].append(s.status.code)
            cols["resource"] += varint(resources.setdefault(resource, len(resources)))
            cols["keys"] += varint(len(s.attributes))
            for a in s.attributes:
                cols["keys"] += varint(keys.setdefault(a.key, len(keys)))
                v = a.value.SerializeToString()
                if (a.key, v) in values:
                    cols["values"] += b"\0" + varint(values[(a.key, v)])
                else:
                    values[(a.key, v)] = len(values)
                    cols["values"] += b"\1" + varint(len(v)) + v
                kind = a.value.WhichOneof("value")
                raw = {"string_value": lambda: varint(len(a.value.string_value.encode()))
                       + a.value.string_value.encode(),
                       "int_value": lambda: varint(zigzag(a.value.int_value)),
                       "bool_value": lambda: bytes([a.value.bool_value]),
                       "double_value": lambda: struct.pack("<d", a.value.double_value)
                       }.get(kind, lambda: v)()
                per_key.setdefault(a.key, []).append(raw)
            for e in list(s.events) + list(s.links):
                cols["events"] += e.SerializeToString()
        dicts = b"".join(varint(len(k.encode())) + k.encode() for k in list(names) + list(keys))
        dicts += b"".join(resources)
        common = z(dicts) + sum(z(v) for k, v in cols.items() if k != "values")
        e2 += common + z(cols["values"])
        e3 += common
        for raws in per_key.values():
            d, out = {}, bytearray()
            for raw in raws:
                if raw in d:
                    out += b"\0" + varint(d[raw])
                else:
                    d[raw] = len(d)
                    out += b"\1" + raw
            e3 += z(out)
    report(f"E2 columns, {block} spans a block", e2)
    report(f"E3 E2 with a value column per key", e3)


if __name__ == "__main__":
    main()
