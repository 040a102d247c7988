//! Seeded, deterministic OTLP payloads: traces (a tree of spans across services, emitted in the
//! order spans end, interleaved across several open traces so that one trace's spans arrive in
//! different requests) and log records (most of them inside a span of such a trace).
//!
//! A [`Generator`] is one stream: the same `(config, seed, stream, now values)` always gives the
//! same requests, byte for byte. Each worker of a run owns its own stream.

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;

use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Logs,
}

/// How a message is put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Wire {
    /// OTLP/HTTP with `application/x-protobuf`.
    Protobuf,
    /// OTLP/HTTP with `application/json` (the OTLP JSON encoding).
    Json,
    /// OTLP/gRPC: protobuf in one length-prefixed gRPC message.
    Grpc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    /// OTLP/HTTP only (gRPC has no standard zstd encoding).
    Zstd,
}

impl Compression {
    /// The `Content-Encoding` (HTTP) or `grpc-encoding` (gRPC) value.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// The shape of the generated data.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PayloadConfig {
    pub signal: Signal,
    /// Spans (or log records) per request.
    pub items_per_request: usize,
    /// Mean spans per trace; each trace has between about half and one and a half times this.
    pub spans_per_trace: usize,
    /// Traces being emitted at once per stream: spans of a trace are spread over requests.
    pub open_traces: usize,
    /// Attributes per span or log record.
    pub attrs: usize,
    /// Length of generic string attribute values, bytes.
    pub attr_size: usize,
    /// Distinct services (resources).
    pub services: usize,
    /// Distinct operations (span names) per service.
    pub operations: usize,
    /// Fraction of spans with an error status (and an `exception` event); of logs at ERROR.
    pub error_ratio: f64,
    /// Mean events per span (besides the exception events of errors).
    pub events_per_span: f64,
    /// Length of a log record's body, bytes.
    pub log_body_size: usize,
    /// Fraction of log records carrying the trace and span id of a generated span.
    pub log_trace_ratio: f64,
    /// Fraction of traces whose items are kept for `--verify`.
    pub verify_ratio: f64,
}

impl Default for PayloadConfig {
    fn default() -> Self {
        PayloadConfig {
            signal: Signal::Traces,
            items_per_request: 100,
            spans_per_trace: 10,
            open_traces: 32,
            attrs: 8,
            attr_size: 16,
            services: 10,
            operations: 20,
            error_ratio: 0.01,
            events_per_span: 0.1,
            log_body_size: 64,
            log_trace_ratio: 0.9,
            verify_ratio: 0.0,
        }
    }
}

/// A service: its resource (per stream: the instance id differs) and instrumentation scope.
#[derive(Debug)]
pub struct ServiceRes {
    pub name: String,
    pub resource: Resource,
    pub scope: InstrumentationScope,
    pub ops: Vec<String>,
}

/// An item kept for `--verify`, with the resource and scope it was sent under.
#[derive(Clone, Debug)]
pub enum Sample {
    Span {
        service: Arc<ServiceRes>,
        span: Span,
    },
    Log {
        service: Arc<ServiceRes>,
        log: LogRecord,
    },
}

impl Sample {
    pub fn trace_id(&self) -> &[u8] {
        match self {
            Sample::Span { span, .. } => &span.trace_id,
            Sample::Log { log, .. } => &log.trace_id,
        }
    }
}

/// One generated request.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The body as sent (encoded, compressed, framed for gRPC).
    pub body: Bytes,
    /// Spans or log records in it.
    pub items: u64,
    /// The encoded message before compression.
    pub raw_bytes: usize,
    /// Items of sampled traces, for `--verify`.
    pub samples: Vec<Sample>,
}

/// The message of one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Message {
    pub fn items(&self) -> u64 {
        match self {
            Message::Traces(m) => m
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum(),
            Message::Logs(m) => m
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len() as u64)
                .sum(),
        }
    }

    pub fn encode_proto(&self) -> Vec<u8> {
        match self {
            Message::Traces(m) => m.encode_to_vec(),
            Message::Logs(m) => m.encode_to_vec(),
        }
    }

    pub fn encode_json(&self) -> Vec<u8> {
        match self {
            Message::Traces(m) => serde_json::to_vec(m),
            Message::Logs(m) => serde_json::to_vec(m),
        }
        .expect("generated messages hold no value JSON cannot encode")
    }
}

