//! Test harness: runs the real `glust` binary on loopback ephemeral ports in a temp dir, and
//! builds OTLP requests with the opentelemetry-proto types.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

pub struct Server {
    pub dir: PathBuf,
    pub shards: u32,
    pub extra: Vec<String>,
    /// Environment variables set for the server, on top of the test's own.
    pub env: Vec<(String, String)>,
    /// Restarts bind the ports of the first start instead of new ephemeral ones.
    pub same_ports: bool,
    /// Resource limit on open files (soft, hard) the server starts with.
    pub nofile: Option<(u64, u64)>,
    /// CPU affinity the server starts with (as under `taskset -c`).
    pub affinity: Option<Vec<usize>>,
    child: Option<Child>,
    pub otlp: SocketAddr,
    pub grpc: SocketAddr,
    pub query: SocketAddr,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start(shards: u32) -> Server {
        Self::start_with(shards, &[])
    }

    pub fn start_with(shards: u32, extra: &[&str]) -> Server {
        Self::start_with_env(shards, extra, &[])
    }

    pub fn start_with_env(shards: u32, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Self::unstarted(shards, extra, env);
        s.spawn();
        s
    }

    /// A server with its data dir, not started yet: set its fields, then [`Server::spawn`].
    pub fn unstarted(shards: u32, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shards");
        let s = Server {
            dir,
            shards,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            same_ports: false,
            nofile: None,
            affinity: None,
            child: None,
            otlp: "127.0.0.1:0".parse().unwrap(),
            grpc: "127.0.0.1:0".parse().unwrap(),
            query: "127.0.0.1:0".parse().unwrap(),
            _tmp: Some(tmp),
        };
        s
    }

