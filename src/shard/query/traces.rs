//! Trace search on one shard: the span index scanned newest first, part by part, a record
//! read only where the index cannot decide (attributes, names past the interning table).

use std::collections::{HashMap, HashSet};

use super::records::span_batch;
use super::scan::{
    in_range, name_filter, LastRecord, NameFilter, ReadAhead, SearchView, Slice, Verdict,
};
use crate::domain::{
    ArchivedAnyValue, ArchivedKeyValue, ArchivedResource, ArchivedSpan, ArchivedSpanBatch, TraceId,
};
use crate::index::{Indexes, MatchedSpan, RecordLoc, SpanEntry, SpanSet, TraceSummary};
use crate::query::traceql::SpanRef;
use crate::query::TraceSearch;
use crate::shard::Shard;
use crate::storage::Store;

/// A trace search's filters, resolved against the shard's names.
pub(super) struct SpanFilter<'q> {
    q: &'q TraceSearch,
    service: NameFilter<'q>,
    name: NameFilter<'q>,
}

impl SpanFilter<'_> {
    /// Whether some entries need their record read ([`Verdict::Read`]).
    fn reads_records(&self) -> bool {
        !self.q.attrs.is_empty()
            || self.q.span_query.is_some()
            || matches!(self.service, NameFilter::Overflowed(_))
            || matches!(self.name, NameFilter::Overflowed(_))
    }

    /// The verdict on `e` from the index; traces in `found` matched already.
    fn verdict(&self, e: &SpanEntry, found: &HashSet<u32>) -> Verdict {
        let q = self.q;
        if found.contains(&e.trace)
            || !in_range(e.start_unix_nanos, q.start_unix_nanos, q.end_unix_nanos)
            || q.min_duration_nanos.is_some_and(|d| e.duration_nanos < d)
            || q.max_duration_nanos.is_some_and(|d| e.duration_nanos > d)
            || q.error.is_some_and(|want| e.error != want)
        {
            return Verdict::Skip;
        }
        let service_ok = self.service.by_id(e.service);
        let name_ok = self.name.by_id(e.name);
        match (service_ok, name_ok) {
            (Some(false), _) | (_, Some(false)) => Verdict::Skip,
            (Some(true), Some(true)) if q.attrs.is_empty() && q.span_query.is_none() => {
                Verdict::Match
            }
            _ => Verdict::Read {
                service_ok,
                name_ok,
            },
        }
    }

    /// Whether the span of entry `e` in `batch` matches what the index could not decide:
    /// the service and name where they are `None`, the attributes and the span query.
    fn record_matches(
        &self,
        batch: &ArchivedSpanBatch<'_>,
        e: &SpanEntry,
        service_ok: Option<bool>,
        name_ok: Option<bool>,
    ) -> bool {
        let Some(span) = batch.spans.get(e.index_in_record as usize) else {
            return false;
        };
        let resource = &batch.resource.attributes;
        (service_ok.is_some()
            || crate::domain::archived_service_name(resource) == self.service.text())
            && (name_ok.is_some() || span.name.as_str() == self.name.text())
            && self
                .q
                .attrs
                .iter()
                .all(|(k, v)| attr_matches(&span.attributes, k, v) || attr_matches(resource, k, v))
            && self.q.span_query.as_ref().is_none_or(|sq| {
                sq.matches(SpanRef {
                    span,
                    resource: &batch.resource,
                })
            })
    }
}

/// The newest `q.limit` traces of this shard matching `q`, and whether the search stopped
/// at its budget (deadline or cancellation) before it was complete: then the answer holds
/// the newest of what was found.
pub(super) async fn search_traces_local(
    shard: &Shard,
    q: &TraceSearch,
) -> (Vec<TraceSummary>, bool) {
    let mut view = SearchView::now(shard);
    // Each trace found, with its start in the part it matched in.
    let mut found: HashMap<TraceId, u64> = HashMap::new();
    // The traces found whose whole trace failed the search's trace query: never again.
    let mut rejected: HashSet<TraceId> = HashSet::new();
    for &(segment, end, _) in &view.parts {
        let complete = search_part(shard, q, segment, end, &mut found).await;
        forget(&mut found, &rejected);
        if !complete {
            return (
                summaries(shard, q, &found, &mut rejected).await,
                stopped(shard, q),
            );
        }
    }
    // Parts sealed while the search ran are searched again in their sealed form (a trace
    // found twice is one trace).
    view.catch_up(shard);
    // Sealed blocks newest first, over all segments: a trace first found in a block starts
    // no later than the block's newest trace (its newest span, in an id-ordered segment) nor
    // than its matching span, so than the search's `end`; once `limit` traces are held that
    // all start after that bound for the next block, no block left can add one to the answer.
    let sealed = view.sealed;
    let mut blocks: Vec<(u64, usize, usize)> = super::sealed::trace_candidates(shard, q, &sealed)
        .await
        .into_iter()
        .enumerate()
        .flat_map(|(s, blocks)| blocks.into_iter().map(move |(bound, b)| (bound, s, b)))
        .collect();
    blocks.sort_unstable_by_key(|&(bound, s, b)| (std::cmp::Reverse(bound), s, b));
    for (unread_newest, s, b) in blocks {
        if let Some(done) = finished(shard, q, &mut found, &mut rejected, unread_newest).await {
            return (done, false);
        }
        super::scan::before_block().await;
        if q.budget.over() {
            return (
                summaries(shard, q, &found, &mut rejected).await,
                stopped(shard, q),
            );
        }
        super::sealed::search_block(shard, q, &sealed[s], b, &mut found).await;
        forget(&mut found, &rejected);
    }
    (summaries(shard, q, &found, &mut rejected).await, false)
}

