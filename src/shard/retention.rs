//! Retention: each shard deletes its own oldest whole segments once its share of
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
use std::time::SystemTime;

use crate::limits::RETENTION_PERIOD;
use crate::metrics::add;
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

/// Deletes, oldest first, the segments past either bound.
async fn enforce(shard: &Rc<Shard>, budget: Option<u64>, age: Option<std::time::Duration>) {
    let (deletable, mut held) = {
        let store = shard.store.borrow();
        (store.deletable(age.is_some()), store.bytes_written())
    };
    let now = SystemTime::now();
    for candidate in deletable {
        let too_old = age.is_some_and(|age| {
            now.duration_since(candidate.last_write)
                .is_ok_and(|since| since > age)
        });
        let over = budget.is_some_and(|budget| held > budget);
        if !too_old && !over {
            // The others are newer: within both bounds too.
            break;
        }
        let Some(segment) = shard.store.borrow_mut().take_segment(candidate.slot) else {
            continue;
        };
        shard.index.borrow_mut().remove(candidate.slot);
        held = held.saturating_sub(candidate.bytes);
        let path = segment.path.clone();
        match glommio::executor()
            .spawn_blocking(move || segment.delete())
            .await
        {
            Ok(bytes) => {
                add(&shard.metrics.segments_deleted, 1);
                add(&shard.metrics.bytes_deleted, bytes);
                tracing::info!(
                    shard = %shard.id,
                    segment = %path.display(),
                    bytes,
                    reason = if over { "retention-bytes" } else { "retention-age" },
                    "segment deleted"
                );
            }
            Err(e) => {
                tracing::error!(shard = %shard.id, segment = %path.display(), "cannot delete segment: {e}; its records are no longer served")
            }
        }
    }
}
