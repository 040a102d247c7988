//! Generates the `google.rpc` types loadgen decodes (`Status`, `RetryInfo`, from
//! `grpc-status-details-bin`) from the server's `proto/`, without a system `protoc` (see the
//! server's build.rs).

const PROTO_DIR: &str = "../proto";
const FILES: &[&str] = &["google/rpc/status.proto", "google/rpc/error_details.proto"];

fn main() {
    println!("cargo:rerun-if-changed={PROTO_DIR}/google/rpc");
    let fds = protox::compile(FILES, [PROTO_DIR]).unwrap_or_else(|e| panic!("../proto: {e}"));
    // The set holds google.rpc and the well-known types it imports, which prost-build maps
    // to prost_types and does not generate.
    prost_build::Config::new()
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("generating google.rpc: {e}"));
}
