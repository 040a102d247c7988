//! Sealing one full raw segment ([`seal`]): its records rewritten as blocks, and the sidecar
//! that describes them, made visible in an order that a crash at any point leaves either the
//! raw segment or a complete sealed pair as the truth (`shards/README.md`, "Lifecycle").
//!
//! Blocking from start to end (it reads a whole segment and writes and syncs two files): the
//! shard runs it on its blocking pool ([`crate::shard::sealing`]).

use foldhash::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::format::{
    block_frame, needles_frame, needles_frame_len, read_block_frame, trace_key, BlockKind,
    BlockMeta, BlockTraces, NeedlesPlace, SealedMeta, Sidecar, TraceFilter, BLOCK_FRAME_BYTES,
    DATA_HEADER_BYTES,
};
use super::sealed::SealedSegment;
use super::{block, data_path, logblock, needles, sidecar_path, tmp_path, SealError};
use crate::domain::tags::{Sampler, TagScope, TagTable};
use crate::domain::{
    archived_service_name, from_archived, ArchivedLogBatch, ArchivedSpanBatch, LogRecord, Span,
    TraceId, STATUS_CODE_ERROR,
};
use crate::limits::{
    SEALED_BLOCK_SPANS, SEALED_BLOCK_SPANS_MAX, SEALED_LOG_BLOCK_BYTES, TAG_VALUES_KEPT,
};
use crate::storage::segment::{sync_dir, Segment};
use crate::storage::{frame, RecordKind};

/// OTLP severity number of `ERROR`: a log block holding one at or above it is flagged.
const SEVERITY_ERROR: i32 = 17;

/// The steps of sealing, in order, at which a test can make sealing stop (and then kill the
/// process): see [`pause_point`].
pub const STEPS: [&str; 4] = ["written", "data-renamed", "renamed", "installed"];

/// Environment variable naming a step of [`STEPS`] at which sealing stops for good: for the
/// crash tests only, which kill the process there.
pub const PAUSE_ENV: &str = "GLUST_TEST_SEAL_PAUSE";

