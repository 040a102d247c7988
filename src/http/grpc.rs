//! OTLP/gRPC on hyper's HTTP/2 server, on the shard's executor. gRPC framing is done here
//! (no tonic server, no Tokio): after the message bytes are in hand, the path is the one of
//! OTLP/HTTP protobuf (same decoder, validation, routing, admission and storage).
//!
//! Steps, cheap checks first:
//! 1. method and path → `UNIMPLEMENTED` for anything but the two `Export` methods;
//! 2. `content-type: application/grpc[+proto]` (HTTP 415 otherwise), `grpc-encoding`
//!    (`identity` or `gzip`, else `UNIMPLEMENTED` with `grpc-accept-encoding`), `grpc-timeout`;
//! 3. the body, counted against the shard's byte budget as it arrives, its length prefix held
//!    as soon as it is in (`UNAVAILABLE` past the budget, `RESOURCE_EXHAUSTED` past the size
//!    limit), then the one length-prefixed message in it (`INTERNAL` for broken framing);
//! 4. the deadline: a request whose `grpc-timeout` has passed is abandoned (`DEADLINE_EXCEEDED`)
//!    before anything is written;
//! 5. decode + ingest, answered with `Export*ServiceResponse` (with `partial_success`) and
//!    `grpc-status` trailers; overload and shutdown are `UNAVAILABLE` with a
//!    `google.rpc.RetryInfo` detail (retryable; nothing was written, except when storage
//!    failed while the request's parts were being appended, as over HTTP).

use std::convert::Infallible;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response};
use prost::Message;

use super::body::{CountedBody, ReadError};
use super::export::{self, Compression, Export, ExportError};
use super::reply::{self, code, Format, SignalKind};
use crate::limits::{GRPC_MESSAGE_BYTES_MAX, GRPC_STATUS_MESSAGE_BYTES_MAX, RETRY_AFTER_SECS};
use crate::metrics::add;
use crate::metrics::Hist;
use crate::otlp::{rpc, DecodeError};
use crate::shard::admission::{HeldBytes, InFlight};
use crate::shard::ingest::{IngestError, Ingested};
use crate::shard::Shard;

/// Why a call was not served: a gRPC status, or a request that is not gRPC at all (its
/// content type), answered with plain HTTP 415 as the gRPC-over-HTTP/2 spec asks.
enum Refused {
    Grpc(Status),
    NotGrpc { content_type: String },
}

impl From<Status> for Refused {
    fn from(status: Status) -> Self {
        Refused::Grpc(status)
    }
}

pub const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
/// Compressions accepted, as announced in `grpc-accept-encoding`.
const ACCEPT_ENCODING: &str = "identity,gzip";
/// Size of the gRPC message prefix: compressed flag and big-endian length.
const PREFIX_BYTES: usize = 5;

/// A gRPC answer: one optional message, then trailers (`grpc-status`, ...).
pub struct GrpcBody {
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
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// Why a request failed: decides the metric it counts in and whether the client is told to
/// retry after a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request itself is wrong: not retryable.
    Bad,
    /// Overload: retryable, nothing was written.
    Throttled,
    /// Shutdown or storage failure: retryable.
    Failed,
}

/// An error status with its message and why it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u32,
    pub message: String,
    pub failure: Failure,
}

impl Status {
    fn new(code: u32, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            failure: Failure::Bad,
        }
    }

    fn retryable(code: u32, failure: Failure, message: impl Into<String>) -> Status {
        debug_assert_ne!(failure, Failure::Bad);
        Status {
            failure,
            ..Status::new(code, message)
        }
    }

    fn retry(&self) -> bool {
        self.failure != Failure::Bad
    }
}

/// A trailers-only answer (no message): HTTP 200 with the status in the headers.
pub fn status_response(status: &Status) -> Response<GrpcBody> {
    let mut resp = Response::new(GrpcBody {
        data: None,
        trailers: None,
    });
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static(ACCEPT_ENCODING),
    );
    put_status(h, status);
    resp
}

