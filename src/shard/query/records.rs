//! Stored records read back (checked, zero-copy from the segments) and written as OTLP JSON:
//! a trace's spans, and the documents the query API answers.

use std::sync::Arc;

use crate::domain::{
    ArchivedLogBatch, ArchivedResource, ArchivedScope, ArchivedSpanBatch, TraceId,
};
use crate::index::{Indexes, RecordLoc};
use crate::otlp::json_out;
use crate::otlp::proto_out::{self, ProtoGroup};
use crate::query::JsonGroup;
use crate::storage::{RecordKind, Store};

/// Reads and checks the span record at `loc`. Data from disk: the archive is validated.
pub(super) fn span_batch(store: &Store, loc: RecordLoc) -> Option<&ArchivedSpanBatch<'static>> {
    match store.read(loc)? {
        (RecordKind::Spans, payload) => {
            rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(payload).ok()
        }
        _ => None,
    }
}

pub(super) fn log_batch(store: &Store, loc: RecordLoc) -> Option<&ArchivedLogBatch<'static>> {
    match store.read(loc)? {
        (RecordKind::Logs, payload) => {
            rkyv::access::<ArchivedLogBatch<'static>, rkyv::rancor::Error>(payload).ok()
        }
        _ => None,
    }
}

pub(super) fn resource_fields(r: &ArchivedResource<'_>) -> Arc<str> {
    let mut out = String::from("\"resource\":");
    json_out::write_resource(&mut out, r);
    if !r.schema_url.is_empty() {
        out.push_str(",\"schemaUrl\":");
        json_out::write_json_str(&mut out, r.schema_url.as_str());
    }
    out.into()
}

pub(super) fn scope_fields(s: &ArchivedScope<'_>) -> Arc<str> {
    let mut out = String::from("\"scope\":");
    json_out::write_scope(&mut out, s);
    if !s.schema_url.is_empty() {
        out.push_str(",\"schemaUrl\":");
        json_out::write_json_str(&mut out, s.schema_url.as_str());
    }
    out.into()
}

/// Every stored span of trace `id` on this shard, as OTLP JSON grouped by resource and scope,
/// in the order the records were stored.
pub fn trace_json(index: &Indexes, store: &Store, id: &TraceId) -> Vec<JsonGroup> {
    let mut groups = Vec::new();
    for loc in index.trace_records(id) {
        if let Some(group) = span_batch(store, loc).and_then(|b| trace_group(b, id)) {
            groups.push(group);
        }
    }
    groups
}

/// The spans of trace `id` in `batch` as one OTLP JSON group; `None` if it holds none.
pub(super) fn trace_group(batch: &ArchivedSpanBatch<'_>, id: &TraceId) -> Option<JsonGroup> {
    let items: Vec<String> = batch
        .spans
        .iter()
        .filter(|s| s.trace_id.get() == *id)
        .map(|s| {
            let mut out = String::new();
            json_out::write_span(&mut out, s);
            out
        })
        .collect();
    (!items.is_empty()).then(|| JsonGroup {
        resource: resource_fields(&batch.resource),
        scope: scope_fields(&batch.scope),
        items,
    })
}

/// Every stored span of trace `id` on this shard, as OTLP protobuf groups ([`trace_json`]'s
/// counterpart).
pub fn trace_proto(index: &Indexes, store: &Store, id: &TraceId) -> Vec<ProtoGroup> {
    let mut groups = Vec::new();
    for loc in index.trace_records(id) {
        if let Some(group) = span_batch(store, loc).and_then(|b| trace_proto_group(b, id)) {
            groups.push(group);
        }
    }
    groups
}

/// The spans of trace `id` in `batch` as one protobuf group; `None` if it holds none.
pub(super) fn trace_proto_group(batch: &ArchivedSpanBatch<'_>, id: &TraceId) -> Option<ProtoGroup> {
    let items: Vec<Vec<u8>> = batch
        .spans
        .iter()
        .filter(|s| s.trace_id.get() == *id)
        .map(|s| proto_out::span_message(s))
        .collect();
    (!items.is_empty()).then(|| ProtoGroup {
        resource: proto_out::resource_fields(&batch.resource),
        scope: proto_out::scope_fields(&batch.scope),
        items,
    })
}

/// Renders groups as an OTLP JSON document: `{"<resources>":[{resource,"<scopes>":[{scope,
/// "<items>":[...]}]}]}`, merging groups that share a resource and scope, in first-seen order.
pub fn render(groups: &[JsonGroup], resources: &str, scopes: &str, items: &str) -> String {
    let order = crate::otlp::nest(
        groups
            .iter()
            .map(|g| (&*g.resource, &*g.scope, g.items.as_slice())),
    );
    let mut out = format!("{{\"{resources}\":[");
    for (ri, (resource, scope_list)) in order.iter().enumerate() {
        if ri > 0 {
            out.push(',');
        }
        out.push('{');
        out.push_str(resource);
        out.push_str(&format!(",\"{scopes}\":["));
        for (si, (scope, list)) in scope_list.iter().enumerate() {
            if si > 0 {
                out.push(',');
            }
            out.push('{');
            out.push_str(scope);
            out.push_str(&format!(",\"{items}\":["));
            for (ii, item) in list.iter().enumerate() {
                if ii > 0 {
                    out.push(',');
                }
                out.push_str(item);
            }
            out.push_str("]}");
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}
