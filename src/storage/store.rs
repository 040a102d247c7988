//! [`Store`]: one shard's segments, its configuration and errors, the append path (stage,
//! group write, rollover), reads, and what a sync needs (the dirty segments, failure).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cache::Eviction;
use super::frame::{self, RecordKind};
use super::segment::{self, Segment, PAGE_BYTES, SEGMENT_HEADER_BYTES};
use crate::index::RecordLoc;
use crate::limits::GROUP_WRITE_BYTES_MAX;
use crate::route::ShardId;

// Doc links only.
#[cfg(doc)]
use super::CacheWork;

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

/// Why a store operation failed. `Clone` and `Send`: a failed group write tells each of its
/// requests, some of them waiting on other shards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use data directory {path}: {source}")]
    Dir { path: PathBuf, source: IoFailure },
    #[error("cannot create segment {path}: {source}")]
    Create { path: PathBuf, source: IoFailure },
    #[error("record of {bytes} bytes does not fit in a {segment_bytes}-byte segment")]
    RecordTooLarge { bytes: usize, segment_bytes: u64 },
    /// A write that left the store taking writes: a full disk (the write position did not
    /// move, the next write overwrites what this one left).
    #[error("cannot append to segment {path}: {source}")]
    Write { path: PathBuf, source: IoFailure },
    #[error("storage stopped after a failed sync or write; restart to recover: {0}")]
    Failed(StoreFailure),
}

/// Why a store stopped taking writes: after any of these the page cache can no longer be
/// vouched for, and only a restart (which re-verifies the segments) resumes writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    #[error("cannot write to {path}: {source}")]
    Write { path: PathBuf, source: IoFailure },
    #[error("fsync failed: {0}")]
    Sync(IoFailure),
    #[error("cannot sync directory {path}: {source}")]
    SyncDir { path: PathBuf, source: IoFailure },
    #[error("segment {path}: {reason}")]
    Segment { path: PathBuf, reason: Arc<str> },
}

/// An I/O error as storage reports it: its kind, to match on, and its text, shared, so that
/// it can be told to many waiters and sent to other shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoFailure {
    kind: io::ErrorKind,
    text: Arc<str>,
}

impl IoFailure {
    pub fn kind(&self) -> io::ErrorKind {
        self.kind
    }
}

impl From<io::Error> for IoFailure {
    fn from(e: io::Error) -> Self {
        IoFailure {
            kind: e.kind(),
            text: e.to_string().into(),
        }
    }
}

impl std::fmt::Display for IoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for IoFailure {}

/// What names a raw segment, and the sealed segment made of it, across slots and directories:
/// the shard id and sequence number of its header.
pub type SegmentKey = (u32, u64);

/// A segment retention may delete ([`Store::deletable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletable {
    pub slot: u32,
    /// Bytes written to it.
    pub bytes: u64,
    /// The file's modification time: the last time records were written to it.
    pub last_write: std::time::SystemTime,
    pub created_unix_nanos: u64,
    pub path: PathBuf,
    /// In the shard's own directory, not one adopted from a shard that no longer exists.
    pub own: bool,
}

/// One shard's segments.
pub struct Store {
    pub(super) config: StoreConfig,
    /// Every segment opened; a [`RecordLoc`] names its slot. Slots are never reused: a
    /// segment retention deleted leaves `None`.
    pub(super) segments: Vec<Option<Segment>>,
    /// Slot of the segment appended to; always writable.
    pub(super) active: usize,
    /// Bytes of this shard's own segments other than the active one ([`Store::full_own_bytes`]),
    /// counted again when a segment rolls over or is taken out: slots are never reused, so a
    /// count over them on every append would cost more as the store ages.
    pub(super) full_own_bytes: u64,
    pub(super) next_seq: u64,
    /// Slots written to since the last sync started (the active one and any sealed
    /// meanwhile). Marked when a write succeeds, not when records are staged: a sync that
    /// starts between the two must not take the slot off the list.
    pub(super) dirty: Vec<usize>,
    /// Set after a failed sync: the page cache can no longer be trusted, nothing more is
    /// accepted until a restart re-verifies the segments.
    pub(super) failed: Option<StoreFailure>,
    /// The next segment, created on the blocking pool while the active one fills, so a
    /// rollover on the append path costs no file creation.
    pub(super) next: Option<Segment>,
    /// A next segment is being prepared (its sequence number is reserved).
    pub(super) preparing: bool,
    /// Offset in the active segment up to which writeback was started early.
    pub(super) written_back: usize,
    /// Frame bytes written since the store was opened: the clock of `evictions`.
    pub(super) appended: u64,
    /// Ranges of written records to start writing back, for the next [`CacheWork`].
    pub(super) writebacks: Vec<(Arc<File>, u64, u64)>,
    /// Written ranges waiting to be evicted from the page cache, oldest first.
    pub(super) evictions: VecDeque<Eviction>,
    /// A write of staged records that failed since the last [`Store::flush`] (at a rollover
    /// or an early flush of a large batch): the next flush reports it, because the records
    /// it dropped were staged for requests that wait on that flush.
    pub(super) lost: Option<StoreError>,
}

