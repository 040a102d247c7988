//! The command line, and its translation into a [`RunConfig`].

use std::io::Read as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgAction, Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use crate::payload::{self, Compression, Generator, PayloadConfig, Signal};
use crate::run::{FixedPayload, Mode, PinFailure, RetryPolicy, RunConfig};
use crate::transport::{Target, Transport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RateUnit {
    /// `--rate` counts spans (or log records) per second.
    Items,
    /// `--rate` counts requests (exports) per second.
    Requests,
}

const ABOUT: &str =
    "Load generator for Glust and any OTLP receiver: OTLP/HTTP (protobuf, JSON) and \
OTLP/gRPC, traces and logs, open loop at a fixed rate (latency from each request's intended send \
time, so coordinated omission cannot hide stalls) or closed loop for peak throughput, with HDR \
histogram reports and a read-back check of what was stored.";

const AFTER: &str = "\
Examples (Glust running with `cargo run --release` on the default ports):
  loadgen --max --duration 10s                                  # peak, HTTP/protobuf traces
  loadgen --rate 200000 --duration 30s --cores 1 --hdr-out p.hgrm
  loadgen --transport grpc --rate 50000 --compression gzip      # OTLP/gRPC on 4317
  loadgen --signal logs --transport http-json --max --connections 8
  loadgen --max --fixed-payload --http2 --connections 2 --inflight 16
  loadgen --rate 20000 --duration 5s --verify                   # then read a sample back

Exit status: 0 when the run went through (and --verify passed), 1 when no export was answered
2xx, --verify found missing or different items, or --hdr-out, --hdr-log or --json-out could not
be written, 2 for a bad command line.";

/// `loadgen`: see `--help`.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", version, about = ABOUT, after_help = AFTER)]
pub struct Args {
    // ---- target ----
    /// Receiver address, `host:port` or `http://host:port`, without a path (loadgen adds
    /// `/v1/traces`, `/v1/logs` or the gRPC service path) [default: 127.0.0.1:4318, or
    /// 127.0.0.1:4317 with --transport grpc].
    #[arg(long, help_heading = "Target")]
    pub endpoint: Option<String>,

    /// Protocol and encoding.
    #[arg(
        long,
        value_enum,
        default_value = "http-protobuf",
        help_heading = "Target"
    )]
    pub transport: Transport,

    /// What to send.
    #[arg(long, value_enum, default_value = "traces", help_heading = "Target")]
    pub signal: Signal,

    /// Request body compression (`zstd`: OTLP/HTTP only).
    #[arg(long, value_enum, default_value = "none", help_heading = "Target")]
    pub compression: Compression,

    /// Short for `--compression gzip`.
    #[arg(long, conflicts_with = "compression", help_heading = "Target")]
    pub gzip: bool,

    /// OTLP/HTTP over HTTP/2 (cleartext, prior knowledge) instead of HTTP/1.1; needed for
    /// --inflight above 1. gRPC always uses HTTP/2.
    #[arg(long, help_heading = "Target")]
    pub http2: bool,

    /// Time one attempt may take (connect, send, answer) before it counts as a timeout. Also
    /// the longest drain after an open-loop run (see --duration).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, help_heading = "Target")]
    pub timeout: Duration,

    // ---- load ----
    /// Open loop: send at this fixed rate, in spans (log records) per second, or requests per
    /// second with --rate-unit requests. Latency counts from each request's intended send time.
    #[arg(long, conflicts_with = "max", help_heading = "Load")]
    pub rate: Option<f64>,

    /// What --rate counts.
    #[arg(long, value_enum, default_value = "items", help_heading = "Load")]
    pub rate_unit: RateUnit,

    /// Closed loop: every request slot sends its next request as soon as the last is answered
    /// (--connections × --inflight slots), for peak throughput.
    #[arg(long, help_heading = "Load")]
    pub max: bool,

    /// How long to send. An open-loop run then drains (exports due and not yet sent still
    /// go, for up to one --timeout), so it ends at most --duration + 2 × --timeout after it
    /// starts; a closed-loop run waits for the answers in flight.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, help_heading = "Load")]
    pub duration: Duration,

    /// Stop after this many requests (whichever of this and --duration comes first).
    #[arg(long, help_heading = "Load")]
    pub requests: Option<u64>,

    /// Connections in all (spread over the workers).
    #[arg(long, default_value_t = 4, help_heading = "Load")]
    pub connections: usize,

    /// Requests in flight per connection (HTTP/2 streams; HTTP/1.1 allows 1).
    #[arg(long, default_value_t = 1, help_heading = "Load")]
    pub inflight: usize,

    /// Cores to run workers on, one pinned worker per core: `1`, `0,1`, `2-3` [default: all].
    #[arg(long, help_heading = "Load")]
    pub cores: Option<String>,

    /// Do not pin workers to cores (one worker per --cores entry all the same).
    #[arg(long, help_heading = "Load")]
    pub no_pin: bool,

    // ---- payload ----
    /// Seed of the payload generator: the same seed gives the same payloads (and the same trace
    /// ids, so a second run with one seed sends duplicates) [default: a fresh one, printed].
    #[arg(long, help_heading = "Payload")]
    pub seed: Option<u64>,

    /// Spans (or log records) per request.
    #[arg(long, alias = "batch", default_value_t = 100, help_heading = "Payload")]
    pub items_per_request: usize,

    /// Mean spans per trace (each trace has between half and 1.5 times this).
    #[arg(long, default_value_t = 10, help_heading = "Payload")]
    pub spans_per_trace: usize,

    /// Traces emitted at once per worker: each request takes spans from random open traces,
    /// so a trace's spans arrive in different requests, as real services send them.
    #[arg(long, default_value_t = 32, help_heading = "Payload")]
    pub open_traces: usize,

    /// Attributes per span or log record (semantic-convention ones first, then generic ones of
    /// mixed types; Glust keeps at most 128).
    #[arg(long, default_value_t = 8, help_heading = "Payload")]
    pub attrs: usize,

    /// Length in bytes of generic string attribute values.
    #[arg(long, default_value_t = 16, help_heading = "Payload")]
    pub attr_size: usize,

    /// Distinct services (resources).
    #[arg(long, default_value_t = 10, help_heading = "Payload")]
    pub services: usize,

    /// Distinct operations (span names) per service.
    #[arg(long, default_value_t = 20, help_heading = "Payload")]
    pub operations: usize,

    /// Fraction of spans with status ERROR and an `exception` event (of logs at ERROR).
    #[arg(long, default_value_t = 0.01, help_heading = "Payload")]
    pub error_ratio: f64,

    /// Mean span events per span (besides exception events).
    #[arg(long, default_value_t = 0.1, help_heading = "Payload")]
    pub events_per_span: f64,

    /// Length in bytes of a log record's body.
    #[arg(long, default_value_t = 64, help_heading = "Payload")]
    pub log_body_size: usize,

    /// Fraction of log records carrying the trace and span id of a generated span.
    #[arg(long, default_value_t = 0.9, help_heading = "Payload")]
    pub log_trace_ratio: f64,

    /// Generate one request body up front and send it every time (peak-rate tests without
    /// generator cost; the receiver then stores the same ids over and over).
    #[arg(long, help_heading = "Payload")]
    pub fixed_payload: bool,

    /// Send this file as every request's body: OTLP protobuf or JSON as the transport says,
    /// already compressed if --compression says so (for gRPC: the message, which is framed).
    #[arg(long, conflicts_with = "fixed_payload", help_heading = "Payload")]
    pub payload_file: Option<PathBuf>,

    // ---- retries ----
    /// Retry per the OTLP rules: HTTP 429/502/503/504, gRPC UNAVAILABLE, CANCELLED,
    /// DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, DATA_LOSS, and RESOURCE_EXHAUSTED when it
    /// carries RetryInfo; also connection failures and timeouts. Waits as Retry-After /
    /// RetryInfo say, else exponential backoff with jitter. Counted separately.
    #[arg(long, help_heading = "Retries")]
    pub retry: bool,

    /// Retries per request after the first attempt.
    #[arg(long, default_value_t = 5, help_heading = "Retries")]
    pub max_retries: u32,

    /// First backoff when the answer names no delay (doubles per retry, ±50 % jitter).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration, help_heading = "Retries")]
    pub retry_backoff: Duration,

    /// Longest backoff.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, help_heading = "Retries")]
    pub retry_max_backoff: Duration,

    /// Longest Retry-After / RetryInfo delay honoured; longer ones are cut to this.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, help_heading = "Retries")]
    pub retry_max_delay: Duration,

    // ---- output ----
    /// Write the latency percentile distribution here (HdrHistogram `.hgrm` text, ms).
    #[arg(long, help_heading = "Output")]
    pub hdr_out: Option<PathBuf>,

    /// Write one latency histogram per second here (HdrHistogram interval log, V2 compressed;
    /// values in ns), readable by HistogramLogProcessor and other HdrHistogram tools.
    #[arg(long, help_heading = "Output")]
    pub hdr_log: Option<PathBuf>,

    /// Write the final report as JSON here (for scripts).
    #[arg(long, help_heading = "Output")]
    pub json_out: Option<PathBuf>,

    /// No progress lines (the final report is still printed).
    #[arg(long, short, action = ArgAction::SetTrue, help_heading = "Output")]
    pub quiet: bool,

    // ---- verify ----
    /// After the run, read a sample of the sent traces (and their log records) back through
    /// the Glust query API and report items missing or different.
    #[arg(long, help_heading = "Verify")]
    pub verify: bool,

    /// Query API address [default: the endpoint's host, port 3200].
    #[arg(long, help_heading = "Verify")]
    pub query: Option<String>,

    /// Fraction of generated traces whose items are kept for --verify.
    #[arg(long, default_value_t = 0.01, help_heading = "Verify")]
    pub verify_ratio: f64,

    /// Most traces read back.
    #[arg(long, default_value_t = 200, help_heading = "Verify")]
    pub verify_traces: usize,

    /// With --verify: write the ids of the traces read back here, one per line in hex (for
    /// scripts that time lookups of traces known to be stored).
    #[arg(long, help_heading = "Verify")]
    pub trace_ids_out: Option<PathBuf>,
}

