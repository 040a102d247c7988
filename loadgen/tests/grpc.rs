//! The OTLP/gRPC client against a stand-in receiver on hyper's HTTP/2 server: framing, gzip,
//! status in trailers or trailers-only answers, RetryInfo, partial success.

mod common;

use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadgen::payload::{Compression, Signal};
use loadgen::run::{Mode, RetryPolicy};
use loadgen::transport::{rpc, Outcome, Transport};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

/// A body of one data frame and then trailers.
struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl hyper::body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }
}

#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    items: AtomicU64,
    paths: Mutex<Vec<String>>,
    problems: Mutex<Vec<String>>,
}

async fn handle(req: Request<Incoming>, seen: Arc<Seen>) -> Result<Response<GrpcBody>, Infallible> {
    let seq = seen.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let problem = |p: String| seen.problems.lock().unwrap().push(p);
    if parts.headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/grpc") {
        problem(format!(
            "content-type {:?}",
            parts.headers.get("content-type")
        ));
    }
    if parts.headers.get("te").map(|v| v.as_bytes()) != Some(b"trailers") {
        problem("no te: trailers".into());
    }
    let gzip = parts.headers.get("grpc-encoding").map(|v| v.as_bytes()) == Some(b"gzip");
    let path = parts.uri.path().to_owned();
    seen.paths.lock().unwrap().push(path.clone());
    let body = body.collect().await.unwrap().to_bytes();
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    if body.len() != 5 + len || (body[0] == 1) != gzip {
        problem(format!(
            "bad framing: {} bytes, flag {}",
            body.len(),
            body[0]
        ));
    }
    let mut msg = body[5..].to_vec();
    if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(msg.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        msg = out;
    }
    let items = if path.ends_with("TraceService/Export") {
        let m = ExportTraceServiceRequest::decode(msg.as_slice()).unwrap();
        m.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum()
    } else {
        let m = ExportLogsServiceRequest::decode(msg.as_slice()).unwrap();
        m.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum::<u64>()
    };
    seen.items.fetch_add(items, Ordering::SeqCst);

    let trailers_only = |code: u32, details: Option<String>| {
        let mut r = Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", code.to_string())
            .header("grpc-message", "try%20later");
        if let Some(d) = details {
            r = r.header("grpc-status-details-bin", d);
        }
        r.body(GrpcBody {
            data: None,
            trailers: None,
        })
        .unwrap()
    };
    Ok(match seq {
        0 => {
            let info = rpc::RetryInfo {
                retry_delay: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 50_000_000,
                }),
            };
            let st = rpc::Status {
                code: 14,
                message: "try later".into(),
                details: vec![prost_types::Any {
                    type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                    value: info.encode_to_vec(),
                }],
            };
            let bin = base64::engine::general_purpose::STANDARD_NO_PAD.encode(st.encode_to_vec());
            trailers_only(14, Some(bin))
        }
        1 => trailers_only(8, None),
        _ => {
            let rejected = if seq == 2 { 3 } else { 0 };
            let resp = ExportTraceServiceResponse {
                partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: "3 spans had no id".into(),
                }),
            };
            let m = resp.encode_to_vec();
            let mut framed = vec![0u8];
            framed.extend_from_slice(&(m.len() as u32).to_be_bytes());
            framed.extend_from_slice(&m);
            let mut t = HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            Response::builder()
                .header("content-type", "application/grpc")
                .body(GrpcBody {
                    data: Some(Bytes::from(framed)),
                    trailers: Some(t),
                })
                .unwrap()
        }
    })
}

fn spawn_grpc() -> (SocketAddr, Arc<Seen>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            loop {
                let Ok((sock, _)) = l.accept().await else {
                    continue;
                };
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, seen.clone()));
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
    });
    (addr, seen)
}

#[test]
fn grpc_exports_statuses_retry_info_and_partial_success() {
    let (addr, seen) = spawn_grpc();
    let mut cfg = common::config(addr, Mode::Closed);
    cfg.target.transport = Transport::Grpc;
    cfg.target.http2 = true;
    cfg.target.compression = Compression::Gzip;
    cfg.inflight = 4;
    cfg.max_requests = Some(20);
    // A backoff of 6 s ± 50 %: at least 3 s if RetryInfo's 50 ms were ignored. (The run's
    // 5 s duration and 5 s timeout leave room for a 9 s wait, so that retry would happen.)
    let backoff = Duration::from_secs(6);
    assert!(
        backoff / 2 >= 3 * Duration::from_secs(1),
        "the bound below needs the margin"
    );
    cfg.retry = Some(RetryPolicy {
        max_retries: 2,
        initial_backoff: backoff,
        max_backoff: backoff,
        max_delay: Duration::from_secs(3),
    });
    let r = common::run_quiet(cfg);
    let c = &r.totals.counts;
    assert!(
        seen.problems.lock().unwrap().is_empty(),
        "{:?}",
        seen.problems
    );
    assert_eq!(c.requests, 20);
    assert_eq!(c.attempts, 21, "UNAVAILABLE was retried once");
    assert_eq!(c.retried.get(&Outcome::Unavailable), Some(&1));
    assert_eq!(c.retried_ok, 1);
    // RESOURCE_EXHAUSTED without RetryInfo is final.
    assert_eq!(c.outcome(Outcome::Throttled), 1);
    assert_eq!(c.partial(), 1);
    assert_eq!(c.ok(), 18);
    assert_eq!(c.items_rejected, 3);
    assert_eq!(c.items_accepted, 19 * 10 - 3);
    assert_eq!(seen.items.load(Ordering::SeqCst), 21 * 10);
    assert!(c.messages[&Outcome::Throttled].contains("try later"));
    // The retry waited RetryInfo's 50 ms, not the backoff (3 s at the least): under 1 s
    // leaves a noisy machine 950 ms.
    let slowest = Duration::from_nanos(r.totals.latency.max());
    assert!(slowest >= Duration::from_millis(50), "{slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(seen
        .paths
        .lock()
        .unwrap()
        .iter()
        .all(|p| p == "/opentelemetry.proto.collector.trace.v1.TraceService/Export"));

    // Logs go to LogsService/Export.
    let (addr, seen) = spawn_grpc();
    let mut cfg = common::config(addr, Mode::Closed);
    cfg.target.transport = Transport::Grpc;
    cfg.target.http2 = true;
    cfg.target.signal = Signal::Logs;
    cfg.payload.signal = Signal::Logs;
    cfg.max_requests = Some(5);
    let r = common::run_quiet(cfg);
    assert_eq!(r.totals.counts.requests, 5);
    assert!(seen
        .paths
        .lock()
        .unwrap()
        .iter()
        .all(|p| p == "/opentelemetry.proto.collector.logs.v1.LogsService/Export"));
}
