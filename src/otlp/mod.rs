//! OTLP wire formats: request bodies in (protobuf, JSON) and OTLP JSON out.
//!
//! Decoders turn a request body into domain batches ([`crate::domain::SpanBatch`],
//! [`crate::domain::LogBatch`]) that borrow
//! from the body, applying [`crate::domain::validate`] to every item: invalid items are
//! dropped into [`Rejections`], the valid rest is kept. A body that cannot be parsed at all is a
//! [`DecodeError`] (HTTP 400 / gRPC `INVALID_ARGUMENT`).
//!
//! Architecture invariant: nothing here knows about HTTP, shards or storage.

pub mod json;
pub mod json_out;
pub mod proto;

use crate::domain::validate::{Rejections, Sanitised};

/// The outcome of decoding one export request.
#[derive(Debug, Default)]
pub struct Decoded<T> {
    /// One batch per (resource, scope) of the request, in request order, holding only the
    /// valid items. Batches left empty by validation are kept out.
    pub batches: Vec<T>,
    /// Items kept (sum of the batches' lengths).
    pub accepted: u64,
    /// Items dropped as invalid, with the first reason.
    pub rejected: Rejections,
    /// What sanitisation changed in the kept items.
    pub sanitised: Sanitised,
}

/// A body that is not a well-formed OTLP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Protobuf framing is broken: `what` went wrong at byte `offset` of the body.
    #[error("malformed protobuf at byte {offset}: {what}")]
    Protobuf { what: &'static str, offset: usize },
    /// A protobuf string field is not UTF-8.
    #[error("protobuf string at byte {offset} is not valid UTF-8")]
    Utf8 { offset: usize },
    /// The decoded request would take more memory than
    /// [`crate::limits::DECODED_REQUEST_BYTES_MAX`].
    #[error("request decodes to more than {max} bytes of values; send smaller batches")]
    TooLarge { max: usize },
    /// Protobuf nesting deeper than [`crate::limits::PROTO_DEPTH_MAX`].
    #[error("protobuf nesting deeper than {max} levels", max = crate::limits::PROTO_DEPTH_MAX)]
    TooDeep,
    /// The JSON body is not valid OTLP JSON; the message comes from the JSON parser with its
    /// line and column.
    #[error("invalid OTLP JSON: {0}")]
    Json(String),
}
