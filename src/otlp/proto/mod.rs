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

use std::borrow::Cow;

use super::{resource_copy_bytes, Budget, DecodeError, Decoded};
use crate::domain::validate::{self, Invalid, Rejections, Sanitised};
use crate::domain::{
    AnyValue, Event, KeyValue, Link, LogBatch, LogRecord, Resource, Scope, Span, SpanBatch, SpanId,
    Status, TraceId,
};
use crate::limits::PROTO_DEPTH_MAX;

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

// Wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

// Field numbers, as `proto/` declares them (the `fields` test checks each one against its
// descriptor, with its wire type). `ExportTraceServiceRequest` and
// `ExportLogsServiceRequest` share their layout, and so do `ResourceSpans` / `ResourceLogs` and
// `ScopeSpans` / `ScopeLogs`.
const REQUEST_RESOURCE_ITEMS: u32 = 1;
const RESOURCE_ITEMS_RESOURCE: u32 = 1;
const RESOURCE_ITEMS_SCOPE_ITEMS: u32 = 2;
const RESOURCE_ITEMS_SCHEMA_URL: u32 = 3;
const SCOPE_ITEMS_SCOPE: u32 = 1;
const SCOPE_ITEMS_ITEMS: u32 = 2;
const SCOPE_ITEMS_SCHEMA_URL: u32 = 3;

const RESOURCE_ATTRIBUTES: u32 = 1;
const RESOURCE_DROPPED_ATTRIBUTES_COUNT: u32 = 2;

const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;
const SCOPE_ATTRIBUTES: u32 = 3;
const SCOPE_DROPPED_ATTRIBUTES_COUNT: u32 = 4;

const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_TRACE_STATE: u32 = 3;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START_TIME_UNIX_NANO: u32 = 7;
const SPAN_END_TIME_UNIX_NANO: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_DROPPED_ATTRIBUTES_COUNT: u32 = 10;
const SPAN_EVENTS: u32 = 11;
const SPAN_DROPPED_EVENTS_COUNT: u32 = 12;
const SPAN_LINKS: u32 = 13;
const SPAN_DROPPED_LINKS_COUNT: u32 = 14;
const SPAN_STATUS: u32 = 15;
const SPAN_FLAGS: u32 = 16;

const EVENT_TIME_UNIX_NANO: u32 = 1;
const EVENT_NAME: u32 = 2;
const EVENT_ATTRIBUTES: u32 = 3;
const EVENT_DROPPED_ATTRIBUTES_COUNT: u32 = 4;

const LINK_TRACE_ID: u32 = 1;
const LINK_SPAN_ID: u32 = 2;
const LINK_TRACE_STATE: u32 = 3;
const LINK_ATTRIBUTES: u32 = 4;
const LINK_DROPPED_ATTRIBUTES_COUNT: u32 = 5;
const LINK_FLAGS: u32 = 6;

const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;

const LOG_TIME_UNIX_NANO: u32 = 1;
const LOG_SEVERITY_NUMBER: u32 = 2;
const LOG_SEVERITY_TEXT: u32 = 3;
const LOG_BODY: u32 = 5;
const LOG_ATTRIBUTES: u32 = 6;
const LOG_DROPPED_ATTRIBUTES_COUNT: u32 = 7;
const LOG_FLAGS: u32 = 8;
const LOG_TRACE_ID: u32 = 9;
const LOG_SPAN_ID: u32 = 10;
const LOG_OBSERVED_TIME_UNIX_NANO: u32 = 11;
const LOG_EVENT_NAME: u32 = 12;

const KEY_VALUE_KEY: u32 = 1;
const KEY_VALUE_VALUE: u32 = 2;

const ANY_STRING: u32 = 1;
const ANY_BOOL: u32 = 2;
const ANY_INT: u32 = 3;
const ANY_DOUBLE: u32 = 4;
const ANY_ARRAY: u32 = 5;
const ANY_KVLIST: u32 = 6;
const ANY_BYTES: u32 = 7;
/// `string_value_strindex`, a profiling-only oneof member: OTLP asks other signals to treat
/// it as absent, so it leaves the value empty.
const ANY_STRING_STRINDEX: u32 = 8;

/// `values` of both `ArrayValue` and `KeyValueList`.
const LIST_VALUES: u32 = 1;

/// Protobuf depth (the request is at 0) of the messages with a fixed place: `Resource` in
/// `ResourceSpans`, `InstrumentationScope` in `ScopeSpans`, and spans or log records.
const RESOURCE_DEPTH: usize = 2;
const SCOPE_DEPTH: usize = 3;
const ITEM_DEPTH: usize = 3;

type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// An item as decoded: kept, or dropped for the reason given.
type Item<T> = Result<T, Invalid>;

/// A cursor over one length-delimited protobuf message.
#[derive(Clone, Copy)]
struct Reader<'a> {
    /// The bytes of this message only.
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the body, for error offsets.
    base: usize,
    /// Offset in `buf` of the last key read, for wrong-wire-type errors and run counting.
    key_at: usize,
}

