//! Retention against the real binary: `--retention-bytes` keeps each shard's segments within
//! its share by deleting the oldest whole ones, `--retention-age` deletes those last written
//! too long ago; deleted records are gone from queries, from memory and from disk, and stay
//! gone after a restart.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Stores `rounds` requests of 100 traces of 3 spans (~120 KB each), trace ids from
/// `first_trace` on.
fn store(server: &Server, first_trace: u64, rounds: u64) {
    for r in 0..rounds {
        let req = traces_request("kept", first_trace + r * 100, 100, 3);
        assert_eq!(server.post_traces(&req).status, 200);
    }
}

fn segment_files(server: &Server) -> usize {
    std::fs::read_dir(server.data_dir().join("0"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".glust"))
        .count()
}

/// Waits (a few retention periods at most) until `glust_segments_deleted_total` is positive.
fn wait_for_deletion(server: &Server) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let deleted = metric(
            &server.get("/metrics").text(),
            "glust_segments_deleted_total",
        );
        if deleted > 0.0 || Instant::now() >= deadline {
            return deleted;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn trace_status(server: &Server, trace: u64) -> u16 {
    server
        .get(&format!("/api/v1/traces/{}", hex(&trace_id(trace))))
        .status
}

#[test]
fn retention_by_size_deletes_the_oldest_segments_and_only_them() {
    // 256 KiB test segments; a budget of 1 MiB holds about four of them.
    let mut server = Server::start_with(1, &["--retention-bytes", "1M"]);
    let oldest_at_start = metric(
        &server.get("/metrics").text(),
        "glust_oldest_data_unix_seconds",
    );
    assert!(oldest_at_start > 1.6e9, "oldest data at {oldest_at_start}");
    store(&server, 0, 30); // ~3.6 MB
    assert!(wait_for_deletion(&server) > 0.0, "nothing deleted");
    // Each retention round leaves the shard within its budget, and the active segment
    // (which may not be deleted) holds the rest: at most one segment over.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = metric(&server.get("/metrics").text(), "glust_bytes_stored");
        if stored <= (1 << 20) as f64 + (256 << 10) as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "still {stored} bytes stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The oldest traces are gone, the newest are there, whole.
    assert_eq!(trace_status(&server, 0), 404);
    assert_eq!(trace_status(&server, 2999), 200);
    let metrics = server.get("/metrics").text();
    assert!(metric(&metrics, "glust_oldest_data_unix_seconds") >= oldest_at_start);
    assert!(metric(&metrics, "glust_bytes_deleted_total") > 0.0);
    let spans = metric(&metrics, "glust_index_spans");
    assert!(
        spans < 9000.0,
        "the index still holds {spans} of 9000 spans"
    );
    assert!(
        segment_files(&server) <= 7,
        "{} segment files",
        segment_files(&server)
    );
    // What was deleted stays deleted.
    server.restart();
    assert_eq!(trace_status(&server, 0), 404);
    assert_eq!(trace_status(&server, 2999), 200);
}

#[test]
fn retention_by_age_deletes_segments_last_written_too_long_ago() {
    let mut server = Server::start_with(1, &["--retention-age", "2s", "--retention-bytes", "off"]);
    store(&server, 0, 6); // ~720 KB: several segments
    std::thread::sleep(Duration::from_millis(2500));
    store(&server, 10_000, 1);
    assert!(wait_for_deletion(&server) > 0.0, "nothing deleted");
    assert_eq!(trace_status(&server, 0), 404);
    assert_eq!(trace_status(&server, 10_050), 200);
    server.restart();
    assert_eq!(trace_status(&server, 0), 404);
}

#[test]
fn a_budget_below_two_segments_per_shard_stops_the_start() {
    let server = Server::unstarted(2, &["--retention-bytes", "600k"], &[]);
    let out = server
        .command()
        .stderr(Stdio::piped())
        .output()
        .expect("glust runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--retention-bytes 614400 leaves each of 2 shards 307200 bytes, less than two segments"
        ),
        "{err}"
    );
}
