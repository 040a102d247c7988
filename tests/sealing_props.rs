//! Property test over random stores: a store whose full segments are sealed answers every
//! query as the same store kept raw does (trace by id, trace and log searches with each
//! filter, services), and still does after a kill -9 and a restart from its sidecars; and
//! every trace search's answer is the one a brute-force scan of the spans sent gives.
//!
//! Two servers take the same requests in the same order: one with segments too large to
//! fill (everything stays raw, with its in-memory index), one with the smallest segments
//! (everything but the head is sealed before the queries run). Traces are spread over many
//! requests, so a trace's spans lie in several segments, some sealed and some raw.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value;

const BASE: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;
const TRACES: u8 = 48;
const SERVICES: u8 = 3;
const NAMES: u8 = 4;
const USERS: u8 = 5;
const WORDS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "omega"];
const SEVERITIES: [i32; 6] = [1, 5, 9, 13, 17, 21];
/// Filler that makes a record the size of a real one, so that a few hundred fill segments.
const PAD: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\
                   0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

#[derive(Debug, Clone)]
struct SpanSpec {
    trace: u8,
    service: u8,
    name: u8,
    /// Coarse times, so that starts and durations tie now and then.
    start_ms: u16,
    duration_ms: u16,
    error: bool,
    code: u8,
    user: u8,
}

#[derive(Debug, Clone)]
struct LogSpec {
    service: u8,
    severity: usize,
    words: (usize, usize),
    time_ms: u16,
    trace: Option<u8>,
}

#[derive(Debug, Clone)]
enum Request {
    Traces(Vec<SpanSpec>),
    Logs(Vec<LogSpec>),
}

fn span_spec() -> impl Strategy<Value = SpanSpec> {
    (
        (0..TRACES, 0..SERVICES, 0..NAMES),
        (0u16..3000, 0u16..400, prop::bool::weighted(0.1)),
        (0u8..3, 0..USERS),
    )
        .prop_map(
            |((trace, service, name), (start_ms, duration_ms, error), (code, user))| SpanSpec {
                trace,
                service,
                name,
                start_ms,
                duration_ms,
                error,
                code,
                user,
            },
        )
}

fn log_spec() -> impl Strategy<Value = LogSpec> {
    (
        0..SERVICES,
        0..SEVERITIES.len(),
        (0..WORDS.len(), 0..WORDS.len()),
        0u16..3000,
        proptest::option::weighted(0.5, 0..TRACES),
    )
        .prop_map(|(service, severity, words, time_ms, trace)| LogSpec {
            service,
            severity,
            words,
            time_ms,
            trace,
        })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        3 => vec(span_spec(), 10..40).prop_map(Request::Traces),
        2 => vec(log_spec(), 10..40).prop_map(Request::Logs),
    ]
}

fn service(n: u8) -> String {
    format!("svc-{n}")
}

