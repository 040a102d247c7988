//! Generated payloads: deterministic per seed, valid OTLP in every wire format, and shaped as
//! configured (items, attributes, services, errors, traces spread over requests).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read as _;

use loadgen::payload::{encode, Compression, Generator, Message, PayloadConfig, Signal, Wire};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

const NOW: u64 = 1_764_000_000_000_000_000;

fn bodies(cfg: &PayloadConfig, wire: Wire, c: Compression, seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut g = Generator::new(cfg, wire, c, seed, 0);
    (0..n)
        .map(|i| g.next_batch(NOW + i as u64 * 1_000_000).body.to_vec())
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for signal in [Signal::Traces, Signal::Logs] {
        let cfg = PayloadConfig {
            signal,
            ..PayloadConfig::default()
        };
        for wire in [Wire::Protobuf, Wire::Json, Wire::Grpc] {
            for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
                let a = bodies(&cfg, wire, c, 42, 5);
                let b = bodies(&cfg, wire, c, 42, 5);
                assert_eq!(a, b, "{signal:?} {wire:?} {c:?}");
                let other = bodies(&cfg, wire, c, 43, 5);
                assert_ne!(a, other, "{signal:?} {wire:?} {c:?}");
            }
        }
    }
    // Streams of one seed differ (each worker sends its own traces).
    let cfg = PayloadConfig::default();
    let mut g0 = Generator::new(&cfg, Wire::Protobuf, Compression::None, 1, 0);
    let mut g1 = Generator::new(&cfg, Wire::Protobuf, Compression::None, 1, 1);
    assert_ne!(g0.next_batch(NOW).body, g1.next_batch(NOW).body);
    // Sampling for --verify does not change the payload.
    let sampled = PayloadConfig {
        verify_ratio: 0.5,
        ..PayloadConfig::default()
    };
    assert_eq!(
        bodies(&cfg, Wire::Protobuf, Compression::None, 9, 3),
        bodies(&sampled, Wire::Protobuf, Compression::None, 9, 3)
    );
}

fn all_spans(m: &ExportTraceServiceRequest) -> Vec<(&str, &Span)> {
    let mut out = Vec::new();
    for rs in &m.resource_spans {
        let svc = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .and_then(|a| a.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            })
            .expect("every resource names its service");
        for ss in &rs.scope_spans {
            assert!(!ss.scope.as_ref().unwrap().name.is_empty());
            for s in &ss.spans {
                out.push((svc, s));
            }
        }
    }
    out
}

#[test]
fn traces_decode_as_valid_otlp_with_the_configured_shape() {
    let cfg = PayloadConfig {
        items_per_request: 50,
        spans_per_trace: 8,
        open_traces: 16,
        attrs: 12,
        attr_size: 40,
        services: 5,
        operations: 7,
        error_ratio: 0.2,
        events_per_span: 1.5,
        ..PayloadConfig::default()
    };
    let mut g = Generator::new(&cfg, Wire::Protobuf, Compression::None, 3, 0);
    let mut spans_by_trace: HashMap<Vec<u8>, Vec<Span>> = HashMap::new();
    let mut requests_by_trace: HashMap<Vec<u8>, BTreeSet<usize>> = HashMap::new();
    let mut services = BTreeSet::new();
    let mut names = BTreeSet::new();
    let (mut errors, mut total, mut events) = (0, 0, 0);
    for req in 0..200 {
        let batch = g.next_batch(NOW + req as u64 * 5_000_000);
        assert_eq!(batch.items, 50);
        assert_eq!(batch.raw_bytes, batch.body.len());
        let m = ExportTraceServiceRequest::decode(batch.body.as_ref()).expect("valid protobuf");
        let spans = all_spans(&m);
        assert_eq!(spans.len(), 50);
        for (svc, s) in spans {
            total += 1;
            services.insert(svc.to_owned());
            names.insert(s.name.clone());
            assert_eq!(s.trace_id.len(), 16);
            assert!(s.trace_id.iter().any(|&b| b != 0));
            assert_eq!(s.span_id.len(), 8);
            assert!(s.span_id.iter().any(|&b| b != 0));
            assert!(s.parent_span_id.is_empty() || s.parent_span_id.len() == 8);
            assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
            assert!(s.start_time_unix_nano > NOW - 10_000_000_000);
            assert!((1..=5).contains(&s.kind));
            assert_eq!(s.attributes.len(), 12);
            let keys: BTreeSet<_> = s.attributes.iter().map(|a| &a.key).collect();
            assert_eq!(keys.len(), 12, "attribute keys are distinct");
            for a in &s.attributes {
                if let Some(any_value::Value::StringValue(v)) =
                    a.value.as_ref().and_then(|v| v.value.as_ref())
                {
                    if a.key.starts_with("app.attr_") || a.key == "enduser.id" {
                        assert_eq!(v.len(), 40);
                    }
                }
            }
            for e in &s.events {
                assert!(e.time_unix_nano >= s.start_time_unix_nano);
                assert!(e.time_unix_nano <= s.end_time_unix_nano);
            }
            events += s.events.len();
            if s.status.as_ref().is_some_and(|st| st.code == 2) {
                errors += 1;
                assert!(s.events.iter().any(|e| e.name == "exception"));
            }
            requests_by_trace
                .entry(s.trace_id.clone())
                .or_default()
                .insert(req);
            spans_by_trace
                .entry(s.trace_id.clone())
                .or_default()
                .push(s.clone());
        }
    }
    assert_eq!(services.len(), 5);
    assert!(
        names.len() > 5 && names.len() <= 35,
        "{} names",
        names.len()
    );
    let ratio = errors as f64 / total as f64;
    assert!((0.15..0.25).contains(&ratio), "error ratio {ratio}");
    let per_span = (events - errors) as f64 / total as f64;
    assert!((1.3..1.7).contains(&per_span), "events per span {per_span}");

    // Trees: in every trace, span ids are unique, exactly one root, parents are in the trace
    // (checked on traces whose spans all went out: their root is sent last).
    let mut complete = 0;
    for spans in spans_by_trace.values() {
        let ids: BTreeSet<_> = spans.iter().map(|s| &s.span_id).collect();
        assert_eq!(ids.len(), spans.len(), "span ids unique in a trace");
        let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
        if roots == 1 {
            complete += 1;
            for s in spans {
                if !s.parent_span_id.is_empty() {
                    assert!(ids.contains(&s.parent_span_id), "parent in the trace");
                }
            }
            assert!((4..=12).contains(&spans.len()), "{} spans", spans.len());
        }
    }
    assert!(complete > 1000, "{complete} complete traces");
    // Traces arrive spread over requests.
    let spread = requests_by_trace.values().filter(|r| r.len() >= 2).count();
    assert!(
        spread * 2 > requests_by_trace.len(),
        "{spread} of {} traces in two requests or more",
        requests_by_trace.len()
    );
}

