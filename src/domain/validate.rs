//! Validation and sanitisation of decoded items, shared by every decoder.
//!
//! An item that breaks a rule of the OTLP data model (a zero or missing trace id, an end before
//! the start) is *invalid*: it is dropped and reported in `partial_success`. An item that is
//! merely too big is *sanitised*: attributes past [`ATTRIBUTES_COUNT_MAX`] are dropped and added
//! to `dropped_attributes_count`, long keys and values are truncated on a char boundary, values
//! nested deeper than [`VALUE_DEPTH_MAX`] become empty. Sanitisation is counted, never silent.

use std::borrow::Cow;
use std::fmt;

use super::{AnyValue, Event, KeyValue, Link, LogRecord, Resource, Scope, Span, SpanId, TraceId};
use crate::limits::{
    ATTRIBUTES_COUNT_MAX, ATTRIBUTE_KEY_BYTES_MAX, SPAN_EVENTS_MAX, SPAN_LINKS_MAX,
    VALUE_BYTES_MAX, VALUE_DEPTH_MAX, VALUE_ELEMENTS_MAX,
};

/// Why an item was dropped. The `Display` form is what the client reads in
/// `partial_success.error_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    TraceIdLength(usize),
    TraceIdZero,
    SpanIdLength(usize),
    SpanIdZero,
    ParentSpanIdLength(usize),
    LinkIdLength,
    EndBeforeStart { start: u64, end: u64 },
    LogTraceIdLength(usize),
    LogSpanIdLength(usize),
    TooLarge { bytes: usize, max: usize },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::TraceIdLength(n) => write!(f, "trace id must be 16 bytes, got {n}"),
            Invalid::TraceIdZero => write!(f, "trace id is all zero"),
            Invalid::SpanIdLength(n) => write!(f, "span id must be 8 bytes, got {n}"),
            Invalid::SpanIdZero => write!(f, "span id is all zero"),
            Invalid::ParentSpanIdLength(n) => {
                write!(f, "parent span id must be empty or 8 bytes, got {n}")
            }
            Invalid::LinkIdLength => {
                write!(f, "link must carry a 16-byte trace id and 8-byte span id")
            }
            Invalid::EndBeforeStart { start, end } => {
                write!(f, "span ends ({end}) before it starts ({start})")
            }
            Invalid::LogTraceIdLength(n) => {
                write!(f, "log trace id must be empty or 16 bytes, got {n}")
            }
            Invalid::LogSpanIdLength(n) => {
                write!(f, "log span id must be empty or 8 bytes, got {n}")
            }
            Invalid::TooLarge { bytes, max } => {
                write!(
                    f,
                    "item is {bytes} bytes stored, more than the {max} a record holds"
                )
            }
        }
    }
}

impl Invalid {
    pub fn reason(&self) -> RejectReason {
        match self {
            Invalid::TraceIdLength(_) | Invalid::TraceIdZero | Invalid::LogTraceIdLength(_) => {
                RejectReason::TraceId
            }
            Invalid::SpanIdLength(_) | Invalid::SpanIdZero | Invalid::LogSpanIdLength(_) => {
                RejectReason::SpanId
            }
            Invalid::ParentSpanIdLength(_) => RejectReason::ParentSpanId,
            Invalid::LinkIdLength => RejectReason::Link,
            Invalid::EndBeforeStart { .. } => RejectReason::EndBeforeStart,
            Invalid::TooLarge { .. } => RejectReason::TooLarge,
        }
    }
}

/// The kinds of [`Invalid`] (and of ids that are not hex in OTLP/JSON), as the metrics count
/// rejected items: the `reason` label of `glust_spans_rejected_total` and
/// `glust_logs_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    TraceId,
    SpanId,
    ParentSpanId,
    Link,
    EndBeforeStart,
    TooLarge,
    /// Glust could not encode a validated item (a bug, never seen; counted, never silent).
    Internal,
}

impl RejectReason {
    pub const COUNT: usize = 7;
    pub const ALL: [RejectReason; RejectReason::COUNT] = [
        RejectReason::TraceId,
        RejectReason::SpanId,
        RejectReason::ParentSpanId,
        RejectReason::Link,
        RejectReason::EndBeforeStart,
        RejectReason::TooLarge,
        RejectReason::Internal,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            RejectReason::TraceId => "trace_id",
            RejectReason::SpanId => "span_id",
            RejectReason::ParentSpanId => "parent_span_id",
            RejectReason::Link => "link",
            RejectReason::EndBeforeStart => "end_before_start",
            RejectReason::TooLarge => "too_large",
            RejectReason::Internal => "internal",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

// Counts are indexed by `index()`: `ALL` lists the reasons in that order.
const _: () = {
    let mut i = 0;
    while i < RejectReason::COUNT {
        assert!(RejectReason::ALL[i].index() == i);
        i += 1;
    }
};

/// Items dropped from one request: how many for each reason, and the first reason's message
/// (OTLP asks for one message).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejections {
    by_reason: [u64; RejectReason::COUNT],
    pub first: Option<String>,
}

impl Rejections {
    /// Items rejected, all reasons.
    pub fn count(&self) -> u64 {
        self.by_reason.iter().sum()
    }