fn put_status(h: &mut HeaderMap, status: &Status) {
    h.insert("grpc-status", HeaderValue::from(status.code));
    if !status.message.is_empty() {
        h.insert("grpc-message", percent_encode(&status.message));
    }
    if status.retry() {
        let details = rpc::Status::new(status.code as i32, status.message.clone())
            .with_retry_delay(Duration::from_secs(u64::from(RETRY_AFTER_SECS)));
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(details.encode_to_vec());
        if let Ok(v) = HeaderValue::from_str(&b64) {
            h.insert("grpc-status-details-bin", v);
        }
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec): printable ASCII except `%`.
fn percent_encode(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len().min(GRPC_STATUS_MESSAGE_BYTES_MAX));
    for b in message.bytes() {
        if out.len() >= GRPC_STATUS_MESSAGE_BYTES_MAX {
            out.push_str("...");
            break;
        }
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

/// A successful answer: the response message, then `grpc-status: 0`.
fn message_response(message: Vec<u8>) -> Response<GrpcBody> {
    let mut framed = BytesMut::with_capacity(PREFIX_BYTES + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code::OK));
    let mut resp = Response::new(GrpcBody {
        data: Some(framed.freeze()),
        trailers: Some(trailers),
    });
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static(ACCEPT_ENCODING),
    );
    resp
}

/// Parses `grpc-timeout`: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Extracts the one message of a unary request body (a slice of the body, no copy) and how it
/// is compressed, for the export path to decompress like any body.
pub fn unframe(body: &Bytes, gzip: bool) -> Result<(Bytes, Compression), Status> {
    if body.len() < PREFIX_BYTES {
        return Err(Status::new(
            code::INTERNAL,
            format!("gRPC message prefix truncated: {} bytes", body.len()),
        ));
    }
    let compressed = match body[0] {
        0 => false,
        1 => true,
        f => {
            return Err(Status::new(
                code::INTERNAL,
                format!("invalid gRPC compressed flag {f}"),
            ))
        }
    };
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    if len > GRPC_MESSAGE_BYTES_MAX {
        return Err(message_too_large(len));
    }
    let rest = &body[PREFIX_BYTES..];
    if rest.len() < len {
        return Err(Status::new(
            code::INTERNAL,
            format!("gRPC message truncated: {} of {len} bytes", rest.len()),
        ));
    }
    if rest.len() > len {
        return Err(Status::new(
            code::INTERNAL,
            "more than one message in a unary request",
        ));
    }
    let message = body.slice(PREFIX_BYTES..);
    match (compressed, gzip) {
        (false, _) => Ok((message, Compression::Identity)),
        (true, false) => Err(Status::new(
            code::INTERNAL,
            "compressed flag set but the request has no grpc-encoding",
        )),
        (true, true) => Ok((message, Compression::Gzip)),
    }
}

/// Answers one gRPC call; `started` is when hyper handed the stream over (its HEADERS frame
/// parsed), the start of the request latency histogram and of `grpc-timeout`.
pub async fn handle(
    shard: &Rc<Shard>,
    req: Request<Incoming>,
    started: Instant,
) -> Response<GrpcBody> {
    let hist = match req.uri().path() {
        TRACES_PATH => Some(Hist::GrpcTraces),
        LOGS_PATH => Some(Hist::GrpcLogs),
        _ => None,
    };
    add(&shard.metrics.requests, 1);
    let resp = answer(shard, req, started).await;
    if let Some(h) = hist {
        shard.metrics.record(h, started.elapsed());
    }
    resp
}

async fn answer(shard: &Rc<Shard>, req: Request<Incoming>, started: Instant) -> Response<GrpcBody> {
    match serve(shard, req, started).await {
        Ok(resp) => resp,
        Err(Refused::Grpc(status)) => {
            let counter = match status.failure {
                Failure::Bad => &shard.metrics.requests_bad,
                Failure::Throttled => &shard.metrics.requests_throttled,
                Failure::Failed => &shard.metrics.requests_failed,
            };
            add(counter, 1);
            status_response(&status)
        }
        Err(Refused::NotGrpc { content_type }) => {
            add(&shard.metrics.requests_bad, 1);
            let mut resp = Response::new(GrpcBody {
                data: Some(Bytes::from(format!(
                    "not a gRPC request: content-type {content_type:?}, expected application/grpc\n"
                ))),
                trailers: None,
            });
            *resp.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            resp
        }
    }
}

