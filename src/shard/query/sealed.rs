//! Queries over a shard's sealed segments: blocks are chosen from the sidecars (trace filter
//! and trace-id ranges for a lookup; time, duration, service and name for a search) and only
//! those are read, decoded on the blocking pool so that the shard's thread keeps serving
//! ingest meanwhile. A damaged block is counted, logged and skipped: never served wrong.

use std::collections::HashMap;
use std::sync::Arc;

use super::logs::value_contains;
use super::records::{resource_fields, scope_fields, trace_group};
use super::scan::in_range;
use super::traces::attr_matches;
use crate::domain::{archived_service_name, ArchivedSpanBatch, TraceId, STATUS_CODE_ERROR};
use crate::index::{RootRank, TraceSummary};
use crate::metrics::add;
use crate::otlp::json_out;
use crate::query::{JsonGroup, LogHit, LogSearch, TraceSearch};
use crate::seal::{BlockKind, BlockMeta, DecodedBlock, SealedSegment};
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

/// A trace's summary over the spans of `batches`, for each of `ids` found there: root is the
/// span without a parent, else the earliest.
fn summarize<'b>(
    batches: impl Iterator<Item = &'b ArchivedSpanBatch<'static>>,
    ids: &[TraceId],
    out: &mut HashMap<TraceId, TraceSummary>,
) {
    // Per trace, its summary of this block.
    let mut here: HashMap<TraceId, TraceSummary> = HashMap::new();
    let ids: std::collections::HashSet<&TraceId> = ids.iter().collect();
    for batch in batches {
        let service = archived_service_name(&batch.resource.attributes);
        for s in batch.spans.iter() {
            let id = s.trace_id.get();
            if !ids.contains(&id) {
                continue;
            }
            let (start, end) = (
                s.start_time_unix_nano.to_native(),
                s.end_time_unix_nano.to_native(),
            );
            let t = here.entry(id).or_insert_with(|| TraceSummary {
                trace_id: id.to_hex(),
                root_service_name: String::new(),
                root_span_name: String::new(),
                span_count: 0,
                error_count: 0,
                start_unix_nanos: u64::MAX,
                end_unix_nanos: 0,
                root: RootRank::NONE,
            });
            t.span_count += 1;
            t.error_count += u32::from(s.status.code.to_native() == STATUS_CODE_ERROR);
            t.start_unix_nanos = t.start_unix_nanos.min(start);
            t.end_unix_nanos = t.end_unix_nanos.max(end);
            let rank = RootRank::of(s.parent_span_id.as_ref().is_some(), start);
            if t.offer_root(rank, service, s.name.as_str()) {
                t.root_service_name = service.to_owned();
                t.root_span_name = s.name.as_str().to_owned();
            }
        }
    }
    for (id, t) in here {
        match out.get_mut(&id) {
            Some(acc) => acc.merge(&t),
            None => {
                out.insert(id, t);
            }
        }
    }
}

/// The summaries `segments` give of `ids`, each merged into the head index's summary, if
/// any. `segments` must be the sealed set as it was when the head summaries were taken, so
/// that no segment is counted in both. Each block is decoded once, for all the traces it
/// may hold.
pub(super) async fn merge_summaries(
    shard: &Shard,
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
        for (b, wanted) in by_block {
            if let Some(block) = decode_traces(shard, segment, b, Some(wanted.clone())).await {
                summarize(block.span_batches(), &wanted, &mut sealed);
            }
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

/// Adds to `found` the traces of `segment` with a span matching `q`, each with its start in
/// the segment.
pub(super) async fn search_traces(
    shard: &Shard,
    q: &TraceSearch,
    segment: &Arc<SealedSegment>,
    found: &mut HashMap<TraceId, u64>,
) {
    {
        let sc = &segment.sidecar;
        if sc.spans == 0
            || q.start_unix_nanos.is_some_and(|s| sc.max_time < s)
            || q.end_unix_nanos.is_some_and(|e| sc.min_time > e)
        {
            return;
        }
        let (Ok(service), Ok(name)) = (
            id_in(&sc.services, q.service.as_deref()),
            id_in(&sc.names, q.name.as_deref()),
        ) else {
            return;
        };
        let blocks: Vec<usize> = (0..sc.blocks.len())
            .filter(|&i| span_block_may_match(&sc.blocks[i], q, service, name))
            .collect();
        for i in blocks {
            let Some(block) = decode(shard, segment, i).await else {
                continue;
            };
            let starts = trace_starts(&block);
            for batch in block.span_batches() {
                let resource = &batch.resource.attributes;
                if q.service
                    .as_deref()
                    .is_some_and(|s| archived_service_name(resource) != s)
                {
                    continue;
                }
                for s in batch.spans.iter() {
                    let start = s.start_time_unix_nano.to_native();
                    let duration = s.end_time_unix_nano.to_native().saturating_sub(start);
                    let id = s.trace_id.get();
                    if found.contains_key(&id)
                        || !in_range(start, q.start_unix_nanos, q.end_unix_nanos)
                        || q.min_duration_nanos.is_some_and(|d| duration < d)
                        || q.max_duration_nanos.is_some_and(|d| duration > d)
                        || q.name.as_deref().is_some_and(|n| s.name.as_str() != n)
                        || !q.attrs.iter().all(|(k, v)| {
                            attr_matches(&s.attributes, k, v) || attr_matches(resource, k, v)
                        })
                    {
                        continue;
                    }
                    found.insert(id, starts.get(&id).copied().unwrap_or(start));
                }
            }
        }
    }
}

/// Each trace's earliest start in `block` (which holds all its spans of the segment, unless
/// the trace was cut over blocks).
fn trace_starts(block: &DecodedBlock) -> HashMap<TraceId, u64> {
    let mut starts: HashMap<TraceId, u64> = HashMap::new();
    for s in block.span_batches().flat_map(|b| b.spans.iter()) {
        let start = s.start_time_unix_nano.to_native();
        let at = starts.entry(s.trace_id.get()).or_insert(start);
        *at = (*at).min(start);
    }
    starts
}

/// The newest `q.limit` log records of `segments` (newest first) matching `q`, no older than
/// `floor` (the oldest of the head's matches once it had `limit`).
pub(super) async fn search_logs(
    shard: &Shard,
    q: &LogSearch,
    segments: Vec<Arc<SealedSegment>>,
    floor: Option<u64>,
) -> Vec<LogHit> {
    let mut hits: Vec<LogHit> = Vec::new();
    let mut floor = floor;
    for segment in segments {
        let sc = &segment.sidecar;
        if sc.logs == 0
            || q.start_unix_nanos.is_some_and(|s| sc.max_time < s)
            || q.end_unix_nanos.is_some_and(|e| sc.min_time > e)
        {
            continue;
        }
        let Ok(service) = id_in(&sc.services, q.service.as_deref()) else {
            continue;
        };
        let blocks: Vec<usize> = (0..sc.blocks.len())
            .rev()
            .filter(|&i| {
                let b = &sc.blocks[i];
                b.kind == BlockKind::Logs
                    && q.start_unix_nanos.is_none_or(|s| b.max_time >= s)
                    && q.end_unix_nanos.is_none_or(|e| b.min_time <= e)
                    && q.min_severity.is_none_or(|m| b.max_severity >= m)
                    && service.is_none_or(|id| b.services.binary_search(&id).is_ok())
            })
            .collect();
        for i in blocks {
            if floor.is_some_and(|f| sc.blocks[i].max_time <= f) {
                continue;
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
    hits
}