    /// Starts the binary on the same data dir (after a kill or stop).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none());
        let mut cmd = self.command();
        let mut child = cmd.spawn().expect("start glust");
        self.wait_ready(&mut child);
        self.child = Some(child);
    }

    /// The command [`Server::spawn`] runs, with its limits, stdout piped and stderr logged.
    pub fn command(&self) -> Command {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .unwrap();
        let addr = |a: SocketAddr| match self.same_ports {
            true => a.to_string(),
            false => "127.0.0.1:0".to_owned(),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_glust"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "--otlp-http",
                &addr(self.otlp),
                "--query",
                &addr(self.query),
            ])
            .args(["--otlp-grpc", &addr(self.grpc)])
            .args(["--shards", &self.shards.to_string()]);
        // Small segments unless the test chooses its own size.
        if !self.extra.iter().any(|a| a == "--segment-bytes") {
            cmd.args(["--segment-bytes", "256k"]);
        }
        cmd.args(&self.extra)
            .env("RUST_LOG", "warn")
            // The server's allocator restart depends on these: start from a known state.
            .env_remove("GLIBC_TUNABLES")
            .env_remove("GLUST_MALLOC_TUNED")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log);
        let nofile = self.nofile;
        let affinity = self.affinity.clone();
        // SAFETY: between fork and exec only async-signal-safe calls: setrlimit and
        // sched_setaffinity on values prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some((soft, hard)) = nofile {
                    let lim = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(cpus) = &affinity {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    for &c in cpus {
                        libc::CPU_SET(c, &mut set);
                    }
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    }

    /// Reads the child's stdout until its ready line, taking the addresses it names.
    fn wait_ready(&mut self, child: &mut Child) {
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "glust did not become ready");
            let Some(Ok(line)) = lines.next() else {
                panic!("glust exited before ready; log:\n{}", self.log());
            };
            if let Some(rest) = line.strip_prefix("glust ready: ") {
                for word in rest.split(' ') {
                    if let Some(a) = word.strip_prefix("otlp-http=") {
                        self.otlp = a.parse().unwrap();
                    } else if let Some(a) = word.strip_prefix("otlp-grpc=") {
                        self.grpc = a.parse().unwrap();
                    } else if let Some(a) = word.strip_prefix("query=") {
                        self.query = a.parse().unwrap();
                    }
                }
                break;
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown work at all.
    pub fn kill(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(&mut self) -> i32 {
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
        self.wait_exit()
    }

    /// Waits for the process to exit (after a signal); returns its exit code.
    pub fn wait_exit(&mut self) -> i32 {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "glust did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub fn otlp_url(&self, path: &str) -> String {
        format!("http://{}{}", self.otlp, path)
    }

    pub fn query_url(&self, path: &str) -> String {
        format!("http://{}{}", self.query, path)
    }

    pub fn post(
        &self,
        path: &str,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let client = reqwest::blocking::Client::new();
        let mut req = client
            .post(self.otlp_url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        Reply::from(req.send().expect("POST"))
    }

    pub fn post_traces(&self, req: &ExportTraceServiceRequest) -> Reply {
        self.post(
            "/v1/traces",
            "application/x-protobuf",
            None,
            req.encode_to_vec(),
        )
    }

    pub fn post_logs(&self, req: &ExportLogsServiceRequest) -> Reply {
        self.post(
            "/v1/logs",
            "application/x-protobuf",
            None,
            req.encode_to_vec(),
        )
    }

    pub fn get(&self, path_and_query: &str) -> Reply {
        Reply::from(reqwest::blocking::get(self.query_url(path_and_query)).expect("GET"))
    }

    /// A GET with request headers, as a client that sends its own (Grafana's) does.
    pub fn get_with(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Reply {
        let client = reqwest::blocking::Client::new();
        let mut req = client.get(self.query_url(path_and_query));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Reply::from(req.send().expect("GET"))
    }

    pub fn get_json(&self, path_and_query: &str) -> serde_json::Value {
        let r = self.get(path_and_query);
        assert_eq!(r.status, 200, "GET {path_and_query}: {}", r.text());
        serde_json::from_slice(&r.body).expect("JSON answer")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

impl From<reqwest::blocking::Response> for Reply {
    fn from(r: reqwest::blocking::Response) -> Self {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().unwrap().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }
}

pub fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// A deterministic trace id for test number `n`.
pub fn trace_id(n: u64) -> Vec<u8> {
    let mut id = vec![0u8; 16];
    id[0..8].copy_from_slice(&(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).to_be_bytes());
    id[8..16].copy_from_slice(&n.to_be_bytes());
    id
}

pub fn span_id(n: u64) -> Vec<u8> {
    (n | 1 << 63).to_be_bytes().to_vec()
}

/// A span with a realistic set of fields, all set, so a round trip checks every one.
pub fn rich_span(trace: u64, n: u64) -> Span {
    let start = 1_700_000_000_000_000_000 + trace * 1_000_000_000 + n * 1000;
    Span {
        trace_id: trace_id(trace),
        span_id: span_id(trace * 1000 + n),
        trace_state: "vendor=x".into(),
        parent_span_id: if n == 0 {
            vec![]
        } else {
            span_id(trace * 1000)
        },
        flags: 0x101,
        name: format!("op-{n}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 5_000_000 + n,
        attributes: vec![
            kv("http.request.method", s("GET")),
            kv(
                "http.response.status_code",
                any_value::Value::IntValue(200 + n as i64),
            ),
            kv("sampled", any_value::Value::BoolValue(true)),
            kv("ratio", any_value::Value::DoubleValue(0.25)),
            kv("payload", any_value::Value::BytesValue(vec![0, 1, 2, 255])),
            kv(
                "list",
                any_value::Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("a")),
                        },
                        AnyValue {
                            value: Some(any_value::Value::IntValue(-7)),
                        },
                    ],
                }),
            ),
            kv(
                "map",
                any_value::Value::KvlistValue(
                    opentelemetry_proto::tonic::common::v1::KeyValueList {
                        values: vec![kv("inner", s("v"))],
                    },
                ),
            ),
        ],
        dropped_attributes_count: 1,
        events: vec![span::Event {
            time_unix_nano: start + 10,
            name: "exception".into(),
            attributes: vec![kv("exception.message", s("boom \"quoted\" \n newline é"))],
            dropped_attributes_count: 2,
        }],
        dropped_events_count: 3,
        links: vec![span::Link {
            trace_id: trace_id(trace + 7777),
            span_id: span_id(5),
            trace_state: "k=v".into(),
            attributes: vec![kv("link.kind", s("follows"))],
            dropped_attributes_count: 0,
            flags: 1,
        }],
        dropped_links_count: 4,
        status: Some(Status {
            message: if n % 2 == 0 {
                "".into()
            } else {
                "failed".into()
            },
            code: if n % 2 == 0 { 0 } else { 2 },
        }),
    }
}

pub fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![kv("service.name", s(service)), kv("host.name", s("box-1"))],
        dropped_attributes_count: 0,
        entity_refs: vec![],
    }
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "glust-tests".into(),
        version: "1.2.3".into(),
        attributes: vec![kv("scope.attr", s("x"))],
        dropped_attributes_count: 0,
    }
}