/// Drops from `found` the traces known to fail the search's trace query.
fn forget(found: &mut HashMap<TraceId, u64>, rejected: &HashSet<TraceId>) {
    if !rejected.is_empty() {
        found.retain(|id, _| !rejected.contains(id));
    }
}

/// Counts a search stopped by its budget, as timed out or cancelled; always `true`: the
/// answer is partial.
fn stopped(shard: &Shard, q: &TraceSearch) -> bool {
    super::count_stopped(shard, &q.budget)
}

/// The answer, if the traces in `found` are enough: `limit` of them whose summaries (their
/// starts over the whole shard) are all later than `unread_newest`, the newest span start
/// what is left to read can hold. A found trace's start in the part it matched in is an upper
/// bound of its start: the `limit`-th largest bound tells at no cost when the summaries cannot
/// be enough yet.
async fn finished(
    shard: &Shard,
    q: &TraceSearch,
    found: &mut HashMap<TraceId, u64>,
    rejected: &mut HashSet<TraceId>,
    unread_newest: u64,
) -> Option<Vec<TraceSummary>> {
    let limit = q.limit;
    forget(found, rejected);
    if limit == 0 || found.len() < limit {
        return None;
    }
    let mut bounds: Vec<u64> = found.values().copied().collect();
    let (_, kth, _) = bounds.select_nth_unstable_by(limit - 1, |a, b| b.cmp(a));
    if *kth <= unread_newest {
        return None;
    }
    let out = summaries(shard, q, found, rejected).await;
    let enough = out.len() == limit && out[limit - 1].start_unix_nanos > unread_newest;
    debug_assert!(out
        .windows(2)
        .all(|w| w[0].start_unix_nanos >= w[1].start_unix_nanos));
    enough.then_some(out)
}

