//! End to end against a real `glust` binary, when one is built (`GLUST_BIN`, else the
//! workspace's `target/{debug,release}/glust`, the newer of the two): every transport, both
//! signals, `--verify` reading back through the query API, and the HDR / JSON outputs.
//! Without a binary the test says so and passes (build it with `cargo build -p glust`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

fn glust_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GLUST_BIN") {
        return Some(PathBuf::from(p));
    }
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("glust"))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
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

fn start(bin: &PathBuf) -> Glust {
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
    let Some(bin) = glust_binary() else {
        // In CI the workspace's `cargo test` always builds glust: a missing binary is a failure
        // there, not a reason to skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "no glust binary in CI (set GLUST_BIN or build the workspace)"
        );
        eprintln!("SKIPPED: no glust binary (set GLUST_BIN or `cargo build -p glust`)");
        return;
    };
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
