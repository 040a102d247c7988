//! Search against the real binary: what a search reads is what its answer needs. Blocks read
//! are counted by `glust_sealed_blocks_read_total`.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Stores `rounds` requests of 100 traces of 3 spans (~120 KB each), trace ids (and starts,
/// a second apart) from `first` on.
fn store(server: &Server, service: &str, first: u64, rounds: u64) {
    for r in 0..rounds {
        let req = traces_request(service, first + r * 100, 100, 3);
        assert_eq!(server.post_traces(&req).status, 200);
    }
}

fn metric_now(server: &Server, name: &str) -> f64 {
    metric(&server.get("/metrics").text(), name)
}

/// Waits until every full raw segment is sealed: only the head is left.
fn wait_sealed(server: &Server, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_now(server, "glust_segments_sealed_total") < at_least
        || metric_now(server, "glust_segments") > 1.0
    {
        assert!(Instant::now() < deadline, "not sealed\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn blocks_read(server: &Server) -> f64 {
    metric_now(server, "glust_sealed_blocks_read_total")
}

/// The trace numbers of a search's answer, in its order.
fn found(server: &Server, query: &str) -> Vec<u64> {
    server.get_json(&format!("/api/v1/traces?{query}"))["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let id = t["traceId"].as_str().unwrap();
            u64::from_str_radix(&id[16..], 16).unwrap()
        })
        .collect()
}

#[test]
fn a_search_whose_newest_matches_lie_in_the_head_reads_no_sealed_block() {
    let server = Server::start(1);
    store(&server, "old", 0, 12);
    wait_sealed(&server, 3.0);
    // Newer traces, in the head.
    store(&server, "new", 5000, 1);
    let before = blocks_read(&server);
    assert_eq!(
        found(&server, "limit=5"),
        vec![5099, 5098, 5097, 5096, 5095]
    );
    assert_eq!(
        found(&server, "limit=20&minDuration=1ms"),
        (5080..5100).rev().collect::<Vec<_>>()
    );
    assert_eq!(blocks_read(&server), before, "the head alone answers");

    // The same limit reaching into sealed data reads it, and stops at the newest segments.
    let answer = found(&server, "limit=500");
    assert_eq!(
        answer,
        (800..1200).chain(5000..5100).rev().collect::<Vec<_>>()
    );
    let some = blocks_read(&server) - before;
    assert!(some > 0.0, "no sealed block read");
    let before = blocks_read(&server);
    assert_eq!(found(&server, "service=old&limit=1000").len(), 1000);
    let all = blocks_read(&server) - before;
    assert!(
        all > some,
        "a search of most of the store read {all} blocks, one of its newest {some}"
    );
}

#[test]
fn a_search_before_an_end_deep_in_sealed_data_reads_the_blocks_there_not_the_store() {
    // Segments of some 20,000 spans: five blocks each, in order of their traces' starts.
    let server = Server::start_with(1, &["--segment-bytes", "8m"]);
    store(&server, "svc", 0, 200);
    wait_sealed(&server, 2.0);
    let start_of = |trace: u64| 1_700_000_000_000_000_000u64 + trace * 1_000_000_000;
    let before = blocks_read(&server);
    assert_eq!(
        found(&server, &format!("end={}&limit=5", start_of(8000))),
        vec![8000, 7999, 7998, 7997, 7996]
    );
    let read = blocks_read(&server) - before;
    // The block holding trace 8000 (twice: searched, then summarised), and the one before it
    // if 7996 lies there.
    assert!(
        (1.0..=4.0).contains(&read),
        "{read} blocks read for the five traces before an end"
    );
    // Filters that the sidecars rule out read nothing, however much lies before the end.
    let before = blocks_read(&server);
    assert!(found(
        &server,
        &format!("end={}&service=none&limit=5", start_of(8000))
    )
    .is_empty());
    assert_eq!(
        blocks_read(&server),
        before,
        "no segment names service none"
    );
    let before = blocks_read(&server);
    assert!(found(
        &server,
        &format!("end={}&minDuration=1h&limit=5", start_of(8000))
    )
    .is_empty());
    assert_eq!(
        blocks_read(&server),
        before,
        "no block holds an hour-long span"
    );
}
