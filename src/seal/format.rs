//! The two files of a sealed segment, byte for byte (`shards/README.md` has the same tables):
//! the data file of compressed blocks (`seg-<seq>.sealed`) and its index sidecar
//! (`seg-<seq>.idx`). Every integer is little-endian.
//!
//! **Data file**: a [`DATA_HEADER_BYTES`]-byte header, then blocks, each behind a
//! [`BLOCK_FRAME_BYTES`]-byte frame:
//!
//! | offset | size | header field                                      |
//! |--------|------|---------------------------------------------------|
//! | 0      | 8    | magic `GLUSTSLD`                                  |
//! | 8      | 4    | format version (5; 1 to 4 are read too)           |
//! | 12     | 4    | id of the shard that wrote the raw segment        |
//! | 16     | 4    | number of shards then                             |
//! | 20     | 4    | reserved, zero                                    |
//! | 24     | 8    | sequence number of the raw segment                |
//! | 32     | 8    | the raw segment's creation time, unix ns          |
//! | 40     | 8    | the raw segment's last write, unix ns             |
//! | 48     | 12   | reserved, zero                                    |
//! | 60     | 4    | CRC32C of bytes 0..60                             |
//!
//! | offset | size | block frame field                                 |
//! |--------|------|---------------------------------------------------|
//! | 0      | 4    | magic `BLK1`                                      |
//! | 4      | 1    | kind: 1 spans ([`super::block`]), 2 logs ([`super::logblock`]), 3 needles ([`super::needles`]) |
//! | 5      | 3    | reserved, zero                                    |
//! | 8      | 4    | length of the block's bytes                       |
//! | 12     | 4    | CRC32C of the block's bytes                       |
//!
//! The frames make the data file readable without its sidecar: a lost or damaged sidecar is
//! rebuilt by decoding the blocks. From version 4 the last block may be the needles block, the
//! filters of rare values (its own table of contents, [`super::needles`]); a rebuild builds it
//! anew from the blocks.
//!
//! **Sidecar**: a fixed part, then variable sections, then a CRC32C of everything before it.
//!
//! | offset | size | field                                                     |
//! |--------|------|-----------------------------------------------------------|
//! | 0      | 8    | magic `GLUSTIDX`                                          |
//! | 8      | 4    | format version (5; 1 to 4 are read too)                   |
//! | 12     | 52   | bytes 12..64 of the data file's header (shard … last write, reserved) |
//! | 64     | 8    | length of the data file                                   |
//! | 72     | 8    | spans                                                     |
//! | 80     | 8    | log records                                               |
//! | 88     | 8    | distinct trace ids of the spans                           |
//! | 96     | 8    | earliest span start or log time, unix ns (0: none)       |
//! | 104    | 8    | latest span end or log time, unix ns                      |
//! | 112    | 4    | blocks                                                    |
//! | 116    | 4    | services                                                  |
//! | 120    | 4    | span names                                                |
//! | 124    | 4    | length of the trace filter                                |
//!
//! Then: the services, then the span names, each a `u32` length and UTF-8; then a
//! [`BlockMeta`] per block (see [`BlockMeta::write`]); then the trace filter (a binary fuse
//! filter of 16-bit fingerprints over [`trace_key`] of every trace id, 8-bit in version 1:
//! xorf's `BinaryFuse16` / `BinaryFuse8` as bincode encodes it with fixed-width integers:
//! seed `u64`, segment length, its mask and the segment count length `u32` each, then the
//! fingerprints' `u64` count and values; length 0 when the segment holds no spans); then,
//! from version 3, per block the `u64` first start of its newest trace (0 for a log block),
//! then a `u32` length and the block's trace filter (8-bit, the same encoding; length 0 for a
//! log block or when none could be built), then a `u32` count and that many (service id, span
//! name id) pairs, `u32` each, sorted: the operations of the segment's spans; then, from
//! version 4, the needles block's frame offset (`u64`, 0 when there is none), its length and
//! its CRC32C (`u32` each); then, from version 5, the segment's tags (see `encode_tags`); then
//! the `u32` CRC32C.
//!
//! Versions 1 and 2 sort a segment's spans by trace id, so that each block covers an id range
//! (its first and last trace id) and the whole segment's time. From version 3 the traces are in
//! order of their first span's start, each block covering a slice of the segment's time, which
//! a search newest first reads in order and stops early; a lookup finds its blocks by their
//! filters.

