//! Crash and restart: what was acknowledged is there after a SIGKILL, under each fsync mode;
//! SIGTERM shuts down cleanly; changing --shards keeps old data readable; the process restarts
//! itself once at start with glibc's per-thread cache enlarged, unless the operator set it;
//! one process per data directory.

mod common;

use common::*;

fn trace_count(server: &Server) -> usize {
    server.get_json("/api/v1/traces?limit=1000")["traces"]
        .as_array()
        .unwrap()
        .len()
}

fn kill_and_read_back(fsync: &str) {
    let mut server = Server::start_with(2, &["--fsync", fsync]);
    // Enough data to cross several 256 KiB segments.
    let mut sent = Vec::new();
    for batch in 0..30u64 {
        let req = traces_request("svc", batch * 10, 10, 6);
        let r = server.post_traces(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        sent.push(req);
    }
    let logs = logs_request(
        "svc",
        (0..50)
            .map(|n| log_record(n, Some(n), 9, "hello"))
            .collect(),
    );
    assert_eq!(server.post_logs(&logs).status, 200);
    server.kill();
    server.spawn();
    assert_eq!(trace_count(&server), 300);
    for (i, req) in sent.iter().enumerate().step_by(7) {
        let t = i as u64 * 10 + 3;
        let answer = server.get(&format!("/api/v1/traces/{}", hex(&trace_id(t))));
        assert_eq!(answer.status, 200);
        let got = flat_spans(&spans_of_answer(&answer.body));
        let want: Vec<_> = flat_spans(&expected_batches(req))
            .into_iter()
            .filter(|(_, _, s)| s.trace_id.0[..] == trace_id(t)[..])
            .collect();
        assert_eq!(got, want);
    }
    let l = server.get_json("/api/v1/logs?limit=1000");
    assert_eq!(
        l["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
    let segments = std::fs::read_dir(server.data_dir().join("0"))
        .unwrap()
        .count();
    assert!(
        segments > 1,
        "the test crosses segment rollovers ({segments} segments)"
    );
}

#[test]
fn acknowledged_data_survives_sigkill_fsync_always() {
    kill_and_read_back("always");
}

#[test]
fn acknowledged_data_survives_sigkill_fsync_interval() {
    kill_and_read_back("interval");
}

#[test]
fn acknowledged_data_survives_sigkill_fsync_never() {
    kill_and_read_back("never");
}

#[test]
fn sigterm_exits_zero_and_keeps_data() {
    let mut server = Server::start(2);
    assert_eq!(
        server.post_traces(&traces_request("svc", 1, 5, 3)).status,
        200
    );
    assert_eq!(server.stop(), 0, "log:\n{}", server.log());
    server.spawn();
    assert_eq!(trace_count(&server), 5);
}

/// 4 -> 2 -> 4: the segments shard 0 and 1 keep appending to after the first change must not
/// carry the old count in their header, or the second change would hide what they received.
#[test]
fn shard_count_changes_back_and_forth_lose_nothing() {
    let mut server = Server::start(4);
    assert_eq!(
        server.post_traces(&traces_request("svc", 1, 20, 2)).status,
        200
    );
    server.kill();
    server.shards = 2;
    server.spawn();
    assert_eq!(
        server.post_traces(&traces_request("svc", 21, 20, 2)).status,
        200
    );
    server.kill();
    server.shards = 4;
    server.spawn();
    for t in 1..=40 {
        let json = server.get_json(&format!("/api/v1/traces/{}", hex(&trace_id(t))));
        let spans = json["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap();
        assert_eq!(spans.len(), 2, "trace {t}");
    }
    assert_eq!(trace_count(&server), 40);
}

#[test]
fn changing_the_shard_count_keeps_old_data_readable() {
    let mut server = Server::start(2);
    assert_eq!(
        server.post_traces(&traces_request("svc", 1, 40, 2)).status,
        200
    );
    // Two shards down to one: shard 0 adopts directory 1.
    server.kill();
    server.shards = 1;
    server.spawn();
    assert_eq!(trace_count(&server), 40);
    for t in 1..=40 {
        assert_eq!(
            server
                .get(&format!("/api/v1/traces/{}", hex(&trace_id(t))))
                .status,
            200,
            "trace {t}"
        );
    }
    // New spans of old traces land next to them under the new count.
    assert_eq!(
        server.post_traces(&traces_request("svc", 41, 10, 2)).status,
        200
    );
    // One up to three: old traces live where the old hash put them, and are still found.
    server.kill();
    server.shards = 3;
    server.spawn();
    assert_eq!(trace_count(&server), 50);
    for t in 1..=50 {
        let json = server.get_json(&format!("/api/v1/traces/{}", hex(&trace_id(t))));
        let spans = json["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap();
        assert_eq!(spans.len(), 2, "trace {t}");
    }
}

/// The server's environment, as the kernel has it (after any restart of itself).
fn environ(server: &Server) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{}/environ", server.pid())).unwrap();
    raw.split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn the_process_runs_with_a_larger_malloc_tcache_unless_told_otherwise() {
    // The kernel's copy of the environment is the one the restart passed. (glibc may shorten
    // GLIBC_TUNABLES in that copy when it parses several tunables, so this test sets at most
    // one; the unit test in main.rs covers appending to the operator's.)
    let mut server = Server::start(1);
    let env = environ(&server);
    assert!(
        env.contains(&"GLIBC_TUNABLES=glibc.malloc.tcache_count=1024".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"GLUST_MALLOC_TUNED=1".to_string()), "{env:?}");
    // Restarted by its own path, so the process keeps its name.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", server.pid())).unwrap();
    assert_eq!(comm.trim_end(), "glust");
    // Same process as started (exec keeps the pid), and it serves.
    assert_eq!(
        server.post_traces(&traces_request("svc", 1, 1, 1)).status,
        200
    );
    server.kill();

    // An operator's own tcache_count is left alone: no restart.
    let mut server =
        Server::start_with_env(1, &[], &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=7")]);
    let env = environ(&server);
    assert!(
        env.contains(&"GLIBC_TUNABLES=glibc.malloc.tcache_count=7".to_string()),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|v| v.starts_with("GLUST_MALLOC_TUNED")),
        "{env:?}"
    );
    assert_eq!(
        server.post_traces(&traces_request("svc", 1, 1, 1)).status,
        200
    );
    server.kill();
}

/// Listeners use SO_REUSEPORT (one per shard on each port), which would let a second Glust of
/// the same user bind a port the first listens on and take half its connections: it must
/// refuse to start instead, naming the port.
#[test]
fn a_second_glust_on_a_port_in_use_refuses_to_start() {
    let first = Server::start(2);
    for (flag, taken) in [
        ("--otlp-http", first.otlp),
        ("--otlp-grpc", first.grpc),
        ("--query", first.query),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            ("--otlp-http", "127.0.0.1:0".to_owned()),
            ("--otlp-grpc", "127.0.0.1:0".to_owned()),
            ("--query", "127.0.0.1:0".to_owned()),
        ];
        for a in &mut args {
            if a.0 == flag {
                a.1 = taken.to_string();
            }
        }
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_glust"));
        cmd.args(["serve", "--shards", "1", "--data-dir"])
            .arg(dir.path());
        for (f, v) in &args {
            cmd.args([f, v.as_str()]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // It fails at once, before recovering storage; one still running has started.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{flag} {taken}: a second Glust started on a port in use");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{flag} {taken}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {taken}: Address already in use")),
            "{flag} {taken}: {stderr}"
        );
    }
    // The first one still serves.
    assert_eq!(first.get("/readyz").status, 200);
}

#[test]
fn a_second_glust_on_the_same_data_directory_is_refused() {
    let mut first = Server::start(1);
    assert_eq!(
        first.post_traces(&traces_request("svc", 1, 5, 2)).status,
        200
    );
    let mut second = Server::unstarted(1, &[], &[]);
    second.dir = first.dir.clone();
    let out = second
        .command()
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is in use by another glust")
            && stderr.contains(&format!("(pid {})", first.pid())),
        "{stderr}"
    );
    // The first one was not disturbed, and a kill -9 frees the directory for the next one.
    assert_eq!(trace_count(&first), 5);
    first.kill();
    first.spawn();
    assert_eq!(trace_count(&first), 5);
}
