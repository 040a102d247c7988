//! The scheduler against a loopback server that stalls on purpose: in open loop, exports due
//! while the only connection is stuck wait for it, and that wait is part of their latency,
//! also when the stall outlasts the run (the drain, and the lower bounds of exports that never
//! left). Also what is counted: requests, attempts, retries, bytes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, run_quiet, spawn, Reply};
use loadgen::run::{Mode, RetryPolicy};
use loadgen::transport::Outcome;

const MS: u64 = 1_000_000;

/// The open-loop runs here: 200 exports per second, one every 5 ms.
fn open_loop_at_200(addr: std::net::SocketAddr) -> loadgen::run::RunConfig {
    config(
        addr,
        Mode::Open {
            requests_per_sec: 200.0,
        },
    )
}

#[test]
fn open_loop_latency_includes_time_queued_behind_a_stall() {
    // The 20th request (about 100 ms in) is answered after 500 ms; the others at once.
    let server = spawn(Arc::new(|r| match r.seq {
        19 => Reply::ok_after(Duration::from_millis(500)),
        _ => Reply::ok(),
    }));
    let mut cfg = open_loop_at_200(server.addr);
    cfg.duration = Some(Duration::from_millis(1500));
    let r = run_quiet(cfg);
    let c = &r.totals.counts;
    let h = &r.totals.latency;

    // Everything due in the run was sent and answered once the stall was over.
    assert_eq!(c.ok(), c.requests, "{c:?}");
    assert!((280..=300).contains(&c.requests), "{} requests", c.requests);
    assert_eq!(c.unsent, 0);

    // Closed-loop thinking would see one slow request. About 100 exports were due during
    // the stall; each waited from its due time until the connection was free again.
    let over_250ms = h.count_between(250 * MS, h.max());
    let over_100ms = h.count_between(100 * MS, h.max());
    assert!(h.max() >= 490 * MS, "max {}", h.max());
    assert!(over_250ms >= 40, "only {over_250ms} exports saw >= 250 ms");
    assert!(over_100ms >= 70, "only {over_100ms} exports saw >= 100 ms");
    // And the send lag says why: they left late.
    assert!(
        r.totals.lag.max() >= 400 * MS,
        "lag max {}",
        r.totals.lag.max()
    );
    // Outside the stall, the loopback answers fast. A third of the exports queue behind the
    // stall, and a debug build on a busy machine can lag for a while after it: the fastest
    // tenth shows the point without depending on how soon the backlog drains.
    let p10 = h.value_at_quantile(0.1);
    assert!(p10 < 50 * MS, "p10 {p10} ns");
}

/// Decodes an interval log (`--hdr-log`) and sums its histograms' counts.
fn interval_log_count(log: &[u8]) -> u64 {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let mut total = 0;
    for e in IntervalLogIterator::new(log) {
        if let LogEntry::Interval(i) = e.unwrap() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(i.encoded_histogram())
                .unwrap();
            let h: hdrhistogram::Histogram<u64> =
                Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
            total += h.len();
        }
    }
    total
}

#[test]
fn a_stall_past_the_end_is_drained_and_measured() {
    // The first request is answered after 700 ms, beyond the 500 ms run: the 99 other exports
    // of the run are due while the only connection is stuck, and leave after the end.
    let server = spawn(Arc::new(|r| match r.seq {
        0 => Reply::ok_after(Duration::from_millis(700)),
        _ => Reply::ok(),
    }));
    let mut cfg = open_loop_at_200(server.addr);
    cfg.duration = Some(Duration::from_millis(500));
    let r = run_quiet(cfg);
    let c = &r.totals.counts;
    let h = &r.totals.latency;

    // Every export due in the run (500 ms at 200/s) was sent in the drain and answered.
    assert_eq!(c.requests, 100, "{c:?}");
    assert_eq!(c.ok(), 100);
    assert_eq!(c.unsent, 0);
    assert!(c.drained >= 90, "{} drained", c.drained);
    assert_eq!(h.len(), 100);
    // Each waited from its due time for the stall to end: export 1 was due at 5 ms.
    assert!(h.max() >= 690 * MS, "max {}", h.max());
    let over_200ms = h.count_between(200 * MS, h.max());
    assert!(over_200ms >= 90, "only {over_200ms} exports saw >= 200 ms");
}

