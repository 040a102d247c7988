//! Record framing inside a segment.
//!
//! Every record is a 16-byte header followed by its payload, padded with zeros to a multiple of
//! [`FRAME_ALIGN`] so the next header and every payload start 16-byte aligned (rkyv archives
//! are read in place and need their alignment).
//!
//! | offset | size | field                                                   |
//! |--------|------|---------------------------------------------------------|
//! | 0      | 4    | payload length in bytes, u32 little endian, never 0     |
//! | 4      | 1    | kind ([`RecordKind`])                                   |
//! | 5      | 3    | reserved, zero                                          |
//! | 8      | 4    | CRC32C of header bytes 0..8 followed by the payload     |
//! | 12     | 4    | reserved, zero                                          |
//! | 16     | len  | payload: an rkyv archive of a span or log batch         |
//!
//! An all-zero header means "nothing written here yet": segments are created at full size and
//! read as zeros where nothing was written, so the first zero header ends the written part of a segment. The CRC covers the kind and the
//! length as well as the payload, so a torn header is detected like a torn payload.

/// Size of a record header.
pub const HEADER_BYTES: usize = 16;
/// Alignment of every header and payload inside a segment.
pub const FRAME_ALIGN: usize = 16;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// An archived [`crate::domain::SpanBatch`].
    Spans = 1,
    /// An archived [`crate::domain::LogBatch`].
    Logs = 2,
}

impl RecordKind {
    pub fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Spans),
            2 => Some(RecordKind::Logs),
            _ => None,
        }
    }
}

/// Bytes a record with a payload of `payload_len` bytes occupies, padding included.
pub const fn frame_bytes(payload_len: usize) -> usize {
    (HEADER_BYTES + payload_len).div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// What reading a header found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// All zero: the end of the written part.
    Empty,
    /// A plausible header. The payload still has to pass [`verify`].
    Record {
        kind: RecordKind,
        payload_len: usize,
        crc: u32,
    },
    /// Not zero and not a plausible header: garbage or a torn write.
    Garbage,
}

/// Encodes a header for `payload` into `out`.
pub fn encode_header(kind: RecordKind, payload: &[u8], out: &mut [u8; HEADER_BYTES]) {
    debug_assert!(!payload.is_empty());
    debug_assert!(payload.len() <= u32::MAX as usize);
    *out = [0; HEADER_BYTES];
    out[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[4] = kind as u8;
    let crc = checksum(&out[0..8], payload);
    out[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the header at the start of `bytes` (which must hold at least [`HEADER_BYTES`]).
/// `room` is how many bytes of the segment follow the header, to reject impossible lengths.
pub fn decode_header(bytes: &[u8], room: usize) -> Header {
    let h: &[u8; HEADER_BYTES] = bytes[..HEADER_BYTES].try_into().expect("header slice");
    if h == &[0; HEADER_BYTES] {
        return Header::Empty;
    }
    let len = u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize;
    let kind = RecordKind::from_u8(h[4]);
    let reserved_clear = h[5..8] == [0; 3] && h[12..16] == [0; 4];
    match kind {
        Some(kind) if len > 0 && len <= room && reserved_clear => Header::Record {
            kind,
            payload_len: len,
            crc: u32::from_le_bytes(h[8..12].try_into().unwrap()),
        },
        _ => Header::Garbage,
    }
}

/// The CRC32C a record must carry: over header bytes 0..8, then the payload.
pub fn checksum(header_prefix: &[u8], payload: &[u8]) -> u32 {
    debug_assert_eq!(header_prefix.len(), 8);
    crc32c::crc32c_append(crc32c::crc32c(header_prefix), payload)
}

/// Checks a payload against the CRC of its header.
pub fn verify(header: &[u8], payload: &[u8], expected: u32) -> Result<(), ChecksumMismatch> {
    let got = checksum(&header[0..8], payload);
    if got == expected {
        Ok(())
    } else {
        Err(ChecksumMismatch { got, expected })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record checksum mismatch: computed {got:#010x}, header says {expected:#010x}")]
pub struct ChecksumMismatch {
    pub got: u32,
    pub expected: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_are_aligned() {
        assert_eq!(frame_bytes(1), 32);
        assert_eq!(frame_bytes(16), 32);
        assert_eq!(frame_bytes(17), 48);
        for n in 1..200 {
            assert_eq!(frame_bytes(n) % FRAME_ALIGN, 0);
            assert!(frame_bytes(n) >= HEADER_BYTES + n);
        }
    }

    #[test]
    fn header_round_trip_and_crc() {
        let payload = b"hello world, this is a payload";
        let mut h = [0u8; HEADER_BYTES];
        encode_header(RecordKind::Logs, payload, &mut h);
        let Header::Record {
            kind,
            payload_len,
            crc,
        } = decode_header(&h, 1000)
        else {
            panic!("header not decoded")
        };
        assert_eq!(kind, RecordKind::Logs);
        assert_eq!(payload_len, payload.len());
        assert!(verify(&h, payload, crc).is_ok());
        let mut bad = *payload;
        bad[3] ^= 1;
        assert!(verify(&h, &bad, crc).is_err());
        // The CRC covers the kind: flipping it breaks verification.
        let mut h2 = h;
        h2[4] = RecordKind::Spans as u8;
        let Header::Record { crc, .. } = decode_header(&h2, 1000) else {
            panic!()
        };
        assert!(verify(&h2, payload, crc).is_err());
    }

    #[test]
    fn empty_garbage_and_impossible_lengths() {
        assert_eq!(decode_header(&[0; 16], 100), Header::Empty);
        let mut h = [0u8; HEADER_BYTES];
        encode_header(RecordKind::Spans, &[1; 64], &mut h);
        assert_eq!(
            decode_header(&h, 63),
            Header::Garbage,
            "longer than the room left"
        );
        h[4] = 9;
        assert_eq!(decode_header(&h, 100), Header::Garbage, "unknown kind");
        let mut h = [0u8; HEADER_BYTES];
        encode_header(RecordKind::Spans, &[1; 64], &mut h);
        h[13] = 1;
        assert_eq!(
            decode_header(&h, 100),
            Header::Garbage,
            "reserved bytes set"
        );
    }
}
