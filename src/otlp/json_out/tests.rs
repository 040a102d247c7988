//! The writers' output is OTLP JSON: checked field by field, and read back by
//! opentelemetry-proto's own serde mapping. `traces_doc` / `logs_doc` serve `json`'s tests too.

use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue as PAnyValue};

use super::*;
use crate::domain::{
    AnyValue, ArchivedLogBatch, ArchivedSpanBatch, Event, KeyValue, Link, LogBatch, LogRecord,
    Resource, Scope, Span, SpanBatch, SpanId, Status, TraceId,
};

/// One resource and scope with their items already written, for [`doc`].
type Part<'b> = (
    &'b ArchivedResource<'static>,
    &'b ArchivedScope<'static>,
    Vec<String>,
);

/// An OTLP JSON export request (or `*Data`) document: one resource entry with one scope
/// entry per part, under the given keys (`resourceSpans`, `scopeSpans`, `spans`, ...).
fn doc(keys: [&str; 3], parts: Vec<Part<'_>>) -> String {
    let [resources, scopes, items] = keys;
    let mut out = format!("{{\"{resources}\":[");
    for (i, (resource, scope, written)) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"resource\":");
        write_resource(&mut out, resource);
        out.push_str(&format!(",\"{scopes}\":[{{\"scope\":"));
        write_scope(&mut out, scope);
        out.push_str(&format!(",\"{items}\":["));
        out.push_str(&written.join(","));
        out.push_str("],\"schemaUrl\":");
        write_json_str(&mut out, scope.schema_url.as_str());
        out.push_str("}],\"schemaUrl\":");
        write_json_str(&mut out, resource.schema_url.as_str());
        out.push('}');
    }
    out.push_str("]}");
    out
}

fn written<T>(items: impl Iterator<Item = T>, write: fn(&mut String, T)) -> Vec<String> {
    items
        .map(|item| {
            let mut out = String::new();
            write(&mut out, item);
            out
        })
        .collect()
}

/// An OTLP JSON `ExportTraceServiceRequest` (or `TracesData`): one `ResourceSpans` with one
/// `ScopeSpans` per batch.
pub(crate) fn traces_doc(batches: &[&ArchivedSpanBatch<'static>]) -> String {
    let parts = batches
        .iter()
        .map(|b| (&b.resource, &b.scope, written(b.spans.iter(), write_span)))
        .collect();
    doc(["resourceSpans", "scopeSpans", "spans"], parts)
}

/// An OTLP JSON `ExportLogsServiceRequest` (or `LogsData`), like [`traces_doc`].
pub(crate) fn logs_doc(batches: &[&ArchivedLogBatch<'static>]) -> String {
    let parts = batches
        .iter()
        .map(|b| (&b.resource, &b.scope, written(b.logs.iter(), write_log)))
        .collect();
    doc(["resourceLogs", "scopeLogs", "logRecords"], parts)
}

fn kv<'a>(key: &'a str, value: AnyValue<'a>) -> KeyValue<'a> {
    KeyValue {
        key: Cow::Borrowed(key),
        value,
    }
}

fn s(v: &str) -> AnyValue<'_> {
    AnyValue::String(Cow::Borrowed(v))
}

fn sample_values() -> Vec<KeyValue<'static>> {
    vec![
        kv("str", s("quote \" backslash \\ newline \n nul \u{0} é 😀")),
        kv("bool", AnyValue::Bool(false)),
        kv("int", AnyValue::Int(i64::MIN)),
        kv("double", AnyValue::Double(637.704)),
        kv(
            "bytes",
            AnyValue::Bytes(Cow::Borrowed(&[0xfb, 0xff, 0x01, 0x00])),
        ),
        kv(
            "array",
            AnyValue::Array(vec![s("many"), AnyValue::Int(7), AnyValue::Array(vec![])]),
        ),
        kv(
            "map",
            AnyValue::KvList(vec![kv("inner", AnyValue::KvList(vec![])), kv("", s("x"))]),
        ),
    ]
}