/// Encodes a message for the wire: `(body, bytes before compression)`.
pub fn encode(msg: &Message, wire: Wire, compression: Compression) -> (Vec<u8>, usize) {
    let raw = match wire {
        Wire::Json => msg.encode_json(),
        Wire::Protobuf | Wire::Grpc => msg.encode_proto(),
    };
    let raw_len = raw.len();
    let body = compress(raw, compression);
    let body = match wire {
        Wire::Grpc => grpc_frame(&body, compression != Compression::None),
        _ => body,
    };
    (body, raw_len)
}

pub fn compress(raw: Vec<u8>, compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => raw,
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(raw.len() / 4 + 64),
                flate2::Compression::fast(),
            );
            enc.write_all(&raw).expect("writing to a Vec");
            enc.finish().expect("writing to a Vec")
        }
        Compression::Zstd => zstd::bulk::compress(&raw, 3).expect("zstd into memory"),
    }
}

/// One gRPC length-prefixed message: compressed flag, big-endian length, bytes.
pub fn grpc_frame(msg: &[u8], compressed: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 5);
    out.push(compressed as u8);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

const SERVICE_NAMES: &[&str] = &[
    "frontend",
    "checkout",
    "cart",
    "payment",
    "shipping",
    "currency",
    "email",
    "recommendation",
    "ad",
    "product-catalog",
    "quote",
    "fraud-detection",
    "accounting",
    "inventory",
    "auth",
    "search",
    "user",
    "notification",
    "pricing",
    "gateway",
];
const NOUNS: &[&str] = &[
    "cart", "order", "user", "product", "invoice", "session", "item", "quote", "review", "address",
    "payment", "coupon",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];

fn op_name(service: usize, i: usize) -> String {
    let noun = NOUNS[(i + service) % NOUNS.len()];
    let round = i / 6;
    let suffix = if round == 0 {
        String::new()
    } else {
        format!("/v{round}")
    };
    match i % 6 {
        0 => format!("GET /api/{noun}s{suffix}"),
        1 => format!("POST /api/{noun}s{suffix}"),
        2 => format!("GET /api/{noun}s/{{id}}{suffix}"),
        3 => format!("SELECT {noun}s{suffix}"),
        4 => format!("cache.get {noun}{suffix}"),
        _ => format!("publish {noun}.events{suffix}"),
    }
}

