//! Property tests of the protobuf decoder: it agrees with prost on generated requests, and
//! never panics on arbitrary or mutated bodies; its fast path for attributes agrees with its
//! general one.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z][a-z._]{0,15}", ".{0,6}"]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[ -~]{0,16}", ".{0,8}"]
}

fn value_strategy() -> impl Strategy<Value = pc::AnyValue> {
    use pc::any_value::Value as V;
    let leaf = prop_oneof![
        Just(None),
        text().prop_map(|s| Some(V::StringValue(s))),
        any::<bool>().prop_map(|b| Some(V::BoolValue(b))),
        any::<i64>().prop_map(|i| Some(V::IntValue(i))),
        any::<f64>().prop_map(|d| Some(V::DoubleValue(d))),
        vec(any::<u8>(), 0..12).prop_map(|b| Some(V::BytesValue(b))),
        any::<i32>().prop_map(|i| Some(V::StringValueStrindex(i))),
    ]
    .prop_map(|value| pc::AnyValue { value });
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4)
                .prop_map(|values| Some(V::ArrayValue(pc::ArrayValue { values }))),
            vec((key_strategy(), proptest::option::of(inner)), 0..4).prop_map(|kvs| {
                let values = kvs
                    .into_iter()
                    .map(|(key, value)| pc::KeyValue {
                        key,
                        value,
                        key_strindex: 0,
                    })
                    .collect();
                Some(V::KvlistValue(pc::KeyValueList { values }))
            }),
        ]
        .prop_map(|value| pc::AnyValue { value })
    })
}

fn attrs() -> impl Strategy<Value = Vec<pc::KeyValue>> {
    vec(
        (key_strategy(), proptest::option::of(value_strategy())),
        0..5,
    )
    .prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, value)| pc::KeyValue {
                key,
                value,
                key_strindex: 0,
            })
            .collect()
    })
}

/// Mostly valid ids of `len` bytes, sometimes empty, zero or of a wrong length.
fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => vec(any::<u8>(), len),
        1 => Just(Vec::new()),
        1 => Just(vec![0; len]),
        1 => vec(any::<u8>(), 0..20),
    ]
}

fn events() -> impl Strategy<Value = Vec<pt::span::Event>> {
    let event =
        (any::<u64>(), text(), attrs(), any::<u32>()).prop_map(|(t, name, attributes, d)| {
            pt::span::Event {
                time_unix_nano: t,
                name,
                attributes,
                dropped_attributes_count: d,
            }
        });
    vec(event, 0..3)
}

fn links() -> impl Strategy<Value = Vec<pt::span::Link>> {
    let link = (id(16), id(8), text(), attrs(), any::<u32>(), any::<u32>()).prop_map(
        |(trace_id, span_id, trace_state, attributes, d, flags)| pt::span::Link {
            trace_id,
            span_id,
            trace_state,
            attributes,
            dropped_attributes_count: d,
            flags,
        },
    );
    prop_oneof![3 => Just(Vec::new()), 1 => vec(link, 1..3)]
}

fn span_strategy() -> impl Strategy<Value = pt::Span> {
    let ids = (id(16), id(8), prop_oneof![Just(Vec::new()), id(8)]);
    let times = (
        any::<u64>(),
        prop_oneof![9 => 0..1_000_000_000u64, 1 => any::<u64>()],
    );
    let status = proptest::option::of(
        (text(), any::<i32>()).prop_map(|(message, code)| pt::Status { message, code }),
    );
    let counts = (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<i32>(),
    );
    (
        ids,
        times,
        text(),
        text(),
        attrs(),
        events(),
        links(),
        status,
        counts,
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id),
                (start, dur),
                name,
                trace_state,
                attributes,
                events,
                links,
                status,
                counts,
            )| {
                let (
                    dropped_attributes_count,
                    dropped_events_count,
                    dropped_links_count,
                    flags,
                    kind,
                ) = counts;
                pt::Span {
                    trace_id,
                    span_id,
                    trace_state,
                    parent_span_id,
                    flags,
                    name,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start.wrapping_add(dur),
                    attributes,
                    dropped_attributes_count,
                    events,
                    dropped_events_count,
                    links,
                    dropped_links_count,
                    status,
                }
            },
        )
}

fn resource_strategy() -> impl Strategy<Value = Option<pr::Resource>> {
    let entity = (text(), vec(key_strategy(), 0..2)).prop_map(|(t, keys)| pc::EntityRef {
        schema_url: String::new(),
        r#type: t,
        id_keys: keys,
        description_keys: vec![],
    });
    proptest::option::of((attrs(), any::<u32>(), vec(entity, 0..2)).prop_map(
        |(attributes, d, entity_refs)| pr::Resource {
            attributes,
            dropped_attributes_count: d,
            entity_refs,
        },
    ))
}

fn scope_strategy() -> impl Strategy<Value = Option<pc::InstrumentationScope>> {
    proptest::option::of((text(), text(), attrs(), any::<u32>()).prop_map(
        |(name, version, attributes, d)| pc::InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count: d,
        },
    ))
}

