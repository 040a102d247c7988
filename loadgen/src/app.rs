//! From a parsed command line to a finished run: progress, final report, HDR files, `--verify`.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::cli::Args;
use crate::payload::Signal;
use crate::run::{self, Mode, Outputs, RunResult};
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
    latency: Percentiles,
    send_lag: Option<Percentiles>,
    verify: Option<&'a VerifyReport>,
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
        "requests   {} exports, {} attempts on the wire ({} retries)",
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
    if c.unsent > 0 {
        let _ = writeln!(
            s,
            "backlog    {} exports were due but never sent: every connection was busy (the target, or this generator, could not keep up)",
            c.unsent
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
    if h.is_empty() {
        let _ = writeln!(s, "latency    (no answers)");
    } else {
        let _ = writeln!(
            s,
            "latency    min {}  p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {}  ({} exports, {origin}, retries included)",
            fmt_ns(h.min()),
            fmt_ns(h.value_at_quantile(0.5)),
            fmt_ns(h.value_at_quantile(0.9)),
            fmt_ns(h.value_at_quantile(0.95)),
            fmt_ns(h.value_at_quantile(0.99)),
            fmt_ns(h.value_at_quantile(0.999)),
            fmt_ns(h.max()),
            h.len()
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
    let _ = writeln!(err, "loadgen: {}", plan.summary);
    let mode = plan.run.mode;
    let signal = plan.run.payload.signal;
    let timeout = plan.run.target.timeout;

    let mut log_file = match &args.hdr_log {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some(std::io::BufWriter::new(f)),
            Err(e) => {
                let _ = writeln!(err, "loadgen: {}: {e}", p.display());
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
        run::run(plan.run, stop, outputs)
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "loadgen: {e}");
            return 1;
        }
    };
    if let Some(mut f) = log_file {
        if let Err(e) = f.flush() {
            let _ = writeln!(err, "loadgen: --hdr-log: {e}");
        }
    }
    let _ = write!(
        out,
        "{}",
        render_report(&plan.summary, &result, mode, signal)
    );

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
                let _ = writeln!(err, "loadgen: {}: {e}", p.display());
            }
        }
    }
    if let Some(p) = &args.hdr_log {
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
            report = Some(r);
        }
    }

    if let Some(p) = &args.json_out {
        let secs = result.elapsed.as_secs_f64().max(1e-9);
        let c = &result.totals.counts;
        let j = JsonReport {
            summary: &plan.summary,
            elapsed_secs: secs,
            requests_per_sec: c.requests as f64 / secs,
            items_per_sec: c.items as f64 / secs,
            items_accepted_per_sec: c.items_accepted as f64 / secs,
            counts: c,
            latency: percentiles(&result.totals.latency),
            send_lag: matches!(mode, Mode::Open { .. }).then(|| percentiles(&result.totals.lag)),
            verify: report.as_ref(),
        };
        let res = serde_json::to_vec_pretty(&j)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(p, b));
        if let Err(e) = res {
            let _ = writeln!(err, "loadgen: {}: {e}", p.display());
        }
    }
    let _ = out.flush();
    status
}
