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

/// Waits until every full raw segment is sealed: only the heads are left, one a shard.
fn wait_sealed(server: &Server, at_least: f64) {
    wait_sealed_shards(server, at_least, 1.0)
}

fn wait_sealed_shards(server: &Server, at_least: f64, shards: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_now(server, "glust_segments_sealed_total") < at_least
        || metric_now(server, "glust_segments") > shards
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

/// Milliseconds every search waits after each slice and before each sealed block: searches
/// that last whatever the machine (`glust::shard::query`'s test hook).
const SEARCH_PAUSE_ENV: &str = "GLUST_TEST_SEARCH_PAUSE_MS";

/// A two-shard store of some twenty sealed segments and a head, whose searches wait 40 ms a
/// block: a search of all of it lasts most of a second.
fn slow_store() -> Server {
    let server = Server::start_with_env(2, &[], &[(SEARCH_PAUSE_ENV, "40")]);
    store(&server, "svc", 0, 40);
    wait_sealed_shards(&server, 8.0, 2.0);
    server
}

#[test]
fn a_search_past_its_timeout_answers_what_it_found_marked_partial() {
    let server = slow_store();
    let started = Instant::now();
    let full = server.get_json("/api/v1/traces?limit=1000");
    let whole = started.elapsed();
    assert!(full.get("partial").is_none(), "{full}");
    let full = found(&server, "limit=1000");
    assert_eq!(full.len(), 1000);

    let started = Instant::now();
    let doc = server.get_json("/api/v1/traces?limit=1000&timeout=150ms");
    let took = started.elapsed();
    assert_eq!(doc["partial"], true, "{doc}");
    assert!(
        took < whole,
        "a 150 ms search took {took:?}, the whole one {whole:?}"
    );
    let partial = found(&server, "limit=1000&timeout=150ms");
    assert!(partial.len() < full.len(), "{} traces", partial.len());
    // What it holds is right: the newest of what it found, each as the whole search has it.
    assert!(partial.iter().all(|t| full.contains(t)));
    assert!(metric_now(&server, "glust_searches_timed_out_total") >= 2.0);

    let logs = server.get_json("/api/v1/logs?limit=1000&timeout=1ms");
    assert!(logs.get("partial").is_none_or(|p| p == true), "{logs}");
    for bad in ["timeout=0s", "timeout=6m", "timeout=soon"] {
        let r = server.get(&format!("/api/v1/traces?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.text().contains("timeout"), "{bad}: {}", r.text());
    }
}

#[test]
fn a_search_whose_client_went_away_is_cancelled_on_every_shard() {
    use std::io::Write;
    let server = slow_store();
    let mut client = std::net::TcpStream::connect(server.query).unwrap();
    write!(
        client,
        "GET /api/v1/traces?limit=1000&timeout=5m HTTP/1.1\r\nHost: glust\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    drop(client);
    // Both shards' parts stop: the one on the shard that took the request with it, the
    // other at its next block.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_now(&server, "glust_searches_cancelled_total") < 2.0 {
        assert!(
            Instant::now() < deadline,
            "cancelled: {}\n{}",
            metric_now(&server, "glust_searches_cancelled_total"),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric_now(&server, "glust_searches_timed_out_total"), 0.0);
    // And the shards answer the next search whole.
    assert_eq!(found(&server, "limit=10").len(), 10);
}

#[test]
fn the_operations_of_a_service_come_from_the_sidecars_and_the_head() {
    let server = Server::start(2);
    // "old" spans named op-0..op-2, sealed; "new" ones op-0..op-4 and one "GET /a b", in the
    // head.
    store(&server, "old", 0, 12);
    wait_sealed_shards(&server, 2.0, 2.0);
    let mut req = traces_request("new", 90_000, 10, 5);
    req.resource_spans[0].scope_spans[0].spans[0].name = "GET /a b".into();
    assert_eq!(server.post_traces(&req).status, 200);
    let operations = |service: &str| -> Vec<String> {
        let doc = server.get_json(&format!("/api/v1/services/{service}/operations"));
        doc["operations"]
            .as_array()
            .unwrap_or_else(|| panic!("{doc}"))
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    };
    let before = blocks_read(&server);
    assert_eq!(operations("old"), ["op-0", "op-1", "op-2"]);
    assert_eq!(
        operations("new"),
        ["GET /a b", "op-0", "op-1", "op-2", "op-3", "op-4"]
    );
    assert!(operations("nobody").is_empty());
    assert_eq!(
        blocks_read(&server),
        before,
        "answered without reading a block"
    );
    assert_eq!(server.get("/api/v1/services//operations").status, 404);
}

#[test]
fn each_trace_of_an_answer_carries_its_matching_spans_and_its_services() {
    let server = Server::start(1);
    store(&server, "old", 0, 12);
    wait_sealed(&server, 3.0);
    store(&server, "new", 5000, 1);
    let start_of = |trace: u64| 1_700_000_000_000_000_000u64 + trace * 1_000_000_000;
    let span_hex = |trace: u64, n: u64| format!("{:016x}", (trace * 1000 + n) | 1 << 63);
    // Trace 5099 lies in the head, trace 100 in a sealed segment: each has spans op-0..op-2,
    // the odd one with status error.
    for (service, trace, window) in [
        ("new", 5099, String::new()),
        // The window ends after the trace's last span: all three match.
        ("old", 100, format!("&end={}", start_of(100) + 10_000)),
    ] {
        let answer = |q: &str| {
            let doc = server.get_json(&format!("/api/v1/traces?limit=1{window}{q}"));
            let t = doc["traces"][0].clone();
            assert_eq!(
                t["traceId"].as_str().unwrap()[16..],
                format!("{trace:016x}"),
                "{doc}"
            );
            t
        };
        let t = answer("");
        assert_eq!(
            t["serviceStats"],
            serde_json::json!({ service: {"spanCount": 3, "errorCount": 1} }),
            "{t}"
        );
        let set = &t["spanSets"][0];
        assert_eq!(set["matched"], 3, "{t}");
        let spans = set["spans"].as_array().unwrap();
        let ids: Vec<&str> = spans
            .iter()
            .map(|s| s["spanID"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (0..3).map(|n| span_hex(trace, n)).collect();
        assert_eq!(ids, want, "{t}");
        assert_eq!(spans[1]["name"], "op-1");
        assert_eq!(
            spans[1]["startTimeUnixNano"],
            (start_of(trace) + 1000).to_string()
        );
        assert_eq!(spans[1]["durationNanos"], "5000001");

        let t = answer("&attr=http.response.status_code=201&spss=1");
        let set = &t["spanSets"][0];
        assert_eq!(set["matched"], 1, "{t}");
        assert_eq!(set["spans"][0]["spanID"], span_hex(trace, 1).as_str());
        assert_eq!(
            set["spans"][0]["attributes"],
            serde_json::json!([{"key": "http.response.status_code", "value": {"stringValue": "201"}}])
        );
        let t = answer("&spss=1");
        assert_eq!(t["spanSets"][0]["matched"], 3);
        assert_eq!(t["spanSets"][0]["spans"].as_array().unwrap().len(), 1);
        let t = answer("&spss=0");
        assert!(t["spanSets"][0]["spans"].as_array().unwrap().is_empty());
    }
    assert_eq!(server.get("/api/v1/traces?spss=101").status, 400);
}

/// Stores `rounds` requests of 100 traces as [`store`] does, the span `n` of trace `needle`
/// carrying `order.id=ord-4711` and `priority=7`.
fn store_with_needle(server: &Server, first: u64, rounds: u64, needle: u64) {
    use opentelemetry_proto::tonic::common::v1::any_value;
    for r in 0..rounds {
        let mut req = traces_request("svc", first + r * 100, 100, 3);
        for span in &mut req.resource_spans[0].scope_spans[0].spans {
            if span.trace_id == trace_id(needle) && span.span_id == span_id(needle * 1000 + 1) {
                span.attributes.push(kv("order.id", s("ord-4711")));
                span.attributes
                    .push(kv("priority", any_value::Value::IntValue(7)));
            }
        }
        assert_eq!(server.post_traces(&req).status, 200);
    }
}

#[test]
fn a_needle_in_the_oldest_segment_is_found_by_reading_only_its_block() {
    // Segments of some 20,000 spans, five blocks each: the needle's is one of ~50.
    let mut server = Server::start_with(1, &["--segment-bytes", "8m"]);
    store_with_needle(&server, 0, 200, 42);
    wait_sealed(&server, 2.0);
    for round in ["sealed", "after a restart"] {
        let before = blocks_read(&server);
        assert_eq!(
            found(&server, "attr=order.id=ord-4711&limit=5"),
            vec![42],
            "{round}"
        );
        // Searched, then summarised: its block twice, and a false positive now and then.
        let read = blocks_read(&server) - before;
        assert!(
            (2.0..=4.0).contains(&read),
            "{read} blocks read for a needle ({round})"
        );
        // Numbers by their value; both pairs on the one span.
        let before = blocks_read(&server);
        assert_eq!(
            found(&server, "attr=priority=07&attr=order.id=ord-4711"),
            vec![42]
        );
        assert!(blocks_read(&server) - before <= 4.0, "{round}");
        // A needle nobody has reads nothing, or a block for a false positive.
        let before = blocks_read(&server);
        assert!(found(&server, "attr=order.id=ord-9999").is_empty());
        assert!(found(&server, "attr=priority=7&attr=order.id=ord-1").is_empty());
        let read = blocks_read(&server) - before;
        assert!(
            read <= 1.0,
            "{read} blocks read for absent needles ({round})"
        );
        // Common values are still found in every block that holds them.
        assert_eq!(
            found(&server, "attr=http.request.method=GET&limit=1000").len(),
            1000
        );
        server.restart();
    }
    assert_eq!(
        metric_now(&server, "glust_sealed_blocks_damaged_total"),
        0.0
    );
}

#[test]
fn a_log_needle_is_found_by_reading_only_its_block() {
    let server = Server::start_with(1, &["--segment-bytes", "8m"]);
    let filler = "GET /api/v1/users served in 12 ms by worker-3 after cache lookup miss";
    for r in 0..100u64 {
        let records = (0..1000)
            .map(|i| {
                let n = r * 1000 + i;
                match n {
                    1234 => log_record(n, Some(77), 17, "order 8f3a2b9c failed: card declined"),
                    _ => log_record(n, Some(10_000 + n / 10), 9, filler),
                }
            })
            .collect();
        assert_eq!(server.post_logs(&logs_request("svc", records)).status, 200);
    }
    wait_sealed(&server, 2.0);
    let logs = |query: &str| -> usize {
        server.get_json(&format!("/api/v1/logs?{query}"))["resourceLogs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["scopeLogs"].as_array().unwrap())
            .map(|s| s["logRecords"].as_array().unwrap().len())
            .sum()
    };
    for (query, hits) in [
        ("contains=8f3a2b9c", 1),
        ("contains=card+declined&limit=5", 1),
        (&format!("traceId={}", hex(&trace_id(77))) as &str, 1),
        ("contains=8f3a", 0),
        ("contains=order+8f3a2b9c+failed%3A", 1),
        ("contains=no+such+words", 0),
    ] {
        let before = blocks_read(&server);
        assert_eq!(logs(query), hits, "{query}");
        let read = blocks_read(&server) - before;
        assert!(read <= 2.0, "{read} blocks read for {query}");
    }
    // A word everywhere still reads what it must: the records before record 5000's time lie
    // in the oldest segment.
    let before = blocks_read(&server);
    assert_eq!(logs("contains=worker&end=1700000005000000000&limit=10"), 10);
    assert!(blocks_read(&server) - before >= 1.0);
}

#[test]
fn tags_and_their_values_come_from_the_sidecars_and_the_head_without_reading_a_block() {
    let mut server = Server::start(2);
    // "old": 3,600 spans, sealed but for the heads' share; "new": 50 spans and 20 log
    // records in the head.
    store(&server, "old", 0, 12);
    wait_sealed_shards(&server, 2.0, 2.0);
    let mut req = traces_request("new", 90_000, 10, 5);
    for span in &mut req.resource_spans[0].scope_spans[0].spans {
        span.attributes.push(kv("deploy", s("canary")));
        span.attributes.push(kv("route/x+y", s("v")));
    }
    assert_eq!(server.post_traces(&req).status, 200);
    let records = (0..20)
        .map(|n| {
            let mut r = log_record(n, None, 9, "hello");
            let user = if n % 4 == 0 { "ann" } else { "bob" };
            r.attributes.push(kv("user", s(user)));
            r
        })
        .collect();
    assert_eq!(server.post_logs(&logs_request("new", records)).status, 200);

    fn tags(server: &Server, query: &str) -> Vec<(String, Vec<String>)> {
        let doc = server.get_json(&format!("/api/v1/tags?{query}"));
        doc["scopes"]
            .as_array()
            .unwrap_or_else(|| panic!("{doc}"))
            .iter()
            .map(|s| {
                let keys = s["tags"].as_array().unwrap();
                let keys = keys.iter().map(|k| k.as_str().unwrap().to_owned());
                (s["name"].as_str().unwrap().to_owned(), keys.collect())
            })
            .collect()
    }
    fn values(server: &Server, key: &str, query: &str) -> Vec<(String, String, u64)> {
        let doc = server.get_json(&format!("/api/v1/tags/{key}/values?{query}"));
        doc["values"]
            .as_array()
            .unwrap_or_else(|| panic!("{doc}"))
            .iter()
            .map(|v| {
                let text = v["value"].as_str().unwrap().to_owned();
                (
                    text,
                    v["type"].as_str().unwrap().to_owned(),
                    v["count"].as_u64().unwrap(),
                )
            })
            .collect()
    }
    let strings = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    let span_keys = [
        "deploy",
        "http.request.method",
        "http.response.status_code",
        "list",
        "map",
        "payload",
        "ratio",
        "route/x+y",
        "sampled",
    ];
    for round in ["first", "after a restart"] {
        let before = blocks_read(&server);
        assert_eq!(
            tags(&server, ""),
            vec![
                ("resource".into(), strings(&["host.name", "service.name"])),
                ("span".into(), strings(&span_keys)),
                ("log".into(), strings(&["log.n", "user"])),
            ],
            "{round}"
        );
        let old_span_keys: Vec<&str> = span_keys
            .iter()
            .copied()
            .filter(|k| !["deploy", "route/x+y"].contains(k))
            .collect();
        assert_eq!(
            tags(&server, "scope=span&service=old"),
            vec![("span".into(), strings(&old_span_keys))]
        );
        assert_eq!(
            tags(&server, "scope=resource&signal=logs&service=old"),
            vec![("resource".into(), vec![])]
        );
        assert_eq!(
            tags(&server, "signal=logs"),
            vec![
                ("resource".into(), strings(&["host.name", "service.name"])),
                ("log".into(), strings(&["log.n", "user"])),
            ]
        );
        // Values by kind, summed over segments and shards. Each head part and sealed segment
        // notes the attributes of one item in 8 or so, for the items it stands for (since
        // the one noted before, whatever their service): its counts miss the truth by less
        // than 15 (a gap between noted items), and there are a few of them.
        let near = |got: u64, want: u64| got.abs_diff(want) <= want / 10 + 30;
        let codes = values(&server, "http.response.status_code", "service=old");
        let mut texts: Vec<&str> = codes.iter().map(|c| c.0.as_str()).collect();
        texts.sort_unstable();
        assert_eq!(texts, ["200", "201", "202"], "{round}");
        assert!(codes.iter().all(|c| c.1 == "int"));
        let sum = codes.iter().map(|c| c.2).sum::<u64>();
        assert!(near(sum, 3600), "{sum} ({round})");
        assert_eq!(
            values(&server, "http.response.status_code", "service=old&limit=2").len(),
            2
        );
        assert_eq!(
            values(&server, "service.name", "signal=traces"),
            vec![
                ("old".into(), "string".into(), 3600),
                ("new".into(), "string".into(), 50)
            ]
        );
        assert_eq!(
            values(&server, "service.name", "signal=logs"),
            vec![("new".into(), "string".into(), 20)]
        );
        let users = values(&server, "user", "");
        assert!(
            users.iter().all(|u| ["ann", "bob"].contains(&u.0.as_str())),
            "{users:?}"
        );
        assert!(near(users.iter().map(|u| u.2).sum(), 20), "{users:?}");
        let sampled = values(&server, "sampled", "scope=span");
        assert_eq!((sampled.len(), sampled[0].1.as_str()), (1, "bool"));
        assert!(
            sampled[0].0 == "true" && near(sampled[0].2, 3650),
            "{sampled:?}"
        );
        let ratio = values(&server, "ratio", "");
        assert!(ratio[0].0 == "0.25" && ratio[0].1 == "double" && near(ratio[0].2, 3650));
        assert!(
            values(&server, "payload", "").is_empty(),
            "bytes are keys without values"
        );
        let route = values(&server, "route%2Fx+y", "");
        assert!(
            route.len() == 1 && route[0].0 == "v" && near(route[0].2, 50),
            "{route:?}"
        );
        assert!(values(&server, "service.name", "scope=span").is_empty());
        // Resources are counted for every item, exactly.
        // Time ranges: segments whose items all lie before or after are left out.
        let first = 1_700_000_000_000_000_000u64;
        assert!(values(&server, "service.name", &format!("end={}", first - 1)).is_empty());
        assert!(tags(
            &server,
            &format!("start={}", first + 100_000 * 1_000_000_000)
        )
        .iter()
        .all(|(_, keys)| keys.is_empty()));
        let late = values(
            &server,
            "service.name",
            &format!("signal=traces&start={}", first + 50_000 * 1_000_000_000),
        );
        assert!(late.iter().any(|v| v.0 == "new"), "{late:?}");
        assert_eq!(
            blocks_read(&server),
            before,
            "answered without reading a block"
        );
        server.restart();
    }
    for bad in [
        "/api/v1/tags?scope=event",
        "/api/v1/tags?scope=span&signal=logs",
        "/api/v1/tags?limit=3",
        "/api/v1/tags/user/values?limit=0",
        "/api/v1/tags/user/values?start=yesterday",
    ] {
        assert_eq!(server.get(bad).status, 400, "{bad}");
    }
    assert_eq!(server.get("/api/v1/tags//values").status, 404);
}

#[test]
fn an_error_search_reads_only_the_blocks_holding_an_error_span() {
    // Segments of some 20,000 spans, five blocks each; one span in the store is an error.
    let server = Server::start_with(1, &["--segment-bytes", "8m"]);
    for r in 0..100u64 {
        let mut req = traces_request("svc", r * 100, 100, 3);
        for span in &mut req.resource_spans[0].scope_spans[0].spans {
            let status = span.status.as_mut().unwrap();
            status.code = match span.span_id == span_id(42 * 1000 + 1) {
                true => 2,
                false => 0,
            };
        }
        assert_eq!(server.post_traces(&req).status, 200);
    }
    wait_sealed(&server, 2.0);
    let before = blocks_read(&server);
    assert_eq!(found(&server, "error=true&limit=5"), vec![42]);
    // Searched, then summarised: the one block twice.
    let read = blocks_read(&server) - before;
    assert!(read <= 2.0, "{read} blocks read for the one error");
    assert_eq!(found(&server, "error=true&name=op-0").len(), 0);
    let ok = found(&server, "error=false&limit=3");
    assert_eq!(ok, vec![9999, 9998, 9997]);
    assert_eq!(server.get("/api/v1/traces?error=maybe").status, 400);
}
