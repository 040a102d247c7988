//! The ingest path after decoding, shared by every transport:
//!
//! 1. **split** each batch by owner shard (`route::owner_of(trace_id)`; logs without a trace
//!    stay here);
//! 2. **encode** each owner's part into rkyv records (the one copy of the data before it lands
//!    in a segment map), splitting parts bigger than a record may be;
//! 3. **admit**: every remote owner must have a free credit, the local store must be healthy,
//!    the shard must not be stopping — all decided before anything is written, so a refused
//!    request wrote nothing and its retry duplicates nothing;
//! 4. **dispatch**: remote parts are sent to their owners (`forward_to_owner`, the only
//!    cross-core hop), the local part is appended here, then every part's acknowledgement is
//!    awaited (durable under the fsync policy).

use std::cell::Cell;
use std::rc::Rc;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::domain::validate::{Invalid, RejectReason, Rejections};
use crate::domain::{LogBatch, SpanBatch, TraceId};
use crate::limits::RECORD_BYTES_MAX;
use crate::limits::RECORD_ITEMS_MAX;
use crate::metrics::{add, Dropped, ItemCounters, ShardMetrics};
use crate::otlp::Decoded;
use crate::route::{owner_of, ShardId};
use crate::shard::append::{append_owned, AppendError};
use crate::shard::mesh::{CallError, OwnedRecord};
use crate::shard::Shard;
use crate::storage::segment::SEGMENT_HEADER_BYTES;
use crate::storage::RecordKind;

/// What happened to an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub accepted: u64,
    pub rejected: Rejections,
}

/// Why a request was refused as a whole. Both are retryable; nothing of it was written
/// (for `Unavailable` after dispatch, see its doc).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Too much in flight: an owner's queue is out of credits or this shard is saturated.
    #[error("overloaded: {0}")]
    Overloaded(Overload),
    /// Shutting down, or storage stopped after a failed fsync. When the failure happens after
    /// dispatch, parts may have been written on other shards: a retry can duplicate them.
    #[error("unavailable: {0}")]
    Unavailable(Unavailable),
}

/// What is overloaded.
#[derive(Debug, thiserror::Error)]
pub enum Overload {
    /// An owner of some of the request's items has as many of this shard's requests in
    /// flight as it may (checked before dispatch).
    #[error("{0} has too many requests in flight")]
    Owner(ShardId),
    /// The mesh refused the call (out of credits between the check and the send).
    #[error(transparent)]
    Mesh(CallError),
}

/// Why a request cannot be stored now.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("shutting down")]
    ShuttingDown,
    /// This shard's storage refused or failed the append.
    #[error("{0}")]
    Storage(AppendError),
    /// An owner's storage failed its part.
    #[error("{owner}: {error}")]
    Owner { owner: ShardId, error: AppendError },
    /// An owner stopped before it answered.
    #[error("{0} went away")]
    OwnerGone(ShardId),
    /// The mesh refused the call: the owner is shutting down.
    #[error(transparent)]
    Mesh(CallError),
}

/// A batch type that can be split by owner and stored as a record.
pub trait Signal: Sized {
    type Item;
    const KIND: RecordKind;
    fn items_mut(&mut self) -> &mut Vec<Self::Item>;
    /// The trace an item belongs to, if any; items without one stay on the receiving shard.
    fn trace_of(item: &Self::Item) -> Option<&TraceId>;
    /// A batch with the same resource and scope holding `items`.
    fn with_items(&self, items: Vec<Self::Item>) -> Self;
    /// Serialises the batch (rkyv) into `out`.
    fn encode_in(&self, out: AlignedVec) -> Result<AlignedVec, rancor::Error>;
    /// This thread's size of the last record of this kind kept (see `encode_record`).
    fn size_hint() -> &'static std::thread::LocalKey<Cell<usize>>;
    /// The shard's counters of this kind of item.
    fn counters(metrics: &ShardMetrics) -> &ItemCounters;
}

impl<'a> Signal for SpanBatch<'a> {
    type Item = crate::domain::Span<'a>;
    const KIND: RecordKind = RecordKind::Spans;
    fn items_mut(&mut self) -> &mut Vec<Self::Item> {
        &mut self.spans
    }
    fn trace_of(item: &Self::Item) -> Option<&TraceId> {
        Some(&item.trace_id)
    }
    fn with_items(&self, spans: Vec<Self::Item>) -> Self {
        SpanBatch {
            resource: self.resource.clone(),
            scope: self.scope.clone(),
            spans,
        }
    }
    fn encode_in(&self, out: AlignedVec) -> Result<AlignedVec, rancor::Error> {
        rkyv::api::high::to_bytes_in(self, out)
    }
    fn size_hint() -> &'static std::thread::LocalKey<Cell<usize>> {
        &SPAN_RECORD_BYTES
    }
    fn counters(metrics: &ShardMetrics) -> &ItemCounters {
        &metrics.spans
    }
}

