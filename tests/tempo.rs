//! Grafana's Tempo data source against the real binary: the requests it sends (paths,
//! parameters, headers, as `../shared/reference/CLIENTS.md` records them), and its answers
//! decoded as strictly as the plugin does: protobuf into Tempo's messages, the search JSON
//! into mirror types that refuse unknown fields and a fractional `durationMs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use glust::http::tempo::pb;
use opentelemetry::trace::{Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use prost::Message;
use serde::Deserialize;

/// `tempopb.SearchResponse` as Grafana's `jsonpb.Unmarshal` reads it: unknown fields are an
/// error, `durationMs` a uint32.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, non_snake_case)]
struct SearchResponse {
    traces: Vec<TraceSearchMetadata>,
    metrics: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, non_snake_case)]
struct TraceSearchMetadata {
    traceID: String,
    rootServiceName: Option<String>,
    rootTraceName: Option<String>,
    startTimeUnixNano: String,
    durationMs: Option<u32>,
    spanSet: Option<SpanSet>,
    #[serde(default)]
    spanSets: Vec<SpanSet>,
    #[serde(default)]
    serviceStats: BTreeMap<String, ServiceStats>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, non_snake_case)]
struct SpanSet {
    #[serde(default)]
    spans: Vec<SearchSpan>,
    matched: Option<u32>,
    #[serde(default)]
    attributes: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, non_snake_case)]
struct SearchSpan {
    spanID: String,
    name: Option<String>,
    startTimeUnixNano: String,
    durationNanos: String,
    #[serde(default)]
    attributes: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, non_snake_case)]