fn sample_span_batch() -> SpanBatch<'static> {
    SpanBatch {
        resource: Resource {
            attributes: vec![kv("service.name", s("checkout"))],
            dropped_attributes_count: 2,
            schema_url: Cow::Borrowed("https://opentelemetry.io/schemas/1.24.0"),
        },
        scope: Scope {
            name: Cow::Borrowed("io.opentelemetry.http"),
            version: Cow::Borrowed("1.2.3"),
            attributes: vec![kv("scope.attr", AnyValue::Bool(true))],
            dropped_attributes_count: 0,
            schema_url: Cow::Borrowed("https://scope"),
        },
        spans: vec![
            Span {
                trace_id: TraceId::from_hex("5b8efff798038103d269b633813fc60c").unwrap(),
                span_id: SpanId([0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]),
                trace_state: Cow::Borrowed("congo=t61rcWkgMzE"),
                parent_span_id: Some(SpanId([0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73])),
                flags: 0x301,
                name: Cow::Borrowed("GET /cart"),
                kind: 2,
                start_time_unix_nano: 1_544_712_660_000_000_000,
                end_time_unix_nano: u64::MAX,
                attributes: sample_values(),
                dropped_attributes_count: 1,
                events: vec![Event {
                    time_unix_nano: 1_544_712_660_500_000_000,
                    name: Cow::Borrowed("exception"),
                    attributes: vec![kv("exception.message", s("oops"))],
                    dropped_attributes_count: 3,
                }],
                dropped_events_count: 4,
                links: vec![Link {
                    trace_id: TraceId([0; 16]),
                    span_id: SpanId([1; 8]),
                    trace_state: Cow::Borrowed(""),
                    attributes: vec![],
                    dropped_attributes_count: 0,
                    flags: 1,
                }],
                dropped_links_count: 5,
                status: Status {
                    message: Cow::Borrowed("failed"),
                    code: 2,
                },
            },
            Span {
                trace_id: TraceId([0xab; 16]),
                span_id: SpanId([0xcd; 8]),
                trace_state: Cow::Borrowed(""),
                parent_span_id: None,
                flags: 0,
                name: Cow::Borrowed(""),
                kind: 0,
                start_time_unix_nano: 0,
                end_time_unix_nano: 0,
                attributes: vec![],
                dropped_attributes_count: 0,
                events: vec![],
                dropped_events_count: 0,
                links: vec![],
                dropped_links_count: 0,
                status: Status::default(),
            },
        ],
    }
}

fn sample_log_batch() -> LogBatch<'static> {
    LogBatch {
        resource: Resource {
            attributes: vec![kv("service.name", s("checkout"))],
            dropped_attributes_count: 0,
            schema_url: Cow::Borrowed(""),
        },
        scope: Scope::default(),
        logs: vec![
            LogRecord {
                time_unix_nano: 1_544_712_660_300_000_000,
                observed_time_unix_nano: 1_544_712_660_300_000_001,
                severity_number: 10,
                severity_text: Cow::Borrowed("Information"),
                body: AnyValue::KvList(sample_values()),
                attributes: sample_values(),
                dropped_attributes_count: 6,
                flags: 1,
                trace_id: Some(TraceId([0x5b; 16])),
                span_id: Some(SpanId([0xee; 8])),
                event_name: Cow::Borrowed("browser.page_view"),
            },
            LogRecord {
                time_unix_nano: 0,
                observed_time_unix_nano: 0,
                severity_number: 0,
                severity_text: Cow::Borrowed(""),
                body: AnyValue::Empty,
                attributes: vec![],
                dropped_attributes_count: 0,
                flags: 0,
                trace_id: None,
                span_id: None,
                event_name: Cow::Borrowed(""),
            },
        ],
    }
}

fn span_json(batch: &SpanBatch<'_>) -> String {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(batch).unwrap();
    let archived = rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(&bytes).unwrap();
    traces_doc(&[archived])
}

fn log_json(batch: &LogBatch<'_>) -> String {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(batch).unwrap();
    let archived = rkyv::access::<ArchivedLogBatch<'static>, rkyv::rancor::Error>(&bytes).unwrap();
    logs_doc(&[archived])
}

