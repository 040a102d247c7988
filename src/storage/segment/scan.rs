//! The recovery scan of one segment: every record's CRC checked, corrupt records skipped,
//! a torn tail cut off ([`Segment::recover`]).

use super::write::write_zeros_at;
use super::{Segment, SEGMENT_HEADER_BYTES};
use crate::storage::frame::{self, Header, RecordKind, FRAME_ALIGN, HEADER_BYTES};

/// What a recovery scan of one segment found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Records whose CRC matched.
    pub records: u64,
    /// Records with a plausible header whose CRC did not match, followed by more records:
    /// skipped and never served.
    pub corrupt: u64,
    /// Bytes of a torn or garbage tail that were cut off (zeroed when the segment is writable).
    pub truncated_bytes: u64,
    /// The tail could not be zeroed (a write error, said here): the segment was sealed, and
    /// appends go to a new one.
    pub sealed_after_error: Option<String>,
}

impl Segment {
    /// Scans every record from the start, verifying each CRC, calling `visit` with the offset,
    /// kind and payload of every intact record, and sets the write position after the last.
    ///
    /// Corruption policy, at a place where no intact record starts (a zero header, a header
    /// that is not plausible, or a payload that fails its CRC):
    /// - if an intact record starts further on (searched on the frame alignment), the bytes
    ///   in between are a **corrupt** record: counted, skipped, never served;
    /// - otherwise it is the **torn tail** of the log (a write cut by a crash): the non-zero
    ///   bytes from there on are zeroed if the segment is writable, and appends resume there.
    pub fn recover(&mut self, mut visit: impl FnMut(u32, RecordKind, &[u8])) -> ScanReport {
        debug_assert!(self.staged.is_empty(), "recovery runs before any append");
        let mut report = ScanReport::default();
        let len = self.len();
        let mut pos = SEGMENT_HEADER_BYTES;
        while pos + HEADER_BYTES <= len {
            if let Some((kind, payload_len)) = self.intact_at(pos) {
                report.records += 1;
                let payload = &self.bytes()[pos + HEADER_BYTES..pos + HEADER_BYTES + payload_len];
                visit(pos as u32, kind, payload);
                pos = (pos + frame::frame_bytes(payload_len)).min(len);
                continue;
            }
            let end = self.written_extent(pos);
            if end == pos {
                break; // only zeros from here: the clean end of the records
            }
            match (pos + FRAME_ALIGN..end)
                .step_by(FRAME_ALIGN)
                .find(|&q| self.intact_at(q).is_some())
            {
                Some(next) => {
                    report.corrupt += 1;
                    pos = next;
                }
                None => {
                    report.truncated_bytes = (end - pos) as u64;
                    if self.writable {
                        if let Err(e) = write_zeros_at(&self.file, pos, end - pos) {
                            // Appending after a tail that is still there would hide the
                            // records appended next behind it at the next recovery.
                            self.writable = false;
                            report.sealed_after_error = Some(format!(
                                "cannot zero the torn tail of {}: {e}",
                                self.path.display()
                            ));
                        }
                    }
                    break;
                }
            }
        }
        self.write_pos = pos.min(len);
        report
    }

    /// The kind and payload length of the intact record at `pos`, if one is there.
    fn intact_at(&self, pos: usize) -> Option<(RecordKind, usize)> {
        let bytes = self.bytes();
        let len = bytes.len();
        if pos + HEADER_BYTES > len {
            return None;
        }
        match frame::decode_header(&bytes[pos..], len - pos - HEADER_BYTES) {
            Header::Record {
                kind,
                payload_len,
                crc,
            } => {
                let header = &bytes[pos..pos + HEADER_BYTES];
                let payload = &bytes[pos + HEADER_BYTES..pos + HEADER_BYTES + payload_len];
                frame::verify(header, payload, crc)
                    .is_ok()
                    .then_some((kind, payload_len))
            }
            _ => None,
        }
    }

    /// End of the non-zero bytes at or after `from` (what a torn tail occupies).
    fn written_extent(&self, from: usize) -> usize {
        let bytes = self.bytes();
        bytes[from..]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(from, |i| from + i + 1)
    }
}
