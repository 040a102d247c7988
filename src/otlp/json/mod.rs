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

use std::borrow::Cow;
use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Unexpected, Visitor};
use serde::Deserialize;

use super::{DecodeError, Decoded};
use crate::domain::validate::{self, Invalid, Rejections, Sanitised};
use crate::domain::{
    AnyValue, Event, KeyValue, Link, LogBatch, LogRecord, Resource, Scope, Span, SpanBatch, Status,
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
        );
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
        );
    }
    Ok(out)
}

/// The valid items of one scope, counted as accepted; the others go to `rejected`.
fn keep_valid<J, T, B>(
    items: List<J>,
    out: &mut Decoded<B>,
    convert: fn(J, &mut Sanitised) -> Result<T, Reject>,
) -> Vec<T> {
    let items = items.unwrap_or_default();
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
/// resource is validated once, and only when some batch carries it.
fn push_batches<'a, T, B>(
    out: &mut Decoded<B>,
    resource: Msg<JResource<'a>>,
    schema_url: JStr<'a>,
    scopes: Vec<(Scope<'a>, Vec<T>)>,
    batch: impl Fn(Resource<'a>, Scope<'a>, Vec<T>) -> B,
) {
    if scopes.is_empty() {
        return;
    }
    let mut resource = self::resource(resource, schema_url, &mut out.sanitised);
    let mut scopes = scopes.into_iter().peekable();
    while let Some((scope, items)) = scopes.next() {
        let resource = match scopes.peek() {
            Some(_) => resource.clone(),
            None => std::mem::take(&mut resource),
        };
        out.batches.push(batch(resource, scope, items));
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<M<T>, DecodeError> {
    // Keeps serde_json's default recursion limit: it is what bounds the stack.
    serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
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
            Reject::NotHex { field, err } => {
                rejected.count += 1;
                if rejected.first.is_none() {
                    rejected.first = Some(format!("{field} is not a hex string ({err})"));
                }
            }
        }
    }
}

/// Decodes a hex id. Ids of up to 16 bytes (all valid ones) decode into `buf` without
/// allocating; longer ones are decoded anyway so that validation reports their length.
fn hex_id<'b>(
    field: &'static str,
    hex_str: &str,
    buf: &'b mut [u8; 16],
) -> Result<Cow<'b, [u8]>, Reject> {
    let n = hex_str.len() / 2;
    let bytes = if hex_str.len() % 2 == 0 && n <= buf.len() {
        hex::decode_to_slice(hex_str, &mut buf[..n]).map(|()| Cow::Borrowed(&buf[..n]))
    } else {
        hex::decode(hex_str).map(Cow::Owned)
    };
    bytes.map_err(|err| Reject::NotHex { field, err })
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
    let trace_id = validate::trace_id(&hex_id("trace id", &j.trace_id.0, &mut buf)?)?;
    let span_id = validate::span_id(&hex_id("span id", &j.span_id.0, &mut buf)?)?;
    let parent = hex_id("parent span id", &j.parent_span_id.0, &mut buf)?;
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
    let trace = hex_id("link trace id", &j.trace_id.0, &mut tbuf)?;
    let span = hex_id("link span id", &j.span_id.0, &mut sbuf)?;
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
    let trace_id = validate::log_trace_id(&hex_id("log trace id", &j.trace_id.0, &mut buf)?)?;
    let span_id = validate::log_span_id(&hex_id("log span id", &j.span_id.0, &mut buf)?)?;
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
type List<T> = Option<Vec<M<T>>>;
/// A message field; absent and `null` are the default message.
type Msg<T> = Option<M<T>>;

fn list<T>(l: List<T>) -> impl Iterator<Item = T> {
    l.unwrap_or_default().into_iter().map(|M(t)| t)
}

