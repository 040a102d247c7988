//! Internal metrics: per-shard counters and HDR histograms, merged when read.
//!
//! Each shard writes only its own (`Cell`s and `RefCell<Histogram>` in its `Rc` state): no
//! sharing, no atomics on the hot path. `/metrics`, `/debug/hdr` and the interval dumps ask
//! every shard for a [`Snapshot`] over the mesh and merge them (HDR histograms add exactly).
//!
//! Histograms record nanoseconds with 3 significant digits, from 1 µs to 1 h.
//!
//! Prometheus exposition: histograms are exposed as **summaries** (quantiles 0.5, 0.9, 0.95,
//! 0.99, 0.999, `NaN` while empty, and `_sum`/`_count`; `_sum` is the HDR mean times the count,
//! exact to the histogram's 0.1%), computed from the merged HDR histogram of all shards. Why:
//! the HDR data gives exact quantiles at 0.1% precision over the whole range with no bucket
//! layout to choose, and merging happens here, across shards, before quantiles are computed.
//! The price is the usual one of summaries: quantiles of several Glust instances cannot be
//! aggregated in Prometheus; use `/debug/hdr` dumps and HdrHistogram tools for that.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::domain::validate::{RejectReason, Rejections};

/// The latency histograms every shard keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hist {
    /// OTLP/HTTP traces request, from its first byte (HTTP/1.1; over HTTP/2 from its stream's
    /// start) to its answer.
    HttpTraces,
    HttpLogs,
    /// OTLP/gRPC traces call, from its stream's start (HEADERS parsed) to its answer.
    GrpcTraces,
    GrpcLogs,
    /// Decoding and validating one request body.
    Decode,
    /// Time an append request waited in the cross-shard queue before its owner took it.
    QueueWait,
    /// Appending and indexing one request's records on one shard.
    Append,
    /// One group-commit fsync round.
    Sync,
}

impl Hist {
    pub const ALL: [Hist; 8] = [
        Hist::HttpTraces,
        Hist::HttpLogs,
        Hist::GrpcTraces,
        Hist::GrpcLogs,
        Hist::Decode,
        Hist::QueueWait,
        Hist::Append,
        Hist::Sync,
    ];

    /// The name in `/metrics`, `/debug/hdr?metric=` and dump file names.
    pub fn name(self) -> &'static str {
        match self {
            Hist::HttpTraces => "request_http_traces",
            Hist::HttpLogs => "request_http_logs",
            Hist::GrpcTraces => "request_grpc_traces",
            Hist::GrpcLogs => "request_grpc_logs",
            Hist::Decode => "decode",
            Hist::QueueWait => "queue_wait",
            Hist::Append => "append",
            Hist::Sync => "sync",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Hist::HttpTraces => {
                "OTLP/HTTP trace export latency, first byte (HTTP/2: stream start) to answer"
            }
            Hist::HttpLogs => {
                "OTLP/HTTP log export latency, first byte (HTTP/2: stream start) to answer"
            }
            Hist::GrpcTraces => "OTLP/gRPC trace export latency, stream start to answer",
            Hist::GrpcLogs => "OTLP/gRPC log export latency, stream start to answer",
            Hist::Decode => "time to decode and validate one request body",
            Hist::QueueWait => "time an append waited in a cross-shard queue",
            Hist::Append => {
                "time to stage one request's records on a shard until their group write returned"
            }
            Hist::Sync => "duration of one group-commit fsync round",
        }
    }

    pub fn from_name(name: &str) -> Option<Hist> {
        Hist::ALL.into_iter().find(|h| h.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Lowest and highest values a histogram tracks, in nanoseconds.
const HIST_LOW_NANOS: u64 = 1_000;
const HIST_HIGH_NANOS: u64 = 3_600_000_000_000;
const HIST_SIGFIG: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_NANOS, HIST_HIGH_NANOS, HIST_SIGFIG)
        .expect("valid histogram bounds")
}

/// Why the items of a decoded request were not stored although they were valid: the request
/// was refused as a whole with a retryable answer (the `reason` label of
/// `glust_{spans,logs}_dropped_total`). Requests refused before their body was decoded (too
/// many in flight, too many bytes) have no known item count: `glust_requests_throttled_total`
/// counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Overload: 429 / gRPC `UNAVAILABLE`, nothing written.
    Throttled,
    /// Storage failure or shutdown: 503 / gRPC `UNAVAILABLE`.
    Failed,
}

