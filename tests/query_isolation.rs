//! A search that scans the whole index runs on the shard's thread between its ingest work: an
//! export sent while a long search runs is answered long before the search is.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Spans are stored in batches of this many requests until the search takes [`SEARCH_MIN`]
/// (seconds in a debug build: scanning every span and reading its record).
const BATCH_REQUESTS: u64 = 25;
const TRACES_PER_REQUEST: u64 = 50;
const SPANS_PER_TRACE: u64 = 20;
const SEARCH_MIN: Duration = Duration::from_millis(1500);
/// At most this many batches (3M spans), should the machine be that fast: sealed blocks are
/// scanned at millions of spans a second.
const BATCHES_MAX: u64 = 120;

/// Every span is visited and its record read: every block holds both status codes (each
/// trace has spans of codes 200 to 219), so no filter rules one out, but no span has both.
const SEARCH: &str =
    "/api/v1/traces?attr=http.response.status_code=200&attr=http.response.status_code=201&limit=5";

#[test]
fn an_export_is_answered_while_a_long_search_runs() {
    let server = Server::start_with(1, &[]);
    let mut requests = 0;
    for _ in 0..BATCHES_MAX {
        for _ in 0..BATCH_REQUESTS {
            let first = 1 + requests * TRACES_PER_REQUEST;
            let req = traces_request("iso", first, TRACES_PER_REQUEST, SPANS_PER_TRACE);
            assert_eq!(server.post_traces(&req).status, 200);
            requests += 1;
        }
        let started = Instant::now();
        assert_eq!(server.get(SEARCH).status, 200);
        if started.elapsed() >= SEARCH_MIN {
            break;
        }
    }
    let stored = requests * TRACES_PER_REQUEST * SPANS_PER_TRACE;

    let url = server.query_url(SEARCH);
    let searcher = std::thread::spawn(move || {
        let started = Instant::now();
        let r = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap()
            .get(url)
            .send()
            .expect("search");
        assert_eq!(r.status(), 200);
        let body = r.text().unwrap();
        (started, Instant::now(), body)
    });

    // The search has started scanning (it takes seconds) when the export is sent.
    std::thread::sleep(SEARCH_MIN / 5);
    let sent = Instant::now();
    let extra = traces_request("iso", 1_000_000, 1, 3);
    assert_eq!(server.post_traces(&extra).status, 200);
    let answered = Instant::now();

    let (search_started, search_done, body) = searcher.join().unwrap();
    assert_eq!(body, r#"{"traces":[]}"#);
    let search_took = search_done - search_started;
    // The test only shows something if the search outlasts the export by far.
    assert!(
        search_took >= SEARCH_MIN / 2,
        "the search of {stored} spans took {search_took:?}: too short to tell; store more spans"
    );
    assert!(
        answered + SEARCH_MIN / 5 < search_done,
        "the export ({:?}) was answered only {:?} before the search finished ({search_took:?}): \
         the search held the shard",
        answered - sent,
        search_done.saturating_duration_since(answered),
    );

    // Searches beyond SEARCHES_MAX (4) at once are refused with a 503, not queued.
    let searchers: Vec<_> = (0..6)
        .map(|_| {
            let url = server.query_url(SEARCH);
            std::thread::spawn(move || {
                reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(600))
                    .build()
                    .unwrap()
                    .get(url)
                    .send()
                    .expect("search")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses: Vec<u16> = searchers.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 503, 503],
        "six searches at once"
    );
    assert_eq!(server.get(SEARCH).status, 200, "and one after them");

    // The export is stored and found.
    let found = server.get_json("/api/v1/traces?service=iso&limit=1000");
    assert!(found["traces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["traceId"] == hex(&trace_id(1_000_000))));
}
