//! The in-memory index: what queries need to find records without scanning them. An
//! [`Index`] covers one segment; a shard keeps one per segment holding records ([`Indexes`]),
//! so that what a segment puts in memory can go with it.
//!
//! Spans: trace id → trace slot (summary + record locations), plus one compact [`SpanEntry`]
//! per span for search. Logs: one [`LogEntry`] per record, plus trace id → logs.
//! Attribute filters and `contains` are checked against the records themselves, read
//! zero-copy from the segment maps, after the cheap fields here narrowed the candidates.
//!
//! Memory per span: `size_of::<SpanEntry>()` (40 bytes) plus its trace's share of one
//! [`TraceEntry`] (~125 bytes with its map slot, the first record location inline) and of its
//! further record locations, 8 bytes each (the 2nd to 33rd in a `Vec` that doubles from 4
//! slots, then chunks of 32). At 10 spans per trace in 2 records: about 56 bytes per span.
//! Memory per log record: `size_of::<LogEntry>()` (32 bytes), plus 4 bytes for those with a
//! trace id.

pub mod chunked;
pub mod names;
pub mod parts;

use chunked::{AppendList, ChunkedVec, ShardedMap};
pub use parts::Indexes;

use crate::domain::tags::{Sampler, TagScope, TagTable};
use crate::domain::{self, ArchivedLogBatch, ArchivedSpanBatch, TraceId, STATUS_CODE_ERROR};
use names::{NameId, Names};

/// Where a record lives in a shard's storage: the segment's slot in the shard's segment
/// table and the record's byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordLoc {
    pub segment: u32,
    pub offset: u32,
}

/// One span, for search.
#[derive(Debug, Clone, Copy)]
pub struct SpanEntry {
    pub start_unix_nanos: u64,
    pub duration_nanos: u64,
    pub trace: u32,
    pub service: NameId,
    pub name: NameId,
    /// The record, as a slot in `SpanIndex::records`.
    pub record: u32,
    /// Position of the span in its record; u16 since records hold far fewer spans.
    pub index_in_record: u16,
    pub error: bool,
}

/// One trace: its summary and the records that hold its spans.
#[derive(Debug, Clone)]
pub struct TraceEntry {
    pub id: TraceId,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub span_count: u32,
    pub error_count: u32,
    /// Service and name of the root span (no parent), else of the earliest span seen.
    pub root_service: NameId,
    pub root_name: NameId,
    pub root_has_parent: bool,
    /// Start of the span the root names come from (the trace's start when no root is seen
    /// and its earliest span stands in): what decides between the roots of several parts.
    pub root_start_unix_nanos: u64,
    /// Records holding this trace's spans, in append order, without repeats.
    pub records: AppendList<RecordLoc>,
}

/// How well the span a summary takes its root names from fits: a span without a parent
/// before any other, then the earliest. Smaller is better, so that the parts of one trace
/// (index parts, sealed blocks, shards) merge to the same root in any order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RootRank {
    /// The span has a parent: it stands in for a root not seen.
    pub has_parent: bool,
    pub start_unix_nanos: u64,
}

impl RootRank {
    /// Worse than any span's.
    pub const NONE: RootRank = RootRank {
        has_parent: true,
        start_unix_nanos: u64::MAX,
    };

    pub fn of(has_parent: bool, start_unix_nanos: u64) -> RootRank {
        RootRank {
            has_parent,
            start_unix_nanos,
        }
    }
}

/// A trace summary as search returns it. Serialised as `{traceId, rootServiceName,
/// rootSpanName, startTimeUnixNano (decimal string), durationMs, spanCount, errorCount,
/// spanSets: [{spans, matched}], serviceStats: {service: {spanCount, errorCount}}}`; the start
/// text and the duration are derived from the two times when written.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_service_name: String,
    pub root_span_name: String,
    pub span_count: u32,
    pub error_count: u32,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// The rank of the span the root names come from (not serialised).
    pub root: RootRank,
    /// Per service, its spans in the trace and those with status error.
    pub services: std::collections::BTreeMap<String, ServiceStats>,
    /// The spans that matched the search.
    pub matched: SpanSet,
}

