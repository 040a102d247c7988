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

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;

use super::{resource_copy_bytes, Budget, DecodeError, Decoded};
use crate::domain::validate::{self, Invalid, RejectReason, Rejections, Sanitised};
use crate::domain::{
    AnyValue, Event, KeyValue, Link, LogBatch, LogRecord, Resource, Scope, Span, SpanBatch, Status,
};
use crate::limits::REQUEST_VALUES_BYTES_MAX;

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
    let mut resource = self::resource(resource, schema_url, &mut out.sanitised);
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
        out.batches.push(batch(resource, scope, items));
    }
    Ok(())
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

// ------------------------------------------------------------------------------------------
// From the mirror structs to the domain, with validation.

/// Why one span or log record was dropped.
#[derive(Debug)]
enum Reject {
    Invalid(Invalid),
    /// An id field that is not a hex string; no [`Invalid`] variant says that.
    NotHex {
        field: &'static str,
        reason: RejectReason,
        err: hex::FromHexError,
    },
}

impl From<Invalid> for Reject {
    fn from(why: Invalid) -> Self {
        Reject::Invalid(why)
    }
}

impl Reject {
    fn record(self, rejected: &mut Rejections) {
        match self {
            Reject::Invalid(why) => rejected.reject(&why),
            Reject::NotHex { field, reason, err } => {
                rejected.reject_with(reason, || format!("{field} is not a hex string ({err})"));
            }
        }
    }
}

/// An id field: its name in rejection messages, and the reason it is counted under.
type IdField = (&'static str, RejectReason);
const TRACE_ID: IdField = ("trace id", RejectReason::TraceId);
const SPAN_ID: IdField = ("span id", RejectReason::SpanId);
const PARENT_SPAN_ID: IdField = ("parent span id", RejectReason::ParentSpanId);
const LINK_TRACE_ID: IdField = ("link trace id", RejectReason::Link);
const LINK_SPAN_ID: IdField = ("link span id", RejectReason::Link);
const LOG_TRACE_ID: IdField = ("log trace id", RejectReason::TraceId);
const LOG_SPAN_ID: IdField = ("log span id", RejectReason::SpanId);

/// Decodes a hex id. Ids of up to 16 bytes (all valid ones) decode into `buf` without
/// allocating; longer ones are decoded anyway so that validation reports their length.
fn hex_id<'b>(
    (field, reason): IdField,
    hex_str: &str,
    buf: &'b mut [u8; 16],
) -> Result<Cow<'b, [u8]>, Reject> {
    let n = hex_str.len() / 2;
    let bytes = if hex_str.len() % 2 == 0 && n <= buf.len() {
        hex::decode_to_slice(hex_str, &mut buf[..n]).map(|()| Cow::Borrowed(&buf[..n]))
    } else {
        hex::decode(hex_str).map(Cow::Owned)
    };
    bytes.map_err(|err| Reject::NotHex { field, reason, err })
}

fn resource<'a>(
    r: Msg<JResource<'a>>,
    schema_url: JStr<'a>,
    stats: &mut Sanitised,
) -> Resource<'a> {
    let r = msg(r);
    let mut resource = Resource {
        attributes: attributes(r.attributes),
        dropped_attributes_count: r.dropped_attributes_count.0,
        schema_url: schema_url.0,
    };
    validate::resource(&mut resource, stats);
    resource
}

fn scope<'a>(s: Msg<JScope<'a>>, schema_url: JStr<'a>, stats: &mut Sanitised) -> Scope<'a> {
    let s = msg(s);
    let mut scope = Scope {
        name: s.name.0,
        version: s.version.0,
        attributes: attributes(s.attributes),
        dropped_attributes_count: s.dropped_attributes_count.0,
        schema_url: schema_url.0,
    };
    validate::scope(&mut scope, stats);
    scope
}

