//! Counters and HDR histograms: recorded by each worker into its own slot (locked once per
//! request by that worker and once a second by the reporter, so never contended), merged by the
//! reporter into the totals, the progress lines, the interval log and the final report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::transport::Outcome;

/// Latencies are recorded in nanoseconds, from 1 µs to 1 hour at 3 significant digits.
pub const HIST_LOW_NS: u64 = 1_000;
pub const HIST_HIGH_NS: u64 = 3_600_000_000_000;
pub const HIST_SIGFIG: u8 = 3;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_NS, HIST_HIGH_NS, HIST_SIGFIG).expect("valid bounds")
}

/// Counters of a run (or of one interval of it).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counts {
    /// Exports finished (each counted once, by its final answer, whatever its retries).
    pub requests: u64,
    /// Items (spans or log records) in the finished exports.
    pub items: u64,
    /// Items in exports answered 2xx, less those the receiver said it rejected.
    pub items_accepted: u64,
    /// Items the receiver rejected in partial-success answers.
    pub items_rejected: u64,
    /// Request body bytes handed to a connection (every attempt that got one; not the
    /// attempts whose connection could not be made).
    pub bytes: u64,
    /// The same bodies before compression.
    pub raw_bytes: u64,
    /// Attempts including retries (also those whose connection could not be made).
    pub attempts: u64,
    /// Attempts after an export's first.
    pub retries: u64,
    /// Exports that succeeded after at least one retry.
    pub retried_ok: u64,
    /// Exports that failed retryably and had no retries left (or the run ended).
    pub gave_up: u64,
    /// Open loop: exports due before the deadline that left after it, in the drain.
    pub drained: u64,
    /// Open loop: exports due before the deadline that were never sent, not even in the drain
    /// (every slot stayed busy). Each is in the latency histogram at (end of the drain − its
    /// due time), a lower bound of its latency; not in `requests`.
    pub unsent: u64,
    /// Final answers by kind.
    #[serde(serialize_with = "outcome_map")]
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Answers that were retried, by kind (not in `outcomes`).
    #[serde(serialize_with = "outcome_map")]
    pub retried: BTreeMap<Outcome, u64>,
    /// The first message seen for each kind of failure.
    #[serde(skip)]
    pub messages: BTreeMap<Outcome, String>,
}

fn outcome_map<S: serde::Serializer>(m: &BTreeMap<Outcome, u64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        map.serialize_entry(&k.label(), v)?;
    }
    map.end()
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.items += o.items;
        self.items_accepted += o.items_accepted;
        self.items_rejected += o.items_rejected;
        self.bytes += o.bytes;
        self.raw_bytes += o.raw_bytes;
        self.attempts += o.attempts;
        self.retries += o.retries;
        self.retried_ok += o.retried_ok;
        self.gave_up += o.gave_up;
        self.drained += o.drained;
        self.unsent += o.unsent;
        for (k, v) in &o.outcomes {
            *self.outcomes.entry(*k).or_default() += v;
        }
        for (k, v) in &o.retried {
            *self.retried.entry(*k).or_default() += v;
        }
        for (k, v) in &o.messages {
            self.messages.entry(*k).or_insert_with(|| v.clone());
        }
    }

    pub fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes.get(&o).copied().unwrap_or(0)
    }

    pub fn ok(&self) -> u64 {
        self.outcome(Outcome::Ok)
    }

    pub fn partial(&self) -> u64 {
        self.outcome(Outcome::Partial)
    }

    /// Final answers other than 2xx, partial, 429 and 503.
    pub fn errors(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k,
                    Outcome::Ok | Outcome::Partial | Outcome::Throttled | Outcome::Unavailable
                )
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// What a worker records into; the reporter swaps it out once a second.
pub struct Slot {
    pub counts: Counts,
    /// Export latency: from the intended send time (open loop) or the send (closed loop) to
    /// the final answer, retries included; for open-loop exports never sent (`counts.unsent`),
    /// from the intended send time to the end of the drain, a lower bound.
    pub latency: Histogram<u64>,
    /// Open loop: how late each export left compared with its intended time.
    pub lag: Histogram<u64>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            counts: Counts::default(),
            latency: new_hist(),
            lag: new_hist(),
        }
    }
}

impl Slot {
    /// Moves everything into `into` (adding) and clears this slot, keeping its allocations.
    pub fn drain_into(&mut self, into: &mut Slot) {
        into.counts.add(&self.counts);
        self.counts = Counts::default();
        into.latency.add(&self.latency).expect("same bounds");
        into.lag.add(&self.lag).expect("same bounds");
        self.latency.reset();
        self.lag.reset();
    }
}

pub fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.2}s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.0}µs", ns / 1e3)
    }
}

pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// One progress line: the last interval's rates and answers, p99 of the interval and so far.
pub fn progress_line(
    elapsed: Duration,
    interval: &Slot,
    interval_secs: f64,
    total: &Slot,
    item_word: &str,
    in_flight: u64,
) -> String {
    let c = &interval.counts;
    let secs = interval_secs.max(1e-9);
    let mut s = format!(
        "[{:>4.0}s] {:>7} req/s {:>8} {item_word}/s  2xx {}",
        elapsed.as_secs_f64(),
        fmt_rate(c.requests as f64 / secs),
        fmt_rate(c.items as f64 / secs),
        c.ok()
    );
    if c.partial() > 0 {
        let _ = write!(s, "  partial {}", c.partial());
    }
    for (k, v) in &c.outcomes {
        if !matches!(k, Outcome::Ok | Outcome::Partial) {
            let _ = write!(s, "  {} {v}", k.label());
        }
    }
    if c.retries > 0 {
        let _ = write!(s, "  retries {}", c.retries);
    }
    let p99 = |h: &Histogram<u64>| {
        if h.is_empty() {
            "-".to_owned()
        } else {
            fmt_ns(h.value_at_quantile(0.99))
        }
    };
    let _ = write!(
        s,
        "  p99 {} (so far {})  in flight {in_flight}",
        p99(&interval.latency),
        p99(&total.latency)
    );
    s
}

