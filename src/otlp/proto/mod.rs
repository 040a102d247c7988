//! OTLP protobuf request bodies decoded straight into the domain types.
//!
//! This is a hand-written decoder for `ExportTraceServiceRequest` and
//! `ExportLogsServiceRequest`, specialised to the fields Glust keeps. Its design:
//!
//! - **Borrowing.** Every string and byte field becomes a `Cow::Borrowed` slice of the body
//!   (strings after a UTF-8 check: inline for ASCII, `simdutf8` otherwise), so decoding
//!   allocates only the `Vec`s of batches, spans, log records, events, links, attributes and
//!   nested values. Before the first element of a repeated field is pushed, the run of
//!   consecutive elements with the same key is counted (keys and lengths only), so each list is
//!   usually allocated once at its final size; elements are then decoded in place in their slot.
//! - **One pass, one cursor.** A `Reader` walks a length-delimited slice of the body; a
//!   sub-message is a sub-`Reader` over its bytes, which keeps the absolute offset of its first
//!   byte so every error names the exact byte of the body where it happened.
//! - **Protobuf semantics.** Unknown fields are skipped (wire types 0, 1, 2 and 5; groups and
//!   the undefined wire types 6 and 7 are errors). A singular scalar takes its last occurrence.
//!   A singular embedded message (`resource`, `scope`, `status`, a `KeyValue`'s value, a log
//!   body) *merges* when it occurs again, as protobuf prescribes: its scalars are overwritten,
//!   its repeated fields appended. The `AnyValue` oneof takes the last member set; a repeated
//!   array or key-value-list member merges with the previous one. A known field with the wrong
//!   wire type is an error, as in every protobuf implementation.
//! - **Validation.** Ids are checked with [`validate`] while decoding; an invalid item (span or
//!   log record) is counted into [`Rejections`] and skipped, and decoding goes on. Kept items,
//!   their scope and their resource are then sanitised by [`validate`]. A body that is not
//!   well-formed protobuf is a [`DecodeError`] for the whole request.
//! - **Depth limit.** Values nest (`AnyValue` → `ArrayValue`/`KeyValueList` → ...), and so does
//!   the recursion that decodes them. Every message knows its protobuf depth from the root, and
//!   the `AnyValue` decoder, through which every cycle passes, refuses to go deeper than
//!   [`PROTO_DEPTH_MAX`]: hostile input cannot overflow the stack.
//!
//! Traces and logs share the `Resource*` / `Scope*` layers through the `Signal` trait; only
//! the items (spans, log records) have their own decoders.
//!
//! Note on memory: like any decoder into owned structures, the output is bigger than the input.
//! A minimal attribute (two bytes on the wire) becomes a 56-byte `KeyValue`; the limits on
//! attribute counts are applied by [`validate`] after decoding.
//!
//! [`validate`]: crate::domain::validate
//! [`PROTO_DEPTH_MAX`]: crate::limits::PROTO_DEPTH_MAX

mod fields;
mod layers;
mod logs;
mod reader;
mod spans;
mod values;

use self::fields::REQUEST_RESOURCE_ITEMS;
use self::layers::{resource_items, Signal};
use self::logs::Logs;
use self::reader::Reader;
use self::spans::Traces;
use super::{Budget, DecodeError, Decoded};
use crate::domain::validate::{Invalid, Rejections, Sanitised};
use crate::domain::{LogBatch, SpanBatch};

// The tests reach every part of the decoder, and the domain types, through `use super::*`.
#[cfg(test)]
use {
    self::fields::*,
    self::reader::*,
    self::values::{key_value, key_value_fast, TAG_ANY_DOUBLE, TAG_ANY_INT},
    crate::domain::validate,
    crate::domain::{
        AnyValue, Event, KeyValue, Link, LogRecord, Resource, Scope, Span, SpanId, Status, TraceId,
    },
    crate::limits::PROTO_DEPTH_MAX,
    std::borrow::Cow,
};

/// Decodes an OTLP/protobuf `ExportTraceServiceRequest` into one [`SpanBatch`] per
/// (resource, scope), borrowing strings and bytes from `body`.
pub fn decode_traces(body: &[u8]) -> Result<Decoded<SpanBatch<'_>>, DecodeError> {
    decode::<Traces>(body)
}

/// Decodes an OTLP/protobuf `ExportLogsServiceRequest` into one [`LogBatch`] per
/// (resource, scope), borrowing strings and bytes from `body`.
pub fn decode_logs(body: &[u8]) -> Result<Decoded<LogBatch<'_>>, DecodeError> {
    decode::<Logs>(body)
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// An item as decoded: kept, or dropped for the reason given.
type Item<T> = Result<T, Invalid>;

/// The request loop both signals share, inlined into `decode_traces` and `decode_logs`: left
/// to the compiler it became a call of its own, and the decode bench lost 4-6% of spans/s.
#[inline(always)]
fn decode<S: Signal>(body: &[u8]) -> Result<Decoded<S::Batch<'_>>> {
    let mut out = Decoded {
        batches: Vec::new(),
        accepted: 0,
        rejected: Rejections::default(),
        sanitised: Sanitised::default(),
    };
    Budget::reset();
    let mut r = Reader::new(body);
    while let Some((field, wire)) = r.key()? {
        match field {
            REQUEST_RESOURCE_ITEMS => {
                let sub = r.message(wire, S::NAMES.resource_items)?;
                resource_items::<S>(sub, &mut out)?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