fn span<'a>(j: JSpan<'a>, stats: &mut Sanitised) -> Result<Span<'a>, Reject> {
    let mut buf = [0u8; 16];
    let trace_id = validate::trace_id(&hex_id(TRACE_ID, &j.trace_id.0, &mut buf)?)?;
    let span_id = validate::span_id(&hex_id(SPAN_ID, &j.span_id.0, &mut buf)?)?;
    let parent = hex_id(PARENT_SPAN_ID, &j.parent_span_id.0, &mut buf)?;
    let parent_span_id = validate::parent_span_id(&parent)?;
    let links = list(j.links).map(link).collect::<Result<Vec<_>, _>>()?;
    let events = list(j.events)
        .map(|e| Event {
            time_unix_nano: e.time_unix_nano.0,
            name: e.name.0,
            attributes: attributes(e.attributes),
            dropped_attributes_count: e.dropped_attributes_count.0,
        })
        .collect();
    let status = msg(j.status);
    let mut span = Span {
        trace_id,
        span_id,
        trace_state: j.trace_state.0,
        parent_span_id,
        flags: j.flags.0,
        name: j.name.0,
        kind: j.kind.0,
        start_time_unix_nano: j.start_time_unix_nano.0,
        end_time_unix_nano: j.end_time_unix_nano.0,
        attributes: attributes(j.attributes),
        dropped_attributes_count: j.dropped_attributes_count.0,
        events,
        dropped_events_count: j.dropped_events_count.0,
        links,
        dropped_links_count: j.dropped_links_count.0,
        status: Status {
            message: status.message.0,
            code: status.code.0,
        },
    };
    validate::span(&mut span, stats)?;
    Ok(span)
}

fn link(j: JLink<'_>) -> Result<Link<'_>, Reject> {
    let mut tbuf = [0u8; 16];
    let mut sbuf = [0u8; 16];
    let trace = hex_id(LINK_TRACE_ID, &j.trace_id.0, &mut tbuf)?;
    let span = hex_id(LINK_SPAN_ID, &j.span_id.0, &mut sbuf)?;
    let (trace_id, span_id) = validate::link_ids(&trace, &span)?;
    Ok(Link {
        trace_id,
        span_id,
        trace_state: j.trace_state.0,
        attributes: attributes(j.attributes),
        dropped_attributes_count: j.dropped_attributes_count.0,
        flags: j.flags.0,
    })
}

fn log_record<'a>(j: JLogRecord<'a>, stats: &mut Sanitised) -> Result<LogRecord<'a>, Reject> {
    let mut buf = [0u8; 16];
    let trace_id = validate::log_trace_id(&hex_id(LOG_TRACE_ID, &j.trace_id.0, &mut buf)?)?;
    let span_id = validate::log_span_id(&hex_id(LOG_SPAN_ID, &j.span_id.0, &mut buf)?)?;
    let mut log = LogRecord {
        time_unix_nano: j.time_unix_nano.0,
        observed_time_unix_nano: j.observed_time_unix_nano.0,
        severity_number: j.severity_number.0,
        severity_text: j.severity_text.0,
        body: j.body.0,
        attributes: attributes(j.attributes),
        dropped_attributes_count: j.dropped_attributes_count.0,
        flags: j.flags.0,
        trace_id,
        span_id,
        event_name: j.event_name.0,
    };
    validate::log_record(&mut log, stats);
    Ok(log)
}

fn attributes(attrs: List<JKeyValue<'_>>) -> Vec<KeyValue<'_>> {
    // Same size as the domain type: the collect reuses the allocation.
    list(attrs).map(JKeyValue::into_domain).collect()
}

/// A repeated message field; absent and `null` are empty.
type List<T> = Option<Seq<M<T>>>;
/// A message field; absent and `null` are the default message.
type Msg<T> = Option<M<T>>;

fn list<T>(l: List<T>) -> impl Iterator<Item = T> {
    l.map_or_else(Vec::new, |Seq(l)| l)
        .into_iter()
        .map(|M(t)| t)
}

fn msg<T: Default>(m: Msg<T>) -> T {
    m.map(|M(t)| t).unwrap_or_default()
}

/// A JSON array, read into a `Vec` whose growth is charged against the request's [`Budget`]:
/// each slot costs [`Cost::BYTES`]. The capacity grows by doubling (from 4), but never past
/// what the budget has left, so what is allocated is what is charged; when not one more
/// element fits, parsing fails at once with a custom error that [`parse`] turns into
/// [`DecodeError::TooLarge`].
struct Seq<T>(Vec<T>);

impl<'de, T: Deserialize<'de> + Cost> Deserialize<'de> for Seq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(SeqVisitor(PhantomData)).map(Seq)
    }
}

