//! OTLP/HTTP: `POST /v1/traces` and `POST /v1/logs`, protobuf or JSON, optionally gzip or
//! zstd. The steps, each a cheap check before the costly one:
//!
//! 1. route and method, content type and encoding (405 / 404 / 415);
//! 2. the shard's ingest concurrency (429 past [`crate::limits::SHARD_INGEST_INFLIGHT_MAX`]);
//! 3. the body, counted against the shard's byte budget as it arrives (429, [`super::body`]),
//!    bounded on the wire (413) and again after decompression (413);
//! 4. decode + validate (400 for a body that is not OTLP; dropped items go to
//!    `partial_success`);
//! 5. [`crate::shard::ingest::ingest`]: split, admit, append (429/503 when refused).

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::body::{CountedBody, ReadError};
use super::export::{self, Compression, Export, ExportError};
use super::reply::{self, Format, SignalKind};
use super::Body;
use crate::limits::REQUEST_WIRE_BYTES_MAX;
use crate::metrics::{add, Hist};
use crate::otlp::DecodeError;
use crate::shard::admission::{HeldBytes, InFlight};
use crate::shard::ingest::{IngestError, Ingested};
use crate::shard::Shard;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body is larger than {max} bytes")]
    TooLarge { max: usize },
    /// The shard holds as many request bytes as it may (429, retryable).
    #[error("too many request bytes in flight; retry later")]
    OverBudget,
    #[error("cannot read request body: {0}")]
    Read(String),
    #[error("request body not received within {0:?}")]
    Timeout(std::time::Duration),
}

/// Answers one OTLP/HTTP export; `started` is when its first byte arrived (see
/// [`super::io::FirstByte`]), the start of the request latency histogram.
pub async fn handle(
    shard: &Rc<Shard>,
    req: Request<Incoming>,
    started: std::time::Instant,
) -> Response<Body> {
    let hist = match req.uri().path() {
        "/v1/traces" => Some(Hist::HttpTraces),
        "/v1/logs" => Some(Hist::HttpLogs),
        _ => None,
    };
    let resp = handle_export(shard, req).await;
    if let Some(h) = hist {
        shard.metrics.record(h, started.elapsed());
    }
    resp
}

async fn handle_export(shard: &Rc<Shard>, req: Request<Incoming>) -> Response<Body> {
    add(&shard.metrics.requests, 1);
    let signal = match route(&req) {
        Ok(signal) => signal,
        Err(resp) => return *resp,
    };
    let (format, compression) = match encodings(shard, &req) {
        Ok(encodings) => encodings,
        Err(resp) => return *resp,
    };

    // Counted from here: the body and its decoded form are the memory this bounds.
    let Some(_guard) = InFlight::try_enter(shard) else {
        add(&shard.metrics.requests_throttled, 1);
        return reply::error(
            StatusCode::TOO_MANY_REQUESTS,
            format,
            "too many requests in flight; retry later",
        );
    };
    // A declared length is held against the shard's byte budget before the body is read, and
    // every frame is counted as it arrives (bodies without a length included), so hundreds of
    // slow uploads cannot pile up unaccounted memory. (An oversized declaration is answered
    // 413 by the bounded read below.)
    let declared = declared_length(&req).min(REQUEST_WIRE_BYTES_MAX);
    let Some(mut held) = HeldBytes::try_hold(shard, declared) else {
        add(&shard.metrics.requests_throttled, 1);
        return too_many_bytes(format);
    };
    let body = match read_in_time(shard, req.into_body(), &mut held, format).await {
        Ok(body) => body,
        Err(resp) => return *resp,
    };
    let export = Export {
        signal,
        format,
        compression,
        deadline: None,
    };
    let outcome = export::export(shard, export, body, &mut held).await;
    answer(shard, format, signal, outcome)
}

/// The signal of an OTLP path, or the answer to a request that is not an export.
fn route(req: &Request<Incoming>) -> Result<SignalKind, Box<Response<Body>>> {
    let signal = match req.uri().path() {
        "/v1/traces" => SignalKind::Traces,
        "/v1/logs" => SignalKind::Logs,
        "/v1/metrics" => {
            return Err(Box::new(reply::error(
                StatusCode::NOT_FOUND,
                Format::Protobuf,
                "Glust stores traces and logs; metrics export is not supported",
            )))
        }
        other => {
            return Err(Box::new(reply::error(
                StatusCode::NOT_FOUND,
                Format::Protobuf,
                format!("no OTLP endpoint at {other}; use /v1/traces or /v1/logs"),
            )))
        }
    };
    if req.method() != Method::POST {
        let mut resp = reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            Format::Protobuf,
            "OTLP export uses POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
        return Err(Box::new(resp));
    }
    Ok(signal)
}

/// The body's format and compression from its headers; **415** for any other.
fn encodings(
    shard: &Shard,
    req: &Request<Incoming>,
) -> Result<(Format, Compression), Box<Response<Body>>> {
    let Some(format) = content_type(req) else {
        add(&shard.metrics.requests_bad, 1);
        return Err(Box::new(reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Format::Protobuf,
            "Content-Type must be application/x-protobuf or application/json",
        )));
    };
    let Some(compression) = content_encoding(req) else {
        add(&shard.metrics.requests_bad, 1);
        return Err(Box::new(reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format,
            "Content-Encoding must be gzip, zstd or absent",
        )));
    };
    Ok((format, compression))
}

