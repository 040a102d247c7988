//! End to end: a real Glust server process and the bundled loadgen in this process, one pair.
//! Closed loop for peak throughput, then open loop at 80% of it, over OTLP/HTTP protobuf
//! traces; prints loadgen's reports (rates, answers, HDR latency percentiles).
//!
//! `cargo bench --bench e2e` (plain harness, not criterion: the figures are loadgen's own).
//! Environment: `E2E_DURATION` (default `10s`), `E2E_SHARDS` (default 1), `E2E_CORES` (cores
//! for loadgen, default `1`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

fn main() {
    let duration = std::env::var("E2E_DURATION").unwrap_or_else(|_| "10s".into());
    let shards = std::env::var("E2E_SHARDS").unwrap_or_else(|_| "1".into());
    let cores = std::env::var("E2E_CORES").unwrap_or_else(|_| "1".into());
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_glust"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--shards", &shards])
        .args([
            "--otlp-http",
            "127.0.0.1:0",
            "--otlp-grpc",
            "127.0.0.1:0",
            "--query",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start glust");
    let mut endpoint = String::new();
    for line in BufReader::new(server.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("glust ready: ") {
            endpoint = rest
                .split(' ')
                .find_map(|w| w.strip_prefix("otlp-http="))
                .expect("otlp-http address")
                .to_owned();
            break;
        }
    }
    assert!(!endpoint.is_empty(), "glust did not become ready");

    let run = |extra: &[&str]| -> serde_json::Value {
        let json = dir.path().join("report.json");
        let mut argv = vec![
            "loadgen",
            "--endpoint",
            &endpoint,
            "--duration",
            &duration,
            "--cores",
            &cores,
            "--connections",
            "8",
            "--fixed-payload",
            "-q",
            "--json-out",
        ];
        let json_s = json.to_str().unwrap().to_owned();
        argv.push(&json_s);
        argv.extend_from_slice(extra);
        let args = loadgen::cli::Args::parse_from(argv);
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        let status =
            loadgen::app::main_with(args, Arc::new(AtomicBool::new(false)), &mut out, &mut err);
        assert_eq!(status, 0, "loadgen failed");
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
    };
    let peak = run(&["--max"]);
    let rate = (peak["items_accepted_per_sec"].as_f64().unwrap() * 0.8) as u64;
    let rate = rate.to_string();
    run(&["--rate", &rate]);
    let _ = server.kill();
    let _ = server.wait();
}
