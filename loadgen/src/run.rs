//! The run: pinned workers (one current-thread Tokio runtime each), their connections and
//! request slots, the open-loop pacer and the closed loop, retries, and the once-a-second
//! reporter that merges every worker's counters and histograms.
//!
//! Open loop: export `k` of a worker is *due* at `start + k / rate`. A pacer task releases one
//! permit per due export at exactly that time (a `timerfd`, not Tokio's 1 ms timer wheel); a
//! request slot that is free takes the next permit and sends. When every slot is busy (the
//! target is slow), due exports wait for a slot, and their latency is counted from the time
//! they were due, not from when they could leave: coordinated omission cannot hide a stall.
//! Closed loop: every slot sends its next export as soon as the previous one is answered.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
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
    fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_nanos((k as f64 * self.interval_ns) as u64)
    }
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
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        batch: &Batch,
        answer: &Answer,
        open_loop: bool,
        (t0, sent_at, done): (Instant, Instant, Instant),
        attempts: u64,
        retried: Vec<Outcome>,
        gave_up: bool,
    ) {
        let mut s = self.slot.lock().unwrap();
        s.latency.saturating_record((done - t0).as_nanos() as u64);
        if open_loop {
            s.lag.saturating_record((sent_at - t0).as_nanos() as u64);
        }
        let c = &mut s.counts;
        c.requests += 1;
        c.items += batch.items;
        c.attempts += attempts;
        c.retries += attempts - 1;
        c.bytes += batch.body.len() as u64 * attempts;
        c.raw_bytes += batch.raw_bytes as u64 * attempts;
        for o in retried {
            *c.retried.entry(o).or_default() += 1;
        }
        *c.outcomes.entry(answer.outcome).or_default() += 1;
        if answer.outcome.is_success() {
            let rejected = answer.rejected.clamp(0, batch.items as i64) as u64;
            c.items_accepted += batch.items - rejected;
            c.items_rejected += rejected;
            if attempts > 1 {
                c.retried_ok += 1;
            }
        }
        if gave_up {
            c.gave_up += 1;
        }
        if answer.outcome != Outcome::Ok && !c.messages.contains_key(&answer.outcome) {
            if let Some(m) = &answer.message {
                c.messages.insert(answer.outcome, m.clone());
            }
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

/// Releases one permit per due export, at its due time, until the end.
async fn pace(w: Rc<Worker>) {
    let p = w.pacing.as_ref().expect("open loop");
    let timer = PreciseTimer::new();
    timer.sleep_until(p.start).await;
    let mut released: u64 = 0;
    loop {
        if w.stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if w.max_tickets.is_some_and(|m| released >= m) {
            // All released: wait until the slots took them (or the end).
            if w.next_ticket.get() >= released || w.deadline.is_some_and(|d| now >= d) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let mut due = ((now - p.start).as_nanos() as f64 / p.interval_ns).floor() as u64 + 1;
        if let Some(m) = w.max_tickets {
            due = due.min(m);
        }
        if let Some(d) = w.deadline {
            // Exports due at or after the deadline are not part of the run.
            let in_run = ((d - p.start).as_nanos() as f64 / p.interval_ns).ceil() as u64;
            due = due.min(in_run);
            if released >= in_run {
                break;
            }
        }
        if due > released {
            p.permits.add_permits((due - released) as usize);
            released = due;
        }
        let next = p.due(released).min(now + Duration::from_millis(100));
        timer.sleep_until(next).await;
    }
    // Whatever was due and not taken never left: the target (or this generator) fell behind.
    p.permits.close();
    let unsent = released.saturating_sub(w.next_ticket.get());
    if unsent > 0 {
        w.slot.lock().unwrap().counts.unsent += unsent;
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
        let t0 = due.unwrap_or(sent_at);
        w.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut attempts = 0u64;
        let mut retried: Vec<Outcome> = Vec::new();
        let mut gave_up = false;
        let answer: Answer = loop {
            attempts += 1;
            let a = conn.export(batch.body.clone()).await;
            if a.outcome.is_success() || !a.retryable {
                break a;
            }
            let Some(policy) = &w.cfg.retry else {
                break a;
            };
            let n = attempts as u32 - 1;
            if n >= policy.max_retries || w.stop.load(Ordering::Relaxed) {
                gave_up = true;
                break a;
            }
            let wait = match a.retry_after {
                Some(d) => d.min(policy.max_delay),
                None => w.backoff(policy, n),
            };
            if w.deadline
                .is_some_and(|d| Instant::now() + wait > d + conn.target().timeout)
            {
                gave_up = true;
                break a;
            }
            retried.push(a.outcome);
            tokio::time::sleep(wait).await;
        };
        let done = Instant::now();
        w.in_flight.fetch_sub(1, Ordering::Relaxed);

        w.record(
            &batch,
            &answer,
            due.is_some(),
            (t0, sent_at, done),
            attempts,
            retried,
            gave_up,
        );
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

fn worker_thread(
    plan: WorkerPlan,
    cfg: Arc<RunConfig>,
    start: Instant,
    stop: Arc<AtomicBool>,
    slot: Arc<Mutex<Slot>>,
    in_flight: Arc<AtomicI64>,
) -> Vec<SentSample> {
    if let Some(core) = plan.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
    }
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
    samples
}

/// Splits `n` into `parts` nearly equal shares.
fn share(n: u64, parts: usize, i: usize) -> u64 {
    n / parts as u64 + u64::from((i as u64) < n % parts as u64)
}

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
    let mut log_builder = IntervalLogWriterBuilder::new();
    log_builder
        .add_comment("glust loadgen: export latency, from the intended send time in open loop")
        .add_comment("Latencies recorded in nanoseconds; the max column is in milliseconds")
        .with_start_time(start_wall)
        .with_base_time(start_wall)
        .with_max_value_divisor(1e6);
    let mut log_writer = match hdr_log.as_mut() {
        Some(w) => Some(
            log_builder
                .begin_log_with(w, &mut ser)
                .map_err(io::Error::other)?,
        ),
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
            if !interval.latency.is_empty() {
                let at = last.saturating_duration_since(start);
                w.write_histogram(
                    &interval.latency,
                    at,
                    now.saturating_duration_since(last),
                    None,
                )
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
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
    for h in handles {
        match h.join() {
            Ok(s) => samples.extend(s),
            Err(_) => return Err(io::Error::other("a worker panicked")),
        }
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
