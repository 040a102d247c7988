//! A sealed block of logs: the log records of some stored records, in the order they were
//! stored, as columns that each compress well on their own, as span blocks are
//! (`super::block`), each column compressed with zstd.
//!
//! Layout: the `u32` [`LOG_COLUMNS_TAG`], then the columns as span blocks store them (`u32`
//! column count, then per column its raw length, stored length and stored bytes), in the order
//! of [`Col`]:
//!
//! - **groups**: the distinct (resource, scope) pairs; **batches**: per run of records of one
//!   group, the group and the run's length.
//! - **times**: each record's time, zigzag from the record before's; **observed**: its
//!   observed time, likewise.
//! - **severities** (zigzag), **severity texts** (an id into the **severity dictionary**).
//! - **bodies**: a dictionary stream of the bodies, as attribute values are kept.
//! - **attribute keys**, **key dictionary**, **values**: as in span blocks.
//! - **trace refs**: 0 for a record without a trace id, 1 for a trace id not seen before in
//!   the block (its 16 bytes in **trace ids**), `n ≥ 2` for the `n - 2`-th trace id seen: a
//!   trace's records lie close together, and its id is stored once per block.
//! - **span ids**: the 8 bytes of each span id present.
//! - **rest**: per record, whether it has a span id, its flags, its dropped attribute count
//!   and its event name (an id into the **event names**).
//!
//! Blocks written before logs had columns (the record count first, then the stored records
//! compressed together) are still read: a count is never [`LOG_COLUMNS_TAG`].

use std::borrow::Cow;

use foldhash::{HashMap, HashMapExt};
use rkyv::util::AlignedVec;

use super::block::{
    columns, pack, read_groups, AttrReader, AttrWriter, BlockGroups, DictEntry, Groups, KeyValues,
    ValueSource, ValueStream, NEW_VALUE, RAW_VALUE, SEEN_VALUE,
};
use super::column::{BlockError, ColumnReader, ColumnWriter};
use crate::domain::{AnyValue, LogBatch, LogRecord, SpanId, TraceId};
use crate::limits::SEALED_COLUMN_BYTES_MAX;

/// The first `u32` of a columnar log block.
pub const LOG_COLUMNS_TAG: u32 = u32::MAX;

/// zstd level of the blocks written before logs had columns.
#[cfg(test)]
const LEGACY_ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Groups,
    Batches,
    Times,
    Observed,
    Shapes,
    ShapeDict,
    Bodies,
    KeyDict,
    AttrKeys,
    Values,
    TraceRefs,
    TraceIds,
    SpanIds,
}

const COLUMNS: [Col; 13] = [
    Col::Groups,
    Col::Batches,
    Col::Times,
    Col::Observed,
    Col::Shapes,
    Col::ShapeDict,
    Col::Bodies,
    Col::KeyDict,
    Col::AttrKeys,
    Col::Values,
    Col::TraceRefs,
    Col::TraceIds,
    Col::SpanIds,
];

impl Col {
    fn name(self) -> &'static str {
        match self {
            Col::Groups => "log groups",
            Col::Batches => "log batches",
            Col::Times => "log times",
            Col::Observed => "observed times",
            Col::Shapes => "log shapes",
            Col::ShapeDict => "log shape dictionary",
            Col::Bodies => "bodies",
            Col::KeyDict => "log key dictionary",
            Col::AttrKeys => "log attribute keys",
            Col::Values => "log values",
            Col::TraceRefs => "trace refs",
            Col::TraceIds => "log trace ids",
            Col::SpanIds => "log span ids",
        }
    }
}

/// What a record has in common with many others: its severity, flags, dropped count, event
/// name and whether it has a span id. Each is nearly constant, and nearly random where it
/// varies; stored as one id per record, a block's few shapes cost about a bit each.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Shape<'s> {
    severity_number: i32,
    severity_text: &'s str,
    has_span: bool,
    flags: u32,
    dropped_attributes_count: u32,
    event_name: &'s str,
}

impl Shape<'_> {
    fn write(&self, w: &mut ColumnWriter) {
        w.signed(i64::from(self.severity_number));
        w.str(self.severity_text);
        w.varint(u64::from(self.has_span));
        w.varint(u64::from(self.flags));
        w.varint(u64::from(self.dropped_attributes_count));
        w.str(self.event_name);
    }
}

/// A shape as read back, with owned strings.
struct ReadShape {
    severity_number: i32,
    severity_text: String,
    has_span: bool,
    flags: u32,
    dropped_attributes_count: u32,
    event_name: String,
}

