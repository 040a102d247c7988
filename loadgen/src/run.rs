//! The run: pinned workers (one current-thread Tokio runtime each), their connections and
//! request slots, the open-loop pacer and the closed loop, retries, and the once-a-second
//! reporter that merges every worker's counters and histograms.
//!
//! Open loop: export `k` of a worker is *due* at `start + k / rate`. A pacer task releases one
//! permit per due export at exactly that time (a `timerfd`, not Tokio's 1 ms timer wheel); a
//! request slot that is free takes the next permit and sends. When every slot is busy (the
//! target is slow), due exports wait for a slot, and their latency is counted from the time
//! they were due, not from when they could leave: coordinated omission cannot hide a stall.
//! That holds at the end of the run too: exports due before the deadline are still sent after
//! it, in the *drain* (at most [`drain_limit`] long), and any that never find a free slot are
//! recorded at (end of the drain − due time), a lower bound, and counted as unsent.
//! Closed loop: every slot sends its next export as soon as the previous one is answered.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::V2DeflateSerializer;
use tokio::io::unix::AsyncFd;
use tokio::sync::Semaphore;

use crate::payload::{Batch, Generator, PayloadConfig, Sample};
use crate::rng::Rng;
use crate::stats::{self, Counts, Slot};
use crate::transport::{Answer, Conn, Outcome, Target};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Open loop at this many exports (requests) per second, over all workers.
    Open { requests_per_sec: f64 },
    /// Closed loop: every slot as fast as answers come.
    Closed,
}

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff when the answer names no delay; doubles each retry, with ±50 % jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest `Retry-After` / `RetryInfo` delay honoured (longer ones are cut to this).
    pub max_delay: Duration,
}

/// What every request carries when the payload is fixed.
#[derive(Clone, Debug)]
pub struct FixedPayload {
    pub body: bytes::Bytes,
    pub items: u64,
    pub raw_bytes: usize,
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub target: Target,
    pub payload: PayloadConfig,
    pub seed: u64,
    pub mode: Mode,
    /// Stop issuing exports after this long (from the start).
    pub duration: Option<Duration>,
    /// Stop after this many exports in all.
    pub max_requests: Option<u64>,
    /// Core ids to pin workers to, one worker each (empty: `worker_count` unpinned workers).
    pub cores: Vec<usize>,
    /// Unpinned workers when `cores` is empty (at least 1).
    pub worker_count: usize,
    /// Connections over all workers.
    pub connections: usize,
    /// Requests in flight per connection (HTTP/2 streams; 1 for HTTP/1.1).
    pub inflight: usize,
    /// One pre-encoded body for every request, instead of generating.
    pub fixed: Option<FixedPayload>,
    pub retry: Option<RetryPolicy>,
    /// Keep the items of sampled traces for `--verify`.
    pub keep_samples: bool,
}

/// Items of sampled traces sent in one export, and how that export was answered.
#[derive(Clone, Debug)]
pub struct SentSample {
    pub samples: Vec<Sample>,
    pub outcome: Outcome,
    pub rejected: i64,
}

pub struct RunResult {
    pub totals: Slot,
    pub elapsed: Duration,
    pub samples: Vec<SentSample>,
    pub workers: usize,
    pub stopped_by_signal: bool,
    /// Open loop with a deadline: how long after it due exports could still be sent.
    pub drain_limit: Option<Duration>,
    /// Workers that asked for a core and did not get it (they ran unpinned).
    pub pin_failures: Vec<PinFailure>,
    /// The first error writing the interval log: the log stops there, the run goes on.
    pub hdr_log_error: Option<io::Error>,
}

/// A worker that could not be pinned to its core.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PinFailure {
    pub worker: usize,
    pub core: usize,
    pub error: String,
}

/// How long after the deadline the exports due before it may still be sent (the drain): one
/// request timeout, the longest a slot can stay busy with one attempt, so a slot stuck on a
/// stalled target comes free at least once in the drain. The drain ends early when every
/// due export has been taken. An export taken in the drain may then take one more timeout,
/// so an open-loop run ends at most `duration + 2 × timeout` after its start. Retries do not
/// start after the drain either (in both loops).
pub fn drain_limit(target: &Target) -> Duration {
    target.timeout
}

