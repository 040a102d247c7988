//! The client side of OTLP/HTTP (protobuf, JSON) and OTLP/gRPC on hyper's HTTP/1.1 and HTTP/2
//! client connections, and the classification of every answer as the report counts it.
//!
//! gRPC is done by hand on HTTP/2 (one length-prefixed message each way, `grpc-status` in the
//! trailers or in a trailers-only answer, `google.rpc.RetryInfo` in `grpc-status-details-bin`),
//! which works against any OTLP/gRPC receiver and lets a pre-encoded body be sent as it is.

use std::cell::Cell;
use std::io::Read as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::{Buf as _, Bytes};
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::payload::{Compression, Signal, Wire};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// OTLP/HTTP, `application/x-protobuf` (port 4318).
    #[value(name = "http-protobuf", alias = "http", alias = "proto")]
    HttpProtobuf,
    /// OTLP/HTTP, `application/json` (port 4318).
    #[value(name = "http-json", alias = "json")]
    HttpJson,
    /// OTLP/gRPC over HTTP/2 (port 4317).
    Grpc,
}

impl Transport {
    pub fn wire(self) -> Wire {
        match self {
            Transport::HttpProtobuf => Wire::Protobuf,
            Transport::HttpJson => Wire::Json,
            Transport::Grpc => Wire::Grpc,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Transport::Grpc => 4317,
            _ => 4318,
        }
    }
}

/// Where and how requests go.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` for `Host` / `:authority`.
    pub authority: String,
    pub transport: Transport,
    pub signal: Signal,
    pub compression: Compression,
    /// HTTP/2 (prior knowledge) rather than HTTP/1.1; always for gRPC.
    pub http2: bool,
    /// Per attempt: connect, send, answer.
    pub timeout: Duration,
}

impl Target {
    pub fn path(&self) -> &'static str {
        match (self.transport, self.signal) {
            (Transport::Grpc, Signal::Traces) => {
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            }
            (Transport::Grpc, Signal::Logs) => {
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
            }
            (_, Signal::Traces) => "/v1/traces",
            (_, Signal::Logs) => "/v1/logs",
        }
    }

    pub fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let uri = if self.http2 {
            format!("http://{}{}", self.authority, self.path())
        } else {
            self.path().to_owned()
        };
        let mut b = Request::post(uri).header(header::USER_AGENT, "glust-loadgen/0.1");
        if !self.http2 {
            b = b.header(header::HOST, &self.authority);
        }
        match self.transport {
            Transport::Grpc => {
                b = b
                    .header(header::CONTENT_TYPE, "application/grpc")
                    .header(header::TE, "trailers")
                    .header("grpc-accept-encoding", "identity,gzip")
                    .header(
                        "grpc-timeout",
                        format!("{}m", self.timeout.as_millis().clamp(1, 99_999_999)),
                    );
                if let Some(enc) = self.compression.header() {
                    b = b.header("grpc-encoding", enc);
                }
            }
            Transport::HttpProtobuf | Transport::HttpJson => {
                let ct = if self.transport == Transport::HttpJson {
                    "application/json"
                } else {
                    "application/x-protobuf"
                };
                b = b.header(header::CONTENT_TYPE, ct);
                if let Some(enc) = self.compression.header() {
                    b = b.header(header::CONTENT_ENCODING, enc);
                }
            }
        }
        b.body(Full::new(body)).expect("a valid request")
    }
}

/// What one attempt came to, as counted in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// 2xx (gRPC OK) without partial success.
    Ok,
    /// 2xx (gRPC OK) with `partial_success` (rejected items, or a warning message).
    Partial,
    /// HTTP 429, gRPC RESOURCE_EXHAUSTED.
    Throttled,
    /// HTTP 503, gRPC UNAVAILABLE.
    Unavailable,
    /// Any other HTTP status (also an HTTP-level refusal of a gRPC call).
    Http(u16),
    /// Any other gRPC status.
    Grpc(u32),
    /// TCP connect or HTTP handshake failed.
    Connect,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection broke mid-request.
    Io,
    /// An answer that is not what the protocol says (e.g. gRPC without a status).
    Protocol,
}

impl Outcome {
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Partial)
    }

    /// A short name for progress lines and the report.
    pub fn label(self) -> String {
        match self {
            Outcome::Ok => "2xx".into(),
            Outcome::Partial => "partial".into(),
            Outcome::Throttled => "429".into(),
            Outcome::Unavailable => "503".into(),
            Outcome::Http(c) => format!("http-{c}"),
            Outcome::Grpc(c) => format!("grpc-{}", grpc_code_name(c)),
            Outcome::Connect => "connect".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Io => "io".into(),
            Outcome::Protocol => "protocol".into(),
        }
    }
}

