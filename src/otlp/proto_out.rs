//! OTLP protobuf out: stored spans written from their archived form, for the answers that
//! must be protobuf (Tempo's trace by id, Jaeger's remote storage).
//!
//! A trace travels between shards as [`ProtoGroup`]s, the protobuf counterpart of the JSON
//! groups: the encoded fields of a `ResourceSpans` before its scopes, of a `ScopeSpans` before
//! its spans, and each `Span` message. [`traces_data`] assembles a `TracesData` from them by
//! concatenation (field order does not matter in protobuf), merging groups that share a
//! resource and scope. The messages are built with `opentelemetry-proto`'s prost types: an
//! owned copy per span, which a trace lookup (thousands of spans at most) can afford.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1 as pb_common;
use opentelemetry_proto::tonic::resource::v1 as pb_resource;
use opentelemetry_proto::tonic::trace::v1 as pb_trace;
use prost::Message;

use crate::domain::{
    ArchivedAnyValue, ArchivedKeyValue, ArchivedResource, ArchivedScope, ArchivedSpan,
};

/// Field 1 of `TracesData` (`resource_spans`), of `ResourceSpans` (`resource`) and of
/// `ScopeSpans` (`scope`); field 2 of `ResourceSpans` (`scope_spans`) and of `ScopeSpans`
/// (`spans`); field 3 of both (`schema_url`). Every one is length-delimited (wire type 2).
const FIELD_1: u8 = (1 << 3) | 2;
const FIELD_2: u8 = (2 << 3) | 2;
const FIELD_3: u8 = (3 << 3) | 2;

/// Spans under one resource and one scope, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoGroup {
    /// `resource` and `schema_url` of a `ResourceSpans`, as encoded fields.
    pub resource: Arc<[u8]>,
    /// `scope` and `schema_url` of a `ScopeSpans`, as encoded fields.
    pub scope: Arc<[u8]>,
    /// One encoded `Span` message per span (without its tag and length).
    pub items: Vec<Vec<u8>>,
}

/// The encoded fields of a `ResourceSpans` before its scopes.
pub fn resource_fields(r: &ArchivedResource<'_>) -> Arc<[u8]> {
    let mut out = Vec::new();
    length_delimited(&mut out, FIELD_1, &resource(r).encode_to_vec());
    if !r.schema_url.is_empty() {
        length_delimited(&mut out, FIELD_3, r.schema_url.as_str().as_bytes());
    }
    out.into()
}

/// The encoded fields of a `ScopeSpans` before its spans.
pub fn scope_fields(s: &ArchivedScope<'_>) -> Arc<[u8]> {
    let mut out = Vec::new();
    length_delimited(&mut out, FIELD_1, &scope(s).encode_to_vec());
    if !s.schema_url.is_empty() {
        length_delimited(&mut out, FIELD_3, s.schema_url.as_str().as_bytes());
    }
    out.into()
}

/// One `Span` message.
pub fn span_message(s: &ArchivedSpan<'_>) -> Vec<u8> {
    span(s).encode_to_vec()
}

/// A `TracesData` message of `groups`: one `ResourceSpans` per distinct resource, one
/// `ScopeSpans` per distinct scope under it, in first-seen order.
pub fn traces_data(groups: &[ProtoGroup]) -> Vec<u8> {
    let order = super::nest(
        groups
            .iter()
            .map(|g| (&*g.resource, &*g.scope, g.items.as_slice())),
    );
    let mut out = Vec::new();
    for (resource, scopes) in order {
        let mut resource_spans = resource.to_vec();
        for (scope, spans) in scopes {
            let mut scope_spans = scope.to_vec();
            for span in spans {
                length_delimited(&mut scope_spans, FIELD_2, span);
            }
            length_delimited(&mut resource_spans, FIELD_2, &scope_spans);
        }
        length_delimited(&mut out, FIELD_1, &resource_spans);
    }
    out
}

/// Appends a length-delimited field: its tag byte, the length as a varint, the bytes.
pub fn length_delimited(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn resource(r: &ArchivedResource<'_>) -> pb_resource::Resource {
    pb_resource::Resource {
        attributes: key_values(&r.attributes),
        dropped_attributes_count: r.dropped_attributes_count.to_native(),
        ..Default::default()
    }
}

fn scope(s: &ArchivedScope<'_>) -> pb_common::InstrumentationScope {
    pb_common::InstrumentationScope {
        name: s.name.as_str().to_owned(),
        version: s.version.as_str().to_owned(),
        attributes: key_values(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count.to_native(),
    }
}

fn span(s: &ArchivedSpan<'_>) -> pb_trace::Span {
    pb_trace::Span {
        trace_id: s.trace_id.0.to_vec(),
        span_id: s.span_id.0.to_vec(),
        trace_state: s.trace_state.as_str().to_owned(),
        parent_span_id: s
            .parent_span_id
            .as_ref()
            .map_or_else(Vec::new, |p| p.0.to_vec()),
        flags: s.flags.to_native(),
        name: s.name.as_str().to_owned(),
        kind: s.kind.to_native(),
        start_time_unix_nano: s.start_time_unix_nano.to_native(),
        end_time_unix_nano: s.end_time_unix_nano.to_native(),
        attributes: key_values(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count.to_native(),
        events: s
            .events
            .iter()
            .map(|e| pb_trace::span::Event {
                time_unix_nano: e.time_unix_nano.to_native(),
                name: e.name.as_str().to_owned(),
                attributes: key_values(&e.attributes),
                dropped_attributes_count: e.dropped_attributes_count.to_native(),
            })
            .collect(),
        dropped_events_count: s.dropped_events_count.to_native(),
        links: s
            .links
            .iter()
            .map(|l| pb_trace::span::Link {
                trace_id: l.trace_id.0.to_vec(),
                span_id: l.span_id.0.to_vec(),
                trace_state: l.trace_state.as_str().to_owned(),
                attributes: key_values(&l.attributes),
                dropped_attributes_count: l.dropped_attributes_count.to_native(),
                flags: l.flags.to_native(),
            })
            .collect(),
        dropped_links_count: s.dropped_links_count.to_native(),
        status: Some(pb_trace::Status {
            message: s.status.message.as_str().to_owned(),
            code: s.status.code.to_native(),
        }),
    }
}

fn key_values(kvs: &[ArchivedKeyValue<'_>]) -> Vec<pb_common::KeyValue> {
    kvs.iter()
        .map(|kv| pb_common::KeyValue {
            key: kv.key.as_str().to_owned(),
            value: Some(any_value(&kv.value)),
            ..Default::default()
        })
        .collect()
}

fn any_value(v: &ArchivedAnyValue<'_>) -> pb_common::AnyValue {
    use pb_common::any_value::Value;
    let value = match v {
        ArchivedAnyValue::Empty => None,
        ArchivedAnyValue::String(s) => Some(Value::StringValue(s.as_str().to_owned())),
        ArchivedAnyValue::Bool(b) => Some(Value::BoolValue(*b)),
        ArchivedAnyValue::Int(i) => Some(Value::IntValue(i.to_native())),
        ArchivedAnyValue::Double(d) => Some(Value::DoubleValue(d.to_native())),
        ArchivedAnyValue::Bytes(b) => Some(Value::BytesValue(b.as_slice().to_vec())),
        ArchivedAnyValue::Array(a) => Some(Value::ArrayValue(pb_common::ArrayValue {
            values: a.iter().map(any_value).collect(),
        })),
        ArchivedAnyValue::KvList(kvs) => Some(Value::KvlistValue(pb_common::KeyValueList {
            values: key_values(kvs),
        })),
    };
    pb_common::AnyValue { value }
}
