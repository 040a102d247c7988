//! Running queries: [`run_local`] answers from one shard's index and segments (reads mmapped
//! records zero-copy); [`coordinate`] runs on the shard that received the HTTP request, asks
//! the shards concerned over the mesh (a trace lookup asks its owner only, plus shards holding
//! data from another shard count) and merges their answers.
//!
//! Searches scan the whole index, newest first, and may read a record per entry: millions of
//! entries take seconds. They run on the shard's thread, between its ingest work, so they scan
//! in slices of [`QUERY_SLICE`] ([`Slice`]) and let the reactor run in between: a search
//! never stalls ingest for much longer than one slice.

use std::collections::{BinaryHeap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::domain::{
    ArchivedAnyValue, ArchivedKeyValue, ArchivedLogBatch, ArchivedResource, ArchivedScope,
    ArchivedSpanBatch, TraceId,
};
use crate::index::names::NameId;
use crate::index::{Index, RecordLoc, TraceSummary};
use crate::limits::{QUERY_SLICE, READ_AHEAD_ENTRIES, SCAN_CLOCK_EVERY, SEARCHES_MAX, SLICE_GAP};
use crate::metrics::Counter;
use crate::otlp::json_out;
use crate::query::{JsonGroup, LogHit, LogSearch, QueryRequest, QueryResponse, TraceSearch};
use crate::route::{owner_of, ShardId};
use crate::shard::conns::Conns;
use crate::shard::Shard;
use crate::storage::{RecordKind, Store};

/// Reads a search's records into the page cache ahead of its scan, on the blocking pool, so
/// that slices do not wait for the disk on the shard's thread (records older than
/// `--page-cache-keep` are no longer cached). Positions are taken in blocks of
/// [`READ_AHEAD_ENTRIES`] from the scan's `end` down: when the scan enters a block, it waits
/// for that block's read, started in the background when it entered the block before (or
/// reads it now: the first block, or one the scan reached by going past the one before in a
/// single slice), and starts the next block's read.
struct ReadAhead {
    end: usize,
    /// The block the scan is in.
    block: Option<usize>,
    /// The background read of a block, and which.
    next: Option<(usize, glommio::Task<()>)>,
}

impl ReadAhead {
    fn new(end: usize) -> Self {
        ReadAhead {
            end,
            block: None,
            next: None,
        }
    }

    /// Before a slice that starts at `pos` (visiting below it): `locs` gives the records the
    /// scan would read for a range of positions (those the index alone does not decide).
    async fn before_slice(
        &mut self,
        shard: &Shard,
        pos: usize,
        locs: impl Fn(&Index, std::ops::Range<usize>) -> Vec<RecordLoc>,
    ) {
        let block = (self.end - pos) / READ_AHEAD_ENTRIES;
        if self.block == Some(block) {
            return;
        }
        self.block = Some(block);
        let range_of = |b: usize| {
            let hi = self.end.saturating_sub(b * READ_AHEAD_ENTRIES);
            hi.saturating_sub(READ_AHEAD_ENTRIES)..hi
        };
        match self.next.take() {
            Some((b, read)) if b == block => read.await,
            _ => {
                let cold = cold_ranges(shard, |index| locs(index, range_of(block).start..pos));
                if !cold.is_empty() {
                    glommio::executor()
                        .spawn_blocking(move || crate::storage::prefetch(&cold))
                        .await;
                }
            }
        }
        let after = range_of(block + 1);
        if !after.is_empty() {
            let cold = cold_ranges(shard, |index| locs(index, after));
            if !cold.is_empty() {
                let read =
                    glommio::executor().spawn_blocking(move || crate::storage::prefetch(&cold));
                self.next = Some((block + 1, glommio::spawn_local(read)));
            }
        }
    }
}

fn cold_ranges(
    shard: &Shard,
    locs: impl FnOnce(&Index) -> Vec<RecordLoc>,
) -> Vec<crate::storage::ColdRange> {
    let index = shard.index.borrow();
    let store = shard.store.borrow();
    store.cold_ranges(locs(&index).into_iter())
}

/// The record read last, kept for the entries after it: a record's items are consecutive
/// entries of the index.
struct LastRecord<'s, T> {
    loc: Option<RecordLoc>,
    batch: Option<&'s T>,
}