pub fn grpc_code_name(c: u32) -> &'static str {
    match c {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "?",
    }
}

/// One attempt's answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub outcome: Outcome,
    /// Whether the OTLP rules allow a retry.
    pub retryable: bool,
    /// `Retry-After` (HTTP) or `RetryInfo.retry_delay` (gRPC).
    pub retry_after: Option<Duration>,
    /// Items the receiver said it rejected (partial success).
    pub rejected: i64,
    /// The receiver's message (error or partial-success warning), if any.
    pub message: Option<String>,
    /// Whether the request was handed to a connection, so that its body may have gone on the
    /// wire: false when connecting failed (or timed out) first.
    pub sent: bool,
}

impl Answer {
    fn failure(outcome: Outcome, message: impl Into<String>) -> Answer {
        Answer {
            outcome,
            retryable: true,
            retry_after: None,
            rejected: 0,
            message: Some(message.into()),
            sent: false,
        }
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

async fn connect(target: &Target) -> Result<Sender, Answer> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| Answer::failure(Outcome::Connect, format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let io = TokioIo::new(tcp);
    let handshake_err =
        |e: hyper::Error| Answer::failure(Outcome::Connect, format!("handshake: {e}"));
    if target.http2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(1 << 20)
            .handshake(io)
            .await
            .map_err(handshake_err)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io).await.map_err(handshake_err)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H1(sender))
    }
}

/// A client connection, reconnected when it breaks. HTTP/1.1: one request at a time (the
/// sender is taken out while a request is in flight, so an abandoned request closes the
/// connection). HTTP/2: shared by any number of concurrent requests.
pub struct Conn {
    target: Target,
    sender: Mutex<Option<Sender>>,
}

