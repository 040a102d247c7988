//! The append path of a shard: records it owns (encoded here or on a peer) staged, written by
//! the shard's group write, indexed once written, and made durable under the fsync policy; and
//! the one place a record's payload becomes index entries, for recovery and appends alike.

use std::rc::Rc;

use crate::config::FsyncPolicy;
use crate::domain::{ArchivedLogBatch, ArchivedSpanBatch};
use crate::index::{Indexes, RecordLoc};
use crate::limits::{SEGMENT_WAIT_MAX, SEGMENT_WAIT_POLL};
use crate::metrics::add;
use crate::shard::group_write;
use crate::shard::mesh::OwnedRecord;
use crate::shard::Shard;
use crate::storage::{RecordKind, StoreError, StoreFailure};

/// Why an append failed. Told to every member of a failed group write (`Clone`) and sent back
/// over the mesh to the shard that asked (`Send`); its text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// A record could not be staged or written while storage still takes writes (a full disk,
    /// no room for a new segment): the appends of that batch failed, later ones may succeed.
    #[error("{0}")]
    Write(StoreError),
    /// Storage stopped taking writes after a failed write or fsync.
    #[error("storage stopped after a failed sync or write; restart to recover: {0}")]
    Stopped(StoreFailure),
    /// The shard stopped before the records were written or synced.
    #[error("shard stopped before the records were {0}")]
    ShardStopped(Stage),
    /// Sealing is behind: `waiting` bytes of full raw segments wait for it, `max` at most
    /// (`--seal-backlog-bytes`). Nothing was written.
    #[error("sealing is behind: {waiting} bytes of full segments wait for it (at most {max})")]
    SealingBehind { waiting: u64, max: u64 },
}

/// How far an append got when its shard stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Written,
    Synced,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Written => "written",
            Stage::Synced => "synced",
        })
    }
}

impl From<StoreError> for AppendError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Failed(why) => AppendError::Stopped(why),
            other => AppendError::Write(other),
        }
    }
}

/// Appends records this shard owns, indexes them, and waits until they are durable under the
/// fsync policy. The records were encoded by this process (locally or on a peer) from
/// validated domain types.
pub async fn append_owned(shard: &Rc<Shard>, records: Vec<OwnedRecord>) -> Result<(), AppendError> {
    let started = std::time::Instant::now();
    // Ingest that outruns sealing for good would grow the raw backlog, and its index, without
    // bound: past the operator's bound the append is refused (retryable) until sealing
    // catches up.
    let (waiting, max) = (
        shard.store.borrow().full_own_bytes(),
        shard.config.seal_backlog_bytes,
    );
    if waiting > max {
        return Err(AppendError::SealingBehind { waiting, max });
    }
    // If these records need the next segment and it is still being prepared, wait for it
    // (the reactor serves other work meanwhile) instead of creating one on the spot.
    let frames: usize = records
        .iter()
        .map(|r| crate::storage::frame::frame_bytes(r.bytes.len()))
        .sum();
    // Bounded: should a preparation never report back, the append rolls on the spot.
    let give_up = std::time::Instant::now() + SEGMENT_WAIT_MAX;
    loop {
        let ready = shard.segment_ready.borrow().clone();
        if !shard.store.borrow().should_wait_for_next(frames)
            || std::time::Instant::now() >= give_up
        {
            break;
        }
        futures_lite::future::or(ready.wait(), glommio::timer::sleep(SEGMENT_WAIT_POLL)).await;
    }
    // Stage every record, then join the batch the shard's writer writes with one `pwrite`
    // (group_write). No `.await` between the two: the records belong to that batch. Should
    // staging fail part-way, what was staged still goes with the batch (and into the index
    // once written), and the request fails.
    let (locs, staging_error, written) = {
        let mut store = shard.store.borrow_mut();
        if let Some(job) = store.next_to_prepare() {
            prepare_next_segment(shard.clone(), job);
            // A segment is about to roll: retention looks now, not at its next period.
            shard.retention_due.ring();
        }
        let mut locs = Vec::with_capacity(records.len());
        let mut staging_error = None;
        for rec in &records {
            match store.stage(rec.kind, &rec.bytes) {
                Ok(loc) => locs.push(loc),
                Err(e) => {
                    staging_error = Some(AppendError::from(e));
                    break;
                }
            }
        }
        if locs.is_empty() {
            return staging_error.map_or(Ok(()), Err);
        }
        (locs, staging_error, shard.group_write.join())
    };
    // A task of its own: should this request be dropped while it waits (its client went
    // away), what was written for it is indexed all the same.
    let last = glommio::spawn_local(index_when_written(shard.clone(), records, locs, written))
        .detach()
        .await
        .unwrap_or(Err(AppendError::ShardStopped(Stage::Written)))?;
    if let Some(why) = staging_error {
        return Err(why);
    }
    shard
        .metrics
        .record(crate::metrics::Hist::Append, started.elapsed());
    // Early writeback and page-cache eviction behind the writer, off the reactor.
    let cache_work = shard.store.borrow_mut().cache_work();
    if let Some(work) = cache_work {
        glommio::spawn_local(glommio::executor().spawn_blocking(move || work.run())).detach();
    }
    if shard.config.fsync == FsyncPolicy::Always {
        shard.commit.wait_durable(&shard.store, last).await?;
    }
    Ok(())
}

