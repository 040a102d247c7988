//! From a parsed command line to a finished run: progress, final report, HDR files, `--verify`.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::cli::Args;
use crate::payload::Signal;
use crate::run::{self, Mode, Outputs, PinFailure, RunResult};
use crate::stats::{self, fmt_bytes, fmt_ns, fmt_rate};
use crate::transport::Outcome;
use crate::verify::{self, VerifyReport};

#[derive(serde::Serialize)]
struct Percentiles {
    count: u64,
    min_ns: u64,
    p50_ns: u64,
    p90_ns: u64,
    p95_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    max_ns: u64,
    mean_ns: f64,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles {
            count: 0,
            min_ns: 0,
            p50_ns: 0,
            p90_ns: 0,
            p95_ns: 0,
            p99_ns: 0,
            p999_ns: 0,
            max_ns: 0,
            mean_ns: 0.0,
        };
    }
    Percentiles {
        count: h.len(),
        min_ns: h.min(),
        p50_ns: h.value_at_quantile(0.50),
        p90_ns: h.value_at_quantile(0.90),
        p95_ns: h.value_at_quantile(0.95),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
        mean_ns: h.mean(),
    }
}

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    summary: &'a str,
    elapsed_secs: f64,
    requests_per_sec: f64,
    items_per_sec: f64,
    items_accepted_per_sec: f64,
    counts: &'a stats::Counts,
    /// What `latency` measures, in words (and what it holds besides answered exports).
    latency_note: String,
    latency: Percentiles,
    /// Of `latency.count`, the exports never sent (`counts.unsent`), at a lower bound.
    latency_never_sent: u64,
    /// Open loop: how long after the deadline due exports could still be sent.
    drain_limit_secs: Option<f64>,
    send_lag: Option<Percentiles>,
    pin_failures: &'a [PinFailure],
    verify: Option<&'a VerifyReport>,
}

/// What the latency histogram measures, as one sentence.
fn latency_note(r: &RunResult, mode: Mode) -> String {
    let c = &r.totals.counts;
    match mode {
        Mode::Closed => "from each export's send to its final answer, retries included".to_owned(),
        Mode::Open { .. } if c.unsent == 0 => {
            "from each export's intended send time to its final answer, retries included".to_owned()
        }
        Mode::Open { .. } => format!(
            "from each export's intended send time to its final answer, retries included; \
             {} of the {} exports were never sent and count from their intended send time \
             to {}, a lower bound of their latency",
            c.unsent,
            r.totals.latency.len(),
            unsent_until(r)
        ),
    }
}

/// Until when exports never sent are counted.
fn unsent_until(r: &RunResult) -> &'static str {
    if r.stopped_by_signal {
        "the signal that stopped the run"
    } else {
        "the end of the drain"
    }
}

/// How the run ended for due exports: after the drain, or at once on a signal.
fn drain_text(r: &RunResult) -> String {
    match (r.stopped_by_signal, r.drain_limit) {
        (true, _) => "a signal stopped the run, so there was no drain".to_owned(),
        (false, Some(d)) => format!(
            "not even in the drain of up to {} after the end",
            humantime::format_duration(d)
        ),
        (false, None) => "before the end".to_owned(),
    }
}