    /// Items rejected for `reason`.
    pub fn count_of(&self, reason: RejectReason) -> u64 {
        self.by_reason[reason.index()]
    }

    pub fn reject(&mut self, why: &Invalid) {
        self.reject_with(why.reason(), || why.to_string());
    }

    /// Counts one item rejected for `reason`; `message` is asked for the first one only.
    pub fn reject_with(&mut self, reason: RejectReason, message: impl FnOnce() -> String) {
        self.reject_n(1, reason, message);
    }

    /// Counts `n` items rejected for `reason`; `message` is asked for the first one only.
    pub fn reject_n(&mut self, n: u64, reason: RejectReason, message: impl FnOnce() -> String) {
        self.by_reason[reason.index()] += n;
        if self.first.is_none() {
            self.first = Some(message());
        }
    }

    pub fn merge(&mut self, other: Rejections) {
        for (mine, theirs) in self.by_reason.iter_mut().zip(other.by_reason) {
            *mine += theirs;
        }
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// What sanitisation changed in one request; feeds the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sanitised {
    pub truncated_values: u64,
    pub dropped_attributes: u64,
    pub flattened_values: u64,
}

/// Converts the bytes of a trace id field into a valid [`TraceId`].
pub fn trace_id(bytes: &[u8]) -> Result<TraceId, Invalid> {
    let id: [u8; 16] = bytes
        .try_into()
        .map_err(|_| Invalid::TraceIdLength(bytes.len()))?;
    let id = TraceId(id);
    if id.is_zero() {
        return Err(Invalid::TraceIdZero);
    }
    Ok(id)
}

/// Converts the bytes of a span id field into a valid [`SpanId`].
pub fn span_id(bytes: &[u8]) -> Result<SpanId, Invalid> {
    let id: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Invalid::SpanIdLength(bytes.len()))?;
    let id = SpanId(id);
    if id.is_zero() {
        return Err(Invalid::SpanIdZero);
    }
    Ok(id)
}

/// A parent span id: empty means root. An all-zero id is normalised to root.
pub fn parent_span_id(bytes: &[u8]) -> Result<Option<SpanId>, Invalid> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let id: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Invalid::ParentSpanIdLength(bytes.len()))?;
    Ok(Some(SpanId(id)).filter(|id| !id.is_zero()))
}

/// A link's ids: both required, both the right length. Zero ids are kept as sent.
pub fn link_ids(trace: &[u8], span: &[u8]) -> Result<(TraceId, SpanId), Invalid> {
    let t: [u8; 16] = trace.try_into().map_err(|_| Invalid::LinkIdLength)?;
    let s: [u8; 8] = span.try_into().map_err(|_| Invalid::LinkIdLength)?;
    Ok((TraceId(t), SpanId(s)))
}

/// A log record's optional trace id: empty or all zero means "no trace context".
pub fn log_trace_id(bytes: &[u8]) -> Result<Option<TraceId>, Invalid> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let id: [u8; 16] = bytes
        .try_into()
        .map_err(|_| Invalid::LogTraceIdLength(bytes.len()))?;
    Ok(Some(TraceId(id)).filter(|id| !id.is_zero()))
}

/// A log record's optional span id: empty or all zero means none.
pub fn log_span_id(bytes: &[u8]) -> Result<Option<SpanId>, Invalid> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let id: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Invalid::LogSpanIdLength(bytes.len()))?;
    Ok(Some(SpanId(id)).filter(|id| !id.is_zero()))
}

