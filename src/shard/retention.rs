//! Retention: each shard deletes its oldest whole segments, raw or sealed, of its own
//! directory and of those it adopted from shards that no longer exist, once its share of
//! `--retention-bytes` is spent, or once they were last written longer ago than
//! `--retention-age`. A deleted segment's records leave the disk, and its part of the index
//! leaves memory. The active segment is never deleted, so a shard keeps at least it. It runs
//! every [`RETENTION_PERIOD`] and as soon as the active segment nears its end, so a shard
//! goes over its share by little more than the segment it is filling.
//!
//! Deleting is taking the segment out of the store and the index on the shard's thread (no
//! query can be reading it then: searches borrow both per slice) and unlinking its file on
//! the blocking pool.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::limits::RETENTION_PERIOD;
use crate::metrics::add;
use crate::seal::SealedSegment;
use crate::shard::Shard;

/// Runs until the shard stops, if any retention bound is set.
pub async fn retain(shard: Rc<Shard>) {
    let budget = shard.config.retention_bytes_per_shard();
    let age = shard.config.retention_age;
    if budget.is_none() && age.is_none() {
        return;
    }
    while !shard.stopping.is_set() {
        futures_lite::future::or(
            glommio::timer::sleep(RETENTION_PERIOD),
            shard.retention_due.wait(),
        )
        .await;
        enforce(&shard, budget, age).await;
    }
}

/// A segment retention may delete: raw (by its store slot) or sealed.
enum Candidate {
    Raw(crate::storage::Deletable),
    Sealed(Arc<SealedSegment>),
}

/// Deletes, oldest first, the segments past either bound, raw and sealed alike.
async fn enforce(shard: &Rc<Shard>, budget: Option<u64>, age: Option<std::time::Duration>) {
    let mut candidates: Vec<(u64, SystemTime, u64, Candidate)> = {
        let store = shard.store.borrow();
        store
            .deletable(age.is_some())
            .into_iter()
            .map(|d| {
                (
                    d.created_unix_nanos,
                    d.last_write,
                    d.bytes,
                    Candidate::Raw(d),
                )
            })
            .collect()
    };
    let mut held = shard.store.borrow().bytes_written();
    for s in shard.sealed.borrow().iter() {
        let bytes = s.disk_bytes();
        held += bytes;
        let last_write = UNIX_EPOCH + Duration::from_nanos(s.sidecar.meta.last_write_unix_nanos);
        candidates.push((
            s.sidecar.meta.created_unix_nanos,
            last_write,
            bytes,
            Candidate::Sealed(s.clone()),
        ));
    }
    candidates.sort_by_key(|c| c.0);
    let now = SystemTime::now();
    for (_, last_write, bytes, candidate) in candidates {
        let too_old = age.is_some_and(|age| {
            now.duration_since(last_write)
                .is_ok_and(|since| since > age)
        });
        let over = budget.is_some_and(|budget| held > budget);
        if !too_old && !over {
            // The others are newer: within both bounds too.
            break;
        }
        let reason = if over {
            "retention-bytes"
        } else {
            "retention-age"
        };
        let (path, deleted) = match candidate {
            Candidate::Raw(d) => {
                let Some(segment) = shard.store.borrow_mut().take_segment(d.slot) else {
                    continue;
                };
                shard.index.borrow_mut().remove(d.slot);
                let path = segment.path.clone();
                let deleted = glommio::executor()
                    .spawn_blocking(move || segment.delete())
                    .await;
                (path, deleted)
            }
            Candidate::Sealed(s) => {
                let Some(taken) = shard.sealed.borrow_mut().remove(&s.data_path) else {
                    continue;
                };
                drop(s);
                let path = taken.data_path.clone();
                let deleted = glommio::executor()
                    .spawn_blocking(move || taken.delete())
                    .await;
                (path, deleted)
            }
        };
        held = held.saturating_sub(bytes);
        match deleted {
            Ok(bytes) => {
                add(&shard.metrics.segments_deleted, 1);
                add(&shard.metrics.bytes_deleted, bytes);
                tracing::info!(shard = %shard.id, segment = %path.display(), bytes, reason, "segment deleted");
            }
            Err(e) => {
                tracing::error!(shard = %shard.id, segment = %path.display(), "cannot delete segment: {e}; its records are no longer served")
            }
        }
    }
}
