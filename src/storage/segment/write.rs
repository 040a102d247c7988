//! Appending to a segment: records are staged in a buffer and written together with one
//! positioned write ([`Segment::flush`]).

use std::fs::File;
use std::io;
#[cfg(test)]
use std::sync::Arc;

use super::Segment;
use crate::limits::STAGED_KEEP_BYTES;
use crate::storage::frame::{self, RecordKind, FRAME_ALIGN, HEADER_BYTES};

impl Segment {
    /// Whether a record with a payload of `payload_len` bytes fits in what is left.
    pub fn fits(&self, payload_len: usize) -> bool {
        self.end() + frame::frame_bytes(payload_len) <= self.len()
    }

    /// Stages one record (header, payload, zero padding) after the written and staged ones;
    /// returns its offset. Nothing reaches the file, and [`Segment::read`] does not serve
    /// it, until [`Segment::flush`]. The caller checked [`Segment::fits`].
    ///
    /// Hot path: the payload is copied once, into the staging buffer (kept across flushes,
    /// so it stays warm and allocates only when a batch outgrows it).
    pub fn stage(&mut self, kind: RecordKind, payload: &[u8]) -> u32 {
        debug_assert!(self.fits(payload.len()));
        assert!(
            self.writable,
            "append to a read-only segment {}",
            self.path.display()
        );
        let at = self.end();
        let mut header = [0u8; HEADER_BYTES];
        frame::encode_header(kind, payload, &mut header);
        let frame_len = frame::frame_bytes(payload.len());
        self.staged.extend_from_slice(&header);
        self.staged.extend_from_slice(payload);
        self.staged
            .extend_from_slice(&ZEROS[..frame_len - HEADER_BYTES - payload.len()]);
        debug_assert_eq!(self.end(), at + frame_len);
        debug_assert!(self.end() <= self.map.len());
        at as u32
    }

    /// Writes everything staged with one positioned write; returns the bytes written.
    ///
    /// Hot path: the kernel copies the batch into the page cache. The write blocks the
    /// shard's thread like a store into a map would (page allocation, the file system's
    /// block reservation, dirty-page throttling), and nothing else. On an error (`ENOSPC`,
    /// `EIO`) every staged record is dropped and the write position does not move. What a
    /// short write put in the file past it (whole records of the batch, with valid CRCs) is
    /// zeroed again, or recovery would serve records whose requests were refused; if even
    /// that fails, the error returned is not `StorageFull`, so the store stops.
    pub fn flush(&mut self) -> io::Result<usize> {
        if self.staged.is_empty() {
            return Ok(0);
        }
        let result = write_batch_at(&self.file, self.write_pos, &self.staged);
        let n = self.staged.len();
        self.staged.clear();
        if self.staged.capacity() > STAGED_KEEP_BYTES {
            self.staged.shrink_to(STAGED_KEEP_BYTES);
        }
        match result {
            Ok(()) => {
                self.write_pos += n;
                Ok(n)
            }
            Err((0, e)) => Err(e),
            Err((done, e)) => match write_zeros_at(&self.file, self.write_pos, done) {
                Ok(()) => Err(e),
                Err(z) => Err(io::Error::other(format!(
                    "{e}; the {done} bytes written before it could not be zeroed: {z}"
                ))),
            },
        }
    }

    /// Frees the staging buffer of a segment that takes no more appends (after its last
    /// flush): otherwise every full segment would keep up to [`STAGED_KEEP_BYTES`] for the
    /// life of the process.
    pub fn release_staging(&mut self) {
        debug_assert!(self.staged.is_empty(), "flushed before it is released");
        self.staged = Vec::new();
    }

    /// Stages one record and writes it ([`Segment::stage`], [`Segment::flush`]).
    pub fn append(&mut self, kind: RecordKind, payload: &[u8]) -> io::Result<u32> {
        debug_assert!(self.staged.is_empty());
        let at = self.stage(kind, payload);
        self.flush()?;
        Ok(at)
    }
}

#[cfg(test)]
impl Segment {
    /// Test hook: every later write fails (`EBADF`: the descriptor becomes read-only), as on
    /// a dying disk.
    pub(crate) fn fail_writes(&mut self) {
        self.file = Arc::new(File::open(&self.path).unwrap());
    }
}

/// Zeros for frame padding and for cutting torn tails.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
const _: () = assert!(FRAME_ALIGN <= ZEROS.len());

/// Writes every byte of `buf` at `offset` of `file` (`pwrite`, repeated after a short write).
/// On an error, also says how many bytes were written before it.
fn write_batch_at(file: &File, offset: usize, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.write_at(&buf[done..], (offset + done) as u64) {
            Ok(0) => return Err((done, io::Error::from(io::ErrorKind::WriteZero))),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// Overwrites `len` bytes at `offset` with zeros. Blocking.
pub(super) fn write_zeros_at(file: &File, offset: usize, len: usize) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZEROS.len());
        file.write_all_at(&ZEROS[..n], (offset + done) as u64)?;
        done += n;
    }
    Ok(())
}
