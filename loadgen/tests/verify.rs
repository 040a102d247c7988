//! `--verify`: the comparison finds a missing and a modified span (and log record), tolerates
//! what it must (items of failed exports, other JSON spellings), and works over HTTP against
//! canned query answers.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{spawn, Reply};
use loadgen::payload::{Compression, Generator, PayloadConfig, Sample, Signal, Wire};
use loadgen::run::SentSample;
use loadgen::transport::Outcome;
use loadgen::verify::{check_logs, check_spans, expected_from, verify, Expected};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogsData, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, TracesData};
use serde_json::Value;

const NOW: u64 = 1_764_000_000_000_000_000;

/// Every item of a few requests, all sampled, sent with `outcome`.
fn sent(signal: Signal, outcome: Outcome) -> Vec<SentSample> {
    let cfg = PayloadConfig {
        signal,
        items_per_request: 30,
        spans_per_trace: 6,
        open_traces: 4,
        events_per_span: 1.0,
        error_ratio: 0.2,
        verify_ratio: 1.0,
        ..PayloadConfig::default()
    };
    let mut g = Generator::new(&cfg, Wire::Protobuf, Compression::None, 17, 0);
    (0..4)
        .map(|i| SentSample {
            samples: g.next_batch(NOW + i * 1_000_000).samples,
            outcome,
            rejected: 0,
        })
        .collect()
}

/// What a faithful query API answers for `trace_id`: the sampled spans as OTLP JSON.
fn traces_answer(sent: &[SentSample], trace_id: &str) -> Value {
    let mut rs = Vec::new();
    for s in sent.iter().flat_map(|s| &s.samples) {
        if let Sample::Span { service, span } = s {
            if hex::encode(&span.trace_id) == trace_id {
                rs.push(ResourceSpans {
                    resource: Some(service.resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(service.scope.clone()),
                        spans: vec![span.clone()],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                });
            }
        }
    }
    serde_json::to_value(TracesData { resource_spans: rs }).unwrap()
}

fn logs_answer(sent: &[SentSample], trace_id: &str) -> Value {
    let mut rl = Vec::new();
    for s in sent.iter().flat_map(|s| &s.samples) {
        if let Sample::Log { service, log } = s {
            if hex::encode(&log.trace_id) == trace_id {
                rl.push(ResourceLogs {
                    resource: Some(service.resource.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(service.scope.clone()),
                        log_records: vec![log.clone()],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                });
            }
        }
    }
    serde_json::to_value(LogsData { resource_logs: rl }).unwrap()
}

fn spans_mut(doc: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    for rs in doc["resourceSpans"].as_array_mut().unwrap() {
        for ss in rs["scopeSpans"].as_array_mut().unwrap() {
            for s in ss["spans"].as_array_mut().unwrap() {
                out.push(s);
            }
        }
    }
    out
}

/// The trace with the most spans.
fn biggest(expected: &Expected) -> String {
    expected
        .iter()
        .max_by_key(|(_, e)| e.spans.len().max(e.logs.len()))
        .unwrap()
        .0
        .clone()
}

#[test]
fn a_faithful_answer_passes() {
    let sent = sent(Signal::Traces, Outcome::Ok);
    let expected = expected_from(&sent);
    assert!(expected.len() >= 4);
    for (id, e) in &expected {
        let mut problems = Vec::new();
        let t = check_spans(id, &e.spans, Some(&traces_answer(&sent, id)), &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(t.required, e.spans.len() as u64);
        assert_eq!(t.found, t.required);
        assert_eq!(
            (t.missing, t.different, t.unexpected, t.duplicated),
            (0, 0, 0, 0)
        );
    }
}

#[test]
fn a_missing_and_a_modified_span_are_found() {
    let sent = sent(Signal::Traces, Outcome::Ok);
    let expected = expected_from(&sent);
    let id = biggest(&expected);
    let exp = &expected[&id].spans;
    assert!(exp.len() >= 3);

    // Drop one span and change one attribute value of another.
    let mut doc = traces_answer(&sent, &id);
    doc["resourceSpans"].as_array_mut().unwrap().remove(0);
    let mut spans = spans_mut(&mut doc);
    let victim = spans[0]["spanId"].as_str().unwrap().to_owned();
    spans[0]["attributes"][0]["value"] = serde_json::json!({"stringValue": "changed"});

    let mut problems = Vec::new();
    let t = check_spans(&id, exp, Some(&doc), &mut problems).unwrap();
    assert_eq!(t.missing, 1, "{problems:?}");
    assert_eq!(t.different, 1, "{problems:?}");
    assert_eq!(t.found, exp.len() as u64 - 2);
    assert!(problems.iter().any(|p| p.contains("missing")));
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&victim) && p.contains("attributes")),
        "{problems:?}"
    );

    // A changed end time, a changed resource, a wrong status: each is a difference.
    for (path, value) in [
        ("endTimeUnixNano", serde_json::json!("1")),
        ("name", serde_json::json!("other")),
        ("status", serde_json::json!({"code": 1})),
    ] {
        let mut doc = traces_answer(&sent, &id);
        spans_mut(&mut doc)[1][path] = value;
        let mut problems = Vec::new();
        let t = check_spans(&id, exp, Some(&doc), &mut problems).unwrap();
        assert_eq!((t.missing, t.different), (0, 1), "{path}: {problems:?}");
    }
    let mut doc = traces_answer(&sent, &id);
    doc["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"] =
        serde_json::json!("elsewhere");
    let t = check_spans(&id, exp, Some(&doc), &mut Vec::new()).unwrap();
    assert_eq!(t.different, 1);

    // Unknown trace (404): everything is missing.
    let t = check_spans(&id, exp, None, &mut Vec::new()).unwrap();
    assert_eq!(t.missing, exp.len() as u64);

    // A span never sent, and a duplicate.
    let mut doc = traces_answer(&sent, &id);
    let extra = {
        let mut s = spans_mut(&mut doc)[0].clone();
        s["spanId"] = serde_json::json!("0102030405060708");
        s
    };
    let dup = spans_mut(&mut doc)[1].clone();
    let arr = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array_mut()
        .unwrap();
    arr.push(extra);
    arr.push(dup);
    let t = check_spans(&id, exp, Some(&doc), &mut Vec::new()).unwrap();
    assert_eq!(
        (t.missing, t.different, t.unexpected, t.duplicated),
        (0, 0, 1, 1)
    );
}