impl Dropped {
    pub const COUNT: usize = 2;
    pub const ALL: [Dropped; Dropped::COUNT] = [Dropped::Throttled, Dropped::Failed];

    pub const fn label(self) -> &'static str {
        match self {
            Dropped::Throttled => "throttled",
            Dropped::Failed => "failed",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

// Counters are indexed by `index()`: `ALL` lists the reasons in that order.
const _: () = {
    let mut i = 0;
    while i < Dropped::COUNT {
        assert!(Dropped::ALL[i].index() == i);
        i += 1;
    }
};

/// The counter names of one signal's items.
pub struct ItemNames {
    accepted: (&'static str, &'static str),
    rejected: (&'static str, &'static str),
    dropped: (&'static str, &'static str),
}

pub static SPAN_NAMES: ItemNames = ItemNames {
    accepted: ("spans_accepted_total", "spans stored"),
    rejected: (
        "spans_rejected_total",
        "spans refused as invalid (partial_success), by reason",
    ),
    dropped: (
        "spans_dropped_total",
        "spans that passed validation in a request answered 429/503 (gRPC UNAVAILABLE) as a \
         whole, by reason: the client may retry them",
    ),
};

pub static LOG_NAMES: ItemNames = ItemNames {
    accepted: ("logs_accepted_total", "log records stored"),
    rejected: (
        "logs_rejected_total",
        "log records refused as invalid (partial_success), by reason",
    ),
    dropped: (
        "logs_dropped_total",
        "log records that passed validation in a request answered 429/503 (gRPC UNAVAILABLE) \
         as a whole, by reason: the client may retry them",
    ),
};

/// What became of the items (spans or log records) of one signal.
pub struct ItemCounters {
    names: &'static ItemNames,
    pub accepted: Cell<u64>,
    rejected: [Cell<u64>; RejectReason::COUNT],
    dropped: [Cell<u64>; Dropped::COUNT],
}

impl ItemCounters {
    pub fn new(names: &'static ItemNames) -> Self {
        ItemCounters {
            names,
            accepted: Cell::new(0),
            rejected: std::array::from_fn(|_| Cell::new(0)),
            dropped: std::array::from_fn(|_| Cell::new(0)),
        }
    }

    /// Counts a request's invalid items, by reason.
    pub fn reject(&self, r: &Rejections) {
        for reason in RejectReason::ALL {
            add(&self.rejected[reason.index()], r.count_of(reason));
        }
    }

    /// Counts `n` valid items of a request refused as a whole.
    pub fn drop_items(&self, why: Dropped, n: u64) {
        add(&self.dropped[why.index()], n);
    }

    fn counters(&self, out: &mut Vec<Counter>) {
        let n = self.names;
        out.push(Counter::new(
            n.accepted.0,
            n.accepted.1,
            self.accepted.get(),
        ));
        for reason in RejectReason::ALL {
            let v = self.rejected[reason.index()].get();
            out.push(Counter::new(n.rejected.0, n.rejected.1, v).label("reason", reason.label()));
        }
        for why in Dropped::ALL {
            let v = self.dropped[why.index()].get();
            out.push(Counter::new(n.dropped.0, n.dropped.1, v).label("reason", why.label()));
        }
    }
}

pub struct ShardMetrics {
    pub requests: Cell<u64>,
    pub requests_bad: Cell<u64>,
    pub requests_throttled: Cell<u64>,
    pub requests_failed: Cell<u64>,
    pub spans: ItemCounters,
    pub logs: ItemCounters,
    pub values_truncated: Cell<u64>,
    pub attributes_dropped: Cell<u64>,
    pub bytes_received: Cell<u64>,
    pub bytes_received_wire: Cell<u64>,
    pub records_appended: Cell<u64>,
    pub bytes_appended: Cell<u64>,
    /// Batches written by the shard's group write (one `pwrite` each, or more past its size
    /// limit or across a rollover).
    pub group_writes: Cell<u64>,
    /// Segments deleted by retention, and the bytes they held.
    pub segments_deleted: Cell<u64>,
    pub bytes_deleted: Cell<u64>,
    /// Raw segments sealed, sealings that failed, and sealed blocks found damaged on read.
    pub segments_sealed: Cell<u64>,
    pub seal_failures: Cell<u64>,
    pub sealed_blocks_damaged: Cell<u64>,
    /// Sealed blocks read and decoded by queries (lookups, searches, summaries).
    pub sealed_blocks_read: Cell<u64>,
    /// Searches (each shard's part) stopped at their deadline, and stopped because their
    /// request went away.
    pub searches_timed_out: Cell<u64>,
    pub searches_cancelled: Cell<u64>,
    /// Sealed pairs found damaged at start-up (`RecoveryReport::sealed_damaged`).
    pub sealed_segments_damaged: Cell<u64>,
    hists: [RefCell<Histogram<u64>>; 8],
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            requests: Cell::new(0),
            requests_bad: Cell::new(0),
            requests_throttled: Cell::new(0),
            requests_failed: Cell::new(0),
            spans: ItemCounters::new(&SPAN_NAMES),
            logs: ItemCounters::new(&LOG_NAMES),
            values_truncated: Cell::new(0),
            attributes_dropped: Cell::new(0),
            bytes_received: Cell::new(0),
            bytes_received_wire: Cell::new(0),
            records_appended: Cell::new(0),
            bytes_appended: Cell::new(0),
            group_writes: Cell::new(0),
            segments_deleted: Cell::new(0),
            bytes_deleted: Cell::new(0),
            segments_sealed: Cell::new(0),
            seal_failures: Cell::new(0),
            sealed_blocks_damaged: Cell::new(0),
            sealed_blocks_read: Cell::new(0),
            searches_timed_out: Cell::new(0),
            searches_cancelled: Cell::new(0),
            sealed_segments_damaged: Cell::new(0),
            hists: std::array::from_fn(|_| RefCell::new(new_histogram())),
        }
    }
}