impl<'a> Reader<'a> {
    fn new(body: &'a [u8]) -> Self {
        Reader {
            buf: body,
            pos: 0,
            base: 0,
            key_at: 0,
        }
    }

    #[cold]
    fn error(&self, at: usize, what: &'static str) -> DecodeError {
        DecodeError::Protobuf {
            what,
            offset: self.base + at,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads a varint; one- and two-byte varints (most keys and lengths) take the fast path.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64> {
        if let Some(&b0) = self.buf.get(self.pos) {
            if b0 < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            if let Some(&b1) = self.buf.get(self.pos + 1) {
                if b1 < 0x80 {
                    self.pos += 2;
                    return Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7);
                }
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..63).step_by(7) {
            let b = self.byte(start)?;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        // The tenth byte holds bit 63 only.
        let b = self.byte(start)?;
        if b > 1 {
            return Err(self.error(start, "varint overflows 64 bits"));
        }
        Ok(value | u64::from(b) << 63)
    }

    fn byte(&mut self, varint_start: usize) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.error(varint_start, "truncated varint"))?;
        self.pos += 1;
        Ok(b)
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    #[inline(always)]
    fn key(&mut self) -> Result<Option<(u32, u8)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        self.key_at = self.pos;
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(self.error(self.key_at, "field key exceeds 32 bits"));
        }
        if key >> 3 == 0 {
            return Err(self.error(self.key_at, "field number 0 is invalid"));
        }
        Ok(Some(((key >> 3) as u32, (key & 7) as u8)))
    }

    /// Checks the wire type of the field whose key was just read.
    #[inline(always)]
    fn expect(&self, wire: u8, expected: u8, what: &'static str) -> Result<()> {
        if wire == expected {
            Ok(())
        } else {
            Err(self.error(self.key_at, what))
        }
    }

