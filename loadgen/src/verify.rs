//! `--verify`: after the run, read back sampled traces (`GET /api/v1/traces/{id}`) and their log
//! records (`GET /api/v1/logs?traceId=...`) through the query API and compare them, item by
//! item, with what was sent.
//!
//! Both sides are brought to one canonical form (attributes sorted by key, ids as lowercase
//! hex, 64-bit integers as numbers, enums as integers whether written as numbers or names,
//! defaults for omitted fields), so any faithful OTLP JSON writer compares equal.
//!
//! An item sent in an export answered 2xx without partial success must be there and equal
//! (else *missing* or *different*). An item whose export failed, timed out or was partially
//! rejected may or may not be stored: it is not required, but if it is there it must be equal.
//! Spans found that were never sent are *unexpected*; one stored twice is a *duplicate*
//! (legitimate only after a retry of an export that had in fact been stored).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::Value;

use crate::payload::Sample;
use crate::run::SentSample;
use crate::transport::{http_get, Outcome};

/// A value in canonical form.
#[derive(Clone, Debug, PartialEq)]
pub enum CVal {
    Empty,
    Str(String),
    Bool(bool),
    Int(i64),
    /// The bits, so that equal means identical (NaN included).
    Double(u64),
    Bytes(Vec<u8>),
    Array(Vec<CVal>),
    Kv(Vec<(String, CVal)>),
}

pub type Attrs = Vec<(String, CVal)>;

#[derive(Clone, Debug, PartialEq)]
pub struct CEvent {
    pub time: u64,
    pub name: String,
    pub attributes: Attrs,
    pub dropped_attributes_count: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CLink {
    pub trace_id: String,
    pub span_id: String,
    pub trace_state: String,
    pub attributes: Attrs,
    pub dropped_attributes_count: u32,
    pub flags: u32,
}

/// A span with its resource and scope, in canonical form.
#[derive(Clone, Debug, PartialEq)]
pub struct CSpan {
    pub resource: Attrs,
    pub resource_dropped: u32,
    pub scope_name: String,
    pub scope_version: String,
    pub scope_attributes: Attrs,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub attributes: Attrs,
    pub dropped_attributes_count: u32,
    pub events: Vec<CEvent>,
    pub dropped_events_count: u32,
    pub links: Vec<CLink>,
    pub dropped_links_count: u32,
    pub status_code: i32,
    pub status_message: String,
}

/// A log record with its resource and scope, in canonical form.
#[derive(Clone, Debug, PartialEq)]
pub struct CLog {
    pub resource: Attrs,
    pub resource_dropped: u32,
    pub scope_name: String,
    pub scope_version: String,
    pub scope_attributes: Attrs,
    pub time: u64,
    pub observed_time: u64,
    pub severity_number: i32,
    pub severity_text: String,
    pub body: CVal,
    pub attributes: Attrs,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    pub trace_id: String,
    pub span_id: String,
    pub event_name: String,
}

impl CLog {
    /// What identifies a generated record (its observed time is unique within a stream).
    fn key(&self) -> (u64, String, u64) {
        (self.observed_time, self.span_id.clone(), self.time)
    }
}

// ---- from the protobuf types (what was sent) ----

fn cval_proto(v: &Option<AnyValue>) -> CVal {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        None => CVal::Empty,
        Some(any_value::Value::StringValue(s)) => CVal::Str(s.clone()),
        Some(any_value::Value::BoolValue(b)) => CVal::Bool(*b),
        Some(any_value::Value::IntValue(i)) => CVal::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => CVal::Double(d.to_bits()),
        Some(any_value::Value::BytesValue(b)) => CVal::Bytes(b.clone()),
        Some(any_value::Value::ArrayValue(a)) => CVal::Array(
            a.values
                .iter()
                .map(|v| cval_proto(&Some(v.clone())))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(kv)) => CVal::Kv(attrs_proto(&kv.values)),
        // Only meaningful with a profiles dictionary; never generated.
        Some(any_value::Value::StringValueStrindex(i)) => CVal::Str(format!("strindex:{i}")),
    }
}

fn attrs_proto(kvs: &[KeyValue]) -> Attrs {
    let mut a: Attrs = kvs
        .iter()
        .map(|kv| (kv.key.clone(), cval_proto(&kv.value)))
        .collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    a
}

