//! The block codec against random spans: every span comes back with its resource and scope,
//! field for field; damaged blocks are refused, never misread into a panic.

use std::borrow::Cow;

use proptest::collection::vec;
use proptest::prelude::*;

use super::block::{decode, encode};
use crate::domain::{
    AnyValue, Event, KeyValue, Link, Resource, Scope, Span, SpanBatch, SpanId, Status, TraceId,
};

fn text() -> impl Strategy<Value = Cow<'static, str>> {
    prop_oneof![Just(String::new()), "[a-z]{1,6}", ".{0,8}"].prop_map(Cow::Owned)
}

fn value() -> impl Strategy<Value = AnyValue<'static>> {
    let leaf = prop_oneof![
        Just(AnyValue::Empty),
        text().prop_map(AnyValue::String),
        any::<bool>().prop_map(AnyValue::Bool),
        any::<i64>().prop_map(AnyValue::Int),
        // NaN is not equal to itself: finite doubles, and the infinities.
        prop_oneof![
            any::<f64>().prop_filter("not NaN", |d| !d.is_nan()),
            Just(f64::INFINITY)
        ]
        .prop_map(AnyValue::Double),
        vec(any::<u8>(), 0..6).prop_map(|b| AnyValue::Bytes(Cow::Owned(b))),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(AnyValue::Array),
            vec((text(), inner), 0..3).prop_map(|kvs| AnyValue::KvList(
                kvs.into_iter()
                    .map(|(key, value)| KeyValue { key, value })
                    .collect()
            )),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue<'static>>> {
    // Few keys, so that keys and values repeat across spans, as they do in real data.
    vec(
        (
            prop_oneof![Just("http.route"), Just("user"), Just("n"), Just("")],
            value(),
        ),
        0..4,
    )
    .prop_map(|kvs| {
        kvs.into_iter()
            .map(|(k, value)| KeyValue {
                key: Cow::Borrowed(k),
                value,
            })
            .collect()
    })
}

fn span(traces: u8) -> impl Strategy<Value = Span<'static>> {
    (
        (
            0..traces,
            any::<[u8; 8]>(),
            proptest::option::of(any::<[u8; 8]>()),
            text(),
        ),
        (any::<u64>(), any::<u64>(), -2..8i32, any::<u32>()),
        attributes(),
        vec((any::<u64>(), text(), attributes(), any::<u32>()), 0..2),
        vec(
            (
                any::<[u8; 16]>(),
                any::<[u8; 8]>(),
                text(),
                attributes(),
                any::<u32>(),
                any::<u32>(),
            ),
            0..2,
        ),
        (text(), -1..3i32, any::<u32>(), any::<u32>(), any::<u32>()),
    )
        .prop_map(|(ids, times, attributes, events, links, rest)| {
            let (trace, span, parent, name) = ids;
            let (start, end, kind, flags) = times;
            let (message, code, dropped_attrs, dropped_events, dropped_links) = rest;
            Span {
                trace_id: TraceId([trace; 16]),
                span_id: SpanId(span),
                trace_state: name.clone(),
                parent_span_id: parent.map(SpanId),
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: dropped_attrs,
                events: events
                    .into_iter()
                    .map(|(t, name, attributes, dropped)| Event {
                        time_unix_nano: t,
                        name,
                        attributes,
                        dropped_attributes_count: dropped,
                    })
                    .collect(),
                dropped_events_count: dropped_events,
                links: links
                    .into_iter()
                    .map(|(t, s, state, attributes, dropped, flags)| Link {
                        trace_id: TraceId(t),
                        span_id: SpanId(s),
                        trace_state: state,
                        attributes,
                        dropped_attributes_count: dropped,
                        flags,
                    })
                    .collect(),
                dropped_links_count: dropped_links,
                status: Status { message, code },
            }
        })
}

