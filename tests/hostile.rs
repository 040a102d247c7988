//! Hostile and broken input: random, truncated and mutated bodies, and overload. The server
//! answers each precisely, stays up, and keeps its data.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use prost::Message;

/// xorshift64*: deterministic, no extra dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn trace_total(server: &Server) -> usize {
    server.get_json("/api/v1/traces?limit=1000")["traces"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn random_truncated_and_mutated_bodies_harm_nothing() {
    let mut server = Server::start(2);
    let good = traces_request("keep", 1, 10, 3);
    assert_eq!(server.post_traces(&good).status, 200);
    let before = trace_total(&server);
    let mut rng = Rng(0x5eed);
    let encoded = good.encode_to_vec();
    let json = serde_json::to_vec(&good).unwrap();
    let logs = logs_request("keep", vec![log_record(1, Some(3), 9, "x")]).encode_to_vec();

    let mut statuses = std::collections::BTreeMap::new();
    let mut bodies: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    for i in 0..150 {
        let n = (rng.next() % 2000) as usize;
        bodies.push(("/v1/traces", "application/x-protobuf", rng.bytes(n)));
        bodies.push(("/v1/logs", "application/json", rng.bytes(n)));
        let cut = (rng.next() as usize) % encoded.len();
        bodies.push((
            "/v1/traces",
            "application/x-protobuf",
            encoded[..cut].to_vec(),
        ));
        let cut = (rng.next() as usize) % json.len();
        bodies.push(("/v1/traces", "application/json", json[..cut].to_vec()));
        let cut = (rng.next() as usize) % logs.len();
        bodies.push(("/v1/logs", "application/x-protobuf", logs[..cut].to_vec()));
        let mut m = encoded.clone();
        for _ in 0..1 + i % 8 {
            let at = (rng.next() as usize) % m.len();
            m[at] = rng.next() as u8;
        }
        bodies.push(("/v1/traces", "application/x-protobuf", m));
    }
    for (path, ct, body) in bodies {
        let r = server.post(path, ct, None, body);
        assert!(
            r.status == 200 || r.status == 400,
            "{path} {ct}: unexpected {} {}",
            r.status,
            r.text()
        );
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert!(
        statuses[&400] > 100,
        "most garbage is refused: {statuses:?}"
    );
    assert!(server.is_running());
    // Mutated requests may have stored valid-looking spans, but nothing of the original is lost.
    assert!(trace_total(&server) >= before);
    for t in 1..=10 {
        let json = server.get_json(&format!("/api/v1/traces/{}", hex(&trace_id(t))));
        assert!(!json["resourceSpans"].as_array().unwrap().is_empty());
    }
    server.restart();
    for t in 1..=10 {
        assert_eq!(
            server
                .get(&format!("/api/v1/traces/{}", hex(&trace_id(t))))
                .status,
            200
        );
    }
}

#[test]
fn deeply_nested_values_do_not_crash() {
    let server = Server::start(1);
    // 100,000 nested arrays: {"arrayValue":{"values":[{"arrayValue":...
    let depth = 100_000;
    let mut json = String::from(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"n","attributes":[{"key":"k","value":"#,
    );
    for _ in 0..depth {
        json.push_str(r#"{"arrayValue":{"values":["#);
    }
    for _ in 0..depth {
        json.push_str("]}}");
    }
    json.push_str("}]}]}]}]}");
    let r = server.post("/v1/traces", "application/json", None, json.into_bytes());
    assert_eq!(r.status, 400);
    // The same in protobuf: nested ArrayValue messages.
    let mut value: Vec<u8> = vec![];
    for _ in 0..50_000 {
        // AnyValue{ array_value(5): ArrayValue{ values(1): value } }
        let mut arr = vec![0x0a];
        push_varint(&mut arr, value.len() as u64);
        arr.extend_from_slice(&value);
        let mut any = vec![0x2a];
        push_varint(&mut any, arr.len() as u64);
        any.extend_from_slice(&arr);
        value = any;
    }
    let mut kv = vec![0x0a, 0x01, b'k', 0x12];
    push_varint(&mut kv, value.len() as u64);
    kv.extend_from_slice(&value);
    let mut span =
        traces_request("deep", 1, 1, 1).resource_spans[0].scope_spans[0].spans[0].encode_to_vec();
    span.push(0x4a); // attributes (9), length-delimited
    push_varint(&mut span, kv.len() as u64);
    span.extend_from_slice(&kv);
    let mut scope_spans = vec![0x12];
    push_varint(&mut scope_spans, span.len() as u64);
    scope_spans.extend_from_slice(&span);
    let mut rs = vec![0x12];
    push_varint(&mut rs, scope_spans.len() as u64);
    rs.extend_from_slice(&scope_spans);
    let mut req = vec![0x0a];
    push_varint(&mut req, rs.len() as u64);
    req.extend_from_slice(&rs);
    let r = server.post("/v1/traces", "application/x-protobuf", None, req);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(server.get("/healthz").status, 200);
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[test]
fn overload_gets_429_with_retry_after_and_writes_nothing() {
    let server = Server::start(1);
    // Hold more requests open than one shard works on at once: headers sent, body not.
    let mut held = Vec::new();
    for _ in 0..glust::limits::SHARD_INGEST_INFLIGHT_MAX + 8 {
        let mut c = TcpStream::connect(server.otlp).unwrap();
        c.write_all(
            b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 100\r\n\r\n",
        )
        .unwrap();
        held.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    let refused = traces_request("refused", 777, 1, 1);
    let r = server.post_traces(&refused);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    let status = glust::otlp::rpc::Status::decode(&r.body[..]).unwrap();
    assert!(status.message.contains("retry"), "{}", status.message);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server
            .get(&format!("/api/v1/traces/{}", hex(&trace_id(777))))
            .status,
        404,
        "a refused request wrote nothing"
    );
    assert_eq!(
        server.post_traces(&refused).status,
        200,
        "the retry succeeds"
    );
    assert_eq!(
        server
            .get(&format!("/api/v1/traces/{}", hex(&trace_id(777))))
            .status,
        200
    );
}

#[test]
fn bodies_that_would_decode_into_gigabytes_get_413() {
    let server = Server::start(1);
    // 8 million empty spans: 16 MiB of protobuf (gzip makes it tiny), gigabytes decoded.
    let n = 8 << 20;
    let mut spans = Vec::with_capacity(2 * n);
    for _ in 0..n {
        spans.extend_from_slice(&[0x12, 0x00]);
    }
    let wrap = |field: u8, inner: &[u8]| {
        let mut out = vec![field];
        push_varint(&mut out, inner.len() as u64);
        out.extend_from_slice(inner);
        out
    };
    let body = wrap(0x0a, &wrap(0x12, &spans));
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&body).unwrap();
    let r = server.post(
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        e.finish().unwrap(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("send smaller batches"), "{}", r.text());
    assert_eq!(
        server.post_traces(&traces_request("ok", 1, 1, 1)).status,
        200
    );
}

#[test]
fn json_bodies_that_would_decode_into_gigabytes_get_413() {
    let server = Server::start(1);
    // Ten million empty spans: ~30 MB of JSON, gzip-compressed to well under the wire limit.
    let mut json = String::from(r#"{"resourceSpans":[{"scopeSpans":[{"spans":["#);
    json.push_str(&"{},".repeat(10_000_000));
    json.push_str("{}]}]}]}");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(json.as_bytes()).unwrap();
    let r = server.post(
        "/v1/traces",
        "application/json",
        Some("gzip"),
        e.finish().unwrap(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(
        server.post_traces(&traces_request("ok", 1, 1, 1)).status,
        200
    );
}

#[test]
fn slow_clients_are_cut_off() {
    use std::io::Read;
    let server = Server::start_with(
        1,
        &[
            "--header-read-timeout",
            "500ms",
            "--body-read-timeout",
            "500ms",
        ],
    );
    // Headers that never finish: the connection is closed.
    let mut c = TcpStream::connect(server.otlp).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    let _ = c.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the server, not by our timeout"
    );
    // A body that never finishes: 408.
    let mut c = TcpStream::connect(server.otlp).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(
        b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 100\r\n\r\nabc",
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert_eq!(
        server.post_traces(&traces_request("ok", 1, 1, 1)).status,
        200
    );
}