/// Stops this thread for good if [`PAUSE_ENV`] names `step`, after saying so on stderr.
pub fn pause_point(step: &str) {
    if std::env::var(PAUSE_ENV).is_ok_and(|s| s == step) {
        eprintln!("glust: sealing paused at {step}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Seals the raw segment at `raw`: writes `seg-<seq>.sealed` and `seg-<seq>.idx` beside it,
/// synced and renamed into place (data file first), and the directory synced. The raw
/// segment is left as it is: the caller deletes it once the sealed one serves its records.
pub fn seal(raw: &Path) -> Result<SealedSegment, SealError> {
    let failed = |source: io::Error| SealError::Io {
        path: raw.to_owned(),
        source: source.into(),
    };
    let mut segment = Segment::open(raw, false).map_err(|e| SealError::Raw {
        path: raw.to_owned(),
        reason: e.to_string(),
    })?;
    // Where each intact record's payload lies: the scan checks every CRC, so the payloads are
    // read from the map afterwards without checking them again.
    let mut records: Vec<(RecordKind, usize, usize)> = Vec::new();
    segment.recover(|offset, kind, payload| {
        records.push((kind, offset as usize + frame::HEADER_BYTES, payload.len()))
    });
    let last_write = std::fs::metadata(raw)
        .and_then(|m| m.modified())
        .map_err(failed)?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let meta = SealedMeta {
        shard_id: segment.meta.shard_id,
        shard_count: segment.meta.shard_count,
        seq: segment.meta.seq,
        created_unix_nanos: segment.meta.created_unix_nanos,
        last_write_unix_nanos: last_write,
    };

    let mut spans: Vec<&ArchivedSpanBatch<'static>> = Vec::new();
    let mut logs: Vec<(&[u8], &ArchivedLogBatch<'static>)> = Vec::new();
    let bytes = segment.bytes();
    for (kind, at, len) in records {
        let payload = &bytes[at..at + len];
        match kind {
            RecordKind::Spans => {
                if let Ok(b) =
                    rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(payload)
                {
                    spans.push(b);
                }
            }
            RecordKind::Logs => {
                if let Ok(b) =
                    rkyv::access::<ArchivedLogBatch<'static>, rkyv::rancor::Error>(payload)
                {
                    logs.push((payload, b));
                }
            }
        }
    }

    let dir = raw.parent().unwrap_or(Path::new("."));
    write_pair(dir, meta, &spans, &logs).map_err(failed)
}

/// What [`rebuild`] made of a sealed data file whose sidecar could not be used.
#[derive(Debug)]
pub struct Rebuilt {
    pub segment: SealedSegment,
    /// Blocks read back, and blocks lost: found damaged, or past damage that hid where the
    /// next block starts.
    pub blocks_kept: usize,
    pub blocks_lost: usize,
}

/// Rewrites the sealed pair of data file `data` from the blocks it holds, for a sidecar
/// that is missing or damaged (or a data file that no longer matches it) when the raw
/// segment is gone. Every block is checked against its frame's CRC and decoded; the intact
/// ones are sealed again into a new pair that replaces the old one, written and renamed as
/// [`seal`] does, so that a crash part way leaves the old data file or the new pair. Blocking.
pub fn rebuild(data: &Path) -> Result<Rebuilt, SealError> {
    let damaged = |reason: String| SealError::Damaged {
        path: data.to_owned(),
        reason,
    };
    let file = File::open(data).map_err(|e| damaged(e.to_string()))?;
    // SAFETY: a sealed data file is never written in place; a rebuild replaces it by rename.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| damaged(e.to_string()))?;
    let meta = SealedMeta::from_data_header(&map).map_err(|e| damaged(e.to_string()))?;
    let (mut span_records, mut log_records) = (Vec::new(), Vec::new());
    let (mut kept, mut lost) = (0, 0);
    let mut at = DATA_HEADER_BYTES;
    while at < map.len() {
        // The needles block is built anew from the blocks kept.
        if let Some(len) = needles_frame_len(&map[at..]) {
            at += BLOCK_FRAME_BYTES + len as usize;
            continue;
        }
        let Ok((kind, len, crc)) = read_block_frame(&map[at..]) else {
            // Past a damaged frame the next block's start is unknown: the rest is lost.
            lost += 1;
            break;
        };
        let start = at + BLOCK_FRAME_BYTES;
        let Some(bytes) = map.get(start..start + len as usize) else {
            lost += 1;
            break;
        };
        at = start + len as usize;
        let decoded = match crc32c::crc32c(bytes) == crc {
            false => None,
            true => match kind {
                BlockKind::Spans => block::decode(bytes).ok().and_then(|batches| {
                    batches
                        .iter()
                        .map(rkyv::to_bytes::<rkyv::rancor::Error>)
                        .collect::<Result<Vec<_>, _>>()
                        .ok()
                }),
                BlockKind::Logs => logblock::decode(bytes).ok(),
            },
        };
        match decoded {
            Some(records) => {
                kept += 1;
                match kind {
                    BlockKind::Spans => span_records.extend(records),
                    BlockKind::Logs => log_records.extend(records),
                }
            }
            None => lost += 1,
        }
    }
    // Decoded records are checked before they are sealed again, as stored records are.
    let spans: Vec<&ArchivedSpanBatch<'static>> = span_records
        .iter()
        .filter_map(|r| rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(r).ok())
        .collect();
    let logs: Vec<(&[u8], &ArchivedLogBatch<'static>)> = log_records
        .iter()
        .filter_map(|r| {
            rkyv::access::<ArchivedLogBatch<'static>, rkyv::rancor::Error>(r)
                .ok()
                .map(|b| (r.as_slice(), b))
        })
        .collect();
    let dir = data.parent().unwrap_or(Path::new("."));
    let segment = write_pair(dir, meta, &spans, &logs).map_err(|source| SealError::Io {
        path: data.to_owned(),
        source: source.into(),
    })?;
    Ok(Rebuilt {
        segment,
        blocks_kept: kept,
        blocks_lost: lost,
    })
}

/// Writes `spans` and `logs` as the sealed pair of `meta.seq` in `dir`: both files written
/// and synced under temporary names, the data file renamed into place, then the sidecar,
/// then the directory synced.
fn write_pair(
    dir: &Path,
    meta: SealedMeta,
    spans: &[&ArchivedSpanBatch<'static>],
    logs: &[(&[u8], &ArchivedLogBatch<'static>)],
) -> io::Result<SealedSegment> {
    let (data, idx) = (data_path(dir, meta.seq), sidecar_path(dir, meta.seq));
    let (data_tmp, idx_tmp) = (tmp_path(&data), tmp_path(&idx));
    let written = (|| -> io::Result<Sidecar> {
        let mut out = DataWriter::create(&data_tmp, &meta)?;
        let mut names = Names::default();
        let (traces, filter_keys) = write_span_blocks(&mut out, &mut names, spans)?;
        write_log_blocks(&mut out, &mut names, logs)?;
        let (data_bytes, needles) = out.finish()?;
        let mut sidecar = names.sidecar(
            meta,
            data_bytes,
            std::mem::take(&mut out.blocks),
            std::mem::take(&mut out.traces),
            traces,
            filter_keys,
        );
        sidecar.needles = needles;
        let mut f = File::create(&idx_tmp)?;
        f.write_all(&sidecar.encode())?;
        f.sync_all()?;
        Ok(sidecar)
    })();
    let sidecar = match written {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&data_tmp);
            let _ = std::fs::remove_file(&idx_tmp);
            return Err(e);
        }
    };
    pause_point(STEPS[0]);
    std::fs::rename(&data_tmp, &data)?;
    pause_point(STEPS[1]);
    std::fs::rename(&idx_tmp, &idx)?;
    sync_dir(dir)?;
    pause_point(STEPS[2]);
    SealedSegment::with_sidecar(data, idx, sidecar).map_err(io::Error::other)
}

/// The data file as it is written: its blocks' descriptions so far.
struct DataWriter {
    out: BufWriter<File>,
    pos: u64,
    blocks: Vec<BlockMeta>,
    /// Per block, what it says of its traces (a log block: nothing).
    traces: Vec<BlockTraces>,
    /// Per block, its needle filter; and the keys of all blocks, for the segment's.
    needles: Vec<Option<xorf::BinaryFuse8>>,
    segment_keys: Vec<u64>,
}

impl DataWriter {
    fn create(path: &Path, meta: &SealedMeta) -> io::Result<DataWriter> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        out.write_all(&meta.data_header())?;
        Ok(DataWriter {
            out,
            pos: DATA_HEADER_BYTES as u64,
            blocks: Vec::new(),
            traces: Vec::new(),
            needles: Vec::new(),
            segment_keys: Vec::new(),
        })
    }

    /// Appends `bytes` as a block of `kind`, described by `meta` (its place filled in here),
    /// `traces` and its needle keys (in any order, repeated or not).
    fn block(
        &mut self,
        kind: BlockKind,
        bytes: &[u8],
        mut meta: BlockMeta,
        traces: BlockTraces,
        mut keys: Vec<u64>,
    ) -> io::Result<()> {
        let filter = needles::build(&mut keys);
        self.segment_keys.extend_from_slice(&keys);
        self.needles.push(filter);
        let frame = block_frame(kind, bytes);
        self.out.write_all(&frame)?;
        self.out.write_all(bytes)?;
        meta.kind = kind;
        meta.offset = self.pos;
        meta.len = bytes.len() as u32;
        meta.crc = u32::from_le_bytes(frame[12..16].try_into().expect("4 bytes"));
        self.pos += (BLOCK_FRAME_BYTES + bytes.len()) as u64;
        self.blocks.push(meta);
        self.traces.push(traces);
        Ok(())
    }

    /// Writes the needles block (if any block has keys), flushes and syncs the file; its
    /// length, and where the needles block is.
    fn finish(&mut self) -> io::Result<(u64, Option<NeedlesPlace>)> {
        let mut place = None;
        if self.needles.iter().any(Option::is_some) {
            let mut filters = Vec::with_capacity(1 + self.needles.len());
            filters.push(needles::build(&mut std::mem::take(&mut self.segment_keys)));
            filters.append(&mut self.needles);
            let bytes = needles::encode(&filters);
            let frame = needles_frame(&bytes);
            self.out.write_all(&frame)?;
            self.out.write_all(&bytes)?;
            place = Some(NeedlesPlace {
                offset: self.pos,
                len: bytes.len() as u32,
                crc: u32::from_le_bytes(frame[12..16].try_into().expect("4 bytes")),
            });
            self.pos += (BLOCK_FRAME_BYTES + bytes.len()) as u64;
        }
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok((self.pos, place))
    }
}

/// The services and span names of a segment, numbered as first seen, and the (service, span
/// name) pairs its spans have.
#[derive(Default)]
struct Names {
    services: HashMap<String, u32>,
    names: HashMap<String, u32>,
    operations: foldhash::HashSet<(u32, u32)>,
    /// The attribute keys and values of every batch's resource and of the items the samplers
    /// pick, by scope and service id.
    tags: TagTable<u32>,
    span_sampler: Sampler,
    log_sampler: Sampler,
}

fn id_of(map: &mut HashMap<String, u32>, s: &str) -> u32 {
    if let Some(&id) = map.get(s) {
        return id;
    }
    let id = map.len() as u32;
    map.insert(s.to_owned(), id);
    id
}

impl Names {
    fn sidecar(
        self,
        meta: SealedMeta,
        data_bytes: u64,
        blocks: Vec<BlockMeta>,
        block_traces: Vec<BlockTraces>,
        traces: u64,
        mut filter_keys: Vec<u64>,
    ) -> Sidecar {
        let by_id = |map: HashMap<String, u32>| {
            let mut v: Vec<(u32, String)> = map.into_iter().map(|(s, id)| (id, s)).collect();
            v.sort_unstable();
            v.into_iter().map(|(_, s)| s).collect::<Vec<String>>()
        };
        filter_keys.sort_unstable();
        filter_keys.dedup();
        // Building fails only for pathological key sets; without a filter, lookups read the
        // block table instead.
        let trace_filter = match filter_keys.is_empty() {
            true => None,
            false => TraceFilter::build(&filter_keys),
        };
        let spans = blocks
            .iter()
            .filter(|b| b.kind == BlockKind::Spans)
            .map(|b| u64::from(b.items))
            .sum();
        let logs = blocks
            .iter()
            .filter(|b| b.kind == BlockKind::Logs)
            .map(|b| u64::from(b.items))
            .sum();
        let mut operations: Vec<(u32, u32)> = self.operations.into_iter().collect();
        operations.sort_unstable();
        let mut tags = self.tags;
        tags.trim(TAG_VALUES_KEPT);
        Sidecar {
            meta,
            data_bytes,
            spans,
            logs,
            traces,
            min_time: blocks.iter().map(|b| b.min_time).min().unwrap_or(0),
            max_time: blocks
                .iter()
                .map(|b| b.max_end.max(b.max_time))
                .max()
                .unwrap_or(0),
            services: by_id(self.services),
            names: by_id(self.names),
            blocks,
            trace_filter,
            time_ordered: true,
            block_traces,
            operations,
            needles: None,
            tags,
        }
    }
}

fn empty_meta() -> BlockMeta {
    BlockMeta {
        kind: BlockKind::Spans,
        offset: 0,
        len: 0,
        crc: 0,
        items: 0,
        min_time: u64::MAX,
        max_time: 0,
        max_end: 0,
        min_duration: u64::MAX,
        max_duration: 0,
        first_trace: TraceId::default(),
        last_trace: TraceId::default(),
        error: false,
        max_severity: 0,
        services: Vec::new(),
        names: Vec::new(),
    }
}

/// Writes the spans of `batches` as blocks: the traces in order of their first span's start
/// (then id), each trace's spans together by start, cut at trace boundaries; the number of
/// distinct traces and the trace filter's keys.
///
/// Time order makes each block a slice of the segment's time, so that a search newest first
/// reads the newest blocks and stops (an id order made every block span the whole segment).
fn write_span_blocks(
    out: &mut DataWriter,
    names: &mut Names,
    batches: &[&ArchivedSpanBatch<'static>],
) -> io::Result<(u64, Vec<u64>)> {
    let mut groups = block::Groups::default();
    let mut batch_groups = Vec::with_capacity(batches.len());
    let mut services = Vec::with_capacity(batches.len());
    let mut hasher = needles::Keys::default();
    let mut resource_keys: Vec<Vec<u64>> = Vec::with_capacity(batches.len());
    for b in batches {
        let resource = from_archived::resource(&b.resource);
        let mut k = Vec::new();
        hasher.attrs(&resource.attributes, &mut k);
        resource_keys.push(k);
        batch_groups.push(groups.add(&resource, &from_archived::scope(&b.scope)));
        let service = id_of(
            &mut names.services,
            archived_service_name(&b.resource.attributes),
        );
        services.push(service);
        let tags = &mut names.tags;
        tags.note_archived(
            TagScope::TraceResource,
            service,
            &b.resource.attributes,
            b.spans.len() as u64,
        );
        for span in b.spans.iter() {
            if let Some(weight) = names.span_sampler.pick() {
                tags.note_archived(TagScope::Span, service, &span.attributes, weight);
            }
        }
    }
    // Every span's place, in the order blocks hold them.
    let mut order: Vec<(TraceId, u64, u32, u32)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| {
            batch.spans.iter().enumerate().map(move |(i, s)| {
                (
                    s.trace_id.get(),
                    s.start_time_unix_nano.to_native(),
                    b as u32,
                    i as u32,
                )
            })
        })
        .collect();
    order.sort_unstable();
    // Each trace's run of spans in id order, then the runs by their first start.
    let mut runs: Vec<(u64, TraceId, usize, usize)> = Vec::new();
    for (i, o) in order.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if run.1 == o.0 => run.3 += 1,
            _ => runs.push((o.1, o.0, i, 1)),
        }
    }
    let keys: Vec<u64> = runs.iter().map(|r| trace_key(&r.1)).collect();
    let traces = keys.len() as u64;
    runs.sort_unstable();
    let order: Vec<(TraceId, u64, u32, u32)> = runs
        .iter()
        .flat_map(|&(_, _, at, len)| order[at..at + len].iter().copied())
        .collect();
    let mut start = 0;
    while start < order.len() {
        // A block ends at the first trace boundary past SEALED_BLOCK_SPANS, or at the cap.
        let mut end = (start + SEALED_BLOCK_SPANS).min(order.len());
        while end < order.len()
            && end - start < SEALED_BLOCK_SPANS_MAX
            && order[end].0 == order[end - 1].0
        {
            end += 1;
        }
        let chunk = &order[start..end];
        let spans: Vec<Span<'_>> = chunk
            .iter()
            .map(|&(_, _, b, i)| from_archived::span(&batches[b as usize].spans[i as usize]))
            .collect();
        let input: Vec<(u32, &Span<'_>)> = chunk
            .iter()
            .map(|c| batch_groups[c.2 as usize])
            .zip(&spans)
            .collect();
        let mut meta = empty_meta();
        meta.items = spans.len() as u32;
        meta.first_trace = chunk[0].0;
        meta.last_trace = chunk[chunk.len() - 1].0;
        for ((_, s), c) in input.iter().zip(chunk) {
            let duration = s.duration_nanos();
            meta.min_time = meta.min_time.min(s.start_time_unix_nano);
            meta.max_time = meta.max_time.max(s.start_time_unix_nano);
            meta.max_end = meta.max_end.max(s.end_time_unix_nano);
            meta.min_duration = meta.min_duration.min(duration);
            meta.max_duration = meta.max_duration.max(duration);
            meta.error |= s.status.code == STATUS_CODE_ERROR;
            let name = id_of(&mut names.names, &s.name);
            meta.names.push(name);
            names.operations.insert((services[c.2 as usize], name));
        }
        meta.services = chunk.iter().map(|c| services[c.2 as usize]).collect();
        for ids in [&mut meta.services, &mut meta.names] {
            ids.sort_unstable();
            ids.dedup();
        }
        let mut block_keys: Vec<u64> = chunk
            .iter()
            .enumerate()
            .filter(|&(i, c)| i == 0 || chunk[i - 1].0 != c.0)
            .map(|(_, c)| trace_key(&c.0))
            .collect();
        block_keys.sort_unstable();
        block_keys.dedup();
        let traces = BlockTraces {
            // Traces are in order of their first start: the last one's is the newest.
            newest_start: runs_start(chunk),
            filter: TraceFilter::build_small(&block_keys),
        };
        let mut needle_keys = Vec::new();
        for (_, s) in &input {
            hasher.attrs(&s.attributes, &mut needle_keys);
        }
        let mut chunk_batches: Vec<u32> = chunk.iter().map(|c| c.2).collect();
        chunk_batches.sort_unstable();
        chunk_batches.dedup();
        for b in chunk_batches {
            needle_keys.extend_from_slice(&resource_keys[b as usize]);
        }
        let bytes = block::encode_sorted(&groups, &input);
        out.block(BlockKind::Spans, &bytes, meta, traces, needle_keys)?;
        start = end;
    }
    Ok((traces, keys))
}

/// The first start of the last trace of `chunk` (spans of whole traces, each trace's by start).
fn runs_start(chunk: &[(TraceId, u64, u32, u32)]) -> u64 {
    let last = chunk[chunk.len() - 1].0;
    chunk
        .iter()
        .rev()
        .take_while(|c| c.0 == last)
        .map(|c| c.1)
        .min()
        .unwrap_or(0)
}

/// Writes the log records as blocks of about [`SEALED_LOG_BLOCK_BYTES`] of stored records, in
/// stored order.
fn write_log_blocks(
    out: &mut DataWriter,
    names: &mut Names,
    records: &[(&[u8], &ArchivedLogBatch<'static>)],
) -> io::Result<()> {
    let mut groups = block::Groups::default();
    let batch_groups: Vec<u32> = records
        .iter()
        .map(|(_, b)| {
            groups.add(
                &from_archived::resource(&b.resource),
                &from_archived::scope(&b.scope),
            )
        })
        .collect();
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < records.len() && (end == start || bytes < SEALED_LOG_BLOCK_BYTES) {
            bytes += records[end].0.len();
            end += 1;
        }
        let chunk = &records[start..end];
        let logs: Vec<Vec<LogRecord<'_>>> = chunk
            .iter()
            .map(|(_, b)| b.logs.iter().map(from_archived::log_record).collect())
            .collect();
        let mut meta = empty_meta();
        let mut max_severity = 0;
        let mut needle_keys = Vec::new();
        for ((_, batch), records) in chunk.iter().zip(&logs) {
            let service = id_of(
                &mut names.services,
                archived_service_name(&batch.resource.attributes),
            );
            meta.services.push(service);
            names.tags.note_archived(
                TagScope::LogResource,
                service,
                &batch.resource.attributes,
                records.len() as u64,
            );
            for record in records {
                if let Some(weight) = names.log_sampler.pick() {
                    names
                        .tags
                        .note(TagScope::Log, service, &record.attributes, weight);
                }
                let t = record.effective_time();
                meta.items += 1;
                meta.min_time = meta.min_time.min(t);
                meta.max_time = meta.max_time.max(t);
                max_severity = max_severity.max(record.severity_number);
                needles::body_keys(&record.body, &mut needle_keys);
                needle_keys.extend(record.trace_id.as_ref().map(needles::trace_id_key));
            }
        }
        meta.error = max_severity >= SEVERITY_ERROR;
        meta.max_severity = max_severity;
        (meta.min_duration, meta.max_duration) = (0, 0);
        meta.services.sort_unstable();
        meta.services.dedup();
        let runs: Vec<(u32, &[LogRecord<'_>])> = batch_groups[start..end]
            .iter()
            .zip(&logs)
            .map(|(&g, l)| (g, l.as_slice()))
            .collect();
        let traces = BlockTraces::default();
        out.block(
            BlockKind::Logs,
            &logblock::encode(&groups, &runs),
            meta,
            traces,
            needle_keys,
        )?;
        start = end;
    }
    Ok(())
}