struct SeqVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Cost> Visitor<'de> for SeqVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element()? {
            if list.len() == list.capacity() {
                let more = list.capacity().max(4).min(Budget::left() / T::BYTES).max(1);
                Budget::charge(more * T::BYTES).map_err(de::Error::custom)?;
                list.reserve_exact(more);
            }
            list.push(item);
        }
        Ok(list)
    }
}

/// What one element of a [`Seq`] costs the budget: its own size, plus that of the domain value
/// it becomes when that is another allocation (the mirror list is freed only once the domain
/// one is built, so both are alive at once).
trait Cost {
    const BYTES: usize;
}

impl Cost for M<JResourceSpans<'_>> {
    const BYTES: usize = size_of::<Self>();
}

impl Cost for M<JScopeSpans<'_>> {
    /// Becomes an entry of the resource's scope list, then a batch.
    const BYTES: usize =
        size_of::<Self>() + size_of::<(Scope<'_>, Vec<Span<'_>>)>() + size_of::<SpanBatch<'_>>();
}

impl Cost for M<JSpan<'_>> {
    const BYTES: usize = size_of::<Self>() + size_of::<Span<'_>>();
}

impl Cost for M<JEvent<'_>> {
    const BYTES: usize = size_of::<Self>() + size_of::<Event<'_>>();
}

impl Cost for M<JLink<'_>> {
    const BYTES: usize = size_of::<Self>() + size_of::<Link<'_>>();
}

impl Cost for M<JResourceLogs<'_>> {
    const BYTES: usize = size_of::<Self>();
}

impl Cost for M<JScopeLogs<'_>> {
    /// Becomes an entry of the resource's scope list, then a batch.
    const BYTES: usize = size_of::<Self>()
        + size_of::<(Scope<'_>, Vec<LogRecord<'_>>)>()
        + size_of::<LogBatch<'_>>();
}

impl Cost for M<JLogRecord<'_>> {
    const BYTES: usize = size_of::<Self>() + size_of::<LogRecord<'_>>();
}

impl Cost for M<JKeyValue<'_>> {
    /// Converted in place: see [`attributes`].
    const BYTES: usize = size_of::<Self>();
}

impl Cost for JAnyValue<'_> {
    /// Converted in place: a `JAnyValue` is an `AnyValue`.
    const BYTES: usize = size_of::<Self>();
}

// The in-place conversions above (`collect` reuses the allocation of a `vec::IntoIter` when the
// element layouts match) are what makes charging the mirror alone right.
const _: () = {
    assert!(size_of::<M<JKeyValue<'_>>>() == size_of::<KeyValue<'_>>());
    assert!(std::mem::align_of::<M<JKeyValue<'_>>>() == std::mem::align_of::<KeyValue<'_>>());
    assert!(size_of::<JAnyValue<'_>>() == size_of::<AnyValue<'_>>());
    assert!(std::mem::align_of::<JAnyValue<'_>>() == std::mem::align_of::<AnyValue<'_>>());
};

/// A protobuf message: a JSON object only. serde's derived `Deserialize` of a struct also
/// takes a JSON array of the fields in order, which is not protobuf JSON; `M` asks the
/// deserializer for a map instead.
struct M<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for M<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(ObjectOnly(d)).map(M)
    }
}

/// Forwards every request to `deserialize_map` of the inner deserializer. Only used for
/// derived structs, whose visitor reads a map.
struct ObjectOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

// ------------------------------------------------------------------------------------------
// Mirror structs of the OTLP messages. Every field is optional; `null` is absent.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "an OTLP ExportTraceServiceRequest object")]
struct JTracesRequest<'a> {
    #[serde(borrow, default, alias = "resource_spans")]
    resource_spans: List<JResourceSpans<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a ResourceSpans object")]
