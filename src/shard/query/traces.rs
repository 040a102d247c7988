//! Trace search on one shard: the span index scanned newest first, a record read only where
//! the index cannot decide (attributes, names past the interning table).

use std::collections::HashSet;

use super::records::span_batch;
use super::scan::{in_range, name_filter, LastRecord, NameFilter, ReadAhead, Slice, Verdict};
use crate::domain::{ArchivedAnyValue, ArchivedKeyValue};
use crate::index::TraceSummary;
use crate::query::TraceSearch;
use crate::shard::Shard;

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

pub(super) async fn search_traces_local(shard: &Shard, q: &TraceSearch) -> Vec<TraceSummary> {
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
    summaries(shard, found, q.limit)
}

/// The summaries of the newest `limit` traces found (their strings are made for those only,
/// not for every match), newest first.
fn summaries(shard: &Shard, found: HashSet<u32>, limit: usize) -> Vec<TraceSummary> {
    let index = shard.index.borrow();
    let mut slots: Vec<u32> = found.into_iter().collect();
    let start_of = |s: &u32| index.trace_by_slot(*s).start_unix_nanos;
    if slots.len() > limit {
        slots.select_nth_unstable_by_key(limit, |s| std::cmp::Reverse(start_of(s)));
        slots.truncate(limit);
    }
    let mut out: Vec<TraceSummary> = slots
        .into_iter()
        .map(|slot| index.summary(index.trace_by_slot(slot)))
        .collect();
    newest_first(&mut out, limit);
    out
}

pub(super) fn newest_first(summaries: &mut Vec<TraceSummary>, limit: usize) {
    summaries.sort_unstable_by(|a, b| {
        b.start_unix_nanos
            .cmp(&a.start_unix_nanos)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
    summaries.truncate(limit);
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