impl<'s, T> LastRecord<'s, T> {
    fn new() -> Self {
        LastRecord {
            loc: None,
            batch: None,
        }
    }

    /// The record at `loc`: the one kept, or `read(loc)`.
    fn get(
        &mut self,
        loc: RecordLoc,
        read: impl FnOnce(RecordLoc) -> Option<&'s T>,
    ) -> Option<&'s T> {
        if self.loc != Some(loc) {
            self.loc = Some(loc);
            self.batch = read(loc);
        }
        self.batch
    }
}

/// Answers `q` from this shard's data only. Searches run in the shard's query task queue
/// (low shares) and yield to its other work between slices of their scan; the other queries
/// are bounded (one trace, the services, the metrics) and answer at once.
pub async fn run_local(shard: &Rc<Shard>, q: &QueryRequest) -> QueryResponse {
    match q {
        QueryRequest::SearchTraces(s) => {
            let (sh, s) = (shard.clone(), s.clone());
            let search = async move { QueryResponse::Traces(search_traces_local(&sh, &s).await) };
            in_query_queue(shard, search).await
        }
        QueryRequest::SearchLogs(s) => {
            let (sh, s) = (shard.clone(), s.clone());
            let search = async move { QueryResponse::Logs(search_logs_local(&sh, &s).await) };
            in_query_queue(shard, search).await
        }
        QueryRequest::Trace(id) => {
            let (index, store) = (shard.index.borrow(), shard.store.borrow());
            QueryResponse::Trace(trace_json(&index, &store, id))
        }
        QueryRequest::Services => {
            let index = shard.index.borrow();
            QueryResponse::Services(index.services().map(str::to_owned).collect())
        }
        QueryRequest::Metrics => {
            let (index, store) = (shard.index.borrow(), shard.store.borrow());
            QueryResponse::Metrics(Box::new(metrics_snapshot(shard, &index, &store)))
        }
    }
}

/// Runs `search` in the shard's query task queue and waits for its answer; refused when
/// [`SEARCHES_MAX`] run already.
async fn in_query_queue(
    shard: &Shard,
    search: impl std::future::Future<Output = QueryResponse> + 'static,
) -> QueryResponse {
    if shard.searches.get() >= SEARCHES_MAX {
        return QueryResponse::Failed(format!(
            "{} is running {SEARCHES_MAX} searches; retry later",
            shard.id
        ));
    }
    /// Counts a search while it runs, however it ends (a cancelled one included).
    struct Running<'a>(&'a std::cell::Cell<usize>);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }
    shard.searches.set(shard.searches.get() + 1);
    let _running = Running(&shard.searches);
    match glommio::spawn_local_into(search, shard.query_queue) {
        Ok(task) => task.await,
        Err(e) => QueryResponse::Failed(format!("cannot start the search: {e}")),
    }
}

/// One slice of a search's scan: the scan visits index positions newest first (from `end - 1`
/// down to `0`) under fresh borrows of the index and the store, for [`QUERY_SLICE`] at most;
/// records read in a slice are not kept past it. Between slices ([`Slice::next`]) the borrows
/// are released. Ingest may append to the index meanwhile: positions below the scan's `end`
/// keep their entries (the index only grows), and entries appended after the search started
/// are not part of it.
struct Slice {
    deadline: Instant,
    first: usize,
}

impl Slice {
    fn start(pos: usize) -> Self {
        Slice {
            deadline: Instant::now() + QUERY_SLICE,
            first: pos,
        }
    }

    /// Whether the scan, about to visit below `pos`, should stop this slice: the clock is read
    /// every [`SCAN_CLOCK_EVERY`] positions, and a slice visits one position at least.
    fn over(&self, pos: usize) -> bool {
        pos != self.first && pos % SCAN_CLOCK_EVERY == 0 && Instant::now() >= self.deadline
    }