/// What [`parse_addr`] accepts, for its error messages.
const ADDR_FORMS: &str = "expected host:port, host, or http://host:port";

/// `host[:port]` or `http://host[:port][/]` → (address, authority). Not a URL with a path:
/// loadgen sends to the OTLP paths itself (`/v1/traces`, `/v1/logs`, the gRPC services).
pub fn parse_addr(s: &str, default_port: u16) -> Result<(SocketAddr, String), String> {
    let t = s.trim();
    let t = match t.split_once("://") {
        None => t,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(format!("{s}: TLS is not supported ({ADDR_FORMS})"));
        }
        Some((scheme, _)) => {
            return Err(format!("{s}: unknown scheme {scheme}:// ({ADDR_FORMS})"));
        }
    };
    let t = t.strip_suffix('/').unwrap_or(t);
    if let Some(i) = t.find(['/', '?', '#']) {
        return Err(format!(
            "{s}: {ADDR_FORMS}, without a path ({} here): loadgen adds the paths itself",
            &t[i..]
        ));
    }
    if t.is_empty() || t.contains('@') {
        return Err(format!("{s}: {ADDR_FORMS}"));
    }
    let authority = if t
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        t.to_owned()
    } else {
        format!("{t}:{default_port}")
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{s}: cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: {authority} resolves to no address"))?;
    Ok((addr, authority))
}

