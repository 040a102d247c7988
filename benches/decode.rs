//! Decoding of OTLP/protobuf request bodies: Glust's borrowing decoder against prost's owned
//! decoding of the same bytes (which does no validation and builds no domain values); and the
//! next stage of the hot path, encoding the decoded batches into records (rkyv).
//!
//! Run with `cargo bench --bench decode -- --warm-up-time 1 --measurement-time 3`.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const ITEMS: usize = 100;

fn bench_traces(c: &mut Criterion) {
    let body = common::traces_request(1, ITEMS as u64, 1).encode_to_vec();
    let decoded = glust::otlp::proto::decode_traces(&body).expect("valid body");
    assert_eq!(decoded.accepted, ITEMS as u64);
    eprintln!(
        "traces body: {} bytes, {} bytes per span",
        body.len(),
        common::span(1, 0).encoded_len()
    );
    let mut group = c.benchmark_group("decode_traces");
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function("glust", |b| {
        b.iter(|| glust::otlp::proto::decode_traces(black_box(&body)))
    });
    group.bench_function("prost", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(&body[..])))
    });
    group.finish();
}

fn bench_logs(c: &mut Criterion) {
    let body = common::logs_request(ITEMS as u64).encode_to_vec();
    let decoded = glust::otlp::proto::decode_logs(&body).expect("valid body");
    assert_eq!(decoded.accepted, ITEMS as u64);
    eprintln!(
        "logs body: {} bytes, {} bytes per record",
        body.len(),
        common::log(0).encoded_len()
    );
    let mut group = c.benchmark_group("decode_logs");
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function("glust", |b| {
        b.iter(|| glust::otlp::proto::decode_logs(black_box(&body)))
    });
    group.bench_function("prost", |b| {
        b.iter(|| ExportLogsServiceRequest::decode(black_box(&body[..])))
    });
    group.finish();
}

/// Decoded batches into stored records (`ingest::encode_records`: rkyv archives), per 100
/// spans or log records; the decode is outside the timing.
fn bench_encode(c: &mut Criterion) {
    use glust::domain::validate::Rejections;
    use glust::limits::RECORD_BYTES_MAX;
    use glust::shard::ingest::encode_records;
    let traces = common::traces_request(1, ITEMS as u64, 1).encode_to_vec();
    let logs = common::logs_request(ITEMS as u64).encode_to_vec();
    let mut group = c.benchmark_group("encode_records");
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function("spans", |b| {
        b.iter_batched(
            || glust::otlp::proto::decode_traces(&traces).expect("valid body"),
            |d| encode_records(d.batches, RECORD_BYTES_MAX, &mut Rejections::default()),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("logs", |b| {
        b.iter_batched(
            || glust::otlp::proto::decode_logs(&logs).expect("valid body"),
            |d| encode_records(d.batches, RECORD_BYTES_MAX, &mut Rejections::default()),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_traces, bench_logs, bench_encode);
criterion_main!(benches);