/// Waits for the group write of the records staged at `locs` (the first `locs.len()` of
/// `records`), then indexes them: only written records may be found. Returns the append
/// number of the write, for the fsync policy.
async fn index_when_written(
    shard: Rc<Shard>,
    records: Vec<OwnedRecord>,
    locs: Vec<RecordLoc>,
    written: futures_channel::oneshot::Receiver<group_write::Outcome>,
) -> group_write::Outcome {
    let last = written
        .await
        .unwrap_or(Err(AppendError::ShardStopped(Stage::Written)))?;
    let mut index = shard.index.borrow_mut();
    let store = shard.store.borrow();
    let mut bytes = 0;
    for (rec, loc) in records.iter().zip(&locs) {
        bytes += rec.bytes.len() as u64;
        // Retention may have deleted the segment while the write was on its way: its
        // records are gone, and indexing them would leave a part nothing removes.
        if store.holds(loc.segment) {
            index_payload(&mut index, *loc, rec.kind, &rec.bytes, Origin::ThisProcess);
        }
    }
    add(&shard.metrics.records_appended, locs.len() as u64);
    add(&shard.metrics.bytes_appended, bytes);
    Ok(last)
}

/// Creates the next segment on the blocking pool, off the append path.
fn prepare_next_segment(shard: Rc<Shard>, job: crate::storage::Preparation) {
    glommio::spawn_local(async move {
        let prepared = glommio::executor().spawn_blocking(move || job.run()).await;
        shard.store.borrow_mut().install_next(prepared);
        // Wake appends waiting for it, and arm a fresh signal for the next preparation.
        let done = std::mem::take(&mut *shard.segment_ready.borrow_mut());
        done.set();
    })
    .detach();
}

/// Where a record's bytes come from, and so how far they are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from a segment: checked in full before use.
    Disk,
    /// Encoded by this process (`shard::ingest`) with `rkyv::to_bytes` for exactly its kind's
    /// batch type, and not modified since: used unchecked (checked in debug builds).
    ThisProcess,
}

/// Adds one stored record to its segment's part of the index: the one place a payload becomes
/// index entries. `false` if a record read from disk is not a valid archive (it is then never
/// served).
pub fn index_payload(
    indexes: &mut Indexes,
    loc: RecordLoc,
    kind: RecordKind,
    payload: &[u8],
    origin: Origin,
) -> bool {
    let index = indexes.for_segment(loc.segment);
    match kind {
        RecordKind::Spans => match archive::<ArchivedSpanBatch<'static>>(payload, origin) {
            Some(batch) => index.add_spans(loc, batch),
            None => return false,
        },
        RecordKind::Logs => match archive::<ArchivedLogBatch<'static>>(payload, origin) {
            Some(batch) => index.add_logs(loc, batch),
            None => return false,
        },
    }
    true
}

/// Recovery's entry: a record read from disk.
pub fn index_stored(
    indexes: &mut Indexes,
    loc: RecordLoc,
    kind: RecordKind,
    payload: &[u8],
) -> bool {
    index_payload(indexes, loc, kind, payload, Origin::Disk)
}

/// The archive in `payload`, checked unless this process wrote it.
fn archive<T>(payload: &[u8], origin: Origin) -> Option<&T>
where
    T: rkyv::Portable
        + for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>,
{
    match origin {
        Origin::Disk => rkyv::access::<T, rkyv::rancor::Error>(payload).ok(),
        Origin::ThisProcess => {
            debug_assert!(rkyv::access::<T, rkyv::rancor::Error>(payload).is_ok());
            // SAFETY: `Origin::ThisProcess` bytes were produced by `rkyv::to_bytes` for `T`'s
            // unarchived type in this process and not modified since (see `Origin`).
            Some(unsafe { rkyv::access_unchecked::<T>(payload) })
        }
    }
}