fn batch() -> impl Strategy<Value = SpanBatch<'static>> {
    (
        prop_oneof![Just("checkout"), Just("cart")],
        attributes(),
        text(),
        vec(span(4), 0..12),
    )
        .prop_map(|(service, mut attributes, scope, spans)| {
            attributes.push(KeyValue {
                key: Cow::Borrowed("service.name"),
                value: AnyValue::String(Cow::Borrowed(service)),
            });
            SpanBatch {
                resource: Resource {
                    attributes,
                    dropped_attributes_count: 0,
                    schema_url: Cow::Borrowed(""),
                },
                scope: Scope {
                    name: scope,
                    ..Scope::default()
                },
                spans,
            }
        })
}

/// Every span with its resource and scope, in a canonical order.
fn flat(batches: &[SpanBatch<'_>]) -> Vec<String> {
    let mut out: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            b.spans
                .iter()
                .map(move |s| format!("{:?} {:?} {:?}", b.resource, b.scope, s))
        })
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn spans_come_back_field_for_field(batches in vec(batch(), 0..5)) {
        let block = encode(&batches);
        let back = decode(&block).expect("a block decodes");
        prop_assert_eq!(flat(&back), flat(&batches));
        // A trace's spans are together, in start order.
        let spans: Vec<&Span<'_>> = back.iter().flat_map(|b| &b.spans).collect();
        for pair in spans.windows(2) {
            prop_assert!(
                (pair[0].trace_id, pair[0].start_time_unix_nano)
                    <= (pair[1].trace_id, pair[1].start_time_unix_nano)
            );
        }
    }

    #[test]
    fn damaged_blocks_are_refused_or_read_without_panic(
        batches in vec(batch(), 1..3),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut block = encode(&batches);
        let i = at.index(block.len());
        block[i] ^= byte | 1;
        let _ = decode(&block);
        let mut short = encode(&batches);
        short.truncate(cut.index(short.len()));
        prop_assert!(decode(&short).is_err());
    }
}

proptest! {
    #[test]
    fn a_block_decodes_the_wanted_traces_alone(
        batches in vec(batch(), 0..5),
        pick in vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let ids: Vec<TraceId> = batches.iter().flat_map(|b| b.spans.iter().map(|s| s.trace_id)).collect();
        let mut wanted: Vec<TraceId> = match ids.is_empty() {
            true => Vec::new(),
            false => pick.iter().map(|i| ids[i.index(ids.len())]).collect(),
        };
        wanted.push(TraceId([0xee; 16])); // in no block
        let block = encode(&batches);
        let only: Vec<SpanBatch<'static>> = decode(&block)
            .unwrap()
            .into_iter()
            .map(|mut b| {
                b.spans.retain(|s| wanted.contains(&s.trace_id));
                b
            })
            .collect();
        let partial = crate::seal::block::decode_traces(&block, Some(&wanted)).unwrap();
        prop_assert_eq!(flat(&partial), flat(&only));
    }
}

#[test]
fn an_empty_block_round_trips() {
    assert_eq!(
        decode(&encode(&[])).unwrap(),
        Vec::<SpanBatch<'static>>::new()
    );
}

/// A span with only its ids, name, times and attributes set.
fn plain_span(
    trace: u8,
    span: u64,
    parent: Option<SpanId>,
    start: u64,
    attributes: Vec<KeyValue<'static>>,
) -> Span<'static> {
    Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId(span.to_le_bytes()),
        trace_state: Cow::Borrowed(""),
        parent_span_id: parent,
        flags: 1,
        name: Cow::Borrowed("step"),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 500,
        attributes,
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Status::default(),
    }
}

