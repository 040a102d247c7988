//! A real OpenTelemetry SDK exporting over OTLP/HTTP (protobuf and JSON) into Glust, read back
//! through the query API.

mod common;

use common::*;
use opentelemetry::logs::{
    AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
};
use opentelemetry::trace::{Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;

fn export_with(server: &Server, protocol: Protocol, service: &str) -> String {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(server.otlp_url("/v1/traces"))
        .build()
        .expect("span exporter");
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("sdk-test");
    let trace_id = tracer.in_span("checkout", |cx| {
        let span = cx.span();
        span.set_attribute(KeyValue::new("cart.items", 3));
        span.add_event("validated", vec![KeyValue::new("ok", true)]);
        tracer.in_span("charge-card", |cx| {
            cx.span().set_status(Status::error("card declined"));
        });
        span.span_context().trace_id().to_string()
    });
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");
    trace_id
}

#[test]
fn sdk_traces_over_http_protobuf_and_json() {
    let server = Server::start(2);
    for (protocol, service) in [
        (Protocol::HttpBinary, "sdk-proto"),
        (Protocol::HttpJson, "sdk-json"),
    ] {
        let trace_id = export_with(&server, protocol, service);
        let json = server.get_json(&format!("/api/v1/traces/{trace_id}"));
        let rs = &json["resourceSpans"][0];
        let service_attr = rs["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "service.name")
            .unwrap();
        assert_eq!(service_attr["value"]["stringValue"], service);
        let spans: Vec<&serde_json::Value> = json["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["scopeSpans"].as_array().unwrap())
            .flat_map(|s| s["spans"].as_array().unwrap())
            .collect();
        assert_eq!(spans.len(), 2);
        let parent = spans.iter().find(|s| s["name"] == "checkout").unwrap();
        let child = spans.iter().find(|s| s["name"] == "charge-card").unwrap();
        assert_eq!(child["parentSpanId"], parent["spanId"]);
        assert_eq!(child["status"]["code"], 2);
        assert_eq!(child["status"]["message"], "card declined");
        assert_eq!(parent["attributes"][0]["key"], "cart.items");
        assert_eq!(parent["attributes"][0]["value"]["intValue"], "3");
        assert_eq!(parent["events"][0]["name"], "validated");
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["scope"]["name"],
            "sdk-test"
        );

        let found = server.get_json(&format!("/api/v1/traces?service={service}"));
        let t = &found["traces"][0];
        assert_eq!(t["traceId"], trace_id);
        assert_eq!(t["rootSpanName"], "checkout");
        assert_eq!(t["spanCount"], 2);
        assert_eq!(t["errorCount"], 1);
    }
}

#[test]
fn sdk_logs_over_http() {
    let server = Server::start(2);
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(server.otlp_url("/v1/logs"))
        .build()
        .expect("log exporter");
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("sdk-logs").build())
        .build();
    let logger = provider.logger("sdk-test");
    for (i, (sev, text)) in [
        (Severity::Info, "started"),
        (Severity::Warn, "slow disk"),
        (Severity::Error, "crashed"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rec = logger.create_log_record();
        rec.set_severity_number(sev);
        rec.set_severity_text(sev.name());
        rec.set_body(LogValue::from(text.to_owned()));
        rec.set_timestamp(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + i as u64),
        );
        rec.add_attribute("attempt", i as i64);
        logger.emit(rec);
    }
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");

    let json = server.get_json("/api/v1/logs?service=sdk-logs&minSeverity=WARN");
    let recs = json["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        .as_array()
        .unwrap();
    let bodies: Vec<&str> = recs
        .iter()
        .map(|r| r["body"]["stringValue"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["crashed", "slow disk"]);
    assert_eq!(recs[0]["severityText"], "ERROR");
    assert_eq!(recs[0]["timeUnixNano"], "1700000002000000000");
    assert_eq!(recs[0]["attributes"][0]["value"]["intValue"], "2");
}
