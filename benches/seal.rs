//! The sealed block codec on loadgen's default traces: bytes per span against the protobuf
//! received (issue 15's goal: at most 20%, sidecars included), and sealing throughput per core
//! (encode) and reading it back (decode).
//!
//! Run with `cargo bench --bench seal -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glust::domain::SpanBatch;
use loadgen::payload::{Compression, Generator, PayloadConfig, Wire};

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
    g.finish();
}

criterion_group!(benches, seal);
criterion_main!(benches);
