//! Decoding of OTLP/protobuf request bodies: Glust's borrowing decoder against prost's owned
//! decoding of the same bytes (which does no validation and builds no domain values).
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

criterion_group!(benches, bench_traces, bench_logs);
criterion_main!(benches);
