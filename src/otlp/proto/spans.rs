//! Spans: the `Signal` of traces, and the `Span`, `Span.Event`, `Span.Link` and `Status`
//! messages.

use std::borrow::Cow;

use super::fields::*;
use super::layers::{Names, Signal};
use super::reader::Reader;
use super::values::attribute;
use super::{Item, Result};
use crate::domain::validate::{self, Invalid, Sanitised};
use crate::domain::{Event, Link, Resource, Scope, Span, SpanBatch, SpanId, Status, TraceId};

pub(super) struct Traces;

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
