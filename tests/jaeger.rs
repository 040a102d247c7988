//! Grafana's Jaeger data source and Jaeger UI against the real binary: the services, their
//! operations and a trace by id, decoded into mirror types that refuse unknown fields.

mod common;

use std::collections::BTreeMap;

use common::*;
use opentelemetry::trace::{Span as _, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use serde::Deserialize;

/// `uimodel` of Jaeger's v1 API, as its clients read it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<T> {
    data: Option<T>,
    total: u64,
    limit: u64,
    offset: u64,
    errors: Option<Vec<ApiError>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiError {
    code: u16,
    msg: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct Trace {
    traceID: String,
    spans: Vec<Span>,
    processes: BTreeMap<String, Process>,
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct Span {
    traceID: String,
    spanID: String,
    operationName: String,
    references: Vec<Reference>,
    startTime: u64,
    duration: u64,
    flags: Option<u32>,
    tags: Vec<Tag>,
    logs: Vec<Log>,
    processID: String,
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct Reference {
    refType: String,
    traceID: String,
    spanID: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tag {
    key: String,
    r#type: String,
    value: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Log {
    timestamp: u64,
    fields: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct Process {
    serviceName: String,
    tags: Vec<Tag>,
}

fn export(server: &Server) -> String {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(server.otlp_url("/v1/traces"))
        .build()
        .expect("span exporter");
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("jaeger-sdk")
                .with_attribute(KeyValue::new("host.name", "box-9"))
                .build(),
        )
        .build();
    let tracer = provider.tracer("jaeger-test");
    let id = tracer.in_span("checkout", |cx| {
        cx.span().set_attribute(KeyValue::new("cart.items", 3));
        cx.span()
            .add_event("validated", vec![KeyValue::new("ok", true)]);
        let mut child = tracer.start("charge-card");
        child.set_status(Status::error("card declined"));
        child.end();
        cx.span().span_context().trace_id().to_string()
    });
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");
    id
}

fn tag<'t>(tags: &'t [Tag], key: &str) -> Option<&'t Tag> {
    tags.iter().find(|t| t.key == key)
}

#[test]
fn grafana_and_jaeger_ui_list_services_and_open_an_sdk_trace() {
    let server = Server::start(2);
    let id = export(&server);

    let services: Envelope<Vec<String>> =
        serde_json::from_slice(&server.get("/jaeger/api/services").body).unwrap();
    assert_eq!(services.data.unwrap(), vec!["jaeger-sdk".to_owned()]);
    assert_eq!((services.total, services.limit, services.offset), (1, 0, 0));
    assert!(services.errors.is_none());
    let ops: Envelope<Vec<String>> = serde_json::from_slice(
        &server
            .get("/jaeger/api/services/jaeger-sdk/operations")
            .body,
    )
    .unwrap();
    assert_eq!(ops.data.unwrap(), vec!["charge-card", "checkout"]);
    let v3 = server.get_json("/jaeger/api/v3/services");
    assert_eq!(v3["services"], serde_json::json!(["jaeger-sdk"]));
    let v3 = server.get_json("/jaeger/api/v3/operations?service=jaeger-sdk&spanKind=");
    assert_eq!(v3["operations"][1]["name"], "checkout");

    // Grafana may add start/end in ms: ignored.
    let r = server.get(&format!("/jaeger/api/traces/{id}?start=1&end=2"));
    assert_eq!(r.status, 200, "{}", r.text());
    let answer: Envelope<Vec<Trace>> = serde_json::from_slice(&r.body).unwrap();
    let traces = answer.data.unwrap();
    let trace = &traces[0];
    assert_eq!(trace.traceID, id);
    assert!(trace.warnings.is_none());
    assert_eq!(trace.spans.len(), 2);
    let checkout = trace
        .spans
        .iter()
        .find(|s| s.operationName == "checkout")
        .unwrap();
    let charge = trace
        .spans
        .iter()
        .find(|s| s.operationName == "charge-card")
        .unwrap();
    assert!(checkout.references.is_empty());
    assert_eq!(charge.references[0].refType, "CHILD_OF");
    assert_eq!(charge.references[0].spanID, checkout.spanID);
    assert_eq!(charge.references[0].traceID, id);
    assert_eq!(checkout.traceID, id);
    assert!(charge.startTime >= checkout.startTime && checkout.duration >= charge.duration);
    assert!(checkout.startTime > 1_700_000_000_000_000, "microseconds");
    let items = tag(&checkout.tags, "cart.items").unwrap();
    assert_eq!(
        (items.r#type.as_str(), &items.value),
        ("int64", &serde_json::json!(3))
    );
    assert_eq!(
        tag(&charge.tags, "otel.status_code").unwrap().value,
        "ERROR"
    );
    assert_eq!(tag(&charge.tags, "error").unwrap().value, true);
    assert_eq!(
        tag(&charge.tags, "otel.status_description").unwrap().value,
        "card declined"
    );
    assert_eq!(
        tag(&charge.tags, "otel.scope.name").unwrap().value,
        "jaeger-test"
    );
    assert_eq!(tag(&checkout.tags, "span.kind").unwrap().value, "internal");
    assert_eq!(checkout.logs[0].fields[0].value, "validated");
    assert!(checkout.logs[0].timestamp >= checkout.startTime);
    assert!(tag(&checkout.logs[0].fields, "ok").is_some());
    let process = &trace.processes[&checkout.processID];
    assert_eq!(process.serviceName, "jaeger-sdk");
    assert_eq!(tag(&process.tags, "host.name").unwrap().value, "box-9");
    assert!(checkout.flags.is_some());
    assert!(checkout.warnings.is_none());

    let v3 = server.get_json(&format!("/jaeger/api/v3/traces/{id}"));
    assert_eq!(
        v3["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Unknown: 404 with the error Jaeger UI prints.
    let unknown = "0123456789abcdef0123456789abcdef";
    let r = server.get(&format!("/jaeger/api/traces/{unknown}"));
    assert_eq!(r.status, 404);
    let e: Envelope<Vec<Trace>> = serde_json::from_slice(&r.body).unwrap();
    assert!(e.data.is_none());
    let errors = e.errors.unwrap();
    assert_eq!(
        (errors[0].code, errors[0].msg.as_str()),
        (404, "trace not found")
    );
    let r = server.get(&format!("/jaeger/api/v3/traces/{unknown}"));
    assert_eq!(r.status, 404);
    assert_eq!(server.get("/jaeger/api/traces/xyz").status, 400);
}
