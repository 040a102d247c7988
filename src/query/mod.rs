//! Queries: what can be asked ([`QueryRequest`]) and answered ([`QueryResponse`]), and the
//! query API's parameters parsed into them ([`params`]). They run in
//! [`crate::shard::query`]: how one shard answers from its index and segments, and how the
//! shard that received the HTTP request fans out over the mesh and merges.
//!
//! Answers travel between shards as JSON fragments already in OTLP JSON form, grouped by
//! resource and scope, so the coordinating shard only concatenates.

pub mod params;
pub mod traceql;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::tags::{TagScope, TagValue};
use crate::domain::TraceId;
use crate::index::TraceSummary;
use crate::route::ShardId;

/// Filters of a trace search. Times are unix nanoseconds; durations nanoseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSearch {
    pub service: Option<String>,
    pub name: Option<String>,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    pub start_unix_nanos: Option<u64>,
    pub end_unix_nanos: Option<u64>,
    /// `key=value` pairs a matching span (or its resource) must all carry.
    pub attrs: Vec<(String, String)>,
    /// Whether a matching span's status must be error (`Some(true)`) or not (`Some(false)`).
    pub error: Option<bool>,
    pub limit: usize,
    /// Matching spans each trace of the answer carries, at most.
    pub spss: usize,
    /// What a TraceQL query asks of a span beyond the filters above, checked on each span
    /// they let through (its record read).
    pub span_query: Option<Arc<traceql::SpanQuery>>,
    /// What a TraceQL query asks of the whole trace (its duration, its root), checked on
    /// each trace found.
    pub trace_query: Option<Arc<traceql::TraceQuery>>,
    pub budget: Budget,
}

impl TraceSearch {
    /// Whether a span matches every filter: its service, name, start, duration, error
    /// status, and the `attr` pairs and the span query, which `attrs_match` says (asked only
    /// once the rest matched).
    pub fn span_matches(
        &self,
        service: &str,
        name: &str,
        start: u64,
        duration: u64,
        error: bool,
        attrs_match: impl FnOnce() -> bool,
    ) -> bool {
        self.error.is_none_or(|e| e == error)
            && self.start_unix_nanos.is_none_or(|t| start >= t)
            && self.end_unix_nanos.is_none_or(|t| start <= t)
            && self.service.as_deref().is_none_or(|w| service == w)
            && self.name.as_deref().is_none_or(|w| name == w)
            && self.min_duration_nanos.is_none_or(|d| duration >= d)
            && self.max_duration_nanos.is_none_or(|d| duration <= d)
            && attrs_match()
    }
}

/// Filters of a log search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogSearch {
    pub service: Option<String>,
    pub min_severity: Option<i32>,
    pub contains: Option<String>,
    pub trace_id: Option<TraceId>,
    pub start_unix_nanos: Option<u64>,
    pub end_unix_nanos: Option<u64>,
    pub limit: usize,
    pub budget: Budget,
}

/// What a tag discovery query looks at: some scopes, a service's items or all, and the
/// segments that hold items of a time range (a segment is in if its time range meets it).
#[derive(Debug, Clone, PartialEq)]
pub struct TagFilter {
    /// Per [`TagScope`] (by its number), whether it is asked for.
    pub scopes: [bool; 4],
    pub service: Option<String>,
    pub start_unix_nanos: Option<u64>,
    pub end_unix_nanos: Option<u64>,
}

impl Default for TagFilter {
    fn default() -> Self {
        TagFilter {
            scopes: [true; 4],
            service: None,
            start_unix_nanos: None,
            end_unix_nanos: None,
        }
    }
}

impl TagFilter {
    pub fn wants(&self, scope: TagScope) -> bool {
        self.scopes[scope as usize]
    }

    /// Whether a segment whose items lie from `min` to `max` (unix ns) is looked at.
    pub fn overlaps(&self, min: u64, max: u64) -> bool {
        min <= max
            && self.start_unix_nanos.is_none_or(|t| max >= t)
            && self.end_unix_nanos.is_none_or(|t| min <= t)
    }
}

