//! Mirror structs of the OTLP messages, read by serde's derive. Every field is optional;
//! `null` is absent.

use serde::Deserialize;

use super::any_value::JAnyValue;
use super::containers::{List, Msg, Seq};
use super::scalars::{JEnum, JStr, JU32, JU64};
use crate::domain::KeyValue;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "an OTLP ExportTraceServiceRequest object")]
pub(super) struct JTracesRequest<'a> {
    #[serde(borrow, default, alias = "resource_spans")]
    pub(super) resource_spans: List<JResourceSpans<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a ResourceSpans object")]
pub(super) struct JResourceSpans<'a> {
    #[serde(borrow, default)]
    pub(super) resource: Msg<JResource<'a>>,
    #[serde(borrow, default, alias = "scope_spans")]
    pub(super) scope_spans: List<JScopeSpans<'a>>,
    #[serde(borrow, default, alias = "schema_url")]
    pub(super) schema_url: JStr<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a ScopeSpans object")]
pub(super) struct JScopeSpans<'a> {
    #[serde(borrow, default)]
    pub(super) scope: Msg<JScope<'a>>,
    #[serde(borrow, default)]
    pub(super) spans: List<JSpan<'a>>,
    #[serde(borrow, default, alias = "schema_url")]
    pub(super) schema_url: JStr<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "an OTLP ExportLogsServiceRequest object")]
pub(super) struct JLogsRequest<'a> {
    #[serde(borrow, default, alias = "resource_logs")]
    pub(super) resource_logs: List<JResourceLogs<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a ResourceLogs object")]
pub(super) struct JResourceLogs<'a> {
    #[serde(borrow, default)]
    pub(super) resource: Msg<JResource<'a>>,
    #[serde(borrow, default, alias = "scope_logs")]
    pub(super) scope_logs: List<JScopeLogs<'a>>,
    #[serde(borrow, default, alias = "schema_url")]
    pub(super) schema_url: JStr<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a ScopeLogs object")]
pub(super) struct JScopeLogs<'a> {
    #[serde(borrow, default)]
    pub(super) scope: Msg<JScope<'a>>,
    #[serde(borrow, default, alias = "log_records")]
    pub(super) log_records: List<JLogRecord<'a>>,
    #[serde(borrow, default, alias = "schema_url")]
    pub(super) schema_url: JStr<'a>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Resource object")]
pub(super) struct JResource<'a> {
    #[serde(borrow, default)]
    pub(super) attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    pub(super) dropped_attributes_count: JU32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "an InstrumentationScope object")]
pub(super) struct JScope<'a> {
    #[serde(borrow, default)]
    pub(super) name: JStr<'a>,
    #[serde(borrow, default)]
    pub(super) version: JStr<'a>,
    #[serde(borrow, default)]
    pub(super) attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    pub(super) dropped_attributes_count: JU32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Span object")]
pub(super) struct JSpan<'a> {
    #[serde(borrow, default, alias = "trace_id")]
    pub(super) trace_id: JStr<'a>,
    #[serde(borrow, default, alias = "span_id")]
    pub(super) span_id: JStr<'a>,
    #[serde(borrow, default, alias = "trace_state")]
    pub(super) trace_state: JStr<'a>,
    #[serde(borrow, default, alias = "parent_span_id")]
    pub(super) parent_span_id: JStr<'a>,
    #[serde(default)]
    pub(super) flags: JU32,
    #[serde(borrow, default)]
    pub(super) name: JStr<'a>,
    #[serde(default)]
    pub(super) kind: JEnum,
    #[serde(default, alias = "start_time_unix_nano")]
    pub(super) start_time_unix_nano: JU64,
    #[serde(default, alias = "end_time_unix_nano")]
    pub(super) end_time_unix_nano: JU64,
    #[serde(borrow, default)]
    pub(super) attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    pub(super) dropped_attributes_count: JU32,
    #[serde(borrow, default)]
    pub(super) events: List<JEvent<'a>>,
    #[serde(default, alias = "dropped_events_count")]
    pub(super) dropped_events_count: JU32,
    #[serde(borrow, default)]
    pub(super) links: List<JLink<'a>>,
    #[serde(default, alias = "dropped_links_count")]
    pub(super) dropped_links_count: JU32,
    #[serde(borrow, default)]
    pub(super) status: Msg<JStatus<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Span.Event object")]
pub(super) struct JEvent<'a> {
    #[serde(default, alias = "time_unix_nano")]
    pub(super) time_unix_nano: JU64,
    #[serde(borrow, default)]
    pub(super) name: JStr<'a>,
    #[serde(borrow, default)]
    pub(super) attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    pub(super) dropped_attributes_count: JU32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Span.Link object")]
pub(super) struct JLink<'a> {
    #[serde(borrow, default, alias = "trace_id")]
    pub(super) trace_id: JStr<'a>,
    #[serde(borrow, default, alias = "span_id")]
    pub(super) span_id: JStr<'a>,
    #[serde(borrow, default, alias = "trace_state")]
    pub(super) trace_state: JStr<'a>,
    #[serde(borrow, default)]
    pub(super) attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    pub(super) dropped_attributes_count: JU32,
    #[serde(default)]
    pub(super) flags: JU32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a Status object")]
pub(super) struct JStatus<'a> {
    #[serde(borrow, default)]
    pub(super) message: JStr<'a>,
    #[serde(default)]
    pub(super) code: JEnum,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a LogRecord object")]
pub(super) struct JLogRecord<'a> {
    #[serde(default, alias = "time_unix_nano")]
    pub(super) time_unix_nano: JU64,
    #[serde(default, alias = "observed_time_unix_nano")]
    pub(super) observed_time_unix_nano: JU64,
    #[serde(default, alias = "severity_number")]
    pub(super) severity_number: JEnum,
    #[serde(borrow, default, alias = "severity_text")]
    pub(super) severity_text: JStr<'a>,
    #[serde(borrow, default)]
    pub(super) body: JAnyValue<'a>,
    #[serde(borrow, default)]
    pub(super) attributes: List<JKeyValue<'a>>,
    #[serde(default, alias = "dropped_attributes_count")]
    pub(super) dropped_attributes_count: JU32,
    #[serde(default)]
    pub(super) flags: JU32,
    #[serde(borrow, default, alias = "trace_id")]
    pub(super) trace_id: JStr<'a>,
    #[serde(borrow, default, alias = "span_id")]
    pub(super) span_id: JStr<'a>,
    #[serde(borrow, default, alias = "event_name")]
    pub(super) event_name: JStr<'a>,
}

#[derive(Deserialize)]
#[serde(expecting = "a KeyValue object")]
pub(super) struct JKeyValue<'a> {
    #[serde(borrow, default)]
    pub(super) key: JStr<'a>,
    #[serde(borrow, default)]
    pub(super) value: JAnyValue<'a>,
}

impl<'a> JKeyValue<'a> {
    pub(super) fn into_domain(self) -> KeyValue<'a> {
        KeyValue {
            key: self.key.0,
            value: self.value.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(expecting = "an ArrayValue object")]
pub(super) struct JArrayValue<'a> {
    #[serde(borrow, default)]
    pub(super) values: Option<Seq<JAnyValue<'a>>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a KeyValueList object")]
pub(super) struct JKeyValueList<'a> {
    #[serde(borrow, default)]
    pub(super) values: List<JKeyValue<'a>>,
}