struct JResourceSpans<'a> {
    #[serde(borrow, default)]
    resource: Msg<JResource<'a>>,
    #[serde(borrow, default, alias = "scope_spans")]
    scope_spans: List<JScopeSpans<'a>>,
    #[serde(borrow, default, alias = "schema_url")]
    schema_url: JStr<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a ScopeSpans object")]
struct JScopeSpans<'a> {
    #[serde(borrow, default)]
    scope: Msg<JScope<'a>>,
    #[serde(borrow, default)]
    spans: List<JSpan<'a>>,
    #[serde(borrow, default, alias = "schema_url")]
    schema_url: JStr<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "an OTLP ExportLogsServiceRequest object")]
struct JLogsRequest<'a> {
    #[serde(borrow, default, alias = "resource_logs")]
    resource_logs: List<JResourceLogs<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a ResourceLogs object")]
struct JResourceLogs<'a> {
    #[serde(borrow, default)]
    resource: Msg<JResource<'a>>,
    #[serde(borrow, default, alias = "scope_logs")]
    scope_logs: List<JScopeLogs<'a>>,
    #[serde(borrow, default, alias = "schema_url")]
    schema_url: JStr<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a ScopeLogs object")]
struct JScopeLogs<'a> {
    #[serde(borrow, default)]
    scope: Msg<JScope<'a>>,
    #[serde(borrow, default, alias = "log_records")]
    log_records: List<JLogRecord<'a>>,
    #[serde(borrow, default, alias = "schema_url")]
    schema_url: JStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Resource object")]
struct JResource<'a> {
    #[serde(borrow, default)]
    attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: JU32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "an InstrumentationScope object")]
struct JScope<'a> {
    #[serde(borrow, default)]
    name: JStr<'a>,
    #[serde(borrow, default)]
    version: JStr<'a>,
    #[serde(borrow, default)]
    attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: JU32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Span object")]
struct JSpan<'a> {
    #[serde(borrow, default, alias = "trace_id")]
    trace_id: JStr<'a>,
    #[serde(borrow, default, alias = "span_id")]
    span_id: JStr<'a>,
    #[serde(borrow, default, alias = "trace_state")]
    trace_state: JStr<'a>,
    #[serde(borrow, default, alias = "parent_span_id")]
    parent_span_id: JStr<'a>,
    #[serde(default)]
    flags: JU32,
    #[serde(borrow, default)]
    name: JStr<'a>,
    #[serde(default)]
    kind: JEnum,
    #[serde(default, alias = "start_time_unix_nano")]
    start_time_unix_nano: JU64,
    #[serde(default, alias = "end_time_unix_nano")]
    end_time_unix_nano: JU64,
    #[serde(borrow, default)]
    attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: JU32,
    #[serde(borrow, default)]
    events: List<JEvent<'a>>,
    #[serde(default, alias = "dropped_events_count")]
    dropped_events_count: JU32,
    #[serde(borrow, default)]
    links: List<JLink<'a>>,
    #[serde(default, alias = "dropped_links_count")]
    dropped_links_count: JU32,
    #[serde(borrow, default)]
    status: Msg<JStatus<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Span.Event object")]
struct JEvent<'a> {
    #[serde(default, alias = "time_unix_nano")]
    time_unix_nano: JU64,
    #[serde(borrow, default)]
    name: JStr<'a>,
    #[serde(borrow, default)]
    attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: JU32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Span.Link object")]
struct JLink<'a> {
    #[serde(borrow, default, alias = "trace_id")]
    trace_id: JStr<'a>,
    #[serde(borrow, default, alias = "span_id")]
    span_id: JStr<'a>,
    #[serde(borrow, default, alias = "trace_state")]
    trace_state: JStr<'a>,
    #[serde(borrow, default)]
    attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: JU32,
    #[serde(default)]
    flags: JU32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Status object")]
