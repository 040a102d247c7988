//! A shard's index as one [`Index`] part per segment holding records, oldest first: what a
//! segment's records put in memory goes away with the part, whole, when the segment is sealed
//! or deleted. A trace whose spans landed in two segments has an entry in each part; lookups
//! and summaries merge them, as answers of several shards are merged.

use super::{Index, IndexStats, RecordLoc, TraceSummary};
use crate::domain::TraceId;

/// The parts, by segment slot.
#[derive(Default)]
pub struct Indexes {
    /// Sorted by segment slot, oldest first; a slot has at most one part.
    parts: Vec<(u32, Index)>,
}

impl Indexes {
    /// The part of `segment`, made empty if it has none. Appends go to the newest segment,
    /// so the newest part is looked at first.
    pub fn for_segment(&mut self, segment: u32) -> &mut Index {
        let at = match self.parts.last() {
            Some(&(last, _)) if last == segment => self.parts.len() - 1,
            Some(&(last, _)) if last < segment => self.push(segment),
            None => self.push(segment),
            Some(_) => match self.parts.binary_search_by_key(&segment, |(s, _)| *s) {
                Ok(at) => at,
                Err(at) => {
                    self.parts.insert(at, (segment, Index::default()));
                    at
                }
            },
        };
        &mut self.parts[at].1
    }

    fn push(&mut self, segment: u32) -> usize {
        self.parts.push((segment, Index::default()));
        self.parts.len() - 1
    }

    /// Drops the part of `segment` (its segment was deleted): what it held leaves memory.
    pub fn remove(&mut self, segment: u32) -> Option<Index> {
        let at = self
            .parts
            .binary_search_by_key(&segment, |(s, _)| *s)
            .ok()?;
        Some(self.parts.remove(at).1)
    }

    /// The part of `segment`, if it has one.
    pub fn part(&self, segment: u32) -> Option<&Index> {
        self.parts
            .binary_search_by_key(&segment, |(s, _)| *s)
            .ok()
            .map(|at| &self.parts[at].1)
    }

    /// Every part with its segment slot, oldest first.
    pub fn parts(&self) -> impl DoubleEndedIterator<Item = (u32, &Index)> + ExactSizeIterator {
        self.parts.iter().map(|(s, index)| (*s, index))
    }

    /// The records holding spans of trace `id`, oldest first.
    pub fn trace_records<'a>(&'a self, id: &'a TraceId) -> impl Iterator<Item = RecordLoc> + 'a {
        self.parts
            .iter()
            .filter_map(|(_, index)| index.trace(id))
            .flat_map(|t| t.records.iter().copied())
    }

    /// Trace `id`'s summary over every part holding some of it.
    pub fn summary(&self, id: &TraceId) -> Option<TraceSummary> {
        let mut parts = self
            .parts
            .iter()
            .filter_map(|(_, index)| index.trace(id).map(|t| index.summary(t)));
        let mut summary = parts.next()?;
        for more in parts {
            summary.merge(&more);
        }
        Some(summary)
    }

    /// The services seen, each once, in the order they were first seen.
    pub fn services(&self) -> Vec<String> {
        let mut seen = foldhash::HashSet::default();
        self.parts
            .iter()
            .flat_map(|(_, index)| index.services())
            .filter(|s| seen.insert(*s))
            .map(str::to_owned)
            .collect()
    }

    /// The span names seen with service `service` over every part, sorted.
    pub fn operations_of(&self, service: &str) -> Vec<String> {
        let mut all: Vec<String> = self
            .parts
            .iter()
            .flat_map(|(_, index)| index.operations_of(service))
            .map(str::to_owned)
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The parts' stats added up (a trace held by two parts counts twice).
    pub fn stats(&self) -> IndexStats {
        self.parts
            .iter()
            .map(|(_, index)| index.stats())
            .fold(IndexStats::default(), |a, b| IndexStats {
                traces: a.traces + b.traces,
                spans: a.spans + b.spans,
                logs: a.logs + b.logs,
                approx_bytes: a.approx_bytes + b.approx_bytes,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_kept_by_segment_oldest_first() {
        let mut indexes = Indexes::default();
        indexes.for_segment(3);
        indexes.for_segment(3);
        indexes.for_segment(7);
        indexes.for_segment(5);
        indexes.for_segment(0);
        let slots: Vec<u32> = indexes.parts().map(|(s, _)| s).collect();
        assert_eq!(slots, [0, 3, 5, 7]);
        assert!(indexes.part(5).is_some());
        assert!(indexes.part(4).is_none());
    }
}