impl ShardMetrics {
    /// Records one duration. Values outside the tracked range are clamped to it.
    pub fn record(&self, h: Hist, d: Duration) {
        let nanos = (d.as_nanos() as u64).clamp(HIST_LOW_NANOS, HIST_HIGH_NANOS);
        let _ = self.hists[h.index()].borrow_mut().record(nanos);
    }

    /// Counters, gauges and histograms as they are now.
    pub fn snapshot(&self, gauges: Vec<(&'static str, &'static str, u64)>) -> Snapshot {
        let c = |name, help, cell: &Cell<u64>| Counter::new(name, help, cell.get());
        let mut counters = vec![
            c("requests_total", "ingest requests received", &self.requests),
            c(
                "requests_bad_total",
                "ingest requests refused as malformed (4xx, INVALID_ARGUMENT and the like)",
                &self.requests_bad,
            ),
            c(
                "requests_throttled_total",
                "ingest requests refused as overload (429, UNAVAILABLE), nothing written",
                &self.requests_throttled,
            ),
            c(
                "requests_failed_total",
                "ingest requests failed by storage or shutdown (503)",
                &self.requests_failed,
            ),
        ];
        self.spans.counters(&mut counters);
        self.logs.counters(&mut counters);
        counters.extend([
            c(
                "values_truncated_total",
                "attribute values truncated or flattened by the limits",
                &self.values_truncated,
            ),
            c(
                "attributes_dropped_total",
                "attributes dropped past the per-item limit",
                &self.attributes_dropped,
            ),
            c(
                "bytes_received_total",
                "request body bytes received, decompressed (gRPC: messages without framing)",
                &self.bytes_received,
            ),
            c(
                "bytes_received_wire_total",
                "request body bytes as they came off the wire (compressed; gRPC: framed)",
                &self.bytes_received_wire,
            ),
            c(
                "records_appended_total",
                "records appended to segments",
                &self.records_appended,
            ),
            c(
                "bytes_appended_total",
                "record payload bytes appended to segments",
                &self.bytes_appended,
            ),
            c(
                "group_writes_total",
                "batches of records written together by the group write (records_appended_total / this: records per batch)",
                &self.group_writes,
            ),
            c(
                "segments_deleted_total",
                "segments deleted by retention (--retention-bytes, --retention-age)",
                &self.segments_deleted,
            ),
            c(
                "bytes_deleted_total",
                "bytes the segments deleted by retention held",
                &self.bytes_deleted,
            ),
            c(
                "segments_sealed_total",
                "raw segments rewritten as sealed segments (compressed blocks and a sidecar)",
                &self.segments_sealed,
            ),
            c(
                "seal_failures_total",
                "sealings that failed (the raw segment stays and is served)",
                &self.seal_failures,
            ),
            c(
                "sealed_blocks_damaged_total",
                "sealed blocks (and needle filters) found damaged when read or rebuilt (skipped, never served; a damaged filter's blocks are read instead)",
                &self.sealed_blocks_damaged,
            ),
            c(
                "sealed_blocks_read_total",
                "sealed blocks read and decoded by queries: trace lookups, searches and their summaries",
                &self.sealed_blocks_read,
            ),
            c(
                "searches_timed_out_total",
                "searches stopped at their deadline (`timeout`) and answered partial, each shard's part counted",
                &self.searches_timed_out,
            ),
            c(
                "searches_cancelled_total",
                "searches stopped because the request that asked for them went away, each shard's part counted",
                &self.searches_cancelled,
            ),
            c(
                "sealed_segments_damaged_total",
                "sealed pairs found damaged at start-up: rebuilt from their data file, sealed again from their raw segment, or not served",
                &self.sealed_segments_damaged,
            ),
        ]);
        Snapshot {
            counters,
            gauges,
            oldest: Vec::new(),
            hists: Hist::ALL
                .iter()
                .map(|&h| (h, self.hists[h.index()].borrow().clone()))
                .collect(),
        }
    }
}