impl Conn {
    pub fn new(target: Target) -> Conn {
        Conn {
            target,
            sender: Mutex::new(None),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Connects now if not connected (before the run starts, so that the first exports do not
    /// pay for it). Failures are left for the first export to meet.
    pub async fn warm_up(&self) {
        let mut guard = self.sender.lock().await;
        if guard.is_none() {
            if let Ok(Ok(s)) =
                tokio::time::timeout(self.target.timeout, connect(&self.target)).await
            {
                *guard = Some(s);
            }
        }
    }

    /// Sends one export; never longer than the target's timeout. The answer's `sent` says
    /// whether the request got as far as a connection (for the byte counts).
    pub async fn export(&self, body: Bytes) -> Answer {
        let handed = Cell::new(false);
        let answer =
            match tokio::time::timeout(self.target.timeout, self.export_inner(body, &handed)).await
            {
                Ok(a) => a,
                Err(_) => Answer::failure(Outcome::Timeout, "timed out"),
            };
        Answer {
            sent: handed.get(),
            ..answer
        }
    }

    /// `handed` is set once the request is given to a ready connection.
    async fn export_inner(&self, body: Bytes, handed: &Cell<bool>) -> Answer {
        let mut guard = self.sender.lock().await;
        if guard.as_ref().is_none_or(|s| s.is_closed()) {
            *guard = None;
            match connect(&self.target).await {
                Ok(s) => *guard = Some(s),
                Err(a) => return a,
            }
        }
        let req = self.target.request(body);
        let result = match guard.as_mut().expect("connected above") {
            Sender::H2(s) => {
                let mut s = s.clone();
                drop(guard);
                match s.ready().await {
                    Ok(()) => {
                        handed.set(true);
                        s.send_request(req).await
                    }
                    Err(e) => Err(e),
                }
            }
            Sender::H1(_) => {
                // Taken out: put back only once the whole answer is in.
                let Some(Sender::H1(mut s)) = guard.take() else {
                    unreachable!()
                };
                let res = match s.ready().await {
                    Ok(()) => {
                        handed.set(true);
                        s.send_request(req).await
                    }
                    Err(e) => Err(e),
                };
                match res {
                    Ok(resp) => {
                        let answer = self.read_answer(resp).await;
                        if answer.outcome != Outcome::Io && answer.outcome != Outcome::Protocol {
                            *guard = Some(Sender::H1(s));
                        }
                        return answer;
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(resp) => self.read_answer(resp).await,
            Err(e) => Answer::failure(Outcome::Io, format!("request: {e}")),
        }
    }

    async fn read_answer(&self, resp: Response<Incoming>) -> Answer {
        let (parts, body) = resp.into_parts();
        let collected = match Limited::new(body, 4 << 20).collect().await {
            Ok(c) => c,
            Err(e) => return Answer::failure(Outcome::Io, format!("reading the answer: {e}")),
        };
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes();
        match self.target.transport {
            Transport::Grpc => grpc_answer(
                self.target.signal,
                parts.status,
                &parts.headers,
                trailers.as_ref(),
                &body,
            ),
            _ => http_answer(self.target.signal, parts.status, &parts.headers, &body),
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Classifies an OTLP/HTTP answer.
pub fn http_answer(signal: Signal, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
    let code = status.as_u16();
    if status.is_success() {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let (rejected, message) = if json {
            partial_from_json(signal, body)
        } else {
            partial_from_proto(signal, body)
        };
        let partial = rejected > 0 || message.is_some();
        return Answer {
            outcome: if partial {
                Outcome::Partial
            } else {
                Outcome::Ok
            },
            retryable: false,
            retry_after: None,
            rejected,
            message,
            sent: true,
        };
    }
    let outcome = match code {
        429 => Outcome::Throttled,
        503 => Outcome::Unavailable,
        c => Outcome::Http(c),
    };
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    Answer {
        outcome,
        retryable: matches!(code, 429 | 502 | 503 | 504),
        retry_after: retry_after(headers),
        rejected: 0,
        message: Some(format!("HTTP {code}: {text}")),
        sent: true,
    }
}

fn partial_from_proto(signal: Signal, body: &[u8]) -> (i64, Option<String>) {
    let p = match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records, p.error_message)),
    };
    match p {
        Some((n, m)) => (n, (!m.is_empty()).then_some(m)),
        None => (0, None),
    }
}

fn partial_from_json(signal: Signal, body: &[u8]) -> (i64, Option<String>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (0, None);
    };
    let Some(p) = v.get("partialSuccess") else {
        return (0, None);
    };
    let key = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Logs => "rejectedLogRecords",
    };
    let n = match p.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    };
    let m = p
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    (n, m)
}

/// `google.rpc.Status` and `RetryInfo`, generated by build.rs from the server's `proto/`.
pub mod rpc {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
}

const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `RetryInfo` delay in a `grpc-status-details-bin` value, if there is one.
pub fn grpc_retry_delay(details_bin: &str) -> Option<Duration> {
    let raw = BASE64_LENIENT
        .decode(details_bin.trim())
        .or_else(|_| general_purpose::STANDARD.decode(details_bin.trim()))
        .ok()?;
    let status = rpc::Status::decode(raw.as_slice()).ok()?;
    status
        .details
        .iter()
        .find(|d| d.type_url.ends_with("google.rpc.RetryInfo"))
        .and_then(|d| rpc::RetryInfo::decode(d.value.as_slice()).ok())
        .and_then(|r| r.retry_delay)
        .map(|d| {
            Duration::new(
                d.seconds.max(0) as u64,
                d.nanos.clamp(0, 999_999_999) as u32,
            )
        })
}

/// Percent-decoding of `grpc-message`.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Classifies an OTLP/gRPC answer.
pub fn grpc_answer(
    signal: Signal,
    status: StatusCode,
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
    body: &[u8],
) -> Answer {
    if status != StatusCode::OK {
        // Refused at the HTTP level (e.g. 415, or a proxy's 503): the HTTP rules apply.
        return http_answer(signal, status, headers, body);
    }
    // The status is in the trailers, or in the headers of a trailers-only answer.
    let meta = match trailers {
        Some(t) if t.contains_key("grpc-status") => t,
        _ => headers,
    };
    let Some(code) = meta
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
    else {
        return Answer {
            retryable: false,
            sent: true,
            ..Answer::failure(Outcome::Protocol, "gRPC answer without grpc-status")
        };
    };
    let message = meta
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .filter(|m| !m.is_empty());
    if code != 0 {
        let retry_after = meta
            .get("grpc-status-details-bin")
            .and_then(|v| v.to_str().ok())
            .and_then(grpc_retry_delay);
        // OTLP/gRPC: these are retryable; RESOURCE_EXHAUSTED only with RetryInfo.
        let retryable =
            matches!(code, 1 | 4 | 10 | 11 | 14 | 15) || (code == 8 && retry_after.is_some());
        let outcome = match code {
            8 => Outcome::Throttled,
            14 => Outcome::Unavailable,
            c => Outcome::Grpc(c),
        };
        return Answer {
            outcome,
            retryable,
            retry_after,
            rejected: 0,
            message: Some(format!(
                "gRPC {}: {}",
                grpc_code_name(code),
                message.unwrap_or_default()
            )),
            sent: true,
        };
    }
    // OK: the one message is the Export*ServiceResponse (maybe compressed).
    let mut rejected = 0;
    let mut warning = None;
    if body.len() >= 5 {
        let compressed = body[0] == 1;
        let len = (&body[1..5]).get_u32() as usize;
        if let Some(msg) = body.get(5..5 + len) {
            let msg: Option<Vec<u8>> = if compressed {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(msg)
                    .take(16 << 20)
                    .read_to_end(&mut out)
                    .ok()
                    .map(|_| out)
            } else {
                Some(msg.to_vec())
            };
            if let Some(msg) = msg {
                (rejected, warning) = partial_from_proto(signal, &msg);
            }
        }
    }
    let partial = rejected > 0 || warning.is_some();
    Answer {
        outcome: if partial {
            Outcome::Partial
        } else {
            Outcome::Ok
        },
        retryable: false,
        retry_after: None,
        rejected,
        message: warning,
        sent: true,
    }
}

/// A plain `GET` over a fresh HTTP/1.1 connection (the query API, for `--verify`).
pub async fn http_get(
    addr: SocketAddr,
    authority: &str,
    path_and_query: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let fut = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut s, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get(path_and_query)
            .header(header::HOST, authority)
            .header(header::USER_AGENT, "glust-loadgen/0.1")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), 256 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("GET {path_and_query}: timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = SystemTime::now() + Duration::from_secs(100);
        h.insert(
            header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(95) && d <= Duration::from_secs(100));
    }

    #[test]
    fn http_classes() {
        let h = HeaderMap::new();
        let a = http_answer(Signal::Traces, StatusCode::OK, &h, b"");
        assert_eq!(a.outcome, Outcome::Ok);
        let a = http_answer(Signal::Traces, StatusCode::TOO_MANY_REQUESTS, &h, b"");
        assert_eq!((a.outcome, a.retryable), (Outcome::Throttled, true));
        let a = http_answer(Signal::Traces, StatusCode::BAD_REQUEST, &h, b"no");
        assert_eq!((a.outcome, a.retryable), (Outcome::Http(400), false));
        let mut j = HeaderMap::new();
        j.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let a = http_answer(
            Signal::Logs,
            StatusCode::OK,
            &j,
            br#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"bad id"}}"#,
        );
        assert_eq!((a.outcome, a.rejected), (Outcome::Partial, 2));
        let resp = ExportTraceServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                    rejected_spans: 5,
                    error_message: "x".into(),
                },
            ),
        };
        let a = http_answer(Signal::Traces, StatusCode::OK, &h, &resp.encode_to_vec());
        assert_eq!((a.outcome, a.rejected), (Outcome::Partial, 5));
    }

    #[test]
    fn grpc_status_and_retry_info() {
        let info = rpc::RetryInfo {
            retry_delay: Some(prost_types::Duration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let st = rpc::Status {
            code: 8,
            message: "busy".into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        let bin = general_purpose::STANDARD_NO_PAD.encode(st.encode_to_vec());
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "8".parse().unwrap());
        t.insert("grpc-message", "shard%20busy".parse().unwrap());
        t.insert("grpc-status-details-bin", bin.parse().unwrap());
        let a = grpc_answer(
            Signal::Traces,
            StatusCode::OK,
            &HeaderMap::new(),
            Some(&t),
            b"",
        );
        assert_eq!(a.outcome, Outcome::Throttled);
        assert!(a.retryable);
        assert_eq!(a.retry_after, Some(Duration::from_millis(2500)));
        assert!(a.message.unwrap().contains("shard busy"));

        // RESOURCE_EXHAUSTED without RetryInfo is not retryable.
        t.remove("grpc-status-details-bin");
        let a = grpc_answer(
            Signal::Traces,
            StatusCode::OK,
            &HeaderMap::new(),
            Some(&t),
            b"",
        );
        assert!(!a.retryable);

        // Trailers-only OK with a framed partial-success response.
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "0".parse().unwrap());
        let resp = ExportLogsServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess {
                    rejected_log_records: 1,
                    error_message: String::new(),
                },
            ),
        };
        let body = crate::payload::grpc_frame(&resp.encode_to_vec(), false);
        let a = grpc_answer(Signal::Logs, StatusCode::OK, &h, None, &body);
        assert_eq!((a.outcome, a.rejected), (Outcome::Partial, 1));
        // No status at all.
        let a = grpc_answer(Signal::Logs, StatusCode::OK, &HeaderMap::new(), None, b"");
        assert_eq!(a.outcome, Outcome::Protocol);
    }
}