fn one_batch(spans: Vec<Span<'static>>) -> Vec<SpanBatch<'static>> {
    vec![SpanBatch {
        spans,
        ..SpanBatch::default()
    }]
}

#[test]
fn parents_in_the_block_are_found_again() {
    // A chain of 50 spans in one trace, each the parent of the next, and a span whose parent
    // is in no block: back references and raw ids both round-trip.
    let spans = (0..50u64)
        .map(|i| {
            let parent = match i {
                0 => SpanId([9; 8]),
                _ => SpanId(i.to_le_bytes()),
            };
            plain_span(
                7,
                i + 1,
                Some(parent),
                1_700_000_000_000_000_000 + i * 1000,
                Vec::new(),
            )
        })
        .collect();
    let batches = one_batch(spans);
    assert_eq!(decode(&encode(&batches)).unwrap(), batches);
}

#[test]
fn values_that_never_repeat_leave_the_dictionary_and_still_round_trip() {
    let spans = (0..300u64)
        .map(|i| {
            let attributes = vec![
                KeyValue {
                    key: Cow::Borrowed("enduser.id"),
                    value: AnyValue::String(Cow::Owned(format!("user-{i}"))),
                },
                KeyValue {
                    key: Cow::Borrowed("http.method"),
                    value: AnyValue::String(Cow::Borrowed(if i % 2 == 0 { "GET" } else { "PUT" })),
                },
            ];
            plain_span((i % 7) as u8, i, None, i, attributes)
        })
        .collect();
    let batches = one_batch(spans);
    assert_eq!(flat(&decode(&encode(&batches)).unwrap()), flat(&batches));
}

// Sealed files: a raw segment sealed and read back.

mod files {
    use super::*;
    use crate::domain::{from_archived, LogBatch, LogRecord};
    use crate::seal::{write, BlockKind, SealedSegment};
    use crate::storage::{RecordKind, Store, StoreConfig};

    fn log_record() -> impl Strategy<Value = LogRecord<'static>> {
        (
            (any::<u64>(), any::<u64>(), -3..25i32),
            prop_oneof![Just(""), Just("INFO"), Just("ERROR")],
            value(),
            attributes(),
            (
                proptest::option::of(0..4u8),
                proptest::option::of(any::<[u8; 8]>()),
            ),
            (
                any::<u32>(),
                0..3u32,
                prop_oneof![Just(""), Just("exception")],
            ),
        )
            .prop_map(
                |((time, observed, severity), text, body, attributes, (trace, span), rest)| {
                    LogRecord {
                        time_unix_nano: time,
                        observed_time_unix_nano: observed,
                        severity_number: severity,
                        severity_text: Cow::Borrowed(text),
                        body,
                        attributes,
                        dropped_attributes_count: rest.1,
                        flags: rest.0,
                        trace_id: trace.map(|t| TraceId([t; 16])),
                        span_id: span.map(SpanId),
                        event_name: Cow::Borrowed(rest.2),
                    }
                },
            )
    }

    fn log_batch() -> impl Strategy<Value = LogBatch<'static>> {
        (
            prop_oneof![Just("checkout"), Just("cart")],
            vec(log_record(), 0..6),
        )
            .prop_map(|(service, logs)| LogBatch {
                resource: Resource {
                    attributes: vec![KeyValue {
                        key: Cow::Borrowed("service.name"),
                        value: AnyValue::String(Cow::Borrowed(service)),
                    }],
                    ..Resource::default()
                },
                scope: Scope::default(),
                logs,
            })
    }

    /// Every record with its resource, in the order given.
    fn ordered_logs<'a>(batches: impl Iterator<Item = &'a LogBatch<'a>>) -> Vec<String> {
        batches
            .flat_map(|b| {
                b.logs
                    .iter()
                    .map(move |l| format!("{:?} {:?} {l:?}", b.resource, b.scope))
            })
            .collect()
    }

    /// The records of a log block, as [`ordered_logs`] shows them.
    fn decoded_logs(block: &[u8]) -> Vec<String> {
        crate::seal::logblock::decode(block)
            .unwrap()
            .iter()
            .flat_map(|r| {
                let a =
                    rkyv::access::<crate::domain::ArchivedLogBatch<'static>, rkyv::rancor::Error>(
                        r,
                    )
                    .unwrap();
                let (resource, scope) = (
                    from_archived::resource(&a.resource),
                    from_archived::scope(&a.scope),
                );
                a.logs
                    .iter()
                    .map(|l| format!("{resource:?} {scope:?} {:?}", from_archived::log_record(l)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn log_blocks_give_back_every_record_in_order(batches in vec(log_batch(), 0..6)) {
            let block = crate::seal::logblock::encode_batches(&batches);
            prop_assert_eq!(decoded_logs(&block), ordered_logs(batches.iter()));
        }

        #[test]
        fn damaged_log_blocks_are_refused_or_read_without_panic(
            batches in vec(log_batch(), 1..4),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut block = crate::seal::logblock::encode_batches(&batches);
            let i = at.index(block.len());
            block[i] ^= byte | 1;
            let _ = crate::seal::logblock::decode(&block);
        }
    }

    #[test]
    fn log_blocks_written_before_logs_had_columns_are_still_read() {
        let batches: Vec<LogBatch<'static>> = (0..3)
            .map(|i| LogBatch {
                resource: Resource::default(),
                scope: Scope::default(),
                logs: vec![LogRecord {
                    time_unix_nano: i,
                    observed_time_unix_nano: 0,
                    severity_number: 9,
                    severity_text: Cow::Borrowed("INFO"),
                    body: AnyValue::String(Cow::Owned(format!("record {i}"))),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                    flags: 0,
                    trace_id: Some(TraceId([i as u8; 16])),
                    span_id: None,
                    event_name: Cow::Borrowed(""),
                }],
            })
            .collect();
        let records: Vec<_> = batches
            .iter()
            .map(|b| rkyv::to_bytes::<rkyv::rancor::Error>(b).unwrap())
            .collect();
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        let block = crate::seal::logblock::encode_legacy(&refs);
        assert_eq!(decoded_logs(&block), ordered_logs(batches.iter()));
    }

    /// Writes the batches as records of one raw segment; its path.
    fn raw_segment(
        dir: &std::path::Path,
        spans: &[SpanBatch<'_>],
        logs: &[LogBatch<'_>],
    ) -> std::path::PathBuf {
        let config = StoreConfig::single_shard(dir, 64 << 20, None);
        let (mut store, _) = Store::open(config, |_, _, _| {}, |_, _| {}).unwrap();
        for b in spans {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(b).unwrap();
            store.append(RecordKind::Spans, &bytes).unwrap();
        }
        for b in logs {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(b).unwrap();
            store.append(RecordKind::Logs, &bytes).unwrap();
        }
        let own = dir.join("0");
        let mut files: Vec<_> = std::fs::read_dir(&own)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "glust"))
            .collect();
        assert_eq!(files.len(), 1);
        files.pop().unwrap()
    }

    fn spans_of(sealed: &SealedSegment) -> Vec<String> {
        let mut batches = Vec::new();
        let blocks: Vec<_> = (0..sealed.sidecar.blocks.len())
            .map(|i| sealed.decode(i).unwrap())
            .collect();
        for b in &blocks {
            for a in b.span_batches() {
                batches.push(SpanBatch {
                    resource: from_archived::resource(&a.resource),
                    scope: from_archived::scope(&a.scope),
                    spans: a.spans.iter().map(from_archived::span).collect(),
                });
            }
        }
        flat(&batches)
    }

    fn logs_of(sealed: &SealedSegment) -> Vec<String> {
        let blocks: Vec<_> = (0..sealed.sidecar.blocks.len())
            .map(|i| sealed.decode(i).unwrap())
            .collect();
        let mut out: Vec<String> = blocks
            .iter()
            .flat_map(|b| b.log_batches())
            .flat_map(|a| {
                let resource = from_archived::resource(&a.resource);
                a.logs
                    .iter()
                    .map(move |l| format!("{resource:?} {:?}", from_archived::log_record(l)))
            })
            .collect();
        out.sort();
        out
    }

    fn flat_logs(batches: &[LogBatch<'_>]) -> Vec<String> {
        let mut out: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                b.logs
                    .iter()
                    .map(move |l| format!("{:?} {l:?}", b.resource))
            })
            .collect();
        out.sort();
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn a_sealed_segment_holds_every_record_of_its_raw_segment(
            spans in vec(batch(), 0..30),
            logs in vec(log_batch(), 0..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let raw = raw_segment(dir.path(), &spans, &logs);
            let sealed = write::seal(&raw).unwrap();
            // Read back from disk, not from what sealing kept in memory.
            let sealed = SealedSegment::open(sealed.data_path.clone(), sealed.sidecar_path.clone()).unwrap();
            prop_assert_eq!(spans_of(&sealed), flat(&spans));
            prop_assert_eq!(logs_of(&sealed), flat_logs(&logs));
            let total: usize = spans.iter().map(|b| b.spans.len()).sum();
            prop_assert_eq!(sealed.sidecar.spans, total as u64);
            let total_logs: usize = logs.iter().map(|b| b.logs.len()).sum();
            prop_assert_eq!(sealed.sidecar.logs, total_logs as u64);
            for s in spans.iter().flat_map(|b| &b.spans) {
                prop_assert!(sealed.sidecar.may_hold_trace(&s.trace_id));
                let blocks: Vec<usize> = sealed.sidecar.trace_blocks(&s.trace_id).collect();
                // Some block found holds the span's time (others may be filter false positives).
                let holds_its_time = blocks.iter().any(|&b| {
                    let m = &sealed.sidecar.blocks[b];
                    m.min_time <= s.start_time_unix_nano && s.start_time_unix_nano <= m.max_time
                });
                prop_assert!(holds_its_time);
            }
        }
    }

    #[test]
    fn a_version_1_sidecar_with_its_8_bit_trace_filter_is_still_read() {
        use crate::seal::format::{trace_key, TraceFilter};
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<SpanBatch<'static>> = (0..40u8)
            .flat_map(|t| one_batch(vec![plain_span(t, 1, None, 1_000 + t as u64, vec![])]))
            .collect();
        let raw = raw_segment(dir.path(), &batches, &[]);
        let sealed = write::seal(&raw).unwrap();
        let mut sidecar = sealed.sidecar.clone();
        assert!(matches!(sidecar.trace_filter, Some(TraceFilter::Fuse16(_))));
        assert!(sidecar.time_ordered);
        // Version 2: blocks in trace-id order, found by their id ranges (one block here, so
        // its range holds every trace).
        sidecar.time_ordered = false;
        sidecar.block_traces.clear();
        let bytes = sidecar.encode();
        assert_eq!(bytes[8..12], 2u32.to_le_bytes());
        let read = crate::seal::Sidecar::decode(&bytes).unwrap();
        assert!(!read.time_ordered && read.block_traces.is_empty());
        for s in batches.iter().flat_map(|b| &b.spans) {
            assert_eq!(read.trace_blocks(&s.trace_id).collect::<Vec<_>>(), [0]);
        }
        let mut keys: Vec<u64> = batches
            .iter()
            .flat_map(|b| &b.spans)
            .map(|s| trace_key(&s.trace_id))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        sidecar.trace_filter = Some(TraceFilter::Fuse8(
            xorf::BinaryFuse8::try_from(&keys).unwrap(),
        ));
        // Written as version 1 wrote it: the version field says 1.
        let mut bytes = sidecar.encode();
        assert_eq!(bytes[8..12], 1u32.to_le_bytes());
        let body = bytes.len() - 4;
        let read = crate::seal::Sidecar::decode(&bytes).unwrap();
        assert!(matches!(read.trace_filter, Some(TraceFilter::Fuse8(_))));
        for s in batches.iter().flat_map(|b| &b.spans) {
            assert!(read.may_hold_trace(&s.trace_id));
        }
        // The same bytes under version 2 are not taken for a 16-bit filter.
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        assert!(crate::seal::Sidecar::decode(&bytes).is_err());
    }

    /// Whether every item of `part` is in `whole`, as many times at most.
    fn is_sub_multiset(part: &[String], whole: &[String]) -> bool {
        let mut left: std::collections::HashMap<&str, usize> = Default::default();
        for w in whole {
            *left.entry(w).or_default() += 1;
        }
        part.iter().all(|p| match left.get_mut(p.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// A data file rebuilt without its sidecar, after no damage, a flipped byte or a cut:
        /// never a panic, only records it held, all of them when it was intact, and a refusal
        /// when its header was hit (a segment whose records hold no item seals to a header alone).
        #[test]
        fn a_rebuilt_pair_holds_the_intact_blocks_records(
            spans in vec(batch(), 1..30),
            logs in vec(log_batch(), 0..6),
            damage in prop_oneof![Just(None), (0.0f64..1.0, any::<bool>()).prop_map(Some)],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let raw = raw_segment(dir.path(), &spans, &logs);
            let sealed = write::seal(&raw).unwrap();
            std::fs::remove_file(&sealed.sidecar_path).unwrap();
            let mut bytes = std::fs::read(&sealed.data_path).unwrap();
            let header = crate::seal::format::DATA_HEADER_BYTES;
            let mut in_header = false;
            if let Some((at, cut)) = damage {
                let at = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
                in_header = at < header;
                match cut {
                    true => bytes.truncate(at),
                    false => bytes[at] ^= 0x20,
                }
            }
            std::fs::write(&sealed.data_path, &bytes).unwrap();
            // A damaged header leaves nothing to trust: the raw segment or nothing is the truth.
            if in_header {
                prop_assert!(write::rebuild(&sealed.data_path).is_err());
                return Ok(());
            }
            let rebuilt = write::rebuild(&sealed.data_path).unwrap();
            if let Some((_, true)) = damage {
                // A cut at a frame's first byte leaves whole blocks only, and they hold less; a
                // cut in the needles block, after every data block, loses none (the rebuild
                // builds the filters anew).
                let on_boundary = sealed.sidecar.blocks.iter().any(|b| b.offset as usize == bytes.len());
                let in_needles = sealed.sidecar.needles.is_some_and(|n| bytes.len() >= n.offset as usize);
                prop_assert!(on_boundary || in_needles || rebuilt.blocks_lost >= 1, "a cut loses a block");
            }
            let back = SealedSegment::open(sealed.data_path.clone(), sealed.sidecar_path.clone()).unwrap();
            prop_assert_eq!(back.sidecar.meta, sealed.sidecar.meta);
            let (got_spans, got_logs) = (spans_of(&back), logs_of(&back));
            if damage.is_none() {
                prop_assert_eq!(rebuilt.blocks_lost, 0);
                prop_assert_eq!(got_spans, flat(&spans));
                prop_assert_eq!(got_logs, flat_logs(&logs));
            } else {
                prop_assert!(is_sub_multiset(&got_spans, &flat(&spans)));
                prop_assert!(is_sub_multiset(&got_logs, &flat_logs(&logs)));
            }
        }
    }

    #[test]
    fn a_sidecar_names_the_operations_of_each_service_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let batch = |service: &'static str, names: &[&'static str]| {
            let mut b = one_batch(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| Span {
                        name: Cow::Borrowed(*n),
                        ..plain_span(i as u8, i as u64, None, 1_000 + i as u64, vec![])
                    })
                    .collect(),
            )
            .remove(0);
            b.resource.attributes.push(KeyValue {
                key: Cow::Borrowed("service.name"),
                value: AnyValue::String(Cow::Borrowed(service)),
            });
            b
        };
        let batches = [
            batch("checkout", &["pay", "refund", "pay"]),
            batch("cart", &["add", "pay"]),
        ];
        let raw = raw_segment(dir.path(), &batches, &[]);
        let sealed = write::seal(&raw).unwrap();
        let read = crate::seal::Sidecar::decode(&sealed.sidecar.encode()).unwrap();
        for sc in [&sealed.sidecar, &read] {
            assert_eq!(sc.operations_of("checkout"), ["pay", "refund"]);
            assert_eq!(sc.operations_of("cart"), ["add", "pay"]);
            assert!(sc.operations_of("nobody").is_empty());
        }
    }

    /// A sealed segment's tags as (scope, service, key, [(value, kind, count)]), sorted.
    type TagRows = Vec<(
        &'static str,
        String,
        String,
        Vec<(String, &'static str, u64)>,
    )>;

    fn tag_rows(sc: &crate::seal::Sidecar) -> TagRows {
        let mut rows: TagRows = sc
            .tags
            .entries()
            .map(|(scope, service, key, values)| {
                let scope = match scope {
                    crate::domain::tags::TagScope::TraceResource => "trace-resource",
                    crate::domain::tags::TagScope::Span => "span",
                    crate::domain::tags::TagScope::LogResource => "log-resource",
                    crate::domain::tags::TagScope::Log => "log",
                };
                let values = values
                    .top(usize::MAX)
                    .into_iter()
                    .map(|(v, n)| (v.text(), v.kind(), n))
                    .collect();
                (
                    scope,
                    sc.services[service as usize].clone(),
                    key.to_owned(),
                    values,
                )
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn a_sidecar_keeps_the_tags_of_its_spans_and_logs_and_a_rebuild_finds_them_again() {
        let dir = tempfile::tempdir().unwrap();
        let attr = |k: &'static str, v: AnyValue<'static>| KeyValue {
            key: Cow::Borrowed(k),
            value: v,
        };
        let text = |s: &'static str| AnyValue::String(Cow::Borrowed(s));
        let mut spans = one_batch(
            (0..400u64)
                .map(|i| {
                    let code = if i % 4 == 0 { 500 } else { 200 };
                    plain_span(
                        1,
                        i + 1,
                        None,
                        1_000 + i,
                        vec![attr("code", AnyValue::Int(code))],
                    )
                })
                .collect(),
        );
        spans[0].resource.attributes = vec![
            attr("service.name", text("cart")),
            attr("host.name", text("h1")),
        ];
        let logs = vec![LogBatch {
            resource: crate::domain::Resource {
                attributes: vec![attr("service.name", text("cart"))],
                ..Default::default()
            },
            logs: (0..200u64)
                .map(|i| LogRecord {
                    time_unix_nano: 2_000 + i,
                    observed_time_unix_nano: 0,
                    severity_number: 9,
                    severity_text: Cow::Borrowed(""),
                    body: text("hello"),
                    attributes: vec![attr("user", text(if i % 4 == 0 { "ann" } else { "bob" }))],
                    dropped_attributes_count: 0,
                    flags: 0,
                    trace_id: None,
                    span_id: None,
                    event_name: Cow::Borrowed(""),
                })
                .collect(),
            ..Default::default()
        }];
        let raw = raw_segment(dir.path(), &spans, &logs);
        let sealed = write::seal(&raw).unwrap();
        // Resources are counted for every item; the attributes of items, of one in 8 or so,
        // each weighing the items it stands for: the sum is short by less than one gap.
        let check = |rows: &TagRows| {
            let s = |x: &str| x.to_owned();
            let keys: Vec<(&str, &str, &str)> = rows
                .iter()
                .map(|r| (r.0, r.1.as_str(), r.2.as_str()))
                .collect();
            assert_eq!(
                keys,
                [
                    ("log", "cart", "user"),
                    ("log-resource", "cart", "service.name"),
                    ("span", "cart", "code"),
                    ("trace-resource", "cart", "host.name"),
                    ("trace-resource", "cart", "service.name"),
                ]
            );
            assert_eq!(rows[1].3, vec![(s("cart"), "string", 200)]);
            assert_eq!(rows[3].3, vec![(s("h1"), "string", 400)]);
            assert_eq!(rows[4].3, vec![(s("cart"), "string", 400)]);
            for (row, want, values) in [
                (&rows[0], 200, ["bob", "ann"]),
                (&rows[2], 400, ["200", "500"]),
            ] {
                let got: Vec<&str> = row.3.iter().map(|v| v.0.as_str()).collect();
                assert_eq!(got, values, "most counted first: {row:?}");
                let sum: u64 = row.3.iter().map(|v| v.2).sum();
                assert!(sum <= want && sum + 15 > want, "{row:?}");
            }
        };
        check(&tag_rows(&sealed.sidecar));
        let read = crate::seal::Sidecar::decode(&sealed.sidecar.encode()).unwrap();
        assert_eq!(tag_rows(&read), tag_rows(&sealed.sidecar));
        let data = sealed.data_path.clone();
        drop(sealed);
        let rebuilt = write::rebuild(&data).unwrap();
        check(&tag_rows(&rebuilt.segment.sidecar));
    }

    #[test]
    fn blocks_end_at_trace_boundaries_and_a_huge_trace_spans_several() {
        let dir = tempfile::tempdir().unwrap();
        // 100 traces of 100 spans, then one trace of 20,000.
        let mut batches = Vec::new();
        for t in 0..100u8 {
            batches.push(
                one_batch(
                    (0..100)
                        .map(|i| plain_span(t, i, None, 1_000 + i, Vec::new()))
                        .collect(),
                )
                .remove(0),
            );
        }
        for chunk in 0..20u64 {
            batches.push(
                one_batch(
                    (0..1000)
                        .map(|i| plain_span(200, chunk * 1000 + i, None, 5_000 + i, Vec::new()))
                        .collect(),
                )
                .remove(0),
            );
        }
        let raw = raw_segment(dir.path(), &batches, &[]);
        let sealed = write::seal(&raw).unwrap();
        let blocks = &sealed.sidecar.blocks;
        assert!(blocks.iter().all(|b| b.kind == BlockKind::Spans));
        // Which blocks hold each trace, read from the blocks themselves; a lookup's blocks
        // (by their filters) include them all.
        let mut holding: std::collections::HashMap<TraceId, Vec<usize>> = Default::default();
        for i in 0..blocks.len() {
            let mut ids: Vec<TraceId> = sealed
                .decode(i)
                .unwrap()
                .span_batches()
                .flat_map(|b| b.spans.iter().map(|s| s.trace_id.get()))
                .collect();
            ids.dedup();
            for id in ids {
                holding.entry(id).or_default().push(i);
            }
        }
        for (id, held) in &holding {
            let found: Vec<usize> = sealed.sidecar.trace_blocks(id).collect();
            assert!(held.iter().all(|b| found.contains(b)), "{id:?}");
        }
        // Small traces are never cut; blocks follow the traces' first starts.
        for t in 0..100u8 {
            assert_eq!(holding[&TraceId([t; 16])].len(), 1, "trace {t}");
        }
        assert!(holding[&TraceId([200; 16])].len() >= 2);
        assert!(blocks.windows(2).all(|w| w[0].min_time <= w[1].min_time));
        assert!(blocks
            .iter()
            .all(|b| b.items as usize <= crate::limits::SEALED_BLOCK_SPANS_MAX));
        assert_eq!(sealed.sidecar.spans, 30_000);
        assert_eq!(sealed.sidecar.traces, 101);
        assert_eq!(spans_of(&sealed), flat(&batches));
    }
}