/// Adds `n` to a counter.
pub fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// One counter of a [`Snapshot`]: a Prometheus counter, or one labelled series of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    pub label: Option<(&'static str, &'static str)>,
    pub value: u64,
}

impl Counter {
    pub fn new(name: &'static str, help: &'static str, value: u64) -> Counter {
        Counter {
            name,
            help,
            label: None,
            value,
        }
    }

    fn label(self, key: &'static str, value: &'static str) -> Counter {
        Counter {
            label: Some((key, value)),
            ..self
        }
    }
}

/// One shard's metrics, or several shards' merged. `Send`: it crosses the mesh.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The series of one labelled counter follow each other.
    pub counters: Vec<Counter>,
    pub gauges: Vec<(&'static str, &'static str, u64)>,
    /// Gauges merged by their smallest value over the shards (0: the shard has none), such
    /// as the time of the oldest data kept.
    pub oldest: Vec<(&'static str, &'static str, u64)>,
    pub hists: Vec<(Hist, Histogram<u64>)>,
}

impl Snapshot {
    /// Adds another shard's snapshot to this one.
    pub fn merge(&mut self, other: &Snapshot) {
        for (mine, theirs) in self.counters.iter_mut().zip(&other.counters) {
            debug_assert_eq!((mine.name, mine.label), (theirs.name, theirs.label));
            mine.value += theirs.value;
        }
        for (mine, theirs) in self.gauges.iter_mut().zip(&other.gauges) {
            debug_assert_eq!(mine.0, theirs.0);
            mine.2 += theirs.2;
        }
        for (mine, theirs) in self.oldest.iter_mut().zip(&other.oldest) {
            debug_assert_eq!(mine.0, theirs.0);
            mine.2 = match (mine.2, theirs.2) {
                (0, v) | (v, 0) => v,
                (a, b) => a.min(b),
            };
        }
        for (mine, theirs) in self.hists.iter_mut().zip(&other.hists) {
            debug_assert_eq!(mine.0, theirs.0);
            let _ = mine.1.add(&theirs.1);
        }
    }