#[test]
fn json_grpc_and_compressed_bodies_decode_to_the_same_message() {
    for signal in [Signal::Traces, Signal::Logs] {
        let cfg = PayloadConfig {
            signal,
            items_per_request: 20,
            ..PayloadConfig::default()
        };
        let mut g = Generator::new(&cfg, Wire::Protobuf, Compression::None, 5, 0);
        let (msg, _) = g.next_message(NOW);
        let decode_proto = |b: &[u8]| match signal {
            Signal::Traces => Message::Traces(ExportTraceServiceRequest::decode(b).unwrap()),
            Signal::Logs => Message::Logs(ExportLogsServiceRequest::decode(b).unwrap()),
        };
        // Protobuf, gzip, zstd.
        let (plain, raw) = encode(&msg, Wire::Protobuf, Compression::None);
        assert_eq!(plain.len(), raw);
        assert_eq!(decode_proto(&plain), msg);
        let (gz, raw_gz) = encode(&msg, Wire::Protobuf, Compression::Gzip);
        assert_eq!(raw_gz, raw);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain);
        let (zs, _) = encode(&msg, Wire::Protobuf, Compression::Zstd);
        assert_eq!(zstd::stream::decode_all(zs.as_slice()).unwrap(), plain);
        // gRPC: one length-prefixed message, compressed flag set with gzip.
        let (framed, _) = encode(&msg, Wire::Grpc, Compression::None);
        assert_eq!(framed[0], 0);
        assert_eq!(
            u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize,
            framed.len() - 5
        );
        assert_eq!(decode_proto(&framed[5..]), msg);
        let (framed_gz, _) = encode(&msg, Wire::Grpc, Compression::Gzip);
        assert_eq!(framed_gz[0], 1);
        assert_eq!(&framed_gz[5..], gz.as_slice());
        // OTLP JSON: hex ids, camelCase, and it reads back to the same message.
        let (json, _) = encode(&msg, Wire::Json, Compression::None);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let back = match signal {
            Signal::Traces => {
                let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
                let id = span["traceId"].as_str().unwrap();
                assert_eq!(id.len(), 32);
                assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
                assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
                assert!(span["startTimeUnixNano"].is_string());
                Message::Traces(serde_json::from_slice(&json).unwrap())
            }
            Signal::Logs => {
                let log = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
                assert!(log["observedTimeUnixNano"].is_string());
                assert!(log["body"]["stringValue"].is_string());
                Message::Logs(serde_json::from_slice(&json).unwrap())
            }
        };
        assert_eq!(back, msg);
    }
}

#[test]
fn logs_have_the_configured_shape() {
    let cfg = PayloadConfig {
        signal: Signal::Logs,
        items_per_request: 100,
        log_body_size: 120,
        log_trace_ratio: 0.7,
        attrs: 3,
        ..PayloadConfig::default()
    };
    let mut g = Generator::new(&cfg, Wire::Protobuf, Compression::None, 11, 0);
    let mut observed = BTreeSet::new();
    let (mut with_trace, mut total) = (0, 0);
    let mut severities: BTreeMap<i32, u32> = BTreeMap::new();
    for i in 0..20 {
        let b = g.next_batch(NOW + i * 1_000_000);
        let m = ExportLogsServiceRequest::decode(b.body.as_ref()).unwrap();
        for rl in &m.resource_logs {
            for sl in &rl.scope_logs {
                for l in &sl.log_records {
                    total += 1;
                    assert!(
                        observed.insert(l.observed_time_unix_nano),
                        "unique observed times"
                    );
                    assert!(l.time_unix_nano > 0 && l.time_unix_nano <= NOW + 20_000_000);
                    *severities.entry(l.severity_number).or_default() += 1;
                    assert_eq!(l.attributes.len(), 3);
                    match l.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => assert_eq!(s.len(), 120),
                        other => panic!("body {other:?}"),
                    }
                    if l.trace_id.is_empty() {
                        assert!(l.span_id.is_empty());
                        assert_eq!(l.flags, 0);
                    } else {
                        with_trace += 1;
                        assert_eq!((l.trace_id.len(), l.span_id.len(), l.flags), (16, 8, 1));
                    }
                }
            }
        }
    }
    assert_eq!(total, 2000);
    let ratio = with_trace as f64 / total as f64;
    assert!((0.65..0.75).contains(&ratio), "trace ratio {ratio}");
    assert!(severities.contains_key(&9) && severities.contains_key(&13));
}