struct JStatus<'a> {
    #[serde(borrow, default)]
    message: JStr<'a>,
    #[serde(default)]
    code: JEnum,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a LogRecord object")]
struct JLogRecord<'a> {
    #[serde(default, alias = "time_unix_nano")]
    time_unix_nano: JU64,
    #[serde(default, alias = "observed_time_unix_nano")]
    observed_time_unix_nano: JU64,
    #[serde(default, alias = "severity_number")]
    severity_number: JEnum,
    #[serde(borrow, default, alias = "severity_text")]
    severity_text: JStr<'a>,
    #[serde(borrow, default)]
    body: JAnyValue<'a>,
    #[serde(borrow, default)]
    attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: JU32,
    #[serde(default)]
    flags: JU32,
    #[serde(borrow, default, alias = "trace_id")]
    trace_id: JStr<'a>,
    #[serde(borrow, default, alias = "span_id")]
    span_id: JStr<'a>,
    #[serde(borrow, default, alias = "event_name")]
    event_name: JStr<'a>,
}

#[derive(Deserialize)]
#[serde(expecting = "a KeyValue object")]
struct JKeyValue<'a> {
    #[serde(borrow, default)]
    key: JStr<'a>,
    #[serde(borrow, default)]
    value: JAnyValue<'a>,
}

impl<'a> JKeyValue<'a> {
    fn into_domain(self) -> KeyValue<'a> {
        KeyValue {
            key: self.key.0,
            value: self.value.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(expecting = "an ArrayValue object")]
struct JArrayValue<'a> {
    #[serde(borrow, default)]
    values: Option<Seq<JAnyValue<'a>>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a KeyValueList object")]
struct JKeyValueList<'a> {
    #[serde(borrow, default)]
    values: List<JKeyValue<'a>>,
}

// ------------------------------------------------------------------------------------------
// Scalars. Each reads `null` as its default, so a field set to `null` is the field absent.

/// A string: borrowed from the body unless it had escapes.
#[derive(Default)]
struct JStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(StrVisitor).map(JStr)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// `uint64` / `fixed64`: a number or a decimal string.
#[derive(Default)]
struct JU64(u64);
/// `int64`: a number or a decimal string.
#[derive(Default)]
struct JI64(i64);
/// `uint32` / `fixed32`: a number or a decimal string.
#[derive(Default)]
struct JU32(u32);
/// An enum: an integer only (OTLP JSON forbids enum names).
#[derive(Default)]
struct JEnum(i32);

impl<'de> Deserialize<'de> for JU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = int(d, 0, u64::MAX.into(), true, "an unsigned 64-bit integer")?;
        Ok(JU64(v as u64))
    }
}

impl<'de> Deserialize<'de> for JI64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = int(
            d,
            i64::MIN.into(),
            i64::MAX.into(),
            true,
            "a 64-bit integer",
        )?;
        Ok(JI64(v as i64))
    }
}

impl<'de> Deserialize<'de> for JU32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = int(d, 0, u32::MAX.into(), true, "an unsigned 32-bit integer")?;
        Ok(JU32(v as u32))
    }
}

impl<'de> Deserialize<'de> for JEnum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = int(
            d,
            i32::MIN.into(),
            i32::MAX.into(),
            false,
            "an enum as an integer (OTLP JSON does not allow enum names)",
        )?;
        Ok(JEnum(v as i32))
    }
}

/// Reads an integer within `min..=max`; `null` is 0.
fn int<'de, D: Deserializer<'de>>(
    d: D,
    min: i128,
    max: i128,
    strings: bool,
    expecting: &'static str,
) -> Result<i128, D::Error> {
    let visitor = IntVisitor {
        min,
        max,
        strings,
        expecting,
    };
    Ok(d.deserialize_option(visitor)?.unwrap_or(0))
}

struct IntVisitor {
    min: i128,
    max: i128,
    /// Whether the decimal string form is accepted (not for enums).
    strings: bool,
    expecting: &'static str,
}

