//! Reading a segment through its read-only map: a record, checked again; which pages are
//! in the page cache (`mincore`); dropping page-table entries so pages can be evicted.

use super::{Segment, PAGE_BYTES, SEGMENT_HEADER_BYTES};
use crate::storage::frame::{self, Header, RecordKind, HEADER_BYTES};

impl Segment {
    /// The payload of the record at `offset`, after checking its frame and CRC again.
    pub fn read(&self, offset: u32) -> Result<(RecordKind, &[u8]), ReadError> {
        let bytes = self.bytes();
        let pos = offset as usize;
        if pos < SEGMENT_HEADER_BYTES || pos + HEADER_BYTES > self.write_pos {
            return Err(ReadError::OutOfRange(offset));
        }
        match frame::decode_header(&bytes[pos..], self.write_pos - pos - HEADER_BYTES) {
            Header::Record {
                kind,
                payload_len,
                crc,
            } => {
                let payload = &bytes[pos + HEADER_BYTES..pos + HEADER_BYTES + payload_len];
                frame::verify(&bytes[pos..pos + HEADER_BYTES], payload, crc)?;
                Ok((kind, payload))
            }
            _ => Err(ReadError::NoRecord(offset)),
        }
    }

    /// Whether every page of `[start, end)` is in the page cache (`mincore` on the map: for a
    /// file mapping it reports the page cache, mapped here or not). A read of a range that is
    /// not faults on the calling thread until the disk answers.
    pub fn resident(&self, start: usize, end: usize) -> bool {
        // mincore works in the kernel's pages, which may be larger than PAGE_BYTES.
        // SAFETY: sysconf has no memory effects.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => PAGE_BYTES,
        };
        let end = end.min(self.map.len());
        let start = start - start % page;
        if start >= end {
            return true;
        }
        let pages = (end - start).div_ceil(page);
        let mut vec = vec![0u8; pages];
        // SAFETY: the range lies inside the live map and `vec` has one byte per page.
        let r = unsafe {
            libc::mincore(
                self.map.as_ptr().add(start) as *mut libc::c_void,
                end - start,
                vec.as_mut_ptr(),
            )
        };
        // On an error, say resident: the caller then reads as it would have without asking.
        r != 0 || vec.iter().all(|&b| b & 1 == 1)
    }

    /// Drops this process's page-table entries for `[start, end)` (page aligned), so the
    /// kernel may evict those page-cache pages ([`crate::storage::CacheWork`]); a later read
    /// through the map faults them in again, with the same bytes (records never change once
    /// written).
    pub fn unmap_range(&self, start: usize, end: usize) {
        debug_assert!(start % PAGE_BYTES == 0 && start <= end && end <= self.map.len());
        // SAFETY: MADV_DONTNEED on a shared file mapping only zaps page-table entries; the
        // bytes stay those of the file, so slices into the map keep reading the same values.
        if let Err(e) = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        } {
            tracing::debug!(segment = %self.path.display(), "madvise(DONTNEED) failed: {e}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no record at offset {0}")]
    NoRecord(u32),
    #[error("offset {0} is outside the written part of the segment")]
    OutOfRange(u32),
    #[error(transparent)]
    Checksum(#[from] frame::ChecksumMismatch),
}
