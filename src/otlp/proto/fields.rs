//! Where things are in the OTLP messages: field numbers as `proto/` declares them, and the
//! protobuf depth of the messages with a fixed place.

// Field numbers, as `proto/` declares them (the `fields` test checks each one against its
// descriptor, with its wire type). `ExportTraceServiceRequest` and
// `ExportLogsServiceRequest` share their layout, and so do `ResourceSpans` / `ResourceLogs` and
// `ScopeSpans` / `ScopeLogs`.
pub(super) const REQUEST_RESOURCE_ITEMS: u32 = 1;
pub(super) const RESOURCE_ITEMS_RESOURCE: u32 = 1;
pub(super) const RESOURCE_ITEMS_SCOPE_ITEMS: u32 = 2;
pub(super) const RESOURCE_ITEMS_SCHEMA_URL: u32 = 3;
pub(super) const SCOPE_ITEMS_SCOPE: u32 = 1;
pub(super) const SCOPE_ITEMS_ITEMS: u32 = 2;
pub(super) const SCOPE_ITEMS_SCHEMA_URL: u32 = 3;

pub(super) const RESOURCE_ATTRIBUTES: u32 = 1;
pub(super) const RESOURCE_DROPPED_ATTRIBUTES_COUNT: u32 = 2;

pub(super) const SCOPE_NAME: u32 = 1;
pub(super) const SCOPE_VERSION: u32 = 2;
pub(super) const SCOPE_ATTRIBUTES: u32 = 3;
pub(super) const SCOPE_DROPPED_ATTRIBUTES_COUNT: u32 = 4;

pub(super) const SPAN_TRACE_ID: u32 = 1;
pub(super) const SPAN_SPAN_ID: u32 = 2;
pub(super) const SPAN_TRACE_STATE: u32 = 3;
pub(super) const SPAN_PARENT_SPAN_ID: u32 = 4;
pub(super) const SPAN_NAME: u32 = 5;
pub(super) const SPAN_KIND: u32 = 6;
pub(super) const SPAN_START_TIME_UNIX_NANO: u32 = 7;
pub(super) const SPAN_END_TIME_UNIX_NANO: u32 = 8;
pub(super) const SPAN_ATTRIBUTES: u32 = 9;
pub(super) const SPAN_DROPPED_ATTRIBUTES_COUNT: u32 = 10;
pub(super) const SPAN_EVENTS: u32 = 11;
pub(super) const SPAN_DROPPED_EVENTS_COUNT: u32 = 12;
pub(super) const SPAN_LINKS: u32 = 13;
pub(super) const SPAN_DROPPED_LINKS_COUNT: u32 = 14;
pub(super) const SPAN_STATUS: u32 = 15;
pub(super) const SPAN_FLAGS: u32 = 16;

pub(super) const EVENT_TIME_UNIX_NANO: u32 = 1;
pub(super) const EVENT_NAME: u32 = 2;
pub(super) const EVENT_ATTRIBUTES: u32 = 3;
pub(super) const EVENT_DROPPED_ATTRIBUTES_COUNT: u32 = 4;

pub(super) const LINK_TRACE_ID: u32 = 1;
pub(super) const LINK_SPAN_ID: u32 = 2;
pub(super) const LINK_TRACE_STATE: u32 = 3;
pub(super) const LINK_ATTRIBUTES: u32 = 4;
pub(super) const LINK_DROPPED_ATTRIBUTES_COUNT: u32 = 5;
pub(super) const LINK_FLAGS: u32 = 6;

pub(super) const STATUS_MESSAGE: u32 = 2;
pub(super) const STATUS_CODE: u32 = 3;

pub(super) const LOG_TIME_UNIX_NANO: u32 = 1;
pub(super) const LOG_SEVERITY_NUMBER: u32 = 2;
pub(super) const LOG_SEVERITY_TEXT: u32 = 3;
pub(super) const LOG_BODY: u32 = 5;
pub(super) const LOG_ATTRIBUTES: u32 = 6;
pub(super) const LOG_DROPPED_ATTRIBUTES_COUNT: u32 = 7;
pub(super) const LOG_FLAGS: u32 = 8;
pub(super) const LOG_TRACE_ID: u32 = 9;
pub(super) const LOG_SPAN_ID: u32 = 10;
pub(super) const LOG_OBSERVED_TIME_UNIX_NANO: u32 = 11;
pub(super) const LOG_EVENT_NAME: u32 = 12;

pub(super) const KEY_VALUE_KEY: u32 = 1;
pub(super) const KEY_VALUE_VALUE: u32 = 2;

pub(super) const ANY_STRING: u32 = 1;
pub(super) const ANY_BOOL: u32 = 2;
pub(super) const ANY_INT: u32 = 3;
pub(super) const ANY_DOUBLE: u32 = 4;
pub(super) const ANY_ARRAY: u32 = 5;
pub(super) const ANY_KVLIST: u32 = 6;
pub(super) const ANY_BYTES: u32 = 7;
/// `string_value_strindex`, a profiling-only oneof member: OTLP asks other signals to treat
/// it as absent, so it leaves the value empty.
pub(super) const ANY_STRING_STRINDEX: u32 = 8;

/// `values` of both `ArrayValue` and `KeyValueList`.
pub(super) const LIST_VALUES: u32 = 1;

/// Protobuf depth (the request is at 0) of the messages with a fixed place: `Resource` in
/// `ResourceSpans`, `InstrumentationScope` in `ScopeSpans`, and spans or log records.
pub(super) const RESOURCE_DEPTH: usize = 2;
pub(super) const SCOPE_DEPTH: usize = 3;
pub(super) const ITEM_DEPTH: usize = 3;