/// A service's spans in a trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStats {
    pub span_count: u32,
    pub error_count: u32,
}

/// The spans of a trace that matched a search: the earliest `keep` of them (by start, then
/// span id), and how many matched in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanSet {
    pub spans: Vec<MatchedSpan>,
    pub matched: u32,
    pub keep: usize,
}

/// One span that matched a search, with the `attr` pairs it matched (as their text).
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedSpan {
    pub span_id: domain::SpanId,
    pub name: String,
    pub start_unix_nanos: u64,
    pub duration_nanos: u64,
    pub attributes: Vec<(String, String)>,
}

impl SpanSet {
    pub fn new(keep: usize) -> SpanSet {
        SpanSet {
            keep,
            ..SpanSet::default()
        }
    }

    /// Counts a matching span, kept if among the earliest `keep`.
    pub fn offer(&mut self, span: MatchedSpan) {
        self.matched += 1;
        if self.keep == 0 {
            return;
        }
        let key = |s: &MatchedSpan| (s.start_unix_nanos, s.span_id);
        if self.spans.len() == self.keep {
            match self.spans.last() {
                Some(last) if key(&span) < key(last) => {
                    self.spans.pop();
                }
                _ => return,
            }
        }
        let at = self.spans.partition_point(|s| key(s) < key(&span));
        self.spans.insert(at, span);
    }

    pub fn merge(&mut self, other: &SpanSet) {
        self.keep = self.keep.max(other.keep);
        let matched = self.matched + other.matched;
        for s in &other.spans {
            self.offer(s.clone());
        }
        self.matched = matched;
    }
}

impl TraceSummary {
    /// The summary of no span yet of trace `id`, keeping `spss` matched spans.
    pub fn empty(id: &TraceId, spss: usize) -> TraceSummary {
        TraceSummary {
            trace_id: id.to_hex(),
            root_service_name: String::new(),
            root_span_name: String::new(),
            span_count: 0,
            error_count: 0,
            start_unix_nanos: u64::MAX,
            end_unix_nanos: 0,
            root: RootRank::NONE,
            services: Default::default(),
            matched: SpanSet::new(spss),
        }
    }

    pub fn duration_ms(&self) -> f64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos) as f64 / 1e6
    }

    /// Folds in the summary of another part of the same trace (stored on another shard
    /// after a change of shard count).
    pub fn merge(&mut self, other: &TraceSummary) {
        debug_assert_eq!(self.trace_id, other.trace_id);
        self.start_unix_nanos = self.start_unix_nanos.min(other.start_unix_nanos);
        self.end_unix_nanos = self.end_unix_nanos.max(other.end_unix_nanos);
        self.span_count += other.span_count;
        self.error_count += other.error_count;
        for (service, stats) in &other.services {
            let mine = self.services.entry(service.clone()).or_default();
            mine.span_count += stats.span_count;
            mine.error_count += stats.error_count;
        }
        self.matched.merge(&other.matched);
        if self.offer_root(other.root, &other.root_service_name, &other.root_span_name) {
            self.root_service_name.clone_from(&other.root_service_name);
            self.root_span_name.clone_from(&other.root_span_name);
        }
    }

    /// Whether a span of rank `rank` named `service` / `name` is a better root than the
    /// summary's; if so its rank is taken (the caller takes the names). Equal ranks are
    /// decided by the names, so that the choice never depends on the order of the parts.
    pub fn offer_root(&mut self, rank: RootRank, service: &str, name: &str) -> bool {
        let better = (rank, service, name)
            < (
                self.root,
                self.root_service_name.as_str(),
                self.root_span_name.as_str(),
            );
        if better {
            self.root = rank;
        }
        better
    }
}

