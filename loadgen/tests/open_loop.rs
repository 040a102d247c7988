//! The scheduler against a loopback server that stalls on purpose: in open loop, exports due
//! while the only connection is stuck wait for it, and that wait is part of their latency.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, run_quiet, spawn, Reply};
use loadgen::run::{Mode, RetryPolicy};
use loadgen::transport::Outcome;

const MS: u64 = 1_000_000;

#[test]
fn open_loop_latency_includes_time_queued_behind_a_stall() {
    // The 20th request (about 100 ms in) is answered after 500 ms; the others at once.
    let server = spawn(Arc::new(|r| {
        let mut reply = Reply::ok();
        if r.seq == 19 {
            reply.delay = Duration::from_millis(500);
        }
        reply
    }));
    let mut cfg = config(
        server.addr,
        Mode::Open {
            requests_per_sec: 200.0,
        },
    );
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
    // Outside the stall, the loopback answers fast.
    assert!(h.value_at_quantile(0.3) < 50 * MS);
}

#[test]
fn closed_loop_counts_each_request_once_and_stops_at_the_count() {
    let server = spawn(Arc::new(|r| {
        let mut reply = Reply::ok();
        if r.seq == 3 {
            reply.delay = Duration::from_millis(300);
        }
        reply
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
        1 => {
            let mut reply = Reply::ok();
            reply.delay = Duration::from_millis(800);
            reply
        }
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