    pub fn hist(&self, h: Hist) -> Option<&Histogram<u64>> {
        self.hists.iter().find(|(k, _)| *k == h).map(|(_, v)| v)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut previous = "";
        for Counter {
            name,
            help,
            label,
            value,
        } in &self.counters
        {
            if *name != previous {
                let _ = writeln!(
                    out,
                    "# HELP glust_{name} {help}\n# TYPE glust_{name} counter"
                );
                previous = name;
            }
            match label {
                Some((k, v)) => {
                    let _ = writeln!(out, "glust_{name}{{{k}=\"{v}\"}} {value}");
                }
                None => {
                    let _ = writeln!(out, "glust_{name} {value}");
                }
            }
        }
        for (name, help, v) in self.gauges.iter().chain(&self.oldest) {
            let _ = writeln!(
                out,
                "# HELP glust_{name} {help}\n# TYPE glust_{name} gauge\nglust_{name} {v}"
            );
        }
        for (h, hist) in &self.hists {
            let name = format!("glust_{}_seconds", h.name());
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} summary", h.help());
            for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
                // No observation, no quantile: Prometheus summaries say NaN.
                let v = if hist.is_empty() {
                    f64::NAN
                } else {
                    hist.value_at_quantile(q) as f64 / 1e9
                };
                let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
            }
            let sum = hist.mean() * hist.len() as f64 / 1e9;
            let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", hist.len());
        }
        out
    }
}

/// A histogram's percentile distribution in the HdrHistogram `.hgrm` text format (what
/// `outputPercentileDistribution` prints), values scaled by `unit` (e.g. 1e6 for ms): as many
/// decimals as the histogram has significant digits, and more for units coarser than a
/// millisecond so that a microsecond still shows (6 in seconds).
pub fn hgrm(h: &Histogram<u64>, unit: f64) -> String {
    let p = usize::from(h.sigfig()) + (unit.log10().round() as usize).saturating_sub(6);
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / unit;
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.p$} {q:14.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.p$} {q:14.12} {total:10}");
            }
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.p$}, StdDeviation   = {:12.p$}]",
        h.mean() / unit,
        h.stdev() / unit
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.p$}, Total count    = {:12}]",
        h.max() as f64 / unit,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two()
    );
    out
}

/// The interval logs' max column is in milliseconds (the histograms hold nanoseconds), as
/// HdrHistogram's Java tools write and expect by default.
const HLOG_MAX_DIVISOR: f64 = 1e6;

/// Appends interval histograms to one HdrHistogram interval log per metric,
/// `<dir>/<metric>.hlog`, readable by the standard HdrHistogram tools (HistogramLogProcessor,
/// the HdrHistogram plotter). Blocking file I/O: run it on the blocking pool.
pub struct IntervalDumper {
    dir: std::path::PathBuf,
    previous: Option<Snapshot>,
    last: std::time::Instant,
    started_instant: std::time::Instant,
}

impl IntervalDumper {
    pub fn new(dir: std::path::PathBuf) -> std::io::Result<IntervalDumper> {
        std::fs::create_dir_all(&dir)?;
        let started = std::time::SystemTime::now();
        for h in Hist::ALL {
            let path = dir.join(format!("{}.hlog", h.name()));
            let mut file = std::fs::File::create(&path)?;
            let mut ser = hdrhistogram::serialization::V2DeflateSerializer::new();
            hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder::new()
                .add_comment(&format!(
                    "glust {} ({}), values in nanoseconds, the max column in milliseconds",
                    h.name(),
                    h.help()
                ))
                .with_start_time(started)
                .with_base_time(started)
                .with_max_value_divisor(HLOG_MAX_DIVISOR)
                .begin_log_with(&mut file, &mut ser)?;
        }
        let now = std::time::Instant::now();
        Ok(IntervalDumper {
            dir,
            previous: None,
            last: now,
            started_instant: now,
        })
    }