fn service_name(i: usize) -> String {
    if i < SERVICE_NAMES.len() {
        SERVICE_NAMES[i].to_owned()
    } else {
        format!("service-{i}")
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: impl Into<String>) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn build_services(cfg: &PayloadConfig, stream: u64) -> Vec<Arc<ServiceRes>> {
    (0..cfg.services.max(1))
        .map(|i| {
            let name = service_name(i);
            let resource = Resource {
                attributes: vec![
                    kv("service.name", s(name.clone())),
                    kv("service.version", s(format!("1.{}.{}", i % 7, i % 3))),
                    kv(
                        "service.instance.id",
                        s(format!("{name}-{stream:04}-{:04x}", (i * 7919) % 65536)),
                    ),
                    kv(
                        "host.name",
                        s(format!("node-{}", (stream as usize + i) % 8)),
                    ),
                    kv("deployment.environment.name", s("loadtest")),
                    kv("telemetry.sdk.name", s("opentelemetry")),
                    kv("telemetry.sdk.language", s("rust")),
                    kv("telemetry.sdk.version", s("0.33.0")),
                ],
                ..Default::default()
            };
            let scope = InstrumentationScope {
                name: format!("{name}.instrumentation"),
                version: "0.33.0".to_owned(),
                ..Default::default()
            };
            let ops = (0..cfg.operations.max(1)).map(|o| op_name(i, o)).collect();
            Arc::new(ServiceRes {
                name,
                resource,
                scope,
                ops,
            })
        })
        .collect()
}

/// A trace being emitted: its spans not sent yet, last to send first.
struct OpenTrace {
    pending: Vec<(u16, Span)>,
    sampled: bool,
}

pub struct Generator {
    cfg: PayloadConfig,
    wire: Wire,
    compression: Compression,
    rng: Rng,
    /// Separate, so that turning `--verify` on does not change the payloads.
    sample_rng: Rng,
    services: Vec<Arc<ServiceRes>>,
    open: Vec<OpenTrace>,
    /// Makes every log record's observed time unique within the stream.
    log_seq: u64,
}

impl Generator {
    pub fn new(
        cfg: &PayloadConfig,
        wire: Wire,
        compression: Compression,
        seed: u64,
        stream: u64,
    ) -> Generator {
        Generator {
            cfg: cfg.clone(),
            wire,
            compression,
            rng: Rng::derive(seed, stream * 2),
            sample_rng: Rng::derive(seed, stream * 2 + 1),
            services: build_services(cfg, stream),
            open: Vec::new(),
            log_seq: 0,
        }
    }

    pub fn services(&self) -> &[Arc<ServiceRes>] {
        &self.services
    }

    /// The next request, encoded; `now_ns` is the wall-clock time its items are stamped around.
    pub fn next_batch(&mut self, now_ns: u64) -> Batch {
        let (msg, samples) = self.next_message(now_ns);
        let (body, raw_bytes) = encode(&msg, self.wire, self.compression);
        Batch {
            body: Bytes::from(body),
            items: msg.items(),
            raw_bytes,
            samples,
        }
    }

    /// The next request's message, and the items of it that belong to sampled traces.
    pub fn next_message(&mut self, now_ns: u64) -> (Message, Vec<Sample>) {
        match self.cfg.signal {
            Signal::Traces => self.next_traces(now_ns),
            Signal::Logs => self.next_logs(now_ns),
        }
    }

    fn next_traces(&mut self, now_ns: u64) -> (Message, Vec<Sample>) {
        let mut groups: Vec<(u16, Vec<Span>)> = Vec::new();
        let mut samples = Vec::new();
        for _ in 0..self.cfg.items_per_request.max(1) {
            let (svc, span, sampled) = self.next_span(now_ns);
            if sampled {
                samples.push(Sample::Span {
                    service: self.services[svc as usize].clone(),
                    span: span.clone(),
                });
            }
            match groups.iter_mut().find(|(s, _)| *s == svc) {
                Some((_, spans)) => spans.push(span),
                None => groups.push((svc, vec![span])),
            }
        }
        let resource_spans = groups
            .into_iter()
            .map(|(svc, spans)| {
                let svc = &self.services[svc as usize];
                ResourceSpans {
                    resource: Some(svc.resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(svc.scope.clone()),
                        spans,
                        schema_url: String::new(),
                    }],
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".to_owned(),
                }
            })
            .collect();
        (
            Message::Traces(ExportTraceServiceRequest { resource_spans }),
            samples,
        )
    }

    fn next_logs(&mut self, now_ns: u64) -> (Message, Vec<Sample>) {
        let mut groups: Vec<(u16, Vec<LogRecord>)> = Vec::new();
        let mut samples = Vec::new();
        for _ in 0..self.cfg.items_per_request.max(1) {
            let (svc, log, sampled) = self.next_log(now_ns);
            if sampled {
                samples.push(Sample::Log {
                    service: self.services[svc as usize].clone(),
                    log: log.clone(),
                });
            }
            match groups.iter_mut().find(|(s, _)| *s == svc) {
                Some((_, logs)) => logs.push(log),
                None => groups.push((svc, vec![log])),
            }
        }
        let resource_logs = groups
            .into_iter()
            .map(|(svc, log_records)| {
                let svc = &self.services[svc as usize];
                ResourceLogs {
                    resource: Some(svc.resource.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(svc.scope.clone()),
                        log_records,
                        schema_url: String::new(),
                    }],
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".to_owned(),
                }
            })
            .collect();
        (
            Message::Logs(ExportLogsServiceRequest { resource_logs }),
            samples,
        )
    }

    /// The next span of a random open trace (opening a new trace where one is finished).
    fn next_span(&mut self, now_ns: u64) -> (u16, Span, bool) {
        let want = self.cfg.open_traces.max(1);
        while self.open.len() < want {
            let t = self.new_trace(now_ns);
            self.open.push(t);
        }
        let i = self.rng.below(self.open.len() as u64) as usize;
        let trace = &mut self.open[i];
        let (svc, span) = trace.pending.pop().expect("open traces are never empty");
        let sampled = trace.sampled;
        if trace.pending.is_empty() {
            self.open.swap_remove(i);
        }
        (svc, span, sampled)
    }

    fn new_trace(&mut self, now_ns: u64) -> OpenTrace {
        let cfg = &self.cfg;
        let rng = &mut self.rng;
        let mean = cfg.spans_per_trace.max(1) as u64;
        let n = rng.range(mean.div_ceil(2), mean + mean / 2).max(1) as usize;
        let trace_id: [u8; 16] = rng.id();
        let sampled = self.sample_rng.chance(cfg.verify_ratio);

        let root_dur = rng.log_uniform(2_000_000, 1_500_000_000);
        // The trace ended a little before now: its spans are sent over the next requests.
        let root_start = now_ns.saturating_sub(root_dur + rng.below(5_000_000));
        let mut spans: Vec<(u16, Span)> = Vec::with_capacity(n);
        for idx in 0..n {
            let (svc, parent, start, end, kind) = if idx == 0 {
                let svc = rng.below(self.services.len() as u64) as u16;
                (svc, None, root_start, root_start + root_dur, 2)
            } else {
                let p = rng.below(idx as u64) as usize;
                let (psvc, ref pspan) = spans[p];
                let pdur = pspan.end_time_unix_nano - pspan.start_time_unix_nano;
                let offset = (pdur as f64 * rng.f64() * 0.5) as u64;
                let dur = ((pdur - offset) as f64 * (0.05 + 0.9 * rng.f64())) as u64;
                let start = pspan.start_time_unix_nano + offset;
                let (svc, kind) = if rng.chance(0.35) && self.services.len() > 1 {
                    (rng.below(self.services.len() as u64) as u16, 2)
                } else if rng.chance(0.3) {
                    (psvc, 3)
                } else {
                    (psvc, 1)
                };
                (svc, Some(pspan.span_id.clone()), start, start + dur, kind)
            };
            let service = &self.services[svc as usize];
            let name = rng.pick(&service.ops).clone();
            let error = rng.chance(cfg.error_ratio);
            let attributes = attributes(rng, cfg.attrs, cfg.attr_size, &name, error);
            let mut events = Vec::new();
            let whole = cfg.events_per_span.max(0.0);
            let count = whole.floor() as usize + rng.chance(whole.fract()) as usize;
            for e in 0..count {
                events.push(Event {
                    time_unix_nano: start + rng.below(end - start + 1),
                    name: format!("event.{e}"),
                    attributes: vec![
                        kv("event.seq", any_value::Value::IntValue(e as i64)),
                        kv("event.detail", s(rng.text(cfg.attr_size.min(64)))),
                    ],
                    dropped_attributes_count: 0,
                });
            }
            let status = if error {
                events.push(Event {
                    time_unix_nano: end,
                    name: "exception".to_owned(),
                    attributes: vec![
                        kv("exception.type", s("TimeoutError")),
                        kv(
                            "exception.message",
                            s(format!(
                                "upstream timed out after {}ms",
                                (end - start) / 1_000_000
                            )),
                        ),
                    ],
                    dropped_attributes_count: 0,
                });
                Some(Status {
                    message: "upstream timed out".to_owned(),
                    code: 2,
                })
            } else {
                None
            };
            spans.push((
                svc,
                Span {
                    trace_id: trace_id.to_vec(),
                    span_id: rng.id::<8>().to_vec(),
                    trace_state: String::new(),
                    parent_span_id: parent.unwrap_or_default(),
                    flags: 0x101, // sampled; the parent's remoteness is known (local)
                    name,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes,
                    dropped_attributes_count: 0,
                    events,
                    dropped_events_count: 0,
                    links: Vec::new(),
                    dropped_links_count: 0,
                    status,
                },
            ));
        }
        // Sent as they end, first to end first: `pop` takes from the back.
        spans.sort_by_key(|s| std::cmp::Reverse(s.1.end_time_unix_nano));
        OpenTrace {
            pending: spans,
            sampled,
        }
    }

    fn next_log(&mut self, now_ns: u64) -> (u16, LogRecord, bool) {
        self.log_seq += 1;
        let (svc, trace_id, span_id, time, sampled) = if self.rng.chance(self.cfg.log_trace_ratio) {
            let (svc, span, sampled) = self.next_span(now_ns);
            let dur = span.end_time_unix_nano - span.start_time_unix_nano;
            let time = span.start_time_unix_nano + self.rng.below(dur + 1);
            (svc, span.trace_id, span.span_id, time, sampled)
        } else {
            let svc = self.rng.below(self.services.len() as u64) as u16;
            let time = now_ns.saturating_sub(self.rng.below(50_000_000));
            (svc, Vec::new(), Vec::new(), time, false)
        };
        let cfg = &self.cfg;
        let rng = &mut self.rng;
        let error = rng.chance(cfg.error_ratio);
        let (severity_number, severity_text) = if error {
            (17, "ERROR")
        } else {
            match rng.below(20) {
                0 => (5, "DEBUG"),
                1..=3 => (13, "WARN"),
                _ => (9, "INFO"),
            }
        };
        let service = &self.services[svc as usize];
        let op = rng.pick(&service.ops).clone();
        let mut body = if error {
            format!("{op} failed: upstream timed out")
        } else {
            format!("{op} handled")
        };
        if body.len() < cfg.log_body_size {
            body.push_str(" detail=");
            let fill = cfg.log_body_size.saturating_sub(body.len());
            body.push_str(&rng.text(fill));
        }
        let attributes = attributes(rng, cfg.attrs, cfg.attr_size, &op, error);
        let flags = if trace_id.is_empty() { 0 } else { 1 };
        let log = LogRecord {
            time_unix_nano: time,
            // Unique within the stream: (observed time, span id) identify a record in --verify.
            observed_time_unix_nano: now_ns + self.log_seq,
            severity_number,
            severity_text: severity_text.to_owned(),
            body: Some(AnyValue {
                value: Some(s(body)),
            }),
            attributes,
            dropped_attributes_count: 0,
            flags,
            trace_id,
            span_id,
            event_name: String::new(),
        };
        (svc, log, sampled)
    }
}

