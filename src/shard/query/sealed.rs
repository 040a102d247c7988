//! Queries over a shard's sealed segments: blocks are chosen from the sidecars (trace filter
//! and trace-id ranges for a lookup; time, duration, service and name for a search) and only
//! those are read, decoded on the blocking pool so that the shard's thread keeps serving
//! ingest meanwhile. A damaged block is counted, logged and skipped: never served wrong.

use std::collections::HashMap;
use std::sync::Arc;

use super::logs::value_contains;
use super::records::{resource_fields, scope_fields, trace_group, trace_proto_group};
use super::scan::in_range;
use super::traces::span_query_matches;
use crate::domain::{archived_service_name, TraceId, STATUS_CODE_ERROR};
use crate::index::{MatchedSpan, RootRank, TraceSummary};
use crate::metrics::add;
use crate::otlp::json_out;
use crate::otlp::proto_out::ProtoGroup;
use crate::query::{JsonGroup, LogHit, LogSearch, TraceSearch};
use crate::seal::block::SpanFacts;
use crate::seal::{needles, BlockKind, BlockMeta, DecodedBlock, SealError, SealedSegment};
use crate::shard::Shard;

/// Block `i` of `segment`, decoded on the blocking pool; `None` (counted and logged) if it is
/// damaged.
async fn decode(shard: &Shard, segment: &Arc<SealedSegment>, i: usize) -> Option<DecodedBlock> {
    decode_traces(shard, segment, i, None).await
}

/// The spans of the traces `wanted` (every record if `None`) in block `i` of `segment`,
/// decoded on the blocking pool; `None` (counted and logged) if the block is damaged.
async fn decode_traces(
    shard: &Shard,
    segment: &Arc<SealedSegment>,
    i: usize,
    wanted: Option<Vec<TraceId>>,
) -> Option<DecodedBlock> {
    let seg = segment.clone();
    add(&shard.metrics.sealed_blocks_read, 1);
    match glommio::executor()
        .spawn_blocking(move || match wanted {
            None => seg.decode(i),
            Some(ids) => seg.decode_traces(i, &ids),
        })
        .await
    {
        Ok(block) => Some(block),
        Err(e) => {
            add(&shard.metrics.sealed_blocks_damaged, 1);
            tracing::error!(shard = %shard.id, "{e}; the block is skipped");
            None
        }
    }
}

/// The spans of trace `id` in the sealed segments, as OTLP JSON groups.
pub(super) async fn trace_groups(shard: &Shard, id: &TraceId) -> Vec<JsonGroup> {
    let holding = shard.sealed.borrow().holding_trace(id);
    let mut groups = Vec::new();
    for (segment, blocks) in holding {
        for i in blocks {
            let Some(block) = decode_traces(shard, &segment, i, Some(vec![*id])).await else {
                continue;
            };
            groups.extend(block.span_batches().filter_map(|b| trace_group(b, id)));
        }
    }
    groups
}

/// The spans of trace `id` in the sealed segments, as OTLP protobuf groups.
pub(super) async fn trace_proto_groups(shard: &Shard, id: &TraceId) -> Vec<ProtoGroup> {
    let holding = shard.sealed.borrow().holding_trace(id);
    let mut groups = Vec::new();
    for (segment, blocks) in holding {
        for i in blocks {
            let Some(block) = decode_traces(shard, &segment, i, Some(vec![*id])).await else {
                continue;
            };
            groups.extend(
                block
                    .span_batches()
                    .filter_map(|b| trace_proto_group(b, id)),
            );
        }
    }
    groups
}