fn read_shape(r: &mut ColumnReader<'_>) -> Result<ReadShape, BlockError> {
    let u32_of =
        |r: &mut ColumnReader<'_>, what| u32::try_from(r.varint()?).map_err(|_| r.invalid(what));
    Ok(ReadShape {
        severity_number: i32::try_from(r.signed()?).map_err(|_| r.invalid("a severity"))?,
        severity_text: r.str()?,
        has_span: match r.varint()? {
            0 => false,
            1 => true,
            _ => return Err(r.invalid("a span id flag")),
        },
        flags: u32_of(r, "flags")?,
        dropped_attributes_count: u32_of(r, "a dropped count")?,
        event_name: r.str()?,
    })
}

/// A value stream of a log block: a dictionary stream as span blocks keep attribute values
/// ([`KeyValues`]), but with the content of each new value (a string's bytes, a number) in a
/// stream of its own, apart from the flags, ids, types and lengths, and the two compressed
/// apart. Log attributes and bodies hold more text that never repeats than spans do, and
/// random text compresses to its entropy only when nothing else is mixed into it.
#[derive(Default)]
struct SplitValues {
    meta: ColumnWriter,
    data: ColumnWriter,
    dict: KeyValues,
}

/// Value types in the meta stream of [`SplitValues`]; a value of any other type is written
/// whole, [`ColumnWriter::value`], to the data stream.
const SPLIT_STRING: u64 = 1;
const SPLIT_INT: u64 = 3;
const SPLIT_DOUBLE: u64 = 4;
const SPLIT_BYTES: u64 = 5;
const SPLIT_OTHER: u64 = 8;

