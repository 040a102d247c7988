//! The next segment: reserved, created on the blocking pool ahead of the rollover that
//! needs it ([`Preparation`]), and handed back to the store.

use std::io;
use std::path::PathBuf;

use super::segment::{self, Segment, SegmentMeta};
use super::Store;

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
    /// Takes the next sequence number for a new segment of this shard.
    pub(super) fn reserve_meta(&mut self) -> SegmentMeta {
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
        let active = self.active_segment();
        self.preparing && self.next.is_none() && active.end() + frame_bytes_total > active.len()
    }

    /// Takes a prepared segment. One that lost the race (the active segment filled up and a
    /// later one was created on the spot) is deleted: it is empty, and using it after a newer
    /// segment would break the age order of the files.
    pub fn install_next(&mut self, prepared: io::Result<Segment>) {
        self.preparing = false;
        match prepared {
            Ok(seg) if seg.meta.seq > self.active_segment().meta.seq => {
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
}

pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