impl TraceSummary {
    /// The matched spans as a Tempo `SpanSet` in protobuf JSON: `{"spans":[{spanID, name,
    /// startTimeUnixNano, durationNanos, attributes}], "matched": N}`, 64-bit numbers as
    /// strings, the matched `attr` pairs as `stringValue`s.
    pub fn span_set_json(&self) -> serde_json::Value {
        let spans: Vec<serde_json::Value> = self
            .matched
            .spans
            .iter()
            .map(|m| {
                let attributes: Vec<serde_json::Value> = m
                    .attributes
                    .iter()
                    .map(|(k, v)| serde_json::json!({"key": k, "value": {"stringValue": v}}))
                    .collect();
                serde_json::json!({
                    "spanID": m.span_id.to_hex(),
                    "name": m.name,
                    "startTimeUnixNano": m.start_unix_nanos.to_string(),
                    "durationNanos": m.duration_nanos.to_string(),
                    "attributes": attributes,
                })
            })
            .collect();
        serde_json::json!({ "spans": spans, "matched": self.matched.matched })
    }

    /// `{service: {spanCount, errorCount}}` over the trace's spans.
    pub fn service_stats_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.services
            .iter()
            .map(|(k, v)| {
                let v = serde_json::json!({"spanCount": v.span_count, "errorCount": v.error_count});
                (k.clone(), v)
            })
            .collect()
    }
}

impl serde::Serialize for TraceSummary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("TraceSummary", 9)?;
        st.serialize_field("traceId", &self.trace_id)?;
        st.serialize_field("rootServiceName", &self.root_service_name)?;
        st.serialize_field("rootSpanName", &self.root_span_name)?;
        st.serialize_field("startTimeUnixNano", &self.start_unix_nanos.to_string())?;
        st.serialize_field("durationMs", &self.duration_ms())?;
        st.serialize_field("spanCount", &self.span_count)?;
        st.serialize_field("errorCount", &self.error_count)?;
        st.serialize_field("spanSets", &[self.span_set_json()])?;
        st.serialize_field("serviceStats", &self.service_stats_json())?;
        st.end()
    }
}

/// One log record, for search.
#[derive(Debug, Clone, Copy)]
pub struct LogEntry {
    pub time_unix_nanos: u64,
    pub loc: RecordLoc,
    pub service: NameId,
    pub index_in_record: u16,
    pub severity: i16,
    pub has_trace: bool,
}

pub struct Index {
    pub names: Names,
    traces: ChunkedVec<TraceEntry>,
    trace_slots: ShardedMap<TraceId, u32>,
    spans: ChunkedVec<SpanEntry>,
    span_records: ChunkedVec<RecordLoc>,
    logs: ChunkedVec<LogEntry>,
    logs_by_trace: ShardedMap<TraceId, AppendList<u32>>,
    /// Heap bytes the per-trace lists (`TraceEntry::records`, `logs_by_trace`) reserved
    /// beyond their inline part (for the memory estimate).
    list_heap_bytes: usize,
    services: Vec<NameId>,
    service_set: foldhash::HashSet<NameId>,
    /// The (service, span name) pairs of the spans, for the operations of a service.
    operations: foldhash::HashSet<(NameId, NameId)>,
    /// Attribute keys and their frequent values, for tag discovery: resources of every
    /// batch, the attributes of the items the samplers pick (one per signal, so that a log
    /// record never stands for spans).
    tags: TagTable<NameId>,
    span_sampler: Sampler,
    log_sampler: Sampler,
    /// Earliest span start or log time indexed (`u64::MAX`: none), and latest span end or log
    /// time: what time range the part covers, for tag discovery.
    min_time: u64,
    max_time: u64,
}

/// Memory the index holds, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexStats {
    pub traces: usize,
    pub spans: usize,
    pub logs: usize,
    pub approx_bytes: usize,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            names: Names::default(),
            traces: ChunkedVec::default(),
            trace_slots: ShardedMap::default(),
            spans: ChunkedVec::default(),
            span_records: ChunkedVec::default(),
            logs: ChunkedVec::default(),
            logs_by_trace: ShardedMap::default(),
            list_heap_bytes: 0,
            services: Vec::new(),
            service_set: Default::default(),
            operations: Default::default(),
            tags: TagTable::default(),
            span_sampler: Sampler::default(),
            log_sampler: Sampler::default(),
            min_time: u64::MAX,
            max_time: 0,
        }
    }
}

