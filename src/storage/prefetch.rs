//! Read-ahead for queries: the ranges of records not in the page cache
//! ([`Store::cold_ranges`], by `mincore`), read in with `pread` by [`prefetch`].

use std::fs::File;
use std::sync::Arc;

use super::Store;
use crate::index::RecordLoc;
use crate::limits::{PREFETCH_CHUNK_BYTES, PREFETCH_GAP_BYTES, PREFETCH_TAIL_BYTES};

/// A range of a segment file that is not all in the page cache.
pub struct ColdRange {
    file: Arc<File>,
    offset: u64,
    len: u64,
}

/// Reads `ranges` into the page cache, so that reading their records through the maps does
/// not wait for the disk. Blocking: run it on the blocking pool. Errors are left to the reads
/// that follow (they report a record they cannot read).
pub fn prefetch(ranges: &[ColdRange]) {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; PREFETCH_CHUNK_BYTES];
    for r in ranges {
        let mut at = r.offset;
        let end = r.offset + r.len;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            match r.file.read_at(&mut buf[..n], at) {
                Ok(0) | Err(_) => break,
                Ok(read) => at += read as u64,
            }
        }
    }
}

impl Store {
    /// The ranges that reading the records at `locs` would fault in from disk: runs of
    /// records of one segment no more than [`PREFETCH_GAP_BYTES`] apart, each from its lowest
    /// record to [`PREFETCH_TAIL_BYTES`] past its highest, when not all in the page cache. For
    /// [`prefetch`], on the blocking pool, before the reads.
    pub fn cold_ranges(&self, locs: impl Iterator<Item = RecordLoc>) -> Vec<ColdRange> {
        let mut sorted: Vec<RecordLoc> = locs.collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut cold = Vec::new();
        let mut i = 0;
        while i < sorted.len() {
            let (segment, low) = (sorted[i].segment, sorted[i].offset as usize);
            let mut high = low;
            i += 1;
            while i < sorted.len()
                && sorted[i].segment == segment
                && sorted[i].offset as usize - high <= PREFETCH_GAP_BYTES
            {
                high = sorted[i].offset as usize;
                i += 1;
            }
            let Some(seg) = self.segments.get(segment as usize).and_then(Option::as_ref) else {
                continue;
            };
            let end = (high + PREFETCH_TAIL_BYTES).min(seg.write_pos());
            if low < end && !seg.resident(low, end) {
                cold.push(ColdRange {
                    file: seg.file(),
                    offset: low as u64,
                    len: (end - low) as u64,
                });
            }
        }
        cold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::cache::tests::{append_records, record, store_with_window};

    /// What a search reads ahead: the ranges of records evicted from the page cache, and none
    /// for records in it; once read ahead, they are cached.
    #[test]
    fn cold_ranges_name_evicted_records_until_they_are_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_window(dir.path());
        let locs = append_records(&mut store, 0..4000);
        let newest = &locs[locs.len() - 100..];
        assert!(store.cold_ranges(newest.iter().copied()).is_empty());
        // Records 100-599, ~2 MB well behind the 2 MiB window: one range, from the first.
        let old = &locs[100..600];
        let cold = store.cold_ranges(old.iter().rev().copied());
        assert_eq!(cold.len(), 1);
        assert_eq!(cold[0].offset, u64::from(old[0].offset));
        assert_eq!(
            cold[0].offset + cold[0].len,
            u64::from(old[499].offset) + PREFETCH_TAIL_BYTES as u64
        );
        // Records far apart make separate ranges, not one with everything between them.
        let apart = locs[1000..1010].iter().chain(&locs[3000..3010]).copied();
        let ranges = store.cold_ranges(apart);
        assert_eq!(ranges.len(), 2);
        assert!(ranges
            .iter()
            .all(|r| r.len < 2 * PREFETCH_TAIL_BYTES as u64));
        prefetch(&cold);
        assert!(
            store.cold_ranges(old.iter().copied()).is_empty(),
            "cached once read ahead"
        );
        for (i, loc) in old.iter().enumerate() {
            assert_eq!(store.read(*loc).unwrap().1, &record(100 + i as u32)[..]);
        }
    }
}