/// `traces` traces of `spans` spans each, one resource and scope.
pub fn traces_request(
    service: &str,
    first_trace: u64,
    traces: u64,
    spans: u64,
) -> ExportTraceServiceRequest {
    let spans = (first_trace..first_trace + traces)
        .flat_map(|t| (0..spans).map(move |n| rich_span(t, n)))
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.20.0".into(),
        }],
    }
}

pub fn log_record(n: u64, trace: Option<u64>, severity: i32, body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + n * 1_000_000,
        observed_time_unix_nano: 1_700_000_000_000_000_000 + n * 1_000_000 + 5,
        severity_number: severity,
        severity_text: match severity {
            17..=20 => "ERROR",
            13..=16 => "WARN",
            _ => "INFO",
        }
        .into(),
        body: Some(AnyValue {
            value: Some(s(body)),
        }),
        attributes: vec![kv("log.n", any_value::Value::IntValue(n as i64))],
        dropped_attributes_count: 0,
        flags: 1,
        trace_id: trace.map(trace_id).unwrap_or_default(),
        span_id: trace.map(|t| span_id(t * 1000)).unwrap_or_default(),
        event_name: String::new(),
    }
}

pub fn logs_request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(service)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Spans of a `TracesData` JSON answer, decoded with Glust's OTLP JSON decoder into domain
/// values (owned), with their resource and scope.
pub fn spans_of_answer(json: &[u8]) -> Vec<glust::domain::SpanBatch<'static>> {
    let decoded = glust::otlp::json::decode_traces_json(json).expect("answer is OTLP JSON");
    assert_eq!(decoded.rejected.count(), 0);
    decoded.batches.into_iter().map(owned_span_batch).collect()
}

/// What Glust should hold for a request: the request decoded by Glust's protobuf decoder.
pub fn expected_batches(req: &ExportTraceServiceRequest) -> Vec<glust::domain::SpanBatch<'static>> {
    let bytes = req.encode_to_vec();
    let decoded = glust::otlp::proto::decode_traces(&bytes).expect("valid request");
    decoded.batches.into_iter().map(owned_span_batch).collect()
}

