//! OTLP/JSON request bodies in: `ExportTraceServiceRequest` and `ExportLogsServiceRequest`.
//!
//! The JSON is read by serde into private mirror structs that follow the OTLP JSON encoding
//! (proto3 JSON mapping with the OTLP deviations):
//!
//! - keys are lowerCamelCase; the original snake_case proto names are accepted too, as
//!   protobuf JSON parsers do; unknown keys are ignored; `null` reads as an absent field;
//! - `traceId` / `spanId` / `parentSpanId` are case-insensitive hex strings, `""` is empty;
//! - 64-bit integers (`intValue`, `*UnixNano`) are JSON numbers or decimal strings, and so are
//!   the 32-bit ones; a string may use fraction or exponent notation when its value is integral;
//! - enums (`kind`, `status.code`, `severityNumber`) are integers only, as OTLP requires;
//! - `bytesValue` is base64 (standard or URL-safe alphabet, padded or not);
//! - `doubleValue` is a number, a numeric string, or `"NaN"` / `"Infinity"` / `"-Infinity"`.
//!
//! Strings without escapes borrow from the body. Ids are decoded after parsing: an id that is
//! not hex, or has the wrong length, drops its span or log record into [`Rejections`]; any other
//! malformation (wrong JSON type, an integer out of range, bad base64, an `AnyValue` with two
//! values) fails the whole body with [`DecodeError::Json`], which carries the line and column.
//!
//! Nesting is bounded by serde_json's recursion limit (128 arrays/objects, about 40 levels of
//! `AnyValue`); unknown fields are skipped without recursion by serde_json.
//!
//! Memory is bounded by the request's decoded-size budget,
//! [`crate::limits::REQUEST_VALUES_BYTES_MAX`], shared with the protobuf decoder. JSON expands
//! even more than protobuf (a 3-byte `{}` span is a mirror struct of a few hundred bytes, then a
//! domain span), so every array of the body is read by `Seq`, which charges each element,
//! mirror and domain value, as the list grows. Past the budget, parsing stops at once and the
//! body fails with [`DecodeError::TooLarge`].
//!
//! [`Rejections`]: crate::domain::validate::Rejections

mod any_value;
mod containers;
mod convert;
mod mirror;
mod scalars;

use serde::Deserialize;

use self::containers::{list, List, Msg, Seq, M};
use self::convert::{log_record, resource, scope, span, Reject};
use self::mirror::{JLogsRequest, JResource, JTracesRequest};
use self::scalars::JStr;
use super::{batch_per_scope, Budget, DecodeError, Decoded};
use crate::domain::validate::Sanitised;
use crate::domain::{LogBatch, Resource, Scope, SpanBatch};
use crate::limits::REQUEST_VALUES_BYTES_MAX;

// The tests reach the decoder's parts, and the domain types, through `use super::*`.
#[cfg(test)]
use {
    self::scalars::parse_int_str,
    crate::domain::validate::{Invalid, RejectReason, Rejections},
    crate::domain::{AnyValue, Event, KeyValue, Link, LogRecord, Span, Status},
    std::borrow::Cow,
};

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_traces_json(body: &[u8]) -> Result<Decoded<SpanBatch<'_>>, DecodeError> {
    let M(request) = parse::<JTracesRequest<'_>>(body)?;
    let mut out = Decoded::default();
    for rs in list(request.resource_spans) {
        let mut scopes = Vec::new();
        for ss in list(rs.scope_spans) {
            let spans = keep_valid(ss.spans, &mut out, span);
            if !spans.is_empty() {
                scopes.push((scope(ss.scope, ss.schema_url, &mut out.sanitised), spans));
            }
        }
        push_batches(
            &mut out,
            rs.resource,
            rs.schema_url,
            scopes,
            |resource, scope, spans| SpanBatch {
                resource,
                scope,
                spans,
            },
        )?;
    }
    Ok(out)
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest`.
pub fn decode_logs_json(body: &[u8]) -> Result<Decoded<LogBatch<'_>>, DecodeError> {
    let M(request) = parse::<JLogsRequest<'_>>(body)?;
    let mut out = Decoded::default();
    for rl in list(request.resource_logs) {
        let mut scopes = Vec::new();
        for sl in list(rl.scope_logs) {
            let logs = keep_valid(sl.log_records, &mut out, log_record);
            if !logs.is_empty() {
                scopes.push((scope(sl.scope, sl.schema_url, &mut out.sanitised), logs));
            }
        }
        push_batches(
            &mut out,
            rl.resource,
            rl.schema_url,
            scopes,
            |resource, scope, logs| LogBatch {
                resource,
                scope,
                logs,
            },
        )?;
    }
    Ok(out)
}

/// The valid items of one scope, counted as accepted; the others go to `rejected`.
fn keep_valid<J, T, B>(
    items: List<J>,
    out: &mut Decoded<B>,
    convert: fn(J, &mut Sanitised) -> Result<T, Reject>,
) -> Vec<T> {
    let items = items.map_or_else(Vec::new, |Seq(items)| items);
    let mut kept = Vec::with_capacity(items.len());
    for M(item) in items {
        match convert(item, &mut out.sanitised) {
            Ok(item) => kept.push(item),
            Err(why) => why.record(&mut out.rejected),
        }
    }
    out.accepted += kept.len() as u64;
    kept
}

/// Pushes one batch per scope that kept items, each with (a copy of) the resource. The
/// resource is validated once, and only when some batch carries it; each copy is charged
/// against the [`Budget`].
fn push_batches<'a, T, B>(
    out: &mut Decoded<B>,
    resource: Msg<JResource<'a>>,
    schema_url: JStr<'a>,
    scopes: Vec<(Scope<'a>, Vec<T>)>,
    batch: impl Fn(Resource<'a>, Scope<'a>, Vec<T>) -> B,
) -> Result<(), DecodeError> {
    if scopes.is_empty() {
        return Ok(());
    }
    let resource = self::resource(resource, schema_url, &mut out.sanitised);
    batch_per_scope(out, resource, scopes, batch)
}

/// Parses `body` into mirror structs, within a fresh [`Budget`].
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<M<T>, DecodeError> {
    Budget::reset();
    // Keeps serde_json's default recursion limit: it is what bounds the stack.
    serde_json::from_slice(body).map_err(|e| {
        // A refused charge reaches here as a serde custom error; the budget tells it apart.
        if Budget::exceeded() {
            DecodeError::TooLarge {
                max: REQUEST_VALUES_BYTES_MAX,
            }
        } else {
            DecodeError::Json(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests;