/// `1`, `0,1`, `2-3`, `0,2-3`, `all`.
pub fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if s.trim() == "all" {
        return Ok(available);
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let (a, b): (usize, usize) = (
            a.trim()
                .parse()
                .map_err(|_| format!("bad core list {s:?}"))?,
            b.trim()
                .parse()
                .map_err(|_| format!("bad core list {s:?}"))?,
        );
        for c in a..=b {
            if !available.is_empty() && !available.contains(&c) {
                return Err(format!(
                    "core {c} is not available (available: {available:?})"
                ));
            }
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    if out.is_empty() {
        return Err("empty core list".into());
    }
    Ok(out)
}

/// Items in a body given as a file (decompressed as --compression says).
fn count_items(
    body: &[u8],
    transport: Transport,
    signal: Signal,
    c: Compression,
) -> Result<u64, String> {
    let raw: Vec<u8> = match c {
        Compression::None => body.to_vec(),
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| format!("not gzip: {e}"))?;
            out
        }
        Compression::Zstd => {
            zstd::stream::decode_all(body).map_err(|e| format!("not zstd: {e}"))?
        }
    };
    let msg = match transport {
        Transport::HttpJson => match signal {
            Signal::Traces => payload::Message::Traces(
                serde_json::from_slice::<ExportTraceServiceRequest>(&raw)
                    .map_err(|e| format!("not OTLP JSON traces: {e}"))?,
            ),
            Signal::Logs => payload::Message::Logs(
                serde_json::from_slice::<ExportLogsServiceRequest>(&raw)
                    .map_err(|e| format!("not OTLP JSON logs: {e}"))?,
            ),
        },
        _ => match signal {
            Signal::Traces => payload::Message::Traces(
                ExportTraceServiceRequest::decode(raw.as_slice())
                    .map_err(|e| format!("not OTLP protobuf traces: {e}"))?,
            ),
            Signal::Logs => payload::Message::Logs(
                ExportLogsServiceRequest::decode(raw.as_slice())
                    .map_err(|e| format!("not OTLP protobuf logs: {e}"))?,
            ),
        },
    };
    Ok(msg.items())
}

