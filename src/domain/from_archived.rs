//! The domain values of stored records, borrowing their strings and bytes from the archive
//! (`Cow::Borrowed`): what sealing reads a raw segment into, a span at a time, so that it
//! copies no string it rewrites.

use std::borrow::Cow;

use super::{
    AnyValue, ArchivedAnyValue, ArchivedEvent, ArchivedKeyValue, ArchivedLink, ArchivedLogRecord,
    ArchivedResource, ArchivedScope, ArchivedSpan, ArchivedStatus, Event, KeyValue, Link,
    LogRecord, Resource, Scope, Span, SpanId, Status, TraceId,
};

pub fn value<'a>(v: &'a ArchivedAnyValue<'_>) -> AnyValue<'a> {
    match v {
        ArchivedAnyValue::Empty => AnyValue::Empty,
        ArchivedAnyValue::String(s) => AnyValue::String(Cow::Borrowed(s.as_str())),
        ArchivedAnyValue::Bool(b) => AnyValue::Bool(*b),
        ArchivedAnyValue::Int(i) => AnyValue::Int(i.to_native()),
        ArchivedAnyValue::Double(d) => AnyValue::Double(d.to_native()),
        ArchivedAnyValue::Bytes(b) => AnyValue::Bytes(Cow::Borrowed(b.as_slice())),
        ArchivedAnyValue::Array(a) => AnyValue::Array(a.iter().map(value).collect()),
        ArchivedAnyValue::KvList(kvs) => AnyValue::KvList(key_values(kvs)),
    }
}

pub fn key_values<'a>(kvs: &'a [ArchivedKeyValue<'_>]) -> Vec<KeyValue<'a>> {
    kvs.iter()
        .map(|kv| KeyValue {
            key: Cow::Borrowed(kv.key.as_str()),
            value: value(&kv.value),
        })
        .collect()
}

pub fn resource<'a>(r: &'a ArchivedResource<'_>) -> Resource<'a> {
    Resource {
        attributes: key_values(&r.attributes),
        dropped_attributes_count: r.dropped_attributes_count.to_native(),
        schema_url: Cow::Borrowed(r.schema_url.as_str()),
    }
}

pub fn scope<'a>(s: &'a ArchivedScope<'_>) -> Scope<'a> {
    Scope {
        name: Cow::Borrowed(s.name.as_str()),
        version: Cow::Borrowed(s.version.as_str()),
        attributes: key_values(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count.to_native(),
        schema_url: Cow::Borrowed(s.schema_url.as_str()),
    }
}

fn status<'a>(s: &'a ArchivedStatus<'_>) -> Status<'a> {
    Status {
        message: Cow::Borrowed(s.message.as_str()),
        code: s.code.to_native(),
    }
}

fn event<'a>(e: &'a ArchivedEvent<'_>) -> Event<'a> {
    Event {
        time_unix_nano: e.time_unix_nano.to_native(),
        name: Cow::Borrowed(e.name.as_str()),
        attributes: key_values(&e.attributes),
        dropped_attributes_count: e.dropped_attributes_count.to_native(),
    }
}

fn link<'a>(l: &'a ArchivedLink<'_>) -> Link<'a> {
    Link {
        trace_id: l.trace_id.get(),
        span_id: SpanId(l.span_id.0),
        trace_state: Cow::Borrowed(l.trace_state.as_str()),
        attributes: key_values(&l.attributes),
        dropped_attributes_count: l.dropped_attributes_count.to_native(),
        flags: l.flags.to_native(),
    }
}

pub fn span<'a>(s: &'a ArchivedSpan<'_>) -> Span<'a> {
    Span {
        trace_id: s.trace_id.get(),
        span_id: SpanId(s.span_id.0),
        trace_state: Cow::Borrowed(s.trace_state.as_str()),
        parent_span_id: s.parent_span_id.as_ref().map(|p| SpanId(p.0)),
        flags: s.flags.to_native(),
        name: Cow::Borrowed(s.name.as_str()),
        kind: s.kind.to_native(),
        start_time_unix_nano: s.start_time_unix_nano.to_native(),
        end_time_unix_nano: s.end_time_unix_nano.to_native(),
        attributes: key_values(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count.to_native(),
        events: s.events.iter().map(event).collect(),
        dropped_events_count: s.dropped_events_count.to_native(),
        links: s.links.iter().map(link).collect(),
        dropped_links_count: s.dropped_links_count.to_native(),
        status: status(&s.status),
    }
}

pub fn log_record<'a>(l: &'a ArchivedLogRecord<'_>) -> LogRecord<'a> {
    LogRecord {
        time_unix_nano: l.time_unix_nano.to_native(),
        observed_time_unix_nano: l.observed_time_unix_nano.to_native(),
        severity_number: l.severity_number.to_native(),
        severity_text: Cow::Borrowed(l.severity_text.as_str()),
        body: value(&l.body),
        attributes: key_values(&l.attributes),
        dropped_attributes_count: l.dropped_attributes_count.to_native(),
        flags: l.flags.to_native(),
        trace_id: l.trace_id.as_ref().map(|t| TraceId(t.0)),
        span_id: l.span_id.as_ref().map(|s| SpanId(s.0)),
        event_name: Cow::Borrowed(l.event_name.as_str()),
    }
}
