//! Per-shard storage: a table of mmapped segments, one of them active.
//!
//! A shard owns `<data-dir>/<shard-id>/` exclusively; nothing else writes there. It also reads
//! (never writes) the directories of shards that no longer exist after the shard count was
//! lowered: directory `k >= shards` is adopted by shard `k % shards` (resharding keeps old data
//! readable without moving it). The byte layout is in `shards/README.md`, [`frame`] and
//! [`segment`].
//!
//! Architecture invariant: storage knows records (kind + bytes) and segments, not OTLP and not
//! HTTP. It never blocks on the network; its blocking file calls are named as such.

pub mod frame;
pub mod segment;

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use frame::RecordKind;
use segment::{ScanReport, Segment, SegmentError, SegmentMeta, PAGE_BYTES, SEGMENT_HEADER_BYTES};

use crate::index::RecordLoc;
use crate::limits::{
    GROUP_WRITE_BYTES_MAX, PREFETCH_CHUNK_BYTES, PREFETCH_GAP_BYTES, PREFETCH_TAIL_BYTES,
    WRITEBACK_STEP_BYTES, WRITEBACK_TRAIL_BYTES,
};
use crate::route::ShardId;

/// How a shard's storage is laid out and sized.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub shard: ShardId,
    pub shard_count: u32,
    /// Size of each new segment file.
    pub segment_bytes: u64,
    /// Bytes behind the append position kept in the page cache; older written data is
    /// evicted once on disk ([`CacheWork`]). `None`: left to the kernel.
    pub page_cache_keep: Option<u64>,
}

impl StoreConfig {
    /// The storage of shard 0 of 1 in `data_dir`: a store on its own (tests, benches).
    pub fn single_shard(
        data_dir: &Path,
        segment_bytes: u64,
        page_cache_keep: Option<u64>,
    ) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.to_owned(),
            shard: ShardId(0),
            shard_count: 1,
            segment_bytes,
            page_cache_keep,
        }
    }

    pub fn own_dir(&self) -> PathBuf {
        shard_dir(&self.data_dir, self.shard.0)
    }
}

pub fn shard_dir(data_dir: &Path, shard: u32) -> PathBuf {
    data_dir.join(shard.to_string())
}

/// What opening a shard's storage found, for the start-up log and the metrics.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub segments: u64,
    pub records: u64,
    pub corrupt_records: u64,
    pub truncated_bytes: u64,
    /// Segment files that could not be opened at all (bad header); left in place, not served.
    pub unreadable_segments: Vec<(PathBuf, String)>,
    /// Segments written under another shard count: their traces may not live on their owner
    /// under the current count, so trace lookups must also ask this shard.
    pub foreign_generation: bool,
}

