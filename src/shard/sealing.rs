//! Sealing on a shard: every full raw segment of the shard's own directory is sealed
//! (`crate::seal::write`) on the blocking pool, oldest first, and the result installed on the
//! shard's thread: the sealed segment starts serving, the raw segment and its index part go,
//! and the raw file is unlinked. A query sees the records in one place or the other at every
//! moment: the swap is one step on the shard's thread, between two slices of any search.
//!
//! A sealing that fails (a full disk, say) leaves the raw segment serving; it is tried again
//! after [`SEAL_RETRY`].

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::limits::{SEAL_PERIOD, SEAL_RETRY};
use crate::metrics::add;
use crate::seal::write::{pause_point, seal, STEPS};
use crate::shard::Shard;

/// Runs until the shard stops.
pub async fn seal_full_segments(shard: Rc<Shard>) {
    let mut failed: Vec<(u32, Instant)> = Vec::new();
    while !shard.stopping.is_set() {
        glommio::timer::sleep(SEAL_PERIOD).await;
        failed.retain(|(_, at)| at.elapsed() < SEAL_RETRY);
        loop {
            if shard.stopping.is_set() {
                return;
            }
            let next = shard
                .store
                .borrow()
                .deletable(false)
                .into_iter()
                .find(|d| !failed.iter().any(|(slot, _)| *slot == d.slot));
            let Some(raw) = next else {
                break;
            };
            let path = raw.path.clone();
            let started = Instant::now();
            let outcome = glommio::executor()
                .spawn_blocking(move || seal(&path))
                .await;
            match outcome {
                Ok(sealed) => install(&shard, raw.slot, sealed, started).await,
                Err(e) => {
                    add(&shard.metrics.seal_failures, 1);
                    tracing::error!(shard = %shard.id, "{e}; the raw segment stays and is served, and is sealed again later");
                    failed.push((raw.slot, Instant::now()));
                }
            }
        }
    }
}

/// Swaps the raw segment in `slot` for `sealed`, then unlinks the raw file.
async fn install(
    shard: &Rc<Shard>,
    slot: u32,
    sealed: crate::seal::SealedSegment,
    started: Instant,
) {
    let raw = shard.store.borrow_mut().take_segment(slot);
    let Some(raw) = raw else {
        // Retention deleted the raw segment meanwhile: the sealed copy goes too.
        let _ = glommio::executor()
            .spawn_blocking(move || sealed.delete())
            .await;
        return;
    };
    shard.index.borrow_mut().remove(slot);
    let (spans, logs, bytes) = (
        sealed.sidecar.spans,
        sealed.sidecar.logs,
        sealed.disk_bytes(),
    );
    shard.sealed.borrow_mut().insert(Arc::new(sealed.rehomed()));
    add(&shard.metrics.segments_sealed, 1);
    let raw_bytes = raw.write_pos() as u64;
    let path = raw.path.clone();
    let deleted = glommio::executor()
        .spawn_blocking(move || {
            pause_point(STEPS[3]);
            raw.delete()
        })
        .await;
    if let Err(e) = deleted {
        // Start-up removes a raw segment that a complete sealed pair replaces.
        tracing::warn!(shard = %shard.id, segment = %path.display(), "cannot delete the sealed raw segment: {e}; it is removed at the next start");
    }
    tracing::info!(
        shard = %shard.id,
        segment = %path.display(),
        spans,
        logs,
        raw_bytes,
        sealed_bytes = bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "segment sealed"
    );
}