impl<'a> Signal for LogBatch<'a> {
    type Item = crate::domain::LogRecord<'a>;
    const KIND: RecordKind = RecordKind::Logs;
    fn items_mut(&mut self) -> &mut Vec<Self::Item> {
        &mut self.logs
    }
    fn trace_of(item: &Self::Item) -> Option<&TraceId> {
        item.trace_id.as_ref()
    }
    fn with_items(&self, logs: Vec<Self::Item>) -> Self {
        LogBatch {
            resource: self.resource.clone(),
            scope: self.scope.clone(),
            logs,
        }
    }
    fn encode_in(&self, out: AlignedVec) -> Result<AlignedVec, rancor::Error> {
        rkyv::api::high::to_bytes_in(self, out)
    }
    fn size_hint() -> &'static std::thread::LocalKey<Cell<usize>> {
        &LOG_RECORD_BYTES
    }
    fn counters(metrics: &ShardMetrics) -> &ItemCounters {
        &metrics.logs
    }
}

thread_local! {
    /// Size of the last span record this thread kept (each shard has its own thread).
    static SPAN_RECORD_BYTES: Cell<usize> = const { Cell::new(0) };
    /// Size of the last log record this thread kept.
    static LOG_RECORD_BYTES: Cell<usize> = const { Cell::new(0) };
}

/// Serialises `batch` into a buffer sized for the last record of its kind kept on this thread
/// plus an eighth, and remembers this one's size if it is a keeper (at most `max_bytes`; one
/// that is too large is split or rejected, and must not size the buffers after it).
///
/// Hot path: records of one workload are alike in size, and a buffer that starts empty
/// doubles its way up by copying (a 40 KB record: a dozen reallocations). Measured with
/// `cargo bench --bench decode -- encode_records`.
fn encode_record<B: Signal>(batch: &B, max_bytes: usize) -> Result<AlignedVec, rancor::Error> {
    let hint = B::size_hint().get();
    let out = batch.encode_in(AlignedVec::with_capacity(hint + hint / 8))?;
    if out.len() <= max_bytes {
        B::size_hint().set(out.len());
    }
    Ok(out)
}

/// Largest record payload for a segment size: a record must leave room for others.
pub fn record_bytes_max(segment_bytes: u64) -> usize {
    let room = (segment_bytes as usize).saturating_sub(SEGMENT_HEADER_BYTES) / 2;
    RECORD_BYTES_MAX.min(room)
}

/// Splits batches by owner: element `i` holds the parts owned by shard `i`. A batch whose items
/// all go to one owner moves there whole, without copying its resource and scope.
pub fn split_by_owner<B: Signal>(batches: Vec<B>, shards: u32, me: ShardId) -> Vec<Vec<B>> {
    let n = shards as usize;
    let mut parts: Vec<Vec<B>> = (0..n).map(|_| Vec::new()).collect();
    if n == 1 {
        parts[0] = batches;
        return parts;
    }
    let owner = |item: &B::Item| B::trace_of(item).map_or(me, |t| owner_of(t, shards));
    for mut batch in batches {
        let items = batch.items_mut();
        // Each item's owner is hashed once: the common case (one owner) moves the batch.
        let owners: Vec<ShardId> = items.iter().map(owner).collect();
        let Some(&first) = owners.first() else {
            continue;
        };
        if owners.iter().all(|&o| o == first) {
            parts[first.index()].push(batch);
            continue;
        }
        let mut per_owner: Vec<Vec<B::Item>> = (0..n).map(|_| Vec::new()).collect();
        for (item, o) in std::mem::take(items).into_iter().zip(owners) {
            per_owner[o.index()].push(item);
        }
        for (i, items) in per_owner.into_iter().enumerate() {
            if !items.is_empty() {
                parts[i].push(batch.with_items(items));
            }
        }
    }
    parts
}