#[test]
fn exports_never_sent_are_in_the_histogram_at_a_lower_bound() {
    // A target that reads requests and never answers: every attempt times out.
    let server = spawn(Arc::new(|_| Reply::ok_after(Duration::from_secs(3600))));
    let mut cfg = open_loop_at_200(server.addr);
    let (duration, timeout) = (Duration::from_millis(500), Duration::from_millis(300));
    cfg.duration = Some(duration);
    cfg.target.timeout = timeout;
    let mut log = Vec::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t0 = std::time::Instant::now();
    let r = loadgen::run::run(
        cfg,
        stop,
        loadgen::run::Outputs {
            progress: None,
            hdr_log: Some(&mut log),
        },
    )
    .unwrap();
    let c = &r.totals.counts;
    let h = &r.totals.latency;

    // 100 exports were due in the run. The one connection is free again only after each
    // 300 ms timeout, so within the run and its 300 ms drain it took 3 (0 at 0 ms, 1 at
    // 300 ms, 2 at 600 ms); the others are unsent, and still in the histogram.
    assert_eq!(r.drain_limit, Some(timeout));
    assert_eq!(c.requests + c.unsent, 100, "{c:?}");
    assert!(c.unsent >= 90, "{c:?}");
    assert_eq!(c.outcome(Outcome::Timeout), c.requests);
    assert_eq!(h.len(), 100, "every export due in the run is measured");
    // Answered ones waited at least the timeout; unsent ones from their due time (before the
    // deadline) to the end of the drain (the deadline + 300 ms): at least 300 ms too.
    assert!(h.min() >= 295 * MS, "min {}", h.min());
    assert!(
        h.value_at_quantile(0.5) >= 295 * MS,
        "p50 {}",
        h.value_at_quantile(0.5)
    );
    // The first unsent export was due within 20 ms of the start: 780 ms or more by the end
    // of the drain.
    assert!(h.max() >= 780 * MS, "max {}", h.max());
    // The interval log holds them too.
    assert_eq!(interval_log_count(&log), 100);
    // The run ends within the run, the drain and one more attempt (plus the 100 ms start).
    assert!(
        t0.elapsed() < duration + 2 * timeout + Duration::from_millis(1500),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn closed_loop_counts_each_request_once_and_stops_at_the_count() {
    let server = spawn(Arc::new(|r| match r.seq {
        3 => Reply::ok_after(Duration::from_millis(300)),
        _ => Reply::ok(),
    }));
    let mut cfg = config(server.addr, Mode::Closed);
    cfg.max_requests = Some(50);
    let r = run_quiet(cfg);
    let c = &r.totals.counts;
    assert_eq!(c.requests, 50);
    assert_eq!(c.ok(), 50);
    assert_eq!(c.items, 500);
    assert_eq!(c.items_accepted, 500);
    assert_eq!(server.seen.load(std::sync::atomic::Ordering::SeqCst), 50);
    // Closed loop measures from the send: exactly one slow request.
    let h = &r.totals.latency;
    assert_eq!(h.count_between(250 * MS, h.max()), 1);
}

#[test]
fn retries_honour_retry_after_and_are_counted_apart() {
    // The first answer is 429 with Retry-After: 1; everything else is 200.
    let handler: common::Handler = Arc::new(|r| {
        if r.seq == 0 {
            let mut reply = Reply::json(429, "{}");
            reply.headers.push(("Retry-After".into(), "1".into()));
            reply
        } else {
            Reply::ok()
        }
    });
    let server = spawn(handler.clone());
    let mut cfg = config(server.addr, Mode::Closed);
    cfg.max_requests = Some(3);
    cfg.retry = Some(RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
    });
    let r = run_quiet(cfg);
    let c = &r.totals.counts;
    assert_eq!(c.requests, 3);
    assert_eq!(c.attempts, 4);
    assert_eq!(c.retries, 1);
    assert_eq!(c.retried_ok, 1);
    assert_eq!(c.ok(), 3);
    assert_eq!(c.retried.get(&Outcome::Throttled), Some(&1));
    assert!(
        r.totals.latency.max() >= 990 * MS,
        "the retry waited Retry-After"
    );

    // Without --retry the 429 is the answer.
    let server = spawn(handler);
    let mut cfg = config(server.addr, Mode::Closed);
    cfg.max_requests = Some(3);
    let r = run_quiet(cfg);
    let c = &r.totals.counts;
    assert_eq!(
        (c.ok(), c.outcome(Outcome::Throttled), c.retries),
        (2, 1, 0)
    );
}

#[test]
fn non_retryable_answers_are_not_retried_and_timeouts_are_counted() {
    let server = spawn(Arc::new(|r| match r.seq {
        0 => Reply::json(400, r#"{"message":"bad"}"#),
        1 => Reply::ok_after(Duration::from_millis(800)),
        _ => Reply::ok(),
    }));
    let mut cfg = config(server.addr, Mode::Closed);
    cfg.max_requests = Some(4);
    cfg.target.timeout = Duration::from_millis(300);
    cfg.retry = Some(RetryPolicy {
        max_retries: 0,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        max_delay: Duration::from_secs(1),
    });
    let r = run_quiet(cfg);
    let c = &r.totals.counts;
    assert_eq!(c.requests, 4);
    assert_eq!(c.outcome(Outcome::Http(400)), 1);
    assert_eq!(c.outcome(Outcome::Timeout), 1);
    assert_eq!(
        c.gave_up, 1,
        "the timeout was retryable, with no retries left"
    );
    assert_eq!(c.ok(), 2);
    assert!(c.messages[&Outcome::Http(400)].contains("bad"));
}

#[test]
fn bytes_count_only_attempts_that_reached_a_connection() {
    // A port nobody listens on: every attempt fails to connect, nothing goes on the wire.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = config(addr, Mode::Closed);
    cfg.max_requests = Some(3);
    let r = run_quiet(cfg);
    let c = &r.totals.counts;
    assert_eq!((c.requests, c.attempts), (3, 3), "{c:?}");
    assert_eq!(c.outcome(Outcome::Connect), 3);
    assert_eq!((c.bytes, c.raw_bytes), (0, 0));

    // Against a server, every attempt's body counts.
    let server = spawn(Arc::new(|_| Reply::ok()));
    let mut cfg = config(server.addr, Mode::Closed);
    cfg.max_requests = Some(3);
    let r = run_quiet(cfg);
    let c = &r.totals.counts;
    assert_eq!(c.ok(), 3);
    assert!(c.bytes > 0 && c.raw_bytes == c.bytes, "{c:?}");
}