    /// After a slice, if positions are left: a timer, not a yield. glommio polls its rings
    /// only when no task is ready (or every 100 ms, its preemption timer), so a task that
    /// yields and is ready again at once would keep the sockets unread; one waiting on a timer
    /// is ready again only after the executor's next poll, which also wakes the ingest work
    /// whose I/O completed.
    async fn next(pos: usize) {
        if pos > 0 {
            glommio::timer::sleep(SLICE_GAP).await;
        }
    }
}

/// This shard's metrics, with its gauges read now.
fn metrics_snapshot(shard: &Shard, index: &Index, store: &Store) -> crate::metrics::Snapshot {
    let stats = index.stats();
    let conns = shard.conns.borrow();
    let (otlp, query) = match &*conns {
        Some((otlp, query)) => (Some(&**otlp), Some(&**query)),
        None => (None, None),
    };
    let open = |c: Option<&Conns>| c.map_or(0, |c| c.len() as u64);
    let evicted = |c: Option<&Conns>| c.map_or(0, |c| c.evicted.get());
    let refused = |c: Option<&Conns>| c.map_or(0, |c| c.refused.get());
    let mut snapshot = shard.metrics.snapshot(vec![
        (
            "connections_otlp",
            "connections open on the OTLP ports (HTTP and gRPC), within --max-connections per shard",
            open(otlp),
        ),
        (
            "connections_query",
            "connections open on the query port",
            open(query),
        ),
        (
            "requests_in_flight",
            "OTLP requests being worked on, and appends sent by other shards",
            shard.in_flight.get() as u64,
        ),
        (
            "request_bytes_in_flight",
            "request body bytes held by requests in flight",
            shard.in_flight_bytes.get() as u64,
        ),
        (
            "queue_depth",
            "appends sent to other shards and not yet answered: cross-shard ingest queued or being written",
            shard.mesh.appends_in_flight() as u64,
        ),
        (
            "segments",
            "segment files open",
            store.segment_count() as u64,
        ),
        (
            "bytes_stored",
            "bytes written to segments, headers included",
            store.bytes_written(),
        ),
        (
            "index_traces",
            "traces in the in-memory index",
            stats.traces as u64,
        ),
        (
            "index_spans",
            "spans in the in-memory index",
            stats.spans as u64,
        ),
        (
            "index_logs",
            "log records in the in-memory index",
            stats.logs as u64,
        ),
        (
            "index_memory_bytes",
            "approximate heap bytes of the in-memory index",
            stats.approx_bytes as u64,
        ),
    ]);
    snapshot.counters.extend([
        Counter::new(
            "connections_evicted_total",
            "idle connections closed to make room for new ones at the connection cap",
            evicted(otlp) + evicted(query),
        ),
        Counter::new(
            "connections_refused_total",
            "new connections closed at once: at the cap with every open connection busy",
            refused(otlp) + refused(query),
        ),
    ]);
    snapshot
}

/// Reads and checks the span record at `loc`. Data from disk: the archive is validated.
fn span_batch(store: &Store, loc: RecordLoc) -> Option<&ArchivedSpanBatch<'static>> {
    match store.read(loc)? {
        (RecordKind::Spans, payload) => {
            rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(payload).ok()
        }
        _ => None,
    }
}

fn log_batch(store: &Store, loc: RecordLoc) -> Option<&ArchivedLogBatch<'static>> {
    match store.read(loc)? {
        (RecordKind::Logs, payload) => {
            rkyv::access::<ArchivedLogBatch<'static>, rkyv::rancor::Error>(payload).ok()
        }
        _ => None,
    }
}

fn resource_fields(r: &ArchivedResource<'_>) -> Arc<str> {
    let mut out = String::from("\"resource\":");
    json_out::write_resource(&mut out, r);
    if !r.schema_url.is_empty() {
        out.push_str(",\"schemaUrl\":");
        json_out::write_json_str(&mut out, r.schema_url.as_str());
    }
    out.into()
}

