//! The whole program against loopback servers: what the report and `--json-out` say, exit
//! statuses for output files that cannot be written and for a bad `--endpoint`, and a worker
//! that cannot be pinned.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::{config, run_quiet, spawn, Reply};
use loadgen::run::Mode;

/// Runs the program on `args` (after `loadgen --no-pin -q`): exit status, stdout, stderr.
fn loadgen(args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["loadgen", "--no-pin", "-q"];
    argv.extend_from_slice(args);
    let args = loadgen::cli::Args::try_parse_from(argv).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = loadgen::app::main_with(args, Arc::new(AtomicBool::new(false)), &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

#[test]
fn the_report_and_json_say_which_exports_were_never_sent() {
    // Never answers: each attempt times out after 300 ms, so the one connection sends 3 of the
    // 100 exports due in the 500 ms run (and its 300 ms drain); 97 never leave.
    let server = spawn(Arc::new(|_| Reply::ok_after(Duration::from_secs(3600))));
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let addr = server.addr.to_string();
    let (code, out, err) = loadgen(&[
        "--endpoint",
        &addr,
        "--rate",
        "200",
        "--rate-unit",
        "requests",
        "--duration",
        "500ms",
        "--timeout",
        "300ms",
        "--connections",
        "1",
        "--json-out",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "no export was answered 2xx: {err}");

    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let requests = j["counts"]["requests"].as_u64().unwrap();
    let unsent = j["counts"]["unsent"].as_u64().unwrap();
    assert_eq!(requests + unsent, 100, "{j}");
    assert!(unsent >= 90, "{j}");
    assert_eq!(j["latency"]["count"], 100, "{j}");
    assert_eq!(j["latency_never_sent"], unsent, "{j}");
    assert_eq!(j["drain_limit_secs"], 0.3, "{j}");
    let note = j["latency_note"].as_str().unwrap();
    assert!(
        note.contains(&format!("{unsent} of the 100 exports were never sent"))
            && note.contains("lower bound"),
        "{note}"
    );
    assert!(
        j["latency"]["p50_ns"].as_u64().unwrap() >= 295_000_000,
        "{j}"
    );

    assert!(
        out.contains(&format!(
            "backlog    {unsent} exports were due but never sent (not even in the drain of up to 300ms after the end)"
        )),
        "{out}"
    );
    assert!(out.contains("a lower bound"), "{out}");
    assert!(
        out.contains(&format!(
            "(100 exports: {requests} answered, {unsent} never sent at a lower bound, from each export's intended send time"
        )),
        "{out}"
    );
}

#[test]
fn output_files_that_cannot_be_written_fail_the_run() {
    // /dev/full opens, and every write to it fails with ENOSPC.
    assert!(std::path::Path::new("/dev/full").exists());
    let server = spawn(Arc::new(|_| Reply::ok()));
    let addr = server.addr.to_string();
    // Five exports in closed loop, with the output flags given.
    let five = |outputs: &[&str]| {
        let mut args = vec![
            "--endpoint",
            &addr,
            "--max",
            "--requests",
            "5",
            "--connections",
            "1",
        ];
        args.extend_from_slice(outputs);
        loadgen(&args)
    };
    for (flag, what) in [
        ("--hdr-out", "could not write the percentile distribution"),
        ("--hdr-log", "could not write the interval log"),
        ("--json-out", "could not write the report"),
    ] {
        let (code, out, err) = five(&[flag, "/dev/full"]);
        assert_eq!(code, 1, "{flag}: {err}");
        assert!(
            err.contains(&format!("loadgen: {flag} /dev/full: {what}")),
            "{flag}: {err}"
        );
        // The run itself went through, and its report is printed.
        assert!(out.contains("answers    2xx 5 "), "{flag}: {out}");
        assert!(!out.contains("written to /dev/full"), "{flag}: {out}");
    }
    // The same runs with files that can be written pass.
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (hgrm, hlog, json) = (path("l.hgrm"), path("l.hlog"), path("r.json"));
    let (code, _, err) = five(&["--hdr-out", &hgrm, "--hdr-log", &hlog, "--json-out", &json]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn an_endpoint_with_a_path_is_refused_with_the_expected_form() {
    let (code, _, err) = loadgen(&["--max", "--endpoint", "http://127.0.0.1:4318/v1/traces"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "expected host:port, host, or http://host:port, without a path (/v1/traces here)"
        ),
        "{err}"
    );
}

#[test]
fn a_worker_that_cannot_be_pinned_is_reported() {
    // Core 1000: inside `cpu_set_t`, outside any machine this runs on.
    let server = spawn(Arc::new(|_| Reply::ok()));
    let mut cfg = config(server.addr, Mode::Closed);
    cfg.cores = vec![1000];
    cfg.max_requests = Some(3);
    let r = run_quiet(cfg);
    assert_eq!(r.totals.counts.ok(), 3, "the worker ran all the same");
    assert_eq!(r.pin_failures.len(), 1);
    assert_eq!(
        (r.pin_failures[0].worker, r.pin_failures[0].core),
        (0, 1000)
    );
    assert!(!r.pin_failures[0].error.is_empty());
}
