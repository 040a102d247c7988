//! Page-cache upkeep behind the writer: writeback, and eviction of what is further behind
//! than the window ([`Store::cache_work`], run off the reactor as [`CacheWork`]).

use std::fs::File;
use std::sync::Arc;

use super::segment::PAGE_BYTES;
use super::Store;
use crate::limits::{WRITEBACK_STEP_BYTES, WRITEBACK_TRAIL_BYTES};

// Doc links only.
#[cfg(doc)]
use super::StoreConfig;

/// A range of a segment to evict from the page cache once `appended` reaches `due`.
pub(super) struct Eviction {
    slot: usize,
    start: usize,
    end: usize,
    due: u64,
}

/// Page-cache upkeep for the blocking pool, taken from [`Store::cache_work`]: start writeback
/// behind the writer, and evict what is further behind than
/// [`StoreConfig::page_cache_keep`].
///
/// Why evict at all: every byte appended needs a page-cache page, and a page that is new to
/// the machine costs far more than the copy into it (on the VM of BENCHMARKS.md, first touch
/// of guest memory runs at ~0.4 GB/s against ~20 GB/s for memory touched before, and the
/// hypervisor takes back freed memory within seconds). Evicting written pages hands them back
/// to the allocator while they are still warm, so the next appends reuse them: wrk's
/// closed-loop peak went from 0.42-0.52 M to 0.77-0.91 M spans/s. It also bounds
/// Glust's page-cache footprint instead of leaving reclaim to kswapd. The price: a query
/// reading records older than the window reads them from disk.
pub struct CacheWork {
    writeback: Vec<(Arc<File>, u64, u64)>,
    evict: Vec<(Arc<File>, u64, u64)>,
}

impl CacheWork {
    fn is_empty(&self) -> bool {
        self.writeback.is_empty() && self.evict.is_empty()
    }

    /// Blocking: run on the blocking pool.
    pub fn run(self) {
        for (file, offset, len) in &self.writeback {
            sync_range(file, *offset, *len, libc::SYNC_FILE_RANGE_WRITE);
        }
        for (file, offset, len) in &self.evict {
            // Only clean pages can be evicted: wait for (or start) their writeback first.
            sync_range(
                file,
                *offset,
                *len,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
            evict(file, *offset, *len);
        }
    }
}

/// `sync_file_range` on a file range. A hint for the page cache: durability still comes from
/// the fsync of the policy, which reports any write error (so this one ignores them).
fn sync_range(file: &File, offset: u64, len: u64, flags: libc::c_uint) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a valid descriptor.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            flags,
        );
    }
}