/// Scans the span entries below `end` of `segment`'s index part, newest first, in slices,
/// adding the traces that match to `found`; `false` if the search's budget ran out first.
async fn search_part(
    shard: &Shard,
    q: &TraceSearch,
    segment: u32,
    end: usize,
    found: &mut HashMap<TraceId, u64>,
) -> bool {
    let filter = {
        let indexes = shard.index.borrow();
        let Some(index) = indexes.part(segment) else {
            return true;
        };
        SpanFilter {
            q,
            service: name_filter(index, q.service.as_deref()),
            name: name_filter(index, q.name.as_deref()),
        }
    };
    if matches!(filter.service, NameFilter::Nothing) || matches!(filter.name, NameFilter::Nothing) {
        return true;
    }
    // Trace slots of this part found so far: their other spans are skipped.
    let mut slots: HashSet<u32> = HashSet::new();
    let mut read_ahead = ReadAhead::new(segment, end);
    let mut pos = end;
    while pos > 0 {
        if filter.reads_records() {
            let slots = &slots;
            read_ahead
                .before_slice(shard, pos, |index, r| {
                    r.rev()
                        .map(|p| &index.spans()[p])
                        .filter(|e| matches!(filter.verdict(e, slots), Verdict::Read { .. }))
                        .map(|e| index.span_record(e))
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
            let mut last = LastRecord::new();
            let slice = Slice::start(pos);
            while pos > 0 && !slice.over(pos) {
                pos -= 1;
                let e = &index.spans()[pos];
                let matched = match filter.verdict(e, &slots) {
                    Verdict::Skip => false,
                    Verdict::Match => true,
                    Verdict::Read {
                        service_ok,
                        name_ok,
                    } => last
                        .get(index.span_record(e), |l| span_batch(&store, l))
                        .is_some_and(|batch| filter.record_matches(batch, e, service_ok, name_ok)),
                };
                if matched {
                    slots.insert(e.trace);
                    let t = index.trace_by_slot(e.trace);
                    let start = found.entry(t.id).or_insert(t.start_unix_nanos);
                    *start = (*start).min(t.start_unix_nanos);
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

/// The summaries of the newest `limit` traces found (their strings are made for those only,
/// not for every match), each over every part holding the trace, newest first. A trace whose
/// summary fails the search's trace query is left out and added to `rejected`.
///
/// A trace's start in the parts it matched in is only a bound: a part it did not match in
/// may start it earlier. So candidates are summarised newest bound first, `limit` at a
/// time, until `limit` summaries are held that no candidate left can start after.
async fn summaries(
    shard: &Shard,
    q: &TraceSearch,
    found: &HashMap<TraceId, u64>,
    rejected: &mut HashSet<TraceId>,
) -> Vec<TraceSummary> {
    let limit = q.limit;
    if limit == 0 {
        return Vec::new();
    }
    let mut ids: Vec<(TraceId, u64)> = found
        .iter()
        .filter(|(id, _)| !rejected.contains(id))
        .map(|(id, b)| (*id, *b))
        .collect();
    ids.sort_unstable_by_key(|(id, bound)| (std::cmp::Reverse(*bound), *id));
    let mut out: Vec<TraceSummary> = Vec::with_capacity(limit);
    let mut taken = 0;
    while taken < ids.len() {
        let batch = &ids[taken..ids.len().min(taken + limit)];
        taken += batch.len();
        // The head summaries and the sealed set at one moment: a segment is in one or the other.
        let (heads, sealed): (Vec<(TraceId, Option<TraceSummary>)>, Vec<_>) = {
            let (indexes, store) = (shard.index.borrow(), shard.store.borrow());
            let mut heads: Vec<(TraceId, Option<TraceSummary>)> = batch
                .iter()
                .map(|(id, _)| (*id, indexes.summary(id)))
                .collect();
            head_details(&indexes, &store, q, &mut heads);
            (heads, shard.sealed.borrow().iter().cloned().collect())
        };
        let mut more = super::sealed::merge_summaries(shard, q, &sealed, heads).await;
        if let Some(tq) = &q.trace_query {
            more.retain(|t| {
                let keep = tq.matches(t);
                if !keep {
                    rejected.extend(TraceId::from_hex(&t.trace_id));
                }
                keep
            });
        }
        out.extend(more);
        newest_first(&mut out, limit);
        let (Some(last), Some((next_id, bound))) = (out.get(limit - 1), ids.get(taken)) else {
            continue;
        };
        if last.start_unix_nanos > *bound
            || (last.start_unix_nanos == *bound && last.trace_id < next_id.to_hex())
        {
            break;
        }
    }
    out
}

/// Adds to the head summaries what the index does not hold: per service its spans and
/// errors, and the spans matching `q`, from the traces' records (read as a lookup reads them,
/// for the traces of an answer only; each record once, for all the traces it holds).
fn head_details(
    indexes: &Indexes,
    store: &Store,
    q: &TraceSearch,
    heads: &mut [(TraceId, Option<TraceSummary>)],
) {
    let mut at: HashMap<TraceId, usize> = HashMap::new();
    let mut records: Vec<RecordLoc> = Vec::new();
    for (i, (id, head)) in heads.iter_mut().enumerate() {
        if let Some(summary) = head {
            summary.matched = SpanSet::new(q.spss);
            at.insert(*id, i);
            records.extend(indexes.trace_records(id));
        }
    }
    records.sort_unstable_by_key(|l| (l.segment, l.offset));
    records.dedup();
    for loc in records {
        let Some(batch) = span_batch(store, loc) else {
            continue;
        };
        let resource = &batch.resource.attributes;
        let service = crate::domain::archived_service_name(resource);
        for s in batch.spans.iter() {
            let Some(summary) = at.get(&s.trace_id.get()).and_then(|&i| heads[i].1.as_mut()) else {
                continue;
            };
            let error = s.status.code.to_native() == crate::domain::STATUS_CODE_ERROR;
            let stats = summary.services.entry(service.to_owned()).or_default();
            stats.span_count += 1;
            stats.error_count += u32::from(error);
            let start = s.start_time_unix_nano.to_native();
            let duration = s.end_time_unix_nano.to_native().saturating_sub(start);
            let matches = q.span_matches(service, s.name.as_str(), start, duration, error, || {
                span_query_matches(q, s, &batch.resource)
            });
            if matches {
                summary.matched.offer(MatchedSpan {
                    span_id: s.span_id.get(),
                    name: s.name.as_str().to_owned(),
                    start_unix_nanos: start,
                    duration_nanos: duration,
                    attributes: q.attrs.clone(),
                });
            }
        }
    }
}

pub(super) fn newest_first(summaries: &mut Vec<TraceSummary>, limit: usize) {
    summaries.sort_unstable_by(|a, b| {
        b.start_unix_nanos
            .cmp(&a.start_unix_nanos)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
    summaries.truncate(limit);
}

/// Whether span `s` of `resource` carries `q`'s `attr` pairs and matches its span query: the
/// filters a span's record is read for.
pub(super) fn span_query_matches(
    q: &TraceSearch,
    s: &ArchivedSpan<'_>,
    resource: &ArchivedResource<'_>,
) -> bool {
    q.attrs
        .iter()
        .all(|(k, v)| attr_matches(&s.attributes, k, v) || attr_matches(&resource.attributes, k, v))
        && q.span_query
            .as_ref()
            .is_none_or(|sq| sq.matches(SpanRef { span: s, resource }))
}

/// Whether `attrs` holds `key` with a value whose text form is `value` (strings as they are,
/// numbers and booleans as printed).
pub(super) fn attr_matches(attrs: &[ArchivedKeyValue<'_>], key: &str, value: &str) -> bool {
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