/// Checks the rules a decoded span must satisfy and sanitises it in place.
/// Ids are already checked by the decoders through [`trace_id`] and [`span_id`].
pub fn span(span: &mut Span<'_>, stats: &mut Sanitised) -> Result<(), Invalid> {
    debug_assert!(!span.trace_id.is_zero() && !span.span_id.is_zero());
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err(Invalid::EndBeforeStart {
            start: span.start_time_unix_nano,
            end: span.end_time_unix_nano,
        });
    }
    truncate_str(&mut span.name, VALUE_BYTES_MAX, stats);
    truncate_str(&mut span.trace_state, VALUE_BYTES_MAX, stats);
    truncate_str(&mut span.status.message, VALUE_BYTES_MAX, stats);
    attributes(
        &mut span.attributes,
        &mut span.dropped_attributes_count,
        stats,
    );
    if span.events.len() > SPAN_EVENTS_MAX {
        let extra = span.events.len() - SPAN_EVENTS_MAX;
        span.events.truncate(SPAN_EVENTS_MAX);
        span.dropped_events_count = span.dropped_events_count.saturating_add(extra as u32);
    }
    for event in &mut span.events {
        self::event(event, stats);
    }
    if span.links.len() > SPAN_LINKS_MAX {
        let extra = span.links.len() - SPAN_LINKS_MAX;
        span.links.truncate(SPAN_LINKS_MAX);
        span.dropped_links_count = span.dropped_links_count.saturating_add(extra as u32);
    }
    for link in &mut span.links {
        self::link(link, stats);
    }
    Ok(())
}

fn event(event: &mut Event<'_>, stats: &mut Sanitised) {
    truncate_str(&mut event.name, VALUE_BYTES_MAX, stats);
    attributes(
        &mut event.attributes,
        &mut event.dropped_attributes_count,
        stats,
    );
}

fn link(link: &mut Link<'_>, stats: &mut Sanitised) {
    truncate_str(&mut link.trace_state, VALUE_BYTES_MAX, stats);
    attributes(
        &mut link.attributes,
        &mut link.dropped_attributes_count,
        stats,
    );
}

/// Sanitises a log record in place. Log records have no invalid states beyond their ids,
/// which the decoders check through [`log_trace_id`] and [`log_span_id`].
pub fn log_record(log: &mut LogRecord<'_>, stats: &mut Sanitised) {
    truncate_str(&mut log.severity_text, VALUE_BYTES_MAX, stats);
    truncate_str(&mut log.event_name, VALUE_BYTES_MAX, stats);
    value(&mut log.body, 0, stats);
    attributes(
        &mut log.attributes,
        &mut log.dropped_attributes_count,
        stats,
    );
}

pub fn resource(resource: &mut Resource<'_>, stats: &mut Sanitised) {
    truncate_str(&mut resource.schema_url, VALUE_BYTES_MAX, stats);
    attributes(
        &mut resource.attributes,
        &mut resource.dropped_attributes_count,
        stats,
    );
}

pub fn scope(scope: &mut Scope<'_>, stats: &mut Sanitised) {
    truncate_str(&mut scope.name, VALUE_BYTES_MAX, stats);
    truncate_str(&mut scope.version, VALUE_BYTES_MAX, stats);
    truncate_str(&mut scope.schema_url, VALUE_BYTES_MAX, stats);
    attributes(
        &mut scope.attributes,
        &mut scope.dropped_attributes_count,
        stats,
    );
}

/// Applies the attribute limits to one attribute list.
pub fn attributes(attrs: &mut Vec<KeyValue<'_>>, dropped: &mut u32, stats: &mut Sanitised) {
    if attrs.len() > ATTRIBUTES_COUNT_MAX {
        let extra = attrs.len() - ATTRIBUTES_COUNT_MAX;
        attrs.truncate(ATTRIBUTES_COUNT_MAX);
        *dropped = dropped.saturating_add(extra as u32);
        stats.dropped_attributes += extra as u64;
    }
    for kv in attrs.iter_mut() {
        truncate_str(&mut kv.key, ATTRIBUTE_KEY_BYTES_MAX, stats);
        value(&mut kv.value, 0, stats);
    }
}

/// Applies the value limits to `v`, at nesting depth `depth`.
///
/// Hot path: strings and scalars, nearly every value, are checked inline; a call per value
/// cost ~28 instructions per attribute for no work on them (callgrind, decode
/// bench). Bytes and nested values go to [`value_bytes_or_nested`].
#[inline(always)]
fn value(v: &mut AnyValue<'_>, depth: usize, stats: &mut Sanitised) {
    match v {
        AnyValue::String(s) => truncate_str(s, VALUE_BYTES_MAX, stats),
        AnyValue::Empty | AnyValue::Bool(_) | AnyValue::Int(_) | AnyValue::Double(_) => {}
        AnyValue::Bytes(_) | AnyValue::Array(_) | AnyValue::KvList(_) => {
            value_bytes_or_nested(v, depth, stats)
        }
    }
}

