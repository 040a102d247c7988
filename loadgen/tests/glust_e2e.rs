//! End to end against a real `glust` binary: every transport, both signals, `--verify` reading
//! back through the query API, and the HDR / JSON outputs.
//!
//! The binary is the one of this test's own build profile, built by the test itself with
//! `cargo build -p glust --bin glust` (`--release` when this test is an optimised build): a
//! test of a workspace member cannot name another package's binary (`CARGO_BIN_EXE_*`), and a
//! binary merely found in `target/` may be stale or from the other profile. After the
//! workspace's `cargo test` that build is incremental (the library is built; only the binary
//! links). A build that fails fails the test. `GLUST_BIN=/path/to/glust` tests that binary
//! instead.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

/// `GLUST_BIN`, else `glust` built now with this test's profile; panics when it cannot be.
fn glust_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GLUST_BIN") {
        return PathBuf::from(p);
    }
    // The cargo running this test (it sets `CARGO`), else the one that compiled it.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "glust", "--bin", "glust"])
        .arg("--manifest-path")
        .arg(&manifest)
        // The artifact's path comes back as JSON: no guessing of the target directory.
        .arg("--message-format=json-render-diagnostics");
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("cargo could not be started to build glust");
    assert!(
        out.status.success(),
        "cargo build -p glust failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "glust")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo build -p glust named no glust executable")
}

struct Glust {
    child: Child,
    otlp_http: String,
    otlp_grpc: Option<String>,
    query: String,
    _dir: tempfile::TempDir,
}

impl Drop for Glust {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path) -> Glust {
    let help = Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let has_grpc = String::from_utf8_lossy(&help.stdout).contains("--otlp-grpc");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg("--data-dir").arg(dir.path()).args([
        "--shards",
        "1",
        "--otlp-http",
        "127.0.0.1:0",
        "--query",
        "127.0.0.1:0",
    ]);
    if has_grpc {
        cmd.args(["--otlp-grpc", "127.0.0.1:0"]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("glust ready:") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("glust printed its ready line");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    Glust {
        otlp_http: field("otlp-http").expect("otlp-http address"),
        otlp_grpc: field("otlp-grpc"),
        query: field("query").expect("query address"),
        child,
        _dir: dir,
    }
}

fn loadgen(args: &[&str]) -> (i32, String) {
    let mut argv = vec!["loadgen", "--no-pin", "-q"];
    argv.extend_from_slice(args);
    let args = loadgen::cli::Args::try_parse_from(argv).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = loadgen::app::main_with(args, Arc::new(AtomicBool::new(false)), &mut out, &mut err);
    let text = String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err);
    (code, text)
}

#[test]
fn every_transport_against_a_real_glust_with_verify() {
    let bin = glust_binary();
    let t0 = Instant::now();
    let g = start(&bin);
    let q = g.query.as_str();

    // HTTP/1.1 protobuf traces, closed loop, with every output file.
    let dir = tempfile::tempdir().unwrap();
    let (hgrm, hlog, json) = (
        dir.path().join("lat.hgrm"),
        dir.path().join("lat.hlog"),
        dir.path().join("report.json"),
    );
    let (code, text) = loadgen(&[
        "--endpoint",
        &g.otlp_http,
        "--max",
        "--requests",
        "60",
        "--connections",
        "2",
        "--items-per-request",
        "50",
        "--seed",
        "101",
        "--verify",
        "--verify-ratio",
        "0.3",
        "--query",
        q,
        "--hdr-out",
        hgrm.to_str().unwrap(),
        "--hdr-log",
        hlog.to_str().unwrap(),
        "--json-out",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("answers    2xx 60 "), "{text}");
    assert!(
        text.contains("verify:") && text.contains("PASSED"),
        "{text}"
    );
    let h = std::fs::read_to_string(&hgrm).unwrap();
    assert!(h.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert!(h.contains("Total count    =           60]"), "{h}");
    let log = std::fs::read(&hlog).unwrap();
    let intervals = hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log)
        .filter(|e| {
            matches!(
                e,
                Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(_))
            )
        })
        .count();
    assert!(intervals >= 1);
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["counts"]["requests"], 60);
    assert_eq!(j["verify"]["spans"]["missing"], 0);

    // OTLP JSON logs, gzip, open loop.
    let (code, text) = loadgen(&[
        "--endpoint",
        &g.otlp_http,
        "--transport",
        "http-json",
        "--signal",
        "logs",
        "--gzip",
        "--rate",
        "5000",
        "--duration",
        "1s",
        "--items-per-request",
        "50",
        "--seed",
        "102",
        "--verify",
        "--verify-ratio",
        "0.3",
        "--query",
        q,
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("log records:") && text.contains("PASSED"),
        "{text}"
    );

    // HTTP/2 protobuf traces, zstd, several requests in flight.
    let (code, text) = loadgen(&[
        "--endpoint",
        &g.otlp_http,
        "--http2",
        "--inflight",
        "4",
        "--connections",
        "1",
        "--compression",
        "zstd",
        "--max",
        "--requests",
        "40",
        "--seed",
        "103",
        "--verify",
        "--verify-ratio",
        "0.3",
        "--query",
        q,
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("PASSED"), "{text}");

    // OTLP/gRPC, traces and logs, where this glust serves it.
    if let Some(grpc) = &g.otlp_grpc {
        for (signal, seed) in [("traces", "104"), ("logs", "105")] {
            let (code, text) = loadgen(&[
                "--endpoint",
                grpc,
                "--transport",
                "grpc",
                "--gzip",
                "--signal",
                signal,
                "--inflight",
                "2",
                "--rate",
                "4000",
                "--duration",
                "1s",
                "--seed",
                seed,
                "--verify",
                "--verify-ratio",
                "0.3",
                "--query",
                q,
            ]);
            assert_eq!(code, 0, "{text}");
            assert!(text.contains("PASSED"), "{text}");
        }
    } else {
        eprintln!("this glust serves no OTLP/gRPC: gRPC not exercised");
    }

    // The same seed again: the same trace ids are sent twice, and --verify says so.
    let (code, text) = loadgen(&[
        "--endpoint",
        &g.otlp_http,
        "--max",
        "--requests",
        "60",
        "--connections",
        "2",
        "--items-per-request",
        "50",
        "--seed",
        "101",
        "--verify",
        "--verify-ratio",
        "0.3",
        "--query",
        q,
    ]);
    assert_eq!(code, 0, "duplicates alone do not fail --verify: {text}");
    assert!(!text.contains(" 0 duplicated"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(60));
}