impl RecoveryReport {
    fn add(&mut self, scan: &ScanReport) {
        self.segments += 1;
        self.records += scan.records;
        self.corrupt_records += scan.corrupt;
        self.truncated_bytes += scan.truncated_bytes;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use data directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot create segment {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("record of {bytes} bytes does not fit in a {segment_bytes}-byte segment")]
    RecordTooLarge { bytes: usize, segment_bytes: u64 },
    #[error("cannot append to segment {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("storage stopped after a failed sync or write; restart to recover: {0}")]
    Failed(String),
}

/// One shard's segments.
pub struct Store {
    config: StoreConfig,
    /// Every open segment; a [`RecordLoc`] names its slot. Slots are never reused.
    segments: Vec<Segment>,
    /// Slot of the segment appended to; always writable.
    active: usize,
    next_seq: u64,
    /// Slots written to since the last sync started (the active one and any sealed
    /// meanwhile). Marked when a write succeeds, not when records are staged: a sync that
    /// starts between the two must not take the slot off the list.
    dirty: Vec<usize>,
    /// Set after a failed sync: the page cache can no longer be trusted, nothing more is
    /// accepted until a restart re-verifies the segments.
    failed: Option<String>,
    /// The next segment, created on the blocking pool while the active one fills, so a
    /// rollover on the append path costs no file creation.
    next: Option<Segment>,
    /// A next segment is being prepared (its sequence number is reserved).
    preparing: bool,
    /// Offset in the active segment up to which writeback was started early.
    written_back: usize,
    /// Frame bytes written since the store was opened: the clock of `evictions`.
    appended: u64,
    /// Ranges of written records to start writing back, for the next [`CacheWork`].
    writebacks: Vec<(Arc<File>, u64, u64)>,
    /// Written ranges waiting to be evicted from the page cache, oldest first.
    evictions: VecDeque<Eviction>,
    /// A write of staged records that failed since the last [`Store::flush`] (at a rollover
    /// or an early flush of a large batch): the next flush reports it, because the records
    /// it dropped were staged for requests that wait on that flush.
    lost: Option<StoreError>,
}

/// A range of a segment to evict from the page cache once `appended` reaches `due`.
struct Eviction {
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

/// Asks the kernel to drop the clean, unmapped page-cache pages of a file range.
fn evict(file: &File, offset: u64, len: u64) {
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

/// What the runtime should create off the append path: see [`Store::next_to_prepare`].
pub struct Preparation {
    pub dir: PathBuf,
    pub meta: SegmentMeta,
}

impl Preparation {
    /// Creates the segment and makes its directory entry durable. Blocking: run it on the
    /// blocking pool. Doing this ahead keeps file creation, the header fsync, the rename and
    /// the directory fsync off the append path.
    pub fn run(self) -> io::Result<Segment> {
        let _low = LowPriority::enter(PREPARE_NICE);
        let seg = Segment::create(&self.dir, self.meta)?;
        segment::sync_dir(&self.dir)?;
        Ok(seg)
    }
}

/// Scheduling priority (nice) of segment preparation. Measured with `--shards 1` under wrk on
/// this 2-core VM: nice 5 or 19 starved preparation until appends had to wait for it
/// (p99.9 ~200 ms); nice 0 kept the server-side p99.9 near 20 ms.
const PREPARE_NICE: libc::c_int = 0;

/// Lowers the calling thread's CPU priority (to `nice`) until dropped.
struct LowPriority(Option<libc::c_int>);

impl LowPriority {
    fn enter(nice: libc::c_int) -> LowPriority {
        // SAFETY: getpriority/setpriority on the calling thread (PRIO_PROCESS with a thread id
        // applies to that thread on Linux); no memory is shared.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            *libc::__errno_location() = 0;
            let old = libc::getpriority(libc::PRIO_PROCESS, tid);
            if *libc::__errno_location() != 0 {
                return LowPriority(None);
            }
            libc::setpriority(libc::PRIO_PROCESS, tid, nice);
            LowPriority(Some(old))
        }
    }
}

impl Drop for LowPriority {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            // SAFETY: as above. Restoring needs CAP_SYS_NICE; without it the thread stays at
            // low priority, which only slows later blocking work (fsyncs wait on I/O anyway).
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, old);
            }
        }
    }
}

