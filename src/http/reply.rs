//! OTLP/HTTP and query API answers: status codes, `google.rpc.Status` bodies, `Retry-After`,
//! and the gRPC status codes both transports put in them ([`code`]). Each transport maps its
//! outcomes onto these (`http::otlp::answer`, `http::grpc::export_status`).
//!
//! OTLP/HTTP (specification, "OTLP/HTTP Response"): success is 200 with an
//! `Export*ServiceResponse` in the request's encoding, `partial_success` set when items were
//! dropped; failures carry a `google.rpc.Status` in the request's encoding. 400/413/415 are
//! not retryable; 429 and 503 are, with `Retry-After`.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use hyper::Response;
use prost::Message;

use super::Body;
use crate::limits::RETRY_AFTER_SECS;
use crate::otlp::rpc;

/// The encoding of an OTLP request, and so of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// gRPC status codes (`grpc-status`, and `google.rpc.Status.code` in OTLP/HTTP error bodies).
pub mod code {
    pub const OK: u32 = 0;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
}

/// Which signal a response is for (their messages differ only in the counter's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Traces,
    Logs,
}

/// The protobuf `Export*ServiceResponse`, `partial_success` set when anything was rejected.
/// Shared by OTLP/HTTP and OTLP/gRPC.
pub fn export_response_protobuf(
    signal: SignalKind,
    rejected: u64,
    message: Option<&str>,
) -> Vec<u8> {
    let message = message.unwrap_or_default().to_owned();
    match signal {
        SignalKind::Traces => {
            use opentelemetry_proto::tonic::collector::trace::v1::*;
            ExportTraceServiceResponse {
                partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                    rejected_spans: rejected as i64,
                    error_message: message,
                }),
            }
            .encode_to_vec()
        }
        SignalKind::Logs => {
            use opentelemetry_proto::tonic::collector::logs::v1::*;
            ExportLogsServiceResponse {
                partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                    rejected_log_records: rejected as i64,
                    error_message: message,
                }),
            }
            .encode_to_vec()
        }
    }
}

/// 200 with the export response; `partial_success` when anything was rejected.
pub fn exported(
    format: Format,
    signal: SignalKind,
    rejected: u64,
    message: Option<&str>,
) -> Response<Body> {
    let body: Vec<u8> = match format {
        Format::Protobuf => export_response_protobuf(signal, rejected, message),
        Format::Json if rejected == 0 => b"{}".to_vec(),
        Format::Json => {
            let field = match signal {
                SignalKind::Traces => "rejectedSpans",
                SignalKind::Logs => "rejectedLogRecords",
            };
            serde_json::json!({
                "partialSuccess": {
                    field: rejected.to_string(),
                    "errorMessage": message.unwrap_or_default(),
                }
            })
            .to_string()
            .into_bytes()
        }
    };
    with_body(StatusCode::OK, format.content_type(), body)
}

/// An error answer with a `google.rpc.Status` body in `format`.
pub fn error(status: StatusCode, format: Format, message: impl Into<String>) -> Response<Body> {
    let message = message.into();
    let code = match status {
        StatusCode::TOO_MANY_REQUESTS => code::RESOURCE_EXHAUSTED,
        StatusCode::SERVICE_UNAVAILABLE => code::UNAVAILABLE,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => code::UNIMPLEMENTED,
        _ => code::INVALID_ARGUMENT,
    } as i32;
    let body = match format {
        Format::Protobuf => rpc::Status::new(code, message).encode_to_vec(),
        Format::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    let mut resp = with_body(status, format.content_type(), body);
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

/// A JSON answer of the query API.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_body(status, "application/json", body)
}

/// A JSON error of the query API: `{"error": "..."}`.
pub fn json_error(status: StatusCode, message: impl AsRef<str>) -> Response<Body> {
    let mut resp = json(
        status,
        serde_json::json!({ "error": message.as_ref() }).to_string(),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

pub fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Body::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