fn scope_fields(s: &ArchivedScope<'_>) -> Arc<str> {
    let mut out = String::from("\"scope\":");
    json_out::write_scope(&mut out, s);
    if !s.schema_url.is_empty() {
        out.push_str(",\"schemaUrl\":");
        json_out::write_json_str(&mut out, s.schema_url.as_str());
    }
    out.into()
}

/// Every stored span of trace `id` on this shard, as OTLP JSON grouped by resource and scope.
pub fn trace_json(index: &Index, store: &Store, id: &TraceId) -> Vec<JsonGroup> {
    let Some(entry) = index.trace(id) else {
        return Vec::new();
    };
    let mut groups = Vec::new();
    for &loc in entry.records.iter() {
        let Some(batch) = span_batch(store, loc) else {
            continue;
        };
        let items: Vec<String> = batch
            .spans
            .iter()
            .filter(|s| s.trace_id.get() == *id)
            .map(|s| {
                let mut out = String::new();
                json_out::write_span(&mut out, s);
                out
            })
            .collect();
        if !items.is_empty() {
            groups.push(JsonGroup {
                resource: resource_fields(&batch.resource),
                scope: scope_fields(&batch.scope),
                items,
            });
        }
    }
    groups
}

/// A name filter resolved against the shard's interned names.
enum NameFilter<'q> {
    Any,
    Id(NameId),
    /// Not interned because the table overflowed: compare the record's text for entries
    /// interned as [`NameId::OVERFLOW`].
    Overflowed(&'q str),
    /// No span or log here carries it.
    Nothing,
}

fn name_filter<'q>(index: &Index, wanted: Option<&'q str>) -> NameFilter<'q> {
    match wanted {
        None => NameFilter::Any,
        Some(w) => match index.names.lookup(w) {
            Some(id) => NameFilter::Id(id),
            None if index.names.overflowed() => NameFilter::Overflowed(w),
            None => NameFilter::Nothing,
        },
    }
}

impl NameFilter<'_> {
    /// `Some(verdict)` when the id decides; `None` when the record's text must be read.
    fn by_id(&self, id: NameId) -> Option<bool> {
        match self {
            NameFilter::Any => Some(true),
            NameFilter::Id(w) => Some(*w == id),
            NameFilter::Overflowed(_) if id == NameId::OVERFLOW => None,
            NameFilter::Overflowed(_) | NameFilter::Nothing => Some(false),
        }
    }

    fn text(&self) -> &str {
        match self {
            NameFilter::Overflowed(t) => t,
            _ => "",
        }
    }
}

fn in_range(t: u64, start: Option<u64>, end: Option<u64>) -> bool {
    start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e)
}

/// What the index alone says of an entry, for a search.
enum Verdict {
    /// It does not match.
    Skip,
    /// It matches.
    Match,
    /// Its record must tell; whether the service (and name) matched by id, `None` where
    /// only the record's text can say.
    Read {
        service_ok: Option<bool>,
        name_ok: Option<bool>,
    },
}

/// A trace search's filters, resolved against the shard's names.
struct SpanFilter<'q> {
    q: &'q TraceSearch,
    service: NameFilter<'q>,
    name: NameFilter<'q>,
}

impl SpanFilter<'_> {
    /// Whether some entries need their record read ([`Verdict::Read`]).
    fn reads_records(&self) -> bool {
        !self.q.attrs.is_empty()
            || matches!(self.service, NameFilter::Overflowed(_))
            || matches!(self.name, NameFilter::Overflowed(_))
    }

    /// The verdict on `e` from the index; traces in `found` matched already.
    fn verdict(&self, e: &crate::index::SpanEntry, found: &HashSet<u32>) -> Verdict {
        let q = self.q;
        if found.contains(&e.trace)
            || !in_range(e.start_unix_nanos, q.start_unix_nanos, q.end_unix_nanos)
            || q.min_duration_nanos.is_some_and(|d| e.duration_nanos < d)
            || q.max_duration_nanos.is_some_and(|d| e.duration_nanos > d)
        {
            return Verdict::Skip;
        }
        let service_ok = self.service.by_id(e.service);
        let name_ok = self.name.by_id(e.name);
        match (service_ok, name_ok) {
            (Some(false), _) | (_, Some(false)) => Verdict::Skip,
            (Some(true), Some(true)) if q.attrs.is_empty() => Verdict::Match,
            _ => Verdict::Read {
                service_ok,
                name_ok,
            },
        }
    }
}