#[test]
fn items_of_failed_exports_are_not_required_but_must_be_equal_when_there() {
    let sent = sent(Signal::Traces, Outcome::Unavailable);
    let expected = expected_from(&sent);
    let id = biggest(&expected);
    let exp = &expected[&id].spans;
    let t = check_spans(&id, exp, None, &mut Vec::new()).unwrap();
    assert_eq!((t.required, t.missing), (0, 0));
    assert_eq!(t.not_required, exp.len() as u64);
    let mut doc = traces_answer(&sent, &id);
    spans_mut(&mut doc)[0]["name"] = serde_json::json!("changed");
    let t = check_spans(&id, exp, Some(&doc), &mut Vec::new()).unwrap();
    assert_eq!(t.different, 1);
}

#[test]
fn other_faithful_json_spellings_compare_equal() {
    // Enums by name, 64-bit integers as numbers, upper-case hex, defaults written out or not.
    let sent = sent(Signal::Traces, Outcome::Ok);
    let expected = expected_from(&sent);
    let id = biggest(&expected);
    let mut doc = traces_answer(&sent, &id);
    for s in spans_mut(&mut doc) {
        let kind = s["kind"].as_i64().unwrap_or(0);
        s["kind"] = serde_json::json!(
            [
                "SPAN_KIND_UNSPECIFIED",
                "SPAN_KIND_INTERNAL",
                "SPAN_KIND_SERVER",
                "SPAN_KIND_CLIENT"
            ][kind as usize]
        );
        let start: u64 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        s["startTimeUnixNano"] = serde_json::json!(start);
        let sid = s["spanId"].as_str().unwrap().to_ascii_uppercase();
        s["spanId"] = serde_json::json!(sid);
        s["droppedEventsCount"] = serde_json::json!(0);
        if let Some(attrs) = s["attributes"].as_array_mut() {
            attrs.reverse(); // order of attributes is not meaningful
            for a in attrs {
                if let Some(i) = a["value"].get("intValue").cloned() {
                    let n: i64 = i
                        .as_str()
                        .map_or_else(|| i.as_i64().unwrap(), |t| t.parse().unwrap());
                    a["value"] = serde_json::json!({ "intValue": n });
                }
            }
        }
    }
    let mut problems = Vec::new();
    let t = check_spans(&id, &expected[&id].spans, Some(&doc), &mut problems).unwrap();
    assert_eq!((t.missing, t.different), (0, 0), "{problems:?}");
}

