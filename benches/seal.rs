//! The sealed block codec on loadgen's default traces: bytes per span against the protobuf
//! received (issue 15's goal: at most 20%, sidecars included), and sealing throughput per core
//! (encode) and reading it back (decode).
//!
//! Run with `cargo bench --bench seal -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glust::domain::SpanBatch;
use glust::shard::ingest::encode_records;
use glust::storage::{RecordKind, Store, StoreConfig};
use loadgen::payload::{Compression, Generator, PayloadConfig, Signal, Wire};

/// Spans per block, as the design sizes them.
const BLOCK_SPANS: usize = 4096;
/// Requests of loadgen's default 100 spans.
const REQUESTS: u64 = 600;

/// Loadgen's default trace requests, as protobuf bodies.
fn bodies() -> Vec<Vec<u8>> {
    let mut generator = Generator::new(
        &PayloadConfig::default(),
        Wire::Protobuf,
        Compression::None,
        42,
        0,
    );
    (0..REQUESTS)
        .map(|i| {
            generator
                .next_batch(1_700_000_000_000_000_000 + i * 5_000_000)
                .body
                .to_vec()
        })
        .collect()
}

/// The decoded batches, cut into blocks of about [`BLOCK_SPANS`] spans.
fn blocks(bodies: &[Vec<u8>]) -> Vec<Vec<SpanBatch<'_>>> {
    let mut blocks = vec![Vec::new()];
    let mut spans = 0;
    for body in bodies {
        for batch in glust::otlp::proto::decode_traces(body)
            .expect("valid")
            .batches
        {
            spans += batch.spans.len();
            blocks.last_mut().expect("a block").push(batch);
            if spans >= BLOCK_SPANS {
                blocks.push(Vec::new());
                spans = 0;
            }
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

fn seal(c: &mut Criterion) {
    let bodies = bodies();
    let wire: usize = bodies.iter().map(Vec::len).sum();
    let blocks = blocks(&bodies);
    let spans: usize = blocks.iter().flatten().map(|b| b.spans.len()).sum();
    let encoded: Vec<Vec<u8>> = blocks
        .iter()
        .map(|b| glust::seal::block::encode(b))
        .collect();
    let sealed: usize = encoded.iter().map(Vec::len).sum();
    eprintln!(
        "{spans} spans of loadgen's default traces in {} blocks: protobuf {:.1} B/span, sealed \
         {:.1} B/span ({:.1}% of the protobuf)",
        blocks.len(),
        wire as f64 / spans as f64,
        sealed as f64 / spans as f64,
        100.0 * sealed as f64 / wire as f64
    );
    let block = &blocks[0];
    let block_spans: usize = block.iter().map(|b| b.spans.len()).sum();
    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Elements(block_spans as u64));
    g.bench_function("encode a block", |b| {
        b.iter(|| glust::seal::block::encode(black_box(block)))
    });
    g.bench_function("decode a block", |b| {
        b.iter(|| glust::seal::block::decode(black_box(&encoded[0])).expect("decodes"))
    });
    // A trace lookup: the block's other spans are read past.
    let one = [block[0].spans[0].trace_id];
    g.bench_function("decode one trace of a block", |b| {
        b.iter(|| {
            glust::seal::block::decode_traces(black_box(&encoded[0]), Some(&one)).expect("decodes")
        })
    });
    g.finish();
}

/// A raw segment of about 64 MiB holding loadgen's default `signal` records, stored as the
/// ingest path stores them; its directory, path and the protobuf bytes it was decoded from.
fn raw_segment(signal: Signal) -> (tempfile::TempDir, std::path::PathBuf, usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig::single_shard(dir.path(), 64 << 20, None);
    let (mut store, _) = Store::open(config, |_, _, _| {}, |_, _| {}).expect("store opens");
    let mut generator = Generator::new(
        &PayloadConfig {
            signal,
            ..PayloadConfig::default()
        },
        Wire::Protobuf,
        Compression::None,
        42,
        0,
    );
    let mut rejected = Default::default();
    let mut written = 0usize;
    let mut wire = 0usize;
    let mut i = 0u64;
    // Short of the segment's size, so that everything lands in the one segment.
    while written < 60 << 20 {
        let body = generator
            .next_batch(1_700_000_000_000_000_000 + i * 5_000_000)
            .body;
        i += 1;
        wire += body.len();
        let (kind, records) = match signal {
            Signal::Traces => {
                let batches = glust::otlp::proto::decode_traces(&body)
                    .expect("valid")
                    .batches;
                (
                    RecordKind::Spans,
                    encode_records(batches, 8 << 20, &mut rejected).0,
                )
            }
            Signal::Logs => {
                let batches = glust::otlp::proto::decode_logs(&body)
                    .expect("valid")
                    .batches;
                (
                    RecordKind::Logs,
                    encode_records(batches, 8 << 20, &mut rejected).0,
                )
            }
        };
        for r in records {
            written += r.bytes.len();
            store.append(kind, &r.bytes).expect("appends");
        }
    }
    store.flush().expect("flushes");
    let own = dir.path().join("0");
    let raw = std::fs::read_dir(&own)
        .expect("shard dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "glust"))
        .expect("one raw segment");
    (dir, raw, wire)
}

/// Sealing a whole raw segment, as a shard's blocking pool does: read and sort its records,
/// encode and compress the blocks, write and sync both files. Spans (or records) per second.
fn seal_segment(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal a 60 MiB raw segment");
    g.sample_size(10);
    for (name, signal) in [("traces", Signal::Traces), ("logs", Signal::Logs)] {
        let (_dir, raw, wire) = raw_segment(signal);
        let items = {
            let sealed = glust::seal::write::seal(&raw).expect("seals");
            let items = sealed.sidecar.spans + sealed.sidecar.logs;
            let stored = sealed.disk_bytes();
            eprintln!(
                "{items} {name} items: protobuf {:.1} B each, sealed {:.1} B each with the \
                 sidecar ({:.1}% of the protobuf)",
                wire as f64 / items as f64,
                stored as f64 / items as f64,
                100.0 * stored as f64 / wire as f64
            );
            items
        };
        g.throughput(Throughput::Elements(items));
        g.bench_function(name, |b| {
            b.iter(|| glust::seal::write::seal(black_box(&raw)).expect("seals"))
        });
    }
    g.finish();
}

criterion_group!(benches, seal, seal_segment);
criterion_main!(benches);