fn fresh_seed() -> u64 {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
        ^ ((std::process::id() as u64) << 40);
    // Small enough to type back in.
    crate::rng::splitmix64(&mut x) % 1_000_000_000
}

/// What the run needs besides its [`RunConfig`].
pub struct Plan {
    pub run: RunConfig,
    pub query: Option<(SocketAddr, String)>,
    pub warnings: Vec<String>,
    /// The summary line around its workers part (which only the run can tell for sure).
    summary_head: String,
    summary_tail: String,
    /// The cores of the workers (one each), and whether they are to be pinned to them.
    worker_cores: Vec<usize>,
    pin: bool,
}

impl Plan {
    /// One line describing the run. `pin_failures`: `None` before the run (the workers have
    /// not pinned themselves yet), then the workers that could not be pinned.
    pub fn summary(&self, pin_failures: Option<&[PinFailure]>) -> String {
        let n = self.worker_cores.len();
        let workers = match (self.pin, pin_failures) {
            (false, _) => format!("{n} worker(s) unpinned"),
            (true, None) => format!("{n} worker(s) to pin to cores {:?}", self.worker_cores),
            (true, Some([])) => format!("{n} worker(s) pinned to cores {:?}", self.worker_cores),
            (true, Some(failed)) => {
                let (bad, good): (Vec<usize>, Vec<usize>) = self
                    .worker_cores
                    .iter()
                    .partition(|c| failed.iter().any(|f| f.core == **c));
                if good.is_empty() {
                    format!("{n} worker(s) unpinned (pinning to cores {bad:?} failed)")
                } else {
                    format!(
                        "{n} worker(s), pinned to cores {good:?}, unpinned (pinning failed) for cores {bad:?}"
                    )
                }
            }
        };
        format!("{}{workers}{}", self.summary_head, self.summary_tail)
    }
}

impl Args {
    pub fn compression(&self) -> Compression {
        if self.gzip {
            Compression::Gzip
        } else {
            self.compression
        }
    }