#[test]
fn a_missing_and_a_modified_log_record_are_found() {
    let sent = sent(Signal::Logs, Outcome::Ok);
    let expected = expected_from(&sent);
    let id = biggest(&expected);
    let exp = &expected[&id].logs;
    assert!(exp.len() >= 3, "{}", exp.len());
    let doc = logs_answer(&sent, &id);
    let t = check_logs(&id, exp, &doc, &mut Vec::new()).unwrap();
    assert_eq!((t.found, t.missing, t.different), (exp.len() as u64, 0, 0));

    let mut doc = logs_answer(&sent, &id);
    doc["resourceLogs"].as_array_mut().unwrap().remove(0);
    doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"] =
        serde_json::json!({"stringValue": "edited"});
    let mut problems = Vec::new();
    let t = check_logs(&id, exp, &doc, &mut problems).unwrap();
    assert_eq!((t.missing, t.different), (1, 1), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("body")), "{problems:?}");
}

#[test]
fn verify_over_http_against_canned_query_answers() {
    let sent = sent(Signal::Traces, Outcome::Ok);
    let expected = expected_from(&sent);
    let ids: Vec<String> = expected.keys().cloned().collect();
    // The server answers every trace faithfully except: the first is unknown (404), the second
    // has one span changed.
    let mut answers: BTreeMap<String, (u16, String)> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let mut doc = traces_answer(&sent, id);
        if i == 1 {
            spans_mut(&mut doc)[0]["name"] = serde_json::json!("renamed");
        }
        let status = if i == 0 { 404 } else { 200 };
        answers.insert(format!("/api/v1/traces/{id}"), (status, doc.to_string()));
    }
    let answers = Arc::new(answers);
    let server = spawn(Arc::new(move |r| match answers.get(&r.path) {
        Some((status, body)) => Reply::json(*status, body.clone()),
        None => Reply::json(400, "{}"),
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(verify(
        &expected,
        server.addr,
        &server.addr.to_string(),
        1000,
        Duration::from_secs(5),
    ));
    assert_eq!(report.traces_checked, ids.len() as u64);
    assert_eq!(report.spans.missing, expected[&ids[0]].spans.len() as u64);
    assert_eq!(report.spans.different, 1);
    assert_eq!(report.query_errors, 0);
    assert!(!report.passed());
    let text = report.render();
    assert!(text.contains("FAILED") && !text.contains("renamed"));
    assert!(text.contains(&format!("trace {}", ids[1])), "{text}");
}

#[test]
fn any_value_kinds_compare() {
    // Bytes, arrays, kvlists and doubles survive the canonical form.
    let sent = sent(Signal::Traces, Outcome::Ok);
    let mut sent2 = sent.clone();
    for s in sent2.iter_mut().flat_map(|s| s.samples.iter_mut()) {
        if let Sample::Span { span, .. } = s {
            span.attributes[0].value = Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(any_value::Value::BytesValue(vec![0, 1, 255])),
                            },
                            AnyValue {
                                value: Some(any_value::Value::DoubleValue(0.1)),
                            },
                        ],
                    },
                )),
            });
        }
    }
    let expected = expected_from(&sent2);
    let id = biggest(&expected);
    let doc = traces_answer(&sent2, &id);
    let mut problems = Vec::new();
    let t = check_spans(&id, &expected[&id].spans, Some(&doc), &mut problems).unwrap();
    assert_eq!((t.missing, t.different), (0, 0), "{problems:?}");
    // The original (string) values differ from these.
    let doc = traces_answer(&sent, &id);
    let t = check_spans(&id, &expected[&id].spans, Some(&doc), &mut Vec::new()).unwrap();
    assert_eq!(t.different, expected[&id].spans.len() as u64);
}