/// The body, read against `held` within `--body-read-timeout`; the answer when it cannot be.
async fn read_in_time(
    shard: &Shard,
    body: Incoming,
    held: &mut HeldBytes<'_>,
    format: Format,
) -> Result<Bytes, Box<Response<Body>>> {
    let wire_bytes = &shard.metrics.bytes_received_wire;
    let read = futures_lite::future::or(read_body(body, held, wire_bytes), async {
        glommio::timer::sleep(shard.config.body_read_timeout).await;
        Err(BodyError::Timeout(shard.config.body_read_timeout))
    });
    match read.await {
        Ok(b) => Ok(b),
        Err(BodyError::OverBudget) => {
            add(&shard.metrics.requests_throttled, 1);
            Err(Box::new(too_many_bytes(format)))
        }
        Err(e) => {
            add(&shard.metrics.requests_bad, 1);
            let status = match e {
                BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
                _ => StatusCode::BAD_REQUEST,
            };
            Err(Box::new(reply::error(status, format, e.to_string())))
        }
    }
}

fn bad_body(shard: &Shard, format: Format, e: DecodeError) -> Response<Body> {
    add(&shard.metrics.requests_bad, 1);
    let status = match e {
        DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    reply::error(status, format, e.to_string())
}

/// The answer to an export: its outcome mapped to HTTP status codes.
fn answer(
    shard: &Shard,
    format: Format,
    signal: SignalKind,
    outcome: Result<Ingested, ExportError>,
) -> Response<Body> {
    let bad = |status, message: String| {
        add(&shard.metrics.requests_bad, 1);
        reply::error(status, format, message)
    };
    match outcome {
        Ok(done) => reply::exported(
            format,
            signal,
            done.rejected.count(),
            done.rejected.first.as_deref(),
        ),
        Err(ExportError::TooLarge { max }) => bad(
            StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooLarge { max }.to_string(),
        ),
        Err(e @ ExportError::Corrupt { .. }) => bad(StatusCode::BAD_REQUEST, e.to_string()),
        Err(ExportError::OverBudget) => {
            add(&shard.metrics.requests_throttled, 1);
            too_many_bytes(format)
        }
        Err(e @ ExportError::DeadlineExceeded) => bad(StatusCode::REQUEST_TIMEOUT, e.to_string()),
        Err(ExportError::Decode(e)) => bad_body(shard, format, e),
        Err(ExportError::Ingest(IngestError::Overloaded(why))) => {
            add(&shard.metrics.requests_throttled, 1);
            reply::error(StatusCode::TOO_MANY_REQUESTS, format, why.to_string())
        }
        Err(ExportError::Ingest(IngestError::Unavailable(why))) => {
            add(&shard.metrics.requests_failed, 1);
            reply::error(StatusCode::SERVICE_UNAVAILABLE, format, why.to_string())
        }
    }
}

/// The format named by `Content-Type`, parameters (`; charset=utf-8`) ignored.
fn content_type(req: &Request<Incoming>) -> Option<Format> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = value.split(';').next()?.trim();
    if mime.eq_ignore_ascii_case("application/x-protobuf")
        || mime.eq_ignore_ascii_case("application/protobuf")
    {
        Some(Format::Protobuf)
    } else if mime.eq_ignore_ascii_case("application/json") {
        Some(Format::Json)
    } else {
        None
    }
}

fn content_encoding(req: &Request<Incoming>) -> Option<Compression> {
    let Some(value) = req.headers().get(header::CONTENT_ENCODING) else {
        return Some(Compression::Identity);
    };
    match value.to_str().ok()?.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Some(Compression::Identity),
        "gzip" | "x-gzip" => Some(Compression::Gzip),
        "zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// Reads the body, at most [`REQUEST_WIRE_BYTES_MAX`] on the wire, each frame counted in
/// `held` as it arrives. Its size on the wire is added to `wire_bytes` as soon as it is in,
/// whether it then decompresses or not.
async fn read_body(
    body: Incoming,
    held: &mut HeldBytes<'_>,
    wire_bytes: &Cell<u64>,
) -> Result<Bytes, BodyError> {
    let mut counted = CountedBody::new(body, held, REQUEST_WIRE_BYTES_MAX);
    match counted.read_to_end().await {
        Ok(()) => {}
        Err(ReadError::TooLarge { max }) => return Err(BodyError::TooLarge { max }),
        Err(ReadError::OverBudget) => return Err(BodyError::OverBudget),
        Err(ReadError::Read(e)) => return Err(BodyError::Read(e.to_string())),
    }
    let wire = counted.into_bytes();
    add(wire_bytes, wire.len() as u64);
    Ok(wire)
}

fn too_many_bytes(format: Format) -> Response<Body> {
    reply::error(
        StatusCode::TOO_MANY_REQUESTS,
        format,
        "too many request bytes in flight; retry later",
    )
}

/// The `Content-Length` of a request, 0 when absent (chunked) or unreadable.
fn declared_length(req: &Request<Incoming>) -> usize {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
}