impl IntVisitor {
    fn check<E: de::Error>(&self, v: i128, unexpected: Unexpected<'_>) -> Result<i128, E> {
        if (self.min..=self.max).contains(&v) {
            Ok(v)
        } else {
            Err(E::invalid_value(unexpected, self))
        }
    }
}

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i128>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.check(v.into(), Unexpected::Unsigned(v)).map(Some)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.check(v.into(), Unexpected::Signed(v)).map(Some)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // `1e3` or `10.0`: accepted when integral, as protobuf JSON does.
        if v.fract() == 0.0 && v >= self.min as f64 && v <= self.max as f64 {
            self.check(v as i128, Unexpected::Float(v)).map(Some)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if !self.strings {
            return Err(E::invalid_type(Unexpected::Str(v), &self));
        }
        match parse_int_str(v) {
            Some(n) => self.check(n, Unexpected::Str(v)).map(Some),
            None => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// The parts of a JSON number: sign, integer digits, fraction digits, exponent (clamped).
fn json_number_parts(s: &str) -> Option<(bool, &[u8], &[u8], i64)> {
    fn digits(b: &[u8]) -> (&[u8], &[u8]) {
        let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
        b.split_at(n)
    }
    let b = s.as_bytes();
    let (negative, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let (int, rest) = digits(b);
    if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
        return None;
    }
    let (frac, rest) = match rest.split_first() {
        Some((b'.', r)) => {
            let (frac, rest) = digits(r);
            if frac.is_empty() {
                return None;
            }
            (frac, rest)
        }
        _ => (&[][..], rest),
    };
    let exp = match rest.split_first() {
        None => 0,
        Some((b'e' | b'E', r)) => {
            let (exp_negative, r) = match r.split_first() {
                Some((b'-', r)) => (true, r),
                Some((b'+', r)) => (false, r),
                _ => (false, r),
            };
            let (e, rest) = digits(r);
            if e.is_empty() || !rest.is_empty() {
                return None;
            }
            // Clamped: past 1e5 the value is 0, out of range or not integral anyway.
            let e = e.iter().fold(0i64, |acc, &c| {
                (acc * 10 + i64::from(c - b'0')).min(100_000)
            });
            if exp_negative {
                -e
            } else {
                e
            }
        }
        Some(_) => return None,
    };
    Some((negative, int, frac, exp))
}

/// Parses the string form of a protobuf JSON integer: a JSON number with an integral value
/// (`"12"`, `"-3"`, `"1e3"`, `"10.0"`; not `"1.5"`, `" 1"` or `"+1"`). Exact, no floats.
fn parse_int_str(s: &str) -> Option<i128> {
    let (negative, int, frac, exp) = json_number_parts(s)?;
    let all: Vec<u8> = int.iter().chain(frac).copied().collect();
    let first = all.iter().position(|&c| c != b'0');
    let Some(first) = first else {
        return Some(0);
    };
    let mut digits = &all[first..];
    // The value is `digits * 10^scale`.
    let mut scale = exp - frac.len() as i64;
    if scale < 0 {
        let cut = usize::try_from(-scale).ok()?;
        if cut > digits.len() || digits[digits.len() - cut..].iter().any(|&c| c != b'0') {
            return None; // not integral
        }
        digits = &digits[..digits.len() - cut];
        scale = 0;
    }
    // 20 digits hold every u64 and i64; more is out of range for any field.
    if digits.len() as i64 + scale > 20 {
        return None;
    }
    let mut v: i128 = 0;
    for &c in digits {
        v = v * 10 + i128::from(c - b'0');
    }
    for _ in 0..scale {
        v *= 10;
    }
    Some(if negative { -v } else { v })
}

/// `double`: a number, a numeric string, or "NaN" / "Infinity" / "-Infinity".
struct JF64(f64);

impl<'de> Deserialize<'de> for JF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(F64Visitor).map(JF64)
    }
}

struct F64Visitor;

impl Visitor<'_> for F64Visitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, or \"NaN\", \"Infinity\" or \"-Infinity\"")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => json_number_parts(v)
                .and_then(|_| v.parse::<f64>().ok())
                .filter(|f| f.is_finite())
                .ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// `bytes`: base64, standard or URL-safe alphabet, with or without padding.