fn val(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

/// The request's spans as OTLP, a resource per service; span ids from `next_span` on, and
/// a trace's first span ever sent is its root (its later spans are children of it).
fn traces_of(
    specs: &[SpanSpec],
    next_span: &mut u64,
    roots: &mut [Option<u64>],
) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES as usize];
    for sp in specs {
        *next_span += 1;
        let id = *next_span;
        let parent = match roots[sp.trace as usize] {
            Some(root) => span_id(root),
            None => {
                roots[sp.trace as usize] = Some(id);
                Vec::new()
            }
        };
        let start = BASE + sp.start_ms as u64 * MS;
        by_service[sp.service as usize].push(Span {
            trace_id: trace_id(sp.trace as u64),
            span_id: span_id(id),
            parent_span_id: parent,
            name: format!("op-{}", sp.name),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + sp.duration_ms as u64 * MS,
            attributes: vec![
                kv(
                    "http.response.status_code",
                    any_value::Value::IntValue([200, 404, 500][sp.code as usize]),
                ),
                kv("user", s(&format!("u{}", sp.user))),
                kv("cached", any_value::Value::BoolValue(sp.user % 2 == 0)),
                kv("pad", s(PAD)),
            ],
            status: Some(Status {
                message: if sp.error {
                    "failed".into()
                } else {
                    String::new()
                },
                code: if sp.error { 2 } else { 0 },
            }),
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(svc, spans)| ResourceSpans {
                resource: Some(resource(&service(svc as u8))),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn logs_of(specs: &[LogSpec]) -> ExportLogsServiceRequest {
    let mut by_service: Vec<Vec<LogRecord>> = vec![Vec::new(); SERVICES as usize];
    for l in specs {
        let time = BASE + l.time_ms as u64 * MS;
        by_service[l.service as usize].push(LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time + 5,
            severity_number: SEVERITIES[l.severity],
            body: val(s(&format!(
                "{} {} request handled",
                WORDS[l.words.0], WORDS[l.words.1]
            ))),
            attributes: vec![kv("pad", s(PAD))],
            trace_id: l.trace.map(|t| trace_id(t as u64)).unwrap_or_default(),
            span_id: l.trace.map(|t| span_id(t as u64 + 1)).unwrap_or_default(),
            ..Default::default()
        });
    }
    ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, logs)| !logs.is_empty())
            .map(|(svc, log_records)| ResourceLogs {
                resource: Some(resource(&service(svc as u8))),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// The queries asked of both stores.
fn trace_searches() -> Vec<String> {
    let mut q = vec![
        "limit=1000".to_owned(),
        "limit=5".to_owned(),
        "limit=1".to_owned(),
    ];
    for s in 0..SERVICES {
        q.push(format!("service={}&limit=1000", service(s)));
        q.push(format!("service={}&limit=3", service(s)));
    }
    for n in 0..NAMES {
        q.push(format!("name=op-{n}&limit=1000"));
    }
    q.push("name=op-1&service=svc-2&limit=1000".into());
    q.push("name=nothing&limit=1000".into());
    q.push("minDuration=300ms&limit=1000".into());
    q.push("maxDuration=20ms&limit=1000".into());
    q.push("minDuration=100ms&maxDuration=200ms&limit=4".into());
    let (from, to) = (BASE + 500 * MS, BASE + 1500 * MS);
    q.push(format!("start={from}&end={to}&limit=1000"));
    q.push(format!("start={from}&end={to}&limit=2"));
    q.push("attr=http.response.status_code=500&limit=1000".into());
    q.push("attr=http.response.status_code=500&limit=3".into());
    q.push("attr=user=u3&limit=1000".into());
    q.push("attr=cached=true&service=svc-0&limit=1000".into());
    q.push("attr=service.name=svc-1&limit=1000".into());
    q.push("attr=user=u1&attr=http.response.status_code=404&limit=1000".into());
    q.push("error=true&limit=1000".into());
    q.push("error=true&limit=2".into());
    q.push("error=false&service=svc-1&limit=1000".into());
    q.push("error=true&attr=user=u2&limit=1000".into());
    q
}

fn log_searches() -> Vec<String> {
    let mut q = vec!["limit=1000".to_owned(), "limit=7".to_owned()];
    for s in 0..SERVICES {
        q.push(format!("service={}&limit=1000", service(s)));
    }
    q.push("minSeverity=WARN&limit=1000".into());
    q.push("minSeverity=ERROR&limit=5".into());
    q.push("contains=gamma&limit=1000".into());
    q.push("contains=omega%20request&limit=1000".into());
    q.push("contains=nowhere&limit=1000".into());
    q.push("contains=beta&service=svc-1&minSeverity=INFO&limit=1000".into());
    for t in [0u64, 7, 21] {
        q.push(format!("traceId={}&limit=1000", hex(&trace_id(t))));
    }
    let (from, to) = (BASE + 1000 * MS, BASE + 2000 * MS);
    q.push(format!("start={from}&end={to}&limit=1000"));
    q.push(format!("start={from}&end={to}&limit=3&contains=alpha"));
    q
}

/// An OTLP JSON document's items as (resource, scope, item) texts, sorted: the same records
/// in whatever grouping and order.
fn items(doc: &Value, resources: &str, scopes: &str, list: &str) -> Vec<String> {
    let mut out = Vec::new();
    for r in doc[resources].as_array().into_iter().flatten() {
        for sc in r[scopes].as_array().into_iter().flatten() {
            for item in sc[list].as_array().into_iter().flatten() {
                out.push(format!("{} {} {}", r["resource"], sc["scope"], item));
            }
        }
    }
    out.sort();
    out
}

/// A log answer's records; where `limit` records came back, the newest `limit` may be any
/// of those tied at the oldest time kept, so those are compared by their time alone.
fn log_answer(doc: &Value, limit: usize) -> (Vec<String>, Vec<u64>) {
    let all = items(doc, "resourceLogs", "scopeLogs", "logRecords");
    let time_of = |item: &String| -> u64 {
        let v: Value = serde_json::from_str(&item[item.rfind(" {").unwrap() + 1..]).unwrap();
        v["timeUnixNano"].as_str().unwrap().parse().unwrap()
    };
    let mut times: Vec<u64> = all.iter().map(time_of).collect();
    times.sort_unstable();
    if all.len() < limit {
        return (all, times);
    }
    let oldest = times.first().copied().unwrap_or(0);
    (
        all.into_iter().filter(|i| time_of(i) > oldest).collect(),
        times,
    )
}

/// The trace ids (hex) a trace search `q` must answer, newest first, by brute force over
/// every span sent: a trace matches when one of its spans matches every filter, and starts
/// at its earliest span.
fn brute_force(q: &str, spans: &[SpanSpec]) -> Vec<String> {
    let (mut in_service, mut name, mut min, mut max, mut from, mut to) =
        (None, None, None, None, None, None);
    let mut error: Option<bool> = None;
    let mut attrs: Vec<(&str, &str)> = Vec::new();
    let ms = |v: &str| v.strip_suffix("ms").unwrap().parse::<u64>().unwrap() * MS;
    for kv in q.split('&') {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "service" => in_service = Some(v.to_owned()),
            "name" => name = Some(v.to_owned()),
            "minDuration" => min = Some(ms(v)),
            "maxDuration" => max = Some(ms(v)),
            "start" => from = Some(v.parse::<u64>().unwrap()),
            "end" => to = Some(v.parse::<u64>().unwrap()),
            "attr" => attrs.push(v.split_once('=').unwrap()),
            "error" => error = Some(v.parse().unwrap()),
            "limit" => {}
            other => panic!("the model does not know {other}"),
        }
    }
    let service_of = |sp: &SpanSpec| service(sp.service);
    let text_of = |sp: &SpanSpec, key: &str| -> Option<String> {
        Some(match key {
            "http.response.status_code" => [200, 404, 500][sp.code as usize].to_string(),
            "user" => format!("u{}", sp.user),
            "cached" => (sp.user % 2 == 0).to_string(),
            "pad" => PAD.to_owned(),
            "service.name" => service_of(sp),
            "host.name" => "box-1".to_owned(),
            _ => return None,
        })
    };
    let matches = |sp: &SpanSpec| {
        let start = BASE + sp.start_ms as u64 * MS;
        let duration = sp.duration_ms as u64 * MS;
        error.is_none_or(|e| e == sp.error)
            && in_service.as_ref().is_none_or(|w| *w == service_of(sp))
            && name
                .as_ref()
                .is_none_or(|w| *w == format!("op-{}", sp.name))
            && min.is_none_or(|d| duration >= d)
            && max.is_none_or(|d| duration <= d)
            && from.is_none_or(|t| start >= t)
            && to.is_none_or(|t| start <= t)
            && attrs
                .iter()
                .all(|(k, v)| text_of(sp, k).is_some_and(|t| t == *v))
    };
    let mut traces: Vec<(u64, String)> = (0..TRACES)
        .filter(|&t| spans.iter().any(|sp| sp.trace == t && matches(sp)))
        .map(|t| {
            let start = spans
                .iter()
                .filter(|sp| sp.trace == t)
                .map(|sp| BASE + sp.start_ms as u64 * MS)
                .min()
                .unwrap();
            (start, hex(&trace_id(t as u64)))
        })
        .collect();
    traces.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    traces.truncate(limit_of(q));
    traces.into_iter().map(|(_, id)| id).collect()
}

fn limit_of(q: &str) -> usize {
    q.split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .map_or(20, |l| l.parse().unwrap())
}

/// Every query's answer, made comparable.
fn answers(server: &Server, trace_ids: &BTreeSet<u8>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in trace_ids.iter().map(|&t| t as u64).chain([999]) {
        let path = format!("/api/v1/traces/{}", hex(&trace_id(t)));
        let r = server.get(&path);
        let answer = match r.status {
            200 => {
                let doc: Value = serde_json::from_slice(&r.body).unwrap();
                format!("{:?}", items(&doc, "resourceSpans", "scopeSpans", "spans"))
            }
            status => status.to_string(),
        };
        out.push((path, answer));
    }
    for q in trace_searches() {
        let path = format!("/api/v1/traces?{q}");
        let traces = server.get_json(&path)["traces"].clone();
        let lines: Vec<String> = traces
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        out.push((path, lines.join("\n")));
    }
    for q in log_searches() {
        let path = format!("/api/v1/logs?{q}");
        let answer = log_answer(&server.get_json(&path), limit_of(&q));
        out.push((path, format!("{answer:?}")));
    }
    out.push((
        "/api/v1/services".into(),
        server.get_json("/api/v1/services").to_string(),
    ));
    out
}

fn metric_of(server: &Server, name: &str) -> f64 {
    metric(&server.get("/metrics").text(), name)
}

/// Waits until every full segment is sealed: the head alone stays raw.
fn sealed_all_but_head(server: &Server) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_of(server, "glust_segments") > 1.0 {
        assert!(Instant::now() < deadline, "segments not sealed in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    metric_of(server, "glust_sealed_segments")
}

fn assert_same(raw: &[(String, String)], sealed: &[(String, String)], when: &str) {
    assert_eq!(raw.len(), sealed.len());
    for ((query, a), (_, b)) in raw.iter().zip(sealed) {
        if a != b {
            let (a, b): (BTreeSet<&str>, BTreeSet<&str>) =
                (a.lines().collect(), b.lines().collect());
            panic!(
                "{when}: GET {query} answers differ\nonly raw: {:?}\nonly sealed: {:?}",
                a.difference(&b).collect::<Vec<_>>(),
                b.difference(&a).collect::<Vec<_>>()
            );
        }
    }
}

proptest! {
    // Each case starts three servers and sends a few hundred kilobytes to two of them.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn sealed_segments_answer_as_the_raw_ones(requests in vec(request(), 30..50)) {
        let raw = Server::start_with(1, &["--segment-bytes", "64M"]);
        let mut sealed = Server::start_with(1, &["--segment-bytes", "64k"]);
        let (mut next_span, mut roots) = (0u64, vec![None; TRACES as usize]);
        let mut trace_ids = BTreeSet::new();
        for r in &requests {
            match r {
                Request::Traces(specs) => {
                    trace_ids.extend(specs.iter().map(|s| s.trace));
                    let req = traces_of(specs, &mut next_span, &mut roots);
                    prop_assert_eq!(raw.post_traces(&req).status, 200);
                    prop_assert_eq!(sealed.post_traces(&req).status, 200);
                }
                Request::Logs(specs) => {
                    let req = logs_of(specs);
                    prop_assert_eq!(raw.post_logs(&req).status, 200);
                    prop_assert_eq!(sealed.post_logs(&req).status, 200);
                }
            }
        }
        prop_assert!(sealed_all_but_head(&sealed) >= 1.0, "nothing sealed");
        prop_assert_eq!(metric_of(&raw, "glust_sealed_segments"), 0.0);
        // The raw store holds what was sent (so that the answers compared are not empty).
        let all = raw.get_json("/api/v1/traces?limit=1000");
        prop_assert_eq!(all["traces"].as_array().unwrap().len(), trace_ids.len());
        let sent_logs: usize = requests
            .iter()
            .map(|r| match r {
                Request::Logs(specs) => specs.len(),
                Request::Traces(_) => 0,
            })
            .sum();
        let logs = raw.get_json("/api/v1/logs?limit=1000");
        prop_assert_eq!(
            items(&logs, "resourceLogs", "scopeLogs", "logRecords").len(),
            sent_logs.min(1000)
        );
        let spans: Vec<SpanSpec> = requests
            .iter()
            .flat_map(|r| match r {
                Request::Traces(specs) => specs.clone(),
                Request::Logs(_) => Vec::new(),
            })
            .collect();
        for q in trace_searches() {
            let answer: Vec<String> = raw.get_json(&format!("/api/v1/traces?{q}"))["traces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["traceId"].as_str().unwrap().to_owned())
                .collect();
            prop_assert_eq!(answer, brute_force(&q, &spans), "GET /api/v1/traces?{}", q);
        }
        let expected = answers(&raw, &trace_ids);
        assert_same(&expected, &answers(&sealed, &trace_ids), "sealed");
        sealed.kill();
        sealed.spawn();
        sealed_all_but_head(&sealed);
        assert_same(&expected, &answers(&sealed, &trace_ids), "after kill -9 and restart");
    }
}
