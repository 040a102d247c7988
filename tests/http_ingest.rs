//! OTLP/HTTP ingest over a real socket: every encoding, read back field for field.

mod common;

use std::io::Write;

use common::*;
use prost::Message;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn assert_trace_round_trips(
    server: &Server,
    req: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    trace: u64,
) {
    let answer = server.get(&format!("/api/v1/traces/{}", hex(&trace_id(trace))));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.content_type(), "application/json");
    let got = flat_spans(&spans_of_answer(&answer.body));
    let want: Vec<_> = flat_spans(&expected_batches(req))
        .into_iter()
        .filter(|(_, _, s)| s.trace_id.0[..] == trace_id(trace)[..])
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "trace {trace} differs after the round trip");
}

#[test]
fn protobuf_traces_round_trip_field_for_field() {
    let server = Server::start(2);
    let req = traces_request("checkout", 1, 20, 5);
    let r = server.post_traces(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "application/x-protobuf");
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            &r.body[..],
        )
        .unwrap();
    assert_eq!(resp.partial_success, None, "nothing was rejected");
    for t in 1..=20 {
        assert_trace_round_trips(&server, &req, t);
    }
}

#[test]
fn json_gzip_and_zstd_bodies_are_accepted() {
    let server = Server::start(2);
    // JSON, produced by the opentelemetry-proto crate's own serde mapping.
    let req = traces_request("json-svc", 100, 3, 3);
    let json = serde_json::to_vec(&req).unwrap();
    let r = server.post("/v1/traces", "application/json", None, json.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "application/json");
    assert_eq!(r.text(), "{}");
    for t in 100..103 {
        assert_trace_round_trips(&server, &req, t);
    }
    // gzip, protobuf.
    let req = traces_request("gzip-svc", 200, 3, 3);
    let r = server.post(
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        gzip(&req.encode_to_vec()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_trace_round_trips(&server, &req, 201);
    // zstd, JSON.
    let req = traces_request("zstd-svc", 300, 3, 3);
    let body = zstd::encode_all(&serde_json::to_vec(&req).unwrap()[..], 3).unwrap();
    let r = server.post("/v1/traces", "application/json", Some("zstd"), body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_trace_round_trips(&server, &req, 302);

    let services = server.get_json("/api/v1/services");
    let mut names: Vec<String> = serde_json::from_value(services["services"].clone()).unwrap();
    names.sort();
    assert_eq!(names, vec!["gzip-svc", "json-svc", "zstd-svc"]);
}

#[test]
fn invalid_spans_are_dropped_with_partial_success_and_the_rest_kept() {
    let server = Server::start(1);
    let mut req = traces_request("svc", 1, 1, 4);
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[1].trace_id = vec![0; 16];
    spans[2].span_id = vec![1, 2, 3];
    spans[3].end_time_unix_nano = spans[3].start_time_unix_nano - 1;
    let r = server.post_traces(&req);
    assert_eq!(r.status, 200);
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            &r.body[..],
        )
        .unwrap();
    let partial = resp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 3);
    assert_eq!(partial.error_message, "trace id is all zero");

    let json = server.get_json(&format!("/api/v1/traces/{}", hex(&trace_id(1))));
    let spans = json["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap();
    assert_eq!(spans.len(), 1, "only the valid span is stored");
    assert_eq!(spans[0]["name"], "op-0");

    // JSON answers name the counter in lowerCamelCase with an int64 string.
    let r = server.post(
        "/v1/traces",
        "application/json",
        None,
        serde_json::to_vec(&req).unwrap(),
    );
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "3");
}

#[test]
fn wrong_media_types_methods_and_paths() {
    let server = Server::start(1);
    let r = server.post("/v1/traces", "text/plain", None, b"hello".to_vec());
    assert_eq!(r.status, 415);
    let r = server.post(
        "/v1/traces",
        "application/x-protobuf",
        Some("br"),
        b"x".to_vec(),
    );
    assert_eq!(r.status, 415);
    let r = server.post("/v1/nothing", "application/x-protobuf", None, vec![]);
    assert_eq!(r.status, 404);
    let r = reqwest::blocking::get(server.otlp_url("/v1/traces")).unwrap();
    assert_eq!(r.status().as_u16(), 405);
    // An empty body is an empty, valid request.
    let r = server.post("/v1/traces", "application/x-protobuf", None, vec![]);
    assert_eq!(r.status, 200);
}

#[test]
fn undecodable_bodies_get_400_with_a_status_message() {
    let server = Server::start(1);
    let r = server.post(
        "/v1/traces",
        "application/x-protobuf",
        None,
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type(), "application/x-protobuf");
    let status = glust::otlp::rpc::Status::decode(&r.body[..]).unwrap();
    assert!(
        status.message.contains("malformed protobuf"),
        "{}",
        status.message
    );

    let r = server.post(
        "/v1/logs",
        "application/json",
        None,
        b"{\"resourceLogs\": [".to_vec(),
    );
    assert_eq!(r.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["message"].as_str().unwrap().contains("JSON"), "{v}");

    let r = server.post(
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn oversized_and_bomb_bodies_get_413() {
    let server = Server::start(1);
    let big = vec![0u8; glust::limits::REQUEST_WIRE_BYTES_MAX + 1];
    let r = server.post("/v1/traces", "application/x-protobuf", None, big);
    assert_eq!(r.status, 413);
    // 80 MiB of zeros compresses to ~80 KiB: more than the decoded limit.
    let bomb = gzip(&vec![
        0u8;
        glust::limits::REQUEST_DECODED_BYTES_MAX + (16 << 20)
    ]);
    assert!(bomb.len() < 1 << 20);
    let r = server.post("/v1/traces", "application/x-protobuf", Some("gzip"), bomb);
    assert_eq!(r.status, 413, "{}", r.text());
    // Still serving.
    let r = server.post_traces(&traces_request("after", 1, 1, 1));
    assert_eq!(r.status, 200);
}

#[test]
fn logs_round_trip_and_search() {
    let server = Server::start(2);
    let records = vec![
        log_record(1, Some(42), 9, "user logged in"),
        log_record(2, None, 13, "disk almost full"),
        log_record(3, Some(43), 17, "payment timed out"),
        log_record(4, None, 5, "debug noise"),
    ];
    let req = logs_request("billing", records);
    let r = server.post_logs(&req);
    assert_eq!(r.status, 200, "{}", r.text());

    let all = server.get_json("/api/v1/logs?service=billing");
    let recs = all["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        .as_array()
        .unwrap()
        .clone();
    let bodies: Vec<&str> = recs
        .iter()
        .map(|r| r["body"]["stringValue"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec![
            "debug noise",
            "payment timed out",
            "disk almost full",
            "user logged in"
        ],
        "newest first"
    );
    assert_eq!(
        all["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "billing"
    );

    let warn = server.get_json("/api/v1/logs?minSeverity=WARN");
    let n = warn["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 2);
    let c = server.get_json("/api/v1/logs?contains=timed%20out");
    let recs = c["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        .as_array()
        .unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["traceId"], hex(&trace_id(43)));
    assert_eq!(recs[0]["severityNumber"], 17);
    assert_eq!(recs[0]["timeUnixNano"], "1700000000003000000");
    let t = server.get_json(&format!("/api/v1/logs?traceId={}", hex(&trace_id(42))));
    let recs = t["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        .as_array()
        .unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["body"]["stringValue"], "user logged in");
    let none = server.get_json("/api/v1/logs?service=nobody");
    assert_eq!(none, serde_json::json!({"resourceLogs": []}));
    let limited = server.get_json("/api/v1/logs?limit=1");
    assert_eq!(
        limited["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn trace_search_filters() {
    let server = Server::start(2);
    assert_eq!(
        server
            .post_traces(&traces_request("frontend", 1, 10, 4))
            .status,
        200
    );
    assert_eq!(
        server
            .post_traces(&traces_request("backend", 11, 5, 2))
            .status,
        200
    );

    let all = server.get_json("/api/v1/traces?limit=100");
    let list = all["traces"].as_array().unwrap();
    assert_eq!(list.len(), 15);
    let starts: Vec<u64> = list
        .iter()
        .map(|t| t["startTimeUnixNano"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let front = server.get_json("/api/v1/traces?service=frontend&limit=100");
    assert_eq!(front["traces"].as_array().unwrap().len(), 10);
    let t = &front["traces"][0];
    assert_eq!(t["rootServiceName"], "frontend");
    assert_eq!(t["rootSpanName"], "op-0");
    assert_eq!(t["spanCount"], 4);
    assert_eq!(t["errorCount"], 2);

    let by_name = server.get_json("/api/v1/traces?name=op-3&limit=100");
    assert_eq!(by_name["traces"].as_array().unwrap().len(), 10);
    let by_attr = server.get_json("/api/v1/traces?attr=http.response.status_code=203&limit=100");
    assert_eq!(by_attr["traces"].as_array().unwrap().len(), 10);
    let by_res_attr = server.get_json("/api/v1/traces?attr=service.name=backend&attr=sampled=true");
    assert_eq!(by_res_attr["traces"].as_array().unwrap().len(), 5);
    let slow = server.get_json("/api/v1/traces?minDuration=5ms&maxDuration=1s&limit=3");
    assert_eq!(slow["traces"].as_array().unwrap().len(), 3);
    let too_slow = server.get_json("/api/v1/traces?minDuration=2s");
    assert_eq!(too_slow["traces"].as_array().unwrap().len(), 0);
    let window =
        server.get_json("/api/v1/traces?start=2023-11-14T22:13:21Z&end=1700000003500000000");
    assert_eq!(
        window["traces"].as_array().unwrap().len(),
        3,
        "traces 1, 2 and 3 start in the window"
    );

    assert_eq!(server.get("/api/v1/traces?minDuration=soon").status, 400);
    assert_eq!(server.get("/api/v1/traces/xyz").status, 400);
    assert_eq!(
        server
            .get(&format!("/api/v1/traces/{}", hex(&trace_id(999))))
            .status,
        404
    );
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/readyz").status, 200);
}

/// Reads one HTTP/1.1 answer with a `content-length` from `c`; returns its status line.
fn read_answer(c: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(
            c.read(&mut byte).unwrap(),
            1,
            "connection closed mid-answer"
        );
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    head.lines().next().unwrap().to_string()
}

#[test]
fn requests_that_arrive_in_pieces_are_read_whole() {
    // Each pause leaves the socket empty, so the server's reads wait for data in the middle
    // of a request's head and body, on a connection kept alive between requests.
    let server = Server::start(1);
    let mut c = std::net::TcpStream::connect(server.otlp).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let requests = [
        traces_request("pieces", 1, 3, 4),
        traces_request("pieces", 4, 2, 5),
    ];
    // Two requests on one keep-alive connection, each in 7 pieces.
    for req in &requests {
        let body = req.encode_to_vec();
        let mut wire = format!(
            "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        wire.extend_from_slice(&body);
        for piece in wire.chunks(wire.len() / 7 + 1) {
            c.write_all(piece).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let status = read_answer(&mut c);
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    for (req, traces) in requests.iter().zip([1..4, 4..6]) {
        for trace in traces {
            assert_trace_round_trips(&server, req, trace);
        }
    }
}

/// Each segment has its own part of the index: a trace (and its logs) whose records land in
/// several segments is still found whole, by id and by search, and after a restart too.
#[test]
fn a_trace_spread_over_segments_is_found_whole() {
    let mut server = Server::start(1);
    const SPREAD: u64 = 1_000_000;
    let rounds = 6u64;
    for round in 0..rounds {
        // One span of the spread trace, then enough others (~120 KB) that the 256 KiB test
        // segments roll every couple of rounds.
        let mut req = traces_request("spread", 10_000 * (round + 1), 100, 3);
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        spans.insert(0, rich_span(SPREAD, round));
        assert_eq!(server.post_traces(&req).status, 200);
        let log = log_record(round, Some(SPREAD), 9, &format!("spread log {round}"));
        assert_eq!(
            server.post_logs(&logs_request("spread", vec![log])).status,
            200
        );
    }
    let check = |server: &Server| {
        let metrics = server.get("/metrics").text();
        let segments = metrics
            .lines()
            .find_map(|l| l.strip_prefix("glust_segments "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("glust_segments");
        assert!(
            segments >= 3.0,
            "the test needs several segments, got {segments}"
        );
        let id = hex(&trace_id(SPREAD));
        let answer = server.get(&format!("/api/v1/traces/{id}"));
        assert_eq!(answer.status, 200);
        let spans: usize = spans_of_answer(&answer.body)
            .iter()
            .map(|b| b.spans.len())
            .sum();
        assert_eq!(spans, rounds as usize);
        let found = server.get_json("/api/v1/traces?service=spread&limit=1000");
        let summary = found["traces"]
            .as_array()
            .expect("traces")
            .iter()
            .find(|t| t["traceId"] == id.as_str())
            .expect("the spread trace is found")
            .clone();
        assert_eq!(summary["spanCount"], rounds);
        let logs = server.get_json(&format!("/api/v1/logs?traceId={id}&limit=100"));
        let records: usize = logs["resourceLogs"]
            .as_array()
            .expect("resourceLogs")
            .iter()
            .flat_map(|r| r["scopeLogs"].as_array().cloned().unwrap_or_default())
            .map(|s| s["logRecords"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(records, rounds as usize);
    };
    check(&server);
    server.restart();
    check(&server);
}
