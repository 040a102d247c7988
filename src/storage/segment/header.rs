//! The segment header ([`SegmentMeta`], its encoding and checks, [`SegmentError`]) and
//! segment file names.

use std::io;

pub const SEGMENT_MAGIC: &[u8; 8] = b"GLUSTSEG";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 64;

/// What a segment header says about the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    pub shard_id: u32,
    pub shard_count: u32,
    pub seq: u64,
    pub created_unix_nanos: u64,
    pub file_bytes: u64,
}

impl SegmentMeta {
    pub(super) fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut h = [0u8; SEGMENT_HEADER_BYTES];
        h[0..8].copy_from_slice(SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.shard_id.to_le_bytes());
        h[16..20].copy_from_slice(&self.shard_count.to_le_bytes());
        h[24..32].copy_from_slice(&self.seq.to_le_bytes());
        h[32..40].copy_from_slice(&self.created_unix_nanos.to_le_bytes());
        h[40..48].copy_from_slice(&self.file_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub(super) fn decode(h: &[u8]) -> Result<SegmentMeta, SegmentError> {
        if h.len() < SEGMENT_HEADER_BYTES || &h[0..8] != SEGMENT_MAGIC {
            return Err(SegmentError::BadMagic);
        }
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
        let expected = u32_at(60);
        let got = crc32c::crc32c(&h[0..60]);
        if got != expected {
            return Err(SegmentError::HeaderChecksum { got, expected });
        }
        let version = u32_at(8);
        if version != SEGMENT_VERSION {
            return Err(SegmentError::Version(version));
        }
        Ok(SegmentMeta {
            shard_id: u32_at(12),
            shard_count: u32_at(16),
            seq: u64_at(24),
            created_unix_nanos: u64_at(32),
            file_bytes: u64_at(40),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("not a Glust segment (bad magic)")]
    BadMagic,
    #[error(
        "segment header checksum mismatch: computed {got:#010x}, header says {expected:#010x}"
    )]
    HeaderChecksum { got: u32, expected: u32 },
    #[error(
        "segment format version {0} is not supported (this build reads version {SEGMENT_VERSION})"
    )]
    Version(u32),
    #[error("segment file is {0} bytes, smaller than its header")]
    TooSmall(u64),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Extension of a segment being created; such leftovers of a crash are removed at start-up.
pub const TMP_EXTENSION: &str = "glust.tmp";

/// The file name of segment `seq`.
pub fn file_name(seq: u64) -> String {
    format!("seg-{seq:020}.glust")
}

/// The sequence number in a segment file name, if it is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".glust")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}
