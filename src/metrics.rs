//! Per-shard counters. Plain `Cell`s: each shard writes only its own, so there is no sharing
//! and no atomic on the hot path. Read by the shard itself when `/metrics` fans out.

use std::cell::Cell;

#[derive(Default)]
pub struct ShardMetrics {
    pub requests: Cell<u64>,
    pub requests_bad: Cell<u64>,
    pub requests_throttled: Cell<u64>,
    pub requests_failed: Cell<u64>,
    pub spans_accepted: Cell<u64>,
    pub spans_rejected: Cell<u64>,
    pub logs_accepted: Cell<u64>,
    pub logs_rejected: Cell<u64>,
    pub values_truncated: Cell<u64>,
    pub attributes_dropped: Cell<u64>,
    pub bytes_received: Cell<u64>,
    pub records_appended: Cell<u64>,
    pub bytes_appended: Cell<u64>,
}

/// Adds `n` to a counter.
pub fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}
