//! Sealing against the real binary: full raw segments become sealed segments (data file and
//! sidecar), and every query answers the same; a restart reads the sidecars; kill -9 at every
//! step of sealing loses and duplicates nothing; a damaged sealed block is skipped and counted.

mod common;

use std::time::{Duration, Instant};

use common::*;
use glust::seal::write::{PAUSE_ENV, STEPS};

/// Stores `rounds` requests of 100 traces of 3 spans (~120 KB each), and a log request per
/// round, trace ids from `first` on.
fn store(server: &Server, first: u64, rounds: u64) {
    for r in 0..rounds {
        let req = traces_request("sealed", first + r * 100, 100, 3);
        assert_eq!(server.post_traces(&req).status, 200);
        let logs = (0..20)
            .map(|i| {
                log_record(
                    first + r * 100 + i,
                    Some(first + r * 100 + i),
                    9,
                    "hello sealed world",
                )
            })
            .collect();
        assert_eq!(server.post_logs(&logs_request("sealed", logs)).status, 200);
    }
}

fn files(server: &Server, ext: &str) -> usize {
    std::fs::read_dir(server.data_dir().join("0"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(ext))
        .count()
}

fn wait_metric_at_least(server: &Server, name: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = metric(&server.get("/metrics").text(), name);
        if v >= at_least || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spans_of_trace(server: &Server, trace: u64) -> usize {
    let r = server.get(&format!("/api/v1/traces/{}", hex(&trace_id(trace))));
    if r.status == 404 {
        return 0;
    }
    assert_eq!(r.status, 200);
    spans_of_answer(r.text().as_bytes())
        .iter()
        .map(|b| b.spans.len())
        .sum()
}

/// Every one of the `rounds * 100` traces has its 3 spans, once; the searches find them.
fn assert_all_there(server: &Server, rounds: u64) {
    for t in (0..rounds * 100).step_by(37) {
        assert_eq!(spans_of_trace(server, t), 3, "trace {t}");
    }
    let found = server.get_json("/api/v1/traces?service=sealed&limit=1000");
    let traces = found["traces"].as_array().unwrap();
    assert_eq!(traces.len() as u64, (rounds * 100).min(1000));
    assert!(
        traces.iter().all(|t| t["spanCount"] == 3),
        "{:?}",
        traces.first()
    );
    let logs = server.get_json("/api/v1/logs?service=sealed&contains=sealed&limit=1000");
    assert_eq!(log_records(&logs), rounds * 20);
}

fn log_records(answer: &serde_json::Value) -> u64 {
    let mut n = 0;
    for r in answer["resourceLogs"].as_array().unwrap() {
        for s in r["scopeLogs"].as_array().unwrap() {
            n += s["logRecords"].as_array().unwrap().len() as u64;
        }
    }
    n
}

#[test]
fn full_segments_are_sealed_and_served_as_before_and_after_a_restart() {
    let mut server = Server::start(1);
    store(&server, 0, 12);
    let sealed = wait_metric_at_least(&server, "glust_segments_sealed_total", 3.0);
    assert!(sealed >= 3.0, "segments sealed: {sealed}\n{}", server.log());
    assert!(files(&server, ".sealed") >= 3 && files(&server, ".idx") >= 3);
    let text = server.get("/metrics").text();
    assert!(metric(&text, "glust_sealed_spans") > 0.0);
    assert!(metric(&text, "glust_sealed_bytes") > 0.0);
    assert_all_there(&server, 12);
    let services = server.get_json("/api/v1/services");
    assert!(services.to_string().contains("sealed"), "{services}");

    // A clean stop and a kill: the sidecars are read, the heads replayed.
    server.stop();
    server.spawn();
    assert_all_there(&server, 12);
    server.restart();
    assert_all_there(&server, 12);
    let held = metric(&server.get("/metrics").text(), "glust_sealed_segments");
    assert!(
        held >= 3.0,
        "sealed segments held after the restart: {held}"
    );
}

#[test]
fn a_kill_at_every_step_of_sealing_loses_and_duplicates_nothing() {
    for step in STEPS {
        let mut server = Server::start_with_env(1, &[], &[(PAUSE_ENV, step)]);
        store(&server, 0, 6);
        let deadline = Instant::now() + Duration::from_secs(30);
        let marker = format!("sealing paused at {step}");
        while !server.log().contains(&marker) {
            assert!(
                Instant::now() < deadline,
                "no pause at {step}:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server.kill();
        server.env.clear();
        server.spawn();
        assert_all_there(&server, 6);
        // And once sealing has run to its end again: every full segment sealed, none being
        // sealed (its files would still be `.tmp`).
        wait_metric_at_least(&server, "glust_segments_sealed_total", 1.0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(&server.get("/metrics").text(), "glust_segments") > 1.0 {
            assert!(
                Instant::now() < deadline,
                "step {step}: sealing did not finish"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_all_there(&server, 6);
        assert_eq!(files(&server, ".tmp"), 0, "step {step}");
    }
}

#[test]
fn a_damaged_sealed_block_is_skipped_and_counted_never_served_wrong() {
    let mut server = Server::start(1);
    store(&server, 0, 8);
    wait_metric_at_least(&server, "glust_segments_sealed_total", 2.0);
    server.stop();
    let dir = server.data_dir().join("0");
    let first = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sealed"))
        .min()
        .unwrap();
    // Flip bytes inside the first block (past the 64-byte header and the 16-byte frame).
    let mut bytes = std::fs::read(&first).unwrap();
    for b in &mut bytes[200..232] {
        *b ^= 0x5a;
    }
    std::fs::write(&first, &bytes).unwrap();
    server.spawn();
    let found = server.get_json("/api/v1/traces?service=sealed&limit=1000");
    let traces = found["traces"].as_array().unwrap();
    assert!(
        !traces.is_empty() && (traces.len() as u64) < 800,
        "{}",
        traces.len()
    );
    // A trace whose spans came in two records may have had one in the damaged block.
    for t in traces {
        let spans = t["spanCount"].as_u64().unwrap();
        assert!((1..=3).contains(&spans), "{t}");
    }
    let damaged = metric(
        &server.get("/metrics").text(),
        "glust_sealed_blocks_damaged_total",
    );
    assert!(damaged >= 1.0, "damage counted: {damaged}");
    assert!(server.log().contains("is damaged"), "and logged");
}

/// The sealed data files of shard 0, oldest first.
fn sealed_files(server: &Server) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(server.data_dir().join("0"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sealed"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_damaged_or_missing_sidecar_is_rebuilt_from_its_data_file() {
    let mut server = Server::start(1);
    store(&server, 0, 8);
    wait_metric_at_least(&server, "glust_segments_sealed_total", 2.0);
    server.stop();
    let data = sealed_files(&server);
    assert!(data.len() >= 2, "{data:?}");
    let (damaged, missing) = (data[0].with_extension("idx"), data[1].with_extension("idx"));
    let mut bytes = std::fs::read(&damaged).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&damaged, &bytes).unwrap();
    std::fs::remove_file(&missing).unwrap();

    server.spawn();
    // Every record is served again: the data files were intact.
    assert_all_there(&server, 8);
    let text = server.get("/metrics").text();
    assert_eq!(metric(&text, "glust_sealed_segments_damaged_total"), 2.0);
    assert_eq!(metric(&text, "glust_sealed_blocks_damaged_total"), 0.0);
    assert!(
        server.log().contains("rebuilt from its data file"),
        "logged"
    );
    assert!(missing.exists() && damaged.exists());
    // The rebuilt pairs open as any other.
    server.stop();
    server.spawn();
    assert_all_there(&server, 8);
    let text = server.get("/metrics").text();
    assert_eq!(metric(&text, "glust_sealed_segments_damaged_total"), 0.0);
}

#[test]
fn a_truncated_sealed_file_keeps_its_intact_blocks_and_counts_the_rest() {
    let mut server = Server::start(1);
    store(&server, 0, 8);
    wait_metric_at_least(&server, "glust_segments_sealed_total", 2.0);
    let before = server.get_json("/api/v1/traces?service=sealed&limit=1000")["traces"]
        .as_array()
        .unwrap()
        .len();
    server.stop();
    let first = sealed_files(&server)[0].clone();
    let len = std::fs::metadata(&first).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len * 6 / 10)
        .unwrap();

    server.spawn();
    let found = server.get_json("/api/v1/traces?service=sealed&limit=1000");
    let traces = found["traces"].as_array().unwrap();
    assert!(
        !traces.is_empty() && traces.len() < before,
        "{} of {before}",
        traces.len()
    );
    for t in traces {
        let spans = t["spanCount"].as_u64().unwrap();
        assert!((1..=3).contains(&spans), "{t}");
    }
    let text = server.get("/metrics").text();
    assert_eq!(metric(&text, "glust_sealed_segments_damaged_total"), 1.0);
    assert!(metric(&text, "glust_sealed_blocks_damaged_total") >= 1.0);
    // Logs were in the file's last blocks: the part cut away is not served, the rest is.
    let logs = server.get_json("/api/v1/logs?service=sealed&contains=sealed&limit=1000");
    assert!(log_records(&logs) < 8 * 20);
}

#[test]
fn a_sealing_backlog_past_its_bound_refuses_appends_retryably() {
    // Sealing stopped for good at its first segment: full segments pile up.
    let server = Server::start_with_env(
        1,
        &["--seal-backlog-bytes", "600k"],
        &[(PAUSE_ENV, STEPS[0])],
    );
    let mut stored = 0;
    let refused = loop {
        assert!(stored < 40, "never refused:\n{}", server.log());
        let req = traces_request("sealed", stored * 100, 100, 3);
        let r = server.post_traces(&req);
        if r.status != 200 {
            break r;
        }
        stored += 1;
    };
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.headers.contains_key("retry-after"));
    assert!(
        refused.text().contains("sealing is behind"),
        "{}",
        refused.text()
    );
    // 600k of full 256k segments: three of them, about 2 requests each.
    assert!((4..=10).contains(&stored), "{stored} requests stored first");
    // What was acknowledged is served; the refused request left nothing.
    for t in 0..stored * 100 {
        assert_eq!(spans_of_trace(&server, t), 3, "trace {t}");
    }
    assert_eq!(spans_of_trace(&server, stored * 100), 0);
}

/// Files of shard directory `dir` whose names end with `ext`.
fn files_in(server: &Server, dir: u32, ext: &str) -> usize {
    std::fs::read_dir(server.data_dir().join(dir.to_string()))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(ext))
        .count()
}

#[test]
fn directories_adopted_after_lowering_the_shard_count_are_sealed_and_retained() {
    // Two shards with sealing held before its first step: both directories keep raw segments.
    let mut server = Server::start_with_env(2, &[], &[(PAUSE_ENV, STEPS[0])]);
    store(&server, 0, 12);
    let raw_in_1 = files_in(&server, 1, ".glust");
    assert!(raw_in_1 >= 3, "raw segments in directory 1: {raw_in_1}");
    assert_eq!(files_in(&server, 1, ".sealed"), 0);

    // One shard: shard 0 adopts directory 1 and seals every segment in it (none is its head).
    server.kill();
    server.shards = 1;
    server.env.clear();
    server.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_in(&server, 1, ".glust") > 0 {
        assert!(
            Instant::now() < deadline,
            "directory 1 not sealed\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(files_in(&server, 1, ".sealed"), raw_in_1);
    assert_eq!(files_in(&server, 1, ".idx"), raw_in_1);
    assert_all_there(&server, 12);
    server.restart();
    assert_all_there(&server, 12);

    // A budget, then newer data into shard 0 kept raw (sealing held again), far more than the
    // budget: the oldest segments go first wherever they are, so directory 1's (written
    // first) go entirely. (Sealed, the whole store would fit: sealing makes it ~6 times
    // smaller.)
    store(&server, 1200, 12);
    server.kill();
    server.extra = vec!["--retention-bytes".into(), "512k".into()];
    server.env = vec![(PAUSE_ENV.into(), STEPS[0].into())];
    server.spawn();
    store(&server, 2400, 12);
    let newest = 2400 + 12 * 100 - 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = server.get("/metrics").text();
        let held = metric(&text, "glust_bytes_stored") + metric(&text, "glust_sealed_bytes");
        if held <= (512 << 10) as f64 + (256 << 10) as f64 && files_in(&server, 1, ".sealed") == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {held} bytes held, {} sealed in directory 1\n{}",
            files_in(&server, 1, ".sealed"),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(files_in(&server, 1, ".idx"), 0);
    assert_eq!(files_in(&server, 1, ".glust"), 0);
    for t in (0..1200).step_by(37) {
        assert_eq!(
            spans_of_trace(&server, t),
            0,
            "trace {t} outlived retention"
        );
    }
    assert_eq!(spans_of_trace(&server, newest), 3);
}
