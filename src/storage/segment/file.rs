//! A segment's file: created crash-atomically and sized sparse after a check for free
//! space, opened, and synced (with its directory).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;

use memmap2::MmapOptions;

use super::{file_name, Segment, SegmentError, SegmentMeta, SEGMENT_HEADER_BYTES, TMP_EXTENSION};
use crate::limits::DISK_FREE_RESERVE_BYTES;
use crate::storage::frame::HEADER_BYTES;

impl Segment {
    /// Unlinks the file and drops the map: the bytes it held go back to the file system once
    /// no sync or read-ahead still holds the file open. Blocking (`unlink`, `munmap`).
    pub fn delete(self) -> io::Result<u64> {
        let bytes = self.write_pos() as u64;
        std::fs::remove_file(&self.path)?;
        Ok(bytes)
    }

    /// Creates segment `meta.seq` in `dir`, sized to `meta.file_bytes` (sparse; see
    /// `preallocate`). Blocking: the shard prepares its next segment on the blocking pool
    /// while the active one fills.
    pub fn create(dir: &Path, meta: SegmentMeta) -> io::Result<Segment> {
        debug_assert!(meta.file_bytes as usize > SEGMENT_HEADER_BYTES + HEADER_BYTES);
        debug_assert!(meta.file_bytes <= u32::MAX as u64, "offsets are u32");
        use std::os::unix::fs::FileExt;
        // Crash-atomic: the file gets its final name only once its header is on disk, so a
        // crash never leaves a segment with a missing header. (The caller syncs the directory.)
        let path = dir.join(file_name(meta.seq));
        let tmp = path.with_extension(TMP_EXTENSION);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let cleanup = |e: io::Error| {
            let _ = std::fs::remove_file(&tmp);
            e
        };
        preallocate(&file, dir, meta.file_bytes).map_err(cleanup)?;
        file.write_all_at(&meta.encode(), 0).map_err(cleanup)?;
        file.sync_data().map_err(cleanup)?;
        std::fs::rename(&tmp, &path).map_err(cleanup)?;
        // SAFETY: the file is ours: created above, owned by exactly this shard, and never
        // truncated while mapped. Other processes are not expected to write Glust's data dir.
        let map = match unsafe { MmapOptions::new().map(&file) } {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        Ok(Segment {
            meta,
            path,
            file: Arc::new(file),
            map,
            writable: true,
            write_pos: SEGMENT_HEADER_BYTES,
            staged: Vec::new(),
        })
    }

    /// Opens an existing segment. `writable` opens it for appending (the newest segment of the
    /// shard's own directory). Blocking.
    pub fn open(path: &Path, writable: bool) -> Result<Segment, SegmentError> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        let len = file.metadata()?.len();
        if len < (SEGMENT_HEADER_BYTES + HEADER_BYTES) as u64 {
            return Err(SegmentError::TooSmall(len));
        }
        // SAFETY: as in `create`; a segment is never truncated while mapped.
        let map = unsafe { MmapOptions::new().map(&file)? };
        let meta = SegmentMeta::decode(&map)?;
        Ok(Segment {
            meta,
            path: path.to_owned(),
            file: Arc::new(file),
            map,
            writable,
            write_pos: SEGMENT_HEADER_BYTES,
            staged: Vec::new(),
        })
    }
}

/// Sizes a new segment file, sparse: blocks are allocated as pages are first written.
///
/// Why not `fallocate`: measured on ext4 here when appends still stored through a writable
/// map, first writes into fallocate'd (unwritten) extents ran at ~480 MiB/s, into a sparse
/// file at ~3 GB/s. The price of a sparse file is that an append can meet a full disk (an
/// `ENOSPC` from the write, failing that request). So a segment is only created while the
/// file system has room for it, one more, and [`DISK_FREE_RESERVE_BYTES`]; Glust then refuses
/// writes (503) long before its own segments could fill the disk. Another process filling the
/// disk remains a risk an operator should monitor for.
fn preallocate(file: &File, dir: &Path, bytes: u64) -> io::Result<()> {
    let free = free_bytes(dir)?;
    let needed = 2 * bytes + DISK_FREE_RESERVE_BYTES;
    if free < needed {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "only {} MiB free on the data file system; a new segment needs {} MiB",
                free >> 20,
                needed >> 20
            ),
        ));
    }
    file.set_len(bytes)
}

/// Bytes available to this (unprivileged-equivalent) process on the file system of `dir`.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs fills the zeroed struct; `c` is a valid NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// Makes everything appended to the file durable (`fdatasync`). Blocking.
pub fn sync_file(file: &File) -> io::Result<()> {
    file.sync_data()
}

/// Makes a directory entry (a new segment file) durable. Blocking.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