impl ValueStream for SplitValues {
    fn push(&mut self, value: &AnyValue<'_>, encoded: &[u8]) {
        match self.dict.entry(encoded) {
            DictEntry::Seen(id) => {
                self.meta.varint(SEEN_VALUE);
                self.meta.varint(id);
                return;
            }
            DictEntry::New => self.meta.varint(NEW_VALUE),
            DictEntry::Raw => self.meta.varint(RAW_VALUE),
        }
        match value {
            AnyValue::String(s) => {
                self.meta.varint(SPLIT_STRING);
                self.meta.varint(s.len() as u64);
                self.data.fixed(s.as_bytes());
            }
            AnyValue::Bytes(b) => {
                self.meta.varint(SPLIT_BYTES);
                self.meta.varint(b.len() as u64);
                self.data.fixed(b);
            }
            AnyValue::Int(i) => {
                self.meta.varint(SPLIT_INT);
                self.data.signed(*i);
            }
            AnyValue::Double(d) => {
                self.meta.varint(SPLIT_DOUBLE);
                self.data.fixed(&d.to_le_bytes());
            }
            other => {
                self.meta.varint(SPLIT_OTHER);
                self.data.value(other);
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        pack(&[self.meta, self.data])
    }
}

/// The reader of a [`SplitValues`] stream: every value decoded when opened, since a stream
/// is read whole with its block.
struct SplitSource {
    values: std::vec::IntoIter<AnyValue<'static>>,
    name: &'static str,
}

impl<'c> ValueSource<'c> for SplitSource {
    fn open(name: &'static str, bytes: &'c [u8]) -> Result<Self, BlockError> {
        let raw = columns(bytes, &[name, name])?;
        let mut meta = ColumnReader::new(name, &raw[0]);
        let mut data = ColumnReader::new(name, &raw[1]);
        let mut seen: Vec<AnyValue<'static>> = Vec::new();
        let mut values = Vec::new();
        while !meta.is_empty() {
            let flag = meta.varint()?;
            if flag == SEEN_VALUE {
                let id = meta.varint()? as usize;
                let v = seen
                    .get(id)
                    .ok_or_else(|| meta.invalid("a value id not seen before"))?;
                values.push(v.clone());
                continue;
            }
            // A damaged length cannot over-read: `take` refuses one past the data.
            let value = match meta.varint()? {
                SPLIT_STRING => {
                    let len = meta.varint()? as usize;
                    let bytes = data.take(len)?;
                    AnyValue::String(Cow::Owned(
                        String::from_utf8(bytes.to_vec())
                            .map_err(|_| data.invalid("a string that is not UTF-8"))?,
                    ))
                }
                SPLIT_BYTES => {
                    let len = meta.varint()? as usize;
                    AnyValue::Bytes(Cow::Owned(data.take(len)?.to_vec()))
                }
                SPLIT_INT => AnyValue::Int(data.signed()?),
                SPLIT_DOUBLE => AnyValue::Double(f64::from_le_bytes(data.fixed()?)),
                SPLIT_OTHER => data.value()?,
                _ => return Err(meta.invalid("an unknown value type")),
            };
            match flag {
                NEW_VALUE => seen.push(value.clone()),
                RAW_VALUE => {}
                _ => return Err(meta.invalid("an unknown value flag")),
            }
            values.push(value);
        }
        if !data.is_empty() {
            return Err(data.invalid("bytes past the last value"));
        }
        Ok(SplitSource {
            values: values.into_iter(),
            name,
        })
    }

    fn next(&mut self) -> Result<AnyValue<'static>, BlockError> {
        self.values.next().ok_or(BlockError::Truncated {
            column: self.name,
            what: "a value",
        })
    }
}

/// Encodes runs of log records, each with its group (an id in `groups`), into one block,
/// in the order given.
pub fn encode(groups: &Groups, runs: &[(u32, &[LogRecord<'_>])]) -> Vec<u8> {
    let mut cols: Vec<ColumnWriter> = COLUMNS.iter().map(|_| ColumnWriter::default()).collect();
    let col = |c: Col| c as usize;
    let mut in_block = BlockGroups::new(groups);
    let mut shapes: HashMap<Shape<'_>, u64> = HashMap::new();
    let mut bodies = SplitValues::default();
    let mut attrs: AttrWriter<'_, SplitValues> = AttrWriter::default();
    let mut traces: HashMap<TraceId, u64> = HashMap::new();
    let mut scratch = ColumnWriter::default();
    let (mut time, mut observed) = (0u64, 0u64);
    for &(g, logs) in runs {
        let id = in_block.id(g, &mut cols[col(Col::Groups)]);
        cols[col(Col::Batches)].varint(id);
        cols[col(Col::Batches)].varint(logs.len() as u64);
        for l in logs {
            cols[col(Col::Times)].signed(l.time_unix_nano.wrapping_sub(time) as i64);
            time = l.time_unix_nano;
            cols[col(Col::Observed)]
                .signed(l.observed_time_unix_nano.wrapping_sub(observed) as i64);
            observed = l.observed_time_unix_nano;
            let shape = Shape {
                severity_number: l.severity_number,
                severity_text: &l.severity_text,
                has_span: l.span_id.is_some(),
                flags: l.flags,
                dropped_attributes_count: l.dropped_attributes_count,
                event_name: &l.event_name,
            };
            let next = shapes.len() as u64;
            let shape = *shapes.entry(shape).or_insert_with(|| {
                shape.write(&mut cols[col(Col::ShapeDict)]);
                next
            });
            cols[col(Col::Shapes)].varint(shape);
            scratch.bytes.clear();
            scratch.value(&l.body);
            bodies.push(&l.body, &scratch.bytes);
            attrs.write(&l.attributes);
            match l.trace_id {
                None => cols[col(Col::TraceRefs)].varint(0),
                Some(t) => {
                    let next = traces.len() as u64;
                    match traces.get(&t) {
                        Some(&seen) => cols[col(Col::TraceRefs)].varint(seen + 2),
                        None => {
                            traces.insert(t, next);
                            cols[col(Col::TraceRefs)].varint(1);
                            cols[col(Col::TraceIds)].fixed(&t.0);
                        }
                    }
                }
            }
            if let Some(s) = l.span_id {
                cols[col(Col::SpanIds)].fixed(&s.0);
            }
        }
    }
    cols[col(Col::Bodies)].bytes = bodies.finish();
    attrs.finish(
        &mut cols,
        col(Col::KeyDict),
        col(Col::AttrKeys),
        col(Col::Values),
    );
    let mut out = LOG_COLUMNS_TAG.to_le_bytes().to_vec();
    out.extend_from_slice(&pack(&cols));
    out
}

/// Encodes the records of `batches` into one block (for tests and benchmarks; sealing numbers
/// the groups of a whole segment once, [`Groups`]).
pub fn encode_batches(batches: &[LogBatch<'_>]) -> Vec<u8> {
    let mut groups = Groups::default();
    let runs: Vec<(u32, &[LogRecord<'_>])> = batches
        .iter()
        .map(|b| (groups.add(&b.resource, &b.scope), b.logs.as_slice()))
        .collect();
    encode(&groups, &runs)
}

/// The records of a block as archives of [`LogBatch`], each in its own aligned buffer
/// (archives must be aligned to be read in place).
pub fn decode(block: &[u8]) -> Result<Vec<AlignedVec>, BlockError> {
    let mut r = ColumnReader::new("log block", block);
    if u32::from_le_bytes(r.fixed()?) != LOG_COLUMNS_TAG {
        return decode_legacy(block);
    }
    decode_batches(&block[4..])?
        .iter()
        .map(|b| {
            rkyv::to_bytes::<rkyv::rancor::Error>(b).map_err(|_| BlockError::Invalid {
                column: "log block",
                what: "records that cannot be archived",
            })
        })
        .collect()
}

/// Decodes the columns (the block past its tag) into batches, one per run.
fn decode_batches(block: &[u8]) -> Result<Vec<LogBatch<'static>>, BlockError> {
    let names: Vec<&'static str> = COLUMNS.iter().map(|c| c.name()).collect();
    let raw = columns(block, &names)?;
    let reader = |c: Col| ColumnReader::new(c.name(), &raw[c as usize]);
    let groups = read_groups(reader(Col::Groups))?;
    let mut shape_dict = reader(Col::ShapeDict);
    let mut shapes = Vec::new();
    while !shape_dict.is_empty() {
        shapes.push(read_shape(&mut shape_dict)?);
    }
    let mut batches = reader(Col::Batches);
    let mut times = reader(Col::Times);
    let mut observed_col = reader(Col::Observed);
    let mut shape_ids = reader(Col::Shapes);
    let mut bodies = SplitSource::open(Col::Bodies.name(), &raw[Col::Bodies as usize])?;
    let mut attrs: AttrReader<'_, SplitSource> = AttrReader::new(
        reader(Col::KeyDict),
        reader(Col::AttrKeys),
        reader(Col::Values),
    )?;
    let mut trace_refs = reader(Col::TraceRefs);
    let mut trace_ids = reader(Col::TraceIds);
    let mut seen_traces: Vec<TraceId> = Vec::new();
    let mut span_ids = reader(Col::SpanIds);
    let (mut time, mut observed) = (0u64, 0u64);
    let mut out = Vec::new();
    while !batches.is_empty() {
        let (resource, scope) = groups
            .get(batches.varint()? as usize)
            .ok_or_else(|| batches.invalid("a group past the groups"))?
            .clone();
        // Each record takes at least a byte of the times column: a damaged count cannot make
        // the reader reserve more than the block holds.
        let count = batches.varint()? as usize;
        if count > times.remaining() {
            return Err(batches.invalid("a run longer than the block"));
        }
        let mut logs = Vec::with_capacity(count);
        for _ in 0..count {
            time = time.wrapping_add(times.signed()? as u64);
            observed = observed.wrapping_add(observed_col.signed()? as u64);
            let shape = shapes
                .get(shape_ids.varint()? as usize)
                .ok_or_else(|| shape_ids.invalid("a shape past the dictionary"))?;
            let body = bodies.next()?;
            let attributes = attrs.read()?;
            let trace_id = match trace_refs.varint()? {
                0 => None,
                1 => {
                    let t = TraceId(trace_ids.fixed()?);
                    seen_traces.push(t);
                    Some(t)
                }
                n => Some(
                    *seen_traces
                        .get(n as usize - 2)
                        .ok_or_else(|| trace_refs.invalid("a trace not seen before"))?,
                ),
            };
            let span_id = match shape.has_span {
                false => None,
                true => Some(SpanId(span_ids.fixed()?)),
            };
            logs.push(LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: observed,
                severity_number: shape.severity_number,
                severity_text: Cow::Owned(shape.severity_text.clone()),
                body,
                attributes,
                dropped_attributes_count: shape.dropped_attributes_count,
                flags: shape.flags,
                trace_id,
                span_id,
                event_name: Cow::Owned(shape.event_name.clone()),
            });
        }
        out.push(LogBatch {
            resource,
            scope,
            logs,
        });
    }
    for c in [&times, &observed_col, &shape_ids, &trace_refs, &span_ids] {
        if !c.is_empty() {
            return Err(c.invalid("values past the last record"));
        }
    }
    Ok(out)
}

/// The blocks written before logs had columns: `u32` record count, `u32` length of the
/// uncompressed stream, then the zstd frame of the stream: per record, its `u32` length and
/// its bytes.
fn decode_legacy(block: &[u8]) -> Result<Vec<AlignedVec>, BlockError> {
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

/// A block as blocks were written before logs had columns, to test that they stay readable.
#[cfg(test)]
pub fn encode_legacy(records: &[&[u8]]) -> Vec<u8> {
    let raw_len: usize = records.iter().map(|r| 4 + r.len()).sum();
    let mut raw = Vec::with_capacity(raw_len);
    for r in records {
        raw.extend_from_slice(&(r.len() as u32).to_le_bytes());
        raw.extend_from_slice(r);
    }
    let compressed = zstd::bulk::compress(&raw, LEGACY_ZSTD_LEVEL).expect("compresses");
    let mut out = Vec::with_capacity(8 + compressed.len());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&compressed);
    out
}
