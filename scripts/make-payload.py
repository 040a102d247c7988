#!/usr/bin/env python3
"""Write one OTLP ExportTraceServiceRequest of 100 spans and one ExportLogsServiceRequest of 100
log records of the same shape, for benchmarks with generic HTTP tools, as used in BENCHMARKS.md:

    scripts/make-payload.py OUT_DIR                  # 7 attributes: ~320 B per item (issue 4's shape)
    scripts/make-payload.py OUT_DIR --attributes 10  # ~460 B per item (the first BENCHMARKS figures)

writes OUT_DIR/traces.pb, OUT_DIR/traces.grpc, OUT_DIR/logs.pb and OUT_DIR/logs.grpc.

*.pb is the protobuf body for POST /v1/traces or /v1/logs; *.grpc the same message with the
5-byte gRPC prefix, for TraceService/Export or LogsService/Export. A log record carries the
span's attributes, a trace and span id, a severity and a ~25-byte body, so it is about as big
as a span. Deterministic (seeded). No dependencies.
"""
import os
import random
import struct
import sys


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def ld(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def vi(field, v):
    return varint(field << 3) + varint(v)


def fx64(field, v):
    return varint(field << 3 | 1) + struct.pack("<Q", v)


def fx32(field, v):
    return varint(field << 3 | 5) + struct.pack("<I", v)


def kv(key, any_value):
    return ld(1, key.encode()) + ld(2, any_value)


def s(key, v):
    return kv(key, ld(1, v.encode()))


def i(key, v):
    return kv(key, vi(3, v))


def d(key, v):
    return kv(key, varint(4 << 3 | 1) + struct.pack("<d", v))


def http_attributes(n):
    return [
        s("http.request.method", "GET"),
        s("http.route", "/users/{id}"),
        s("url.full", "https://api.example.com/users/%d" % (10000 + n)),
        s("server.address", "api.example.com"),
        i("server.port", 443),
        i("http.response.status_code", 200),
        s("network.protocol.version", "1.1"),
        s("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
        d("http.server.request.duration", 0.00325),
        s("url.scheme", "https"),
    ]


def main():
    args = sys.argv[1:]
    attributes = 7
    if len(args) == 3 and args[1] == "--attributes" and args[2].isdigit() and 0 <= int(args[2]) <= 10:
        attributes = int(args[2])
    elif len(args) != 1:
        sys.exit(__doc__)
    out = args[0]
    os.makedirs(out, exist_ok=True)
    random.seed(1)
    spans = b""
    for n in range(100):
        start = 1_760_000_000_000_000_000 + n * 1000
        attrs = http_attributes(n)
        span = (
            ld(1, random.randbytes(16))
            + ld(2, random.randbytes(8))
            + ld(4, random.randbytes(8))
            + ld(5, b"GET /users/{id}")
            + vi(6, 2)
            + fx64(7, start)
            + fx64(8, start + 3_250_000)
            + b"".join(ld(9, a) for a in attrs[:attributes])
            + ld(15, vi(3, 1))
            + fx32(16, 0x301)
        )
        spans += ld(2, span)
    resource = b"".join(
        ld(1, a)
        for a in [s("service.name", "checkout"), s("service.version", "2.14.1"), s("host.name", "ip-10-0-12-34")]
    )
    scope_spans = ld(1, ld(1, b"otel-http")) + spans
    write(out, "traces", ld(1, ld(1, resource) + ld(2, scope_spans)), "span")

    # Log records of the same shape (as big as a span): the same attributes, a trace context,
    # a short body. Their own generator, so the spans above stay byte for byte what they were.
    rng = random.Random(2)
    logs = b""
    for n in range(100):
        time = 1_760_000_000_000_000_000 + n * 1000
        log = (
            fx64(1, time)
            + vi(2, 9)
            + ld(3, b"INFO")
            + ld(5, ld(1, b"GET /users/%d handled" % (10000 + n)))
            + b"".join(ld(6, a) for a in http_attributes(n)[:attributes])
            + fx32(8, 1)
            + ld(9, rng.randbytes(16))
            + ld(10, rng.randbytes(8))
            + fx64(11, time + 150_000)
        )
        logs += ld(2, log)
    scope_logs = ld(1, ld(1, b"otel-http")) + logs
    write(out, "logs", ld(1, ld(1, resource) + ld(2, scope_logs)), "log record")


def write(out, name, body, item):
    with open(os.path.join(out, name + ".pb"), "wb") as f:
        f.write(body)
    with open(os.path.join(out, name + ".grpc"), "wb") as f:
        f.write(b"\x00" + struct.pack(">I", len(body)) + body)
    print("%s: %d bytes, %.0f bytes per %s" % (os.path.join(out, name + ".pb"), len(body), len(body) / 100, item))


if __name__ == "__main__":
    main()
