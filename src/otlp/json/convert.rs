//! From the mirror structs to the domain, with validation: resources, scopes, spans, links and
//! log records, their hex ids, and why an item is dropped.

use std::borrow::Cow;

use super::containers::{list, msg, List, Msg};
use super::mirror::{JKeyValue, JLink, JLogRecord, JResource, JScope, JSpan};
use super::scalars::JStr;
use crate::domain::validate::{self, Invalid, RejectReason, Rejections, Sanitised};
use crate::domain::{Event, KeyValue, Link, LogRecord, Resource, Scope, Span, Status};

/// Why one span or log record was dropped.
#[derive(Debug)]
pub(super) enum Reject {
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
    pub(super) fn record(self, rejected: &mut Rejections) {
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

pub(super) fn resource<'a>(
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

pub(super) fn scope<'a>(
    s: Msg<JScope<'a>>,
    schema_url: JStr<'a>,
    stats: &mut Sanitised,
) -> Scope<'a> {
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

pub(super) fn span<'a>(j: JSpan<'a>, stats: &mut Sanitised) -> Result<Span<'a>, Reject> {
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

pub(super) fn log_record<'a>(
    j: JLogRecord<'a>,
    stats: &mut Sanitised,
) -> Result<LogRecord<'a>, Reject> {
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

pub(super) fn attributes(attrs: List<JKeyValue<'_>>) -> Vec<KeyValue<'_>> {
    // Same size as the domain type: the collect reuses the allocation.
    list(attrs).map(JKeyValue::into_domain).collect()
}