struct JBytes(Vec<u8>);

const BASE64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, BASE64_CONFIG);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, BASE64_CONFIG);

impl<'de> Deserialize<'de> for JBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(BytesVisitor).map(JBytes)
    }
}

struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        let engine = if v.contains(['-', '_']) {
            &BASE64_URL_SAFE
        } else {
            &BASE64_STANDARD
        };
        engine
            .decode(v)
            .map_err(|e| E::custom(format_args!("invalid base64 in bytesValue: {e}")))
    }
}

// ------------------------------------------------------------------------------------------
// AnyValue, by hand: a oneof, read straight into the domain type.

struct JAnyValue<'a>(AnyValue<'a>);

impl Default for JAnyValue<'_> {
    fn default() -> Self {
        JAnyValue(AnyValue::Empty)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JAnyValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(AnyValueVisitor).map(JAnyValue)
    }
}

/// The members of the `AnyValue` oneof, by either name.
enum AnyValueField {
    String,
    Bool,
    Int,
    Double,
    Array,
    KvList,
    Bytes,
    Unknown,
}

impl<'de> Deserialize<'de> for AnyValueField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(AnyValueFieldVisitor)
    }
}

struct AnyValueFieldVisitor;

impl Visitor<'_> for AnyValueFieldVisitor {
    type Value = AnyValueField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AnyValue field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyValueField, E> {
        Ok(match v {
            "stringValue" | "string_value" => AnyValueField::String,
            "boolValue" | "bool_value" => AnyValueField::Bool,
            "intValue" | "int_value" => AnyValueField::Int,
            "doubleValue" | "double_value" => AnyValueField::Double,
            "arrayValue" | "array_value" => AnyValueField::Array,
            "kvlistValue" | "kvlist_value" => AnyValueField::KvList,
            "bytesValue" | "bytes_value" => AnyValueField::Bytes,
            _ => AnyValueField::Unknown,
        })
    }
}

struct AnyValueVisitor;

impl<'de> Visitor<'de> for AnyValueVisitor {
    type Value = AnyValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AnyValue object")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(AnyValue::Empty)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(AnyValue::Empty)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = None;
        while let Some(field) = map.next_key::<AnyValueField>()? {
            // `null` members are absent: `Option` reads them as `None`.
            let v = match field {
                AnyValueField::String => map
                    .next_value::<Option<JStr<'de>>>()?
                    .map(|s| AnyValue::String(s.0)),
                AnyValueField::Bool => map.next_value::<Option<bool>>()?.map(AnyValue::Bool),
                AnyValueField::Int => map
                    .next_value::<Option<JI64>>()?
                    .map(|i| AnyValue::Int(i.0)),
                AnyValueField::Double => map
                    .next_value::<Option<JF64>>()?
                    .map(|d| AnyValue::Double(d.0)),
                AnyValueField::Bytes => map
                    .next_value::<Option<JBytes>>()?
                    .map(|b| AnyValue::Bytes(Cow::Owned(b.0))),
                AnyValueField::Array => map.next_value::<Msg<JArrayValue<'de>>>()?.map(|M(a)| {
                    // In place, like `attributes`.
                    AnyValue::Array(
                        a.values
                            .map_or_else(Vec::new, |Seq(v)| v)
                            .into_iter()
                            .map(|v| v.0)
                            .collect(),
                    )
                }),
                AnyValueField::KvList => map
                    .next_value::<Msg<JKeyValueList<'de>>>()?
                    .map(|M(l)| AnyValue::KvList(attributes(l.values))),
                AnyValueField::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    None
                }
            };
            if let Some(v) = v {
                if value.is_some() {
                    return Err(de::Error::custom(
                        "AnyValue has more than one of stringValue, boolValue, intValue, \
                         doubleValue, arrayValue, kvlistValue, bytesValue",
                    ));
                }
                value = Some(v);
            }
        }
        Ok(value.unwrap_or(AnyValue::Empty))
    }
}

#[cfg(test)]
mod tests;