/// Where the reporter writes.
pub struct Outputs<'a> {
    /// Progress lines, once a second (`None`: quiet).
    pub progress: Option<&'a mut dyn Write>,
    /// HdrHistogram interval log.
    pub hdr_log: Option<&'a mut dyn Write>,
}

/// A one-shot timer with microsecond precision: a `timerfd` registered with Tokio's reactor.
/// Falls back to Tokio's timer (1 ms wheel) where `timerfd` is unavailable.
struct PreciseTimer {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl PreciseTimer {
    fn new() -> PreciseTimer {
        // SAFETY: plain syscall; the returned descriptor is owned below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        let fd = if raw >= 0 {
            // SAFETY: `raw` is a fresh descriptor that nothing else owns; the AsyncFd owns it
            // (and so keeps it open) for as long as it is registered.
            unsafe {
                AsyncFd::register_with_interest(
                    OwnedFd::from_raw_fd(raw),
                    tokio::io::Interest::READABLE,
                )
            }
            .ok()
        } else {
            None
        };
        PreciseTimer { fd }
    }

    async fn sleep_until(&self, at: Instant) {
        let now = Instant::now();
        if at <= now {
            return;
        }
        let Some(fd) = &self.fd else {
            tokio::time::sleep_until(at.into()).await;
            return;
        };
        let d = at - now;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos().max(1) as libc::c_long,
            },
        };
        // SAFETY: valid descriptor and a valid itimerspec.
        let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            tokio::time::sleep_until(at.into()).await;
            return;
        }
        loop {
            let Ok(mut guard) = fd.readable().await else {
                tokio::time::sleep_until(at.into()).await;
                return;
            };
            let res = guard.try_io(|inner| {
                let mut buf = [0u8; 8];
                // SAFETY: reading 8 bytes into an 8-byte buffer.
                let n = unsafe { libc::read(inner.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match res {
                Ok(_) => return,
                Err(_would_block) => continue,
            }
        }
    }
}

struct Pacing {
    start: Instant,
    interval_ns: f64,
    permits: Semaphore,
}

impl Pacing {
    /// When export `k` is due.
    fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_nanos((k as f64 * self.interval_ns) as u64)
    }

    /// How many exports are due at or before `at`.
    fn due_by(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.start).as_nanos() as f64 / self.interval_ns).floor()
            as u64
            + 1
    }

    /// How many exports are due strictly before `deadline`: the exports of the run.
    fn due_before(&self, deadline: Instant) -> u64 {
        (deadline.saturating_duration_since(self.start).as_nanos() as f64 / self.interval_ns).ceil()
            as u64
    }
}

/// When an export was due, when it left and when its final answer came.
struct Timing {
    /// Open loop: its intended send time (`None` in closed loop).
    due: Option<Instant>,
    sent_at: Instant,
    done: Instant,
}

/// The attempts one export took.
#[derive(Default)]
struct Attempts {
    total: u64,
    /// Those handed to a connection (their bodies count as bytes on the wire).
    on_wire: u64,
    /// The answers that were retried.
    retried: Vec<Outcome>,
    gave_up: bool,
}

/// Per-worker state shared by its slots (single-threaded).
struct Worker {
    cfg: Arc<RunConfig>,
    generator: RefCell<Option<Generator>>,
    fixed: Option<Batch>,
    pacing: Option<Pacing>,
    next_ticket: Cell<u64>,
    max_tickets: Option<u64>,
    deadline: Option<Instant>,
    stop: Arc<AtomicBool>,
    slot: Arc<Mutex<Slot>>,
    in_flight: Arc<AtomicI64>,
    samples: RefCell<Vec<SentSample>>,
    rng: RefCell<Rng>,
}

impl Worker {
    fn next_batch(&self) -> Batch {
        if let Some(b) = &self.fixed {
            return b.clone();
        }
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        self.generator
            .borrow_mut()
            .as_mut()
            .expect("a generator when the payload is not fixed")
            .next_batch(now_ns)
    }