fn traces_strategy() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let ss = (scope_strategy(), vec(span_strategy(), 1..5), text()).prop_map(
        |(scope, spans, schema_url)| pt::ScopeSpans {
            scope,
            spans,
            schema_url,
        },
    );
    let rs = (resource_strategy(), vec(ss, 0..3), text()).prop_map(
        |(resource, scope_spans, schema_url)| pt::ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        },
    );
    vec(rs, 1..3).prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn log_strategy() -> impl Strategy<Value = pl::LogRecord> {
    let times = (
        any::<u64>(),
        any::<u64>(),
        any::<i32>(),
        any::<u32>(),
        any::<u32>(),
    );
    let ids = (
        prop_oneof![Just(Vec::new()), id(16)],
        prop_oneof![Just(Vec::new()), id(8)],
    );
    (
        times,
        ids,
        text(),
        proptest::option::of(value_strategy()),
        attrs(),
        text(),
    )
        .prop_map(
            |(
                (t, observed, severity_number, flags, d),
                (trace_id, span_id),
                severity_text,
                body,
                attributes,
                event_name,
            )| {
                pl::LogRecord {
                    time_unix_nano: t,
                    observed_time_unix_nano: observed,
                    severity_number,
                    severity_text,
                    body,
                    attributes,
                    dropped_attributes_count: d,
                    flags,
                    trace_id,
                    span_id,
                    event_name,
                }
            },
        )
}

fn logs_strategy() -> impl Strategy<Value = ExportLogsServiceRequest> {
    let sl = (scope_strategy(), vec(log_strategy(), 1..5), text()).prop_map(
        |(scope, log_records, schema_url)| pl::ScopeLogs {
            scope,
            log_records,
            schema_url,
        },
    );
    let rl = (resource_strategy(), vec(sl, 0..3), text()).prop_map(
        |(resource, scope_logs, schema_url)| pl::ResourceLogs {
            resource,
            scope_logs,
            schema_url,
        },
    );
    vec(rl, 1..3).prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Mostly byte changes, which often leave a decodable message to compare with prost.
    prop_oneof![
        6 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<prop::sample::Index>(), 1..4usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Set(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            Mutation::Remove(i, n) => {
                let at = i.index(bytes.len());
                bytes.drain(at..(at + n).min(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn traces_decode_as_prost_does(req in traces_strategy()) {
        let body = req.encode_to_vec();
        let got = decode_traces(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        same(&got, &expected_traces(&req)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn logs_decode_as_prost_does(req in logs_strategy()) {
        let body = req.encode_to_vec();
        let got = decode_logs(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        same(&got, &expected_logs(&req)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in vec(any::<u8>(), 0..300)) {
        agrees_with_prost(&body).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_traces_never_panic(req in traces_strategy(), ms in vec(mutation(), 1..4)) {
        let body = mutate(req.encode_to_vec(), &ms);
        agrees_with_prost(&body).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_logs_never_panic(req in logs_strategy(), ms in vec(mutation(), 1..4)) {
        let body = mutate(req.encode_to_vec(), &ms);
        agrees_with_prost(&body).map_err(TestCaseError::fail)?;
    }
}

// The fast path for attributes (`key_value_fast`) against the general decoder.
proptest! {
    #[test]
    fn the_fast_attribute_path_agrees_with_the_general_decoder_on_mutated_bytes(
        shape in 0usize..5,
        flips in proptest::collection::vec((0usize..64, proptest::num::u8::ANY), 0..3),
        cut in 0usize..64,
    ) {
        let shapes = [
            kv_str("http.method", "GET"),
            kv_value("i", &vi(ANY_INT, 300)),
            kv_value("b", &vi(ANY_BOOL, 1)),
            kv_value("d", &fx64(ANY_DOUBLE, 2.5f64.to_bits())),
            kv_str("k", "ü"),
        ];
        let mut m = shapes[shape].clone();
        for (at, byte) in flips {
            let n = m.len();
            m[at % n] = byte;
        }
        m.truncate(m.len() - cut % (m.len() + 1));
        if let Some(fast) = key_value_fast(&m) {
            prop_assert_eq!(Ok(fast), general_key_value(&m));
        }
    }

    #[test]
    fn the_fast_attribute_path_agrees_with_the_general_decoder_on_prost_output(
        key in ".{0,70}",
        kind in 0u8..4,
        s in ".{0,70}",
        n in proptest::num::i64::ANY,
        d in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::INFINITE,
    ) {
        use pc::any_value::Value;
        // prost leaves out an empty key; lengths of one byte are the fast path's.
        let fast_shape = !key.is_empty() && key.len() < 0x80 && (kind != 0 || s.len() <= 125);
        let value = match kind {
            0 => Value::StringValue(s),
            1 => Value::BoolValue(n % 2 == 0),
            2 => Value::IntValue(n),
            _ => Value::DoubleValue(d),
        };
        let m = pc::KeyValue { key, value: Some(pc::AnyValue { value: Some(value) }), ..Default::default() }.encode_to_vec();
        let general = general_key_value(&m);
        prop_assert!(general.is_ok());
        match key_value_fast(&m) {
            Some(fast) => prop_assert_eq!(Ok(fast), general),
            None => prop_assert!(!fast_shape, "the fast path missed {:?}", m),
        }
    }
}
