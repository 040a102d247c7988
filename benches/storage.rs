//! The storage side of the hot path: segment append (MB/s), indexing a record (spans/s), and a
//! trace lookup (index → record read and CRC check → archive validation → OTLP JSON).
//!
//! Run with `cargo bench --bench storage -- --warm-up-time 1 --measurement-time 3`.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use glust::domain::{ArchivedSpanBatch, TraceId};
use glust::index::Index;
use glust::shard::ingest::encode_records;
use glust::storage::{RecordKind, Store, StoreConfig};
use prost::Message;

/// One request's records: 100 spans (10 traces of 10) encoded as the ingest path does.
fn records(first_trace: u64) -> Vec<glust::shard::mesh::OwnedRecord> {
    let body = common::traces_request(first_trace, 10, 10).encode_to_vec();
    let decoded = glust::otlp::proto::decode_traces(&body).unwrap();
    let mut rejected = Default::default();
    let (records, kept) = encode_records(decoded.batches, 8 << 20, &mut rejected);
    assert_eq!(kept, 100);
    records
}

fn open_store(dir: &std::path::Path, page_cache_keep: Option<u64>) -> Store {
    let config = StoreConfig::single_shard(dir, 256 << 20, page_cache_keep);
    Store::open(config, |_, _, _| {}, |_, _| {}).unwrap().0
}

fn append(c: &mut Criterion) {
    let recs = records(1);
    let bytes: usize = recs.iter().map(|r| r.bytes.len()).sum();
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Bytes(bytes as u64));
    // Appends are positioned writes into the page cache (see glust::storage::segment). The
    // next segment is prepared in the untimed setup, as the runtime prepares it off the append
    // path. Two page-cache policies: left to the kernel (every append takes fresh pages), and
    // Glust's default, evicting what is 64 MiB behind the writer so appends reuse warm pages;
    // here the upkeep (writeback start, eviction) runs inline and is timed, where the runtime
    // runs it on the blocking pool.
    for (name, keep) in [
        (
            "append 100-span record, page cache left to the kernel",
            None,
        ),
        (
            "append 100-span record, evicting 64 MiB behind",
            Some(64 << 20),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = std::cell::RefCell::new(open_store(dir.path(), keep));
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let job = store.borrow_mut().next_to_prepare();
                    if let Some(job) = job {
                        store.borrow_mut().install_next(job.run());
                    }
                },
                |()| {
                    let mut store = store.borrow_mut();
                    for r in &recs {
                        black_box(store.append(RecordKind::Spans, &r.bytes).unwrap());
                    }
                    if let Some(work) = store.cache_work() {
                        work.run();
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn index(c: &mut Criterion) {
    let recs = records(1);
    let batch =
        rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(&recs[0].bytes).unwrap();
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(batch.spans.len() as u64));
    g.bench_function("add 100 spans", |b| {
        b.iter_batched_ref(
            Index::default,
            |index| {
                for i in 0..16u32 {
                    index.add_spans(
                        glust::index::RecordLoc {
                            segment: 0,
                            offset: i * 64,
                        },
                        batch,
                    );
                }
            },
            BatchSize::SmallInput,
        )
    });
    // A part that has seen the batch's names and keys already, as a part soon has.
    let mut warm = Index::default();
    let mut offset = 0u32;
    g.bench_function("add 100 spans to a warm part", |b| {
        b.iter(|| {
            offset = offset.wrapping_add(64);
            warm.add_spans(glust::index::RecordLoc { segment: 0, offset }, batch);
        })
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path(), None);
    let mut index = glust::index::Indexes::default();
    // 100,000 traces of 10 spans, 100 spans per record.
    for req in 0..10_000u64 {
        for r in records(req * 10) {
            let loc = store.append(RecordKind::Spans, &r.bytes).unwrap();
            let batch =
                rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(&r.bytes).unwrap();
            index.for_segment(loc.segment).add_spans(loc, batch);
        }
    }
    let stats = index.stats();
    eprintln!(
        "index: {} traces, {} spans, ~{} bytes ({:.1} bytes/span)",
        stats.traces,
        stats.spans,
        stats.approx_bytes,
        stats.approx_bytes as f64 / stats.spans as f64
    );
    let ids: Vec<TraceId> = (0..1000u64)
        .map(|i| {
            let t = i * 97 % 100_000;
            let s = common::span(t, 0);
            TraceId(s.trace_id.try_into().unwrap())
        })
        .collect();
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("trace by id to OTLP JSON (10 spans)", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            let groups = glust::shard::query::trace_json(&index, &store, &ids[i]);
            assert_eq!(groups[0].items.len(), 10);
            black_box(groups)
        })
    });
    g.finish();
}

criterion_group!(benches, append, index, lookup);
criterion_main!(benches);