async fn search_traces_local(shard: &Shard, q: &TraceSearch) -> Vec<TraceSummary> {
    let (filter, end) = {
        let index = shard.index.borrow();
        let filter = SpanFilter {
            q,
            service: name_filter(&index, q.service.as_deref()),
            name: name_filter(&index, q.name.as_deref()),
        };
        (filter, index.spans().len())
    };
    if matches!(filter.service, NameFilter::Nothing) || matches!(filter.name, NameFilter::Nothing) {
        return Vec::new();
    }
    let mut found: HashSet<u32> = HashSet::new();
    let mut read_ahead = ReadAhead::new(end);
    let mut pos = end;
    while pos > 0 {
        if filter.reads_records() {
            let found = &found;
            read_ahead
                .before_slice(shard, pos, |index, r| {
                    r.rev()
                        .map(|p| &index.spans()[p])
                        .filter(|e| matches!(filter.verdict(e, found), Verdict::Read { .. }))
                        .map(|e| index.span_record(e))
                        .collect()
                })
                .await;
        }
        {
            let index = shard.index.borrow();
            let store = shard.store.borrow();
            let mut last = LastRecord::new();
            let slice = Slice::start(pos);
            while pos > 0 && !slice.over(pos) {
                pos -= 1;
                let e = &index.spans()[pos];
                let (service_ok, name_ok) = match filter.verdict(e, &found) {
                    Verdict::Skip => continue,
                    Verdict::Match => {
                        found.insert(e.trace);
                        continue;
                    }
                    Verdict::Read {
                        service_ok,
                        name_ok,
                    } => (service_ok, name_ok),
                };
                let Some(batch) = last.get(index.span_record(e), |l| span_batch(&store, l)) else {
                    continue;
                };
                let Some(span) = batch.spans.get(e.index_in_record as usize) else {
                    continue;
                };
                let resource = &batch.resource.attributes;
                let ok = (service_ok.is_some()
                    || crate::domain::archived_service_name(resource) == filter.service.text())
                    && (name_ok.is_some() || span.name.as_str() == filter.name.text())
                    && q.attrs.iter().all(|(k, v)| {
                        attr_matches(&span.attributes, k, v) || attr_matches(resource, k, v)
                    });
                if ok {
                    found.insert(e.trace);
                }
            }
        }
        Slice::next(pos).await;
    }
    let index = shard.index.borrow();
    // Summaries (with their strings) only for the newest `limit`, not for every match.
    let mut slots: Vec<u32> = found.into_iter().collect();
    let start_of = |s: &u32| index.trace_by_slot(*s).start_unix_nanos;
    if slots.len() > q.limit {
        slots.select_nth_unstable_by_key(q.limit, |s| std::cmp::Reverse(start_of(s)));
        slots.truncate(q.limit);
    }
    let mut out: Vec<TraceSummary> = slots
        .into_iter()
        .map(|slot| index.summary(index.trace_by_slot(slot)))
        .collect();
    newest_first(&mut out, q.limit);
    out
}

