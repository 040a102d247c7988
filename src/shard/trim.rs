//! Giving memory back to the kernel after a burst of large requests.
//!
//! glibc keeps freed memory in its heaps for reuse, and Glust asks it to keep more than usual
//! (`tune_malloc` in `main.rs`: the hot path frees and reuses about a megabyte per group write).
//! After a burst of large bodies, that left hundreds of MiB resident for good: freed, but in
//! the middle of a heap, where glibc's own trimming (of a heap's top) never reaches it. So each
//! shard watches, per [`TRIM_PERIOD`], the request bytes it received and the most it held at
//! once: after a busy period (either past [`TRIM_BURST_BYTES`]), the first quiet one has
//! `malloc_trim(0)` hand every free page of every heap back, on the shard's blocking pool, off
//! its thread.
//!
//! The cost: while it runs, the trim holds each heap's lock in turn, so an allocation in that
//! heap waits (milliseconds for hundreds of MiB). It runs only once a burst has ended: a
//! period counts as quiet below [`crate::limits::TRIM_QUIET_BYTES`], an eighth of [`TRIM_BURST_BYTES`], so a load that hovers near
//! the threshold does not trim every other second, and steady heavy load (every period busy)
//! never trims. One trim runs at a time in the process (`TRIMMING`): shards that saw the same
//! burst do not all lock every heap at once.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::limits::{TRIM_BURST_BYTES, TRIM_PERIOD, TRIM_QUIET_BYTES};
use crate::shard::Shard;

/// Set while a shard's trim runs. Process-wide, and touched once per [`TRIM_PERIOD`] after a
/// burst at most: nothing on the hot path shares it.
static TRIMMING: AtomicBool = AtomicBool::new(false);

/// Watches the shard's request bytes until it stops, trimming after each burst.
pub async fn trim_after_bursts(shard: Rc<Shard>) {
    let mut burst = false;
    let mut received = shard.metrics.bytes_received.get();
    while !shard.stopping.is_set() {
        glommio::timer::sleep(TRIM_PERIOD).await;
        let now = shard.in_flight_bytes.get();
        let peak = shard.in_flight_bytes_peak.replace(now);
        let total = shard.metrics.bytes_received.get();
        let period = (total - std::mem::replace(&mut received, total)) as usize;
        burst |= peak >= TRIM_BURST_BYTES || period >= TRIM_BURST_BYTES;
        let quiet = peak < TRIM_QUIET_BYTES && period < TRIM_QUIET_BYTES;
        if burst && quiet && !TRIMMING.swap(true, Ordering::AcqRel) {
            burst = false;
            let started = Instant::now();
            let released = glommio::executor().spawn_blocking(trim).await;
            TRIMMING.store(false, Ordering::Release);
            tracing::debug!(
                shard = %shard.id,
                peak_bytes = peak,
                released,
                elapsed_us = started.elapsed().as_micros() as u64,
                "gave freed memory back after a burst"
            );
        }
    }
}

/// `malloc_trim(0)`: whether glibc released anything.
fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}