async fn serve(
    shard: &Rc<Shard>,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Response<GrpcBody>, Refused> {
    let signal = method(&req)?;
    let head = Head::read(&req, started)?;

    // The body, bounded on the wire, then its one message.
    let Some(_guard) = InFlight::try_enter(shard) else {
        return Err(Status::retryable(
            code::UNAVAILABLE,
            Failure::Throttled,
            "too many requests in flight; retry later",
        )
        .into());
    };
    let Some(mut held) = HeldBytes::try_hold(shard, 0) else {
        return Err(too_many_bytes().into());
    };
    let body = read_in_time(shard, req.into_body(), &mut held).await?;
    add(&shard.metrics.bytes_received_wire, body.len() as u64);
    let (message, compression) = unframe(&body, head.gzip)?;
    drop(body);

    // The deadline, checked before anything is written, then decode and ingest: the export
    // path every transport takes.
    let export = Export {
        signal,
        format: Format::Protobuf,
        compression,
        deadline: head.deadline,
    };
    match export::export(shard, export, message, &mut held).await {
        Ok(done) => Ok(exported(signal, done)),
        Err(e) => Err(export_status(e).into()),
    }
}

/// The signal of the method called (`POST` to one of the two OTLP export paths).
fn method(req: &Request<Incoming>) -> Result<SignalKind, Status> {
    let signal = match req.uri().path() {
        TRACES_PATH => SignalKind::Traces,
        LOGS_PATH => SignalKind::Logs,
        other => {
            return Err(Status::new(
                code::UNIMPLEMENTED,
                format!(
                "unknown method {other}; Glust serves TraceService/Export and LogsService/Export"
            ),
            ))
        }
    };
    if req.method() != Method::POST {
        return Err(Status::new(code::UNIMPLEMENTED, "gRPC uses POST"));
    }
    Ok(signal)
}

/// What a call's headers say of its body and its time.
struct Head {
    /// `grpc-encoding: gzip` (else identity).
    gzip: bool,
    /// From `grpc-timeout`, counted from the call's first byte.
    deadline: Option<Instant>,
}

impl Head {
    /// Checks the content type, encoding and timeout of a call that started at `started`;
    /// one whose deadline is already past is refused here.
    fn read(req: &Request<Incoming>, started: Instant) -> Result<Head, Refused> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !(content_type == "application/grpc"
            || content_type.starts_with("application/grpc+proto"))
        {
            return Err(Refused::NotGrpc {
                content_type: content_type.chars().take(100).collect(),
            });
        }
        let gzip = match req
            .headers()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap_or("?"))
        {
            None | Some("identity") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(Status::new(
                    code::UNIMPLEMENTED,
                    format!("grpc-encoding {other:?} is not supported; use gzip or identity"),
                )
                .into())
            }
        };
        let deadline = match req.headers().get("grpc-timeout") {
            None => None,
            Some(v) => match v.to_str().ok().and_then(parse_timeout) {
                Some(d) => Some(started + d),
                None => {
                    return Err(Status::new(
                        code::INTERNAL,
                        format!("malformed grpc-timeout {v:?}"),
                    )
                    .into())
                }
            },
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Status::new(
                code::DEADLINE_EXCEEDED,
                "deadline exceeded before the request was read",
            )
            .into());
        }
        Ok(Head { gzip, deadline })
    }
}

/// The call's one framed message, read within `--body-read-timeout`.
async fn read_in_time(
    shard: &Shard,
    body: Incoming,
    held: &mut HeldBytes<'_>,
) -> Result<Bytes, Status> {
    let read = futures_lite::future::or(async { Some(read_message(body, held).await) }, async {
        glommio::timer::sleep(shard.config.body_read_timeout).await;
        None
    })
    .await;
    match read {
        None => Err(Status::new(
            code::DEADLINE_EXCEEDED,
            "request body not received in time",
        )),
        Some(read) => read,
    }
}

/// The gRPC status of an export that was not stored.
fn export_status(e: ExportError) -> Status {
    match e {
        ExportError::TooLarge { .. } => Status::new(code::RESOURCE_EXHAUSTED, e.to_string()),
        ExportError::Corrupt { .. } => Status::new(code::INTERNAL, e.to_string()),
        ExportError::OverBudget => too_many_bytes(),
        ExportError::DeadlineExceeded => Status::new(code::DEADLINE_EXCEEDED, e.to_string()),
        ExportError::Decode(e) => decode_status(e),
        ExportError::Ingest(IngestError::Overloaded(why)) => {
            Status::retryable(code::UNAVAILABLE, Failure::Throttled, why.to_string())
        }
        ExportError::Ingest(IngestError::Unavailable(why)) => {
            Status::retryable(code::UNAVAILABLE, Failure::Failed, why.to_string())
        }
    }
}