pub fn span_from_proto(res: &Resource, scope: &InstrumentationScope, s: &Span) -> CSpan {
    let status = s.status.clone().unwrap_or_default();
    CSpan {
        resource: attrs_proto(&res.attributes),
        resource_dropped: res.dropped_attributes_count,
        scope_name: scope.name.clone(),
        scope_version: scope.version.clone(),
        scope_attributes: attrs_proto(&scope.attributes),
        trace_id: hex::encode(&s.trace_id),
        span_id: hex::encode(&s.span_id),
        parent_span_id: hex::encode(&s.parent_span_id),
        trace_state: s.trace_state.clone(),
        flags: s.flags,
        name: s.name.clone(),
        kind: s.kind,
        start: s.start_time_unix_nano,
        end: s.end_time_unix_nano,
        attributes: attrs_proto(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .iter()
            .map(|e| CEvent {
                time: e.time_unix_nano,
                name: e.name.clone(),
                attributes: attrs_proto(&e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.dropped_events_count,
        links: s
            .links
            .iter()
            .map(|l| CLink {
                trace_id: hex::encode(&l.trace_id),
                span_id: hex::encode(&l.span_id),
                trace_state: l.trace_state.clone(),
                attributes: attrs_proto(&l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            })
            .collect(),
        dropped_links_count: s.dropped_links_count,
        status_code: status.code,
        status_message: status.message,
    }
}

pub fn log_from_proto(res: &Resource, scope: &InstrumentationScope, l: &LogRecord) -> CLog {
    CLog {
        resource: attrs_proto(&res.attributes),
        resource_dropped: res.dropped_attributes_count,
        scope_name: scope.name.clone(),
        scope_version: scope.version.clone(),
        scope_attributes: attrs_proto(&scope.attributes),
        time: l.time_unix_nano,
        observed_time: l.observed_time_unix_nano,
        severity_number: l.severity_number,
        severity_text: l.severity_text.clone(),
        body: cval_proto(&l.body),
        attributes: attrs_proto(&l.attributes),
        dropped_attributes_count: l.dropped_attributes_count,
        flags: l.flags,
        trace_id: hex::encode(&l.trace_id),
        span_id: hex::encode(&l.span_id),
        event_name: l.event_name.clone(),
    }
}

// ---- from OTLP JSON (what the query API answers) ----

fn j_u64(v: Option<&Value>) -> Result<u64, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| format!("not a u64: {n}")),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("not a u64: {s:?}")),
        Some(o) => Err(format!("not a u64: {o}")),
    }
}

fn j_i64(v: Option<&Value>) -> Result<i64, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("not an i64: {n}")),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("not an i64: {s:?}")),
        Some(o) => Err(format!("not an i64: {o}")),
    }
}

fn j_u32(v: Option<&Value>) -> Result<u32, String> {
    u32::try_from(j_u64(v)?).map_err(|_| "out of u32 range".to_owned())
}

/// An enum: an integer, or its name (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`, ...).
fn j_enum(v: Option<&Value>, names: &[&str]) -> Result<i32, String> {
    match v {
        Some(Value::String(s)) => {
            if let Some(i) = names.iter().position(|n| n == s) {
                return Ok(i as i32);
            }
            s.parse().map_err(|_| format!("unknown enum value {s:?}"))
        }
        other => Ok(j_i64(other)? as i32),
    }
}

const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

fn j_str(v: Option<&Value>) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(o) => Err(format!("not a string: {o}")),
    }
}

fn j_hex(v: Option<&Value>) -> Result<String, String> {
    let s = j_str(v)?.to_ascii_lowercase();
    if s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(format!("not hex: {s:?}"))
    }
}

fn j_arr(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

fn cval_json(v: Option<&Value>) -> Result<CVal, String> {
    let Some(Value::Object(o)) = v else {
        return Ok(CVal::Empty);
    };
    let Some((k, x)) = o.iter().next() else {
        return Ok(CVal::Empty);
    };
    Ok(match k.as_str() {
        "stringValue" => CVal::Str(j_str(Some(x))?),
        "boolValue" => CVal::Bool(x.as_bool().ok_or("boolValue not a bool")?),
        "intValue" => CVal::Int(j_i64(Some(x))?),
        "doubleValue" => CVal::Double(
            match x {
                Value::Number(n) => n.as_f64().ok_or("bad double")?,
                Value::String(s) => match s.as_str() {
                    "NaN" => f64::NAN,
                    "Infinity" => f64::INFINITY,
                    "-Infinity" => f64::NEG_INFINITY,
                    s => s.parse().map_err(|_| format!("bad double {s:?}"))?,
                },
                _ => return Err("bad double".into()),
            }
            .to_bits(),
        ),
        "bytesValue" => CVal::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(j_str(Some(x))?)
                .map_err(|e| format!("bytesValue: {e}"))?,
        ),
        "arrayValue" => CVal::Array(
            j_arr(x.get("values"))
                .iter()
                .map(|v| cval_json(Some(v)))
                .collect::<Result<_, _>>()?,
        ),
        "kvlistValue" => CVal::Kv(attrs_json(x.get("values"))?),
        other => return Err(format!("unknown AnyValue field {other:?}")),
    })
}