/// Encodes batches into records of at most `max_bytes`, halving a batch until its parts fit.
/// A single item that cannot fit is dropped into `rejected`. Returns records and items kept.
pub fn encode_records<B: Signal>(
    batches: Vec<B>,
    max_bytes: usize,
    rejected: &mut Rejections,
) -> (Vec<OwnedRecord>, u64) {
    let mut out = Vec::with_capacity(batches.len());
    let mut kept = 0u64;
    // The index addresses an item inside its record with a u16: cut longer batches first.
    let mut todo = Vec::with_capacity(batches.len());
    for mut batch in batches {
        while batch.items_mut().len() > RECORD_ITEMS_MAX {
            let rest = batch.items_mut().split_off(RECORD_ITEMS_MAX);
            let next = batch.with_items(rest);
            todo.push(batch);
            batch = next;
        }
        todo.push(batch);
    }
    while let Some(mut batch) = todo.pop() {
        let bytes = match encode_record(&batch, max_bytes) {
            Ok(b) => b,
            Err(e) => {
                // Serialising validated domain values into memory does not fail; if it ever
                // does, the items are reported dropped, never silently lost.
                let n = batch.items_mut().len() as u64;
                rejected.reject_n(n, RejectReason::Internal, || {
                    format!("cannot encode record: {e}")
                });
                continue;
            }
        };
        let n = batch.items_mut().len();
        if bytes.len() <= max_bytes {
            kept += n as u64;
            out.push(OwnedRecord {
                kind: B::KIND,
                bytes,
            });
        } else if n == 1 || empty_size(&batch) > max_bytes {
            // One item too large, or no split can fit: every part would carry the same
            // oversized resource and scope (halving down to single items would re-encode it
            // ~2N times on the reactor).
            let why = Invalid::TooLarge {
                bytes: bytes.len(),
                max: max_bytes,
            };
            rejected.reject_n(n as u64, why.reason(), || why.to_string());
        } else {
            let second = batch.items_mut().split_off(n / 2);
            let second = batch.with_items(second);
            todo.push(second);
            todo.push(batch);
        }
    }
    (out, kept)
}

/// Encoded size of a batch's resource and scope with no items.
fn empty_size<B: Signal>(batch: &B) -> usize {
    batch
        .with_items(Vec::new())
        .encode_in(AlignedVec::new())
        .map_or(usize::MAX, |b| b.len())
}

/// Runs steps 1–4 for one decoded request on the shard that received it.
pub async fn ingest<B: Signal>(
    shard: &Rc<Shard>,
    decoded: Decoded<B>,
) -> Result<Ingested, IngestError> {
    // The items the request loses if it is refused as a whole (the client may retry them).
    let valid = decoded.accepted;
    let outcome = store(shard, decoded).await;
    let items = B::counters(&shard.metrics);
    match &outcome {
        Ok(done) => {
            add(&items.accepted, done.accepted);
            items.reject(&done.rejected);
        }
        Err(IngestError::Overloaded(_)) => items.drop_items(Dropped::Throttled, valid),
        Err(IngestError::Unavailable(_)) => items.drop_items(Dropped::Failed, valid),
    }
    outcome
}

/// [`ingest`] without the item counts.
async fn store<B: Signal>(shard: &Rc<Shard>, decoded: Decoded<B>) -> Result<Ingested, IngestError> {
    let Decoded {
        batches,
        mut rejected,
        sanitised,
        ..
    } = decoded;
    add(
        &shard.metrics.values_truncated,
        sanitised.truncated_values + sanitised.flattened_values,
    );
    add(
        &shard.metrics.attributes_dropped,
        sanitised.dropped_attributes,
    );

    // 1 + 2: split and encode. After this the request body is no longer needed.
    let max = record_bytes_max(shard.config.segment_bytes);
    let mut accepted = 0;
    let parts: Vec<(ShardId, Vec<OwnedRecord>)> = split_by_owner(batches, shard.count, shard.id)
        .into_iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty())
        .map(|(i, p)| {
            let (records, kept) = encode_records(p, max, &mut rejected);
            accepted += kept;
            (ShardId(i as u32), records)
        })
        .filter(|(_, r)| !r.is_empty())
        .collect();

    // 3: admission, before anything is written.
    if shard.stopping.is_set() {
        return Err(IngestError::Unavailable(Unavailable::ShuttingDown));
    }
    if let Some(why) = shard.store.borrow().failed() {
        let stopped = AppendError::Stopped(why.clone());
        return Err(IngestError::Unavailable(Unavailable::Storage(stopped)));
    }
    for (owner, _) in &parts {
        if *owner != shard.id && !shard.mesh.has_credit(*owner) {
            return Err(IngestError::Overloaded(Overload::Owner(*owner)));
        }
    }

    // 4: dispatch. Remote parts first so their owners work while we append ours.
    let mut local = None;
    let mut remote = Vec::with_capacity(parts.len());
    for (owner, records) in parts {
        if owner == shard.id {
            local = Some(records);
        } else {
            remote.push((owner, forward_to_owner(shard, owner, records)?));
        }
    }
    let mut failure = None;
    if let Some(records) = local {
        if let Err(e) = append_owned(shard, records).await {
            failure = Some(Unavailable::Storage(e));
        }
    }
    for (owner, reply) in remote {
        match reply.await {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                failure.get_or_insert(Unavailable::Owner { owner, error });
            }
            None => {
                failure.get_or_insert(Unavailable::OwnerGone(owner));
            }
        }
    }
    match failure {
        Some(e) => Err(IngestError::Unavailable(e)),
        None => Ok(Ingested { accepted, rejected }),
    }
}

