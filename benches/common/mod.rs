//! Realistic OTLP payloads shared by the benches: HTTP server spans with ten attributes of the
//! HTTP semantic conventions (~410 bytes each encoded) and application log records with six
//! attributes (~330 bytes), under a seven-attribute resource.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

pub fn text(s: &str) -> Value {
    Value::StringValue(s.into())
}

pub fn resource() -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", text("checkout")),
            kv("service.version", text("2.14.1")),
            kv("service.instance.id", text("checkout-7d9f8b6c5-x2k4p")),
            kv(
                "host.name",
                text("ip-10-0-12-34.eu-west-1.compute.internal"),
            ),
            kv("telemetry.sdk.language", text("rust")),
            kv("telemetry.sdk.name", text("opentelemetry")),
            kv("telemetry.sdk.version", text("0.33.0")),
        ],
        dropped_attributes_count: 0,
        entity_refs: vec![],
    }
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "opentelemetry-instrumentation-http".into(),
        version: "0.33.0".into(),
        attributes: vec![],
        dropped_attributes_count: 0,
    }
}

/// An HTTP server span with ten attributes of the HTTP semantic conventions.
///
/// Span `i` of trace `trace`: trace ids are distinct per `trace`, span ids per (trace, i).
pub fn span(trace: u64, i: u64) -> Span {
    let id = trace * 1000 + i + 1;
    let user = 10_000 + id * 37;
    Span {
        trace_id: [
            trace.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes(),
            (trace | 1).to_be_bytes(),
        ]
        .concat(),
        span_id: (id << 8 | 1).to_be_bytes().to_vec(),
        trace_state: String::new(),
        parent_span_id: (id << 8 | 2).to_be_bytes().to_vec(),
        flags: 0x301,
        name: "GET /users/{id}".into(),
        kind: 2,
        start_time_unix_nano: 1_760_000_000_000_000_000 + id * 1_000_000,
        end_time_unix_nano: 1_760_000_000_000_000_000 + id * 1_000_000 + 3_250_000,
        attributes: vec![
            kv("http.request.method", text("GET")),
            kv("http.route", text("/users/{id}")),
            kv(
                "url.full",
                text(&format!("https://api.example.com/users/{user}")),
            ),
            kv("server.address", text("api.example.com")),
            kv("server.port", Value::IntValue(443)),
            kv("http.response.status_code", Value::IntValue(200)),
            kv("network.protocol.version", text("1.1")),
            kv("user_agent.original", text("okhttp/4.12.0")),
            kv("app.cache.hit", Value::BoolValue(id % 3 == 0)),
            kv(
                "app.db.fraction",
                Value::DoubleValue(0.25 + (id % 1000) as f64 / 1000.0),
            ),
        ],
        dropped_attributes_count: 0,
        events: vec![],
        dropped_events_count: 0,
        links: vec![],
        dropped_links_count: 0,
        status: Some(Status {
            message: String::new(),
            code: 1,
        }),
    }
}

/// `traces` traces of `per_trace` spans in one request.
pub fn traces_request(first_trace: u64, traces: u64, per_trace: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans: (first_trace..first_trace + traces)
                    .flat_map(|t| (0..per_trace).map(move |i| span(t, i)))
                    .collect(),
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        }],
    }
}

/// An application log record with a message body, trace context and six attributes.
pub fn log(i: u64) -> LogRecord {
    let id = i + 1;
    LogRecord {
        time_unix_nano: 1_760_000_000_000_000_000 + id * 1_000_000,
        observed_time_unix_nano: 1_760_000_000_000_000_000 + id * 1_000_000 + 20_000,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(text(&format!(
                "order {id} placed: 3 items, total 129.90 EUR, payment authorised by provider"
            ))),
        }),
        attributes: vec![
            kv("code.function.name", text("checkout::orders::place")),
            kv("code.file.path", text("src/orders.rs")),
            kv("code.line.number", Value::IntValue(214)),
            kv("thread.name", text("tokio-runtime-worker")),
            kv("app.order.items", Value::IntValue(3)),
            kv("app.order.express", Value::BoolValue(i % 2 == 0)),
        ],
        dropped_attributes_count: 0,
        flags: 1,
        trace_id: [id.to_be_bytes(), 0x5eed_u64.to_be_bytes()].concat(),
        span_id: (id << 8 | 1).to_be_bytes().to_vec(),
        event_name: String::new(),
    }
}

/// `n` log records in one request.
pub fn logs_request(n: u64) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: (0..n).map(log).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