fn newest_first(summaries: &mut Vec<TraceSummary>, limit: usize) {
    summaries.sort_unstable_by(|a, b| {
        b.start_unix_nanos
            .cmp(&a.start_unix_nanos)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
    summaries.truncate(limit);
}

/// Whether `attrs` holds `key` with a value whose text form is `value` (strings as they are,
/// numbers and booleans as printed).
fn attr_matches(attrs: &[ArchivedKeyValue<'_>], key: &str, value: &str) -> bool {
    attrs.iter().any(|kv| {
        kv.key.as_str() == key
            && match &kv.value {
                ArchivedAnyValue::String(s) => s.as_str() == value,
                ArchivedAnyValue::Bool(b) => value == if *b { "true" } else { "false" },
                ArchivedAnyValue::Int(i) => value.parse::<i64>() == Ok(i.to_native()),
                ArchivedAnyValue::Double(d) => value.parse::<f64>() == Ok(d.to_native()),
                _ => false,
            }
    })
}

/// What the index alone says of a log entry; `floor`: the time of the oldest of `limit`
/// matches kept, when that many are.
fn log_verdict(
    e: &crate::index::LogEntry,
    q: &LogSearch,
    service: &NameFilter<'_>,
    floor: Option<u64>,
) -> Verdict {
    if !in_range(e.time_unix_nanos, q.start_unix_nanos, q.end_unix_nanos)
        || q.min_severity.is_some_and(|m| (e.severity as i32) < m)
        || floor.is_some_and(|f| f >= e.time_unix_nanos)
    {
        return Verdict::Skip;
    }
    match service.by_id(e.service) {
        Some(false) => Verdict::Skip,
        Some(true) if q.contains.is_none() => Verdict::Match,
        service_ok => Verdict::Read {
            service_ok,
            name_ok: Some(true), // logs have no name
        },
    }
}

async fn search_logs_local(shard: &Shard, q: &LogSearch) -> Vec<LogHit> {
    let (service, by_trace, end) = {
        let index = shard.index.borrow();
        let service = name_filter(&index, q.service.as_deref());
        // A trace's log positions are few (its records'); without a trace, every position.
        let by_trace: Option<Vec<u32>> = q
            .trace_id
            .as_ref()
            .map(|t| index.logs_of_trace(t).collect());
        let end = by_trace.as_ref().map_or(index.logs().len(), Vec::len);
        (service, by_trace, end)
    };
    if matches!(service, NameFilter::Nothing) || q.limit == 0 {
        return Vec::new();
    }
    // Min-heap of the newest `limit` matches: (time, entry).
    let mut top: BinaryHeap<std::cmp::Reverse<(u64, u32)>> = BinaryHeap::with_capacity(q.limit + 1);
    // Entries no newer than every match kept so far are skipped without reading.
    let floor = |top: &BinaryHeap<std::cmp::Reverse<(u64, u32)>>| {
        (top.len() >= q.limit)
            .then(|| top.peek().map(|m| m.0 .0))
            .flatten()
    };
    let position = |p: usize| by_trace.as_ref().map_or(p as u32, |v| v[p]);
    let reads_records = q.contains.is_some() || matches!(service, NameFilter::Overflowed(_));
    let mut read_ahead = ReadAhead::new(end);
    let mut pos = end;
    while pos > 0 {
        if reads_records {
            let floor = floor(&top);
            read_ahead
                .before_slice(shard, pos, |index, r| {
                    let logs = index.logs();
                    r.rev()
                        .map(|p| &logs[position(p) as usize])
                        .filter(|e| {
                            matches!(log_verdict(e, q, &service, floor), Verdict::Read { .. })
                        })
                        .map(|e| e.loc)
                        .collect()
                })
                .await;
        }
        {
            let index = shard.index.borrow();
            let store = shard.store.borrow();
            let logs = index.logs();
            let mut last = LastRecord::new();
            let slice = Slice::start(pos);
            while pos > 0 && !slice.over(pos) {
                pos -= 1;
                let i = position(pos);
                let e = &logs[i as usize];
                match log_verdict(e, q, &service, floor(&top)) {
                    Verdict::Skip => continue,
                    Verdict::Match => {}
                    Verdict::Read { service_ok, .. } => {
                        let Some(batch) = last.get(e.loc, |l| log_batch(&store, l)) else {
                            continue;
                        };
                        let Some(log) = batch.logs.get(e.index_in_record as usize) else {
                            continue;
                        };
                        if service_ok.is_none()
                            && crate::domain::archived_service_name(&batch.resource.attributes)
                                != service.text()
                        {
                            continue;
                        }
                        if let Some(needle) = &q.contains {
                            if !value_contains(&log.body, needle) {
                                continue;
                            }
                        }
                    }
                }
                top.push(std::cmp::Reverse((e.time_unix_nanos, i)));
                if top.len() > q.limit {
                    top.pop();
                }
            }
        }
        Slice::next(pos).await;
    }
    // At most `limit` records to read and render: in one go.
    let index = shard.index.borrow();
    let store = shard.store.borrow();
    let logs = index.logs();
    let mut hits: Vec<(u64, u32)> = top.into_iter().map(|r| r.0).collect();
    hits.sort_unstable_by(|a, b| b.cmp(a));
    // Each record is read, checked and its resource and scope rendered once, however many
    // hits it holds.
    let mut rendered: std::collections::HashMap<RecordLoc, (Arc<str>, Arc<str>)> =
        Default::default();
    let mut last = LastRecord::new();
    let mut out = Vec::with_capacity(hits.len());
    for (time, i) in hits {
        let e = &logs[i as usize];
        let Some(batch) = last.get(e.loc, |l| log_batch(&store, l)) else {
            continue;
        };
        let Some(log) = batch.logs.get(e.index_in_record as usize) else {
            continue;
        };
        let mut item = String::new();
        json_out::write_log(&mut item, log);
        let (resource, scope) = rendered
            .entry(e.loc)
            .or_insert_with(|| (resource_fields(&batch.resource), scope_fields(&batch.scope)))
            .clone();
        out.push(LogHit {
            time_unix_nanos: time,
            group: JsonGroup {
                resource,
                scope,
                items: vec![item],
            },
        });
    }
    out
}

/// Whether a log body contains `needle`: string bodies directly, structured bodies in any
/// of their string values.
fn value_contains(v: &ArchivedAnyValue<'_>, needle: &str) -> bool {
    match v {
        ArchivedAnyValue::String(s) => s.as_str().contains(needle),
        ArchivedAnyValue::Array(items) => items.iter().any(|i| value_contains(i, needle)),
        ArchivedAnyValue::KvList(kvs) => kvs.iter().any(|kv| value_contains(&kv.value, needle)),
        _ => false,
    }
}

/// Why a coordinated query failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error("busy: {0}")]
    Busy(String),
}

/// Runs `q` on every shard concerned and merges the answers.
/// Every shard's counters, gauges and histograms, merged: `coordinate` for
/// [`QueryRequest::Metrics`], with the answer's type.
pub async fn metrics(shard: &Rc<Shard>) -> Result<crate::metrics::Snapshot, QueryError> {
    match coordinate(shard, QueryRequest::Metrics).await? {
        QueryResponse::Metrics(snapshot) => Ok(*snapshot),
        QueryResponse::Failed(why) => Err(QueryError::Busy(why)),
        _ => unreachable!("a metrics query answers with metrics"),
    }
}

pub async fn coordinate(shard: &Rc<Shard>, q: QueryRequest) -> Result<QueryResponse, QueryError> {
    let targets: Vec<ShardId> = match &q {
        QueryRequest::Trace(id) => {
            let owner = owner_of(id, shard.count);
            (0..shard.count)
                .map(ShardId)
                .filter(|s| *s == owner || shard.foreign[s.index()])
                .collect()
        }
        _ => (0..shard.count).map(ShardId).collect(),
    };
    // Ask everybody first (admission: credits for all, or nobody is asked), then answer locally.
    for t in &targets {
        if *t != shard.id && !shard.mesh.has_credit(*t) {
            return Err(QueryError::Busy(format!(
                "{t} has too many requests in flight"
            )));
        }
    }
    let mut pending = Vec::new();
    for t in &targets {
        if *t != shard.id {
            let answer = shard
                .mesh
                .query(*t, q.clone())
                .map_err(|e| QueryError::Busy(e.to_string()))?;
            pending.push((*t, answer));
        }
    }
    let mut answers = Vec::with_capacity(targets.len());
    if targets.contains(&shard.id) {
        answers.push(run_local(shard, &q).await);
    }
    for (t, answer) in pending {
        match answer.await {
            Some(a) => answers.push(a),
            None => return Err(QueryError::Busy(format!("{t} did not answer"))),
        }
    }
    // One shard's failure fails the query: a merge without its answer would be silently short.
    if let Some(QueryResponse::Failed(why)) = answers
        .iter()
        .find(|a| matches!(a, QueryResponse::Failed(_)))
    {
        return Err(QueryError::Busy(why.clone()));
    }
    Ok(merge(&q, answers))
}

fn merge(q: &QueryRequest, answers: Vec<QueryResponse>) -> QueryResponse {
    match q {
        QueryRequest::Trace(_) => {
            let mut groups = Vec::new();
            for a in answers {
                if let QueryResponse::Trace(g) = a {
                    groups.extend(g);
                }
            }
            QueryResponse::Trace(groups)
        }
        QueryRequest::SearchTraces(s) => {
            let mut by_id: std::collections::HashMap<String, TraceSummary> = Default::default();
            for a in answers {
                if let QueryResponse::Traces(list) = a {
                    for t in list {
                        match by_id.get_mut(&t.trace_id) {
                            Some(existing) => existing.merge(&t),
                            None => {
                                by_id.insert(t.trace_id.clone(), t);
                            }
                        }
                    }
                }
            }
            let mut out: Vec<TraceSummary> = by_id.into_values().collect();
            newest_first(&mut out, s.limit);
            QueryResponse::Traces(out)
        }
        QueryRequest::SearchLogs(s) => {
            let mut hits = Vec::new();
            for a in answers {
                if let QueryResponse::Logs(h) = a {
                    hits.extend(h);
                }
            }
            hits.sort_by_key(|h| std::cmp::Reverse(h.time_unix_nanos));
            hits.truncate(s.limit);
            QueryResponse::Logs(hits)
        }
        QueryRequest::Metrics => {
            let mut merged: Option<crate::metrics::Snapshot> = None;
            for a in answers {
                if let QueryResponse::Metrics(s) = a {
                    match &mut merged {
                        Some(m) => m.merge(&s),
                        None => merged = Some(*s),
                    }
                }
            }
            match merged {
                Some(m) => QueryResponse::Metrics(Box::new(m)),
                None => QueryResponse::Failed("no shard answered".into()),
            }
        }
        QueryRequest::Services => {
            let mut all: Vec<String> = Vec::new();
            for a in answers {
                if let QueryResponse::Services(s) = a {
                    all.extend(s);
                }
            }
            all.sort();
            all.dedup();
            QueryResponse::Services(all)
        }
    }
}

/// Renders groups as an OTLP JSON document: `{"<resources>":[{resource,"<scopes>":[{scope,
/// "<items>":[...]}]}]}`, merging groups that share a resource and scope, in first-seen order.
pub fn render(groups: &[JsonGroup], resources: &str, scopes: &str, items: &str) -> String {
    // resource → scopes of it → items of each, in first-seen order.
    type Scopes<'g> = Vec<(&'g str, Vec<&'g str>)>;
    let mut order: Vec<(&str, Scopes)> = Vec::new();
    for g in groups {
        let r = match order.iter().position(|(r, _)| *r == &*g.resource) {
            Some(i) => i,
            None => {
                order.push((&g.resource, Vec::new()));
                order.len() - 1
            }
        };
        let scopes_of = &mut order[r].1;
        let s = match scopes_of.iter().position(|(s, _)| *s == &*g.scope) {
            Some(i) => i,
            None => {
                scopes_of.push((&g.scope, Vec::new()));
                scopes_of.len() - 1
            }
        };
        scopes_of[s].1.extend(g.items.iter().map(String::as_str));
    }
    let mut out = format!("{{\"{resources}\":[");
    for (ri, (resource, scope_list)) in order.iter().enumerate() {
        if ri > 0 {
            out.push(',');
        }
        out.push('{');
        out.push_str(resource);
        out.push_str(&format!(",\"{scopes}\":["));
        for (si, (scope, list)) in scope_list.iter().enumerate() {
            if si > 0 {
                out.push(',');
            }
            out.push('{');
            out.push_str(scope);
            out.push_str(&format!(",\"{items}\":["));
            out.push_str(&list.join(","));
            out.push_str("]}");
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}