/// The final report, as text.
pub fn render_report(summary: &str, r: &RunResult, mode: Mode, signal: Signal) -> String {
    let c = &r.totals.counts;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let item = match signal {
        Signal::Traces => "spans",
        Signal::Logs => "log records",
    };
    let mut s = String::new();
    let _ = writeln!(s, "\n== loadgen: {summary}");
    if r.stopped_by_signal {
        let _ = writeln!(s, "   (stopped early by a signal)");
    }
    let _ = writeln!(
        s,
        "requests   {} exports, {} attempts ({} retries)",
        c.requests, c.attempts, c.retries
    );
    let _ = writeln!(
        s,
        "{:<10} {} sent, {} accepted, {} rejected (partial success)",
        if signal == Signal::Logs {
            "logs"
        } else {
            "spans"
        },
        c.items,
        c.items_accepted,
        c.items_rejected
    );
    let _ = writeln!(
        s,
        "bytes      {} on the wire ({}/s), {} before compression",
        fmt_bytes(c.bytes),
        fmt_bytes((c.bytes as f64 / secs) as u64),
        fmt_bytes(c.raw_bytes)
    );
    let mut achieved = format!(
        "achieved   {} req/s, {} {item}/s ({} {item}/s accepted) over {:.2}s",
        fmt_rate(c.requests as f64 / secs),
        fmt_rate(c.items as f64 / secs),
        fmt_rate(c.items_accepted as f64 / secs),
        secs
    );
    if let Mode::Open { requests_per_sec } = mode {
        let _ = write!(achieved, " (target {} req/s)", fmt_rate(requests_per_sec));
    }
    let _ = writeln!(s, "{achieved}");
    let _ = writeln!(
        s,
        "answers    2xx {}  partial {}  429 {}  503 {}  errors {}",
        c.ok(),
        c.partial(),
        c.outcome(Outcome::Throttled),
        c.outcome(Outcome::Unavailable),
        c.errors()
    );
    let others: Vec<String> = c
        .outcomes
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k,
                Outcome::Ok | Outcome::Partial | Outcome::Throttled | Outcome::Unavailable
            )
        })
        .map(|(k, v)| format!("{} {v}", k.label()))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(s, "errors     {}", others.join("  "));
    }
    if c.retries > 0 || c.gave_up > 0 {
        let causes: Vec<String> = c
            .retried
            .iter()
            .map(|(k, v)| format!("{} {v}", k.label()))
            .collect();
        let _ = writeln!(
            s,
            "retries    {} retries (after: {}), {} exports succeeded after retrying, {} gave up",
            c.retries,
            causes.join(", "),
            c.retried_ok,
            c.gave_up
        );
    }
    if c.drained > 0 {
        let _ = writeln!(
            s,
            "drain      {} exports due before the end left after it, in the drain (every connection was busy until then)",
            c.drained
        );
    }
    if c.unsent > 0 {
        let _ = writeln!(
            s,
            "backlog    {} exports were due but never sent ({}): every connection stayed busy (the target, or this generator, could not keep up). \
             They are in the latency figures below, counted from their intended send time to {}: a lower bound",
            c.unsent,
            drain_text(r),
            unsent_until(r)
        );
    }
    for (k, m) in &c.messages {
        let _ = writeln!(s, "  first {}: {}", k.label(), m.trim());
    }
    let h = &r.totals.latency;
    let origin = match mode {
        Mode::Open { .. } => "from each export's intended send time",
        Mode::Closed => "from each export's send",
    };
    let exports = if c.unsent > 0 {
        format!(
            "{} exports: {} answered, {} never sent at a lower bound",
            h.len(),
            c.requests,
            c.unsent
        )
    } else {
        format!("{} exports", h.len())
    };
    if h.is_empty() {
        let _ = writeln!(s, "latency    (no answers)");
    } else {
        let _ = writeln!(
            s,
            "latency    min {}  p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {}  ({exports}, {origin}, retries included)",
            fmt_ns(h.min()),
            fmt_ns(h.value_at_quantile(0.5)),
            fmt_ns(h.value_at_quantile(0.9)),
            fmt_ns(h.value_at_quantile(0.95)),
            fmt_ns(h.value_at_quantile(0.99)),
            fmt_ns(h.value_at_quantile(0.999)),
            fmt_ns(h.max()),
        );
    }
    let lag = &r.totals.lag;
    if matches!(mode, Mode::Open { .. }) && !lag.is_empty() {
        let _ = writeln!(
            s,
            "send lag   p50 {}  p99 {}  max {}  (how late exports left after their intended time: waiting for a free connection, or the generator)",
            fmt_ns(lag.value_at_quantile(0.5)),
            fmt_ns(lag.value_at_quantile(0.99)),
            fmt_ns(lag.max())
        );
    }
    s
}