/// Asks the kernel to drop the clean, unmapped page-cache pages of a file range.
pub(super) fn evict(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a valid descriptor.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

impl Store {
    /// Page-cache upkeep that is due, for the caller to run on the blocking pool; `None` when
    /// there is none. Writeback: everything written up to [`WRITEBACK_TRAIL_BYTES`] behind the
    /// append position, once at least [`WRITEBACK_STEP_BYTES`] accumulated (starting it early
    /// and behind the writer keeps each sync small). Eviction: written ranges further behind
    /// than [`StoreConfig::page_cache_keep`] (see [`CacheWork`]).
    pub fn cache_work(&mut self) -> Option<CacheWork> {
        let write_pos = self.active_segment().write_pos();
        let end = write_pos.saturating_sub(WRITEBACK_TRAIL_BYTES) & !(PAGE_BYTES - 1);
        if end >= self.written_back + WRITEBACK_STEP_BYTES {
            // `end` was reached (write_pos - end) bytes ago.
            self.write_back(end, (write_pos - end) as u64);
        }
        let mut work = CacheWork {
            writeback: std::mem::take(&mut self.writebacks),
            evict: Vec::new(),
        };
        while let Some(due) = self.evictions.front().filter(|e| e.due <= self.appended) {
            // A segment deleted by retention has nothing left to evict; a full one is left to
            // sealing, which reads it whole once more and then deletes it, freeing its pages:
            // evicting it now would only make sealing read it back from disk.
            let head = due.slot == self.active;
            if let Some(seg) = self.segments[due.slot].as_ref().filter(|_| head) {
                // Pages a query read through the map are mapped, and the kernel keeps mapped
                // pages: unmap first (a page-table walk on this thread, no I/O).
                seg.unmap_range(due.start, due.end);
                work.evict
                    .push((seg.file(), due.start as u64, (due.end - due.start) as u64));
            }
            self.evictions.pop_front();
        }
        (!work.is_empty()).then_some(work)
    }

    /// Queues writeback of the active segment from where the last one stopped up to `end`,
    /// and the range's eviction once it is [`StoreConfig::page_cache_keep`] behind the append
    /// position; `lag` is how far behind it is already.
    pub(super) fn write_back(&mut self, end: usize, lag: u64) {
        let start = self.written_back;
        debug_assert!(start % PAGE_BYTES == 0 && start < end);
        self.written_back = end;
        let file = self.active_segment().file();
        self.writebacks
            .push((file, start as u64, (end - start) as u64));
        if let Some(keep) = self.config.page_cache_keep {
            self.evictions.push_back(Eviction {
                slot: self.active,
                start,
                end,
                due: self.appended + keep.saturating_sub(lag),
            });
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::io;
    use std::path::Path;

    use super::*;
    use crate::index::RecordLoc;
    use crate::storage::{RecordKind, StoreConfig};

    /// Pages of `[ptr, ptr + len)` (page aligned) resident in memory, by `mincore`.
    fn resident_pages(ptr: *const u8, len: usize) -> usize {
        let mut vec = vec![0u8; len / PAGE_BYTES];
        // SAFETY: the range lies inside a live mapping; `vec` has one byte per page.
        let rc = unsafe { libc::mincore(ptr as *mut libc::c_void, len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    /// Record `i` of the page-cache tests: 4,000 bytes, each record's own.
    pub(in crate::storage) fn record(i: u32) -> Vec<u8> {
        vec![(i % 251) as u8 + 1; 4000]
    }

    /// A store that keeps its newest 2 MiB in the page cache.
    pub(in crate::storage) fn store_with_window(dir: &Path) -> Store {
        let config = StoreConfig::single_shard(dir, 64 << 20, Some(2 << 20));
        Store::open(config, |_, _, _| {}, |_, _| {}).unwrap().0
    }

    /// Appends records `ids`, running the cache work (writeback, eviction) as the runtime does.
    pub(in crate::storage) fn append_records(
        store: &mut Store,
        ids: std::ops::Range<u32>,
    ) -> Vec<RecordLoc> {
        ids.map(|i| {
            let loc = store.append(RecordKind::Spans, &record(i)).unwrap();
            if let Some(work) = store.cache_work() {
                work.run();
            }
            loc
        })
        .collect()
    }

    #[test]
    fn written_records_behind_the_window_leave_the_page_cache_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_window(dir.path());
        let first = append_records(&mut store, 0..1)[0];
        // Read through the map, so the first pages are mapped too: eviction must unmap them.
        let start = store.read(first).unwrap().1.as_ptr() as usize & !(PAGE_BYTES - 1);
        let mut locs = vec![first];
        locs.extend(append_records(&mut store, 1..4000));
        // ~16 MiB written: the first 4 MiB are well behind the 2 MiB window.
        let resident = resident_pages(start as *const u8, 4 << 20);
        assert!(
            resident < (4 << 20) / PAGE_BYTES / 10,
            "{resident} of the first 1024 pages still cached"
        );
        // The newest records are still cached.
        let last = store.read(*locs.last().unwrap()).unwrap().1.as_ptr() as usize;
        let tail = last & !(PAGE_BYTES - 1);
        assert_eq!(
            resident_pages((tail - (1 << 20)) as *const u8, 1 << 20),
            256
        );
        // Evicted records read back from disk, intact.
        for (i, loc) in locs.iter().enumerate().step_by(97) {
            assert_eq!(store.read(*loc).unwrap().1, &record(i as u32)[..]);
        }
    }
}