    pub fn plan(&self) -> Result<Plan, String> {
        let seed = self.seed.unwrap_or_else(fresh_seed);
        let compression = self.compression();
        let mut warnings = Vec::new();
        if self.transport == Transport::Grpc && compression == Compression::Zstd {
            return Err("--compression zstd is for OTLP/HTTP; gRPC takes none or gzip".into());
        }
        let http2 = self.http2 || self.transport == Transport::Grpc;
        if self.inflight > 1 && !http2 {
            return Err(
                "--inflight above 1 needs HTTP/2: add --http2 (HTTP/1.1 has one request in flight per connection)"
                    .into(),
            );
        }
        if self.connections == 0 || self.inflight == 0 {
            return Err("--connections and --inflight must be at least 1".into());
        }
        if self.items_per_request == 0 {
            return Err("--items-per-request must be at least 1".into());
        }
        let mode = match (self.rate, self.max) {
            (Some(r), false) => {
                if !(r.is_finite() && r > 0.0) {
                    return Err("--rate must be above 0".into());
                }
                let per_req = match self.rate_unit {
                    RateUnit::Requests => 1.0,
                    RateUnit::Items => self.items_per_request as f64,
                };
                Mode::Open {
                    requests_per_sec: r / per_req,
                }
            }
            (None, true) => Mode::Closed,
            _ => {
                return Err(
                    "choose the mode: --rate N (open loop, N spans/s) or --max (closed loop)"
                        .into(),
                )
            }
        };
        if self.trace_ids_out.is_some() && !self.verify {
            return Err(
                "--trace-ids-out writes the traces --verify reads back: add --verify".into(),
            );
        }
        if (self.fixed_payload || self.payload_file.is_some()) && self.verify {
            return Err(
                "--verify needs generated payloads (a fixed payload repeats the same ids)".into(),
            );
        }
        for (name, v) in [
            ("--error-ratio", self.error_ratio),
            ("--log-trace-ratio", self.log_trace_ratio),
            ("--verify-ratio", self.verify_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} is a fraction between 0 and 1"));
            }
        }
        if self.attrs > 128 {
            warnings.push(format!(
                "--attrs {}: Glust keeps 128 attributes per item and counts the rest as dropped",
                self.attrs
            ));
        }
        if self.attr_size > 65536 || self.log_body_size > 65536 {
            warnings.push("values above 64 KiB are truncated by Glust".into());
        }
        let (addr, authority) = parse_addr(
            self.endpoint
                .as_deref()
                .unwrap_or(if self.transport == Transport::Grpc {
                    "127.0.0.1:4317"
                } else {
                    "127.0.0.1:4318"
                }),
            self.transport.default_port(),
        )?;
        let query = if self.verify {
            let q = match &self.query {
                Some(q) => q.clone(),
                None => {
                    let host = authority.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
                    format!("{host}:3200")
                }
            };
            Some(parse_addr(&q, 3200)?)
        } else {
            None
        };
        let cores = match &self.cores {
            Some(s) => parse_cores(s)?,
            None => parse_cores("all").unwrap_or_default(),
        };
        let cores = if cores.is_empty() { vec![0] } else { cores };
        let target = Target {
            addr,
            authority,
            transport: self.transport,
            signal: self.signal,
            compression,
            http2,
            timeout: self.timeout,
        };
        let payload = PayloadConfig {
            signal: self.signal,
            items_per_request: self.items_per_request,
            spans_per_trace: self.spans_per_trace.max(1),
            open_traces: self.open_traces.max(1),
            attrs: self.attrs,
            attr_size: self.attr_size,
            services: self.services.max(1),
            operations: self.operations.max(1),
            error_ratio: self.error_ratio,
            events_per_span: self.events_per_span.max(0.0),
            log_body_size: self.log_body_size,
            log_trace_ratio: self.log_trace_ratio,
            verify_ratio: if self.verify { self.verify_ratio } else { 0.0 },
        };
        let fixed = if let Some(path) = &self.payload_file {
            let body = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let items = count_items(&body, self.transport, self.signal, compression)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let raw_bytes = body.len();
            let body = if self.transport == Transport::Grpc {
                payload::grpc_frame(&body, compression != Compression::None)
            } else {
                body
            };
            Some(FixedPayload {
                body: Bytes::from(body),
                items,
                raw_bytes,
            })
        } else if self.fixed_payload {
            let mut g = Generator::new(&payload, self.transport.wire(), compression, seed, 0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            let b = g.next_batch(now);
            Some(FixedPayload {
                body: b.body,
                items: b.items,
                raw_bytes: b.raw_bytes,
            })
        } else {
            None
        };
        if let (Mode::Open { .. }, Some(f), RateUnit::Items) = (&mode, &fixed, self.rate_unit) {
            if f.items != self.items_per_request as u64 {
                return Err(format!(
                    "the payload file holds {} items, not --items-per-request {}: say that, or use --rate-unit requests",
                    f.items, self.items_per_request
                ));
            }
        }
        let item_word = match self.signal {
            Signal::Traces => "spans",
            Signal::Logs => "log records",
        };
        let mode_text = match mode {
            Mode::Open { requests_per_sec } => format!(
                "open loop at {:.0} req/s ({:.0} {item_word}/s)",
                requests_per_sec,
                requests_per_sec
                    * fixed
                        .as_ref()
                        .map_or(self.items_per_request as f64, |f| f.items as f64)
            ),
            Mode::Closed => "closed loop (--max)".to_owned(),
        };
        let workers = cores.len().min(self.connections);
        let summary_head = format!(
            "{} {} -> {}, {mode_text}, {}{}, ",
            match self.transport {
                Transport::HttpProtobuf => "OTLP/HTTP protobuf",
                Transport::HttpJson => "OTLP/HTTP JSON",
                Transport::Grpc => "OTLP/gRPC",
            },
            match self.signal {
                Signal::Traces => "traces",
                Signal::Logs => "logs",
            },
            target.authority,
            humantime::format_duration(self.duration),
            self.requests
                .map(|n| format!(" or {n} requests"))
                .unwrap_or_default(),
        );
        let summary_tail = format!(
            ", {} connection(s) x {} in flight{}, compression {}, {} {item_word}/request, seed {}{}",
            self.connections,
            self.inflight,
            if http2 && self.transport != Transport::Grpc {
                " (HTTP/2)"
            } else {
                ""
            },
            compression.header().unwrap_or("none"),
            fixed
                .as_ref()
                .map_or(self.items_per_request as u64, |f| f.items),
            seed,
            if fixed.is_some() { ", fixed payload" } else { "" },
        );
        let retry = self.retry.then_some(RetryPolicy {
            max_retries: self.max_retries,
            initial_backoff: self.retry_backoff,
            max_backoff: self.retry_max_backoff,
            max_delay: self.retry_max_delay,
        });
        let run = RunConfig {
            target,
            payload,
            seed,
            mode,
            duration: Some(self.duration),
            max_requests: self.requests,
            cores: if self.no_pin {
                Vec::new()
            } else {
                cores.clone()
            },
            worker_count: if self.no_pin { workers } else { 0 },
            connections: self.connections,
            inflight: self.inflight,
            fixed,
            retry,
            keep_samples: self.verify,
        };
        Ok(Plan {
            run,
            query,
            warnings,
            summary_head,
            summary_tail,
            worker_cores: cores[..workers].to_vec(),
            pin: !self.no_pin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_every_accepted_form() {
        for (s, authority) in [
            ("127.0.0.1:4318", "127.0.0.1:4318"),
            ("127.0.0.1", "127.0.0.1:4318"),
            ("http://127.0.0.1:9999", "127.0.0.1:9999"),
            ("HTTP://127.0.0.1:9999/", "127.0.0.1:9999"),
            ("[::1]:4317", "[::1]:4317"),
        ] {
            let (addr, a) = parse_addr(s, 4318).unwrap();
            assert_eq!(a, authority, "{s}");
            assert_eq!(addr.to_string(), authority, "{s}");
        }
    }

    #[test]
    fn a_url_with_a_path_is_a_clear_error_not_a_dns_failure() {
        let e = parse_addr("http://127.0.0.1:4318/v1/traces", 4318).unwrap_err();
        assert!(e.contains("without a path"), "{e}");
        assert!(e.contains("/v1/traces here"), "{e}");
        assert!(e.contains("http://host:port"), "{e}");
        let e = parse_addr("localhost:4318/v1/logs", 4318).unwrap_err();
        assert!(e.contains("without a path"), "{e}");
        let e = parse_addr("https://collector:4318", 4318).unwrap_err();
        assert!(e.contains("TLS is not supported"), "{e}");
        let e = parse_addr("grpc://127.0.0.1:4317", 4317).unwrap_err();
        assert!(e.contains("unknown scheme grpc://"), "{e}");
        let e = parse_addr("http://", 4318).unwrap_err();
        assert!(e.contains("expected host:port"), "{e}");
    }

    #[test]
    fn the_summary_says_pinned_only_for_workers_that_are() {
        let args = Args::try_parse_from([
            "loadgen",
            "--max",
            "--cores",
            "0",
            "--endpoint",
            "127.0.0.1:1",
        ])
        .unwrap();
        let plan = args.plan().unwrap();
        assert!(plan
            .summary(None)
            .contains("1 worker(s) to pin to cores [0]"));
        assert!(plan
            .summary(Some(&[]))
            .contains("1 worker(s) pinned to cores [0]"));
        let failed = [PinFailure {
            worker: 0,
            core: 0,
            error: "Invalid argument".into(),
        }];
        let s = plan.summary(Some(&failed));
        assert!(!s.contains("pinned to"), "{s}");
        assert!(
            s.contains("1 worker(s) unpinned (pinning to cores [0] failed)"),
            "{s}"
        );
    }
}