impl Store {
    /// Opens (or creates) the shard's storage, recovering every segment: each record is
    /// checked, torn tails are cut, corrupt records counted. `visit` sees every intact record
    /// in storage order, so the caller can rebuild its index. Blocking: run at start-up.
    pub fn open(
        config: StoreConfig,
        mut visit: impl FnMut(RecordLoc, RecordKind, &[u8]),
        mut progress: impl FnMut(&RecoveryReport, usize),
    ) -> Result<(Store, RecoveryReport), StoreError> {
        let own = config.own_dir();
        std::fs::create_dir_all(&own).map_err(|source| StoreError::Dir {
            path: own.clone(),
            source,
        })?;
        remove_leftover_tmp_files(&own);
        let mut report = RecoveryReport::default();
        let mut segments = Vec::new();

        // Adopted directories of shards that no longer exist, read only.
        let mut dirs = adopted_dirs(&config)?;
        dirs.push(own.clone());
        let total: usize = dirs
            .iter()
            .map(|d| list_segments(d).map(|v| v.len()).unwrap_or(0))
            .sum();
        let mut next_seq = 0;
        for dir in &dirs {
            let is_own = *dir == own;
            let files = list_segments(dir).map_err(|source| StoreError::Dir {
                path: dir.clone(),
                source,
            })?;
            let last = files.len().saturating_sub(1);
            for (i, (seq, path)) in files.into_iter().enumerate() {
                if is_own {
                    next_seq = next_seq.max(seq + 1);
                }
                let writable = is_own && i == last;
                let mut seg = match Segment::open(&path, writable) {
                    Ok(seg) => seg,
                    Err(e) => {
                        report.unreadable_segments.push((path, e.to_string()));
                        continue;
                    }
                };
                if seg.meta.shard_count != config.shard_count || !is_own {
                    report.foreign_generation = true;
                }
                let slot = segments.len() as u32;
                let scan = seg.recover(|offset, kind, payload| {
                    visit(
                        RecordLoc {
                            segment: slot,
                            offset,
                        },
                        kind,
                        payload,
                    )
                });
                report.add(&scan);
                if let Some(why) = &scan.sealed_after_error {
                    tracing::warn!("{why}; the segment is sealed and appends go to a new one");
                }
                if config.page_cache_keep.is_some() && !seg.is_writable() {
                    // The scan read all of it through the map: let it go, or recovering a
                    // large store would fill the page cache with old records.
                    seg.unmap_range(0, seg.len());
                    evict(&seg.file(), 0, seg.len() as u64);
                }
                segments.push(seg);
                progress(&report, total);
            }
        }

        let mut store = Store {
            config,
            segments,
            active: usize::MAX,
            next_seq,
            dirty: Vec::new(),
            failed: None,
            next: None,
            preparing: false,
            written_back: 0,
            appended: 0,
            writebacks: Vec::new(),
            evictions: VecDeque::new(),
            lost: None,
        };
        // Appends continue in the newest own segment only if it was written under the same
        // shard count: records of one generation must not go into a segment whose header
        // names another, or lookups after the next change of count would not find them.
        match store.segments.last() {
            Some(seg)
                if seg.is_writable()
                    && seg.meta.shard_count == store.config.shard_count
                    && seg.meta.shard_id == store.config.shard.0 =>
            {
                store.active = store.segments.len() - 1
            }
            _ => store.roll()?,
        }
        Ok((store, report))
    }

    /// Appends one record and writes it: [`Store::stage`], then [`Store::flush`].
    pub fn append(&mut self, kind: RecordKind, payload: &[u8]) -> Result<RecordLoc, StoreError> {
        let loc = self.stage(kind, payload)?;
        self.flush()?;
        Ok(loc)
    }

    /// Stages one record in the active segment, rolling to a new segment when it is full;
    /// returns where the record will be. It is written, and readable, after the next
    /// successful [`Store::flush`]; until then, nothing may hand out its location.
    pub fn stage(&mut self, kind: RecordKind, payload: &[u8]) -> Result<RecordLoc, StoreError> {
        self.healthy()?;
        let room = self.config.segment_bytes as usize - SEGMENT_HEADER_BYTES;
        if frame::frame_bytes(payload.len()) > room {
            return Err(StoreError::RecordTooLarge {
                bytes: payload.len(),
                segment_bytes: self.config.segment_bytes,
            });
        }
        if !self.segments[self.active].fits(payload.len()) {
            self.roll()?;
        } else if self.segments[self.active].staged_bytes() >= GROUP_WRITE_BYTES_MAX {
            self.flush_early();
        }
        // Either write may have failed the store: stage nothing more.
        self.healthy()?;
        let offset = self.segments[self.active].stage(kind, payload);
        Ok(RecordLoc {
            segment: self.active as u32,
            offset,
        })
    }