impl Index {
    /// Indexes a stored span record at `loc`.
    pub fn add_spans(&mut self, loc: RecordLoc, batch: &ArchivedSpanBatch<'_>) {
        let service = self
            .names
            .intern(domain::archived_service_name(&batch.resource.attributes));
        self.note_service(service);
        let n = batch.spans.len();
        self.tags.note_archived(
            TagScope::TraceResource,
            service,
            &batch.resource.attributes,
            n as u64,
        );
        let record = self.span_records.len() as u32;
        self.span_records.push(loc);
        // The last name noted with this batch's service: a batch's spans mostly repeat a few
        // names, so the set is probed once a run of them, not once a span.
        let mut noted = None;
        for (i, span) in batch.spans.iter().enumerate() {
            debug_assert!(i <= u16::MAX as usize);
            let trace_id = span.trace_id.get();
            let start = span.start_time_unix_nano.to_native();
            let end = span.end_time_unix_nano.to_native();
            self.min_time = self.min_time.min(start);
            self.max_time = self.max_time.max(end);
            if let Some(weight) = self.span_sampler.pick() {
                self.tags
                    .note_archived(TagScope::Span, service, &span.attributes, weight);
            }
            let name = self.names.intern(span.name.as_str());
            if noted != Some(name) {
                self.operations.insert((service, name));
                noted = Some(name);
            }
            let error = span.status.code.to_native() == STATUS_CODE_ERROR;
            let is_root = span.parent_span_id.is_none();
            let next_slot = self.traces.len() as u32;
            let spread = crate::route::trace_hash(&trace_id);
            let slot = *self
                .trace_slots
                .entry(trace_id, spread)
                .or_insert(next_slot);
            if slot == next_slot {
                self.traces.push(TraceEntry {
                    id: trace_id,
                    start_unix_nanos: start,
                    end_unix_nanos: end,
                    span_count: 0,
                    error_count: 0,
                    root_service: service,
                    root_name: name,
                    root_has_parent: true,
                    root_start_unix_nanos: u64::MAX,
                    records: AppendList::default(),
                });
            }
            let t = self.traces.get_mut(slot as usize).expect("slot of a trace");
            t.span_count += 1;
            t.error_count += error as u32;
            let rank = RootRank::of(!is_root, start);
            let better = match rank.cmp(&RootRank::of(t.root_has_parent, t.root_start_unix_nanos)) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                // A tie (two roots starting together): the names decide, as in a merge.
                std::cmp::Ordering::Equal => {
                    (self.names.get(service), self.names.get(name))
                        < (self.names.get(t.root_service), self.names.get(t.root_name))
                }
            };
            if better {
                t.root_service = service;
                t.root_name = name;
                (t.root_has_parent, t.root_start_unix_nanos) = (!is_root, start);
            }
            t.start_unix_nanos = t.start_unix_nanos.min(start);
            t.end_unix_nanos = t.end_unix_nanos.max(end);
            if t.records.last() != Some(&loc) {
                self.list_heap_bytes += t.records.push(loc);
            }
            self.spans.push(SpanEntry {
                start_unix_nanos: start,
                duration_nanos: end.saturating_sub(start),
                trace: slot,
                service,
                name,
                record,
                index_in_record: i as u16,
                error,
            });
        }
    }

    /// Indexes a stored log record at `loc`.
    pub fn add_logs(&mut self, loc: RecordLoc, batch: &ArchivedLogBatch<'_>) {
        let service = self
            .names
            .intern(domain::archived_service_name(&batch.resource.attributes));
        self.note_service(service);
        let n = batch.logs.len();
        self.tags.note_archived(
            TagScope::LogResource,
            service,
            &batch.resource.attributes,
            n as u64,
        );
        for (i, log) in batch.logs.iter().enumerate() {
            let time = match log.time_unix_nano.to_native() {
                0 => log.observed_time_unix_nano.to_native(),
                t => t,
            };
            self.min_time = self.min_time.min(time);
            self.max_time = self.max_time.max(time);
            if let Some(weight) = self.log_sampler.pick() {
                self.tags
                    .note_archived(TagScope::Log, service, &log.attributes, weight);
            }
            let n = self.logs.len() as u32;
            let trace = log.trace_id.as_ref().map(|t| t.get());
            if let Some(t) = trace {
                let spread = crate::route::trace_hash(&t);
                self.list_heap_bytes += self.logs_by_trace.entry(t, spread).or_default().push(n);
            }
            self.logs.push(LogEntry {
                time_unix_nanos: time,
                loc,
                service,
                index_in_record: i as u16,
                severity: log
                    .severity_number
                    .to_native()
                    .clamp(i16::MIN as i32, i16::MAX as i32) as i16,
                has_trace: trace.is_some(),
            });
        }
    }

    fn note_service(&mut self, service: NameId) {
        if service != NameId::OVERFLOW && self.service_set.insert(service) {
            self.services.push(service);
        }
    }

    pub fn trace(&self, id: &TraceId) -> Option<&TraceEntry> {
        self.trace_slots
            .get(id, crate::route::trace_hash(id))
            .map(|&s| &self.traces[s as usize])
    }

    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|&s| self.names.get(s))
    }

    /// The span names seen with service `service` (names past the interning table are not
    /// told apart, and not listed).
    pub fn operations_of<'i>(&'i self, service: &str) -> impl Iterator<Item = &'i str> + 'i {
        let id = self.names.lookup(service);
        self.operations
            .iter()
            .filter(move |(s, n)| Some(*s) == id && *n != NameId::OVERFLOW)
            .map(|&(_, n)| self.names.get(n))
    }

    /// The attribute keys and frequent values noted, by scope and service.
    pub fn tags(&self) -> &TagTable<NameId> {
        &self.tags
    }

    /// The earliest span start or log time indexed and the latest span end or log time;
    /// `(u64::MAX, 0)` when empty.
    pub fn time_range(&self) -> (u64, u64) {
        (self.min_time, self.max_time)
    }

    /// Every span entry, oldest first. Entries are only appended: a position keeps its entry.
    pub fn spans(&self) -> &ChunkedVec<SpanEntry> {
        &self.spans
    }

    pub fn span_record(&self, e: &SpanEntry) -> RecordLoc {
        self.span_records[e.record as usize]
    }

    pub fn trace_by_slot(&self, slot: u32) -> &TraceEntry {
        &self.traces[slot as usize]
    }

    pub fn logs(&self) -> &ChunkedVec<LogEntry> {
        &self.logs
    }

    /// Positions in [`Index::logs`] of the log records of trace `id`, oldest first.
    pub fn logs_of_trace(&self, id: &TraceId) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.logs_by_trace
            .get(id, crate::route::trace_hash(id))
            .into_iter()
            .flat_map(|l| l.iter().copied())
    }

    pub fn summary(&self, t: &TraceEntry) -> TraceSummary {
        TraceSummary {
            trace_id: t.id.to_hex(),
            root_service_name: self.names.get(t.root_service).to_owned(),
            root_span_name: self.names.get(t.root_name).to_owned(),
            span_count: t.span_count,
            error_count: t.error_count,
            start_unix_nanos: t.start_unix_nanos,
            end_unix_nanos: t.end_unix_nanos,
            root: RootRank::of(t.root_has_parent, t.root_start_unix_nanos),
            services: Default::default(),
            matched: SpanSet::default(),
        }
    }

    pub fn stats(&self) -> IndexStats {
        IndexStats {
            traces: self.traces.len(),
            spans: self.spans.len(),
            logs: self.logs.len(),
            approx_bytes: self.spans.capacity_bytes()
                + self.traces.capacity_bytes()
                + self.trace_slots.table_bytes()
                + self.list_heap_bytes
                + self.logs_by_trace.table_bytes()
                + self.span_records.capacity_bytes()
                + self.logs.capacity_bytes()
                + self.names.approx_bytes()
                + self.tags.approx_bytes(),
        }
    }
}

const _: () = assert!(std::mem::size_of::<SpanEntry>() <= 40);
const _: () = assert!(std::mem::size_of::<LogEntry>() <= 32);
// A head trace: 112 bytes with its root's start, which merges its parts' roots right.
const _: () = assert!(std::mem::size_of::<TraceEntry>() <= 112);
