//! A sealed block of logs: stored log records (archives of `LogBatch`) as they were appended,
//! compressed together with zstd. Not yet columns as spans are (`super::block`): a log block
//! keeps the raw records' layout, so its size is that of the raw records compressed.
//!
//! Layout: `u32` record count, `u32` length of the uncompressed stream, then the zstd frame of
//! the stream: per record, its `u32` length and its bytes.

use rkyv::util::AlignedVec;

use super::column::{BlockError, ColumnReader};
use crate::limits::SEALED_COLUMN_BYTES_MAX;

/// zstd level, as for span blocks.
const ZSTD_LEVEL: i32 = 3;

pub fn encode(records: &[&[u8]]) -> Vec<u8> {
    let raw_len: usize = records.iter().map(|r| 4 + r.len()).sum();
    let mut raw = Vec::with_capacity(raw_len);
    for r in records {
        raw.extend_from_slice(&(r.len() as u32).to_le_bytes());
        raw.extend_from_slice(r);
    }
    let compressed = zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("zstd compresses in memory");
    let mut out = Vec::with_capacity(8 + compressed.len());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&compressed);
    out
}

/// The records of a block, each in its own aligned buffer (archives must be aligned to be
/// read in place).
pub fn decode(block: &[u8]) -> Result<Vec<AlignedVec>, BlockError> {
    let mut r = ColumnReader::new("log block", block);
    let count = u32::from_le_bytes(r.fixed()?) as usize;
    let raw_len = u32::from_le_bytes(r.fixed()?) as usize;
    if raw_len > SEALED_COLUMN_BYTES_MAX || count > raw_len / 4 {
        return Err(r.invalid("a log block longer than a block can be"));
    }
    let raw = zstd::bulk::decompress(&block[8..], raw_len)
        .map_err(|_| BlockError::Compression("log block"))?;
    if raw.len() != raw_len {
        return Err(BlockError::Compression("log block"));
    }
    let mut r = ColumnReader::new("log block", &raw);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_le_bytes(r.fixed()?) as usize;
        let mut record = AlignedVec::with_capacity(len);
        record.extend_from_slice(r.take(len)?);
        out.push(record);
    }
    if !r.is_empty() {
        return Err(r.invalid("bytes after the last record"));
    }
    Ok(out)
}