fn attrs_json(v: Option<&Value>) -> Result<Attrs, String> {
    let mut a = j_arr(v)
        .iter()
        .map(|kv| Ok((j_str(kv.get("key"))?, cval_json(kv.get("value"))?)))
        .collect::<Result<Attrs, String>>()?;
    a.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(a)
}

struct Envelope {
    resource: Attrs,
    resource_dropped: u32,
    scope_name: String,
    scope_version: String,
    scope_attributes: Attrs,
}

/// Walks `resource*` / `scope*` levels, calling `f` for each item with its envelope.
fn walk(
    doc: &Value,
    resource_key: &str,
    scope_key: &str,
    items_key: &str,
    mut f: impl FnMut(&Envelope, &Value) -> Result<(), String>,
) -> Result<(), String> {
    for r in j_arr(doc.get(resource_key)) {
        let res = r.get("resource");
        for s in j_arr(r.get(scope_key)) {
            let scope = s.get("scope");
            let env = Envelope {
                resource: attrs_json(res.and_then(|r| r.get("attributes")))?,
                resource_dropped: j_u32(res.and_then(|r| r.get("droppedAttributesCount")))?,
                scope_name: j_str(scope.and_then(|s| s.get("name")))?,
                scope_version: j_str(scope.and_then(|s| s.get("version")))?,
                scope_attributes: attrs_json(scope.and_then(|s| s.get("attributes")))?,
            };
            for item in j_arr(s.get(items_key)) {
                f(&env, item)?;
            }
        }
    }
    Ok(())
}

/// The spans of an OTLP JSON `TracesData`.
pub fn spans_from_json(doc: &Value) -> Result<Vec<CSpan>, String> {
    let mut out = Vec::new();
    walk(doc, "resourceSpans", "scopeSpans", "spans", |env, s| {
        let status = s.get("status");
        out.push(CSpan {
            resource: env.resource.clone(),
            resource_dropped: env.resource_dropped,
            scope_name: env.scope_name.clone(),
            scope_version: env.scope_version.clone(),
            scope_attributes: env.scope_attributes.clone(),
            trace_id: j_hex(s.get("traceId"))?,
            span_id: j_hex(s.get("spanId"))?,
            parent_span_id: j_hex(s.get("parentSpanId"))?,
            trace_state: j_str(s.get("traceState"))?,
            flags: j_u32(s.get("flags"))?,
            name: j_str(s.get("name"))?,
            kind: j_enum(s.get("kind"), SPAN_KINDS)?,
            start: j_u64(s.get("startTimeUnixNano"))?,
            end: j_u64(s.get("endTimeUnixNano"))?,
            attributes: attrs_json(s.get("attributes"))?,
            dropped_attributes_count: j_u32(s.get("droppedAttributesCount"))?,
            events: j_arr(s.get("events"))
                .iter()
                .map(|e| {
                    Ok(CEvent {
                        time: j_u64(e.get("timeUnixNano"))?,
                        name: j_str(e.get("name"))?,
                        attributes: attrs_json(e.get("attributes"))?,
                        dropped_attributes_count: j_u32(e.get("droppedAttributesCount"))?,
                    })
                })
                .collect::<Result<_, String>>()?,
            dropped_events_count: j_u32(s.get("droppedEventsCount"))?,
            links: j_arr(s.get("links"))
                .iter()
                .map(|l| {
                    Ok(CLink {
                        trace_id: j_hex(l.get("traceId"))?,
                        span_id: j_hex(l.get("spanId"))?,
                        trace_state: j_str(l.get("traceState"))?,
                        attributes: attrs_json(l.get("attributes"))?,
                        dropped_attributes_count: j_u32(l.get("droppedAttributesCount"))?,
                        flags: j_u32(l.get("flags"))?,
                    })
                })
                .collect::<Result<_, String>>()?,
            dropped_links_count: j_u32(s.get("droppedLinksCount"))?,
            status_code: j_enum(status.and_then(|s| s.get("code")), STATUS_CODES)?,
            status_message: j_str(status.and_then(|s| s.get("message")))?,
        });
        Ok(())
    })?;
    Ok(out)
}

