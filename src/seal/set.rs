//! A shard's sealed segments, oldest first: held in `Arc`s, so that a search decoding a block
//! on the blocking pool keeps its segment mapped even if retention deletes it meanwhile.

use std::path::Path;
use std::sync::Arc;

use super::SealedSegment;
use crate::domain::TraceId;
use crate::storage::SegmentKey;

#[derive(Default)]
pub struct SealedSet {
    /// Sorted by (creation time, shard, sequence): oldest first.
    segments: Vec<Arc<SealedSegment>>,
}

/// Of `segments`, those whose filter may hold trace `id`, each with the blocks that may.
pub fn holding_trace(
    segments: &[Arc<SealedSegment>],
    id: &TraceId,
) -> Vec<(Arc<SealedSegment>, Vec<usize>)> {
    segments
        .iter()
        .filter(|s| s.sidecar.may_hold_trace(id))
        .map(|s| (s.clone(), s.sidecar.trace_blocks(id).collect::<Vec<_>>()))
        .filter(|(_, blocks)| !blocks.is_empty())
        .collect()
}

/// What a shard's sealed segments hold, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SealedStats {
    pub segments: u64,
    pub spans: u64,
    pub logs: u64,
    /// Data files and sidecars on disk.
    pub disk_bytes: u64,
    /// Sidecars in memory, about.
    pub memory_bytes: u64,
}

fn order(s: &SealedSegment) -> (u64, u32, u64) {
    let m = &s.sidecar.meta;
    (m.created_unix_nanos, m.shard_id, m.seq)
}

impl SealedSet {
    pub fn insert(&mut self, segment: Arc<SealedSegment>) {
        let at = self
            .segments
            .partition_point(|s| order(s) <= order(&segment));
        self.segments.insert(at, segment);
    }

    /// Takes out the segment whose data file is `data_path`.
    pub fn remove(&mut self, data_path: &Path) -> Option<Arc<SealedSegment>> {
        let at = self
            .segments
            .iter()
            .position(|s| s.data_path == data_path)?;
        Some(self.segments.remove(at))
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<SealedSegment>> {
        self.segments.iter()
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The segments whose filter may hold trace `id`, each with the blocks that may.
    pub fn holding_trace(&self, id: &TraceId) -> Vec<(Arc<SealedSegment>, Vec<usize>)> {
        holding_trace(&self.segments, id)
    }

    /// Those made of the raw segments named by `keys` ([`crate::storage::Store::segment_key`]).
    pub fn made_of(&self, keys: &[SegmentKey]) -> Vec<Arc<SealedSegment>> {
        self.segments
            .iter()
            .filter(|s| keys.contains(&(s.sidecar.meta.shard_id, s.sidecar.meta.seq)))
            .cloned()
            .collect()
    }

    /// Every service named in a sealed segment, each once.
    pub fn services(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .segments
            .iter()
            .flat_map(|s| s.sidecar.services.iter().cloned())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The span names seen with service `service` in the sealed segments, sorted.
    pub fn operations_of(&self, service: &str) -> Vec<String> {
        let mut all: Vec<String> = self
            .segments
            .iter()
            .flat_map(|s| s.sidecar.operations_of(service))
            .map(str::to_owned)
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    pub fn stats(&self) -> SealedStats {
        self.segments
            .iter()
            .fold(SealedStats::default(), |mut a, s| {
                a.segments += 1;
                a.spans += s.sidecar.spans;
                a.logs += s.sidecar.logs;
                a.disk_bytes += s.disk_bytes();
                a.memory_bytes += s.sidecar.memory_bytes() as u64;
                a
            })
    }

    /// When the oldest sealed segment's raw segment was created, unix ns.
    pub fn oldest_created_unix_nanos(&self) -> Option<u64> {
        self.segments
            .iter()
            .map(|s| s.sidecar.meta.created_unix_nanos)
            .min()
    }
}