use std::fmt;

use xorf::{BinaryFuse16, BinaryFuse8, Filter};

use crate::domain::tags::{TagScope, TagTable, TagValue, TopValues};
use crate::domain::TraceId;
use crate::limits::{TAG_KEYS_MAX, TAG_VALUES_KEPT};

pub const DATA_MAGIC: &[u8; 8] = b"GLUSTSLD";
pub const SIDECAR_MAGIC: &[u8; 8] = b"GLUSTIDX";
/// The version written. Version 1 differs from 2 only in its sidecars' trace filter (8-bit
/// fingerprints: 0.4% false positives, each a block read for nothing on a lookup or a search's
/// summary; 16-bit: 0.0015%); version 3 orders spans by time and adds per-block filters;
/// version 4 adds the needles block; version 5 the sidecar's tags.
pub const SEALED_VERSION: u32 = 5;
/// The first version whose span blocks are in time order, each with a trace filter.
pub const TIME_ORDERED_VERSION: u32 = 3;
/// The first version with a needles block.
pub const NEEDLES_VERSION: u32 = 4;
/// The first version whose sidecar holds the segment's tags.
pub const TAGS_VERSION: u32 = 5;
/// The oldest version read.
pub const SEALED_VERSION_MIN: u32 = 1;
pub const DATA_HEADER_BYTES: usize = 64;
pub const BLOCK_MAGIC: &[u8; 4] = b"BLK1";
pub const BLOCK_FRAME_BYTES: usize = 16;
/// The frame kind of the needles block: not a [`BlockKind`], as no [`BlockMeta`] describes it.
pub const NEEDLES_FRAME_KIND: u8 = 3;
const SIDECAR_FIXED_BYTES: usize = 128;

/// What a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Spans = 1,
    Logs = 2,
}

impl BlockKind {
    fn from_byte(b: u8) -> Option<BlockKind> {
        match b {
            1 => Some(BlockKind::Spans),
            2 => Some(BlockKind::Logs),
            _ => None,
        }
    }
}

/// Where a sealed segment came from: its raw segment's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedMeta {
    pub shard_id: u32,
    pub shard_count: u32,
    pub seq: u64,
    pub created_unix_nanos: u64,
    pub last_write_unix_nanos: u64,
}

