//! Compiles `proto/`, the wire formats Glust speaks, without a system `protoc`: `protox`
//! parses the files in Rust, and `prost-build` generates the `google.rpc` types Glust encodes
//! (`Status`, `RetryInfo`) and Tempo's query messages (`tempopb`, whose OTLP fields are
//! `opentelemetry-proto`'s types). The OTLP messages are not generated: ingest decodes them by hand
//! (`src/otlp/proto`, the hot path), and their descriptors, written to `OUT_DIR/glust.fds`,
//! let a test check that decoder's field numbers and wire types against `proto/`.

use std::path::Path;

use prost::Message;

const PROTO_DIR: &str = "proto";

/// The files compiled; their imports come along.
const FILES: &[&str] = &[
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "tempo/tempo.proto",
];

/// The packages whose Rust types are generated. The well-known types they import
/// (`google.protobuf.Any`, `Duration`) stay in the set for prost-build to resolve; it maps
/// them to `prost_types`. The OTLP messages Tempo's embed map to `opentelemetry-proto`'s.
const GENERATED_PACKAGES: &[&str] = &["google.rpc", "tempopb"];

fn main() {
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    let out_dir = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let out_dir = Path::new(&out_dir);

    let mut fds = protox::compile(FILES, [PROTO_DIR]).unwrap_or_else(|e| panic!("proto/: {e}"));
    std::fs::write(out_dir.join("glust.fds"), fds.encode_to_vec())
        .unwrap_or_else(|e| panic!("writing glust.fds: {e}"));

    fds.file.retain(|f| {
        GENERATED_PACKAGES.contains(&f.package())
            || f.package() == "google.protobuf"
            || f.package().starts_with("opentelemetry.proto.")
    });
    prost_build::Config::new()
        .extern_path(".opentelemetry.proto", "::opentelemetry_proto::tonic")
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("generating {GENERATED_PACKAGES:?}: {e}"));
}