/// Reads a unary call's body, counting its frames against `held` as they arrive. The message's
/// length prefix is held as soon as it is in: a message the shard cannot hold is refused
/// before its bytes are read, and one larger than [`GRPC_MESSAGE_BYTES_MAX`] too.
async fn read_message(body: Incoming, held: &mut HeldBytes<'_>) -> Result<Bytes, Status> {
    let wire_max = GRPC_MESSAGE_BYTES_MAX + PREFIX_BYTES;
    // One byte more than a message may take, so that a second message is read and reported
    // by `unframe` as broken framing rather than as too large.
    let mut counted = CountedBody::new(body, held, wire_max + 1);
    let mut announced = false;
    loop {
        let more = counted.read_frame().await.map_err(|e| match e {
            ReadError::TooLarge { .. } => Status::new(
                code::RESOURCE_EXHAUSTED,
                format!("message is larger than the {GRPC_MESSAGE_BYTES_MAX} bytes allowed"),
            ),
            ReadError::OverBudget => too_many_bytes(),
            ReadError::Read(e) => Status::new(code::INTERNAL, format!("cannot read request: {e}")),
        })?;
        if !announced {
            if let Some(prefix) = counted.prefix::<PREFIX_BYTES>() {
                announced = true;
                let len = u32::from_be_bytes(prefix[1..].try_into().expect("4 bytes")) as usize;
                if len > GRPC_MESSAGE_BYTES_MAX {
                    return Err(message_too_large(len));
                }
                counted
                    .hold_at_least(PREFIX_BYTES + len)
                    .map_err(|_| too_many_bytes())?;
            }
        }
        if !more {
            return Ok(counted.into_bytes());
        }
    }
}

fn message_too_large(len: usize) -> Status {
    Status::new(
        code::RESOURCE_EXHAUSTED,
        format!("message of {len} bytes is larger than the {GRPC_MESSAGE_BYTES_MAX} allowed"),
    )
}

fn too_many_bytes() -> Status {
    Status::retryable(
        code::UNAVAILABLE,
        Failure::Throttled,
        "too many request bytes in flight; retry later",
    )
}

fn decode_status(e: DecodeError) -> Status {
    match e {
        DecodeError::TooLarge { .. } => Status::new(code::RESOURCE_EXHAUSTED, e.to_string()),
        _ => Status::new(code::INVALID_ARGUMENT, e.to_string()),
    }
}

fn exported(signal: SignalKind, done: Ingested) -> Response<GrpcBody> {
    let body = reply::export_response_protobuf(
        signal,
        done.rejected.count(),
        done.rejected.first.as_deref(),
    );
    message_response(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_per_spec() {
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(parse_timeout("123456789S"), None, "more than 8 digits");
        assert_eq!(parse_timeout("10x"), None);
        assert_eq!(parse_timeout("S"), None);
    }

    #[test]
    fn framing() {
        let msg = b"hello";
        let mut body = vec![0, 0, 0, 0, 5];
        body.extend_from_slice(msg);
        let body = Bytes::from(body);
        assert_eq!(
            unframe(&body, false).unwrap(),
            (body.slice(5..), Compression::Identity)
        );
        assert_eq!(
            unframe(&body.slice(..3), false).unwrap_err().code,
            code::INTERNAL
        );
        assert_eq!(
            unframe(&body.slice(..7), false).unwrap_err().code,
            code::INTERNAL
        );
        let mut two = body.to_vec();
        two.extend_from_slice(&body);
        assert_eq!(
            unframe(&Bytes::from(two), false).unwrap_err().code,
            code::INTERNAL
        );
        let mut flagged = body.to_vec();
        flagged[0] = 1;
        let err = unframe(&Bytes::from(flagged.clone()), false).unwrap_err();
        assert!(err.message.contains("no grpc-encoding"));
        flagged[0] = 7;
        assert_eq!(
            unframe(&Bytes::from(flagged), false).unwrap_err().code,
            code::INTERNAL
        );
        let huge = Bytes::from_static(&[0u8, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            unframe(&huge, false).unwrap_err().code,
            code::RESOURCE_EXHAUSTED
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, msg).unwrap();
        let gz = gz.finish().unwrap();
        let mut body = vec![1];
        body.extend_from_slice(&(gz.len() as u32).to_be_bytes());
        body.extend_from_slice(&gz);
        let (message, compression) = unframe(&Bytes::from(body), true).unwrap();
        assert_eq!(compression, Compression::Gzip);
        assert_eq!(export::decompress(message, compression).unwrap(), &msg[..]);
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("a b%c\n é"), "a b%25c%0A %C3%A9");
    }
}