/// `n` attributes: semantic-convention ones first, then generic ones of mixed types.
fn attributes(rng: &mut Rng, n: usize, size: usize, op: &str, error: bool) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = match i {
            0 => kv("http.request.method", s(*rng.pick(METHODS))),
            1 => kv("http.route", s(op)),
            2 => {
                let code = if error {
                    500
                } else if rng.chance(0.02) {
                    404
                } else {
                    200
                };
                kv(
                    "http.response.status_code",
                    any_value::Value::IntValue(code),
                )
            }
            3 => kv("server.address", s(format!("{}.internal", rng.pick(NOUNS)))),
            4 => kv(
                "network.peer.port",
                any_value::Value::IntValue(rng.range(1024, 65535) as i64),
            ),
            5 => kv("enduser.id", s(rng.text(size))),
            _ => {
                let key = format!("app.attr_{i}");
                match i % 6 {
                    1 => kv(
                        &key,
                        any_value::Value::IntValue(rng.next_u64() as i64 >> 16),
                    ),
                    3 => kv(
                        &key,
                        any_value::Value::DoubleValue((rng.below(1_000_000) as f64) / 64.0),
                    ),
                    5 => kv(&key, any_value::Value::BoolValue(rng.chance(0.5))),
                    _ => kv(&key, s(rng.text(size))),
                }
            }
        };
        out.push(a);
    }
    out
}