    #[inline]
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(self.pos, what));
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// The payload of a length-delimited field, wire type already checked.
    #[inline(always)]
    fn delimited(&mut self) -> Result<&'a [u8]> {
        let at = self.pos;
        let len = self.varint()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.remaining() => {
                let bytes = &self.buf[self.pos..self.pos + len];
                self.pos += len;
                Ok(bytes)
            }
            _ => Err(self.error(at, "length runs past the end of the message")),
        }
    }

    #[inline]
    fn uint64(&mut self, wire: u8, what: &'static str) -> Result<u64> {
        self.expect(wire, VARINT, what)?;
        self.varint()
    }

    /// `uint32` keeps the low 32 bits of the varint, as protobuf does.
    fn uint32(&mut self, wire: u8, what: &'static str) -> Result<u32> {
        Ok(self.uint64(wire, what)? as u32)
    }

    /// `int32` and enums: negative values are sign-extended 10-byte varints, truncated back.
    fn int32(&mut self, wire: u8, what: &'static str) -> Result<i32> {
        Ok(self.uint64(wire, what)? as i32)
    }

    #[inline]
    fn fixed64(&mut self, wire: u8, what: &'static str) -> Result<u64> {
        self.expect(wire, I64, what)?;
        let bytes = self.take(8, "truncated fixed64")?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    #[inline]
    fn fixed32(&mut self, wire: u8, what: &'static str) -> Result<u32> {
        self.expect(wire, I32, what)?;
        let bytes = self.take(4, "truncated fixed32")?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    #[inline(always)]
    fn bytes(&mut self, wire: u8, what: &'static str) -> Result<&'a [u8]> {
        self.expect(wire, LEN, what)?;
        self.delimited()
    }

    #[inline(always)]
    fn str(&mut self, wire: u8, what: &'static str) -> Result<Cow<'a, str>> {
        let bytes = self.bytes(wire, what)?;
        match utf8(bytes) {
            Some(s) => Ok(Cow::Borrowed(s)),
            None => Err(DecodeError::Utf8 {
                offset: self.base + self.pos - bytes.len(),
            }),
        }
    }

    /// An embedded message: a reader over its bytes.
    #[inline(always)]
    fn message(&mut self, wire: u8, what: &'static str) -> Result<Reader<'a>> {
        self.expect(wire, LEN, what)?;
        let bytes = self.delimited()?;
        Ok(Reader {
            buf: bytes,
            pos: 0,
            base: self.base + self.pos - bytes.len(),
            key_at: 0,
        })
    }

    /// Skips the value of an unknown field.
    fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.take(8, "truncated fixed64").map(drop),
            LEN => self.delimited().map(drop),
            I32 => self.take(4, "truncated fixed32").map(drop),
            SGROUP | EGROUP => {
                Err(self.error(self.key_at, "groups (wire types 3, 4) are not supported"))
            }
            _ => Err(self.error(self.key_at, "invalid wire type (6 or 7)")),
        }
    }

    /// How many length-delimited fields with the key just read follow each other from it on,
    /// that one included: the capacity to reserve for a repeated field. Reads keys and
    /// lengths only; stops early on anything malformed, which the real decoding reports.
    fn run_len(&self) -> usize {
        let mut r = Reader {
            pos: self.key_at,
            ..*self
        };
        let Ok(key) = r.varint() else { return 0 };
        let mut n = 0;
        loop {
            match r.varint().map(usize::try_from) {
                Ok(Ok(len)) if len <= r.remaining() => r.pos += len,
                _ => return n,
            }
            n += 1;
            // Hot path: a key of one byte (attributes: 10 or so per span) is compared as a
            // byte. A key encoded longer than it needs (a non-minimal varint) ends the count:
            // this is only a capacity hint.
            match r.buf.get(r.pos) {
                None => return n,
                Some(&b) if key < 0x80 => {
                    if u64::from(b) != key {
                        return n;
                    }
                    r.pos += 1;
                }
                Some(_) => {
                    if r.varint() != Ok(key) {
                        return n;
                    }
                }
            }
        }
    }

    /// Makes room for one more element of `list`, the run of elements starting at the key
    /// just read: reserves the whole run on the first one, and charges the element against
    /// the request's decoded-size budget (see [`Budget`]).
    #[inline]
    fn grow<T>(&self, list: &mut Vec<T>) -> Result<()> {
        Budget::charge(std::mem::size_of::<T>())?;
        if list.capacity() == 0 {
            list.reserve_exact(
                self.run_len()
                    .min(Budget::left() / std::mem::size_of::<T>().max(1) + 1),
            );
        }
        Ok(())
    }
}

/// `bytes` as a string if they are UTF-8.
///
/// Most strings in OTLP are short ASCII keys and values. For them, an inlined ASCII check
/// is much cheaper than the call into `core::str::from_utf8` that `simdutf8` makes below 64
/// bytes: measured on the `decode` bench, +20% spans/s (2.2 to 2.65 M/s on one core).
#[inline(always)]
fn utf8(bytes: &[u8]) -> Option<&str> {
    if is_ascii(bytes) {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        simdutf8::basic::from_utf8(bytes).ok()
    }
}

/// Whether `bytes` are all ASCII: the high bits of all bytes ORed together, 8 at a time, the
/// last 8 (or 4) overlapping the ones before.
///
/// Hot path: `<[u8]>::is_ascii` is not inlined here, and its call, with alignment handling
/// meant for long slices, took 11% of the span decoder's instructions for strings that are
/// mostly 3-30 bytes (callgrind, decode bench). `utf8` trusts this check for
/// `from_utf8_unchecked`: it is tested against std at every short length.
#[inline(always)]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let n = bytes.len();
    let acc = if n >= 8 {
        let mut acc = word(n - 8);
        let mut at = 0;
        while at + 8 < n {
            acc |= word(at);
            at += 8;
        }
        acc
    } else if n >= 4 {
        u64::from(half(0) | half(n - 4))
    } else {
        bytes.iter().fold(0u64, |acc, &b| acc | u64::from(b))
    };
    acc & HIGH == 0
}

/// What tells spans from logs in the layers they share.
trait Signal {
    type Item<'a>;
    type Batch<'a>;
    /// Wrong-wire-type messages of the shared fields.
    const NAMES: Names;
    /// An item with every field at its default, to decode into in place.
    fn empty<'a>() -> Self::Item<'a>;
    /// Decodes one item into `slot`, an `empty()` one.
    fn item<'a>(r: Reader<'a>, slot: &mut Self::Item<'a>) -> Result<Item<()>>;
    /// Validates and sanitises a decoded item.
    fn check(item: &mut Self::Item<'_>, stats: &mut Sanitised) -> Item<()>;
    fn batch<'a>(
        resource: Resource<'a>,
        scope: Scope<'a>,
        items: Vec<Self::Item<'a>>,
    ) -> Self::Batch<'a>;
}

struct Names {
    resource_items: &'static str,
    resource: &'static str,
    scope_items: &'static str,
    resource_schema_url: &'static str,
    scope: &'static str,
    items: &'static str,
    scope_schema_url: &'static str,
}

struct Traces;

impl Signal for Traces {
    type Item<'a> = Span<'a>;
    type Batch<'a> = SpanBatch<'a>;
    const NAMES: Names = Names {
        resource_items: "wrong wire type for ExportTraceServiceRequest.resource_spans",
        resource: "wrong wire type for ResourceSpans.resource",
        scope_items: "wrong wire type for ResourceSpans.scope_spans",
        resource_schema_url: "wrong wire type for ResourceSpans.schema_url",
        scope: "wrong wire type for ScopeSpans.scope",
        items: "wrong wire type for ScopeSpans.spans",
        scope_schema_url: "wrong wire type for ScopeSpans.schema_url",
    };

    fn empty<'a>() -> Span<'a> {
        Span {
            trace_id: TraceId::default(),
            span_id: SpanId::default(),
            trace_state: Cow::Borrowed(""),
            parent_span_id: None,
            flags: 0,
            name: Cow::Borrowed(""),
            kind: 0,
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: Status::default(),
        }
    }

    fn item<'a>(r: Reader<'a>, span: &mut Span<'a>) -> Result<Item<()>> {
        self::span(r, span)
    }

    fn check(span: &mut Span<'_>, stats: &mut Sanitised) -> Item<()> {
        validate::span(span, stats)
    }

    fn batch<'a>(resource: Resource<'a>, scope: Scope<'a>, spans: Vec<Span<'a>>) -> SpanBatch<'a> {
        SpanBatch {
            resource,
            scope,
            spans,
        }
    }
}