fn owned_span_batch(b: glust::domain::SpanBatch<'_>) -> glust::domain::SpanBatch<'static> {
    // Round trip through rkyv-free owned conversion: the Debug form is not enough; rebuild.
    glust_owned::span_batch(&b)
}

pub mod glust_owned {
    //! Converts borrowed domain values to owned ones (test-only helper).
    use glust::domain::*;
    use std::borrow::Cow;

    fn st(s: &Str<'_>) -> Str<'static> {
        Cow::Owned(s.to_string())
    }
    fn av(v: &AnyValue<'_>) -> AnyValue<'static> {
        match v {
            AnyValue::Empty => AnyValue::Empty,
            AnyValue::String(s) => AnyValue::String(st(s)),
            AnyValue::Bool(b) => AnyValue::Bool(*b),
            AnyValue::Int(i) => AnyValue::Int(*i),
            AnyValue::Double(d) => AnyValue::Double(*d),
            AnyValue::Bytes(b) => AnyValue::Bytes(Cow::Owned(b.to_vec())),
            AnyValue::Array(a) => AnyValue::Array(a.iter().map(av).collect()),
            AnyValue::KvList(k) => AnyValue::KvList(attrs(k)),
        }
    }
    pub fn attrs(a: &[KeyValue<'_>]) -> Vec<KeyValue<'static>> {
        a.iter()
            .map(|kv| KeyValue {
                key: st(&kv.key),
                value: av(&kv.value),
            })
            .collect()
    }
    pub fn resource(r: &Resource<'_>) -> Resource<'static> {
        Resource {
            attributes: attrs(&r.attributes),
            dropped_attributes_count: r.dropped_attributes_count,
            schema_url: st(&r.schema_url),
        }
    }
    pub fn scope(s: &Scope<'_>) -> Scope<'static> {
        Scope {
            name: st(&s.name),
            version: st(&s.version),
            attributes: attrs(&s.attributes),
            dropped_attributes_count: s.dropped_attributes_count,
            schema_url: st(&s.schema_url),
        }
    }
    pub fn span(s: &Span<'_>) -> Span<'static> {
        Span {
            trace_id: s.trace_id,
            span_id: s.span_id,
            trace_state: st(&s.trace_state),
            parent_span_id: s.parent_span_id,
            flags: s.flags,
            name: st(&s.name),
            kind: s.kind,
            start_time_unix_nano: s.start_time_unix_nano,
            end_time_unix_nano: s.end_time_unix_nano,
            attributes: attrs(&s.attributes),
            dropped_attributes_count: s.dropped_attributes_count,
            events: s
                .events
                .iter()
                .map(|e| Event {
                    time_unix_nano: e.time_unix_nano,
                    name: st(&e.name),
                    attributes: attrs(&e.attributes),
                    dropped_attributes_count: e.dropped_attributes_count,
                })
                .collect(),
            dropped_events_count: s.dropped_events_count,
            links: s
                .links
                .iter()
                .map(|l| Link {
                    trace_id: l.trace_id,
                    span_id: l.span_id,
                    trace_state: st(&l.trace_state),
                    attributes: attrs(&l.attributes),
                    dropped_attributes_count: l.dropped_attributes_count,
                    flags: l.flags,
                })
                .collect(),
            dropped_links_count: s.dropped_links_count,
            status: Status {
                message: st(&s.status.message),
                code: s.status.code,
            },
        }
    }
    pub fn span_batch(b: &SpanBatch<'_>) -> SpanBatch<'static> {
        SpanBatch {
            resource: resource(&b.resource),
            scope: scope(&b.scope),
            spans: b.spans.iter().map(span).collect(),
        }
    }
    pub fn log(l: &LogRecord<'_>) -> LogRecord<'static> {
        LogRecord {
            time_unix_nano: l.time_unix_nano,
            observed_time_unix_nano: l.observed_time_unix_nano,
            severity_number: l.severity_number,
            severity_text: st(&l.severity_text),
            body: av(&l.body),
            attributes: attrs(&l.attributes),
            dropped_attributes_count: l.dropped_attributes_count,
            flags: l.flags,
            trace_id: l.trace_id,
            span_id: l.span_id,
            event_name: st(&l.event_name),
        }
    }
    pub fn log_batch(b: &LogBatch<'_>) -> LogBatch<'static> {
        LogBatch {
            resource: resource(&b.resource),
            scope: scope(&b.scope),
            logs: b.logs.iter().map(log).collect(),
        }
    }
}

/// Flattens batches into (resource, scope, span) triples sorted by span id, for comparing
/// what was sent with what came back regardless of grouping.
pub fn flat_spans(
    batches: &[glust::domain::SpanBatch<'static>],
) -> Vec<(
    glust::domain::Resource<'static>,
    glust::domain::Scope<'static>,
    glust::domain::Span<'static>,
)> {
    let mut out: Vec<_> = batches
        .iter()
        .flat_map(|b| {
            b.spans
                .iter()
                .map(move |s| (b.resource.clone(), b.scope.clone(), s.clone()))
        })
        .collect();
    out.sort_by_key(|a| (a.2.trace_id, a.2.span_id.0));
    out
}

/// The value of one series in a Prometheus text exposition (`name` with its labels, if any).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        .parse()
        .unwrap()
}

/// An HTTP/2 (prior knowledge) client connection to `addr`, driven on the current Tokio runtime.
///
/// h2 (0.4.20 on) sends GOAWAY ENHANCE_YOUR_CALM when more than ~100 small DATA frames sit
/// unread in its buffers, a limit sized from the connection window. Every gRPC answer is one
/// small DATA frame before the trailers, and with 200 streams in flight on a loaded machine a
/// test's tasks do not read them fast enough: the connection gets the window a bulk gRPC
/// client would use.
pub async fn h2_connect(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_connection_window_size(16 << 20)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A Tokio runtime for a test's async clients (h2, the SDK's tonic exporter): two workers, so a
/// connection's driver task runs beside the test's own.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