    /// `Failed` once a write or sync has failed (see [`Store::failed`]).
    fn healthy(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(why) => Err(StoreError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Writes every record staged since the last call (one `pwrite`), or reports why some
    /// were dropped: this write's error, or an earlier one at a rollover or an early flush.
    /// On an error, every record staged since the last call must be taken as lost.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let now = self.flush_active();
        match self.lost.take() {
            Some(earlier) => Err(earlier),
            None => now,
        }
    }

    /// Writes what the active segment has staged.
    fn flush_active(&mut self) -> Result<(), StoreError> {
        let Some(seg) = self.segments.get_mut(self.active) else {
            return Ok(());
        };
        match seg.flush() {
            Ok(0) => Ok(()),
            Ok(n) => {
                if self.dirty.last() != Some(&self.active) {
                    self.dirty.push(self.active);
                }
                self.appended += n as u64;
                Ok(())
            }
            Err(source) => {
                let path = seg.path.clone();
                // A full disk may pass (the write position did not move; the next write
                // overwrites what this one left). Any other write error leaves the page cache
                // in a state nothing here can vouch for: stop, as after a failed sync.
                if source.kind() != io::ErrorKind::StorageFull {
                    self.sync_failed(format!("cannot write to {}: {source}", path.display()));
                }
                Err(StoreError::Write { path, source })
            }
        }
    }

    /// Writes what is staged before the batch grows past [`GROUP_WRITE_BYTES_MAX`]; a failure
    /// is kept for the next [`Store::flush`].
    fn flush_early(&mut self) {
        if let Err(e) = self.flush_active() {
            self.lost.get_or_insert(e);
        }
    }

    /// Starts a new segment and seals the active one (if any). Blocking (file creation).
    /// The new segment is created first: if that fails (disk full), the active segment stays
    /// writable and the append that needed room fails alone.
    fn roll(&mut self) -> Result<(), StoreError> {
        let seg = match self.next.take() {
            Some(prepared) => prepared,
            None => {
                let meta = self.reserve_meta();
                let dir = self.config.own_dir();
                let seg = Segment::create(&dir, meta).map_err(|source| StoreError::Create {
                    path: dir.join(segment::file_name(meta.seq)),
                    source,
                })?;
                // The new file's directory entry must survive a crash too; failing that is
                // a failed sync like any other.
                if let Err(e) = segment::sync_dir(&dir) {
                    let why = format!("cannot sync directory {}: {e}", dir.display());
                    self.sync_failed(why.clone());
                    return Err(StoreError::Failed(why));
                }
                seg
            }
        };
        // The old active segment is full: no more appends go there. What it has staged is
        // written now; its tail is written back (and evicted) like the rest of it.
        self.flush_early();
        if let Some(old) = self.segments.get_mut(self.active) {
            old.release_staging();
            let end = old.write_pos().next_multiple_of(PAGE_BYTES).min(old.len());
            if end > self.written_back {
                self.write_back(end, 0);
            }
        }
        self.segments.push(seg);
        self.active = self.segments.len() - 1;
        self.written_back = 0;
        Ok(())
    }

    /// Page-cache upkeep that is due, for the caller to run on the blocking pool; `None` when
    /// there is none. Writeback: everything written up to [`WRITEBACK_TRAIL_BYTES`] behind the
    /// append position, once at least [`WRITEBACK_STEP_BYTES`] accumulated (starting it early
    /// and behind the writer keeps each sync small). Eviction: written ranges further behind
    /// than [`StoreConfig::page_cache_keep`] (see [`CacheWork`]).
    pub fn cache_work(&mut self) -> Option<CacheWork> {
        let write_pos = self.segments[self.active].write_pos();
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
            let seg = &self.segments[due.slot];
            // Pages a query read through the map are mapped, and the kernel keeps mapped
            // pages: unmap first (a page-table walk on this thread, no I/O).
            seg.unmap_range(due.start, due.end);
            work.evict
                .push((seg.file(), due.start as u64, (due.end - due.start) as u64));
            self.evictions.pop_front();
        }
        (!work.is_empty()).then_some(work)
    }