fn value_bytes_or_nested(v: &mut AnyValue<'_>, depth: usize, stats: &mut Sanitised) {
    match v {
        AnyValue::Bytes(b) => {
            if b.len() > VALUE_BYTES_MAX {
                truncate_blob(b, VALUE_BYTES_MAX);
                stats.truncated_values += 1;
            }
        }
        AnyValue::Array(items) => {
            if depth + 1 >= VALUE_DEPTH_MAX {
                *v = AnyValue::Empty;
                stats.flattened_values += 1;
                return;
            }
            if items.len() > VALUE_ELEMENTS_MAX {
                items.truncate(VALUE_ELEMENTS_MAX);
                stats.truncated_values += 1;
            }
            for item in items.iter_mut() {
                value(item, depth + 1, stats);
            }
        }
        AnyValue::KvList(kvs) => {
            if depth + 1 >= VALUE_DEPTH_MAX {
                *v = AnyValue::Empty;
                stats.flattened_values += 1;
                return;
            }
            if kvs.len() > VALUE_ELEMENTS_MAX {
                kvs.truncate(VALUE_ELEMENTS_MAX);
                stats.truncated_values += 1;
            }
            for kv in kvs.iter_mut() {
                truncate_str(&mut kv.key, ATTRIBUTE_KEY_BYTES_MAX, stats);
                value(&mut kv.value, depth + 1, stats);
            }
        }
        // Checked by `value`, which sends only the kinds above here.
        AnyValue::String(_)
        | AnyValue::Empty
        | AnyValue::Bool(_)
        | AnyValue::Int(_)
        | AnyValue::Double(_) => {}
    }
}

/// Truncates `s` to at most `max` bytes on a char boundary, without copying a borrowed string.
#[inline]
pub fn truncate_str(s: &mut Cow<'_, str>, max: usize, stats: &mut Sanitised) {
    if s.len() <= max {
        return;
    }
    truncate_str_at(s, max, stats);
}

#[cold]
fn truncate_str_at(s: &mut Cow<'_, str>, max: usize, stats: &mut Sanitised) {
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match s {
        Cow::Borrowed(b) => *b = &b[..end],
        Cow::Owned(o) => o.truncate(end),
    }
    stats.truncated_values += 1;
}

fn truncate_blob(b: &mut Cow<'_, [u8]>, max: usize) {
    match b {
        Cow::Borrowed(s) => *s = &s[..max],
        Cow::Owned(o) => o.truncate(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let text = "é".repeat(10); // 20 bytes, 2 per char
        let mut s = Cow::Borrowed(text.as_str());
        let mut stats = Sanitised::default();
        truncate_str(&mut s, 5, &mut stats);
        assert_eq!(s, "éé");
        assert_eq!(stats.truncated_values, 1);
        assert!(matches!(s, Cow::Borrowed(_)));
    }

    #[test]
    fn ids_are_checked_for_length_and_zero() {
        assert_eq!(trace_id(&[1; 15]), Err(Invalid::TraceIdLength(15)));
        assert_eq!(trace_id(&[0; 16]), Err(Invalid::TraceIdZero));
        assert_eq!(trace_id(&[7; 16]), Ok(TraceId([7; 16])));
        assert_eq!(span_id(&[0; 8]), Err(Invalid::SpanIdZero));
        assert_eq!(parent_span_id(&[]), Ok(None));
        assert_eq!(parent_span_id(&[0; 8]), Ok(None));
        assert_eq!(parent_span_id(&[1; 4]), Err(Invalid::ParentSpanIdLength(4)));
        assert_eq!(log_trace_id(&[0; 16]), Ok(None));
        assert_eq!(log_trace_id(&[3; 2]), Err(Invalid::LogTraceIdLength(2)));
    }

    #[test]
    fn attributes_past_the_limit_are_dropped_and_counted() {
        let mut attrs: Vec<KeyValue> = (0..ATTRIBUTES_COUNT_MAX + 5)
            .map(|i| KeyValue {
                key: Cow::Owned(format!("k{i}")),
                value: AnyValue::Int(i as i64),
            })
            .collect();
        let mut dropped = 2;
        let mut stats = Sanitised::default();
        attributes(&mut attrs, &mut dropped, &mut stats);
        assert_eq!(attrs.len(), ATTRIBUTES_COUNT_MAX);
        assert_eq!(dropped, 7);
        assert_eq!(stats.dropped_attributes, 5);
    }

    #[test]
    fn deep_values_are_flattened() {
        let mut v = AnyValue::Int(1);
        for _ in 0..VALUE_DEPTH_MAX + 3 {
            v = AnyValue::Array(vec![v]);
        }
        let mut stats = Sanitised::default();
        value(&mut v, 0, &mut stats);
        assert_eq!(stats.flattened_values, 1);
        let mut depth = 0;
        let mut cur = &v;
        while let AnyValue::Array(items) = cur {
            depth += 1;
            cur = &items[0];
        }
        assert!(depth < VALUE_DEPTH_MAX);
        assert_eq!(cur, &AnyValue::Empty);
    }
}