/// Adds to `out` the summaries block `i` of `segment` gives of the traces `ids` (sorted): root
/// is the span without a parent, else the earliest; per service its spans and errors; the
/// spans matching `q`. Scanned on the blocking pool, reading only the columns a summary needs;
/// a damaged block is counted, logged and skipped.
async fn summarize_block(
    shard: &Shard,
    q: &TraceSearch,
    segment: &Arc<SealedSegment>,
    i: usize,
    ids: Vec<TraceId>,
    out: &mut HashMap<TraceId, TraceSummary>,
) {
    let (seg, q) = (segment.clone(), q.clone());
    add(&shard.metrics.sealed_blocks_read, 1);
    let scanned = glommio::executor()
        .spawn_blocking(move || {
            if q.span_query.is_some() {
                return seg
                    .decode_traces(i, &ids)
                    .map(|block| summarize_records(&q, &block));
            }
            // Per trace, its summary of this block.
            let mut here: HashMap<TraceId, TraceSummary> = HashMap::new();
            seg.scan(i, Some(&ids), &q.attrs, |s| {
                let t = here
                    .entry(s.trace_id)
                    .or_insert_with(|| TraceSummary::empty(&s.trace_id, q.spss));
                let error = s.status_code == STATUS_CODE_ERROR;
                t.span_count += 1;
                t.error_count += u32::from(error);
                let stats = match t.services.get_mut(s.service) {
                    Some(stats) => stats,
                    None => t.services.entry(s.service.to_owned()).or_default(),
                };
                stats.span_count += 1;
                stats.error_count += u32::from(error);
                if facts_match(&q, s) {
                    t.matched.offer(MatchedSpan {
                        span_id: s.span_id,
                        name: s.name.to_owned(),
                        start_unix_nanos: s.start,
                        duration_nanos: s.end.saturating_sub(s.start),
                        attributes: q.attrs.clone(),
                    });
                }
                t.start_unix_nanos = t.start_unix_nanos.min(s.start);
                t.end_unix_nanos = t.end_unix_nanos.max(s.end);
                if t.offer_root(RootRank::of(s.has_parent, s.start), s.service, s.name) {
                    t.root_service_name = s.service.to_owned();
                    t.root_span_name = s.name.to_owned();
                }
            })
            .map(|()| here)
        })
        .await;
    match scanned {
        Ok(here) => {
            for (id, t) in here {
                match out.get_mut(&id) {
                    Some(acc) => acc.merge(&t),
                    None => {
                        out.insert(id, t);
                    }
                }
            }
        }
        Err(e) => {
            add(&shard.metrics.sealed_blocks_damaged, 1);
            tracing::error!(shard = %shard.id, "{e}; the block is skipped");
        }
    }
}

/// The summaries of the traces in `block` (decoded for them alone), as `summarize_block`
/// makes them from the columns, for a search whose span query needs the whole spans.
fn summarize_records(q: &TraceSearch, block: &DecodedBlock) -> HashMap<TraceId, TraceSummary> {
    let mut here: HashMap<TraceId, TraceSummary> = HashMap::new();
    for batch in block.span_batches() {
        let service = archived_service_name(&batch.resource.attributes);
        for s in batch.spans.iter() {
            let id = s.trace_id.get();
            let t = here
                .entry(id)
                .or_insert_with(|| TraceSummary::empty(&id, q.spss));
            let (start, end) = (
                s.start_time_unix_nano.to_native(),
                s.end_time_unix_nano.to_native(),
            );
            let error = s.status.code.to_native() == STATUS_CODE_ERROR;
            t.span_count += 1;
            t.error_count += u32::from(error);
            let stats = t.services.entry(service.to_owned()).or_default();
            stats.span_count += 1;
            stats.error_count += u32::from(error);
            let duration = end.saturating_sub(start);
            if q.span_matches(service, s.name.as_str(), start, duration, error, || {
                span_query_matches(q, s, &batch.resource)
            }) {
                t.matched.offer(MatchedSpan {
                    span_id: s.span_id.get(),
                    name: s.name.as_str().to_owned(),
                    start_unix_nanos: start,
                    duration_nanos: duration,
                    attributes: q.attrs.clone(),
                });
            }
            t.start_unix_nanos = t.start_unix_nanos.min(start);
            t.end_unix_nanos = t.end_unix_nanos.max(end);
            let rank = RootRank::of(s.parent_span_id.is_some(), start);
            if t.offer_root(rank, service, s.name.as_str()) {
                t.root_service_name = service.to_owned();
                t.root_span_name = s.name.as_str().to_owned();
            }
        }
    }
    here
}

/// The summaries `segments` give of `ids`, each merged into the head index's summary, if
/// any. `segments` must be the sealed set as it was when the head summaries were taken, so
/// that no segment is counted in both. Each block is decoded once, for all the traces it
/// may hold.
pub(super) async fn merge_summaries(
    shard: &Shard,
    q: &TraceSearch,
    segments: &[Arc<SealedSegment>],
    ids: Vec<(TraceId, Option<TraceSummary>)>,
) -> Vec<TraceSummary> {
    let mut sealed: HashMap<TraceId, TraceSummary> = HashMap::new();
    for segment in segments {
        let mut by_block: std::collections::BTreeMap<usize, Vec<TraceId>> = Default::default();
        for (id, _) in &ids {
            if segment.sidecar.may_hold_trace(id) {
                for b in segment.sidecar.trace_blocks(id) {
                    by_block.entry(b).or_default().push(*id);
                }
            }
        }
        for (b, mut wanted) in by_block {
            wanted.sort_unstable();
            summarize_block(shard, q, segment, b, wanted, &mut sealed).await;
        }
    }
    ids.into_iter()
        .filter_map(|(id, head)| match (head, sealed.remove(&id)) {
            (Some(mut h), Some(s)) => {
                h.merge(&s);
                Some(h)
            }
            (h, s) => h.or(s),
        })
        .collect()
}