    /// Writes what every histogram recorded since the last call.
    pub fn dump(&mut self, current: Snapshot) -> std::io::Result<()> {
        let now = std::time::Instant::now();
        let start = self.last.duration_since(self.started_instant);
        let duration = now.duration_since(self.last);
        for (h, hist) in &current.hists {
            let mut interval = hist.clone();
            if let Some(prev) = self.previous.as_ref().and_then(|p| p.hist(*h)) {
                // Histograms only grow, so the interval is the difference.
                let _ = interval.subtract(prev);
            }
            if interval.is_empty() {
                // `subtract` leaves the old maximum's trace behind; an empty interval is empty.
                interval = new_histogram();
            }
            // The writer begins with its header (the max divisor's comment): keep the interval
            // line only, the header was written once by `new`.
            let mut line = Vec::new();
            let mut ser = hdrhistogram::serialization::V2DeflateSerializer::new();
            hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder::new()
                .with_max_value_divisor(HLOG_MAX_DIVISOR)
                .begin_log_with(&mut line, &mut ser)?
                .write_histogram(&interval, start, duration, None)
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(self.dir.join(format!("{}.hlog", h.name())))?;
            for l in line.split_inclusive(|&b| b == b'\n') {
                if !l.starts_with(b"#") {
                    file.write_all(l)?;
                }
            }
        }
        self.previous = Some(current);
        self.last = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_merge_and_render() {
        let a = ShardMetrics::default();
        let b = ShardMetrics::default();
        add(&a.spans.accepted, 10);
        add(&b.spans.accepted, 5);
        let mut r = Rejections::default();
        r.reject_with(RejectReason::TraceId, String::new);
        r.reject_n(2, RejectReason::EndBeforeStart, String::new);
        a.logs.reject(&r);
        b.logs.reject(&r);
        b.logs.drop_items(Dropped::Throttled, 100);
        for i in 1..=1000u64 {
            a.record(Hist::Append, Duration::from_micros(i));
        }
        b.record(Hist::Append, Duration::from_millis(500));
        let mut s = a.snapshot(vec![("segments", "segment files", 3)]);
        s.merge(&b.snapshot(vec![("segments", "segment files", 4)]));
        let text = s.prometheus();
        assert!(text.contains("glust_spans_accepted_total 15\n"), "{text}");
        assert!(text.contains(
            "# TYPE glust_logs_rejected_total counter\n\
             glust_logs_rejected_total{reason=\"trace_id\"} 2\n\
             glust_logs_rejected_total{reason=\"span_id\"} 0\n"
        ));
        assert!(text.contains("glust_logs_rejected_total{reason=\"end_before_start\"} 4\n"));
        assert!(text.contains("glust_logs_dropped_total{reason=\"throttled\"} 100\n"));
        assert!(text.contains("glust_spans_dropped_total{reason=\"failed\"} 0\n"));
        assert_eq!(text.matches("# HELP glust_logs_rejected_total").count(), 1);
        assert!(text.contains("glust_segments 7\n"));
        assert!(text.contains("glust_append_seconds_count 1001\n"));
        let p50 = s.hist(Hist::Append).unwrap().value_at_quantile(0.5);
        assert!((499_000..=502_000).contains(&p50), "p50 {p50}");
        let hgrm = hgrm(s.hist(Hist::Append).unwrap(), 1e6);
        assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(hgrm.contains("#[Max     ="), "{hgrm}");
        assert!(hgrm.contains("Total count    =         1001]"), "{hgrm}");
        assert_eq!(Hist::from_name("queue_wait"), Some(Hist::QueueWait));
    }

    /// Rows of a `.hgrm`: (value, percentile, total count).
    fn rows(hgrm: &str) -> Vec<(f64, f64, u64)> {
        hgrm.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((
                    f.next()?.parse().ok()?,
                    f.next()?.parse().ok()?,
                    f.next()?.parse().ok()?,
                ))
            })
            .collect()
    }

    #[test]
    fn hgrm_counts_run_up_and_seconds_keep_microseconds() {
        let m = ShardMetrics::default();
        for us in [250u64, 500, 750, 1000] {
            m.record(Hist::Sync, Duration::from_micros(us));
        }
        let h = m.snapshot(Vec::new()).hist(Hist::Sync).unwrap().clone();
        for unit in [1e9, 1e6, 1e3] {
            let text = hgrm(&h, unit);
            let rows = rows(&text);
            // The first row is the lowest value with its own count; the count only grows and
            // ends at the total.
            assert_eq!(rows[0].2, 1, "{text}");
            assert!(rows.windows(2).all(|w| w[0].2 <= w[1].2), "{text}");
            assert_eq!(rows.last().unwrap().2, 4, "{text}");
            // Every value shows, in any unit: 250 µs is 0.000250 s.
            let lowest = rows[0].0 * unit / 1e3;
            assert!((249.0..=251.0).contains(&lowest), "{unit}: {text}");
        }
        assert!(hgrm(&h, 1e9).contains("    0.000250 "), "{}", hgrm(&h, 1e9));
    }
}