impl Store {
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
        if !self.active_segment().fits(payload.len()) {
            self.roll()?;
        } else if self.active_segment().staged_bytes() >= GROUP_WRITE_BYTES_MAX {
            self.flush_early();
        }
        // Either write may have failed the store: stage nothing more.
        self.healthy()?;
        let offset = self.active_segment_mut().stage(kind, payload);
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
        let Some(seg) = self.segments.get_mut(self.active).and_then(Option::as_mut) else {
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
                let source = IoFailure::from(source);
                if source.kind() != io::ErrorKind::StorageFull {
                    self.sync_failed(StoreFailure::Write {
                        path: path.clone(),
                        source: source.clone(),
                    });
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
    pub(super) fn roll(&mut self) -> Result<(), StoreError> {
        let seg = match self.next.take() {
            Some(prepared) => prepared,
            None => {
                let meta = self.reserve_meta();
                let dir = self.config.own_dir();
                let seg = Segment::create(&dir, meta).map_err(|source| StoreError::Create {
                    path: dir.join(segment::file_name(meta.seq)),
                    source: source.into(),
                })?;
                // The new file's directory entry must survive a crash too; failing that is
                // a failed sync like any other.
                if let Err(e) = segment::sync_dir(&dir) {
                    let why = StoreFailure::SyncDir {
                        path: dir.clone(),
                        source: e.into(),
                    };
                    self.sync_failed(why.clone());
                    return Err(StoreError::Failed(why));
                }
                seg
            }
        };
        // The old active segment is full: no more appends go there. What it has staged is
        // written now; its tail is written back (and evicted) like the rest of it.
        self.flush_early();
        if let Some(old) = self.segments.get_mut(self.active).and_then(Option::as_mut) {
            old.release_staging();
            let end = old.write_pos().next_multiple_of(PAGE_BYTES).min(old.len());
            if end > self.written_back {
                self.write_back(end, 0);
            }
        }
        self.segments.push(Some(seg));
        self.active = self.segments.len() - 1;
        self.written_back = 0;
        self.recount_full_own_bytes();
        Ok(())
    }

    /// The payload of the record at `loc`, its frame and CRC checked again.
    pub fn read(&self, loc: RecordLoc) -> Option<(RecordKind, &[u8])> {
        let seg = self.segments.get(loc.segment as usize)?.as_ref()?;
        match seg.read(loc.offset) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(segment = %seg.path.display(), offset = loc.offset, "unreadable record: {e}");
                None
            }
        }
    }

    /// Files with writes not yet covered by a sync; clears the dirty set. The caller syncs
    /// them (blocking, off the reactor) and reports the outcome with [`Store::sync_failed`].
    pub fn take_dirty(&mut self) -> Vec<Arc<File>> {
        let files = self
            .dirty
            .iter()
            .filter_map(|&s| self.segments[s].as_ref().map(Segment::file))
            .collect();
        self.dirty.clear();
        files
    }

    /// Records that a sync (or a write) failed: from now on every append fails.
    pub fn sync_failed(&mut self, why: StoreFailure) {
        tracing::error!(shard = %self.config.shard, "storage stops accepting writes: {why}");
        self.failed = Some(why);
    }