struct Logs;

impl Signal for Logs {
    type Item<'a> = LogRecord<'a>;
    type Batch<'a> = LogBatch<'a>;
    const NAMES: Names = Names {
        resource_items: "wrong wire type for ExportLogsServiceRequest.resource_logs",
        resource: "wrong wire type for ResourceLogs.resource",
        scope_items: "wrong wire type for ResourceLogs.scope_logs",
        resource_schema_url: "wrong wire type for ResourceLogs.schema_url",
        scope: "wrong wire type for ScopeLogs.scope",
        items: "wrong wire type for ScopeLogs.log_records",
        scope_schema_url: "wrong wire type for ScopeLogs.schema_url",
    };

    fn empty<'a>() -> LogRecord<'a> {
        LogRecord {
            time_unix_nano: 0,
            observed_time_unix_nano: 0,
            severity_number: 0,
            severity_text: Cow::Borrowed(""),
            body: AnyValue::Empty,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            flags: 0,
            trace_id: None,
            span_id: None,
            event_name: Cow::Borrowed(""),
        }
    }

    fn item<'a>(r: Reader<'a>, log: &mut LogRecord<'a>) -> Result<Item<()>> {
        log_record(r, log)
    }

    fn check(log: &mut LogRecord<'_>, stats: &mut Sanitised) -> Item<()> {
        validate::log_record(log, stats);
        Ok(())
    }

    fn batch<'a>(
        resource: Resource<'a>,
        scope: Scope<'a>,
        logs: Vec<LogRecord<'a>>,
    ) -> LogBatch<'a> {
        LogBatch {
            resource,
            scope,
            logs,
        }
    }
}

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

/// `ResourceSpans` / `ResourceLogs`: pushes one batch per scope that kept items. The resource
/// may come after the scopes on the wire, so it is attached once the message is read. Each
/// batch has its own copy of the resource, charged against the [`Budget`].
fn resource_items<'a, S: Signal>(mut r: Reader<'a>, out: &mut Decoded<S::Batch<'a>>) -> Result<()> {
    let mut resource = Resource::default();
    let mut scopes = Vec::new();
    while let Some((field, wire)) = r.key()? {
        match field {
            RESOURCE_ITEMS_RESOURCE => {
                let sub = r.message(wire, S::NAMES.resource)?;
                self::resource(sub, &mut resource)?;
            }
            RESOURCE_ITEMS_SCOPE_ITEMS => {
                let sub = r.message(wire, S::NAMES.scope_items)?;
                if let Some(scope) = scope_items::<S>(sub, out)? {
                    Budget::charge(std::mem::size_of_val(&scope))?;
                    scopes.push(scope);
                }
            }
            RESOURCE_ITEMS_SCHEMA_URL => {
                resource.schema_url = r.str(wire, S::NAMES.resource_schema_url)?;
            }
            _ => r.skip(wire)?,
        }
    }
    if scopes.is_empty() {
        return Ok(());
    }
    validate::resource(&mut resource, &mut out.sanitised);
    let copy_bytes = match scopes.len() {
        1 => 0,
        _ => resource_copy_bytes(&resource),
    };
    let mut scopes = scopes.into_iter().peekable();
    while let Some((scope, items)) = scopes.next() {
        let resource = match scopes.peek() {
            Some(_) => {
                Budget::charge(copy_bytes)?;
                resource.clone()
            }
            None => std::mem::take(&mut resource),
        };
        out.batches.push(S::batch(resource, scope, items));
    }
    Ok(())
}

