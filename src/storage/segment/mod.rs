//! One segment file: fixed size, append-only; appended to with `pwrite(2)` at the write
//! position and read through a read-only shared memory map of the same file.
//!
//! Appends are *staged* ([`Segment::stage`]: the frame is copied into a buffer) and written
//! by [`Segment::flush`], one `pwrite` for everything staged since the last one. The shard
//! stages every request that is ready in one turn of its executor and writes them together
//! ([`crate::shard::group_write`]): on the 2-core VM of BENCHMARKS.md, batches of ~15
//! requests (~700 KB) instead of one ~48 KB write per request halved the shard's time in
//! the write call (the kernel's per-call and per-page costs shrink: larger writes get larger
//! page-cache folios), and with the allocator thresholds of `main.rs` took wrk's closed-loop
//! rate from 7.1-8.3 to 9.5-10.2 thousand requests/s of 100 spans. [`Segment::append`]
//! stages and flushes one record.
//!
//! Why appends do not store through a writable map (measured with `perf` under wrk, one shard,
//! on the 2-core VM BENCHMARKS.md describes): a first store to a page of a file mapping faults,
//! and the fault reads the page *ahead* of the writer, zeroing whole readahead windows of
//! fresh page-cache pages (a third of the core); every later writeback must then write-protect
//! the writable mapping again, one TLB shootdown per page (another tenth). A positioned write
//! copies each page once and never zeroes what it overwrites whole, writeback leaves a
//! read-only mapping alone, and a full disk is an `ENOSPC` error on the write instead of a
//! `SIGBUS` on a store. Page cache is shared, so the map sees every completed write at once.
//!
//! File layout: a [`SEGMENT_HEADER_BYTES`]-byte header, then records ([`super::frame`]) from
//! offset [`SEGMENT_HEADER_BYTES`] to the first all-zero record header.
//!
//! | offset | size | field                                                       |
//! |--------|------|-------------------------------------------------------------|
//! | 0      | 8    | magic `GLUSTSEG`                                            |
//! | 8      | 4    | format version (1), u32 LE                                  |
//! | 12     | 4    | id of the shard that wrote it, u32 LE                       |
//! | 16     | 4    | number of shards when it was written (for resharding), u32  |
//! | 20     | 4    | reserved, zero                                              |
//! | 24     | 8    | sequence number, u64 LE (also in the file name)             |
//! | 32     | 8    | creation time, unix nanoseconds, u64 LE                     |
//! | 40     | 8    | size of the file when created, u64 LE                       |
//! | 48     | 12   | reserved, zero                                              |
//! | 60     | 4    | CRC32C of bytes 0..60                                       |
//!
//! File names are `seg-<20-digit sequence>.glust`, so a directory listing sorts by age.
//!
//! Blocking: creating, growing, mapping and syncing a file block the calling thread. The shard
//! runtime calls [`Segment::create`] and [`sync_file`] through glommio's `spawn_blocking`.

mod file;
mod header;
mod map;
mod scan;
#[cfg(test)]
mod tests;
mod write;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use memmap2::Mmap;

pub use file::{sync_dir, sync_file};
pub use header::{
    file_name, parse_file_name, SegmentError, SegmentMeta, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
    SEGMENT_VERSION, TMP_EXTENSION,
};
pub use map::ReadError;
pub use scan::ScanReport;

/// The page size this module assumes for page-cache ranges (x86-64, aarch64 with 4 KiB pages;
/// a larger real page only makes the ranges partial, which the kernel rounds).
pub const PAGE_BYTES: usize = 4096;

/// One open segment.
pub struct Segment {
    pub meta: SegmentMeta,
    pub path: PathBuf,
    /// Shared with blocking sync tasks. Opened for writing only if `writable`.
    file: Arc<File>,
    /// Read only, shared: sees every append as soon as its write returns.
    map: Mmap,
    /// The active segment (appended to), as opposed to a sealed one or another shard's.
    writable: bool,
    /// End of the records written to the file: what the map may serve.
    write_pos: usize,
    /// Frames staged after `write_pos` and not yet written ([`Segment::flush`]).
    staged: Vec<u8>,
}

impl Segment {
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// No record written or staged.
    pub fn is_empty(&self) -> bool {
        self.end() == SEGMENT_HEADER_BYTES
    }

    /// End of the records written to the file.
    pub fn write_pos(&self) -> usize {
        self.write_pos
    }

    /// Where the next staged record goes: after the written and the staged ones.
    pub fn end(&self) -> usize {
        self.write_pos + self.staged.len()
    }

    /// Bytes staged and not yet written.
    pub fn staged_bytes(&self) -> usize {
        self.staged.len()
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }
}