    /// Queues writeback of the active segment from where the last one stopped up to `end`,
    /// and the range's eviction once it is [`StoreConfig::page_cache_keep`] behind the append
    /// position; `lag` is how far behind it is already.
    fn write_back(&mut self, end: usize, lag: u64) {
        let start = self.written_back;
        debug_assert!(start % PAGE_BYTES == 0 && start < end);
        self.written_back = end;
        let file = self.segments[self.active].file();
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

    /// Takes the next sequence number for a new segment of this shard.
    fn reserve_meta(&mut self) -> SegmentMeta {
        let meta = SegmentMeta {
            shard_id: self.config.shard.0,
            shard_count: self.config.shard_count,
            seq: self.next_seq,
            created_unix_nanos: now_unix_nanos(),
            file_bytes: self.config.segment_bytes,
        };
        self.next_seq += 1;
        meta
    }

    /// When no next segment is ready or being prepared: reserves the next one for the caller
    /// to create on the blocking pool ([`Preparation::run`]) and hand back with
    /// [`Store::install_next`]. So one segment is always being prepared or ready ahead of the
    /// active one.
    pub fn next_to_prepare(&mut self) -> Option<Preparation> {
        if self.preparing || self.next.is_some() {
            return None;
        }
        self.preparing = true;
        Some(Preparation {
            dir: self.config.own_dir(),
            meta: self.reserve_meta(),
        })
    }

    /// Whether appending `frames` bytes (framing included) would need a rollover while the
    /// next segment is still being prepared: the caller should wait for it rather than have
    /// [`Store::stage`] create one on the spot (file creation and fsyncs, on the reactor).
    pub fn should_wait_for_next(&self, frame_bytes_total: usize) -> bool {
        let active = &self.segments[self.active];
        self.preparing && self.next.is_none() && active.end() + frame_bytes_total > active.len()
    }

    /// Takes a prepared segment. One that lost the race (the active segment filled up and a
    /// later one was created on the spot) is deleted: it is empty, and using it after a newer
    /// segment would break the age order of the files.
    pub fn install_next(&mut self, prepared: io::Result<Segment>) {
        self.preparing = false;
        match prepared {
            Ok(seg) if seg.meta.seq > self.segments[self.active].meta.seq => {
                self.next = Some(seg);
            }
            Ok(seg) => {
                let path = seg.path.clone();
                drop(seg);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(segment = %path.display(), "cannot remove unused segment: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(shard = %self.config.shard, "cannot prepare the next segment: {e}");
            }
        }
    }

    /// The payload of the record at `loc`, its frame and CRC checked again.
    pub fn read(&self, loc: RecordLoc) -> Option<(RecordKind, &[u8])> {
        let seg = self.segments.get(loc.segment as usize)?;
        match seg.read(loc.offset) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(segment = %seg.path.display(), offset = loc.offset, "unreadable record: {e}");
                None
            }
        }
    }

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
            let Some(seg) = self.segments.get(segment as usize) else {
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

    /// Files with writes not yet covered by a sync; clears the dirty set. The caller syncs
    /// them (blocking, off the reactor) and reports the outcome with [`Store::sync_failed`].
    pub fn take_dirty(&mut self) -> Vec<Arc<File>> {
        let files = self
            .dirty
            .iter()
            .map(|&s| self.segments[s].file())
            .collect();
        self.dirty.clear();
        files
    }

    /// Records that a sync (or a write) failed: from now on every append fails.
    pub fn sync_failed(&mut self, why: String) {
        tracing::error!(shard = %self.config.shard, "storage stops accepting writes: {why}");
        self.failed = Some(why);
    }

    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Bytes written to segments (headers and padding included).
    pub fn bytes_written(&self) -> u64 {
        self.segments.iter().map(|s| s.write_pos() as u64).sum()
    }
}

/// Directories `k >= shard_count` with `k % shard_count == shard`: shards that no longer exist.
fn adopted_dirs(config: &StoreConfig) -> Result<Vec<PathBuf>, StoreError> {
    let entries = std::fs::read_dir(&config.data_dir).map_err(|source| StoreError::Dir {
        path: config.data_dir.clone(),
        source,
    })?;
    let mut ids: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&k| k >= config.shard_count && k % config.shard_count == config.shard.0)
        .collect();
    ids.sort_unstable();
    Ok(ids
        .into_iter()
        .map(|k| shard_dir(&config.data_dir, k))
        .collect())
}