fn value_json(v: &AnyValue<'_>) -> String {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(v).unwrap();
    let archived = rkyv::access::<ArchivedAnyValue<'static>, rkyv::rancor::Error>(&bytes).unwrap();
    let mut out = String::new();
    write_any_value(&mut out, archived);
    out
}

#[test]
fn span_json_is_otlp_json() {
    let json = span_json(&sample_span_batch());
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let rs = &v["resourceSpans"][0];
    assert_eq!(rs["schemaUrl"], "https://opentelemetry.io/schemas/1.24.0");
    assert_eq!(
        rs["resource"],
        serde_json::json!({
            "attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}],
            "droppedAttributesCount": 2
        })
    );
    let ss = &rs["scopeSpans"][0];
    assert_eq!(ss["schemaUrl"], "https://scope");
    assert_eq!(
        ss["scope"],
        serde_json::json!({
            "name": "io.opentelemetry.http", "version": "1.2.3",
            "attributes": [{"key": "scope.attr", "value": {"boolValue": true}}]
        })
    );
    let span = &ss["spans"][0];
    assert_eq!(span["traceId"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(span["spanId"], "eee19b7ec3c1b174");
    assert_eq!(span["parentSpanId"], "eee19b7ec3c1b173");
    assert_eq!(span["traceState"], "congo=t61rcWkgMzE");
    assert_eq!(span["flags"], 0x301);
    assert_eq!(span["kind"], 2);
    assert_eq!(span["startTimeUnixNano"], "1544712660000000000");
    assert_eq!(span["endTimeUnixNano"], "18446744073709551615");
    assert_eq!(span["droppedAttributesCount"], 1);
    assert_eq!(span["droppedEventsCount"], 4);
    assert_eq!(span["droppedLinksCount"], 5);
    assert_eq!(
        span["status"],
        serde_json::json!({"message": "failed", "code": 2})
    );
    assert_eq!(
        span["events"],
        serde_json::json!([{
            "timeUnixNano": "1544712660500000000", "name": "exception",
            "attributes": [{"key": "exception.message", "value": {"stringValue": "oops"}}],
            "droppedAttributesCount": 3
        }])
    );
    assert_eq!(
        span["links"],
        serde_json::json!([{
            "traceId": "00000000000000000000000000000000", "spanId": "0101010101010101",
            "flags": 1
        }])
    );
    assert_eq!(
        span["attributes"],
        serde_json::json!([
            {"key": "str", "value": {"stringValue": "quote \" backslash \\ newline \n nul \u{0} é 😀"}},
            {"key": "bool", "value": {"boolValue": false}},
            {"key": "int", "value": {"intValue": "-9223372036854775808"}},
            {"key": "double", "value": {"doubleValue": 637.704}},
            {"key": "bytes", "value": {"bytesValue": "+/8BAA=="}},
            {"key": "array", "value": {"arrayValue": {"values": [
                {"stringValue": "many"}, {"intValue": "7"}, {"arrayValue": {"values": []}}
            ]}}},
            {"key": "map", "value": {"kvlistValue": {"values": [
                {"key": "inner", "value": {"kvlistValue": {"values": []}}},
                {"key": "", "value": {"stringValue": "x"}}
            ]}}}
        ])
    );
    // Defaults are omitted, but a span always names its ids, name and times.
    assert_eq!(
        ss["spans"][1],
        serde_json::json!({
            "traceId": "abababababababababababababababab", "spanId": "cdcdcdcdcdcdcdcd",
            "name": "", "startTimeUnixNano": "0", "endTimeUnixNano": "0"
        })
    );
}

#[test]
fn log_json_is_otlp_json() {
    let json = log_json(&sample_log_batch());
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let rl = &v["resourceLogs"][0];
    assert_eq!(rl["schemaUrl"], "");
    assert_eq!(rl["scopeLogs"][0]["scope"], serde_json::json!({}));
    let log = &rl["scopeLogs"][0]["logRecords"][0];
    assert_eq!(log["timeUnixNano"], "1544712660300000000");
    assert_eq!(log["observedTimeUnixNano"], "1544712660300000001");
    assert_eq!(log["severityNumber"], 10);
    assert_eq!(log["severityText"], "Information");
    assert_eq!(log["traceId"], "5b".repeat(16));
    assert_eq!(log["spanId"], "ee".repeat(8));
    assert_eq!(log["flags"], 1);
    assert_eq!(log["droppedAttributesCount"], 6);
    assert_eq!(log["eventName"], "browser.page_view");
    assert_eq!(
        log["body"]["kvlistValue"]["values"][2]["value"]["intValue"],
        "-9223372036854775808"
    );
    assert_eq!(rl["scopeLogs"][0]["logRecords"][1], serde_json::json!({}));
}

#[test]
fn doubles_and_escapes() {
    assert_eq!(value_json(&AnyValue::Double(1.0)), r#"{"doubleValue":1.0}"#);
    assert_eq!(
        value_json(&AnyValue::Double(-0.0)),
        r#"{"doubleValue":-0.0}"#
    );
    assert_eq!(
        value_json(&AnyValue::Double(1e300)),
        r#"{"doubleValue":1e+300}"#
    );
    assert_eq!(
        value_json(&AnyValue::Double(f64::NAN)),
        r#"{"doubleValue":"NaN"}"#
    );
    assert_eq!(
        value_json(&AnyValue::Double(f64::INFINITY)),
        r#"{"doubleValue":"Infinity"}"#
    );
    assert_eq!(
        value_json(&AnyValue::Double(f64::NEG_INFINITY)),
        r#"{"doubleValue":"-Infinity"}"#
    );
    assert_eq!(value_json(&AnyValue::Empty), "{}");
    assert_eq!(
        value_json(&s("\"\\\u{8}\u{c}\n\r\t\u{1}\u{7f}é/")),
        // DEL and non-ASCII need no escape in JSON.
        concat!(
            r#"{"stringValue":"\"\\\b\f\n\r\t\u0001"#,
            "\u{7f}",
            r#"é/"}"#
        )
    );
    let mut out = String::new();
    write_json_str(&mut out, "a\u{2028}b");
    assert_eq!(serde_json::from_str::<String>(&out).unwrap(), "a\u{2028}b");
}

#[test]
fn writing_is_bounded_whatever_the_archive_holds() {
    // Deeper than validation lets through: written, but cut at the depth limit.
    let mut v = AnyValue::Int(1);
    for _ in 0..VALUE_DEPTH_MAX + 4 {
        v = AnyValue::Array(vec![v]);
    }
    let json = value_json(&v);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut depth = 0;
    let mut cur = &parsed;
    while let Some(inner) = cur.get("arrayValue") {
        depth += 1;
        cur = &inner["values"][0];
    }
    assert_eq!(depth, VALUE_DEPTH_MAX);
    assert_eq!(cur, &serde_json::json!({}));
}

fn proto_value(v: &Option<PAnyValue>) -> Option<&any_value::Value> {
    v.as_ref().and_then(|v| v.value.as_ref())
}

/// The JSON written here is read by opentelemetry-proto's own serde mapping, an
/// independent implementation, to the same values.
#[test]
fn opentelemetry_proto_reads_the_traces() {
    let batch = sample_span_batch();
    let json = span_json(&batch);
    let req: ExportTraceServiceRequest =
        serde_json::from_str(&json).expect("opentelemetry-proto accepts the JSON");
    let rs = &req.resource_spans[0];
    assert_eq!(rs.schema_url, batch.resource.schema_url);
    let resource = rs.resource.as_ref().unwrap();
    assert_eq!(resource.dropped_attributes_count, 2);
    assert_eq!(resource.attributes[0].key, "service.name");
    let ss = &rs.scope_spans[0];
    assert_eq!(ss.schema_url, "https://scope");
    let scope = ss.scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("io.opentelemetry.http", "1.2.3")
    );
    assert_eq!(ss.spans.len(), 2);
    let (p, d) = (&ss.spans[0], &batch.spans[0]);
    assert_eq!(p.trace_id, d.trace_id.0);
    assert_eq!(p.span_id, d.span_id.0);
    assert_eq!(p.parent_span_id, d.parent_span_id.unwrap().0);
    assert_eq!(p.trace_state, d.trace_state);
    assert_eq!(p.flags, d.flags);
    assert_eq!(p.name, d.name);
    assert_eq!(p.kind, d.kind);
    assert_eq!(p.start_time_unix_nano, d.start_time_unix_nano);
    assert_eq!(p.end_time_unix_nano, d.end_time_unix_nano);
    assert_eq!(p.dropped_attributes_count, d.dropped_attributes_count);
    assert_eq!(p.dropped_events_count, d.dropped_events_count);
    assert_eq!(p.dropped_links_count, d.dropped_links_count);
    let status = p.status.as_ref().unwrap();
    assert_eq!((status.message.as_str(), status.code), ("failed", 2));
    assert_eq!(p.events[0].time_unix_nano, d.events[0].time_unix_nano);
    assert_eq!(p.events[0].name, "exception");
    assert_eq!(p.events[0].dropped_attributes_count, 3);
    assert_eq!(p.links[0].trace_id, [0; 16]);
    assert_eq!(p.links[0].span_id, [1; 8]);
    assert_eq!(p.links[0].flags, 1);

    let keys: Vec<_> = p.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["str", "bool", "int", "double", "bytes", "array", "map"]
    );
    use any_value::Value as V;
    let values: Vec<_> = p
        .attributes
        .iter()
        .map(|kv| proto_value(&kv.value))
        .collect();
    assert_eq!(
        values[0],
        Some(&V::StringValue(
            "quote \" backslash \\ newline \n nul \u{0} é 😀".into()
        ))
    );
    assert_eq!(values[1], Some(&V::BoolValue(false)));
    assert_eq!(values[2], Some(&V::IntValue(i64::MIN)));
    assert_eq!(values[3], Some(&V::DoubleValue(637.704)));
    assert_eq!(
        values[4],
        Some(&V::BytesValue(vec![0xfb, 0xff, 0x01, 0x00]))
    );
    let Some(V::ArrayValue(array)) = values[5] else {
        panic!("{:?}", values[5])
    };
    assert_eq!(array.values.len(), 3);
    assert_eq!(
        proto_value(&Some(array.values[1].clone())),
        Some(&V::IntValue(7))
    );
    let Some(V::KvlistValue(map)) = values[6] else {
        panic!("{:?}", values[6])
    };
    assert_eq!(map.values[1].key, "");

    let (p, d) = (&ss.spans[1], &batch.spans[1]);
    assert_eq!(
        (p.trace_id.as_slice(), p.span_id.as_slice()),
        (&d.trace_id.0[..], &d.span_id.0[..])
    );
    assert!(p.parent_span_id.is_empty() && p.status.is_none() && p.attributes.is_empty());
}

#[test]
fn opentelemetry_proto_reads_the_logs() {
    let batch = sample_log_batch();
    let json = log_json(&batch);
    let req: ExportLogsServiceRequest =
        serde_json::from_str(&json).expect("opentelemetry-proto accepts the JSON");
    let logs = &req.resource_logs[0].scope_logs[0].log_records;
    let (p, d) = (&logs[0], &batch.logs[0]);
    assert_eq!(p.time_unix_nano, d.time_unix_nano);
    assert_eq!(p.observed_time_unix_nano, d.observed_time_unix_nano);
    assert_eq!(p.severity_number, 10);
    assert_eq!(p.severity_text, "Information");
    assert_eq!(p.trace_id, [0x5b; 16]);
    assert_eq!(p.span_id, [0xee; 8]);
    assert_eq!(p.flags, 1);
    assert_eq!(p.dropped_attributes_count, 6);
    assert_eq!(p.event_name, "browser.page_view");
    assert_eq!(p.attributes.len(), 7);
    let Some(any_value::Value::KvlistValue(body)) = proto_value(&p.body) else {
        panic!("{:?}", p.body)
    };
    assert_eq!(body.values.len(), 7);
    let (p, _) = (&logs[1], &batch.logs[1]);
    assert!(p.trace_id.is_empty() && p.span_id.is_empty() && proto_value(&p.body).is_none());
    assert_eq!(p.time_unix_nano, 0);
}
