//! A sealed segment as a shard holds it: its sidecar in memory, its data file mapped, blocks
//! read (checked against their CRC) and decoded on demand.

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rkyv::util::AlignedVec;

use super::format::{
    needles_frame_len, read_block_frame, BlockKind, SealedMeta, Sidecar, BLOCK_FRAME_BYTES,
};
use super::needles::{Entry, Needles};
use super::{block, logblock, SealError};
use crate::domain::{ArchivedLogBatch, ArchivedSpanBatch, TraceId};
use crate::limits::SIDECAR_BYTES_MAX;

pub struct SealedSegment {
    pub sidecar: Sidecar,
    pub data_path: PathBuf,
    pub sidecar_path: PathBuf,
    map: Mmap,
    /// The data file's needle filters, read in place (`None`: every block may hold a needle).
    needles: Option<Needles>,
}

impl std::fmt::Debug for SealedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSegment")
            .field("data_path", &self.data_path)
            .field("sidecar", &self.sidecar)
            .finish()
    }
}

impl SealedSegment {
    /// Opens a sealed pair: reads and checks the sidecar, maps the data file and checks that
    /// the two belong together. Blocking.
    pub fn open(data_path: PathBuf, sidecar_path: PathBuf) -> Result<SealedSegment, SealError> {
        let damaged = |path: &Path, reason: String| SealError::Damaged {
            path: path.to_owned(),
            reason,
        };
        let len = std::fs::metadata(&sidecar_path)
            .map_err(|e| damaged(&sidecar_path, e.to_string()))?
            .len();
        if len > SIDECAR_BYTES_MAX {
            return Err(damaged(
                &sidecar_path,
                format!("{len} bytes, more than a sidecar can be"),
            ));
        }
        let bytes =
            std::fs::read(&sidecar_path).map_err(|e| damaged(&sidecar_path, e.to_string()))?;
        let sidecar = Sidecar::decode(&bytes).map_err(|e| damaged(&sidecar_path, e.to_string()))?;
        SealedSegment::with_sidecar(data_path, sidecar_path, sidecar)
    }

    /// Maps the data file of `sidecar` and checks that it is the one the sidecar describes.
    pub fn with_sidecar(
        data_path: PathBuf,
        sidecar_path: PathBuf,
        sidecar: Sidecar,
    ) -> Result<SealedSegment, SealError> {
        let damaged = |reason: String| SealError::Damaged {
            path: data_path.clone(),
            reason,
        };
        let file = std::fs::File::open(&data_path).map_err(|e| damaged(e.to_string()))?;
        // SAFETY: a sealed data file is never written again once renamed into place; it is
        // only unlinked, which leaves the map valid.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| damaged(e.to_string()))?;
        let meta = SealedMeta::from_data_header(&map).map_err(|e| damaged(e.to_string()))?;
        if meta != sidecar.meta {
            return Err(damaged("its header does not match its sidecar's".into()));
        }
        if map.len() as u64 != sidecar.data_bytes {
            return Err(damaged(format!(
                "{} bytes where its sidecar says {} (truncated?)",
                map.len(),
                sidecar.data_bytes
            )));
        }
        let needles = match sidecar.needles {
            None => None,
            Some(place) => {
                let at = place.offset as usize;
                let frame = map.get(at..at + BLOCK_FRAME_BYTES).unwrap_or_default();
                if needles_frame_len(frame) != Some(place.len)
                    || frame[12..16] != place.crc.to_le_bytes()
                {
                    return Err(damaged(
                        "its needles block's frame does not match the sidecar".into(),
                    ));
                }
                let n = Needles::open(
                    &map,
                    at + BLOCK_FRAME_BYTES,
                    place.len as usize,
                    sidecar.blocks.len(),
                )
                .map_err(|e| damaged(format!("its needles block: {e}")))?;
                Some(n)
            }
        };
        Ok(SealedSegment {
            sidecar,
            data_path,
            sidecar_path,
            map,
            needles,
        })
    }

    /// The segment with everything it owns on the heap (its sidecar, its paths) copied by the
    /// calling thread. A segment sealed on a blocking thread is kept for as long as the store
    /// keeps it; left in that thread's heap, amid the hundreds of MiB that sealing allocates
    /// and frees, each one keeps freed memory around it from being returned (resident memory
    /// grew by ~1.8 MB per segment sealed, for good). Copied by the shard's thread, the
    /// blocking thread's heap empties after each sealing.
    pub fn rehomed(self) -> SealedSegment {
        SealedSegment {
            sidecar: self.sidecar.clone(),
            data_path: self.data_path.clone(),
            sidecar_path: self.sidecar_path.clone(),
            map: self.map,
            needles: self.needles.map(|n| n.rehomed()),
        }
    }

    /// Whether the filter of `entry` (the whole segment, or a block) may hold, for each of
    /// `all_of`, one of its keys ([`Needles::may_match`]). Without filters, anything may be
    /// there. A filter found damaged is `Err` once (then taken to hold anything). May read
    /// the data file: not on a shard's thread.
    pub fn may_match(&self, entry: Entry, all_of: &[Vec<u64>]) -> Result<bool, SealError> {
        match &self.needles {
            None => Ok(true),
            Some(n) => n
                .may_match(&self.map, entry, all_of)
                .map_err(|d| SealError::Damaged {
                    path: self.data_path.clone(),
                    reason: format!("the needle filter of {:?}: {}", d.entry, d.reason),
                }),
        }
    }

    /// Bytes of the needles block on disk.
    pub fn needles_bytes(&self) -> usize {
        self.needles.as_ref().map_or(0, Needles::bytes)
    }