/// `ScopeSpans` / `ScopeLogs`: the scope and its valid items, `None` if none is valid.
#[allow(clippy::type_complexity)]
fn scope_items<'a, S: Signal>(
    mut r: Reader<'a>,
    out: &mut Decoded<S::Batch<'a>>,
) -> Result<Option<(Scope<'a>, Vec<S::Item<'a>>)>> {
    let mut scope = Scope::default();
    let mut items = Vec::new();
    while let Some((field, wire)) = r.key()? {
        match field {
            SCOPE_ITEMS_SCOPE => {
                let sub = r.message(wire, S::NAMES.scope)?;
                self::scope(sub, &mut scope)?;
            }
            SCOPE_ITEMS_ITEMS => {
                let sub = r.message(wire, S::NAMES.items)?;
                r.grow(&mut items)?;
                // Decoded in place: items are big, moving them around costs.
                items.push(S::empty());
                let slot = items.last_mut().expect("just pushed");
                let checked = S::item(sub, slot)?.and_then(|()| S::check(slot, &mut out.sanitised));
                if let Err(why) = checked {
                    items.pop();
                    out.rejected.reject(&why);
                }
            }
            SCOPE_ITEMS_SCHEMA_URL => {
                scope.schema_url = r.str(wire, S::NAMES.scope_schema_url)?;
            }
            _ => r.skip(wire)?,
        }
    }
    if items.is_empty() {
        return Ok(None);
    }
    out.accepted += items.len() as u64;
    validate::scope(&mut scope, &mut out.sanitised);
    Ok(Some((scope, items)))
}

/// Merges a `Resource` message into `resource`.
fn resource<'a>(mut r: Reader<'a>, resource: &mut Resource<'a>) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            RESOURCE_ATTRIBUTES => attribute(
                &mut r,
                wire,
                &mut resource.attributes,
                RESOURCE_DEPTH + 1,
                "wrong wire type for Resource.attributes",
            )?,
            RESOURCE_DROPPED_ATTRIBUTES_COUNT => {
                resource.dropped_attributes_count = r.uint32(
                    wire,
                    "wrong wire type for Resource.dropped_attributes_count",
                )?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Merges an `InstrumentationScope` message into `scope`.
fn scope<'a>(mut r: Reader<'a>, scope: &mut Scope<'a>) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            SCOPE_NAME => {
                scope.name = r.str(wire, "wrong wire type for InstrumentationScope.name")?;
            }
            SCOPE_VERSION => {
                scope.version = r.str(wire, "wrong wire type for InstrumentationScope.version")?;
            }
            SCOPE_ATTRIBUTES => attribute(
                &mut r,
                wire,
                &mut scope.attributes,
                SCOPE_DEPTH + 1,
                "wrong wire type for InstrumentationScope.attributes",
            )?,
            SCOPE_DROPPED_ATTRIBUTES_COUNT => {
                scope.dropped_attributes_count = r.uint32(
                    wire,
                    "wrong wire type for InstrumentationScope.dropped_attributes_count",
                )?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// The raw id fields of a span, validated once the span is read (last occurrence wins).
#[derive(Default)]
struct RawIds<'a> {
    trace: &'a [u8],
    span: &'a [u8],
    parent: &'a [u8],
}

/// Decodes a span into `span`, an empty one.
fn span<'a>(mut r: Reader<'a>, span: &mut Span<'a>) -> Result<Item<()>> {
    let mut ids = RawIds::default();
    let mut bad_link = None;
    while let Some((field, wire)) = r.key()? {
        match field {
            SPAN_TRACE_ID => ids.trace = r.bytes(wire, "wrong wire type for Span.trace_id")?,
            SPAN_SPAN_ID => ids.span = r.bytes(wire, "wrong wire type for Span.span_id")?,
            SPAN_TRACE_STATE => {
                span.trace_state = r.str(wire, "wrong wire type for Span.trace_state")?;
            }
            SPAN_PARENT_SPAN_ID => {
                ids.parent = r.bytes(wire, "wrong wire type for Span.parent_span_id")?;
            }
            SPAN_NAME => span.name = r.str(wire, "wrong wire type for Span.name")?,
            SPAN_KIND => span.kind = r.int32(wire, "wrong wire type for Span.kind")?,
            SPAN_START_TIME_UNIX_NANO => {
                span.start_time_unix_nano =
                    r.fixed64(wire, "wrong wire type for Span.start_time_unix_nano")?;
            }
            SPAN_END_TIME_UNIX_NANO => {
                span.end_time_unix_nano =
                    r.fixed64(wire, "wrong wire type for Span.end_time_unix_nano")?;
            }
            SPAN_ATTRIBUTES => attribute(
                &mut r,
                wire,
                &mut span.attributes,
                ITEM_DEPTH + 1,
                "wrong wire type for Span.attributes",
            )?,
            SPAN_DROPPED_ATTRIBUTES_COUNT => {
                span.dropped_attributes_count =
                    r.uint32(wire, "wrong wire type for Span.dropped_attributes_count")?;
            }
            SPAN_EVENTS => {
                let sub = r.message(wire, "wrong wire type for Span.events")?;
                r.grow(&mut span.events)?;
                span.events.push(event(sub)?);
            }
            SPAN_DROPPED_EVENTS_COUNT => {
                span.dropped_events_count =
                    r.uint32(wire, "wrong wire type for Span.dropped_events_count")?;
            }
            SPAN_LINKS => {
                let sub = r.message(wire, "wrong wire type for Span.links")?;
                r.grow(&mut span.links)?;
                match link(sub)? {
                    Ok(link) => span.links.push(link),
                    Err(why) => _ = bad_link.get_or_insert(why),
                }
            }
            SPAN_DROPPED_LINKS_COUNT => {
                span.dropped_links_count =
                    r.uint32(wire, "wrong wire type for Span.dropped_links_count")?;
            }
            SPAN_STATUS => {
                let sub = r.message(wire, "wrong wire type for Span.status")?;
                status(sub, &mut span.status)?;
            }
            SPAN_FLAGS => span.flags = r.fixed32(wire, "wrong wire type for Span.flags")?,
            _ => r.skip(wire)?,
        }
    }
    Ok(span_ids(span, &ids, bad_link))
}

