//! Log search on one shard: the log index (or one trace's log positions) scanned newest first,
//! part by part, keeping the newest `limit` matches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::records::{log_batch, resource_fields, scope_fields};
use super::scan::{
    in_range, name_filter, LastRecord, NameFilter, ReadAhead, SearchView, Slice, Verdict,
};
use crate::domain::{ArchivedAnyValue, ArchivedLogBatch};
use crate::index::{LogEntry, RecordLoc};
use crate::otlp::json_out;
use crate::query::{JsonGroup, LogHit, LogSearch};
use crate::shard::Shard;

/// What the index alone says of a log entry; `floor`: the time of the oldest of `limit`
/// matches kept, when that many are.
pub(super) fn log_verdict(
    e: &LogEntry,
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

/// The newest `q.limit` log records of this shard matching `q`, and whether the search
/// stopped at its budget (deadline or cancellation) before it was complete.
pub(super) async fn search_logs_local(shard: &Shard, q: &LogSearch) -> (Vec<LogHit>, bool) {
    if q.limit == 0 {
        return (Vec::new(), false);
    }
    let mut view = SearchView::now(shard);
    let mut top = Newest::new(q.limit);
    for &(segment, ..) in &view.parts {
        if !search_part(shard, q, segment, &mut top).await {
            let partial = super::count_stopped(shard, &q.budget);
            return (render_hits(shard, top.newest_first()), partial);
        }
    }
    // A part sealed while the search ran: its hits are dropped and its sealed form searched
    // whole instead (the same records: the floor they raised stays right).
    let gone = view.catch_up(shard);
    top.heap.retain(|h| !gone.contains(&h.0 .1));
    let floor = top.floor();
    let mut hits = render_hits(shard, top.newest_first());
    let (sealed, complete) = super::sealed::search_logs(shard, q, view.sealed, floor).await;
    hits.extend(sealed);
    hits.sort_by_key(|h| std::cmp::Reverse(h.time_unix_nanos));
    hits.truncate(q.limit);
    let partial = !complete && super::count_stopped(shard, &q.budget);
    (hits, partial)
}

/// Scans the log entries of `segment`'s index part (or of one trace in it), newest first, in
/// slices, keeping the newest matches in `top`; `false` if the search's budget ran out first.
async fn search_part(shard: &Shard, q: &LogSearch, segment: u32, top: &mut Newest) -> bool {
    let (service, by_trace, end) = {
        let indexes = shard.index.borrow();
        let Some(index) = indexes.part(segment) else {
            return true;
        };
        let service = name_filter(index, q.service.as_deref());
        // A trace's log positions are few (its records'); without a trace, every position.
        let by_trace: Option<Vec<u32>> = q
            .trace_id
            .as_ref()
            .map(|t| index.logs_of_trace(t).collect());
        let end = by_trace.as_ref().map_or(index.logs().len(), Vec::len);
        (service, by_trace, end)
    };
    if matches!(service, NameFilter::Nothing) {
        return true;
    }
    let position = |p: usize| by_trace.as_ref().map_or(p as u32, |v| v[p]);
    let reads_records = q.contains.is_some() || matches!(service, NameFilter::Overflowed(_));
    let mut read_ahead = ReadAhead::new(segment, end);
    let mut pos = end;
    while pos > 0 {
        if reads_records {
            let floor = top.floor();
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
            let indexes = shard.index.borrow();
            let Some(index) = indexes.part(segment) else {
                return true;
            };
            let store = shard.store.borrow();
            let logs = index.logs();
            let mut last = LastRecord::new();
            let slice = Slice::start(pos);
            while pos > 0 && !slice.over(pos) {
                pos -= 1;
                let i = position(pos);
                let e = &logs[i as usize];
                let matched = match log_verdict(e, q, &service, top.floor()) {
                    Verdict::Skip => false,
                    Verdict::Match => true,
                    Verdict::Read { service_ok, .. } => last
                        .get(e.loc, |l| log_batch(&store, l))
                        .is_some_and(|batch| record_matches(batch, e, q, &service, service_ok)),
                };
                if matched {
                    top.push(e.time_unix_nanos, segment, i);
                }
            }
        }
        Slice::next(pos).await;
        if pos > 0 && q.budget.over() {
            return false;
        }
    }
    true
}

/// Whether the log record of entry `e` in `batch` matches what the index could not decide:
/// the service where it is `None`, and the text.
fn record_matches(
    batch: &ArchivedLogBatch<'_>,
    e: &LogEntry,
    q: &LogSearch,
    service: &NameFilter<'_>,
    service_ok: Option<bool>,
) -> bool {
    let Some(log) = batch.logs.get(e.index_in_record as usize) else {
        return false;
    };
    (service_ok.is_some()
        || crate::domain::archived_service_name(&batch.resource.attributes) == service.text())
        && q.contains
            .as_ref()
            .is_none_or(|needle| value_contains(&log.body, needle))
}

/// A match: its time, the segment of its index part, its position in that part.
type Hit = (u64, u32, u32);

/// The newest `limit` matches of a search: a min-heap of hits.
struct Newest {
    limit: usize,
    heap: BinaryHeap<Reverse<Hit>>,
}

impl Newest {
    fn new(limit: usize) -> Self {
        Newest {
            limit,
            heap: BinaryHeap::with_capacity(limit + 1),
        }
    }

    /// Once `limit` matches are kept, the time of the oldest: entries no newer are skipped
    /// without reading their record.
    fn floor(&self) -> Option<u64> {
        (self.heap.len() >= self.limit)
            .then(|| self.heap.peek().map(|m| m.0 .0))
            .flatten()
    }

    fn push(&mut self, time_unix_nanos: u64, segment: u32, entry: u32) {
        self.heap.push(Reverse((time_unix_nanos, segment, entry)));
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    fn newest_first(self) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self.heap.into_iter().map(|r| r.0).collect();
        hits.sort_unstable_by(|a, b| b.cmp(a));
        hits
    }
}

/// Reads and renders the hits (at most `limit` records: in one go, not in slices).
fn render_hits(shard: &Shard, hits: Vec<Hit>) -> Vec<LogHit> {
    let indexes = shard.index.borrow();
    let store = shard.store.borrow();
    // Each record is read, checked and its resource and scope rendered once, however many
    // hits it holds.
    let mut rendered: std::collections::HashMap<RecordLoc, (Arc<str>, Arc<str>)> =
        Default::default();
    let mut last = LastRecord::new();
    let mut out = Vec::with_capacity(hits.len());
    for (time, segment, i) in hits {
        let Some(e) = indexes.part(segment).map(|index| &index.logs()[i as usize]) else {
            continue;
        };
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

/// Whether a log body contains the phrase `needle` at word boundaries
/// ([`crate::domain::words`]): string bodies directly, structured bodies in any of their
/// string values.
pub(super) fn value_contains(v: &ArchivedAnyValue<'_>, needle: &str) -> bool {
    match v {
        ArchivedAnyValue::String(s) => crate::domain::words::has_phrase(s.as_str(), needle),
        ArchivedAnyValue::Array(items) => items.iter().any(|i| value_contains(i, needle)),
        ArchivedAnyValue::KvList(kvs) => kvs.iter().any(|kv| value_contains(&kv.value, needle)),
        _ => false,
    }
}