/// Runs the command line; returns the exit status.
pub fn main_with(
    args: Args,
    stop: Arc<AtomicBool>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let plan = match args.plan() {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "loadgen: {e}");
            return 2;
        }
    };
    for w in &plan.warnings {
        let _ = writeln!(err, "loadgen: warning: {w}");
    }
    let _ = writeln!(err, "loadgen: {}", plan.summary(None));
    let mode = plan.run.mode;
    let signal = plan.run.payload.signal;
    let timeout = plan.run.target.timeout;

    let mut log_file = match &args.hdr_log {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some(std::io::BufWriter::new(f)),
            Err(e) => {
                let _ = writeln!(err, "loadgen: --hdr-log {}: {e}", p.display());
                return 2;
            }
        },
        None => None,
    };
    let result = {
        let outputs = Outputs {
            progress: if args.quiet { None } else { Some(&mut *err) },
            hdr_log: log_file.as_mut().map(|f| f as &mut dyn Write),
        };
        run::run(plan.run.clone(), stop, outputs)
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "loadgen: {e}");
            return 1;
        }
    };
    for f in &result.pin_failures {
        let _ = writeln!(
            err,
            "loadgen: warning: worker {} could not be pinned to core {} ({}): it ran unpinned",
            f.worker, f.core, f.error
        );
    }
    // Output files that could not be written fail the run (exit 1): a script reading them
    // must not take a cut log or a stale file for this run's results.
    let mut output_failed = false;
    let mut hdr_log_written = false;
    if let Some(p) = &args.hdr_log {
        let res = match &result.hdr_log_error {
            Some(e) => Err(e.to_string()),
            None => log_file.take().map_or(Ok(()), |f| {
                f.into_inner()
                    .map(drop)
                    .map_err(|e| e.into_error().to_string())
            }),
        };
        match res {
            Ok(()) => hdr_log_written = true,
            Err(e) => {
                output_error(err, "--hdr-log", p, "the interval log", e);
                output_failed = true;
            }
        }
    }
    let summary = plan.summary(Some(&result.pin_failures));
    let _ = write!(out, "{}", render_report(&summary, &result, mode, signal));

    if let Some(p) = &args.hdr_out {
        let res = std::fs::File::create(p).and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            stats::write_hgrm(&result.totals.latency, &mut w, 1e6)?;
            w.flush()
        });
        match res {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "hdr        percentile distribution (ms) written to {}",
                    p.display()
                );
            }
            Err(e) => {
                output_error(err, "--hdr-out", p, "the percentile distribution", e);
                output_failed = true;
            }
        }
    }
    if let (Some(p), true) = (&args.hdr_log, hdr_log_written) {
        let _ = writeln!(out, "hdr        interval log written to {}", p.display());
    }

    let mut status = if result.totals.counts.ok() + result.totals.counts.partial() == 0 {
        let _ = writeln!(err, "loadgen: no export was answered 2xx");
        1
    } else {
        0
    };

    let mut report = None;
    if let Some((addr, authority)) = &plan.query {
        let expected = verify::expected_from(&result.samples);
        if expected.is_empty() {
            let _ = writeln!(
                out,
                "verify: no trace was sampled (raise --verify-ratio or send longer)"
            );
            status = 1;
        } else {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a Tokio runtime");
            let r = rt.block_on(verify::verify(
                &expected,
                *addr,
                authority,
                args.verify_traces,
                timeout.max(Duration::from_secs(10)),
            ));
            let _ = write!(out, "{}", r.render());
            if !r.passed() {
                status = 1;
            }
            if let Some(p) = &args.trace_ids_out {
                let ids: String = expected
                    .keys()
                    .take(args.verify_traces)
                    .map(|id| format!("{id}\n"))
                    .collect();
                if let Err(e) = std::fs::write(p, ids) {
                    let _ = writeln!(out, "loadgen: cannot write {}: {e}", p.display());
                    status = 1;
                }
            }
            report = Some(r);
        }
    }

    if let Some(p) = &args.json_out {
        let secs = result.elapsed.as_secs_f64().max(1e-9);
        let c = &result.totals.counts;
        let j = JsonReport {
            summary: &summary,
            elapsed_secs: secs,
            requests_per_sec: c.requests as f64 / secs,
            items_per_sec: c.items as f64 / secs,
            items_accepted_per_sec: c.items_accepted as f64 / secs,
            counts: c,
            latency_note: latency_note(&result, mode),
            latency: percentiles(&result.totals.latency),
            latency_never_sent: c.unsent,
            drain_limit_secs: result.drain_limit.map(|d| d.as_secs_f64()),
            send_lag: matches!(mode, Mode::Open { .. }).then(|| percentiles(&result.totals.lag)),
            pin_failures: &result.pin_failures,
            verify: report.as_ref(),
        };
        let res = serde_json::to_vec_pretty(&j)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(p, b));
        if let Err(e) = res {
            output_error(err, "--json-out", p, "the report", e);
            output_failed = true;
        }
    }
    let _ = out.flush();
    if output_failed && status == 0 {
        status = 1;
    }
    status
}

/// Says that output file `path` of `flag` could not be written.
fn output_error(
    err: &mut dyn Write,
    flag: &str,
    path: &std::path::Path,
    what: &str,
    e: impl std::fmt::Display,
) {
    let _ = writeln!(
        err,
        "loadgen: {flag} {}: could not write {what}: {e}",
        path.display()
    );
}
