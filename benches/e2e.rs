//! End to end: a real Glust server process and the bundled loadgen in this process, one pair.
//! Closed loop for peak throughput, then open loop at 80% of it, over OTLP/HTTP protobuf
//! traces; prints loadgen's reports (rates, answers, HDR latency percentiles).
//!
//! `cargo bench --bench e2e` (plain harness, not criterion: the figures are loadgen's own).
//! Environment: `E2E_DURATION` (default `10s`), `E2E_SHARDS` (default 1), `E2E_CORES` (cores
//! for loadgen, default `1`, the core beside the one shard's core 0; where there is no core 1,
//! loadgen runs unpinned).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

/// The server process: killed when the bench ends, also when an assertion fails (the
/// unwinding drops it), so no server outlives the bench.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// loadgen's core arguments: `E2E_CORES` if set, else core 1 when this process may run
/// there, else no pinning (one unpinned worker).
fn loadgen_cores() -> Vec<String> {
    if let Ok(cores) = std::env::var("E2E_CORES") {
        return vec!["--cores".into(), cores];
    }
    let available = core_affinity::get_core_ids().unwrap_or_default();
    if available.iter().any(|c| c.id == 1) {
        return vec!["--cores".into(), "1".into()];
    }
    eprintln!("e2e: no core 1 (available: {available:?}): loadgen runs unpinned");
    vec!["--cores".into(), "0".into(), "--no-pin".into()]
}

fn main() {
    let duration = std::env::var("E2E_DURATION").unwrap_or_else(|_| "10s".into());
    let shards = std::env::var("E2E_SHARDS").unwrap_or_else(|_| "1".into());
    let cores = loadgen_cores();
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
        .map(Server)
        .expect("start glust");
    let mut endpoint = String::new();
    for line in BufReader::new(server.0.stdout.take().unwrap()).lines() {
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
            "--connections",
            "8",
            "--fixed-payload",
            "-q",
            "--json-out",
        ];
        let json_s = json.to_str().unwrap().to_owned();
        argv.push(&json_s);
        argv.extend(cores.iter().map(String::as_str));
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
    drop(server);
}