/// Removes segments whose creation a crash interrupted (they never got their final name).
fn remove_leftover_tmp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.ends_with(&format!(".{}", segment::TMP_EXTENSION)))
        {
            tracing::info!(file = %e.path().display(), "removing a segment whose creation was interrupted");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Segment files of a directory, oldest first.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let seq = segment::parse_file_name(e.file_name().to_str()?)?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl From<SegmentError> for StoreError {
    fn from(e: SegmentError) -> Self {
        StoreError::Failed(e.to_string())
    }
}

#[cfg(test)]
impl Store {
    /// Test hook: every later write to the active segment fails ([`Segment::fail_writes`]).
    pub(crate) fn fail_writes(&mut self) {
        self.segments[self.active].fail_writes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_written_by_flush_or_once_it_outgrows_the_group_write_limit() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::single_shard(dir.path(), 64 << 20, None);
        let (mut store, _) = Store::open(config, |_, _, _| {}, |_, _| {}).unwrap();
        let small = store.stage(RecordKind::Logs, b"staged").unwrap();
        assert!(
            store.read(small).is_none(),
            "not served before it is written"
        );
        store.flush().unwrap();
        assert_eq!(store.read(small).unwrap().1, b"staged");
        // A batch larger than the limit: its first megabyte is written before the flush.
        let record = vec![3u8; 100 << 10];
        let locs: Vec<RecordLoc> = (0..15)
            .map(|_| store.stage(RecordKind::Spans, &record).unwrap())
            .collect();
        let early = locs.iter().filter(|l| store.read(**l).is_some()).count();
        let per_write = GROUP_WRITE_BYTES_MAX.div_ceil(frame::frame_bytes(record.len()));
        assert_eq!(early, per_write, "written before the flush");
        store.flush().unwrap();
        assert!(locs
            .iter()
            .all(|l| store.read(*l).unwrap().1 == &record[..]));
    }

    #[test]
    fn a_write_that_fails_at_a_rollover_fails_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let segment_bytes = 1 << 16;
        let config = StoreConfig::single_shard(dir.path(), segment_bytes, None);
        let (mut store, _) = Store::open(config, |_, _, _| {}, |_, _| {}).unwrap();
        let record = vec![5u8; 20 << 10];
        let first = store.stage(RecordKind::Spans, &record).unwrap();
        store.fail_writes();
        let locs: Vec<RecordLoc> = (0..2)
            .map(|_| store.stage(RecordKind::Spans, &record).unwrap())
            .collect();
        assert_eq!(locs[1].segment, first.segment);
        // The fourth record does not fit: the rollover writes the first three, which fails.
        // Not a full disk: the store stops, as after a failed sync, and stages nothing more.
        let fourth = store.stage(RecordKind::Spans, &record);
        assert!(matches!(fourth, Err(StoreError::Failed(_))), "{fourth:?}");
        assert!(store.failed().is_some());
        // The members of the batch learn it from the flush they wait on.
        let err = store.flush().unwrap_err();
        assert!(matches!(err, StoreError::Write { .. }), "{err}");
        assert!(store.read(first).is_none() && store.read(locs[0]).is_none());
        assert!(store.take_dirty().is_empty(), "nothing was written");
    }

    /// A sync that starts after records were staged but before they are written must not
    /// take their segment off the dirty list: the write marks it.
    #[test]
    fn a_segment_is_dirty_from_its_write_not_from_staging() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::single_shard(dir.path(), 1 << 20, None);
        let (mut store, _) = Store::open(config, |_, _, _| {}, |_, _| {}).unwrap();
        store.append(RecordKind::Logs, b"written").unwrap();
        store.stage(RecordKind::Logs, b"staged").unwrap();
        assert_eq!(store.take_dirty().len(), 1, "the first write");
        store.flush().unwrap();
        assert_eq!(
            store.take_dirty().len(),
            1,
            "the second write, after that sync began"
        );
        assert!(store.take_dirty().is_empty());
    }

    /// Pages of `[ptr, ptr + len)` (page aligned) resident in memory, by `mincore`.
    fn resident_pages(ptr: *const u8, len: usize) -> usize {
        let mut vec = vec![0u8; len / PAGE_BYTES];
        // SAFETY: the range lies inside a live mapping; `vec` has one byte per page.
        let rc = unsafe { libc::mincore(ptr as *mut libc::c_void, len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    /// Record `i` of the page-cache tests: 4,000 bytes, each record's own.
    fn record(i: u32) -> Vec<u8> {
        vec![(i % 251) as u8 + 1; 4000]
    }

    /// A store that keeps its newest 2 MiB in the page cache.
    fn store_with_window(dir: &Path) -> Store {
        let config = StoreConfig::single_shard(dir, 64 << 20, Some(2 << 20));
        Store::open(config, |_, _, _| {}, |_, _| {}).unwrap().0
    }

    /// Appends records `ids`, running the cache work (writeback, eviction) as the runtime does.
    fn append_records(store: &mut Store, ids: std::ops::Range<u32>) -> Vec<RecordLoc> {
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
