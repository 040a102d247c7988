//! Per-shard admission of ingest requests, shared by every transport and by requests from
//! other shards: how many requests a shard is working on, and how many body bytes they hold.
//! The guards count while they live, so every exit path (answer, error, dropped future)
//! gives back what it took.

use crate::limits::{SHARD_INGEST_BYTES_MAX, SHARD_INGEST_INFLIGHT_MAX};
use crate::shard::Shard;

/// One request being worked on.
pub struct InFlight<'a>(&'a Shard);

impl<'a> InFlight<'a> {
    /// Counts a request the shard must take (work asked by another shard, already admitted
    /// there).
    pub fn enter(shard: &'a Shard) -> Self {
        shard.in_flight.set(shard.in_flight.get() + 1);
        InFlight(shard)
    }

    /// Counts a new ingest request, or refuses it past [`SHARD_INGEST_INFLIGHT_MAX`].
    pub fn try_enter(shard: &'a Shard) -> Option<Self> {
        (shard.in_flight.get() < SHARD_INGEST_INFLIGHT_MAX).then(|| Self::enter(shard))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}

/// Body bytes held by one request, within [`SHARD_INGEST_BYTES_MAX`] for the shard.
pub struct HeldBytes<'a> {
    shard: &'a Shard,
    bytes: usize,
}

impl<'a> HeldBytes<'a> {
    /// Holds `bytes`, or refuses if the shard's budget would be exceeded.
    pub fn try_hold(shard: &'a Shard, bytes: usize) -> Option<Self> {
        if shard.in_flight_bytes.get() + bytes > SHARD_INGEST_BYTES_MAX {
            return None;
        }
        shard
            .in_flight_bytes
            .set(shard.in_flight_bytes.get() + bytes);
        note_peak(shard);
        Some(HeldBytes { shard, bytes })
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Changes the hold to `bytes` (the real size, once known); `false`, holding what it held,
    /// if the budget would be exceeded.
    pub fn try_resize(&mut self, bytes: usize) -> bool {
        let held = &self.shard.in_flight_bytes;
        debug_assert!(held.get() >= self.bytes);
        if held.get() - self.bytes + bytes > SHARD_INGEST_BYTES_MAX {
            return false;
        }
        held.set(held.get() - self.bytes + bytes);
        self.bytes = bytes;
        note_peak(self.shard);
        true
    }
}

impl Drop for HeldBytes<'_> {
    fn drop(&mut self) {
        let held = &self.shard.in_flight_bytes;
        debug_assert!(held.get() >= self.bytes);
        held.set(held.get() - self.bytes);
    }
}

/// Keeps the high-water mark of held bytes that `shard::trim` reads.
fn note_peak(shard: &Shard) {
    let held = shard.in_flight_bytes.get();
    if held > shard.in_flight_bytes_peak.get() {
        shard.in_flight_bytes_peak.set(held);
    }
}