    pub fn failed(&self) -> Option<&StoreFailure> {
        self.failed.as_ref()
    }

    /// Bytes written to this shard's own full segments (every one but the active one): what
    /// waits for sealing. Kept counted: the append path asks it.
    pub fn full_own_bytes(&self) -> u64 {
        self.full_own_bytes
    }

    pub(super) fn recount_full_own_bytes(&mut self) {
        let own = self.config.own_dir();
        self.full_own_bytes = self
            .segments
            .iter()
            .enumerate()
            .filter(|&(slot, _)| slot != self.active)
            .filter_map(|(_, seg)| seg.as_ref())
            .filter(|seg| seg.path.parent() == Some(own.as_path()))
            .map(|seg| seg.write_pos() as u64)
            .sum();
    }

    /// The segments that retention may delete and sealing may replace, in slot order (adopted
    /// directories' first): every one but the active one. A directory adopted from a shard that
    /// no longer exists is this shard's alone, as its own is, so its segments are sealed and
    /// retained alike. With `times`, reads each file's modification time (a `stat` each);
    /// without, `last_write` is the epoch.
    pub fn deletable(&self, times: bool) -> Vec<Deletable> {
        let own = self.config.own_dir();
        self.segments
            .iter()
            .enumerate()
            .filter(|&(slot, _)| slot != self.active)
            .filter_map(|(slot, seg)| Some((slot, seg.as_ref()?)))
            .map(|(slot, seg)| Deletable {
                slot: slot as u32,
                bytes: seg.write_pos() as u64,
                last_write: match times {
                    true => std::fs::metadata(&seg.path)
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH),
                    false => std::time::UNIX_EPOCH,
                },
                created_unix_nanos: seg.meta.created_unix_nanos,
                own: seg.path.parent() == Some(own.as_path()),
                path: seg.path.clone(),
            })
            .collect()
    }

    /// Takes the segment in `slot` (never the active one) out of the store: its records are
    /// no longer served. The caller deletes its file ([`Segment::delete`]), off the reactor.
    pub fn take_segment(&mut self, slot: u32) -> Option<Segment> {
        let slot = slot as usize;
        assert_ne!(slot, self.active, "the active segment is never deleted");
        let taken = self.segments.get_mut(slot)?.take();
        self.recount_full_own_bytes();
        taken
    }

    /// The shard id and sequence number in the header of the segment in `slot`, if held: what
    /// names it, and the sealed segment made of it, across slots and directories.
    pub fn segment_key(&self, slot: u32) -> Option<SegmentKey> {
        let seg = self.segments.get(slot as usize)?.as_ref()?;
        Some((seg.meta.shard_id, seg.meta.seq))
    }

    /// Whether the segment in `slot` is held (not deleted).
    pub fn holds(&self, slot: u32) -> bool {
        self.segments
            .get(slot as usize)
            .is_some_and(Option::is_some)
    }

    /// When the oldest segment held was created, unix nanoseconds.
    pub fn oldest_created_unix_nanos(&self) -> Option<u64> {
        self.segments
            .iter()
            .flatten()
            .map(|s| s.meta.created_unix_nanos)
            .min()
    }

    /// Segments held (deleted ones not counted).
    pub fn segment_count(&self) -> usize {
        self.segments.iter().flatten().count()
    }

    /// The segment appended to.
    pub(super) fn active_segment(&self) -> &Segment {
        self.segments[self.active]
            .as_ref()
            .expect("the active segment is never deleted")
    }

    pub(super) fn active_segment_mut(&mut self) -> &mut Segment {
        self.segments[self.active]
            .as_mut()
            .expect("the active segment is never deleted")
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Bytes written to segments (headers and padding included).
    pub fn bytes_written(&self) -> u64 {
        self.segments
            .iter()
            .flatten()
            .map(|s| s.write_pos() as u64)
            .sum()
    }
}

#[cfg(test)]
impl Store {
    /// Test hook: every later write to the active segment fails ([`Segment::fail_writes`]).
    pub(crate) fn fail_writes(&mut self) {
        self.active_segment_mut().fail_writes();
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
}