    /// The end of the drain, `deadline + drain_limit`: no export is taken from the pacer and
    /// no retry starts after it.
    fn drain_until(&self) -> Option<Instant> {
        self.deadline.map(|d| d + drain_limit(&self.cfg.target))
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The next export to send: `Some(due time)` in open loop, `Some(None)` in closed loop,
    /// `None` when the run is over for this slot.
    async fn claim(&self) -> Option<Option<Instant>> {
        match &self.pacing {
            Some(p) => {
                let permit = p.permits.acquire().await.ok()?;
                permit.forget();
                let k = self.next_ticket.get();
                self.next_ticket.set(k + 1);
                Some(Some(p.due(k)))
            }
            None => {
                if self.stopping() {
                    return None;
                }
                let k = self.next_ticket.get();
                if self.max_tickets.is_some_and(|m| k >= m) {
                    return None;
                }
                self.next_ticket.set(k + 1);
                Some(None)
            }
        }
    }

    /// Counts one finished export (once, by its final answer) into this worker's slot.
    fn record(&self, batch: &Batch, answer: &Answer, t: &Timing, a: Attempts) {
        let mut s = self.slot.lock().unwrap();
        let t0 = t.due.unwrap_or(t.sent_at);
        s.latency.saturating_record((t.done - t0).as_nanos() as u64);
        if let Some(due) = t.due {
            s.lag.saturating_record((t.sent_at - due).as_nanos() as u64);
        }
        let c = &mut s.counts;
        if t.due.is_some() && self.deadline.is_some_and(|d| t.sent_at >= d) {
            c.drained += 1;
        }
        c.requests += 1;
        c.items += batch.items;
        c.attempts += a.total;
        c.retries += a.total - 1;
        c.bytes += batch.body.len() as u64 * a.on_wire;
        c.raw_bytes += batch.raw_bytes as u64 * a.on_wire;
        for o in a.retried {
            *c.retried.entry(o).or_default() += 1;
        }
        *c.outcomes.entry(answer.outcome).or_default() += 1;
        if answer.outcome.is_success() {
            let rejected = answer.rejected.clamp(0, batch.items as i64) as u64;
            c.items_accepted += batch.items - rejected;
            c.items_rejected += rejected;
            if a.total > 1 {
                c.retried_ok += 1;
            }
        }
        if a.gave_up {
            c.gave_up += 1;
        }
        if answer.outcome != Outcome::Ok && !c.messages.contains_key(&answer.outcome) {
            if let Some(m) = &answer.message {
                c.messages.insert(answer.outcome, m.clone());
            }
        }
    }

    /// Open loop: exports `tickets` were due and never sent. Each is counted as unsent and
    /// recorded at `ended − due`, a lower bound of the latency it would have had.
    fn record_unsent(&self, p: &Pacing, ended: Instant, tickets: Range<u64>) {
        if tickets.is_empty() {
            return;
        }
        let mut s = self.slot.lock().unwrap();
        s.counts.unsent += tickets.end - tickets.start;
        for k in tickets {
            let waited = ended.saturating_duration_since(p.due(k));
            s.latency.saturating_record(waited.as_nanos() as u64);
        }
    }

    fn backoff(&self, policy: &RetryPolicy, retry: u32) -> Duration {
        let base = policy
            .initial_backoff
            .saturating_mul(1u32 << retry.min(16))
            .min(policy.max_backoff);
        let jitter = 0.5 + self.rng.borrow_mut().f64();
        base.mul_f64(jitter)
    }
}

/// How often the drain looks whether every due export has been taken.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// The open-loop pacer: releases every export of the run at its due time, then drains, then
/// ends the run for the slots and records what never left.
async fn pace(w: Rc<Worker>) {
    let p = w.pacing.as_ref().expect("open loop");
    let timer = PreciseTimer::new();
    timer.sleep_until(p.start).await;
    // The exports of the run: those due before the deadline, and no more than asked for.
    let in_run = match (w.deadline.map(|d| p.due_before(d)), w.max_tickets) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let released = release(&w, p, &timer, in_run).await;
    // From the deadline, or from now when --requests ran out first: one drain limit at most.
    let limit = Instant::now() + drain_limit(&w.cfg.target);
    let drain_until = w.drain_until().map_or(limit, |d| d.min(limit));
    drain(&w, released, drain_until).await;
    // No await from here on: no slot takes a permit between the close and the count.
    p.permits.close();
    let ended = Instant::now();
    w.record_unsent(p, ended, w.next_ticket.get()..released);
}

/// Releases one permit per export at its due time, until `in_run` are out (or the stop);
/// returns how many were released.
async fn release(w: &Worker, p: &Pacing, timer: &PreciseTimer, in_run: Option<u64>) -> u64 {
    let mut released: u64 = 0;
    while !w.stop.load(Ordering::Relaxed) && in_run.is_none_or(|n| released < n) {
        let now = Instant::now();
        let mut due = p.due_by(now);
        if let Some(n) = in_run {
            due = due.min(n);
        }
        if due > released {
            p.permits.add_permits((due - released) as usize);
            released = due;
        }
        if in_run.is_some_and(|n| released >= n) {
            break;
        }
        // Wakes at least every 100 ms to see the stop flag.
        let next = p.due(released).min(now + Duration::from_millis(100));
        timer.sleep_until(next).await;
    }
    released
}

/// The drain: exports released and not yet taken by a slot (every slot was busy) may still be
/// taken, until all are or `until` (or the stop).
async fn drain(w: &Worker, released: u64, until: Instant) {
    loop {
        let now = Instant::now();
        if w.stop.load(Ordering::Relaxed) || w.next_ticket.get() >= released || now >= until {
            return;
        }
        tokio::time::sleep((until - now).min(DRAIN_POLL)).await;
    }
}

/// How long a closed-loop slot waits after a connection failure before its next export.
const CLOSED_LOOP_FAILURE_PAUSE: Duration = Duration::from_millis(10);

async fn slot_loop(w: Rc<Worker>, conn: Rc<Conn>, start: Instant) {
    conn.warm_up().await;
    tokio::time::sleep_until(start.into()).await;
    loop {
        // Generated before waiting for the turn: generation is not part of the latency.
        let batch = w.next_batch();
        let Some(due) = w.claim().await else {
            break;
        };
        let sent_at = Instant::now();
        w.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut attempts = Attempts::default();
        let answer: Answer = loop {
            attempts.total += 1;
            let a = conn.export(batch.body.clone()).await;
            attempts.on_wire += u64::from(a.sent);
            if a.outcome.is_success() || !a.retryable {
                break a;
            }
            let Some(policy) = &w.cfg.retry else {
                break a;
            };
            let n = attempts.total as u32 - 1;
            if n >= policy.max_retries || w.stop.load(Ordering::Relaxed) {
                attempts.gave_up = true;
                break a;
            }
            let wait = match a.retry_after {
                Some(d) => d.min(policy.max_delay),
                None => w.backoff(policy, n),
            };
            if w.drain_until().is_some_and(|d| Instant::now() + wait > d) {
                attempts.gave_up = true;
                break a;
            }
            attempts.retried.push(a.outcome);
            tokio::time::sleep(wait).await;
        };
        let done = Instant::now();
        w.in_flight.fetch_sub(1, Ordering::Relaxed);

        let timing = Timing { due, sent_at, done };
        w.record(&batch, &answer, &timing, attempts);
        if w.cfg.keep_samples && !batch.samples.is_empty() {
            w.samples.borrow_mut().push(SentSample {
                samples: batch.samples,
                outcome: answer.outcome,
                rejected: answer.rejected,
            });
        }
        // Closed loop against a target that refuses connections: do not spin.
        if due.is_none() && matches!(answer.outcome, Outcome::Connect | Outcome::Io) {
            tokio::time::sleep(CLOSED_LOOP_FAILURE_PAUSE).await;
        }
    }
}

struct WorkerPlan {
    index: usize,
    core: Option<usize>,
    connections: usize,
    requests_per_sec: Option<f64>,
    max_requests: Option<u64>,
}

/// What a worker hands back when it is done.
struct WorkerEnd {
    samples: Vec<SentSample>,
    pin_failure: Option<PinFailure>,
}

fn worker_thread(
    plan: WorkerPlan,
    cfg: Arc<RunConfig>,
    start: Instant,
    stop: Arc<AtomicBool>,
    slot: Arc<Mutex<Slot>>,
    in_flight: Arc<AtomicI64>,
) -> WorkerEnd {
    let pin_failure = plan.core.and_then(|core| {
        // `sched_setaffinity` fails for a core outside this process's CPU set.
        (!core_affinity::set_for_current(core_affinity::CoreId { id: core })).then(|| PinFailure {
            worker: plan.index,
            core,
            error: io::Error::last_os_error().to_string(),
        })
    });
    // Wake-ups as precise as the timerfd allows (the default slack is 50 µs).
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let local = tokio::task::LocalSet::new();
    let generator = if cfg.fixed.is_some() {
        None
    } else {
        Some(Generator::new(
            &cfg.payload,
            cfg.target.transport.wire(),
            cfg.target.compression,
            cfg.seed,
            plan.index as u64,
        ))
    };
    let fixed = cfg.fixed.as_ref().map(|f| Batch {
        body: f.body.clone(),
        items: f.items,
        raw_bytes: f.raw_bytes,
        samples: Vec::new(),
    });
    let pacing = plan.requests_per_sec.map(|r| Pacing {
        start,
        interval_ns: 1e9 / r,
        permits: Semaphore::new(0),
    });
    let w = Rc::new(Worker {
        generator: RefCell::new(generator),
        fixed,
        pacing,
        next_ticket: Cell::new(0),
        max_tickets: plan.max_requests,
        deadline: cfg.duration.map(|d| start + d),
        stop,
        slot,
        in_flight,
        samples: RefCell::new(Vec::new()),
        rng: RefCell::new(Rng::derive(cfg.seed ^ 0x5eed, plan.index as u64)),
        cfg: cfg.clone(),
    });
    local.block_on(&rt, async {
        let mut tasks = Vec::new();
        for _ in 0..plan.connections {
            let conn = Rc::new(Conn::new(cfg.target.clone()));
            for _ in 0..cfg.inflight.max(1) {
                tasks.push(tokio::task::spawn_local(slot_loop(
                    w.clone(),
                    conn.clone(),
                    start,
                )));
            }
        }
        if w.pacing.is_some() {
            tasks.push(tokio::task::spawn_local(pace(w.clone())));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let samples = std::mem::take(&mut *w.samples.borrow_mut());
    WorkerEnd {
        samples,
        pin_failure,
    }
}

/// Splits `n` into `parts` nearly equal shares.
fn share(n: u64, parts: usize, i: usize) -> u64 {
    n / parts as u64 + u64::from((i as u64) < n % parts as u64)
}

/// The interval log's first comment.
const HDR_LOG_COMMENT: &str = "glust loadgen: export latency, from the intended send time in \
                               open loop (never sent: to the end of the drain, a lower bound)";

/// Runs the load and reports once a second; returns the totals.
pub fn run(cfg: RunConfig, stop: Arc<AtomicBool>, out: Outputs<'_>) -> io::Result<RunResult> {
    let cfg = Arc::new(cfg);
    let cores: Vec<Option<usize>> = if cfg.cores.is_empty() {
        vec![None; cfg.worker_count.max(1)]
    } else {
        cfg.cores.iter().map(|&c| Some(c)).collect()
    };
    let workers = cores.len().min(cfg.connections.max(1));
    // Workers start, pin themselves and connect before this.
    let start = Instant::now() + Duration::from_millis(100);
    let start_wall = SystemTime::now() + Duration::from_millis(100);
    let mut handles = Vec::new();
    let mut slots = Vec::new();
    let mut gauges = Vec::new();
    for (i, core) in cores.iter().take(workers).enumerate() {
        let plan = WorkerPlan {
            index: i,
            core: *core,
            connections: share(cfg.connections as u64, workers, i) as usize,
            requests_per_sec: match cfg.mode {
                Mode::Open { requests_per_sec } => Some(requests_per_sec / workers as f64),
                Mode::Closed => None,
            },
            max_requests: cfg.max_requests.map(|m| share(m, workers, i)),
        };
        let slot = Arc::new(Mutex::new(Slot::default()));
        let gauge = Arc::new(AtomicI64::new(0));
        slots.push(slot.clone());
        gauges.push(gauge.clone());
        let (cfg, stop) = (cfg.clone(), stop.clone());
        handles.push(
            thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || worker_thread(plan, cfg, start, stop, slot, gauge))?,
        );
    }

    let Outputs {
        mut progress,
        mut hdr_log,
    } = out;
    let mut ser = V2DeflateSerializer::new();
    let mut hdr_log_error = None;
    let mut log_writer = match hdr_log.as_mut() {
        Some(w) => match stats::begin_interval_log(w, &mut ser, start_wall, HDR_LOG_COMMENT) {
            Ok(l) => Some(l),
            Err(e) => {
                hdr_log_error = Some(e);
                None
            }
        },
        None => None,
    };

    let item_word = match cfg.payload.signal {
        crate::payload::Signal::Traces => "spans",
        crate::payload::Signal::Logs => "logs",
    };
    let mut totals = Slot::default();
    let mut interval = Slot::default();
    let mut spares: Vec<Slot> = slots.iter().map(|_| Slot::default()).collect();
    let mut last = start;
    let mut tick = 1u32;
    loop {
        let next = start + Duration::from_secs(tick as u64);
        let done = loop {
            let all_done = handles.iter().all(|h| h.is_finished());
            let now = Instant::now();
            if all_done || now >= next {
                break all_done;
            }
            thread::sleep((next - now).min(Duration::from_millis(20)));
        };
        let now = Instant::now();
        for (s, spare) in slots.iter().zip(spares.iter_mut()) {
            // Swap under the lock (the worker waits for nothing), merge outside it.
            std::mem::swap(&mut *s.lock().unwrap(), spare);
            spare.drain_into(&mut interval);
        }
        let secs = now.saturating_duration_since(last).as_secs_f64();
        if let Some(p) = progress.as_mut() {
            // A last sliver of an interval (the run ended just after a tick) would show
            // meaningless rates: its counts still go to the totals.
            if !done || (interval.counts.requests > 0 && secs >= 0.25) {
                let mut merged_total = Slot::default();
                interval.drain_into_clone(&totals, &mut merged_total);
                let in_flight: i64 = gauges.iter().map(|g| g.load(Ordering::Relaxed)).sum();
                let line = stats::progress_line(
                    now.saturating_duration_since(start),
                    &interval,
                    secs,
                    &merged_total,
                    item_word,
                    in_flight.max(0) as u64,
                );
                let _ = writeln!(p, "{line}");
            }
        }
        if let Some(w) = log_writer.as_mut() {
            let at = last.saturating_duration_since(start);
            let len = now.saturating_duration_since(last);
            if let Err(e) = stats::write_interval(w, at, len, &interval.latency) {
                // A full disk should not cost the run: the report says the log is cut.
                hdr_log_error = Some(e);
                log_writer = None;
            }
        }
        interval.drain_into(&mut totals);
        last = now;
        tick += 1;
        if done {
            break;
        }
    }
    let mut samples = Vec::new();
    let mut pin_failures = Vec::new();
    for h in handles {
        match h.join() {
            Ok(end) => {
                samples.extend(end.samples);
                pin_failures.extend(end.pin_failure);
            }
            Err(_) => return Err(io::Error::other("a worker panicked")),
        }
    }
    drop(log_writer);
    if let (Some(w), None) = (hdr_log.as_mut(), &hdr_log_error) {
        hdr_log_error = w.flush().err();
    }
    // Anything recorded after the last drain.
    for s in &slots {
        s.lock().unwrap().drain_into(&mut totals);
    }
    Ok(RunResult {
        totals,
        elapsed: last.saturating_duration_since(start),
        samples,
        workers,
        stopped_by_signal: stop.load(Ordering::Relaxed),
        drain_limit: match cfg.mode {
            Mode::Open { .. } if cfg.duration.is_some() => Some(drain_limit(&cfg.target)),
            _ => None,
        },
        pin_failures,
        hdr_log_error,
    })
}

impl Slot {
    /// `into` = `self` + `other`, leaving both as they are.
    fn drain_into_clone(&self, other: &Slot, into: &mut Slot) {
        into.counts = Counts::default();
        into.counts.add(&self.counts);
        into.counts.add(&other.counts);
        into.latency.reset();
        into.latency.add(&self.latency).expect("same bounds");
        into.latency.add(&other.latency).expect("same bounds");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for n in [0u64, 1, 7, 100] {
            for parts in 1..5 {
                let sum: u64 = (0..parts).map(|i| share(n, parts, i)).sum();
                assert_eq!(sum, n);
            }
        }
    }

    #[test]
    fn precise_timer_wakes_on_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = PreciseTimer::new();
            assert!(t.fd.is_some());
            for _ in 0..20 {
                let at = Instant::now() + Duration::from_micros(300);
                t.sleep_until(at).await;
                let late = Instant::now() - at;
                assert!(Instant::now() >= at);
                assert!(late < Duration::from_millis(20), "late by {late:?}");
            }
        });
    }
}
