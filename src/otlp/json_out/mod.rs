//! OTLP JSON out: spans and log records written from their archived (stored) form, for query
//! answers shaped as OTLP `TracesData` / `LogsData`.
//!
//! The output follows the OTLP JSON encoding, so [`super::json`] reads it back: lowerCamelCase
//! keys, hex ids, 64-bit integers as decimal strings, enums as integers, bytes as standard
//! padded base64, finite doubles as numbers and the others as `"NaN"`, `"Infinity"`,
//! `"-Infinity"`. Fields at their default value are omitted as protobuf JSON does, except the
//! ones a reader needs to find a span (`traceId`, `spanId`, `name`, `startTimeUnixNano`,
//! `endTimeUnixNano`) and, for readers that require them, `key` and `value` of a key-value and
//! `values` of an array or key-value list. `schemaUrl` belongs to the enclosing
//! `ResourceSpans` / `ScopeSpans` (or `*Logs`) object, which the caller writes with
//! [`write_json_str`].

mod object;
mod values;

pub use self::object::write_json_str;
use self::object::Obj;
use self::values::any_value;
pub use self::values::write_any_value;
use crate::domain::{
    ArchivedAnyValue, ArchivedEvent, ArchivedLink, ArchivedLogRecord, ArchivedResource,
    ArchivedScope, ArchivedSpan,
};

// The tests reach the depth limit through `use super::*`.
#[cfg(test)]
use crate::limits::VALUE_DEPTH_MAX;

/// Writes the `resource` object: `{"attributes":[...],"droppedAttributesCount":n}`.
pub fn write_resource(out: &mut String, r: &ArchivedResource<'_>) {
    let mut o = Obj::new(out);
    o.attributes("attributes", &r.attributes);
    o.u32(
        "droppedAttributesCount",
        r.dropped_attributes_count.to_native(),
    );
    o.end();
}

/// Writes the `scope` object: `{"name","version","attributes","droppedAttributesCount"}`.
pub fn write_scope(out: &mut String, s: &ArchivedScope<'_>) {
    let mut o = Obj::new(out);
    o.str("name", s.name.as_str());
    o.str("version", s.version.as_str());
    o.attributes("attributes", &s.attributes);
    o.u32(
        "droppedAttributesCount",
        s.dropped_attributes_count.to_native(),
    );
    o.end();
}

/// Writes one `Span` object.
pub fn write_span(out: &mut String, s: &ArchivedSpan<'_>) {
    let mut o = Obj::new(out);
    o.hex("traceId", &s.trace_id.0);
    o.hex("spanId", &s.span_id.0);
    o.str("traceState", s.trace_state.as_str());
    if let Some(parent) = s.parent_span_id.as_ref() {
        o.hex("parentSpanId", &parent.0);
    }
    o.u32("flags", s.flags.to_native());
    write_json_str(o.key("name"), s.name.as_str());
    o.i32("kind", s.kind.to_native());
    o.u64_always("startTimeUnixNano", s.start_time_unix_nano.to_native());
    o.u64_always("endTimeUnixNano", s.end_time_unix_nano.to_native());
    o.attributes("attributes", &s.attributes);
    o.u32(
        "droppedAttributesCount",
        s.dropped_attributes_count.to_native(),
    );
    if !s.events.is_empty() {
        let out = o.key("events");
        out.push('[');
        for (i, e) in s.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_event(out, e);
        }
        out.push(']');
    }
    o.u32("droppedEventsCount", s.dropped_events_count.to_native());
    if !s.links.is_empty() {
        let out = o.key("links");
        out.push('[');
        for (i, l) in s.links.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_link(out, l);
        }
        out.push(']');
    }
    o.u32("droppedLinksCount", s.dropped_links_count.to_native());
    let (message, code) = (s.status.message.as_str(), s.status.code.to_native());
    if !message.is_empty() || code != 0 {
        let mut status = Obj::new(o.key("status"));
        status.str("message", message);
        status.i32("code", code);
        status.end();
    }
    o.end();
}

fn write_event(out: &mut String, e: &ArchivedEvent<'_>) {
    let mut o = Obj::new(out);
    o.u64("timeUnixNano", e.time_unix_nano.to_native());
    o.str("name", e.name.as_str());
    o.attributes("attributes", &e.attributes);
    o.u32(
        "droppedAttributesCount",
        e.dropped_attributes_count.to_native(),
    );
    o.end();
}

fn write_link(out: &mut String, l: &ArchivedLink<'_>) {
    let mut o = Obj::new(out);
    o.hex("traceId", &l.trace_id.0);
    o.hex("spanId", &l.span_id.0);
    o.str("traceState", l.trace_state.as_str());
    o.attributes("attributes", &l.attributes);
    o.u32(
        "droppedAttributesCount",
        l.dropped_attributes_count.to_native(),
    );
    o.u32("flags", l.flags.to_native());
    o.end();
}

/// Writes one `LogRecord` object.
pub fn write_log(out: &mut String, l: &ArchivedLogRecord<'_>) {
    let mut o = Obj::new(out);
    o.u64("timeUnixNano", l.time_unix_nano.to_native());
    o.u64(
        "observedTimeUnixNano",
        l.observed_time_unix_nano.to_native(),
    );
    o.i32("severityNumber", l.severity_number.to_native());
    o.str("severityText", l.severity_text.as_str());
    if !matches!(l.body, ArchivedAnyValue::Empty) {
        any_value(o.key("body"), &l.body, 0);
    }
    o.attributes("attributes", &l.attributes);
    o.u32(
        "droppedAttributesCount",
        l.dropped_attributes_count.to_native(),
    );
    o.u32("flags", l.flags.to_native());
    if let Some(id) = l.trace_id.as_ref() {
        o.hex("traceId", &id.0);
    }
    if let Some(id) = l.span_id.as_ref() {
        o.hex("spanId", &id.0);
    }
    o.str("eventName", l.event_name.as_str());
    o.end();
}

#[cfg(test)]
pub(crate) mod tests;