/// The log records of an OTLP JSON `LogsData`.
pub fn logs_from_json(doc: &Value) -> Result<Vec<CLog>, String> {
    let mut out = Vec::new();
    walk(doc, "resourceLogs", "scopeLogs", "logRecords", |env, l| {
        out.push(CLog {
            resource: env.resource.clone(),
            resource_dropped: env.resource_dropped,
            scope_name: env.scope_name.clone(),
            scope_version: env.scope_version.clone(),
            scope_attributes: env.scope_attributes.clone(),
            time: j_u64(l.get("timeUnixNano"))?,
            observed_time: j_u64(l.get("observedTimeUnixNano"))?,
            severity_number: j_i64(l.get("severityNumber"))? as i32,
            severity_text: j_str(l.get("severityText"))?,
            body: cval_json(l.get("body"))?,
            attributes: attrs_json(l.get("attributes"))?,
            dropped_attributes_count: j_u32(l.get("droppedAttributesCount"))?,
            flags: j_u32(l.get("flags"))?,
            trace_id: j_hex(l.get("traceId"))?,
            span_id: j_hex(l.get("spanId"))?,
            event_name: j_str(l.get("eventName"))?,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Names the attribute keys whose values differ between two attribute lists.
fn attr_diff(what: &str, a: &Attrs, b: &Attrs, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let mut keys: Vec<&str> = Vec::new();
    for (k, v) in a {
        if b.iter().find(|(kb, _)| kb == k).map(|(_, vb)| vb) != Some(v) {
            keys.push(k);
        }
    }
    for (k, _) in b {
        if !a.iter().any(|(ka, _)| ka == k) {
            keys.push(k);
        }
    }
    keys.truncate(3);
    out.push(format!("{what}[{}]", keys.join(",")));
}

macro_rules! field_diff {
    ($a:expr, $b:expr, $out:expr, $($field:ident),*) => {
        $( if $a.$field != $b.$field { $out.push(stringify!($field).to_owned()); } )*
    };
}

/// Names the fields where two spans differ (for the report).
fn span_diff(a: &CSpan, b: &CSpan) -> String {
    let mut out = Vec::new();
    attr_diff("resource", &a.resource, &b.resource, &mut out);
    attr_diff(
        "scope_attributes",
        &a.scope_attributes,
        &b.scope_attributes,
        &mut out,
    );
    attr_diff("attributes", &a.attributes, &b.attributes, &mut out);
    field_diff!(
        a,
        b,
        out,
        resource_dropped,
        scope_name,
        scope_version,
        trace_id,
        parent_span_id,
        trace_state,
        flags,
        name,
        kind,
        start,
        end,
        dropped_attributes_count,
        events,
        dropped_events_count,
        links,
        dropped_links_count,
        status_code,
        status_message
    );
    out.join(", ")
}

/// Names the fields where two log records differ (for the report).
fn log_diff(a: &CLog, b: &CLog) -> String {
    let mut out = Vec::new();
    attr_diff("resource", &a.resource, &b.resource, &mut out);
    attr_diff(
        "scope_attributes",
        &a.scope_attributes,
        &b.scope_attributes,
        &mut out,
    );
    attr_diff("attributes", &a.attributes, &b.attributes, &mut out);
    field_diff!(
        a,
        b,
        out,
        resource_dropped,
        scope_name,
        scope_version,
        time,
        observed_time,
        severity_number,
        severity_text,
        body,
        dropped_attributes_count,
        flags,
        trace_id,
        span_id,
        event_name
    );
    out.join(", ")
}

/// Whether an item had to be stored: its export was answered 2xx without partial success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Required {
    Yes,
    /// Failed, timed out, or partially rejected: may or may not be there.
    Maybe,
}

/// What was sent of one sampled trace.
#[derive(Clone, Debug, Default)]
pub struct TraceExpect {
    pub spans: Vec<(CSpan, Required)>,
    pub logs: Vec<(CLog, Required)>,
}

/// Expected items of every sampled trace, by trace id (hex).
pub type Expected = BTreeMap<String, TraceExpect>;

pub fn expected_from(sent: &[SentSample]) -> Expected {
    let mut out = Expected::new();
    for s in sent {
        let req = if s.outcome == Outcome::Ok {
            Required::Yes
        } else {
            Required::Maybe
        };
        for item in &s.samples {
            let e = out.entry(hex::encode(item.trace_id())).or_default();
            match item {
                Sample::Span { service, span } => e.spans.push((
                    span_from_proto(&service.resource, &service.scope, span),
                    req,
                )),
                Sample::Log { service, log } => e
                    .logs
                    .push((log_from_proto(&service.resource, &service.scope, log), req)),
            }
        }
    }
    out
}

/// Counts of one comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Items that had to be stored (2xx without partial success).
    pub required: u64,
    /// Items sent in exports that were not plainly accepted (not required).
    pub not_required: u64,
    /// Required items found and equal.
    pub found: u64,
    pub missing: u64,
    pub different: u64,
    /// Found more than once.
    pub duplicated: u64,
    /// Found but never sent.
    pub unexpected: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.required += o.required;
        self.not_required += o.not_required;
        self.found += o.found;
        self.missing += o.missing;
        self.different += o.different;
        self.duplicated += o.duplicated;
        self.unexpected += o.unexpected;
    }
}

impl Tally {
    /// Counts one expected item against the items found under its key, describing any
    /// problem as "`<item>` missing" or "`<item>` differs in `<fields>`".
    fn count<T: PartialEq>(
        &mut self,
        req: Required,
        exp: &T,
        found: Option<&Vec<&T>>,
        describe: impl FnOnce() -> (String, fn(&T, &T) -> String),
        problems: &mut Vec<String>,
    ) {
        match req {
            Required::Yes => self.required += 1,
            Required::Maybe => self.not_required += 1,
        }
        match found {
            None => {
                if req == Required::Yes {
                    self.missing += 1;
                    problems.push(format!("{} missing", describe().0));
                }
            }
            Some(found) => {
                if found.len() > 1 {
                    self.duplicated += 1;
                }
                if found.contains(&exp) {
                    if req == Required::Yes {
                        self.found += 1;
                    }
                } else {
                    self.different += 1;
                    let (what, diff) = describe();
                    problems.push(format!("{what} differs in {}", diff(exp, found[0])));
                }
            }
        }
    }
}

/// Compares the spans of a trace with the query API's answer (`None`: 404).
pub fn check_spans(
    trace_id: &str,
    expected: &[(CSpan, Required)],
    answer: Option<&Value>,
    problems: &mut Vec<String>,
) -> Result<Tally, String> {
    let actual = match answer {
        Some(doc) => spans_from_json(doc)?,
        None => Vec::new(),
    };
    let mut by_id: BTreeMap<&str, Vec<&CSpan>> = BTreeMap::new();
    for s in &actual {
        by_id.entry(s.span_id.as_str()).or_default().push(s);
    }
    let mut t = Tally::default();
    for (exp, req) in expected {
        let what = format!("span {}", exp.span_id);
        let found = by_id.get(exp.span_id.as_str());
        t.count(
            *req,
            exp,
            found,
            || (format!("trace {trace_id}: {what}"), span_diff),
            problems,
        );
    }
    for s in &actual {
        if s.trace_id != trace_id {
            t.unexpected += 1;
            problems.push(format!(
                "trace {trace_id}: the answer holds span {} of trace {}",
                s.span_id, s.trace_id
            ));
        } else if !expected.iter().any(|(e, _)| e.span_id == s.span_id) {
            t.unexpected += 1;
            problems.push(format!(
                "trace {trace_id}: span {} was never sent",
                s.span_id
            ));
        }
    }
    Ok(t)
}

/// Compares the log records of a trace with the query API's answer.
pub fn check_logs(
    trace_id: &str,
    expected: &[(CLog, Required)],
    answer: &Value,
    problems: &mut Vec<String>,
) -> Result<Tally, String> {
    let actual = logs_from_json(answer)?;
    let mut by_key: BTreeMap<(u64, String, u64), Vec<&CLog>> = BTreeMap::new();
    for l in &actual {
        by_key.entry(l.key()).or_default().push(l);
    }
    let mut t = Tally::default();
    for (exp, req) in expected {
        let what = format!("log record (observed {})", exp.observed_time);
        let found = by_key.get(&exp.key());
        t.count(
            *req,
            exp,
            found,
            || (format!("trace {trace_id}: {what}"), log_diff),
            problems,
        );
    }
    for l in &actual {
        if l.trace_id != trace_id || !expected.iter().any(|(e, _)| e.key() == l.key()) {
            t.unexpected += 1;
            problems.push(format!(
                "trace {trace_id}: log record (observed {}) was never sent",
                l.observed_time
            ));
        }
    }
    Ok(t)
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub traces_checked: u64,
    pub spans: Tally,
    pub logs: Tally,
    /// Queries that failed (connection, status other than 200/404, unreadable answer).
    pub query_errors: u64,
    /// The first problems found, described.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Nothing that had to be stored is missing or different, nothing unexpected, no errors.
    pub fn passed(&self) -> bool {
        self.spans.missing == 0
            && self.spans.different == 0
            && self.spans.unexpected == 0
            && self.logs.missing == 0
            && self.logs.different == 0
            && self.logs.unexpected == 0
            && self.query_errors == 0
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "verify: {} sampled traces read back: {}",
            self.traces_checked,
            if self.passed() { "PASSED" } else { "FAILED" }
        );
        for (what, t) in [("spans", &self.spans), ("log records", &self.logs)] {
            if t.required + t.not_required == 0 {
                continue;
            }
            let _ = writeln!(
                s,
                "  {what}: {} required (answered 2xx), {} found equal, {} missing, {} different, {} unexpected, {} duplicated; {} more sent in exports not plainly accepted",
                t.required, t.found, t.missing, t.different, t.unexpected, t.duplicated, t.not_required
            );
        }
        if self.query_errors > 0 {
            let _ = writeln!(s, "  query errors: {}", self.query_errors);
        }
        for p in self.problems.iter().take(10) {
            let _ = writeln!(s, "  - {p}");
        }
        if self.problems.len() > 10 {
            let _ = writeln!(s, "  ... and {} more", self.problems.len() - 10);
        }
        s
    }
}

/// Reads back up to `max_traces` sampled traces through the query API at `addr`.
pub async fn verify(
    expected: &Expected,
    addr: SocketAddr,
    authority: &str,
    max_traces: usize,
    timeout: Duration,
) -> VerifyReport {
    let mut r = VerifyReport::default();
    let mut problems = Vec::new();
    for (trace_id, exp) in expected.iter().take(max_traces) {
        r.traces_checked += 1;
        if !exp.spans.is_empty() {
            let path = format!("/api/v1/traces/{trace_id}");
            match http_get(addr, authority, &path, timeout).await {
                Ok((200, body)) => match serde_json::from_slice::<Value>(&body) {
                    Ok(doc) => match check_spans(trace_id, &exp.spans, Some(&doc), &mut problems) {
                        Ok(t) => r.spans.add(&t),
                        Err(e) => {
                            r.query_errors += 1;
                            problems.push(format!("GET {path}: unreadable answer: {e}"));
                        }
                    },
                    Err(e) => {
                        r.query_errors += 1;
                        problems.push(format!("GET {path}: not JSON: {e}"));
                    }
                },
                Ok((404, _)) => match check_spans(trace_id, &exp.spans, None, &mut problems) {
                    Ok(t) => r.spans.add(&t),
                    Err(e) => problems.push(e),
                },
                Ok((status, body)) => {
                    r.query_errors += 1;
                    problems.push(format!(
                        "GET {path}: HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ));
                }
                Err(e) => {
                    r.query_errors += 1;
                    problems.push(e);
                }
            }
        }
        if !exp.logs.is_empty() {
            let path = format!("/api/v1/logs?traceId={trace_id}&limit=1000");
            match http_get(addr, authority, &path, timeout).await {
                Ok((200, body)) => match serde_json::from_slice::<Value>(&body) {
                    Ok(doc) => match check_logs(trace_id, &exp.logs, &doc, &mut problems) {
                        Ok(t) => r.logs.add(&t),
                        Err(e) => {
                            r.query_errors += 1;
                            problems.push(format!("GET {path}: unreadable answer: {e}"));
                        }
                    },
                    Err(e) => {
                        r.query_errors += 1;
                        problems.push(format!("GET {path}: not JSON: {e}"));
                    }
                },
                Ok((status, body)) => {
                    r.query_errors += 1;
                    problems.push(format!(
                        "GET {path}: HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ));
                }
                Err(e) => {
                    r.query_errors += 1;
                    problems.push(e);
                }
            }
        }
    }
    r.problems = problems;
    r
}
