//! Glust's own small domain: what a span and a log record are once they passed validation.
//!
//! These types borrow from the request body wherever they can (`Cow::Borrowed`), so the hot
//! path of decoding does not allocate a `String` per attribute; the JSON path owns what it had
//! to unescape. They derive rkyv's `Archive`: a stored record is the archive of a
//! [`SpanBatch`] or [`LogBatch`], read zero-copy from the segment map by queries.
//!
//! Architecture invariant: nothing here knows about protobuf, JSON, HTTP or shards.

pub mod from_archived;
pub mod tags;
pub mod validate;
pub mod words;

use std::borrow::Cow;

use rkyv::with::AsOwned;
use rkyv::{Archive, Serialize};

/// A string that borrows from the request body when it can.
pub type Str<'a> = Cow<'a, str>;
/// Bytes that borrow from the request body when they can.
pub type Blob<'a> = Cow<'a, [u8]>;

/// A trace id: 16 bytes, never all zero once validated.
#[derive(Archive, Serialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[rkyv(derive(PartialEq, Eq, Hash))]
pub struct TraceId(pub [u8; 16]);

/// A span id: 8 bytes, never all zero once validated.
#[derive(Archive, Serialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[rkyv(derive(PartialEq, Eq))]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses the 32 lowercase or uppercase hex digits of the OTLP JSON form.
    pub fn from_hex(s: &str) -> Option<TraceId> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id).ok()?;
        Some(TraceId(id))
    }
}

impl SpanId {
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}

impl std::fmt::Debug for SpanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpanId({})", self.to_hex())
    }
}

impl ArchivedTraceId {
    pub fn get(&self) -> TraceId {
        TraceId(self.0)
    }
}

impl ArchivedSpanId {
    pub fn get(&self) -> SpanId {
        SpanId(self.0)
    }
}

/// An OTLP `AnyValue`. `Empty` is the value with no field set.
#[derive(Archive, Serialize, Debug, Clone, PartialEq)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub enum AnyValue<'a> {
    Empty,
    String(#[rkyv(with = AsOwned)] Str<'a>),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(#[rkyv(with = AsOwned)] Blob<'a>),
    Array(#[rkyv(omit_bounds)] Vec<AnyValue<'a>>),
    KvList(#[rkyv(omit_bounds)] Vec<KeyValue<'a>>),
}

/// One attribute.
#[derive(Archive, Serialize, Debug, Clone, PartialEq)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub struct KeyValue<'a> {
    #[rkyv(with = AsOwned)]
    pub key: Str<'a>,
    #[rkyv(omit_bounds)]
    pub value: AnyValue<'a>,
}

/// The resource of a batch, with the `schema_url` of its `ResourceSpans` / `ResourceLogs`.
#[derive(Archive, Serialize, Debug, Clone, PartialEq, Default)]
pub struct Resource<'a> {
    pub attributes: Vec<KeyValue<'a>>,
    pub dropped_attributes_count: u32,
    #[rkyv(with = AsOwned)]
    pub schema_url: Str<'a>,
}

/// The instrumentation scope of a batch, with the `schema_url` of its `ScopeSpans` /
/// `ScopeLogs`.
#[derive(Archive, Serialize, Debug, Clone, PartialEq, Default)]
pub struct Scope<'a> {
    #[rkyv(with = AsOwned)]
    pub name: Str<'a>,
    #[rkyv(with = AsOwned)]
    pub version: Str<'a>,
    pub attributes: Vec<KeyValue<'a>>,
    pub dropped_attributes_count: u32,
    #[rkyv(with = AsOwned)]
    pub schema_url: Str<'a>,
}

#[derive(Archive, Serialize, Debug, Clone, PartialEq, Default)]
pub struct Status<'a> {
    #[rkyv(with = AsOwned)]
    pub message: Str<'a>,
    /// 0 unset, 1 ok, 2 error (OTLP `Status.StatusCode`); other values are kept as sent.
    pub code: i32,
}

/// OTLP `Status.StatusCode.STATUS_CODE_ERROR`.
pub const STATUS_CODE_ERROR: i32 = 2;

#[derive(Archive, Serialize, Debug, Clone, PartialEq, Default)]
pub struct Event<'a> {
    pub time_unix_nano: u64,
    #[rkyv(with = AsOwned)]
    pub name: Str<'a>,
    pub attributes: Vec<KeyValue<'a>>,
    pub dropped_attributes_count: u32,
}

#[derive(Archive, Serialize, Debug, Clone, PartialEq)]
pub struct Link<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    #[rkyv(with = AsOwned)]
    pub trace_state: Str<'a>,
    pub attributes: Vec<KeyValue<'a>>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
}

#[derive(Archive, Serialize, Debug, Clone, PartialEq)]
pub struct Span<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    #[rkyv(with = AsOwned)]
    pub trace_state: Str<'a>,
    /// `None` for a root span (the OTLP field was empty).
    pub parent_span_id: Option<SpanId>,
    pub flags: u32,
    #[rkyv(with = AsOwned)]
    pub name: Str<'a>,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Vec<KeyValue<'a>>,
    pub dropped_attributes_count: u32,
    pub events: Vec<Event<'a>>,
    pub dropped_events_count: u32,
    pub links: Vec<Link<'a>>,
    pub dropped_links_count: u32,
    pub status: Status<'a>,
}

impl Span<'_> {
    pub fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
}

#[derive(Archive, Serialize, Debug, Clone, PartialEq)]
pub struct LogRecord<'a> {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    #[rkyv(with = AsOwned)]
    pub severity_text: Str<'a>,
    pub body: AnyValue<'a>,
    pub attributes: Vec<KeyValue<'a>>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    /// `None` when the record carries no trace context.
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    #[rkyv(with = AsOwned)]
    pub event_name: Str<'a>,
}

impl LogRecord<'_> {
    /// The time a log is sorted and searched by: its own time, or when it was observed.
    pub fn effective_time(&self) -> u64 {
        if self.time_unix_nano != 0 {
            self.time_unix_nano
        } else {
            self.observed_time_unix_nano
        }
    }
}

/// Spans of one resource and one scope: the unit the decoders produce and the payload of one
/// stored span record.
#[derive(Archive, Serialize, Debug, Clone, PartialEq, Default)]
pub struct SpanBatch<'a> {
    pub resource: Resource<'a>,
    pub scope: Scope<'a>,
    pub spans: Vec<Span<'a>>,
}

/// Log records of one resource and one scope: the payload of one stored log record.
#[derive(Archive, Serialize, Debug, Clone, PartialEq, Default)]
pub struct LogBatch<'a> {
    pub resource: Resource<'a>,
    pub scope: Scope<'a>,
    pub logs: Vec<LogRecord<'a>>,
}

/// The key of the resource attribute that names the service.
pub const SERVICE_NAME_KEY: &str = "service.name";

/// `service.name` of a resource, or `""` when absent or not a string.
pub fn service_name<'r>(attributes: &'r [KeyValue<'_>]) -> &'r str {
    attributes
        .iter()
        .find(|kv| kv.key == SERVICE_NAME_KEY)
        .and_then(|kv| match &kv.value {
            AnyValue::String(s) => Some(s.as_ref()),
            _ => None,
        })
        .unwrap_or("")
}

/// `service.name` read from an archived resource.
pub fn archived_service_name<'r>(attributes: &'r [ArchivedKeyValue<'_>]) -> &'r str {
    attributes
        .iter()
        .find(|kv| kv.key.as_str() == SERVICE_NAME_KEY)
        .and_then(|kv| match &kv.value {
            ArchivedAnyValue::String(s) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("")
}