fn msg<T: Default>(m: Msg<T>) -> T {
    m.map(|M(t)| t).unwrap_or_default()
}

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
    values: Option<Vec<JAnyValue<'a>>>,
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
                    AnyValue::Array(
                        a.values
                            .unwrap_or_default()
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
mod tests {
    use super::*;
    use crate::domain::{SpanId, TraceId};
    use crate::limits::VALUE_DEPTH_MAX;

    fn traces(json: &str) -> Decoded<SpanBatch<'_>> {
        decode_traces_json(json.as_bytes()).expect("valid OTLP JSON")
    }

    fn logs(json: &str) -> Decoded<LogBatch<'_>> {
        decode_logs_json(json.as_bytes()).expect("valid OTLP JSON")
    }

    fn json_error(result: Result<Decoded<SpanBatch<'_>>, DecodeError>) -> String {
        match result {
            Err(DecodeError::Json(msg)) => msg,
            other => panic!("expected DecodeError::Json, got {other:?}"),
        }
    }

    fn s(v: &str) -> AnyValue<'_> {
        AnyValue::String(Cow::Borrowed(v))
    }

    fn kv<'a>(key: &'a str, value: AnyValue<'a>) -> KeyValue<'a> {
        KeyValue {
            key: Cow::Borrowed(key),
            value,
        }
    }

    /// A one-span request whose span carries `fields` after valid ids.
    fn one_span(fields: &str) -> String {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{
                "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"{fields}}}]}}]}}]}}"#
        )
    }

    /// The value of the only attribute of the only span of `fields`.
    fn attr_value(value: &str) -> Result<AnyValue<'static>, DecodeError> {
        let body = one_span(&format!(r#","attributes":[{{"key":"k","value":{value}}}]"#));
        let decoded = decode_traces_json(body.as_bytes())?;
        let value = decoded.batches[0].spans[0].attributes[0].value.clone();
        Ok(own_value(value))
    }

    fn own_value(v: AnyValue<'_>) -> AnyValue<'static> {
        match v {
            AnyValue::Empty => AnyValue::Empty,
            AnyValue::String(s) => AnyValue::String(Cow::Owned(s.into_owned())),
            AnyValue::Bool(b) => AnyValue::Bool(b),
            AnyValue::Int(i) => AnyValue::Int(i),
            AnyValue::Double(d) => AnyValue::Double(d),
            AnyValue::Bytes(b) => AnyValue::Bytes(Cow::Owned(b.into_owned())),
            AnyValue::Array(a) => AnyValue::Array(a.into_iter().map(own_value).collect()),
            AnyValue::KvList(l) => AnyValue::KvList(
                l.into_iter()
                    .map(|kv| KeyValue {
                        key: Cow::Owned(kv.key.into_owned()),
                        value: own_value(kv.value),
                    })
                    .collect(),
            ),
        }
    }

    /// `examples/trace.json` of the OTLP repository.
    const SPEC_TRACE: &str = r#"{
      "resourceSpans": [
        {
          "resource": {
            "attributes": [
              { "key": "service.name", "value": { "stringValue": "my.service" } }
            ]
          },
          "scopeSpans": [
            {
              "scope": {
                "name": "my.library",
                "version": "1.0.0",
                "attributes": [
                  { "key": "my.scope.attribute", "value": { "stringValue": "some scope attribute" } }
                ]
              },
              "spans": [
                {
                  "traceId": "5B8EFFF798038103D269B633813FC60C",
                  "spanId": "EEE19B7EC3C1B174",
                  "parentSpanId": "EEE19B7EC3C1B173",
                  "name": "I'm a server span",
                  "startTimeUnixNano": "1544712660000000000",
                  "endTimeUnixNano": "1544712661000000000",
                  "kind": 2,
                  "attributes": [
                    { "key": "my.span.attr", "value": { "stringValue": "some value" } }
                  ]
                }
              ]
            }
          ]
        }
      ]
    }"#;

    /// `examples/logs.json` of the OTLP repository.
    const SPEC_LOGS: &str = r#"{
      "resourceLogs": [
        {
          "resource": {
            "attributes": [
              { "key": "service.name", "value": { "stringValue": "my.service" } }
            ]
          },
          "scopeLogs": [
            {
              "scope": {
                "name": "my.library",
                "version": "1.0.0",
                "attributes": [
                  { "key": "my.scope.attribute", "value": { "stringValue": "some scope attribute" } }
                ]
              },
              "logRecords": [
                {
                  "timeUnixNano": "1544712660300000000",
                  "observedTimeUnixNano": "1544712660300000000",
                  "severityNumber": 10,
                  "severityText": "Information",
                  "traceId": "5B8EFFF798038103D269B633813FC60C",
                  "spanId": "EEE19B7EC3C1B174",
                  "body": { "stringValue": "Example log record" },
                  "attributes": [
                    { "key": "string.attribute", "value": { "stringValue": "some string" } },
                    { "key": "boolean.attribute", "value": { "boolValue": true } },
                    { "key": "int.attribute", "value": { "intValue": "10" } },
                    { "key": "double.attribute", "value": { "doubleValue": 637.704 } },
                    {
                      "key": "array.attribute",
                      "value": {
                        "arrayValue": {
                          "values": [ { "stringValue": "many" }, { "stringValue": "values" } ]
                        }
                      }
                    },
                    {
                      "key": "map.attribute",
                      "value": {
                        "kvlistValue": {
                          "values": [
                            { "key": "some.map.key", "value": { "stringValue": "some value" } }
                          ]
                        }
                      }
                    }
                  ]
                }
              ]
            }
          ]
        }
      ]
    }"#;

    /// `examples/events.json` of the OTLP repository (the log record part).
    const SPEC_EVENTS: &str = r#"{
      "resourceLogs": [ { "scopeLogs": [ { "logRecords": [ {
        "eventName": "browser.page_view",
        "timeUnixNano": "1544712660300000000",
        "observedTimeUnixNano": "1544712660300000000",
        "severityNumber": 9,
        "severityText": "test severity text",
        "attributes": [ { "key": "event.attribute", "value": { "stringValue": "some event attribute" } } ],
        "body": { "kvlistValue": { "values": [
          { "key": "type", "value": { "intValue": "0" } },
          { "key": "url", "value": { "stringValue": "https://www.guidgenerator.com/online-guid-generator.aspx" } },
          { "key": "referrer", "value": { "stringValue": "https://wwww.google.com" } },
          { "key": "title", "value": { "stringValue": "Free Online GUID Generator" } }
        ] } }
      } ] } ] } ]
    }"#;

    #[test]
    fn spec_trace_example() {
        let d = traces(SPEC_TRACE);
        assert_eq!((d.accepted, d.rejected.count), (1, 0));
        assert_eq!(d.sanitised, Sanitised::default());
        let b = &d.batches[0];
        assert_eq!(
            crate::domain::service_name(&b.resource.attributes),
            "my.service"
        );
        assert_eq!(b.scope.name, "my.library");
        assert_eq!(b.scope.version, "1.0.0");
        assert_eq!(
            b.scope.attributes,
            [kv("my.scope.attribute", s("some scope attribute"))]
        );
        let span = &b.spans[0];
        assert_eq!(
            span.trace_id,
            TraceId([
                0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
                0xc6, 0x0c
            ])
        );
        assert_eq!(
            span.span_id,
            SpanId([0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74])
        );
        assert_eq!(
            span.parent_span_id,
            Some(SpanId([0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73]))
        );
        assert_eq!(span.name, "I'm a server span");
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(span.attributes, [kv("my.span.attr", s("some value"))]);
        assert_eq!(span.status, Status::default());
        // Strings without escapes borrow from the body.
        assert!(matches!(span.name, Cow::Borrowed(_)));
    }

    #[test]
    fn spec_logs_example() {
        let d = logs(SPEC_LOGS);
        assert_eq!((d.accepted, d.rejected.count), (1, 0));
        let log = &d.batches[0].logs[0];
        assert_eq!(log.time_unix_nano, 1_544_712_660_300_000_000);
        assert_eq!(log.observed_time_unix_nano, 1_544_712_660_300_000_000);
        assert_eq!(log.severity_number, 10);
        assert_eq!(log.severity_text, "Information");
        assert_eq!(
            log.trace_id,
            TraceId::from_hex("5b8efff798038103d269b633813fc60c")
        );
        assert_eq!(
            log.span_id.map(|id| id.to_hex()).as_deref(),
            Some("eee19b7ec3c1b174")
        );
        assert_eq!(log.body, s("Example log record"));
        assert_eq!(
            log.attributes,
            [
                kv("string.attribute", s("some string")),
                kv("boolean.attribute", AnyValue::Bool(true)),
                kv("int.attribute", AnyValue::Int(10)),
                kv("double.attribute", AnyValue::Double(637.704)),
                kv(
                    "array.attribute",
                    AnyValue::Array(vec![s("many"), s("values")])
                ),
                kv(
                    "map.attribute",
                    AnyValue::KvList(vec![kv("some.map.key", s("some value"))])
                ),
            ]
        );
    }

    #[test]
    fn spec_events_example() {
        let d = logs(SPEC_EVENTS);
        let log = &d.batches[0].logs[0];
        assert_eq!(log.event_name, "browser.page_view");
        assert_eq!((log.trace_id, log.span_id), (None, None));
        let AnyValue::KvList(body) = &log.body else {
            panic!("body is {:?}", log.body)
        };
        assert_eq!(body[0], kv("type", AnyValue::Int(0)));
        assert_eq!(body.len(), 4);
        assert_eq!(d.batches[0].resource, Resource::default());
    }

    #[test]
    fn integers_as_strings_or_numbers() {
        for (json, want) in [
            (r#"{"intValue":"10"}"#, 10),
            (r#"{"intValue":10}"#, 10),
            (r#"{"intValue":-7}"#, -7),
            (r#"{"intValue":"-7"}"#, -7),
            (r#"{"intValue":"1e3"}"#, 1000),
            (r#"{"intValue":1e3}"#, 1000),
            (r#"{"intValue":"10.0"}"#, 10),
            (r#"{"intValue":"9223372036854775807"}"#, i64::MAX),
            (r#"{"intValue":-9223372036854775808}"#, i64::MIN),
        ] {
            assert_eq!(attr_value(json).unwrap(), AnyValue::Int(want), "{json}");
        }
        for bad in [
            r#"{"intValue":"9223372036854775808"}"#,
            r#"{"intValue":"1.5"}"#,
            r#"{"intValue":1.5}"#,
            r#"{"intValue":" 1"}"#,
            r#"{"intValue":"+1"}"#,
            r#"{"intValue":"0x10"}"#,
            r#"{"intValue":""}"#,
            r#"{"intValue":true}"#,
        ] {
            assert!(
                matches!(attr_value(bad), Err(DecodeError::Json(_))),
                "{bad} was accepted"
            );
        }

        let body = one_span(
            r#","startTimeUnixNano":1544712660000000000,"endTimeUnixNano":"18446744073709551615",
               "droppedAttributesCount":"3","flags":257"#,
        );
        let d = traces(&body);
        let span = &d.batches[0].spans[0];
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, u64::MAX);
        assert_eq!(span.dropped_attributes_count, 3);
        assert_eq!(span.flags, 257);

        for bad in [
            r#","startTimeUnixNano":-1"#,
            r#","startTimeUnixNano":"18446744073709551616""#,
            r#","droppedAttributesCount":4294967296"#,
            r#","flags":"x""#,
        ] {
            let msg = json_error(decode_traces_json(one_span(bad).as_bytes()));
            assert!(msg.contains("line"), "{msg}");
        }
    }

    #[test]
    fn enums_are_integers() {
        let body = one_span(r#","kind":3,"status":{"code":2,"message":"boom"}"#);
        let d = traces(&body);
        let span = &d.batches[0].spans[0];
        assert_eq!(span.kind, 3);
        assert_eq!(span.status.code, crate::domain::STATUS_CODE_ERROR);
        assert_eq!(span.status.message, "boom");
        // Values outside the known ones are kept as sent, as protobuf does.
        let body = one_span(r#","kind":42"#);
        let d = traces(&body);
        assert_eq!(d.batches[0].spans[0].kind, 42);
        // Enum names are not OTLP JSON.
        let msg = json_error(decode_traces_json(
            one_span(r#","kind":"SPAN_KIND_SERVER""#).as_bytes(),
        ));
        assert!(msg.contains("enum"), "{msg}");
    }

    #[test]
    fn doubles_including_non_finite() {
        assert_eq!(
            attr_value(r#"{"doubleValue":1.5}"#).unwrap(),
            AnyValue::Double(1.5)
        );
        assert_eq!(
            attr_value(r#"{"doubleValue":7}"#).unwrap(),
            AnyValue::Double(7.0)
        );
        assert_eq!(
            attr_value(r#"{"doubleValue":"2.5"}"#).unwrap(),
            AnyValue::Double(2.5)
        );
        assert_eq!(
            attr_value(r#"{"doubleValue":"Infinity"}"#).unwrap(),
            AnyValue::Double(f64::INFINITY)
        );
        assert_eq!(
            attr_value(r#"{"doubleValue":"-Infinity"}"#).unwrap(),
            AnyValue::Double(f64::NEG_INFINITY)
        );
        assert!(matches!(
            attr_value(r#"{"doubleValue":"NaN"}"#).unwrap(),
            AnyValue::Double(d) if d.is_nan()
        ));
        for bad in [
            r#"{"doubleValue":"inf"}"#,
            r#"{"doubleValue":"abc"}"#,
            r#"{"doubleValue":[]}"#,
        ] {
            assert!(
                matches!(attr_value(bad), Err(DecodeError::Json(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bytes_are_base64() {
        let want = AnyValue::Bytes(Cow::Owned(vec![0xfb, 0xff, 0x01]));
        assert_eq!(attr_value(r#"{"bytesValue":"+/8B"}"#).unwrap(), want);
        assert_eq!(attr_value(r#"{"bytesValue":"-_8B"}"#).unwrap(), want);
        let want = AnyValue::Bytes(Cow::Owned(b"hi".to_vec()));
        assert_eq!(attr_value(r#"{"bytesValue":"aGk="}"#).unwrap(), want);
        assert_eq!(attr_value(r#"{"bytesValue":"aGk"}"#).unwrap(), want);
        assert_eq!(
            attr_value(r#"{"bytesValue":""}"#).unwrap(),
            AnyValue::Bytes(Cow::Owned(vec![]))
        );
        let Err(DecodeError::Json(msg)) = attr_value(r#"{"bytesValue":"a*b"}"#) else {
            panic!("bad base64 accepted")
        };
        assert!(msg.contains("base64") && msg.contains("line"), "{msg}");
    }

    #[test]
    fn any_value_members() {
        assert_eq!(attr_value("{}").unwrap(), AnyValue::Empty);
        assert_eq!(attr_value("null").unwrap(), AnyValue::Empty);
        assert_eq!(
            attr_value(r#"{"boolValue":false}"#).unwrap(),
            AnyValue::Bool(false)
        );
        assert_eq!(attr_value(r#"{"stringValue":""}"#).unwrap(), s(""));
        assert_eq!(
            attr_value(r#"{"arrayValue":{}}"#).unwrap(),
            AnyValue::Array(vec![])
        );
        assert_eq!(
            attr_value(r#"{"kvlistValue":{"values":null}}"#).unwrap(),
            AnyValue::KvList(vec![])
        );
        // A null member is absent; a null value is the empty value.
        assert_eq!(
            attr_value(r#"{"stringValue":null,"intValue":"5"}"#).unwrap(),
            AnyValue::Int(5)
        );
        assert_eq!(
            attr_value(r#"{"arrayValue":{"values":[null,{}]}}"#).unwrap(),
            AnyValue::Array(vec![AnyValue::Empty, AnyValue::Empty])
        );
        // A oneof holds one value.
        let Err(DecodeError::Json(msg)) = attr_value(r#"{"stringValue":"a","intValue":1}"#) else {
            panic!("two values accepted")
        };
        assert!(msg.contains("more than one"), "{msg}");
        // Escaped strings are unescaped (and owned).
        let v = attr_value(r#"{"stringValue":"a\"b\u00e9\n"}"#).unwrap();
        assert_eq!(v, s("a\"bé\n"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = r#"{
          "unknownTop": {"a": [1, 2, {"b": null}]},
          "resourceSpans": [{
            "resource": {"attributes": [], "entityRefs": [{"type": "service"}], "x": 1},
            "instrumentationLibrarySpans": [{"spans": [{"name": "legacy"}]}],
            "scopeSpans": [{
              "scope": {"name": "lib", "future": true},
              "spans": [{
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174",
                "name": "n",
                "newField": {"deep": [[[[["x"]]]]]},
                "attributes": [{"key": "k", "keyStrindex": 3, "value": {"stringValue": "v", "other": 1}}],
                "status": {"code": 1, "deprecatedCode": 2}
              }]
            }]
          }]
        }"#;
        let d = traces(body);
        assert_eq!(d.accepted, 1);
        let span = &d.batches[0].spans[0];
        assert_eq!(span.name, "n");
        assert_eq!(span.attributes, [kv("k", s("v"))]);
        assert_eq!(span.status.code, 1);
        assert_eq!(d.batches[0].scope.name, "lib");
    }

    #[test]
    fn snake_case_names_are_accepted() {
        let body = r#"{"resource_spans":[{
            "resource":{"attributes":[{"key":"service.name","value":{"string_value":"svc"}}],
                        "dropped_attributes_count":1},
            "schema_url":"https://r",
            "scope_spans":[{"scope":{"name":"lib","dropped_attributes_count":2},"schema_url":"https://s",
              "spans":[{
                "trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
                "parent_span_id":"eee19b7ec3c1b173","trace_state":"a=b",
                "start_time_unix_nano":"1","end_time_unix_nano":2,
                "dropped_attributes_count":3,"dropped_events_count":4,"dropped_links_count":5,
                "events":[{"time_unix_nano":"2","name":"e","dropped_attributes_count":6}],
                "links":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
                          "trace_state":"x=y","dropped_attributes_count":7,"flags":1}],
                "attributes":[{"key":"a","value":{"array_value":{"values":[{"int_value":"1"},
                  {"double_value":2.5},{"bool_value":true},{"bytes_value":"aGk="},
                  {"kvlist_value":{"values":[{"key":"b","value":{"string_value":"c"}}]}}]}}}]
              }]}]}]}"#;
        let d = traces(body);
        let b = &d.batches[0];
        assert_eq!(crate::domain::service_name(&b.resource.attributes), "svc");
        assert_eq!(b.resource.dropped_attributes_count, 1);
        assert_eq!(b.resource.schema_url, "https://r");
        assert_eq!(b.scope.schema_url, "https://s");
        assert_eq!(b.scope.dropped_attributes_count, 2);
        let span = &b.spans[0];
        assert!(span.parent_span_id.is_some());
        assert_eq!(span.trace_state, "a=b");
        assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (1, 2));
        assert_eq!(
            (
                span.dropped_attributes_count,
                span.dropped_events_count,
                span.dropped_links_count
            ),
            (3, 4, 5)
        );
        assert_eq!(span.events[0].time_unix_nano, 2);
        assert_eq!(span.events[0].dropped_attributes_count, 6);
        assert_eq!(span.links[0].trace_state, "x=y");
        assert_eq!(span.links[0].dropped_attributes_count, 7);
        assert_eq!(
            span.attributes[0].value,
            AnyValue::Array(vec![
                AnyValue::Int(1),
                AnyValue::Double(2.5),
                AnyValue::Bool(true),
                AnyValue::Bytes(Cow::Owned(b"hi".to_vec())),
                AnyValue::KvList(vec![kv("b", s("c"))]),
            ])
        );

        let d = logs(
            r#"{"resource_logs":[{"scope_logs":[{"log_records":[{
                "time_unix_nano":"5","observed_time_unix_nano":6,"severity_number":9,
                "severity_text":"INFO","event_name":"ev","trace_id":"5b8efff798038103d269b633813fc60c",
                "span_id":"eee19b7ec3c1b174","dropped_attributes_count":1}]}]}]}"#,
        );
        let log = &d.batches[0].logs[0];
        assert_eq!((log.time_unix_nano, log.observed_time_unix_nano), (5, 6));
        assert_eq!(
            (log.severity_number, log.severity_text.as_ref()),
            (9, "INFO")
        );
        assert_eq!(log.event_name, "ev");
        assert!(log.trace_id.is_some() && log.span_id.is_some());
        assert_eq!(log.dropped_attributes_count, 1);
        // The same field under both names is a duplicate, as in protobuf JSON.
        assert!(decode_logs_json(br#"{"resourceLogs":[],"resource_logs":[]}"#).is_err());
    }

    #[test]
    fn null_is_absent() {
        let body = one_span(
            r#","name":null,"kind":null,"startTimeUnixNano":null,"attributes":null,
               "events":null,"links":null,"status":null,"parentSpanId":null,"traceState":null"#,
        );
        let d = traces(&body);
        let span = &d.batches[0].spans[0];
        assert_eq!(span.name, "");
        assert_eq!(span.parent_span_id, None);
        assert!(span.attributes.is_empty() && span.events.is_empty() && span.links.is_empty());
        let d = traces(
            r#"{"resourceSpans":[{"resource":null,"schemaUrl":null,"scopeSpans":[{"scope":null,"spans":[
              {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#,
        );
        assert_eq!(d.accepted, 1);
        assert_eq!(traces(r#"{"resourceSpans":null}"#).batches.len(), 0);
        assert_eq!(traces("{}").batches.len(), 0);
        let d = logs(
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":null,"traceId":null}]}]}]}"#,
        );
        assert_eq!(d.batches[0].logs[0].body, AnyValue::Empty);
        assert_eq!(d.batches[0].logs[0].trace_id, None);
    }

    #[test]
    fn bad_ids_reject_the_item_and_keep_the_rest() {
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc6zz","spanId":"eee19b7ec3c1b174","name":"nothex"},
            {"traceId":"5B8EFFF798038103d269b633813fc60c","spanId":"EEE19B7EC3C1B174","name":"ok"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b","name":"short"},
            {"traceId":"","spanId":"eee19b7ec3c1b174","name":"empty"},
            {"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b174","name":"zero"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"abc","name":"odd"},
            {"traceId":"5b8efff798038103d269b633813fc60c00","spanId":"eee19b7ec3c1b174","name":"long"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"badlink",
             "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"x"}]},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"shortlink",
             "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":""}]},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"backwards",
             "startTimeUnixNano":"2","endTimeUnixNano":"1"}
        ]}]}]}"#;
        let d = traces(body);
        assert_eq!(d.accepted, 1);
        assert_eq!(d.batches[0].spans[0].name, "ok");
        assert_eq!(d.rejected.count, 9);
        let first = d.rejected.first.unwrap();
        assert!(first.starts_with("trace id is not a hex string"), "{first}");

        let d = traces(
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
             "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b1"}]}]}]}]}"#,
        );
        assert_eq!(d.rejected.first, Some(Invalid::LinkIdLength.to_string()));
        assert!(d.batches.is_empty(), "a batch left empty is not pushed");

        let d = logs(
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"traceId":"xyz","body":{"stringValue":"a"}},
            {"spanId":"eee19b7ec3c1b1","body":{"stringValue":"b"}},
            {"traceId":"00000000000000000000000000000000","spanId":"0000000000000000","body":{"stringValue":"c"}}
        ]}]}]}"#,
        );
        assert_eq!((d.accepted, d.rejected.count), (1, 2));
        assert_eq!(d.batches[0].logs[0].body, s("c"));
        assert_eq!(
            d.batches[0].logs[0].trace_id, None,
            "zero log ids are no trace context"
        );
        assert_eq!(
            d.rejected.first.as_deref(),
            Some("log trace id is not a hex string (Odd number of digits)")
        );
    }

    #[test]
    fn one_batch_per_scope_with_the_resource_cloned() {
        let span = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}"#;
        let bad = r#"{"traceId":"","spanId":"eee19b7ec3c1b174"}"#;
        let body = format!(
            r#"{{"resourceSpans":[
              {{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"a"}}}}]}},
               "schemaUrl":"https://ra",
               "scopeSpans":[
                 {{"scope":{{"name":"s1"}},"schemaUrl":"https://s1","spans":[{span},{span}]}},
                 {{"scope":{{"name":"empty"}},"spans":[{bad}]}},
                 {{"scope":{{"name":"none"}}}},
                 {{"scope":{{"name":"s2"}},"spans":[{span}]}}]}},
              {{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"b"}}}}]}},
               "scopeSpans":[{{"spans":[{span}]}}]}}
            ]}}"#
        );
        let d = traces(&body);
        assert_eq!((d.accepted, d.rejected.count), (4, 1));
        let names: Vec<_> = d.batches.iter().map(|b| b.scope.name.as_ref()).collect();
        assert_eq!(names, ["s1", "s2", ""]);
        let services: Vec<_> = d
            .batches
            .iter()
            .map(|b| crate::domain::service_name(&b.resource.attributes))
            .collect();
        assert_eq!(services, ["a", "a", "b"]);
        assert_eq!(d.batches[0].resource, d.batches[1].resource);
        assert_eq!(d.batches[0].resource.schema_url, "https://ra");
        assert_eq!(d.batches[0].scope.schema_url, "https://s1");
        assert_eq!(d.batches[1].scope.schema_url, "");
        assert_eq!(d.batches[0].spans.len(), 2);
    }

    #[test]
    fn sanitising_is_applied_and_counted_once_per_resource() {
        let long = "x".repeat(crate::limits::VALUE_BYTES_MAX + 10);
        let span = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}"#;
        let attrs: Vec<String> = (0..crate::limits::ATTRIBUTES_COUNT_MAX + 2)
            .map(|i| format!(r#"{{"key":"k{i}","value":{{"intValue":{i}}}}}"#))
            .collect();
        let body = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"long","value":{{"stringValue":"{long}"}}}}]}},
                "scopeSpans":[{{"scope":{{"name":"a"}},"spans":[{span}]}},{{"scope":{{"name":"b"}},"spans":[{span}]}}]}},
              {{"resource":{{"attributes":[{{"key":"never","value":{{"stringValue":"{long}"}}}}]}},
                "scopeSpans":[{{"spans":[{{"traceId":""}}]}}]}},
              {{"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c",
                "spanId":"eee19b7ec3c1b174","attributes":[{}]}}]}}]}}]}}"#,
            attrs.join(",")
        );
        let d = traces(&body);
        assert_eq!((d.accepted, d.rejected.count), (3, 1));
        // The first resource is truncated once although two batches carry it; the resource
        // of no batch is not looked at.
        assert_eq!(d.sanitised.truncated_values, 1);
        assert_eq!(d.sanitised.dropped_attributes, 2);
        let AnyValue::String(v) = &d.batches[0].resource.attributes[0].value else {
            panic!()
        };
        assert_eq!(v.len(), crate::limits::VALUE_BYTES_MAX);
        assert!(matches!(v, Cow::Borrowed(_)));
        assert_eq!(d.batches[0].resource, d.batches[1].resource);
        let span = &d.batches[2].spans[0];
        assert_eq!(span.attributes.len(), crate::limits::ATTRIBUTES_COUNT_MAX);
        assert_eq!(span.dropped_attributes_count, 2);
    }

    /// What opentelemetry-proto's serde mapping writes (what the integration tests post) is
    /// read to the same values.
    #[test]
    fn reads_what_opentelemetry_proto_writes() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1 as pc;
        use opentelemetry_proto::tonic::logs::v1 as pl;
        use opentelemetry_proto::tonic::resource::v1 as pr;
        use opentelemetry_proto::tonic::trace::v1 as pt;
        use pc::any_value::Value as V;

        fn pkv(key: &str, value: V) -> pc::KeyValue {
            pc::KeyValue {
                key: key.into(),
                value: Some(pc::AnyValue { value: Some(value) }),
                ..Default::default()
            }
        }
        let attributes = vec![
            pkv("s", V::StringValue("a\"b\n".into())),
            pkv("b", V::BoolValue(true)),
            pkv("i", V::IntValue(-42)),
            pkv("d", V::DoubleValue(2.5)),
            pkv("y", V::BytesValue(vec![0, 1, 254, 255])),
            pkv(
                "a",
                V::ArrayValue(pc::ArrayValue {
                    values: vec![pc::AnyValue {
                        value: Some(V::IntValue(i64::MAX)),
                    }],
                }),
            ),
            pkv(
                "m",
                V::KvlistValue(pc::KeyValueList {
                    values: vec![pkv("inner", V::BoolValue(false))],
                }),
            ),
        ];
        let resource = Some(pr::Resource {
            attributes: vec![pkv("service.name", V::StringValue("svc".into()))],
            dropped_attributes_count: 1,
            ..Default::default()
        });
        let scope = Some(pc::InstrumentationScope {
            name: "lib".into(),
            version: "2".into(),
            ..Default::default()
        });
        let request = ExportTraceServiceRequest {
            resource_spans: vec![pt::ResourceSpans {
                resource: resource.clone(),
                scope_spans: vec![pt::ScopeSpans {
                    scope: scope.clone(),
                    spans: vec![pt::Span {
                        trace_id: vec![0x5b; 16],
                        span_id: vec![0xee; 8],
                        parent_span_id: vec![0xef; 8],
                        trace_state: "k=v".into(),
                        flags: 0x301,
                        name: "GET /".into(),
                        kind: 3,
                        start_time_unix_nano: 1_544_712_660_000_000_000,
                        end_time_unix_nano: u64::MAX,
                        attributes: attributes.clone(),
                        dropped_attributes_count: 2,
                        events: vec![pt::span::Event {
                            time_unix_nano: 5,
                            name: "ev".into(),
                            attributes: attributes.clone(),
                            dropped_attributes_count: 3,
                        }],
                        dropped_events_count: 4,
                        links: vec![pt::span::Link {
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            trace_state: "x=y".into(),
                            attributes: vec![],
                            dropped_attributes_count: 5,
                            flags: 1,
                        }],
                        dropped_links_count: 6,
                        status: Some(pt::Status {
                            message: "bad".into(),
                            code: 2,
                        }),
                    }],
                    schema_url: "https://s".into(),
                }],
                schema_url: "https://r".into(),
            }],
        };
        let json = serde_json::to_string(&request).unwrap();
        let d = traces(&json);
        assert_eq!((d.accepted, d.rejected.count), (1, 0), "{json}");
        let b = &d.batches[0];
        assert_eq!(b.resource.schema_url, "https://r");
        assert_eq!(b.resource.dropped_attributes_count, 1);
        assert_eq!(crate::domain::service_name(&b.resource.attributes), "svc");
        assert_eq!(
            (b.scope.name.as_ref(), b.scope.version.as_ref()),
            ("lib", "2")
        );
        assert_eq!(b.scope.schema_url, "https://s");
        let want_attrs = vec![
            kv("s", s("a\"b\n")),
            kv("b", AnyValue::Bool(true)),
            kv("i", AnyValue::Int(-42)),
            kv("d", AnyValue::Double(2.5)),
            kv("y", AnyValue::Bytes(Cow::Owned(vec![0, 1, 254, 255]))),
            kv("a", AnyValue::Array(vec![AnyValue::Int(i64::MAX)])),
            kv(
                "m",
                AnyValue::KvList(vec![kv("inner", AnyValue::Bool(false))]),
            ),
        ];
        let want = Span {
            trace_id: TraceId([0x5b; 16]),
            span_id: SpanId([0xee; 8]),
            trace_state: Cow::Borrowed("k=v"),
            parent_span_id: Some(SpanId([0xef; 8])),
            flags: 0x301,
            name: Cow::Borrowed("GET /"),
            kind: 3,
            start_time_unix_nano: 1_544_712_660_000_000_000,
            end_time_unix_nano: u64::MAX,
            attributes: want_attrs.clone(),
            dropped_attributes_count: 2,
            events: vec![Event {
                time_unix_nano: 5,
                name: Cow::Borrowed("ev"),
                attributes: want_attrs.clone(),
                dropped_attributes_count: 3,
            }],
            dropped_events_count: 4,
            links: vec![Link {
                trace_id: TraceId([1; 16]),
                span_id: SpanId([2; 8]),
                trace_state: Cow::Borrowed("x=y"),
                attributes: vec![],
                dropped_attributes_count: 5,
                flags: 1,
            }],
            dropped_links_count: 6,
            status: Status {
                message: Cow::Borrowed("bad"),
                code: 2,
            },
        };
        assert_eq!(b.spans, [want]);

        let request = ExportLogsServiceRequest {
            resource_logs: vec![pl::ResourceLogs {
                resource,
                scope_logs: vec![pl::ScopeLogs {
                    scope,
                    log_records: vec![pl::LogRecord {
                        time_unix_nano: 7,
                        observed_time_unix_nano: 8,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(pc::AnyValue {
                            value: Some(V::StringValue("boom".into())),
                        }),
                        attributes: attributes.clone(),
                        dropped_attributes_count: 9,
                        flags: 1,
                        trace_id: vec![0x5b; 16],
                        span_id: vec![0xee; 8],
                        event_name: "e".into(),
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let json = serde_json::to_string(&request).unwrap();
        let d = logs(&json);
        let want = LogRecord {
            time_unix_nano: 7,
            observed_time_unix_nano: 8,
            severity_number: 17,
            severity_text: Cow::Borrowed("ERROR"),
            body: s("boom"),
            attributes: want_attrs,
            dropped_attributes_count: 9,
            flags: 1,
            trace_id: Some(TraceId([0x5b; 16])),
            span_id: Some(SpanId([0xee; 8])),
            event_name: Cow::Borrowed("e"),
        };
        assert_eq!(d.batches[0].logs, [want], "{json}");
    }

    #[test]
    fn syntax_and_type_errors_carry_the_position() {
        let msg = json_error(decode_traces_json(b"{\"resourceSpans\": [\n  {]}"));
        assert!(msg.contains("line 2 column"), "{msg}");
        for bad in [
            &b""[..],
            b"[]",
            b"null",
            b"{\"resourceSpans\": {}}",
            b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"name\": 5}]}]}]}",
            b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"traceId\": 5}]}]}]}",
            b"{\"resourceSpans\": []} trailing",
            b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"name\": \"\xff\"}]}]}]}",
        ] {
            let msg = json_error(decode_traces_json(bad));
            assert!(msg.contains("line 1 column"), "{msg}");
        }
        let Err(DecodeError::Json(msg)) =
            decode_logs_json(b"{\"resourceLogs\":[{\"scopeLogs\":5}]}")
        else {
            panic!("accepted")
        };
        assert!(msg.ends_with("line 1 column 31"), "{msg}");
    }

    /// A one-span request with an attribute nested `depth` arrays deep.
    fn nested_request(depth: usize) -> String {
        let v = format!(
            r#"{}{{"intValue":"1"}}{}"#,
            r#"{"arrayValue":{"values":["#.repeat(depth),
            "]}}".repeat(depth)
        );
        one_span(&format!(r#","attributes":[{{"key":"deep","value":{v}}}]"#))
    }

    #[test]
    fn deep_nesting_is_bounded() {
        // On a small stack (what a busy shard might have left), every depth either decodes or
        // stops at serde_json's recursion limit; none overflows.
        let result = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let mut deepest_ok = 0;
                for depth in 0..60 {
                    match decode_traces_json(nested_request(depth).as_bytes()) {
                        Ok(d) => {
                            assert_eq!(depth, deepest_ok + usize::from(depth > 0));
                            deepest_ok = depth;
                            // Validation flattens what is deeper than the limit, and counts it.
                            let flattened = d.sanitised.flattened_values;
                            assert_eq!(flattened, u64::from(depth >= VALUE_DEPTH_MAX));
                        }
                        Err(DecodeError::Json(msg)) => {
                            assert!(msg.contains("recursion limit"), "{msg}");
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                deepest_ok
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(result > 30, "only {result} levels decode");

        // Far deeper: an error, not a crash; and unknown fields are skipped without recursion.
        let deep = nested_request(100_000);
        let msg = json_error(decode_traces_json(deep.as_bytes()));
        assert!(msg.contains("recursion limit"), "{msg}");
        let ignored = one_span(&format!(
            r#","future":{}1{}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        ));
        assert_eq!(traces(&ignored).accepted, 1);
    }

    #[test]
    fn integer_strings_parse_exactly() {
        for (s, want) in [
            ("0", Some(0)),
            ("-0", Some(0)),
            ("18446744073709551615", Some(u64::MAX.into())),
            ("1.8446744073709551615e19", Some(u64::MAX.into())),
            ("-9223372036854775808", Some(i64::MIN.into())),
            ("1e0", Some(1)),
            ("1E+2", Some(100)),
            ("12300e-2", Some(123)),
            ("0.0e99999999999", Some(0)),
            ("1.25e2", Some(125)),
            ("1.25e1", None),
            ("1e99999999999", None),
            ("1e-1", None),
            ("01", None),
            ("1.", None),
            (".1", None),
            ("1e", None),
            ("-", None),
            ("", None),
            ("1 ", None),
            ("123456789012345678901", None),
        ] {
            assert_eq!(parse_int_str(s), want, "{s:?}");
        }
    }

    mod round_trip {
        use proptest::collection::vec;
        use proptest::option;
        use proptest::prelude::*;

        use super::super::*;
        use crate::domain::{ArchivedLogBatch, ArchivedSpanBatch, SpanId, TraceId};
        use crate::otlp::json_out::tests::{logs_doc, traces_doc};

        fn text() -> impl Strategy<Value = Cow<'static, str>> {
            prop_oneof![
                "[a-z._/]{0,10}",
                vec(any::<char>(), 0..8).prop_map(String::from_iter),
                Just("\"\\\u{0}\u{1f}\u{7f}\u{2028}é😀".to_owned()),
            ]
            .prop_map(Cow::Owned)
        }

        /// Doubles serde_json reads back exactly without its `float_roundtrip` feature.
        fn double() -> impl Strategy<Value = f64> {
            prop_oneof![
                (any::<i32>(), 0..8i32).prop_map(|(m, e)| f64::from(m) / 10f64.powi(e)),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(-0.0),
                Just(637.704),
                Just(1e-7),
            ]
        }

        fn any_value() -> impl Strategy<Value = AnyValue<'static>> {
            let leaf = prop_oneof![
                Just(AnyValue::Empty),
                text().prop_map(AnyValue::String),
                any::<bool>().prop_map(AnyValue::Bool),
                any::<i64>().prop_map(AnyValue::Int),
                double().prop_map(AnyValue::Double),
                vec(any::<u8>(), 0..12).prop_map(|b| AnyValue::Bytes(Cow::Owned(b))),
            ];
            leaf.prop_recursive(4, 24, 4, |inner| {
                prop_oneof![
                    vec(inner.clone(), 0..4).prop_map(AnyValue::Array),
                    attrs_of(inner).prop_map(AnyValue::KvList),
                ]
            })
        }

        fn attrs_of(
            value: impl Strategy<Value = AnyValue<'static>>,
        ) -> impl Strategy<Value = Vec<KeyValue<'static>>> {
            vec((text(), value), 0..4).prop_map(|kvs| {
                kvs.into_iter()
                    .map(|(key, value)| KeyValue { key, value })
                    .collect()
            })
        }

        fn attrs() -> impl Strategy<Value = Vec<KeyValue<'static>>> {
            attrs_of(any_value())
        }

        fn trace_id() -> impl Strategy<Value = TraceId> {
            any::<[u8; 16]>()
                .prop_filter("valid", |b| b != &[0; 16])
                .prop_map(TraceId)
        }

        fn span_id() -> impl Strategy<Value = SpanId> {
            any::<[u8; 8]>()
                .prop_filter("valid", |b| b != &[0; 8])
                .prop_map(SpanId)
        }

        fn resource() -> impl Strategy<Value = Resource<'static>> {
            (attrs(), any::<u32>(), text()).prop_map(|(attributes, dropped, schema_url)| Resource {
                attributes,
                dropped_attributes_count: dropped,
                schema_url,
            })
        }

        fn scope() -> impl Strategy<Value = Scope<'static>> {
            (text(), text(), attrs(), any::<u32>(), text()).prop_map(
                |(name, version, attributes, dropped, schema_url)| Scope {
                    name,
                    version,
                    attributes,
                    dropped_attributes_count: dropped,
                    schema_url,
                },
            )
        }

        fn event() -> impl Strategy<Value = Event<'static>> {
            (any::<u64>(), text(), attrs(), any::<u32>()).prop_map(
                |(time_unix_nano, name, attributes, dropped)| Event {
                    time_unix_nano,
                    name,
                    attributes,
                    dropped_attributes_count: dropped,
                },
            )
        }

        fn link() -> impl Strategy<Value = Link<'static>> {
            // Zero ids are kept as sent in links.
            (
                any::<[u8; 16]>(),
                any::<[u8; 8]>(),
                text(),
                attrs(),
                any::<u32>(),
                any::<u32>(),
            )
                .prop_map(|(t, s, trace_state, attributes, dropped, flags)| Link {
                    trace_id: TraceId(t),
                    span_id: SpanId(s),
                    trace_state,
                    attributes,
                    dropped_attributes_count: dropped,
                    flags,
                })
        }

        fn span() -> impl Strategy<Value = Span<'static>> {
            (
                (
                    trace_id(),
                    span_id(),
                    text(),
                    option::of(span_id()),
                    any::<u32>(),
                    text(),
                ),
                (
                    any::<i32>(),
                    any::<u64>(),
                    any::<u64>(),
                    attrs(),
                    any::<u32>(),
                ),
                (
                    vec(event(), 0..3),
                    any::<u32>(),
                    vec(link(), 0..3),
                    any::<u32>(),
                ),
                (text(), prop_oneof![Just(0), Just(1), Just(2), any::<i32>()]),
            )
                .prop_map(
                    |(
                        (trace_id, span_id, trace_state, parent_span_id, flags, name),
                        (kind, t1, t2, attributes, dropped_attributes_count),
                        (events, dropped_events_count, links, dropped_links_count),
                        (message, code),
                    )| Span {
                        trace_id,
                        span_id,
                        trace_state,
                        parent_span_id,
                        flags,
                        name,
                        kind,
                        start_time_unix_nano: t1.min(t2),
                        end_time_unix_nano: t1.max(t2),
                        attributes,
                        dropped_attributes_count,
                        events,
                        dropped_events_count,
                        links,
                        dropped_links_count,
                        status: Status { message, code },
                    },
                )
        }

        fn log() -> impl Strategy<Value = LogRecord<'static>> {
            (
                (
                    any::<u64>(),
                    any::<u64>(),
                    any::<i32>(),
                    text(),
                    any_value(),
                ),
                (attrs(), any::<u32>(), any::<u32>()),
                (option::of(trace_id()), option::of(span_id()), text()),
            )
                .prop_map(
                    |(
                        (
                            time_unix_nano,
                            observed_time_unix_nano,
                            severity_number,
                            severity_text,
                            body,
                        ),
                        (attributes, dropped_attributes_count, flags),
                        (trace_id, span_id, event_name),
                    )| LogRecord {
                        time_unix_nano,
                        observed_time_unix_nano,
                        severity_number,
                        severity_text,
                        body,
                        attributes,
                        dropped_attributes_count,
                        flags,
                        trace_id,
                        span_id,
                        event_name,
                    },
                )
        }

        fn span_batch() -> impl Strategy<Value = SpanBatch<'static>> {
            (resource(), scope(), vec(span(), 1..4)).prop_map(|(resource, scope, spans)| {
                SpanBatch {
                    resource,
                    scope,
                    spans,
                }
            })
        }

        fn log_batch() -> impl Strategy<Value = LogBatch<'static>> {
            (resource(), scope(), vec(log(), 1..4)).prop_map(|(resource, scope, logs)| LogBatch {
                resource,
                scope,
                logs,
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn spans_survive_archive_json_out_and_json_in(batches in vec(span_batch(), 1..3)) {
                let stored: Vec<_> = batches
                    .iter()
                    .map(|b| rkyv::to_bytes::<rkyv::rancor::Error>(b).unwrap())
                    .collect();
                let archived: Vec<_> = stored
                    .iter()
                    .map(|bytes| rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(bytes).unwrap())
                    .collect();
                let json = traces_doc(&archived);
                let decoded = decode_traces_json(json.as_bytes()).unwrap();
                prop_assert_eq!(decoded.rejected, Rejections::default());
                prop_assert_eq!(decoded.sanitised, Sanitised::default());
                let spans: usize = batches.iter().map(|b| b.spans.len()).sum();
                prop_assert_eq!(decoded.accepted, spans as u64);
                prop_assert_eq!(&decoded.batches, &batches);
            }

            #[test]
            fn logs_survive_archive_json_out_and_json_in(batches in vec(log_batch(), 1..3)) {
                let stored: Vec<_> = batches
                    .iter()
                    .map(|b| rkyv::to_bytes::<rkyv::rancor::Error>(b).unwrap())
                    .collect();
                let archived: Vec<_> = stored
                    .iter()
                    .map(|bytes| rkyv::access::<ArchivedLogBatch<'static>, rkyv::rancor::Error>(bytes).unwrap())
                    .collect();
                let json = logs_doc(&archived);
                let decoded = decode_logs_json(json.as_bytes()).unwrap();
                prop_assert_eq!(decoded.rejected, Rejections::default());
                prop_assert_eq!(decoded.sanitised, Sanitised::default());
                let logs: usize = batches.iter().map(|b| b.logs.len()).sum();
                prop_assert_eq!(decoded.accepted, logs as u64);
                prop_assert_eq!(&decoded.batches, &batches);
            }
        }
    }
}
