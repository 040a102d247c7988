//! OTLP/gRPC over a real socket: the OpenTelemetry SDK's tonic exporter, and a hand-rolled
//! HTTP/2 client (the h2 crate) for the edge cases of gRPC framing.

mod common;

use bytes::Bytes;
use common::*;
use prost::Message;

const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// What a gRPC call answered.
#[derive(Debug)]
struct Answer {
    http: u16,
    status: Option<u32>,
    message: String,
    details: Option<String>,
    body: Vec<u8>,
}

fn frame(message: &[u8], compressed: bool) -> Vec<u8> {
    let mut out = vec![compressed as u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

async fn connect(server: &Server) -> h2::client::SendRequest<Bytes> {
    h2_connect(server.grpc).await
}

async fn call(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://glust{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut c = client.clone().ready().await.unwrap();
    let (resp, mut send) = c.send_request(req.body(()).unwrap(), false).unwrap();
    // The server may answer (and close the stream) from the headers alone, before the body.
    let _ = send.send_data(Bytes::from(body), true);
    let resp = resp.await.unwrap();
    let http = resp.status().as_u16();
    let head = resp.headers().clone();
    let mut recv = resp.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.unwrap().unwrap_or_default();
    let get = |k: &str| {
        trailers
            .get(k)
            .or_else(|| head.get(k))
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Answer {
        http,
        status: get("grpc-status").map(|s| s.parse().unwrap()),
        message: get("grpc-message").unwrap_or_default(),
        details: get("grpc-status-details-bin"),
        body,
    }
}

#[test]
fn export_round_trips_field_for_field_with_partial_success() {
    let server = Server::start(2);
    let mut req = traces_request("grpc-svc", 1, 10, 3);
    req.resource_spans[0].scope_spans[0].spans[4].trace_id = vec![0; 16];
    let (sent, wire) = runtime().block_on(async {
        let mut client = connect(&server).await;
        let traces_frame = frame(&req.encode_to_vec(), false);
        let mut wire = traces_frame.len();
        let a = call(&mut client, TRACES, &[], traces_frame).await;
        assert_eq!((a.http, a.status), (200, Some(0)), "{a:?}");
        let resp =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
                &a.body[5..],
            )
            .unwrap();
        let partial = resp.partial_success.unwrap();
        assert_eq!(partial.rejected_spans, 1);
        assert_eq!(partial.error_message, "trace id is all zero");

        let logs = logs_request("grpc-svc", vec![log_record(1, Some(2), 17, "over grpc")]);
        let logs_frame = gzip_frame(&logs.encode_to_vec());
        wire += logs_frame.len();
        let a = call(&mut client, LOGS, &[("grpc-encoding", "gzip")], logs_frame).await;
        assert_eq!(a.status, Some(0), "{a:?}");
        (
            (req.encode_to_vec().len() + logs.encode_to_vec().len()) as f64,
            wire as f64,
        )
    });
    // gRPC counts like HTTP: per transport histograms, items by outcome and reason, bytes
    // after decompression.
    let metrics = server.get("/metrics").text();
    for (name, want) in [
        ("glust_requests_total", 2.0),
        ("glust_request_grpc_traces_seconds_count", 1.0),
        ("glust_request_grpc_logs_seconds_count", 1.0),
        ("glust_request_http_traces_seconds_count", 0.0),
        ("glust_spans_accepted_total", 29.0),
        ("glust_spans_rejected_total{reason=\"trace_id\"}", 1.0),
        ("glust_spans_rejected_total{reason=\"span_id\"}", 0.0),
        ("glust_logs_accepted_total", 1.0),
        ("glust_bytes_received_total", sent),
        ("glust_bytes_received_wire_total", wire),
    ] {
        assert_eq!(metric(&metrics, name), want, "{name}");
    }
    for t in [1u64, 3, 10] {
        let answer = server.get(&format!("/api/v1/traces/{}", hex(&trace_id(t))));
        let got = flat_spans(&spans_of_answer(&answer.body));
        let want: Vec<_> = flat_spans(&expected_batches(&req))
            .into_iter()
            .filter(|(_, _, s)| s.trace_id.0[..] == trace_id(t)[..])
            .collect();
        assert_eq!(got, want);
    }
    let logs = server.get_json("/api/v1/logs?contains=over%20grpc");
    assert_eq!(
        logs["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn gzip_frame(message: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(message).unwrap();
    frame(&e.finish().unwrap(), true)
}

#[test]
fn framing_edge_cases_get_precise_statuses_and_harm_nothing() {
    let server = Server::start(1);
    let good = traces_request("edge", 1, 2, 2).encode_to_vec();
    runtime().block_on(async {
        let mut c = connect(&server).await;
        // Not gRPC at all: plain HTTP 415.
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://glust{TRACES}"))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let mut ready = c.clone().ready().await.unwrap();
        let (resp, mut send) = ready.send_request(req, false).unwrap();
        let _ = send.send_data(Bytes::from_static(b"{}"), true);
        assert_eq!(resp.await.unwrap().status().as_u16(), 415);
        // Unknown service and method.
        let a = call(
            &mut c,
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            &[],
            frame(&good, false),
        )
        .await;
        assert_eq!(a.status, Some(12), "{a:?}");
        let a = call(&mut c, "/foo.Bar/Baz", &[], frame(&good, false)).await;
        assert_eq!(a.status, Some(12));
        // Truncated prefix, truncated message, two messages.
        let a = call(&mut c, TRACES, &[], vec![0, 0, 0]).await;
        assert_eq!(a.status, Some(13), "{a:?}");
        let f = frame(&good, false);
        let a = call(&mut c, TRACES, &[], f[..f.len() - 3].to_vec()).await;
        assert_eq!(a.status, Some(13));
        assert!(a.message.contains("truncated"), "{}", a.message);
        let mut two = f.clone();
        two.extend_from_slice(&f);
        let a = call(&mut c, TRACES, &[], two).await;
        assert_eq!(a.status, Some(13));
        // Compressed flag without grpc-encoding.
        let a = call(&mut c, TRACES, &[], gzip_frame(&good)).await;
        assert_eq!(a.status, Some(13));
        assert!(a.message.contains("grpc-encoding"), "{}", a.message);
        // An encoding we do not speak.
        let a = call(
            &mut c,
            TRACES,
            &[("grpc-encoding", "snappy")],
            frame(&good, true),
        )
        .await;
        assert_eq!(a.status, Some(12));
        // Undecodable protobuf.
        let a = call(&mut c, TRACES, &[], frame(&[0x0a, 0xff, 0xff], false)).await;
        assert_eq!(a.status, Some(3), "{a:?}");
        // Oversized: the prefix announces more than the limit.
        let mut huge = vec![0u8];
        huge.extend_from_slice(&(glust::limits::GRPC_MESSAGE_BYTES_MAX as u32 + 1).to_be_bytes());
        let a = call(&mut c, TRACES, &[], huge).await;
        assert_eq!(a.status, Some(8), "{a:?}");
        // A deadline that has already passed: nothing is written.
        let late = traces_request("late", 500, 1, 1).encode_to_vec();
        let a = call(
            &mut c,
            TRACES,
            &[("grpc-timeout", "1n")],
            frame(&late, false),
        )
        .await;
        assert_eq!(a.status, Some(4), "{a:?}");
        // A generous deadline is fine.
        let a = call(
            &mut c,
            TRACES,
            &[("grpc-timeout", "10S")],
            frame(&good, false),
        )
        .await;
        assert_eq!(a.status, Some(0), "{a:?}");
    });
    assert_eq!(
        server
            .get(&format!("/api/v1/traces/{}", hex(&trace_id(500))))
            .status,
        404
    );
    assert_eq!(
        server
            .get(&format!("/api/v1/traces/{}", hex(&trace_id(1))))
            .status,
        200
    );
}

#[test]
fn many_parallel_streams_on_one_connection() {
    let server = Server::start(2);
    runtime().block_on(async {
        let client = connect(&server).await;
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let mut c = client.clone();
            tasks.push(tokio::spawn(async move {
                let req = traces_request("parallel", 1000 + i * 3, 3, 2);
                let a = call(&mut c, TRACES, &[], frame(&req.encode_to_vec(), false)).await;
                assert_eq!(a.status, Some(0), "{a:?}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let all = server.get_json("/api/v1/traces?service=parallel&limit=1000");
    assert_eq!(all["traces"].as_array().unwrap().len(), 600);
}

#[test]
fn the_sdk_tonic_exporter_exports_traces_and_logs() {
    use opentelemetry::logs::{
        AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
    };
    use opentelemetry::trace::{TraceContextExt, Tracer as _, TracerProvider as _};
    use opentelemetry_otlp::WithExportConfig;

    let server = Server::start(2);
    let endpoint = format!("http://{}", server.grpc);
    let rt = runtime();
    let trace_id = rt.block_on(async {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .expect("tonic span exporter");
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("tonic-svc")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("tonic-test");
        let id = tracer.in_span("grpc-root", |cx| {
            tracer.in_span("grpc-child", |_| {});
            cx.span().span_context().trace_id().to_string()
        });
        let p = provider.clone();
        tokio::task::spawn_blocking(move || {
            p.force_flush().expect("flush");
            p.shutdown().expect("shutdown");
        })
        .await
        .unwrap();

        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .expect("tonic log exporter");
        let logs = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("tonic-svc")
                    .build(),
            )
            .build();
        let logger = logs.logger("tonic-test");
        let mut rec = logger.create_log_record();
        rec.set_severity_number(Severity::Error);
        rec.set_body(LogValue::from("sent over tonic".to_owned()));
        logger.emit(rec);
        tokio::task::spawn_blocking(move || {
            logs.force_flush().expect("flush");
            logs.shutdown().expect("shutdown");
        })
        .await
        .unwrap();
        id
    });
    let json = server.get_json(&format!("/api/v1/traces/{trace_id}"));
    let names: Vec<String> = json["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["scopeSpans"].as_array().unwrap().clone())
        .flat_map(|s| s["spans"].as_array().unwrap().clone())
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{json}");
    assert!(names.contains(&"grpc-root".to_owned()) && names.contains(&"grpc-child".to_owned()));
    let logs = server.get_json("/api/v1/logs?service=tonic-svc");
    let recs = logs["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        .as_array()
        .unwrap();
    assert_eq!(recs[0]["body"]["stringValue"], "sent over tonic");
}

#[test]
fn overload_is_unavailable_with_retry_info_and_writes_nothing() {
    let server = Server::start(1);
    runtime().block_on(async {
        // Hold more streams open than the shard works on at once: headers sent, body not.
        let mut held = Vec::new();
        let per_conn = 200;
        for _ in 0..glust::limits::SHARD_INGEST_INFLIGHT_MAX / per_conn + 1 {
            let client = connect(&server).await;
            for _ in 0..per_conn {
                let req = http::Request::builder()
                    .method("POST")
                    .uri(format!("http://glust{TRACES}"))
                    .header("content-type", "application/grpc")
                    .body(())
                    .unwrap();
                let mut c = client.clone().ready().await.unwrap();
                let (resp, send) = c.send_request(req, false).unwrap();
                held.push((resp, send));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let mut c = connect(&server).await;
        let refused = traces_request("refused", 900, 1, 1);
        let a = call(&mut c, TRACES, &[], frame(&refused.encode_to_vec(), false)).await;
        assert_eq!(a.status, Some(14), "{a:?}");
        let details = a.details.expect("RetryInfo in grpc-status-details-bin");
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(details.trim_end_matches('='))
            .unwrap();
        assert!(
            raw.windows(b"google.rpc.RetryInfo".len())
                .any(|w| w == b"google.rpc.RetryInfo"),
            "details carry a RetryInfo"
        );
        drop(held);
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        server
            .get(&format!("/api/v1/traces/{}", hex(&trace_id(900))))
            .status,
        404
    );
    // Counted as throttled; refused before its body was read, so no span of it is counted.
    let metrics = server.get("/metrics").text();
    assert!(metric(&metrics, "glust_requests_throttled_total") >= 1.0);
    assert_eq!(metric(&metrics, "glust_spans_accepted_total"), 0.0);
    assert_eq!(
        metric(&metrics, "glust_spans_dropped_total{reason=\"throttled\"}"),
        0.0
    );
}

#[test]
fn sigterm_sends_goaway_and_streams_in_flight_finish() {
    let mut server = Server::start(2);
    let pid = server.pid();
    let acked: Vec<u64> = runtime().block_on(async {
        let client = connect(&server).await;
        let mut tasks = Vec::new();
        for w in 0..16u64 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..400u64 {
                    let t = 10_000 + w * 1000 + i;
                    let req = traces_request("term", t, 1, 2);
                    let mut c = match client.clone().ready().await {
                        Ok(c) => c,
                        Err(_) => break, // GOAWAY: no new streams on this connection
                    };
                    let http_req = http::Request::builder()
                        .method("POST")
                        .uri(format!("http://glust{TRACES}"))
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let Ok((resp, mut send)) = c.send_request(http_req, false) else {
                        break;
                    };
                    if send.send_data(Bytes::from(frame(&req.encode_to_vec(), false)), true).is_err() {
                        break;
                    }
                    let Ok(resp) = resp.await else { break };
                    let mut body = resp.into_body();
                    while let Some(Ok(_)) = body.data().await {}
                    let ok = matches!(body.trailers().await, Ok(Some(t)) if t.get("grpc-status").is_some_and(|s| s == "0"));
                    if ok {
                        acked.push(t);
                    }
                }
                acked
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    assert_eq!(server.wait_exit(), 0, "log:\n{}", server.log());
    assert!(!acked.is_empty());
    server.spawn();
    for t in acked.iter().step_by(13) {
        assert_eq!(
            server
                .get(&format!("/api/v1/traces/{}", hex(&trace_id(*t))))
                .status,
            200,
            "acknowledged trace {t} is stored"
        );
    }
}

#[test]
fn the_bad_input_corpus_over_grpc_harms_nothing() {
    let mut server = Server::start(2);
    let good = traces_request("keep", 1, 10, 3);
    let encoded = good.encode_to_vec();
    let logs = logs_request("keep", vec![log_record(1, Some(3), 9, "x")]).encode_to_vec();
    let mut seed = 0x9e37_79b9_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let statuses = runtime().block_on(async {
        let mut c = connect(&server).await;
        let a = call(&mut c, TRACES, &[], frame(&encoded, false)).await;
        assert_eq!(a.status, Some(0));
        let mut statuses = std::collections::BTreeMap::new();
        for i in 0..300usize {
            let (path, body) = match i % 4 {
                0 => (
                    TRACES,
                    (0..(next() % 2000))
                        .map(|_| next() as u8)
                        .collect::<Vec<u8>>(),
                ),
                1 => (
                    TRACES,
                    encoded[..(next() as usize) % encoded.len()].to_vec(),
                ),
                2 => (LOGS, logs[..(next() as usize) % logs.len()].to_vec()),
                _ => {
                    let mut m = encoded.clone();
                    for _ in 0..1 + i % 8 {
                        let at = (next() as usize) % m.len();
                        m[at] = next() as u8;
                    }
                    (TRACES, m)
                }
            };
            // Both well-framed garbage and garbage framing.
            let framed = if i % 3 == 0 {
                body
            } else {
                frame(&body, false)
            };
            let a = call(&mut c, path, &[], framed).await;
            let code = a.status.expect("every answer carries a grpc-status");
            assert!([0, 3, 8, 13].contains(&code), "unexpected status {a:?}");
            *statuses.entry(code).or_insert(0) += 1;
        }
        statuses
    });
    assert!(
        statuses.get(&3).copied().unwrap_or(0) + statuses.get(&13).copied().unwrap_or(0) > 150,
        "{statuses:?}"
    );
    assert!(server.is_running());
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