impl SealedMeta {
    pub fn data_header(&self) -> [u8; DATA_HEADER_BYTES] {
        let mut h = [0u8; DATA_HEADER_BYTES];
        h[0..8].copy_from_slice(DATA_MAGIC);
        h[8..12].copy_from_slice(&SEALED_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.shard_id.to_le_bytes());
        h[16..20].copy_from_slice(&self.shard_count.to_le_bytes());
        h[24..32].copy_from_slice(&self.seq.to_le_bytes());
        h[32..40].copy_from_slice(&self.created_unix_nanos.to_le_bytes());
        h[40..48].copy_from_slice(&self.last_write_unix_nanos.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn from_data_header(h: &[u8]) -> Result<SealedMeta, FormatError> {
        if h.len() < DATA_HEADER_BYTES || &h[0..8] != DATA_MAGIC {
            return Err(FormatError::BadMagic("data file"));
        }
        if crc32c::crc32c(&h[0..60]) != u32_at(h, 60) {
            return Err(FormatError::Checksum("data file header"));
        }
        Self::fields(h)
    }

    fn fields(h: &[u8]) -> Result<SealedMeta, FormatError> {
        let version = u32_at(h, 8);
        if !(SEALED_VERSION_MIN..=SEALED_VERSION).contains(&version) {
            return Err(FormatError::Version(version));
        }
        Ok(SealedMeta {
            shard_id: u32_at(h, 12),
            shard_count: u32_at(h, 16),
            seq: u64_at(h, 24),
            created_unix_nanos: u64_at(h, 32),
            last_write_unix_nanos: u64_at(h, 40),
        })
    }
}

/// One block as the sidecar describes it: where it is, and what lets a query skip it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockMeta {
    pub kind: BlockKind,
    /// Offset of the block's frame in the data file.
    pub offset: u64,
    /// Length of the block's bytes (after the frame).
    pub len: u32,
    pub crc: u32,
    /// Spans or log records.
    pub items: u32,
    /// Span starts (logs: their times), earliest and latest.
    pub min_time: u64,
    pub max_time: u64,
    /// Span ends (logs: their times), latest.
    pub max_end: u64,
    /// Span durations, shortest and longest (logs: 0).
    pub min_duration: u64,
    pub max_duration: u64,
    /// Spans: the first and last trace id, in the block's order; logs: zero.
    pub first_trace: TraceId,
    pub last_trace: TraceId,
    /// Some span has status error (logs: some record has severity ERROR or above).
    pub error: bool,
    /// Logs: the highest severity number in the block; spans: 0.
    pub max_severity: i32,
    /// Ids, into the sidecar's services and names, present in the block; sorted.
    pub services: Vec<u32>,
    pub names: Vec<u32>,
}

/// Fixed bytes of a [`BlockMeta`] before its id lists.
const BLOCK_META_FIXED_BYTES: usize = 4 + 8 + 4 + 4 + 4 + 8 * 6 + 16 + 16 + 4 + 4;

impl BlockMeta {
    /// | size | field |
    /// |------|-------|
    /// | 1 | kind |
    /// | 1 | error flag (0 or 1) |
    /// | 2 | reserved, zero |
    /// | 8 | offset of the frame |
    /// | 4 | length, 4 CRC32C, 4 items |
    /// | 8 × 6 | min time, max time, max end, min duration, max duration, max severity (i64) |
    /// | 16 + 16 | first and last trace id |
    /// | 4 + 4 | service id count, name id count |
    /// | 4 × each | the service ids, then the name ids |
    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.push(u8::from(self.error));
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.offset.to_le_bytes());
        for v in [self.len, self.crc, self.items] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.min_time,
            self.max_time,
            self.max_end,
            self.min_duration,
            self.max_duration,
            i64::from(self.max_severity) as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.first_trace.0);
        out.extend_from_slice(&self.last_trace.0);
        out.extend_from_slice(&(self.services.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        for id in self.services.iter().chain(&self.names) {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<BlockMeta, FormatError> {
        let b = r.take(BLOCK_META_FIXED_BYTES)?;
        let kind = BlockKind::from_byte(b[0]).ok_or(FormatError::Invalid("a block kind"))?;
        let trace = |o: usize| TraceId(b[o..o + 16].try_into().expect("16 bytes"));
        let services = u32_at(b, 104) as usize;
        let names = u32_at(b, 108) as usize;
        let mut ids = |n: usize| -> Result<Vec<u32>, FormatError> {
            let raw = r.take(
                n.checked_mul(4)
                    .ok_or(FormatError::Invalid("an id count"))?,
            )?;
            Ok(raw.chunks_exact(4).map(|c| u32_at(c, 0)).collect())
        };
        Ok(BlockMeta {
            kind,
            error: b[1] != 0,
            offset: u64_at(b, 4),
            len: u32_at(b, 12),
            crc: u32_at(b, 16),
            items: u32_at(b, 20),
            min_time: u64_at(b, 24),
            max_time: u64_at(b, 32),
            max_end: u64_at(b, 40),
            min_duration: u64_at(b, 48),
            max_duration: u64_at(b, 56),
            max_severity: i32::try_from(u64_at(b, 64) as i64)
                .map_err(|_| FormatError::Invalid("a severity"))?,
            first_trace: trace(72),
            last_trace: trace(88),
            services: ids(services)?,
            names: ids(names)?,
        })
    }
}

/// What a sealed segment's sidecar holds, in memory for as long as the segment is kept.
#[derive(Clone)]
pub struct Sidecar {
    pub meta: SealedMeta,
    pub data_bytes: u64,
    pub spans: u64,
    pub logs: u64,
    pub traces: u64,
    /// Earliest span start or log time; 0 when the segment is empty.
    pub min_time: u64,
    pub max_time: u64,
    pub services: Vec<String>,
    pub names: Vec<String>,
    pub blocks: Vec<BlockMeta>,
    pub trace_filter: Option<TraceFilter>,
    /// Whether span blocks are in time order, each found for a trace by its filter in
    /// `block_traces` (version 3), or in trace-id order, found by their id ranges.
    pub time_ordered: bool,
    /// Time-ordered: per block, what it says of its traces. Empty otherwise.
    pub block_traces: Vec<BlockTraces>,
    /// Time-ordered: the (service id, span name id) pairs of the segment's spans, sorted.
    /// Empty otherwise (see [`Sidecar::operations_of`]).
    pub operations: Vec<(u32, u32)>,
    /// Where the data file's needles block is (version 4; `None` before, or when no block
    /// has keys to filter).
    pub needles: Option<NeedlesPlace>,
    /// The attribute keys of the segment's items by scope and service (an id in `services`),
    /// each with its [`TAG_VALUES_KEPT`] most frequent values (version 5; empty before).
    pub tags: TagTable<u32>,
}

/// The needles block's frame in the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedlesPlace {
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

/// What a time-ordered sidecar says of a block's traces.
#[derive(Clone, Debug, Default)]
pub struct BlockTraces {
    /// The first start of the block's newest trace (its traces are in order of their first
    /// start in the segment): no trace the block holds starts later. 0 for a log block.
    pub newest_start: u64,
    /// A filter of the block's trace ids: `None` for a log block, or a key set no filter
    /// could be built for (then any trace may be there).
    pub filter: Option<TraceFilter>,
}

/// A sealed segment's trace filter: probed before any block is read for a trace.
#[derive(Clone)]
pub enum TraceFilter {
    /// Version 1 sidecars'.
    Fuse8(BinaryFuse8),
    Fuse16(BinaryFuse16),
}

impl TraceFilter {
    /// The filter of `keys` (sorted, without duplicates); `None` for a pathological key set.
    pub fn build(keys: &[u64]) -> Option<TraceFilter> {
        BinaryFuse16::try_from(keys).ok().map(TraceFilter::Fuse16)
    }

    /// A block's filter of `keys` (sorted, without duplicates): 8-bit, as the segment's
    /// 16-bit filter has already said the trace is likely in the segment.
    pub fn build_small(keys: &[u64]) -> Option<TraceFilter> {
        BinaryFuse8::try_from(keys).ok().map(TraceFilter::Fuse8)
    }

    pub fn contains(&self, key: u64) -> bool {
        match self {
            TraceFilter::Fuse8(f) => f.contains(&key),
            TraceFilter::Fuse16(f) => f.contains(&key),
        }
    }

    /// Bytes of its fingerprints.
    pub fn bytes(&self) -> usize {
        match self {
            TraceFilter::Fuse8(f) => f.fingerprints.len(),
            TraceFilter::Fuse16(f) => 2 * f.fingerprints.len(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            TraceFilter::Fuse8(f) => bincode::encode_to_vec(f, bincode_config()),
            TraceFilter::Fuse16(f) => bincode::encode_to_vec(f, bincode_config()),
        }
        .expect("a filter encodes")
    }

    fn decode(fuse8: bool, bytes: &[u8]) -> Result<TraceFilter, FormatError> {
        let bad = |_| FormatError::Invalid("the trace filter");
        let (filter, used) = match fuse8 {
            true => bincode::decode_from_slice(bytes, bincode_config())
                .map(|(f, used)| (TraceFilter::Fuse8(f), used))
                .map_err(bad)?,
            false => bincode::decode_from_slice(bytes, bincode_config())
                .map(|(f, used)| (TraceFilter::Fuse16(f), used))
                .map_err(bad)?,
        };
        if used != bytes.len() {
            return Err(FormatError::Invalid("the trace filter's length"));
        }
        Ok(filter)
    }
}

impl fmt::Debug for TraceFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = match self {
            TraceFilter::Fuse8(_) => 8,
            TraceFilter::Fuse16(_) => 16,
        };
        write!(f, "TraceFilter({bits}-bit, {} bytes)", self.bytes())
    }
}

impl fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sidecar")
            .field("meta", &self.meta)
            .field("spans", &self.spans)
            .field("logs", &self.logs)
            .field("blocks", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

/// The key a trace id has in a trace filter: trace ids are random, so their bytes folded
/// are as good a hash as any.
pub fn trace_key(id: &TraceId) -> u64 {
    let lo = u64::from_le_bytes(id.0[0..8].try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(id.0[8..16].try_into().expect("8 bytes"));
    lo ^ hi.rotate_left(32)
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::legacy()
}

impl Sidecar {
    /// Whether the segment may hold spans of trace `id` (no false negatives; false positives
    /// 0.0015%, 0.4% for version 1). Without a filter, any trace may be here.
    pub fn may_hold_trace(&self, id: &TraceId) -> bool {
        match &self.trace_filter {
            Some(f) => f.contains(trace_key(id)),
            None => self.spans > 0,
        }
    }

    /// The span blocks that may hold spans of trace `id`: by their filters when time-ordered
    /// (false positives 0.4% a block), else by their trace-id ranges.
    pub fn trace_blocks<'s>(&'s self, id: &'s TraceId) -> impl Iterator<Item = usize> + 's {
        let key = trace_key(id);
        self.blocks
            .iter()
            .enumerate()
            .filter(move |&(i, b)| {
                b.kind == BlockKind::Spans
                    && match self.time_ordered {
                        true => self.block_traces[i]
                            .filter
                            .as_ref()
                            .is_none_or(|f| f.contains(key)),
                        false => b.first_trace <= *id && *id <= b.last_trace,
                    }
            })
            .map(|(i, _)| i)
    }

    /// The version this sidecar is written as: it says how its filters are encoded and how
    /// its blocks are ordered.
    fn version(&self) -> u32 {
        debug_assert!(
            !(self.time_ordered && matches!(self.trace_filter, Some(TraceFilter::Fuse8(_))))
        );
        match (&self.trace_filter, self.time_ordered) {
            (Some(TraceFilter::Fuse8(_)), _) => 1,
            (_, false) => 2,
            (_, true) => SEALED_VERSION,
        }
    }

    /// The latest a trace first found in block `i` can start: the first start of its newest
    /// trace when time-ordered, else its newest span start.
    pub fn newest_trace_start(&self, i: usize) -> u64 {
        match self.time_ordered {
            true => self.block_traces[i].newest_start,
            false => self.blocks[i].max_time,
        }
    }

    /// The span names seen with service `service` in this segment, sorted. Id-ordered sidecars do
    /// not hold the pairs: there, the names of the blocks that hold the service (a superset).
    pub fn operations_of(&self, service: &str) -> Vec<&str> {
        let Some(id) = self.services.iter().position(|s| s == service) else {
            return Vec::new();
        };
        let id = id as u32;
        let mut names: Vec<u32> = match self.time_ordered {
            true => self
                .operations
                .iter()
                .filter(|(s, _)| *s == id)
                .map(|&(_, n)| n)
                .collect(),
            false => self
                .blocks
                .iter()
                .filter(|b| b.services.binary_search(&id).is_ok())
                .flat_map(|b| b.names.iter().copied())
                .collect(),
        };
        names.sort_unstable();
        names.dedup();
        let mut out: Vec<&str> = names
            .into_iter()
            .filter_map(|n| self.names.get(n as usize).map(String::as_str))
            .collect();
        out.sort_unstable();
        out
    }

    /// Memory this sidecar holds, about.
    pub fn memory_bytes(&self) -> usize {
        let strings: usize = self
            .services
            .iter()
            .chain(&self.names)
            .map(|s| s.len() + 24)
            .sum();
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| std::mem::size_of::<BlockMeta>() + 4 * (b.services.len() + b.names.len()))
            .sum();
        let filters: usize = std::iter::once(&self.trace_filter)
            .chain(self.block_traces.iter().map(|b| &b.filter))
            .map(|f| {
                std::mem::size_of::<Option<TraceFilter>>()
                    + f.as_ref().map_or(0, TraceFilter::bytes)
            })
            .sum();
        std::mem::size_of::<Sidecar>()
            + strings
            + blocks
            + filters
            + 8 * self.operations.len()
            + self.tags.approx_bytes()
    }

    pub fn encode(&self) -> Vec<u8> {
        let filter = self
            .trace_filter
            .as_ref()
            .map_or_else(Vec::new, TraceFilter::encode);
        let mut out =
            Vec::with_capacity(SIDECAR_FIXED_BYTES + filter.len() + 128 * self.blocks.len());
        out.extend_from_slice(SIDECAR_MAGIC);
        out.extend_from_slice(&self.meta.data_header()[8..64]);
        out[8..12].copy_from_slice(&self.version().to_le_bytes());
        debug_assert_eq!(out.len(), 64);
        for v in [
            self.data_bytes,
            self.spans,
            self.logs,
            self.traces,
            self.min_time,
            self.max_time,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.blocks.len(),
            self.services.len(),
            self.names.len(),
            filter.len(),
        ] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        debug_assert_eq!(out.len(), SIDECAR_FIXED_BYTES);
        for s in self.services.iter().chain(&self.names) {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        for b in &self.blocks {
            b.write(&mut out);
        }
        out.extend_from_slice(&filter);
        if self.time_ordered {
            debug_assert_eq!(self.block_traces.len(), self.blocks.len());
            for b in &self.block_traces {
                out.extend_from_slice(&b.newest_start.to_le_bytes());
                let bytes = b.filter.as_ref().map_or_else(Vec::new, TraceFilter::encode);
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(&bytes);
            }
            out.extend_from_slice(&(self.operations.len() as u32).to_le_bytes());
            for (service, name) in &self.operations {
                out.extend_from_slice(&service.to_le_bytes());
                out.extend_from_slice(&name.to_le_bytes());
            }
            let n = self.needles.unwrap_or(NeedlesPlace {
                offset: 0,
                len: 0,
                crc: 0,
            });
            out.extend_from_slice(&n.offset.to_le_bytes());
            out.extend_from_slice(&n.len.to_le_bytes());
            out.extend_from_slice(&n.crc.to_le_bytes());
            encode_tags(&self.tags, &mut out);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Sidecar, FormatError> {
        if bytes.len() < SIDECAR_FIXED_BYTES + 4 || &bytes[0..8] != SIDECAR_MAGIC {
            return Err(FormatError::BadMagic("sidecar"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32_at(crc, 0) {
            return Err(FormatError::Checksum("sidecar"));
        }
        let meta = SealedMeta::fields(body)?;
        let mut r = Reader {
            bytes: body,
            pos: SIDECAR_FIXED_BYTES,
        };
        let count = |o: usize| u32_at(body, o) as usize;
        let (blocks, services, names, filter_len) =
            (count(112), count(116), count(120), count(124));
        let mut strings = |n: usize| -> Result<Vec<String>, FormatError> {
            (0..n)
                .map(|_| {
                    let len = u32_at(r.take(4)?, 0) as usize;
                    let s = std::str::from_utf8(r.take(len)?)
                        .map_err(|_| FormatError::Invalid("a name that is not UTF-8"))?;
                    Ok(s.to_owned())
                })
                .collect()
        };
        let services = strings(services)?;
        let names = strings(names)?;
        let blocks = (0..blocks)
            .map(|_| BlockMeta::read(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        let version = u32_at(body, 8);
        let trace_filter = match filter_len {
            0 => None,
            n => Some(TraceFilter::decode(version == 1, r.take(n)?)?),
        };
        let time_ordered = version >= TIME_ORDERED_VERSION;
        let block_traces = match time_ordered {
            false => Vec::new(),
            true => (0..blocks.len())
                .map(|_| {
                    let newest_start = u64_at(r.take(8)?, 0);
                    let filter = match u32_at(r.take(4)?, 0) as usize {
                        0 => None,
                        n => Some(TraceFilter::decode(true, r.take(n)?)?),
                    };
                    Ok(BlockTraces {
                        newest_start,
                        filter,
                    })
                })
                .collect::<Result<Vec<_>, FormatError>>()?,
        };
        let operations = match time_ordered {
            false => Vec::new(),
            true => {
                let n = u32_at(r.take(4)?, 0) as usize;
                let raw = r.take(
                    n.checked_mul(8)
                        .ok_or(FormatError::Invalid("an operation count"))?,
                )?;
                let pairs: Vec<(u32, u32)> = raw
                    .chunks_exact(8)
                    .map(|c| (u32_at(c, 0), u32_at(c, 4)))
                    .collect();
                let known = |&(s, n): &(u32, u32)| {
                    (s as usize) < services.len() && (n as usize) < names.len()
                };
                if !pairs.iter().all(known) {
                    return Err(FormatError::Invalid(
                        "an operation naming no service or span name",
                    ));
                }
                pairs
            }
        };
        let needles = match version >= NEEDLES_VERSION {
            false => None,
            true => {
                let b = r.take(16)?;
                let place = NeedlesPlace {
                    offset: u64_at(b, 0),
                    len: u32_at(b, 8),
                    crc: u32_at(b, 12),
                };
                (place.offset != 0).then_some(place)
            }
        };
        let tags = match version >= TAGS_VERSION {
            false => TagTable::default(),
            true => decode_tags(&mut r, services.len())?,
        };
        if r.pos != body.len() {
            return Err(FormatError::Invalid("bytes after the sidecar's tags"));
        }
        Ok(Sidecar {
            meta,
            data_bytes: u64_at(body, 64),
            spans: u64_at(body, 72),
            logs: u64_at(body, 80),
            traces: u64_at(body, 88),
            min_time: u64_at(body, 96),
            max_time: u64_at(body, 104),
            services,
            names,
            blocks,
            trace_filter,
            time_ordered,
            block_traces,
            operations,
            needles,
            tags,
        })
    }
}

/// Value kinds in a sidecar's tags.
const TAG_KIND_STR: u8 = 0;
const TAG_KIND_INT: u8 = 1;
const TAG_KIND_DOUBLE: u8 = 2;
const TAG_KIND_BOOL: u8 = 3;

/// Writes `tags`: a `u32` flags (bit 0: keys or values were left out for the bounds), a `u32`
/// count of keys, then per key, sorted by scope, service and key: the scope (`u8`), the
/// service id (`u32`), the key (`u32` length and UTF-8), a `u32` count of values and each
/// value, most frequent first: its kind (`u8`: 0 string, 1 int, 2 double, 3 bool), the value
/// (a `u32` length and UTF-8; an `i64`; an `f64`; a `u8`) and its count (`u64`).
fn encode_tags(tags: &TagTable<u32>, out: &mut Vec<u8>) {
    let mut entries: Vec<_> = tags.entries().collect();
    entries.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    out.extend_from_slice(&u32::from(tags.truncated()).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (scope, service, key, values) in entries {
        out.push(scope as u8);
        out.extend_from_slice(&service.to_le_bytes());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        let top = values.top(TAG_VALUES_KEPT);
        out.extend_from_slice(&(top.len() as u32).to_le_bytes());
        for (v, count) in top {
            match v {
                TagValue::Str(s) => {
                    out.push(TAG_KIND_STR);
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                TagValue::Int(i) => {
                    out.push(TAG_KIND_INT);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                TagValue::Double(d) => {
                    out.push(TAG_KIND_DOUBLE);
                    out.extend_from_slice(&d.to_le_bytes());
                }
                TagValue::Bool(b) => {
                    out.push(TAG_KIND_BOOL);
                    out.push(u8::from(*b));
                }
            }
            out.extend_from_slice(&count.to_le_bytes());
        }
    }
}

fn decode_tags(r: &mut Reader<'_>, services: usize) -> Result<TagTable<u32>, FormatError> {
    let text = |r: &mut Reader<'_>| -> Result<String, FormatError> {
        let len = u32_at(r.take(4)?, 0) as usize;
        std::str::from_utf8(r.take(len)?)
            .map(str::to_owned)
            .map_err(|_| FormatError::Invalid("a tag that is not UTF-8"))
    };
    let mut tags = TagTable::default();
    if u32_at(r.take(4)?, 0) & 1 == 1 {
        tags.set_truncated();
    }
    let keys = u32_at(r.take(4)?, 0) as usize;
    if keys > TAG_KEYS_MAX {
        return Err(FormatError::Invalid("more tag keys than a segment notes"));
    }
    for _ in 0..keys {
        let scope =
            TagScope::from_byte(r.take(1)?[0]).ok_or(FormatError::Invalid("a tag scope"))?;
        let service = u32_at(r.take(4)?, 0);
        if service as usize >= services {
            return Err(FormatError::Invalid("a tag naming no service"));
        }
        let key = text(r)?;
        let n = u32_at(r.take(4)?, 0) as usize;
        if n > TAG_VALUES_KEPT {
            return Err(FormatError::Invalid("more tag values than a segment keeps"));
        }
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let v = match r.take(1)?[0] {
                TAG_KIND_STR => TagValue::Str(text(r)?),
                TAG_KIND_INT => TagValue::Int(u64_at(r.take(8)?, 0) as i64),
                TAG_KIND_DOUBLE => TagValue::Double(f64::from_bits(u64_at(r.take(8)?, 0))),
                TAG_KIND_BOOL => TagValue::Bool(r.take(1)?[0] != 0),
                _ => return Err(FormatError::Invalid("a tag value kind")),
            };
            values.push((v, u64_at(r.take(8)?, 0)));
        }
        tags.insert(scope, service, &key, TopValues::from_counts(values));
    }
    Ok(tags)
}

/// A block frame: the kind, length and CRC of the block that follows.
pub fn block_frame(kind: BlockKind, block: &[u8]) -> [u8; BLOCK_FRAME_BYTES] {
    let mut f = [0u8; BLOCK_FRAME_BYTES];
    f[0..4].copy_from_slice(BLOCK_MAGIC);
    f[4] = kind as u8;
    f[8..12].copy_from_slice(&(block.len() as u32).to_le_bytes());
    f[12..16].copy_from_slice(&crc32c::crc32c(block).to_le_bytes());
    f
}

/// A needles block's frame for `block`.
pub fn needles_frame(block: &[u8]) -> [u8; BLOCK_FRAME_BYTES] {
    let mut f = block_frame(BlockKind::Spans, block);
    f[4] = NEEDLES_FRAME_KIND;
    f
}

/// The length of the needles block whose frame starts `bytes`, if it is one.
pub fn needles_frame_len(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= BLOCK_FRAME_BYTES
        && &bytes[0..4] == BLOCK_MAGIC
        && bytes[4] == NEEDLES_FRAME_KIND)
        .then(|| u32_at(bytes, 8))
}

/// The kind, length and CRC of the block frame at the start of `bytes`.
pub fn read_block_frame(bytes: &[u8]) -> Result<(BlockKind, u32, u32), FormatError> {
    if bytes.len() < BLOCK_FRAME_BYTES || &bytes[0..4] != BLOCK_MAGIC {
        return Err(FormatError::BadMagic("block frame"));
    }
    let kind = BlockKind::from_byte(bytes[4]).ok_or(FormatError::Invalid("a block kind"))?;
    Ok((kind, u32_at(bytes, 8), u32_at(bytes, 12)))
}

/// Why a sealed file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a Glust {0} (bad magic)")]
    BadMagic(&'static str),
    #[error("{0} checksum mismatch")]
    Checksum(&'static str),
    #[error("sealed format version {0} is not supported (this build reads {SEALED_VERSION_MIN} to {SEALED_VERSION})")]
    Version(u32),
    #[error("truncated")]
    Truncated,
    #[error("invalid {0}")]
    Invalid(&'static str),
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).ok_or(FormatError::Truncated)?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or(FormatError::Truncated)?;
        self.pos = end;
        Ok(out)
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