/// Whether the span of `s` matches every filter of `q`.
fn facts_match(q: &TraceSearch, s: &SpanFacts<'_>) -> bool {
    let duration = s.end.saturating_sub(s.start);
    let error = s.status_code == STATUS_CODE_ERROR;
    q.span_matches(s.service, s.name, s.start, duration, error, || {
        s.attrs_match
    })
}

/// Whether block `b` may hold a span `q` matches, by its description alone.
fn span_block_may_match(
    b: &BlockMeta,
    q: &TraceSearch,
    service: Option<u32>,
    name: Option<u32>,
) -> bool {
    b.kind == BlockKind::Spans
        && q.start_unix_nanos.is_none_or(|s| b.max_time >= s)
        && q.end_unix_nanos.is_none_or(|e| b.min_time <= e)
        && q.min_duration_nanos.is_none_or(|d| b.max_duration >= d)
        && q.max_duration_nanos.is_none_or(|d| b.min_duration <= d)
        // A block without an error span holds no match for `error=true`.
        && (q.error != Some(true) || b.error)
        && service.is_none_or(|id| b.services.binary_search(&id).is_ok())
        && name.is_none_or(|id| b.names.binary_search(&id).is_ok())
}

/// The id `wanted` has in `names`: `Ok(None)` for no filter, `Err(())` when the segment does
/// not hold it at all.
fn id_in(names: &[String], wanted: Option<&str>) -> Result<Option<u32>, ()> {
    match wanted {
        None => Ok(None),
        Some(w) => names
            .iter()
            .position(|n| n == w)
            .map(|i| Some(i as u32))
            .ok_or(()),
    }
}

/// The needle keys of a trace search: per `attr` pair, the keys a matching value may have.
/// Empty: the search has no needle to look for.
pub(super) fn trace_needles(q: &TraceSearch) -> Vec<Vec<u64>> {
    let mut keys = needles::Keys::default();
    q.attrs.iter().map(|(k, v)| keys.query_keys(k, v)).collect()
}

/// The needle keys of a log search: each word of `contains` ([`crate::domain::words`]) and
/// the trace id.
pub(super) fn log_needles(q: &LogSearch) -> Vec<Vec<u64>> {
    let words = q
        .contains
        .iter()
        .flat_map(|c| crate::domain::words::words(c))
        .map(|w| vec![needles::word_key(w)]);
    let trace = q.trace_id.iter().map(|t| vec![needles::trace_id_key(t)]);
    words.chain(trace).collect()
}

/// Whether the needle filter of `entry` in `segment` may hold `all_of`; a damaged filter is
/// kept in `damaged` (to be reported) and may hold anything.
fn needle_may_match(
    segment: &SealedSegment,
    entry: needles::Entry,
    all_of: &[Vec<u64>],
    damaged: &mut Vec<SealError>,
) -> bool {
    all_of.is_empty()
        || segment.may_match(entry, all_of).unwrap_or_else(|e| {
            damaged.push(e);
            true
        })
}

/// Counts and logs the needle filters found damaged; their blocks were read instead.
fn report_damaged(shard: &Shard, damaged: Vec<SealError>) {
    for e in damaged {
        add(&shard.metrics.sealed_blocks_damaged, 1);
        tracing::error!(shard = %shard.id, "{e}; its blocks are read instead");
    }
}