/// Validates a span's ids, in field order, into `span`; a bad link makes the span invalid.
/// A span found invalid may hold some of its ids: it is dropped.
///
/// Hot path: each id goes straight into its field. Returned together as a tuple inside a
/// `Result`, the 9-byte `Option<SpanId>` was copied through the stack with overlapping 4-byte
/// moves that could not be forwarded from the stores before them, a quarter of the span
/// decoder's own time in a profile.
fn span_ids(span: &mut Span<'_>, ids: &RawIds<'_>, bad_link: Option<Invalid>) -> Item<()> {
    span.trace_id = validate::trace_id(ids.trace)?;
    span.span_id = validate::span_id(ids.span)?;
    span.parent_span_id = validate::parent_span_id(ids.parent)?;
    match bad_link {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

fn event(mut r: Reader<'_>) -> Result<Event<'_>> {
    let mut event = Event::default();
    while let Some((field, wire)) = r.key()? {
        match field {
            EVENT_TIME_UNIX_NANO => {
                event.time_unix_nano =
                    r.fixed64(wire, "wrong wire type for Span.Event.time_unix_nano")?;
            }
            EVENT_NAME => event.name = r.str(wire, "wrong wire type for Span.Event.name")?,
            EVENT_ATTRIBUTES => attribute(
                &mut r,
                wire,
                &mut event.attributes,
                ITEM_DEPTH + 2,
                "wrong wire type for Span.Event.attributes",
            )?,
            EVENT_DROPPED_ATTRIBUTES_COUNT => {
                event.dropped_attributes_count = r.uint32(
                    wire,
                    "wrong wire type for Span.Event.dropped_attributes_count",
                )?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(event)
}

fn link(mut r: Reader<'_>) -> Result<Item<Link<'_>>> {
    let (mut trace, mut span): (&[u8], &[u8]) = (&[], &[]);
    let mut link = Link {
        trace_id: TraceId::default(),
        span_id: SpanId::default(),
        trace_state: Cow::Borrowed(""),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        flags: 0,
    };
    while let Some((field, wire)) = r.key()? {
        match field {
            LINK_TRACE_ID => trace = r.bytes(wire, "wrong wire type for Span.Link.trace_id")?,
            LINK_SPAN_ID => span = r.bytes(wire, "wrong wire type for Span.Link.span_id")?,
            LINK_TRACE_STATE => {
                link.trace_state = r.str(wire, "wrong wire type for Span.Link.trace_state")?;
            }
            LINK_ATTRIBUTES => attribute(
                &mut r,
                wire,
                &mut link.attributes,
                ITEM_DEPTH + 2,
                "wrong wire type for Span.Link.attributes",
            )?,
            LINK_DROPPED_ATTRIBUTES_COUNT => {
                link.dropped_attributes_count = r.uint32(
                    wire,
                    "wrong wire type for Span.Link.dropped_attributes_count",
                )?;
            }
            LINK_FLAGS => link.flags = r.fixed32(wire, "wrong wire type for Span.Link.flags")?,
            _ => r.skip(wire)?,
        }
    }
    Ok(validate::link_ids(trace, span).map(|(trace_id, span_id)| {
        link.trace_id = trace_id;
        link.span_id = span_id;
        link
    }))
}

/// Merges a `Status` message into `status`.
fn status<'a>(mut r: Reader<'a>, status: &mut Status<'a>) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            STATUS_MESSAGE => status.message = r.str(wire, "wrong wire type for Status.message")?,
            STATUS_CODE => status.code = r.int32(wire, "wrong wire type for Status.code")?,
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Decodes a log record into `log`, an empty one.
fn log_record<'a>(mut r: Reader<'a>, log: &mut LogRecord<'a>) -> Result<Item<()>> {
    let (mut trace, mut span): (&[u8], &[u8]) = (&[], &[]);
    while let Some((field, wire)) = r.key()? {
        match field {
            LOG_TIME_UNIX_NANO => {
                log.time_unix_nano =
                    r.fixed64(wire, "wrong wire type for LogRecord.time_unix_nano")?;
            }
            LOG_OBSERVED_TIME_UNIX_NANO => {
                log.observed_time_unix_nano = r.fixed64(
                    wire,
                    "wrong wire type for LogRecord.observed_time_unix_nano",
                )?;
            }
            LOG_SEVERITY_NUMBER => {
                log.severity_number =
                    r.int32(wire, "wrong wire type for LogRecord.severity_number")?;
            }
            LOG_SEVERITY_TEXT => {
                log.severity_text = r.str(wire, "wrong wire type for LogRecord.severity_text")?;
            }
            LOG_BODY => {
                let sub = r.message(wire, "wrong wire type for LogRecord.body")?;
                any_value(sub, &mut log.body, ITEM_DEPTH + 1)?;
            }
            LOG_ATTRIBUTES => attribute(
                &mut r,
                wire,
                &mut log.attributes,
                ITEM_DEPTH + 1,
                "wrong wire type for LogRecord.attributes",
            )?,
            LOG_DROPPED_ATTRIBUTES_COUNT => {
                log.dropped_attributes_count = r.uint32(
                    wire,
                    "wrong wire type for LogRecord.dropped_attributes_count",
                )?;
            }
            LOG_FLAGS => log.flags = r.fixed32(wire, "wrong wire type for LogRecord.flags")?,
            LOG_TRACE_ID => trace = r.bytes(wire, "wrong wire type for LogRecord.trace_id")?,
            LOG_SPAN_ID => span = r.bytes(wire, "wrong wire type for LogRecord.span_id")?,
            LOG_EVENT_NAME => {
                log.event_name = r.str(wire, "wrong wire type for LogRecord.event_name")?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(log_ids(log, trace, span))
}

/// Validates a log record's trace context into `log` (see [`span_ids`] for why in place).
fn log_ids(log: &mut LogRecord<'_>, trace: &[u8], span: &[u8]) -> Item<()> {
    log.trace_id = validate::log_trace_id(trace)?;
    log.span_id = validate::log_span_id(span)?;
    Ok(())
}

/// Decodes one element of a repeated `KeyValue` field (at protobuf depth `depth`) into `list`.
///
/// Hot path, inlined into every message that has attributes: as a call, its prologue and
/// the reader kept in memory across it were 8% of the span decoder's instructions
/// (callgrind, decode bench).
#[inline(always)]
fn attribute<'a>(
    r: &mut Reader<'a>,
    wire: u8,
    list: &mut Vec<KeyValue<'a>>,
    depth: usize,
    what: &'static str,
) -> Result<()> {
    let sub = r.message(wire, what)?;
    r.grow(list)?;
    // The pair's value is at `depth + 1`, which `any_value` refuses past PROTO_DEPTH_MAX:
    // the fast path, which has no depth check, only below that.
    if depth < PROTO_DEPTH_MAX {
        if let Some(kv) = key_value_fast(sub.buf) {
            list.push(kv);
            return Ok(());
        }
    }
    // Decoded in place, which spares a copy of the pair through the stack.
    list.push(KeyValue {
        key: Cow::Borrowed(""),
        value: AnyValue::Empty,
    });
    key_value(sub, list.last_mut().expect("just pushed"), depth)
}

/// Tags (field number and wire type in one byte) of the shape [`key_value_fast`] reads.
const TAG_KEY_VALUE_KEY: u8 = (KEY_VALUE_KEY as u8) << 3 | LEN;
const TAG_KEY_VALUE_VALUE: u8 = (KEY_VALUE_VALUE as u8) << 3 | LEN;
const TAG_ANY_STRING: u8 = (ANY_STRING as u8) << 3 | LEN;
const TAG_ANY_BOOL: u8 = (ANY_BOOL as u8) << 3 | VARINT;
const TAG_ANY_INT: u8 = (ANY_INT as u8) << 3 | VARINT;
const TAG_ANY_DOUBLE: u8 = (ANY_DOUBLE as u8) << 3 | I64;

/// The `KeyValue` message `buf` if it has the shape nearly every attribute has: the key, then
/// the value holding one string, bool, int or double, in this order, each length under 128,
/// and nothing else. `None` for anything else, including bytes that are not UTF-8: the
/// general decoder ([`key_value`]) then decodes it, or reports what is wrong with it. For a
/// message of this shape both give the same pair.
///
/// Hot path: attributes are most of a span. The general decoder loops over the fields of two
/// nested messages, checking each key and wire type; this reads the few bytes it expects
/// (`scripts/ir-per-call.py` on the decode bench).
#[inline(always)]
fn key_value_fast(buf: &[u8]) -> Option<KeyValue<'_>> {
    let [TAG_KEY_VALUE_KEY, key_len, rest @ ..] = buf else {
        return None;
    };
    let key_len = usize::from(*key_len);
    if key_len >= 0x80 || key_len > rest.len() {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let [TAG_KEY_VALUE_VALUE, value_len, value @ ..] = rest else {
        return None;
    };
    if *value_len >= 0x80 || usize::from(*value_len) != value.len() {
        return None;
    }
    let value = match value {
        [TAG_ANY_STRING, len, s @ ..] if *len < 0x80 && usize::from(*len) == s.len() => {
            AnyValue::String(Cow::Borrowed(utf8(s)?))
        }
        [TAG_ANY_BOOL, b] if *b < 0x80 => AnyValue::Bool(*b != 0),
        [TAG_ANY_INT, varint @ ..] => {
            let mut r = Reader::new(varint);
            let v = r.varint().ok()?;
            if r.pos != varint.len() {
                return None;
            }
            AnyValue::Int(v as i64)
        }
        [TAG_ANY_DOUBLE, bits @ ..] => {
            AnyValue::Double(f64::from_bits(u64::from_le_bytes(bits.try_into().ok()?)))
        }
        _ => return None,
    };
    Some(KeyValue {
        key: Cow::Borrowed(utf8(key)?),
        value,
    })
}

/// Decodes a `KeyValue` message (at protobuf depth `depth`) into `kv`, an empty one.
fn key_value<'a>(mut r: Reader<'a>, kv: &mut KeyValue<'a>, depth: usize) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            KEY_VALUE_KEY => kv.key = r.str(wire, "wrong wire type for KeyValue.key")?,
            KEY_VALUE_VALUE => {
                let sub = r.message(wire, "wrong wire type for KeyValue.value")?;
                any_value(sub, &mut kv.value, depth + 1)?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Merges an `AnyValue` message (at protobuf depth `depth`) into `value`. Every recursion
/// of values passes through here, so this is where the depth limit is enforced.
fn any_value<'a>(mut r: Reader<'a>, value: &mut AnyValue<'a>, depth: usize) -> Result<()> {
    if depth > PROTO_DEPTH_MAX {
        return Err(DecodeError::TooDeep);
    }
    while let Some((field, wire)) = r.key()? {
        let new = match field {
            ANY_STRING => {
                AnyValue::String(r.str(wire, "wrong wire type for AnyValue.string_value")?)
            }
            ANY_BOOL => {
                AnyValue::Bool(r.uint64(wire, "wrong wire type for AnyValue.bool_value")? != 0)
            }
            ANY_INT => {
                AnyValue::Int(r.uint64(wire, "wrong wire type for AnyValue.int_value")? as i64)
            }
            ANY_DOUBLE => {
                let bits = r.fixed64(wire, "wrong wire type for AnyValue.double_value")?;
                AnyValue::Double(f64::from_bits(bits))
            }
            ANY_BYTES => AnyValue::Bytes(Cow::Borrowed(
                r.bytes(wire, "wrong wire type for AnyValue.bytes_value")?,
            )),
            ANY_ARRAY => {
                let sub = r.message(wire, "wrong wire type for AnyValue.array_value")?;
                let mut items = match std::mem::replace(value, AnyValue::Empty) {
                    AnyValue::Array(items) => items,
                    _ => Vec::new(),
                };
                array_value(sub, &mut items, depth + 1)?;
                AnyValue::Array(items)
            }
            ANY_KVLIST => {
                let sub = r.message(wire, "wrong wire type for AnyValue.kvlist_value")?;
                let mut kvs = match std::mem::replace(value, AnyValue::Empty) {
                    AnyValue::KvList(kvs) => kvs,
                    _ => Vec::new(),
                };
                key_value_list(sub, &mut kvs, depth + 1)?;
                AnyValue::KvList(kvs)
            }
            ANY_STRING_STRINDEX => {
                r.uint64(wire, "wrong wire type for AnyValue.string_value_strindex")?;
                AnyValue::Empty
            }
            _ => {
                r.skip(wire)?;
                continue;
            }
        };
        // Hot path: the value replaced is nearly always the empty one the caller pushed, which
        // owns nothing. Dropping it is an out-of-line call that does nothing, 3.4% of the
        // decoder's instructions (callgrind, decode bench), so it is forgotten; only a value
        // set twice in one message is dropped.
        if matches!(value, AnyValue::Empty) {
            std::mem::forget(std::mem::replace(value, new));
        } else {
            *value = new;
        }
    }
    Ok(())
}

/// Appends the values of an `ArrayValue` message (at protobuf depth `depth`) to `items`.
fn array_value<'a>(mut r: Reader<'a>, items: &mut Vec<AnyValue<'a>>, depth: usize) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            LIST_VALUES => {
                let sub = r.message(wire, "wrong wire type for ArrayValue.values")?;
                r.grow(items)?;
                items.push(AnyValue::Empty);
                any_value(sub, items.last_mut().expect("just pushed"), depth + 1)?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Appends the pairs of a `KeyValueList` message (at protobuf depth `depth`) to `kvs`.
fn key_value_list<'a>(mut r: Reader<'a>, kvs: &mut Vec<KeyValue<'a>>, depth: usize) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            LIST_VALUES => attribute(
                &mut r,
                wire,
                kvs,
                depth + 1,
                "wrong wire type for KeyValueList.values",
            )?,
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