/// The percentile distribution in HdrHistogram's standard text form (`.hgrm`), as Java's
/// `outputPercentileDistribution` writes it: values divided by `unit_ratio` (1e6: ns to ms).
pub fn write_hgrm(h: &Histogram<u64>, out: &mut dyn Write, unit_ratio: f64) -> io::Result<()> {
    let p = h.sigfig() as usize;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / unit_ratio;
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.p$} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.p$} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / unit_ratio,
            h.stdev() / unit_ratio,
            h.max() as f64 / unit_ratio,
        )
    };
    let sub_buckets = (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two();
    writeln!(
        out,
        "#[Mean    = {mean:12.p$}, StdDeviation   = {stdev:12.p$}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.p$}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]",
        h.buckets()
    )?;
    Ok(())
}

/// The interval log's writer: `--hdr-log`, one histogram per reporting interval.
pub type IntervalLog<'a, 'b, W> = IntervalLogWriter<'a, 'b, W, V2DeflateSerializer>;

/// Starts the interval log: the HdrHistogram log format (V2 compressed histograms), readable
/// by `HistogramLogProcessor` and friends. `StartTime` and `BaseTime` are both `start`, so
/// each interval's timestamp is seconds since the start of the run.
pub fn begin_interval_log<'a, 'b, W: Write>(
    out: &'a mut W,
    ser: &'b mut V2DeflateSerializer,
    start: SystemTime,
    comment: &str,
) -> io::Result<IntervalLog<'a, 'b, W>> {
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment(comment)
        .add_comment("Latencies recorded in nanoseconds; the max column is in milliseconds")
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1e6);
    builder.begin_log_with(out, ser)
}

/// Appends the histogram of the interval that began `at` after the start and lasted `len`.
/// An empty histogram is not written (HdrHistogram's own writers skip them too).
pub fn write_interval<W: Write>(
    log: &mut IntervalLog<'_, '_, W>,
    at: Duration,
    len: Duration,
    h: &Histogram<u64>,
) -> io::Result<()> {
    if h.is_empty() {
        return Ok(());
    }
    log.write_histogram(h, at, len, None)
        .map_err(|e| io::Error::other(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn hgrm_has_the_standard_shape() {
        let mut h = new_hist();
        for i in 1..=1000u64 {
            h.record(i * 1_000_000).unwrap();
        }
        let mut out = Vec::new();
        write_hgrm(&h, &mut out, 1e6).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first, ["1.000", "0.000000000000", "1", "1.00"]);
        let last_row = lines[lines.len() - 4];
        let cols: Vec<&str> = last_row.split_whitespace().collect();
        assert_eq!(cols.len(), 3, "the 100% row has no 1/(1-p): {last_row}");
        assert_eq!(cols[1], "1.000000000000");
        assert_eq!(cols[2], "1000");
        assert!(lines[lines.len() - 2].starts_with("#[Max     =     1000."));
        assert!(lines[lines.len() - 1].contains("SubBuckets     =         2048"));
    }

    #[test]
    fn interval_log_reads_back() {
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        use hdrhistogram::serialization::Deserializer;
        let mut h = new_hist();
        h.record(5_000_000).unwrap();
        h.record(7_000_000).unwrap();
        let mut out = Vec::new();
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut ser = V2DeflateSerializer::new();
        {
            // The functions the run's reporter calls, in its order.
            let mut log = begin_interval_log(&mut out, &mut ser, start, "test").unwrap();
            let sec = Duration::from_secs(1);
            write_interval(&mut log, Duration::ZERO, sec, &h).unwrap();
            write_interval(&mut log, sec, sec, &new_hist()).unwrap();
            write_interval(&mut log, 2 * sec, sec, &h).unwrap();
        }
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("#test\n"), "{text}");
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        assert!(text.contains("#[BaseTime: 1700000000.000"), "{text}");
        let mut intervals = Vec::new();
        for e in IntervalLogIterator::new(&out) {
            match e.unwrap() {
                LogEntry::Interval(i) => intervals.push((
                    i.start_timestamp(),
                    i.duration(),
                    i.max(),
                    i.encoded_histogram().to_owned(),
                )),
                LogEntry::StartTime(t) | LogEntry::BaseTime(t) => {
                    assert_eq!(t, Duration::from_secs(1_700_000_000));
                }
            }
        }
        // The empty interval is skipped; the others are at their offsets from the start.
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[0].0, Duration::ZERO);
        assert_eq!(intervals[1].0, Duration::from_secs(2));
        assert_eq!(intervals[1].1, Duration::from_secs(1));
        assert!(
            (intervals[0].2 - 7.0).abs() < 0.01,
            "max in ms: {}",
            intervals[0].2
        );
        // And the histogram decodes back to what was recorded.
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&intervals[0].3)
            .unwrap();
        let back: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.max(), h.max());
    }
}