struct ServiceStats {
    spanCount: Option<u32>,
    errorCount: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsV2 {
    scopes: Vec<TagScope>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagScope {
    name: String,
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct TagValuesV2 {
    tagValues: Vec<TypedValue>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
struct TypedValue {
    r#type: String,
    value: String,
}

/// What the plugin sends with a search (`pkg/tempo/search.go`).
const JSON: &[(&str, &str)] = &[("Accept", "application/json")];
/// What it sends for a trace (`pkg/tempo/trace.go`).
const PROTOBUF: &[(&str, &str)] = &[("Accept", "application/protobuf")];

fn search(server: &Server, q: &str, extra: &str) -> SearchResponse {
    let path = format!(
        "/tempo/api/search?q={}&limit=1000&spss=3{extra}",
        urlencode(q)
    );
    let r = server.get_with(&path, JSON);
    assert_eq!(r.status, 200, "{q}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{q}: {e}\n{}", r.text()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Exports a trace through the SDK over OTLP/HTTP protobuf: `checkout` (with `cart.items=3`)
/// and its child `charge-card`, whose status is error. Its trace id.
fn export_sdk_trace(server: &Server, service: &str) -> String {
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
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("tempo-test");
    let trace_id = tracer.in_span("checkout", |cx| {
        cx.span().set_attribute(KeyValue::new("cart.items", 3));
        tracer.in_span("charge-card", |cx| {
            cx.span().set_status(Status::error("card declined"));
        });
        cx.span().span_context().trace_id().to_string()
    });
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");
    trace_id
}

fn span_names(trace: &pb::Trace) -> BTreeSet<String> {
    trace
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn grafana_finds_an_sdk_trace_and_shows_it() {
    let server = Server::start(2);
    assert_eq!(server.get("/tempo/api/echo").text(), "echo");
    let id = export_sdk_trace(&server, "tempo-sdk");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let window = format!("&start={}&end={}", now - 3600, now);

    // The Search tab's query, as the plugin sends it.
    let answer = search(&server, r#"{resource.service.name="tempo-sdk"}"#, &window);
    assert_eq!(answer.traces.len(), 1, "{answer:?}");
    let t = &answer.traces[0];
    assert_eq!(t.traceID, id);
    assert_eq!(t.rootServiceName.as_deref(), Some("tempo-sdk"));
    assert_eq!(t.rootTraceName.as_deref(), Some("checkout"));
    assert_eq!(t.serviceStats["tempo-sdk"].spanCount, Some(2));
    assert_eq!(t.serviceStats["tempo-sdk"].errorCount, Some(1));

    // A query that matches the child only carries it as the matched span.
    let answer = search(
        &server,
        r#"{resource.service.name="tempo-sdk" && status=error}"#,
        &window,
    );
    let set = &answer.traces[0].spanSets[0];
    assert_eq!(set.matched, Some(1));
    assert_eq!(set.spans[0].name.as_deref(), Some("charge-card"));
    // Outside the window, nothing.
    let old = format!("&start={}&end={}", now - 7200, now - 3600);
    assert!(search(&server, "{}", &old).traces.is_empty());

    // The trace, as protobuf, by v2 and by the v1 fallback.
    let r = server.get_with(&format!("/tempo/api/v2/traces/{id}"), PROTOBUF);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "application/protobuf");
    let v2 = pb::TraceByIdResponse::decode(r.body.as_slice()).expect("TraceByIDResponse");
    let trace = v2.trace.expect("a trace");
    assert_eq!(
        span_names(&trace),
        BTreeSet::from(["checkout".to_owned(), "charge-card".to_owned()])
    );
    let spans: Vec<_> = trace.resource_spans[0]
        .scope_spans
        .iter()
        .flat_map(|s| &s.spans)
        .collect();
    let checkout = spans.iter().find(|s| s.name == "checkout").unwrap();
    assert!(checkout.attributes.iter().any(|kv| kv.key == "cart.items"));
    let charge = spans.iter().find(|s| s.name == "charge-card").unwrap();
    assert_eq!(charge.parent_span_id, checkout.span_id);
    assert_eq!(charge.status.as_ref().unwrap().message, "card declined");
    let service = &trace.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert!(service.iter().any(|kv| kv.key == "service.name"));

    let r = server.get_with(&format!("/tempo/api/traces/{id}?start=1&end=2"), PROTOBUF);
    assert_eq!(r.status, 200);
    assert_eq!(pb::Trace::decode(r.body.as_slice()).unwrap(), trace);
    // Other Accept values get OTLP JSON.
    let json: serde_json::Value =
        serde_json::from_slice(&server.get(&format!("/tempo/api/v2/traces/{id}")).body).unwrap();
    assert_eq!(
        json["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Unknown: 404 on both, which is what sends the plugin to the fallback and then to "not
    // found"; malformed: 400.
    let unknown = "0123456789abcdef0123456789abcdef";
    for path in ["/tempo/api/v2/traces/", "/tempo/api/traces/"] {
        assert_eq!(
            server
                .get_with(&format!("{path}{unknown}"), PROTOBUF)
                .status,
            404
        );
        assert_eq!(server.get_with(&format!("{path}xyz"), PROTOBUF).status, 400);
    }
}

#[test]
fn a_trace_id_with_leading_zeros_is_found_by_its_short_form() {
    let server = Server::start(1);
    let mut req = traces_request("short", 1, 1, 2);
    let id = {
        let mut id = vec![0u8; 16];
        id[13..].copy_from_slice(&[0xab, 0xcd, 0xef]);
        id
    };
    for s in &mut req.resource_spans[0].scope_spans[0].spans {
        s.trace_id = id.clone();
    }
    assert_eq!(server.post_traces(&req).status, 200);
    for short in ["abcdef", "0abcdef", "00000000000000000000000000abcdef"] {
        let r = server.get_with(&format!("/tempo/api/v2/traces/{short}"), PROTOBUF);
        assert_eq!(r.status, 200, "{short}");
        let trace = pb::TraceByIdResponse::decode(r.body.as_slice())
            .unwrap()
            .trace
            .unwrap();
        assert_eq!(span_names(&trace).len(), 2);
    }
}

#[test]
fn tags_and_values_fill_the_search_tab() {
    let server = Server::start(2);
    for r in 0..4 {
        let req = traces_request(if r % 2 == 0 { "cart" } else { "web" }, r * 100, 100, 3);
        assert_eq!(server.post_traces(&req).status, 200);
    }
    let tags: TagsV2 = serde_json::from_slice(
        &server
            .get_with(
                "/tempo/api/v2/search/tags?limit=5000&start=0&end=4000000000",
                JSON,
            )
            .body,
    )
    .unwrap();
    let scope =
        |name: &str| -> &Vec<String> { &tags.scopes.iter().find(|s| s.name == name).unwrap().tags };
    assert!(
        scope("resource").contains(&"service.name".to_owned()),
        "{tags:?}"
    );
    assert!(scope("resource").contains(&"host.name".to_owned()));
    assert!(scope("span").contains(&"http.response.status_code".to_owned()));
    assert!(scope("intrinsic").contains(&"duration".to_owned()));
    let only: TagsV2 =
        serde_json::from_slice(&server.get("/tempo/api/v2/search/tags?scope=span").body).unwrap();
    assert_eq!(only.scopes.len(), 1);
    assert_eq!(only.scopes[0].name, "span");

    let values = |tag: &str| -> BTreeSet<TypedValue> {
        let r = server.get_with(
            &format!("/tempo/api/v2/search/tag/{tag}/values?q=%7B%7D&limit=100"),
            JSON,
        );
        assert_eq!(r.status, 200, "{tag}: {}", r.text());
        let v: TagValuesV2 = serde_json::from_slice(&r.body).unwrap();
        v.tagValues.into_iter().collect()
    };
    let typed = |t: &str, v: &str| TypedValue {
        r#type: t.into(),
        value: v.into(),
    };
    assert_eq!(
        values("resource.service.name"),
        BTreeSet::from([typed("string", "cart"), typed("string", "web")])
    );
    assert!(values("span.http.response.status_code").contains(&typed("int", "201")));
    assert!(values(".http.response.status_code").contains(&typed("int", "200")));
    assert!(values("status").contains(&typed("keyword", "error")));
    assert!(values("kind").contains(&typed("keyword", "server")));
    assert_eq!(
        values("name"),
        ["op-0", "op-1", "op-2"].map(|n| typed("string", n)).into()
    );
    assert_eq!(
        values("rootServiceName"),
        BTreeSet::from([typed("string", "cart"), typed("string", "web")])
    );

    // The v1 forms.
    let v1 = server.get_json("/tempo/api/search/tags");
    let names: Vec<&str> = v1["tagNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(names.contains(&"service.name") && names.contains(&"name"));
    let v1 = server.get_json("/tempo/api/search/tag/service.name/values");
    assert_eq!(v1["tagValues"], serde_json::json!(["cart", "web"]));
}

/// The trace numbers of a search's answer.
fn traces_of(server: &Server, q: &str) -> BTreeSet<u64> {
    search(server, q, "")
        .traces
        .iter()
        .map(|t| u64::from_str_radix(&t.traceID[16..], 16).unwrap())
        .collect()
}

#[test]
fn traceql_finds_the_same_traces_in_the_head_and_in_sealed_segments() {
    let server = Server::start(1);
    // Traces 0..600 of alpha, then 600..1200 of beta, 3 spans each: op-0 the root (status
    // unset, status code 200), op-1 (error, 201), op-2 (unset, 202); all server spans of
    // about 5 ms, on resources with host.name=box-1.
    for r in 0..12 {
        let service = if r < 6 { "alpha" } else { "beta" };
        let req = traces_request(service, r * 100, 100, 3);
        assert_eq!(server.post_traces(&req).status, 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(
        &server.get("/metrics").text(),
        "glust_segments_sealed_total",
    ) < 2.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not sealed\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sealed = metric(&server.get("/metrics").text(), "glust_sealed_spans");
    assert!(
        sealed > 0.0 && sealed < 3600.0,
        "some sealed, some in the head: {sealed}"
    );

    let alpha: BTreeSet<u64> = (0..600).collect();
    let beta: BTreeSet<u64> = (600..1200).collect();
    let none = BTreeSet::new();
    let newest: BTreeSet<u64> = (200..1200).collect(); // limit=1000
    for (q, want) in [
        (
            r#"{resource.service.name="alpha" && span.http.response.status_code=201}"#,
            &alpha,
        ),
        // Typed: an int attribute is not the string.
        (r#"{span.http.response.status_code="201"}"#, &none),
        (r#"{name="op-1" || name="op-9"}"#, &newest),
        (r#"{resource.service.name=~"be.*" && status=error}"#, &beta),
        (
            r#"{resource.service.name!="alpha" && name="op-2" && status=error}"#,
            &none,
        ),
        (
            r#"{rootName="op-0" && resource.service.name="beta"}"#,
            &beta,
        ),
        (r#"{rootName="op-1"}"#, &none),
        (r#"{traceDuration>1s}"#, &none),
        (r#"{traceDuration<1s && rootServiceName="alpha"}"#, &alpha),
        (
            r#"{span.http.response.status_code>=202 && kind=server && .host.name="box-1"}"#,
            &newest,
        ),
        (r#"{span.host.name="box-1"}"#, &none),
        (
            r#"{(name="op-0" && status=error) || (resource.service.name="alpha" && span.http.response.status_code=200)}"#,
            &alpha,
        ),
        (
            r#"{duration>=5ms && duration<6ms && resource.service.name="beta"}"#,
            &beta,
        ),
        (
            r#"{statusMessage="failed" && resource.service.name="alpha"}"#,
            &alpha,
        ),
    ] {
        assert_eq!(&traces_of(&server, q), want, "{q}");
    }

    // What is outside the subset is a 400 that says so.
    for (q, says) in [
        ("{name=\"a\"} | count() > 1", "pipelines"),
        ("{name=\"a\"} && {name=\"b\"}", "one spanset"),
        ("{event.name=\"a\"}", "scope event"),
    ] {
        let r = server.get_with(&format!("/tempo/api/search?q={}", urlencode(q)), JSON);
        assert_eq!(r.status, 400, "{q}");
        assert!(r.text().contains(says), "{q}: {}", r.text());
    }
}