/// Runs `f` over `segments` on the blocking pool when there are needles to probe (the
/// filters are read from the data files), else on this thread (the sidecars alone); reports
/// the damaged filters found.
async fn per_segment<T, F>(
    shard: &Shard,
    segments: &[Arc<SealedSegment>],
    all_of: Vec<Vec<u64>>,
    f: F,
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(&SealedSegment, &[Vec<u64>], &mut Vec<SealError>) -> T + Send + 'static,
{
    let run = move |segments: &[Arc<SealedSegment>], all_of: &[Vec<u64>]| {
        let mut damaged = Vec::new();
        let out: Vec<T> = segments
            .iter()
            .map(|s| f(s, all_of, &mut damaged))
            .collect();
        (out, damaged)
    };
    let (out, damaged) = match all_of.is_empty() {
        true => run(segments, &all_of),
        false => {
            let segments = segments.to_vec();
            glommio::executor()
                .spawn_blocking(move || run(&segments, &all_of))
                .await
        }
    };
    report_damaged(shard, damaged);
    out
}

/// Per segment of `segments`, the span blocks that may hold a span matching `q`
/// ([`candidate_blocks`]).
pub(super) async fn trace_candidates(
    shard: &Shard,
    q: &TraceSearch,
    segments: &[Arc<SealedSegment>],
) -> Vec<Vec<(u64, usize)>> {
    let q = q.clone();
    per_segment(
        shard,
        segments,
        trace_needles(&q),
        move |segment, all_of, damaged| candidate_blocks(&q, segment, all_of, damaged),
    )
    .await
}

/// The span blocks of `segment` that may hold a span matching `q`, by the sidecar and the
/// needle filters (`all_of`, from [`trace_needles`]), each with the latest start a trace it
/// holds can have ([`crate::seal::Sidecar::newest_trace_start`]) or `q`'s end if earlier: no
/// trace first found in the block starts later than that.
pub(super) fn candidate_blocks(
    q: &TraceSearch,
    segment: &SealedSegment,
    all_of: &[Vec<u64>],
    damaged: &mut Vec<SealError>,
) -> Vec<(u64, usize)> {
    let sc = &segment.sidecar;
    if sc.spans == 0
        || q.start_unix_nanos.is_some_and(|s| sc.max_time < s)
        || q.end_unix_nanos.is_some_and(|e| sc.min_time > e)
    {
        return Vec::new();
    }
    let (Ok(service), Ok(name)) = (
        id_in(&sc.services, q.service.as_deref()),
        id_in(&sc.names, q.name.as_deref()),
    ) else {
        return Vec::new();
    };
    if !needle_may_match(segment, needles::Entry::Segment, all_of, damaged) {
        return Vec::new();
    }
    let end = q.end_unix_nanos.unwrap_or(u64::MAX);
    (0..sc.blocks.len())
        .filter(|&i| {
            span_block_may_match(&sc.blocks[i], q, service, name)
                && needle_may_match(segment, needles::Entry::Block(i), all_of, damaged)
        })
        .map(|i| (sc.newest_trace_start(i).min(end), i))
        .collect()
}

/// Adds to `found` the traces of block `i` of `segment` with a span matching `q`, each with
/// its start in the block. The block is scanned on the blocking pool, reading only the columns
/// the filters need ([`crate::seal::block::scan`]); a damaged block is counted, logged and
/// skipped.
pub(super) async fn search_block(
    shard: &Shard,
    q: &TraceSearch,
    segment: &Arc<SealedSegment>,
    i: usize,
    found: &mut HashMap<TraceId, u64>,
) {
    let (seg, filter) = (segment.clone(), q.clone());
    add(&shard.metrics.sealed_blocks_read, 1);
    let scanned = glommio::executor()
        .spawn_blocking(move || {
            let q = &filter;
            if q.span_query.is_some() {
                return seg.decode(i).map(|block| match_records(q, &block));
            }
            let mut matched: Vec<(TraceId, u64)> = Vec::new();
            seg.scan(i, None, &q.attrs, |s| {
                if matched.last().is_some_and(|m| m.0 == s.trace_id) || !facts_match(q, s) {
                    return;
                }
                matched.push((s.trace_id, s.trace_start));
            })
            .map(|()| matched)
        })
        .await;
    match scanned {
        Ok(matched) => {
            for (id, start) in matched {
                let at = found.entry(id).or_insert(start);
                *at = (*at).min(start);
            }
        }
        Err(e) => {
            add(&shard.metrics.sealed_blocks_damaged, 1);
            tracing::error!(shard = %shard.id, "{e}; the block is skipped");
        }
    }
}

/// The traces of `block` with a span matching `q`, each with the start of its earliest span in
/// the block: `search_block` on whole records, for a search whose span query needs them.
fn match_records(q: &TraceSearch, block: &DecodedBlock) -> Vec<(TraceId, u64)> {
    // Per trace, its earliest start in the block and whether a span matched.
    let mut seen: HashMap<TraceId, (u64, bool)> = HashMap::new();
    for batch in block.span_batches() {
        let service = archived_service_name(&batch.resource.attributes);
        for s in batch.spans.iter() {
            let start = s.start_time_unix_nano.to_native();
            let at = seen.entry(s.trace_id.get()).or_insert((start, false));
            at.0 = at.0.min(start);
            if at.1 {
                continue;
            }
            let duration = s.end_time_unix_nano.to_native().saturating_sub(start);
            let error = s.status.code.to_native() == STATUS_CODE_ERROR;
            at.1 = q.span_matches(service, s.name.as_str(), start, duration, error, || {
                span_query_matches(q, s, &batch.resource)
            });
        }
    }
    seen.into_iter()
        .filter(|(_, (_, matched))| *matched)
        .map(|(id, (start, _))| (id, start))
        .collect()
}

/// The log blocks of `segment` that may hold a record matching `q`, newest first, by the
/// sidecar and the needle filters (`all_of`, from [`log_needles`]).
fn log_blocks(
    q: &LogSearch,
    segment: &SealedSegment,
    all_of: &[Vec<u64>],
    damaged: &mut Vec<SealError>,
) -> Vec<usize> {
    let sc = &segment.sidecar;
    if sc.logs == 0
        || q.start_unix_nanos.is_some_and(|s| sc.max_time < s)
        || q.end_unix_nanos.is_some_and(|e| sc.min_time > e)
    {
        return Vec::new();
    }
    let Ok(service) = id_in(&sc.services, q.service.as_deref()) else {
        return Vec::new();
    };
    if !needle_may_match(segment, needles::Entry::Segment, all_of, damaged) {
        return Vec::new();
    }
    (0..sc.blocks.len())
        .rev()
        .filter(|&i| {
            let b = &sc.blocks[i];
            b.kind == BlockKind::Logs
                && q.start_unix_nanos.is_none_or(|s| b.max_time >= s)
                && q.end_unix_nanos.is_none_or(|e| b.min_time <= e)
                && q.min_severity.is_none_or(|m| b.max_severity >= m)
                && service.is_none_or(|id| b.services.binary_search(&id).is_ok())
                && needle_may_match(segment, needles::Entry::Block(i), all_of, damaged)
        })
        .collect()
}

/// The newest `q.limit` log records of `segments` (newest first) matching `q`, no older than
/// `floor` (the oldest of the head's matches once it had `limit`); `false` with them if the
/// search's budget ran out before every block that could hold a match was read.
pub(super) async fn search_logs(
    shard: &Shard,
    q: &LogSearch,
    segments: Vec<Arc<SealedSegment>>,
    floor: Option<u64>,
) -> (Vec<LogHit>, bool) {
    let mut hits: Vec<LogHit> = Vec::new();
    let mut floor = floor;
    let candidates = {
        let q = q.clone();
        per_segment(
            shard,
            &segments,
            log_needles(&q),
            move |segment, all_of, damaged| log_blocks(&q, segment, all_of, damaged),
        )
        .await
    };
    for (segment, blocks) in segments.into_iter().zip(candidates) {
        let sc = &segment.sidecar;
        for i in blocks {
            if floor.is_some_and(|f| sc.blocks[i].max_time <= f) {
                continue;
            }
            super::scan::before_block().await;
            if q.budget.over() {
                return (hits, false);
            }
            let Some(block) = decode(shard, &segment, i).await else {
                continue;
            };
            for batch in block.log_batches() {
                if q.service
                    .as_deref()
                    .is_some_and(|s| archived_service_name(&batch.resource.attributes) != s)
                {
                    continue;
                }
                let mut group: Option<(Arc<str>, Arc<str>)> = None;
                for l in batch.logs.iter() {
                    let time = match l.time_unix_nano.to_native() {
                        0 => l.observed_time_unix_nano.to_native(),
                        t => t,
                    };
                    if !in_range(time, q.start_unix_nanos, q.end_unix_nanos)
                        || floor.is_some_and(|f| time <= f)
                        || q.min_severity
                            .is_some_and(|m| l.severity_number.to_native() < m)
                        || q.trace_id
                            .is_some_and(|t| l.trace_id.as_ref().map(|x| x.get()) != Some(t))
                        || q.contains
                            .as_deref()
                            .is_some_and(|n| !value_contains(&l.body, n))
                    {
                        continue;
                    }
                    let (resource, scope) = group
                        .get_or_insert_with(|| {
                            (resource_fields(&batch.resource), scope_fields(&batch.scope))
                        })
                        .clone();
                    let mut item = String::new();
                    json_out::write_log(&mut item, l);
                    hits.push(LogHit {
                        time_unix_nanos: time,
                        group: JsonGroup {
                            resource,
                            scope,
                            items: vec![item],
                        },
                    });
                }
            }
            // Keep the newest `limit`; once that many are held, older blocks and records
            // cannot make it.
            if hits.len() >= q.limit {
                hits.sort_by_key(|h| std::cmp::Reverse(h.time_unix_nanos));
                hits.truncate(q.limit);
                floor = floor.max(hits.last().map(|h| h.time_unix_nanos));
            }
        }
    }
    (hits, true)
}
