#!/usr/bin/env python3
"""Write one OTLP ExportTraceServiceRequest of 100 spans for benchmarks with generic HTTP tools,
as used in BENCHMARKS.md:

    scripts/make-payload.py OUT_DIR                  # 7 attributes: ~320 B per span (issue 4's shape)
    scripts/make-payload.py OUT_DIR --attributes 10  # ~460 B per span (the first BENCHMARKS figures)

writes OUT_DIR/traces.pb and OUT_DIR/traces.grpc.

traces.pb is the protobuf body for POST /v1/traces; traces.grpc the same message with the
5-byte gRPC prefix, for TraceService/Export. Deterministic (seeded). No dependencies.
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
        attrs = [
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
    body = ld(1, ld(1, resource) + ld(2, scope_spans))
    with open(os.path.join(out, "traces.pb"), "wb") as f:
        f.write(body)
    with open(os.path.join(out, "traces.grpc"), "wb") as f:
        f.write(b"\x00" + struct.pack(">I", len(body)) + body)
    print("%s: %d bytes, %.0f bytes per span" % (os.path.join(out, "traces.pb"), len(body), len(body) / 100))


if __name__ == "__main__":
    main()