/// Hands records to the shard that owns them: the cross-core hop.
fn forward_to_owner(
    shard: &Shard,
    owner: ShardId,
    records: Vec<OwnedRecord>,
) -> Result<impl std::future::Future<Output = Option<Result<(), AppendError>>>, IngestError> {
    shard.mesh.append(owner, records).map_err(|e| match e {
        CallError::NoCredit(_) => IngestError::Overloaded(Overload::Mesh(e)),
        CallError::Gone(_) => IngestError::Unavailable(Unavailable::Mesh(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AnyValue, KeyValue, LogRecord, Resource};
    use std::borrow::Cow;

    fn log(n: u64) -> LogRecord<'static> {
        LogRecord {
            time_unix_nano: n,
            observed_time_unix_nano: 0,
            severity_number: 9,
            severity_text: Cow::Borrowed(""),
            body: AnyValue::Int(n as i64),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            flags: 0,
            trace_id: None,
            span_id: None,
            event_name: Cow::Borrowed(""),
        }
    }

    fn batch(logs: u64, resource_bytes: usize) -> LogBatch<'static> {
        LogBatch {
            resource: Resource {
                attributes: vec![KeyValue {
                    key: Cow::Borrowed("big"),
                    value: AnyValue::String(Cow::Owned("x".repeat(resource_bytes))),
                }],
                ..Default::default()
            },
            scope: Default::default(),
            logs: (0..logs).map(log).collect(),
        }
    }

    #[test]
    fn records_are_rkyvs_bytes_and_only_keepers_size_the_next_buffer() {
        // Other tests may have run on this thread (--test-threads=1): start from no hints.
        LOG_RECORD_BYTES.set(0);
        SPAN_RECORD_BYTES.set(0);
        let small = batch(10, 10);
        let bytes = encode_record(&small, usize::MAX).unwrap();
        assert_eq!(
            &bytes[..],
            &rkyv::to_bytes::<rancor::Error>(&small).unwrap()[..]
        );
        assert_eq!(LOG_RECORD_BYTES.get(), bytes.len());
        // A record over the limit (to be split or rejected) leaves the hint alone.
        let big = batch(10, 100_000);
        let big_bytes = encode_record(&big, 50_000).unwrap();
        assert!(big_bytes.len() > 50_000);
        assert_eq!(LOG_RECORD_BYTES.get(), bytes.len());
        // The next buffer starts at the hint plus an eighth (a 1 MiB hint for a record of a
        // few hundred bytes shows it) and still holds exactly rkyv's bytes.
        LOG_RECORD_BYTES.set(1 << 20);
        let again = encode_record(&small, usize::MAX).unwrap();
        assert!(
            again.capacity() >= (1 << 20) + (1 << 17),
            "{}",
            again.capacity()
        );
        assert_eq!(&again[..], &bytes[..]);
        assert_eq!(LOG_RECORD_BYTES.get(), bytes.len());
        assert_eq!(SPAN_RECORD_BYTES.get(), 0, "spans keep their own hint");
    }

    #[test]
    fn records_hold_at_most_u16_max_items() {
        let mut rejected = Rejections::default();
        let (records, kept) = encode_records(vec![batch(150_000, 10)], usize::MAX, &mut rejected);
        assert_eq!(kept, 150_000);
        assert_eq!(rejected.count(), 0);
        assert_eq!(records.len(), 3);
        for r in &records {
            let b =
                rkyv::access::<crate::domain::ArchivedLogBatch<'static>, rancor::Error>(&r.bytes)
                    .unwrap();
            assert!(b.logs.len() <= RECORD_ITEMS_MAX);
        }
    }

    #[test]
    fn big_batches_are_halved_until_they_fit() {
        let mut rejected = Rejections::default();
        let (records, kept) = encode_records(vec![batch(1000, 100)], 8 << 10, &mut rejected);
        assert_eq!(kept, 1000);
        assert!(records.len() > 1);
        assert!(records.iter().all(|r| r.bytes.len() <= 8 << 10));
    }

    #[test]
    fn a_resource_bigger_than_a_record_rejects_its_items_at_once() {
        let mut rejected = Rejections::default();
        let (records, kept) = encode_records(vec![batch(50_000, 20_000)], 16 << 10, &mut rejected);
        assert!(records.is_empty());
        assert_eq!(kept, 0);
        assert_eq!(rejected.count(), 50_000);
        assert_eq!(rejected.count_of(RejectReason::TooLarge), 50_000);
        assert!(rejected.first.unwrap().contains("more than the"));
    }
}