    /// The bytes of block `i`, checked against its frame and CRC.
    pub fn block(&self, i: usize) -> Result<&[u8], SealError> {
        let damaged = |reason: String| SealError::Block {
            path: self.data_path.clone(),
            block: i,
            reason,
        };
        let meta = self
            .sidecar
            .blocks
            .get(i)
            .ok_or_else(|| damaged("no such block".into()))?;
        let at = meta.offset as usize;
        let frame = self
            .map
            .get(at..at + BLOCK_FRAME_BYTES)
            .ok_or_else(|| damaged("past the end of the file".into()))?;
        let (kind, len, crc) = read_block_frame(frame).map_err(|e| damaged(e.to_string()))?;
        if kind != meta.kind || len != meta.len || crc != meta.crc {
            return Err(damaged("its frame does not match the sidecar".into()));
        }
        let start = at + BLOCK_FRAME_BYTES;
        let bytes = self
            .map
            .get(start..start + len as usize)
            .ok_or_else(|| damaged("past the end of the file".into()))?;
        if crc32c::crc32c(bytes) != crc {
            return Err(damaged("checksum mismatch".into()));
        }
        Ok(bytes)
    }

    /// Block `i` decoded into records, as stored records are read.
    pub fn decode(&self, i: usize) -> Result<DecodedBlock, SealError> {
        self.decode_with(i, None)
    }

    /// The spans of the traces `wanted` in block `i` (a span block), decoded into records:
    /// the block's other spans are read past, not built.
    pub fn decode_traces(&self, i: usize, wanted: &[TraceId]) -> Result<DecodedBlock, SealError> {
        self.decode_with(i, Some(wanted))
    }

    fn decode_with(&self, i: usize, wanted: Option<&[TraceId]>) -> Result<DecodedBlock, SealError> {
        let bytes = self.block(i)?;
        let invalid = |reason: String| SealError::Block {
            path: self.data_path.clone(),
            block: i,
            reason,
        };
        let kind = self.sidecar.blocks[i].kind;
        let records = match kind {
            BlockKind::Spans => block::decode_traces(bytes, wanted)
                .map_err(|e| invalid(e.to_string()))?
                .iter()
                .map(|batch| {
                    rkyv::to_bytes::<rkyv::rancor::Error>(batch)
                        .map_err(|e| invalid(format!("cannot archive: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            BlockKind::Logs => logblock::decode(bytes).map_err(|e| invalid(e.to_string()))?,
        };
        // Checked once here, so that reads need not check again (`DecodedBlock::span_batches`).
        let valid = records.iter().all(|r| match kind {
            BlockKind::Spans => {
                rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(r).is_ok()
            }
            BlockKind::Logs => {
                rkyv::access::<ArchivedLogBatch<'static>, rkyv::rancor::Error>(r).is_ok()
            }
        });
        if !valid {
            return Err(invalid("a record that is not a valid archive".into()));
        }
        Ok(DecodedBlock { kind, records })
    }

    /// Calls `f` on the facts of each span of span block `i` (of the traces `wanted`, sorted,
    /// if given; matched against `attrs`), reading only the columns they need
    /// ([`block::scan`]).
    pub fn scan(
        &self,
        i: usize,
        wanted: Option<&[TraceId]>,
        attrs: &[(String, String)],
        f: impl FnMut(&block::SpanFacts<'_>),
    ) -> Result<(), SealError> {
        let bytes = self.block(i)?;
        if self.sidecar.blocks[i].kind != BlockKind::Spans {
            return Ok(());
        }
        block::scan(bytes, wanted, attrs, f).map_err(|e| SealError::Block {
            path: self.data_path.clone(),
            block: i,
            reason: e.to_string(),
        })
    }

    /// Bytes on disk: the data file and the sidecar.
    pub fn disk_bytes(&self) -> u64 {
        self.sidecar.data_bytes + std::fs::metadata(&self.sidecar_path).map_or(0, |m| m.len())
    }

    /// Unlinks both files, the sidecar first: a pair is complete only with it, and a data file
    /// without one is removed at start-up. Blocking. The bytes freed. A search still holding
    /// the segment reads its map until it lets go.
    pub fn delete(&self) -> std::io::Result<u64> {
        let bytes = self.disk_bytes();
        std::fs::remove_file(&self.sidecar_path)?;
        std::fs::remove_file(&self.data_path)?;
        Ok(bytes)
    }
}

/// One block's records, as archives read in place ([`DecodedBlock::span_batches`]), each
/// checked once when decoded.
pub struct DecodedBlock {
    pub kind: BlockKind,
    records: Vec<AlignedVec>,
}

impl DecodedBlock {
    /// The span batches; none in a log block.
    pub fn span_batches(&self) -> impl Iterator<Item = &ArchivedSpanBatch<'static>> {
        let spans = self.kind == BlockKind::Spans;
        // SAFETY: every record of a span block was checked to be a valid `ArchivedSpanBatch`
        // when the block was decoded (`SealedSegment::decode`), and is never modified.
        self.records
            .iter()
            .filter(move |_| spans)
            .map(|r| unsafe { rkyv::access_unchecked::<ArchivedSpanBatch<'static>>(r) })
    }

    /// The log batches; none in a span block.
    pub fn log_batches(&self) -> impl Iterator<Item = &ArchivedLogBatch<'static>> {
        let logs = self.kind == BlockKind::Logs;
        // SAFETY: as in `span_batches`, for `ArchivedLogBatch`.
        self.records
            .iter()
            .filter(move |_| logs)
            .map(|r| unsafe { rkyv::access_unchecked::<ArchivedLogBatch<'static>>(r) })
    }

    /// Bytes the decoded records hold.
    pub fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.len()).sum()
    }
}
