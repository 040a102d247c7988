//! Sealing on a shard: every full raw segment is sealed (`crate::seal::write`) off the
//! shard's thread, oldest first, those of the shard's own directory before those of
//! directories it adopted (whose backlog, left by a change of shard count, must not hold up
//! the live one's): at the lowest CPU priority
//! while less than [`SEAL_URGENT_PERCENT`]% of `--seal-backlog-bytes` of full segments wait,
//! so that sealing takes what ingest leaves of the core, and at normal priority past that. The result is installed
//! on the shard's thread: the sealed segment starts serving, the raw segment and its index
//! part go, and the raw file is unlinked. A query sees the records in one place or the other
//! at every moment: the swap is one step on the shard's thread, between two slices of any
//! search. Appends are refused past `--seal-backlog-bytes` of full segments waiting
//! (`crate::shard::append`), which bounds the raw backlog and its index.
//!
//! A sealing that fails (a full disk, say) leaves the raw segment serving; it is tried again
//! after [`SEAL_RETRY`].

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::limits::{SEAL_NICE, SEAL_PERIOD, SEAL_RETRY, SEAL_URGENT_PERCENT};
use crate::metrics::add;
use crate::seal::write::{pause_point, seal, STEPS};
use crate::seal::{SealError, SealedSegment};
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
                .filter(|d| !failed.iter().any(|(slot, _)| *slot == d.slot))
                .min_by_key(|d| !d.own);
            let Some(raw) = next else {
                break;
            };
            let path = raw.path.clone();
            let waiting = shard.store.borrow().full_own_bytes();
            let urgent = shard.config.seal_backlog_bytes / 100 * SEAL_URGENT_PERCENT;
            let nice = match waiting > urgent {
                true => 0,
                false => SEAL_NICE,
            };
            let started = Instant::now();
            let outcome = glommio::executor()
                .spawn_blocking(move || seal_at(path, nice))
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

/// Seals the raw segment at `path` on a thread of its own at CPU priority `nice`, waited for
/// by the calling (blocking pool) thread. A thread per sealing (one a second at most) lets
/// each one run at its own priority: a thread's priority, once lowered, cannot be raised
/// again without CAP_SYS_NICE.
fn seal_at(path: PathBuf, nice: i32) -> Result<SealedSegment, SealError> {
    let failed = |path: &PathBuf, e: std::io::Error| SealError::Io {
        path: path.clone(),
        source: e.into(),
    };
    let p = path.clone();
    let thread = std::thread::Builder::new()
        .name("glust-seal".into())
        .spawn(move || {
            // SAFETY: setpriority on the calling thread (PRIO_PROCESS with a thread id applies
            // to that thread on Linux); lowering a priority needs no privilege.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice);
            }
            seal(&p)
        })
        .map_err(|e| failed(&path, e))?;
    thread.join().unwrap_or_else(|_| {
        Err(failed(
            &path,
            std::io::Error::other("the sealing thread panicked"),
        ))
    })
}

/// Swaps the raw segment in `slot` for `sealed`, then unlinks the raw file.
async fn install(shard: &Rc<Shard>, slot: u32, sealed: SealedSegment, started: Instant) {
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