/// When a search must stop, on every shard it runs on: at its deadline, or once the request
/// that asked for it is gone (its client went away). The copies of one search sent to the
/// shards share the flag; each shard looks at it between slices of its scan and before each
/// sealed block, never on the ingest path.
#[derive(Debug, Clone)]
pub struct Budget {
    pub timeout: Duration,
    deadline: Option<Instant>,
    cancelled: Arc<AtomicBool>,
}

impl Budget {
    pub fn new(timeout: Duration) -> Budget {
        Budget {
            timeout,
            deadline: None,
            cancelled: Arc::default(),
        }
    }

    /// Starts the clock, once: the deadline is `timeout` from the first call.
    pub fn start(&mut self) {
        self.deadline
            .get_or_insert_with(|| Instant::now() + self.timeout);
    }

    /// Whether the search must stop now: cancelled, or past its deadline.
    pub fn over(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether it was cancelled (rather than out of time).
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Stops every copy of the search.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(crate::limits::SEARCH_TIMEOUT_DEFAULT)
    }
}

/// Searches are equal whatever their clocks: two parsed alike are alike.
impl PartialEq for Budget {
    fn eq(&self, other: &Budget) -> bool {
        self.timeout == other.timeout
    }
}

/// Cancels a search's copies when dropped: held by the coordinating shard while it waits,
/// so that a request dropped part way (its client gone) stops the search everywhere.
pub struct CancelOnDrop(pub Budget);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A query one shard asks of another.
#[derive(Debug, Clone)]
pub enum QueryRequest {
    Trace(TraceId),
    /// A trace's spans as OTLP protobuf.
    TraceProto(TraceId),
    SearchTraces(TraceSearch),
    SearchLogs(LogSearch),
    Services,
    /// The span names seen with a service.
    Operations(String),
    /// The attribute keys seen, by scope.
    Tags(TagFilter),
    /// The most frequent values of an attribute key, at most `limit`.
    TagValues {
        key: String,
        filter: TagFilter,
        limit: usize,
    },
    /// Counters, gauges and histograms, for `/metrics` and the HDR dumps.
    Metrics,
}

/// Items under one resource and one scope, as OTLP JSON fragments. The resource and scope
/// fragments are shared (`Arc`) by every item rendered from one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonGroup {
    /// `"resource":{...}` plus `,"schemaUrl":"..."` when set: the fields of a
    /// `ResourceSpans` / `ResourceLogs` object before its scopes.
    pub resource: Arc<str>,
    /// The fields of a `ScopeSpans` / `ScopeLogs` object before its items.
    pub scope: Arc<str>,
    /// One JSON object per span or log record.
    pub items: Vec<String>,
}

/// One log record found by a search, with its sort key.
#[derive(Debug, Clone)]
pub struct LogHit {
    pub time_unix_nanos: u64,
    pub group: JsonGroup,
}

/// A shard's answer.
#[derive(Debug, Clone)]
pub enum QueryResponse {
    Trace(Vec<JsonGroup>),
    TraceProto(Vec<crate::otlp::proto_out::ProtoGroup>),
    /// Summaries, newest first; `partial` when the search stopped at its deadline.
    Traces {
        traces: Vec<TraceSummary>,
        partial: bool,
    },
    Logs {
        hits: Vec<LogHit>,
        partial: bool,
    },
    Services(Vec<String>),
    Operations(Vec<String>),
    /// Keys by scope, sorted; `truncated` when a segment left keys or values out for its
    /// bounds.
    Tags {
        tags: Vec<(TagScope, String)>,
        truncated: bool,
    },
    /// Values with their counts (summed over segments and shards), most frequent first.
    TagValues {
        values: Vec<(TagValue, u64)>,
        truncated: bool,
    },
    Metrics(Box<crate::metrics::Snapshot>),
    /// The shard could not answer.
    Failed(Refusal),
}

/// Why a shard did not answer its part of a query; sent back over the mesh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It runs as many searches as it may ([`crate::limits::SEARCHES_MAX`]).
    #[error("{shard} is running {running} searches; retry later")]
    SearchesFull { shard: ShardId, running: usize },
    /// Its query task queue refused the search (the executor is shutting down).
    #[error("{shard} cannot start the search: {reason}")]
    NotStarted { shard: ShardId, reason: String },
    /// No shard's answer held what the query asked for.
    #[error("no shard answered")]
    NoAnswer,
}
