//! A sealed block of spans: the spans of some records, each trace's together and by start, stored as
//! columns that each compress well on their own (`docs/design/sealed-segments.md`, modelled by
//! `scripts/seal-model.py`), each column compressed with zstd.
//!
//! Layout: `u32` column count, then per column its `u32` raw length, `u32` stored length and
//! stored bytes (zstd, or raw when zstd does not make it smaller), in the order of [`Col`].
//!
//! - **groups**: the distinct (resource, scope) pairs; **span groups**: each span's group.
//! - **traces**: per trace, its 16-byte id, the start of its first span and its span count.
//! - **span ids** (8 bytes each), **parents** (0: none; 1: the raw id in **parent ids**;
//!   `n ≥ 2`: the span `n - 1` places before in the block), **starts** (zigzag from the
//!   trace's first start), **durations** (zigzag, wrapping: any pair of times round-trips).
//! - **names**: per span an id into the block's name dictionary (**name dictionary**).
//! - **kinds**, **status codes**.
//! - **attribute keys**: per span its attribute count and key ids (**key dictionary**); the
//!   values go to one column per key (**values**, keyed in key order), each a dictionary
//!   stream: 0 and an id for a value seen before under that key, 1 and a new value, 2 and a
//!   value kept out of the dictionary (a key whose values nearly never repeat).
//! - **rest**: what is seldom set, per span: trace state, flags, dropped counts, status
//!   message, events and links.
//!
//! Decoding gives back every span with its resource and scope, field for field; only the order
//! of the spans (and so their grouping into batches) differs from the records sealed.

use foldhash::{HashMap, HashMapExt};
use std::borrow::Cow;

use super::column::{BlockError, ColumnReader, ColumnWriter};
use crate::domain::{
    AnyValue, Event, KeyValue, Link, Resource, Scope, Span, SpanBatch, SpanId, Status, TraceId,
};
use crate::limits::SEALED_COLUMN_BYTES_MAX;

/// zstd level of every column: the modelled sizes are at level 3, and it compresses at
/// hundreds of MB/s, off the shard's thread.
const ZSTD_LEVEL: i32 = 3;

/// The columns, in their order in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Groups,
    SpanGroups,
    Traces,
    SpanIds,
    Parents,
    ParentIds,
    Starts,
    Durations,
    NameDict,
    Names,
    Kinds,
    StatusCodes,
    KeyDict,
    AttrKeys,
    Values,
    Rest,
}

const COLUMNS: [Col; 16] = [
    Col::Groups,
    Col::SpanGroups,
    Col::Traces,
    Col::SpanIds,
    Col::Parents,
    Col::ParentIds,
    Col::Starts,
    Col::Durations,
    Col::NameDict,
    Col::Names,
    Col::Kinds,
    Col::StatusCodes,
    Col::KeyDict,
    Col::AttrKeys,
    Col::Values,
    Col::Rest,
];

impl Col {
    fn name(self) -> &'static str {
        match self {
            Col::Groups => "groups",
            Col::SpanGroups => "span groups",
            Col::Traces => "traces",
            Col::SpanIds => "span ids",
            Col::Parents => "parents",
            Col::ParentIds => "parent ids",
            Col::Starts => "starts",
            Col::Durations => "durations",
            Col::NameDict => "name dictionary",
            Col::Names => "names",
            Col::Kinds => "kinds",
            Col::StatusCodes => "status codes",
            Col::KeyDict => "key dictionary",
            Col::AttrKeys => "attribute keys",
            Col::Values => "values",
            Col::Rest => "rest",
        }
    }
}

/// A value column's entries: a value seen before under the key (then its id), a new one (then
/// the value, which takes the next id), or one not kept in the dictionary (then the value).
pub(super) const SEEN_VALUE: u64 = 0;
pub(super) const NEW_VALUE: u64 = 1;
pub(super) const RAW_VALUE: u64 = 2;

/// Values of a key after which one whose values nearly never repeat (ids, ports) stops being
/// kept in a dictionary: keeping them costs a hash and an allocation each and saves nothing.
const DICTIONARY_TRIAL: u64 = 64;

/// One attribute key's values in a block.
#[derive(Default)]
pub(super) struct KeyValues {
    pub(super) column: ColumnWriter,
    seen: HashMap<Vec<u8>, u64>,
    values: u64,
    raw: bool,
}

/// Where a value stands in its stream's dictionary ([`KeyValues::entry`]).
pub(super) enum DictEntry {
    /// Seen before: its id.
    Seen(u64),
    /// New: it takes the next id.
    New,
    /// Not kept in the dictionary.
    Raw,
}

impl KeyValues {
    /// Counts the value encoded as `encoded` and says how it is to be written.
    pub(super) fn entry(&mut self, encoded: &[u8]) -> DictEntry {
        self.values += 1;
        if self.raw {
            return DictEntry::Raw;
        }
        if let Some(&id) = self.seen.get(encoded) {
            return DictEntry::Seen(id);
        }
        let id = self.seen.len() as u64;
        self.seen.insert(encoded.to_vec(), id);
        // Past the trial, nine in ten distinct: no dictionary for the rest.
        if self.values >= DICTIONARY_TRIAL && (id + 1) * 10 > self.values * 9 {
            self.raw = true;
            self.seen = HashMap::new();
        }
        DictEntry::New
    }

    pub(super) fn push(&mut self, encoded: &[u8]) {
        match self.entry(encoded) {
            DictEntry::Seen(id) => {
                self.column.varint(SEEN_VALUE);
                self.column.varint(id);
            }
            DictEntry::New => {
                self.column.varint(NEW_VALUE);
                self.column.fixed(encoded);
            }
            DictEntry::Raw => {
                self.column.varint(RAW_VALUE);
                self.column.fixed(encoded);
            }
        }
    }
}

/// The distinct (resource, scope) pairs of the spans being sealed, each by its encoding in
/// the groups column: a segment's thousands of records name a few dozen, and a pair is
/// encoded and hashed once per record here rather than once per block that holds its spans.
#[derive(Default)]
pub struct Groups {
    encoded: Vec<Vec<u8>>,
    id_of: HashMap<Vec<u8>, u32>,
    scratch: ColumnWriter,
}

impl Groups {
    /// The id of `(resource, scope)`, numbered as first added.
    pub fn add(&mut self, resource: &Resource<'_>, scope: &Scope<'_>) -> u32 {
        self.scratch.bytes.clear();
        write_resource(&mut self.scratch, resource);
        write_scope(&mut self.scratch, scope);
        if let Some(&id) = self.id_of.get(self.scratch.bytes.as_slice()) {
            return id;
        }
        let id = self.encoded.len() as u32;
        self.encoded.push(self.scratch.bytes.clone());
        self.id_of.insert(self.scratch.bytes.clone(), id);
        id
    }

    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }
}

/// One block's numbering of a segment's [`Groups`]: a group is written to the block's groups
/// column, and takes the block's next id, the first time an item of the block names it.
pub(super) struct BlockGroups<'g> {
    groups: &'g Groups,
    ids: Vec<Option<u64>>,
    written: u64,
}

impl<'g> BlockGroups<'g> {
    pub(super) fn new(groups: &'g Groups) -> BlockGroups<'g> {
        BlockGroups {
            groups,
            ids: vec![None; groups.len()],
            written: 0,
        }
    }

    /// The block's id of segment group `g`, written to `column` if new to the block.
    pub(super) fn id(&mut self, g: u32, column: &mut ColumnWriter) -> u64 {
        let (groups, written) = (self.groups, &mut self.written);
        *self.ids[g as usize].get_or_insert_with(|| {
            column.bytes(&groups.encoded[g as usize]);
            *written += 1;
            *written - 1
        })
    }
}

/// The groups a block's groups column holds, in their block ids' order.
pub(super) fn read_groups(
    mut column: ColumnReader<'_>,
) -> Result<Vec<(Resource<'static>, Scope<'static>)>, BlockError> {
    let mut groups = Vec::new();
    while !column.is_empty() {
        let name = column.name();
        let bytes = column.bytes()?;
        let mut g = ColumnReader::new(name, bytes);
        groups.push((read_resource(&mut g)?, read_scope(&mut g)?));
    }
    Ok(groups)
}

/// Encodes the spans of `batches` into one block.
pub fn encode(batches: &[SpanBatch<'_>]) -> Vec<u8> {
    let mut groups = Groups::default();
    let ids: Vec<u32> = batches
        .iter()
        .map(|b| groups.add(&b.resource, &b.scope))
        .collect();
    let mut spans: Vec<(u32, &Span<'_>)> = batches
        .iter()
        .zip(&ids)
        .flat_map(|(b, &g)| b.spans.iter().map(move |s| (g, s)))
        .collect();
    spans.sort_by_key(|(_, s)| (s.trace_id, s.start_time_unix_nano));
    encode_sorted(&groups, &spans)
}

/// Encodes `spans`, each with its group (an id in `groups`), into one block. Each trace's spans
/// must be together and sorted by start (the traces in any order); only the groups the spans
/// name are written, numbered in the block as the spans first name them.
pub fn encode_sorted(groups: &Groups, spans: &[(u32, &Span<'_>)]) -> Vec<u8> {
    debug_assert!(spans.windows(2).all(|w| w[0].1.trace_id != w[1].1.trace_id
        || w[0].1.start_time_unix_nano <= w[1].1.start_time_unix_nano));
    debug_assert!({
        let mut runs: Vec<TraceId> = spans.iter().map(|(_, s)| s.trace_id).collect();
        runs.dedup();
        let n = runs.len();
        runs.sort_unstable();
        runs.dedup();
        runs.len() == n
    });
    let mut cols: Vec<ColumnWriter> = COLUMNS.iter().map(|_| ColumnWriter::default()).collect();
    let col = |c: Col| c as usize;

    let mut in_block = BlockGroups::new(groups);
    let spans: Vec<(u64, &Span<'_>)> = spans
        .iter()
        .map(|&(g, s)| (in_block.id(g, &mut cols[col(Col::Groups)]), s))
        .collect();

    let mut names: HashMap<&str, u64> = HashMap::new();
    let mut attrs: AttrWriter<'_> = AttrWriter::default();
    let mut position_of: HashMap<SpanId, usize> = HashMap::with_capacity(spans.len());
    let mut i = 0;
    while i < spans.len() {
        let trace = spans[i].1.trace_id;
        let first_start = spans[i].1.start_time_unix_nano;
        let run = spans[i..]
            .iter()
            .take_while(|(_, s)| s.trace_id == trace)
            .count();
        let w = &mut cols[col(Col::Traces)];
        w.fixed(&trace.0);
        w.fixed(&first_start.to_le_bytes());
        w.varint(run as u64);
        for (at, &(group, s)) in spans.iter().enumerate().skip(i).take(run) {
            cols[col(Col::SpanIds)].fixed(&s.span_id.0);
            match s.parent_span_id {
                None => cols[col(Col::Parents)].varint(0),
                Some(p) => match position_of.get(&p) {
                    Some(&before) => cols[col(Col::Parents)].varint((at - before + 1) as u64),
                    None => {
                        cols[col(Col::Parents)].varint(1);
                        cols[col(Col::ParentIds)].fixed(&p.0);
                    }
                },
            }
            position_of.insert(s.span_id, at);
            cols[col(Col::Starts)].signed(s.start_time_unix_nano.wrapping_sub(first_start) as i64);
            cols[col(Col::Durations)]
                .signed(s.end_time_unix_nano.wrapping_sub(s.start_time_unix_nano) as i64);
            let next = names.len() as u64;
            let name = *names.entry(&s.name).or_insert_with(|| {
                cols[col(Col::NameDict)].str(&s.name);
                next
            });
            cols[col(Col::Names)].varint(name);
            cols[col(Col::Kinds)].signed(i64::from(s.kind));
            cols[col(Col::StatusCodes)].signed(i64::from(s.status.code));
            cols[col(Col::SpanGroups)].varint(group);
            attrs.write(&s.attributes);
            write_rest(&mut cols[col(Col::Rest)], s);
        }
        i += run;
    }
    attrs.finish(
        &mut cols,
        col(Col::KeyDict),
        col(Col::AttrKeys),
        col(Col::Values),
    );
    pack(&cols)
}

/// Stores `cols`: their count, then each one's raw length, stored length and stored bytes
/// (zstd, or raw when zstd does not make it smaller).
pub(super) fn pack(cols: &[ColumnWriter]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(cols.len() as u32).to_le_bytes());
    let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a zstd context");
    for w in cols {
        let compressed = zstd.compress(&w.bytes).expect("zstd compresses in memory");
        let stored = match compressed.len() < w.bytes.len() {
            true => &compressed,
            false => &w.bytes,
        };
        out.extend_from_slice(&(w.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        out.extend_from_slice(stored);
    }
    out
}

/// How a block stores the values of one attribute key (or of the log bodies).
pub(super) trait ValueStream: Default {
    /// Appends `value`; `encoded` is its encoding ([`ColumnWriter::value`]), by which
    /// repeated values are recognised.
    fn push(&mut self, value: &AnyValue<'_>, encoded: &[u8]);
    /// The stream as stored.
    fn finish(self) -> Vec<u8>;
}

/// Reads a stream that a [`ValueStream`] wrote.
pub(super) trait ValueSource<'c>: Sized {
    fn open(name: &'static str, bytes: &'c [u8]) -> Result<Self, BlockError>;
    fn next(&mut self) -> Result<AnyValue<'static>, BlockError>;
    /// Reads past the next value, building it only if a later value needs it.
    fn skip(&mut self) -> Result<(), BlockError> {
        self.next().map(drop)
    }
}

impl ValueStream for KeyValues {
    fn push(&mut self, _: &AnyValue<'_>, encoded: &[u8]) {
        KeyValues::push(self, encoded);
    }

    fn finish(self) -> Vec<u8> {
        self.column.bytes
    }
}

/// The reader of a [`KeyValues`] stream: the stream and the values seen so far, each where
/// it lies in the stream until a value read (not skipped) refers to it.
pub(super) struct DictValues<'c> {
    column: ColumnReader<'c>,
    seen: Vec<Seen>,
}

enum Seen {
    At(std::ops::Range<usize>),
    Built(AnyValue<'static>),
}

impl<'c> DictValues<'c> {
    fn seen(&mut self, id: usize) -> Result<AnyValue<'static>, BlockError> {
        let column = &self.column;
        let seen = self
            .seen
            .get_mut(id)
            .ok_or_else(|| column.invalid("a value id not seen before"))?;
        if let Seen::At(range) = seen {
            *seen = Seen::Built(column.value_in(range.clone())?);
        }
        match seen {
            Seen::Built(v) => Ok(v.clone()),
            Seen::At(_) => unreachable!("built just above"),
        }
    }
}

impl<'c> ValueSource<'c> for DictValues<'c> {
    fn open(name: &'static str, bytes: &'c [u8]) -> Result<Self, BlockError> {
        Ok(DictValues {
            column: ColumnReader::new(name, bytes),
            seen: Vec::new(),
        })
    }

    fn next(&mut self) -> Result<AnyValue<'static>, BlockError> {
        match self.column.varint()? {
            SEEN_VALUE => {
                let id = self.column.varint()? as usize;
                self.seen(id)
            }
            NEW_VALUE => {
                let v = self.column.value()?;
                self.seen.push(Seen::Built(v.clone()));
                Ok(v)
            }
            RAW_VALUE => self.column.value(),
            _ => Err(self.column.invalid("an unknown value flag")),
        }
    }

    fn skip(&mut self) -> Result<(), BlockError> {
        match self.column.varint()? {
            SEEN_VALUE => {
                let id = self.column.varint()? as usize;
                if id >= self.seen.len() {
                    return Err(self.column.invalid("a value id not seen before"));
                }
            }
            NEW_VALUE => {
                let at = self.column.skip_value()?;
                self.seen.push(Seen::At(at));
            }
            RAW_VALUE => {
                self.column.skip_value()?;
            }
            _ => return Err(self.column.invalid("an unknown value flag")),
        }
        Ok(())
    }
}

/// The attributes of a block's items: per item its count and key ids (the attribute keys
/// column), the keys once each (the key dictionary), and the values in one stream per key
/// (the values column, each stream length-prefixed).
pub(super) struct AttrWriter<'s, V = KeyValues> {
    counts_and_keys: ColumnWriter,
    key_dict: ColumnWriter,
    keys: HashMap<&'s str, usize>,
    values: Vec<V>,
    scratch: ColumnWriter,
}

impl<V> Default for AttrWriter<'_, V> {
    fn default() -> Self {
        AttrWriter {
            counts_and_keys: ColumnWriter::default(),
            key_dict: ColumnWriter::default(),
            keys: HashMap::new(),
            values: Vec::new(),
            scratch: ColumnWriter::default(),
        }
    }
}

impl<'s, V: ValueStream> AttrWriter<'s, V> {
    pub(super) fn write(&mut self, attributes: &'s [KeyValue<'_>]) {
        self.counts_and_keys.varint(attributes.len() as u64);
        for kv in attributes {
            let next = self.keys.len();
            let key = *self.keys.entry(&kv.key).or_insert_with(|| {
                self.key_dict.str(&kv.key);
                self.values.push(V::default());
                next
            });
            self.counts_and_keys.varint(key as u64);
            // The value's encoding, in a buffer reused for every attribute: a value seen
            // before under this key costs no allocation.
            self.scratch.bytes.clear();
            self.scratch.value(&kv.value);
            self.values[key].push(&kv.value, &self.scratch.bytes);
        }
    }

    /// Moves the three columns into `cols` at the given places.
    pub(super) fn finish(self, cols: &mut [ColumnWriter], dict: usize, keys: usize, values: usize) {
        cols[dict] = self.key_dict;
        cols[keys] = self.counts_and_keys;
        // The value streams, one after the other in key order, each length-prefixed.
        for key in self.values {
            cols[values].bytes(&key.finish());
        }
    }
}

/// Reads what [`AttrWriter`] wrote.
pub(super) struct AttrReader<'c, V = DictValues<'c>> {
    counts_and_keys: ColumnReader<'c>,
    keys: Vec<String>,
    values: Vec<V>,
}

impl<'c, V: ValueSource<'c>> AttrReader<'c, V> {
    pub(super) fn new(
        mut dict: ColumnReader<'c>,
        counts_and_keys: ColumnReader<'c>,
        mut values_col: ColumnReader<'c>,
    ) -> Result<AttrReader<'c, V>, BlockError> {
        let mut keys = Vec::new();
        while !dict.is_empty() {
            keys.push(dict.str()?);
        }
        let mut values = Vec::new();
        while !values_col.is_empty() {
            values.push(V::open(values_col.name(), values_col.bytes()?)?);
        }
        if values.len() != keys.len() {
            return Err(values_col.invalid("a value column count unlike the key count"));
        }
        Ok(AttrReader {
            counts_and_keys,
            keys,
            values,
        })
    }

    /// Reads past the next item's attributes.
    pub(super) fn skip(&mut self) -> Result<(), BlockError> {
        let keys = &mut self.counts_and_keys;
        for _ in 0..keys.count()? {
            let key = keys.varint()? as usize;
            self.values
                .get_mut(key)
                .ok_or_else(|| keys.invalid("a key id past the dictionary"))?
                .skip()?;
        }
        Ok(())
    }

    /// The next item's attributes.
    pub(super) fn read(&mut self) -> Result<Vec<KeyValue<'static>>, BlockError> {
        let keys = &mut self.counts_and_keys;
        let n = keys.count()?;
        let mut attributes = Vec::with_capacity(n);
        for _ in 0..n {
            let key = keys.varint()? as usize;
            let values = self
                .values
                .get_mut(key)
                .ok_or_else(|| keys.invalid("a key id past the dictionary"))?;
            attributes.push(KeyValue {
                key: Cow::Owned(self.keys[key].clone()),
                value: values.next()?,
            });
        }
        Ok(attributes)
    }
}

/// Decodes a block back into batches of spans, one batch per run of spans of one group.
pub fn decode(block: &[u8]) -> Result<Vec<SpanBatch<'static>>, BlockError> {
    decode_traces(block, None)
}

/// Decodes the spans of the traces `wanted` (every trace if `None`) into batches, one batch
/// per run of spans of one group. The other spans are read past, not built: a lookup of one
/// trace costs the block's decompression and a walk over its columns, not a span allocated
/// per span of the block.
pub fn decode_traces(
    block: &[u8],
    wanted: Option<&[TraceId]>,
) -> Result<Vec<SpanBatch<'static>>, BlockError> {
    let wanted: Option<Vec<TraceId>> = wanted.map(|w| {
        let mut w = w.to_vec();
        w.sort_unstable();
        w
    });
    let names: Vec<&'static str> = COLUMNS.iter().map(|c| c.name()).collect();
    let raw = columns(block, &names)?;
    let reader = |c: Col| ColumnReader::new(c.name(), &raw[c as usize]);

    let groups = read_groups(reader(Col::Groups))?;
    let mut name_dict = reader(Col::NameDict);
    let mut names = Vec::new();
    while !name_dict.is_empty() {
        names.push(name_dict.str()?);
    }
    let mut attrs: AttrReader<'_> = AttrReader::new(
        reader(Col::KeyDict),
        reader(Col::AttrKeys),
        reader(Col::Values),
    )?;

    let mut traces = reader(Col::Traces);
    let mut span_ids = reader(Col::SpanIds);
    let mut parents = reader(Col::Parents);
    let mut parent_ids = reader(Col::ParentIds);
    let mut starts = reader(Col::Starts);
    let mut durations = reader(Col::Durations);
    let mut name_ids = reader(Col::Names);
    let mut kinds = reader(Col::Kinds);
    let mut status_codes = reader(Col::StatusCodes);
    let mut span_groups = reader(Col::SpanGroups);
    let mut rest = reader(Col::Rest);

    let mut out: Vec<SpanBatch<'static>> = Vec::new();
    let mut last_group = None;
    let mut ids: Vec<SpanId> = Vec::new();
    while !traces.is_empty() {
        let trace_id = TraceId(traces.fixed()?);
        let first_start = u64::from_le_bytes(traces.fixed()?);
        let run = traces.varint()?;
        let keep = wanted
            .as_ref()
            .is_none_or(|w| w.binary_search(&trace_id).is_ok());
        for _ in 0..run {
            let span_id = SpanId(span_ids.fixed()?);
            let parent_span_id = match parents.varint()? {
                0 => None,
                1 => Some(SpanId(parent_ids.fixed()?)),
                back => {
                    let back = back as usize - 1;
                    let at = ids
                        .len()
                        .checked_sub(back)
                        .ok_or_else(|| parents.invalid("a parent before the block"))?;
                    Some(ids[at])
                }
            };
            ids.push(span_id);
            let start = first_start.wrapping_add(starts.signed()? as u64);
            let end = start.wrapping_add(durations.signed()? as u64);
            let name = names
                .get(name_ids.varint()? as usize)
                .ok_or_else(|| name_ids.invalid("a name id past the dictionary"))?;
            let kind = i32::try_from(kinds.signed()?).map_err(|_| kinds.invalid("a kind"))?;
            let code = i32::try_from(status_codes.signed()?)
                .map_err(|_| status_codes.invalid("a status code"))?;
            let group = span_groups.varint()? as usize;
            if group >= groups.len() {
                return Err(span_groups.invalid("a group past the groups"));
            }
            if !keep {
                attrs.skip()?;
                read_rest(&mut rest)?;
                continue;
            }
            let attributes = attrs.read()?;
            let mut span = read_rest(&mut rest)?;
            span.trace_id = trace_id;
            span.span_id = span_id;
            span.parent_span_id = parent_span_id;
            span.name = Cow::Owned(name.clone());
            span.kind = kind;
            span.start_time_unix_nano = start;
            span.end_time_unix_nano = end;
            for e in &mut span.events {
                e.time_unix_nano = start.wrapping_add(e.time_unix_nano);
            }
            span.attributes = attributes;
            span.status.code = code;
            if last_group != Some(group) {
                let (resource, scope) = groups[group].clone();
                out.push(SpanBatch {
                    resource,
                    scope,
                    spans: Vec::new(),
                });
                last_group = Some(group);
            }
            out.last_mut().expect("a batch was pushed").spans.push(span);
        }
    }
    Ok(out)
}

/// The raw bytes of each column of `block`: borrowed where stored raw.
pub(super) fn columns<'b>(
    block: &'b [u8],
    names: &[&'static str],
) -> Result<Vec<Cow<'b, [u8]>>, BlockError> {
    let lazy = LazyColumns::open(block, names)?;
    (0..names.len()).map(|i| lazy.get(i)).collect()
}

/// A block's columns, each decompressed only when asked for: a query reads the few it needs.
pub(super) struct LazyColumns<'b> {
    names: Vec<&'static str>,
    /// Per column, its stored bytes and raw length.
    stored: Vec<(&'b [u8], usize)>,
}

impl<'b> LazyColumns<'b> {
    pub(super) fn open(block: &'b [u8], names: &[&'static str]) -> Result<Self, BlockError> {
        let mut r = ColumnReader::new("header", block);
        let count = u32::from_le_bytes(r.fixed()?) as usize;
        if count != names.len() {
            return Err(r.invalid("a column count this build does not read"));
        }
        let mut stored = Vec::with_capacity(count);
        for _ in names {
            let raw_len = u32::from_le_bytes(r.fixed()?) as usize;
            let stored_len = u32::from_le_bytes(r.fixed()?) as usize;
            // A damaged length must not make the reader allocate gigabytes.
            if raw_len > SEALED_COLUMN_BYTES_MAX {
                return Err(r.invalid("a column longer than a block's can be"));
            }
            stored.push((r.take(stored_len)?, raw_len));
        }
        Ok(LazyColumns {
            names: names.to_vec(),
            stored,
        })
    }

    /// Column `i`'s raw bytes: borrowed where stored raw.
    pub(super) fn get(&self, i: usize) -> Result<Cow<'b, [u8]>, BlockError> {
        let (stored, raw_len) = self.stored[i];
        if stored.len() == raw_len {
            return Ok(Cow::Borrowed(stored));
        }
        let name = self.names[i];
        let bytes =
            zstd::bulk::decompress(stored, raw_len).map_err(|_| BlockError::Compression(name))?;
        if bytes.len() != raw_len {
            return Err(BlockError::Compression(name));
        }
        Ok(Cow::Owned(bytes))
    }
}

/// What a query needs of one span, read without building it ([`scan`]).
pub struct SpanFacts<'a> {
    pub trace_id: TraceId,
    /// Read only when [`scan`] is given wanted traces (zero otherwise).
    pub span_id: SpanId,
    /// The start of the trace's first span in the block.
    pub trace_start: u64,
    pub start: u64,
    pub end: u64,
    pub has_parent: bool,
    pub status_code: i32,
    pub name: &'a str,
    /// Its resource's `service.name`.
    pub service: &'a str,
    /// Whether every `key=value` pair [`scan`] was given is among the span's attributes or
    /// its resource's.
    pub attrs_match: bool,
}

/// Whether `value`'s text form is `text`: strings as they are, numbers and booleans as
/// printed (how a search's `attr=key=value` compares).
pub fn value_is(value: &AnyValue<'_>, text: &str) -> bool {
    match value {
        AnyValue::String(s) => s == text,
        AnyValue::Bool(b) => text == if *b { "true" } else { "false" },
        AnyValue::Int(i) => text.parse::<i64>() == Ok(*i),
        AnyValue::Double(d) => text.parse::<f64>() == Ok(*d),
        _ => false,
    }
}

/// One wanted attribute key's value stream in a block, read for matching only: a value seen
/// before is matched once, by its dictionary id.
struct KeyMatcher<'c> {
    column: ColumnReader<'c>,
    /// The wanted pairs on this key: their bit, and the text.
    wanted: Vec<(u64, &'c str)>,
    /// Per dictionary id, the bits of the wanted pairs its value matches.
    seen: Vec<u64>,
}

impl KeyMatcher<'_> {
    /// The bits of the wanted pairs the stream's next value matches.
    fn next(&mut self) -> Result<u64, BlockError> {
        let bits_of = |v: &AnyValue<'_>, wanted: &[(u64, &str)]| {
            wanted
                .iter()
                .filter(|(_, t)| value_is(v, t))
                .fold(0, |acc, (bit, _)| acc | bit)
        };
        match self.column.varint()? {
            SEEN_VALUE => {
                let id = self.column.varint()? as usize;
                self.seen
                    .get(id)
                    .copied()
                    .ok_or_else(|| self.column.invalid("a value id not seen before"))
            }
            NEW_VALUE => {
                let bits = bits_of(&self.column.value()?, &self.wanted);
                self.seen.push(bits);
                Ok(bits)
            }
            RAW_VALUE => Ok(bits_of(&self.column.value()?, &self.wanted)),
            _ => Err(self.column.invalid("an unknown value flag")),
        }
    }
}

/// At most this many `attr` pairs are matched by [`scan`] (one bit each).
pub const SCAN_ATTRS_MAX: usize = 64;
const _: () = assert!(crate::limits::SEARCH_ATTRS_MAX <= SCAN_ATTRS_MAX);

/// Calls `f` on the facts of each span of `block` (only of the traces `wanted`, sorted, if
/// given), in block order, with whether it carries every pair of `attrs` (`key`, value text).
/// Only the columns the facts need are decompressed and read: never span ids, parent ids,
/// kinds or the rest (events, links, ...), and the attribute columns only for `attrs`, of
/// which only the wanted keys' value streams are read. A search's scan costs a few varints a
/// span, not a span built.
pub fn scan(
    block: &[u8],
    wanted: Option<&[TraceId]>,
    attrs: &[(String, String)],
    mut f: impl FnMut(&SpanFacts<'_>),
) -> Result<(), BlockError> {
    debug_assert!(wanted.is_none_or(|w| w.is_sorted()));
    assert!(
        attrs.len() <= SCAN_ATTRS_MAX,
        "more attr pairs than a scan matches"
    );
    fn reader<'c>(c: Col, raw: &'c [u8]) -> ColumnReader<'c> {
        ColumnReader::new(c.name(), raw)
    }
    let names: Vec<&'static str> = COLUMNS.iter().map(|c| c.name()).collect();
    let lazy = LazyColumns::open(block, &names)?;
    let col = |c: Col| lazy.get(c as usize);
    let (traces_raw, starts_raw, durations_raw) =
        (col(Col::Traces)?, col(Col::Starts)?, col(Col::Durations)?);
    let (parents_raw, names_raw, dict_raw) =
        (col(Col::Parents)?, col(Col::Names)?, col(Col::NameDict)?);
    let (codes_raw, groups_raw, span_groups_raw) = (
        col(Col::StatusCodes)?,
        col(Col::Groups)?,
        col(Col::SpanGroups)?,
    );
    // Span ids are for the few traces of an answer, not for a search's scan.
    let span_ids_raw = match wanted {
        Some(_) => Some(col(Col::SpanIds)?),
        None => None,
    };
    let mut span_ids = span_ids_raw.as_deref().map(|raw| reader(Col::SpanIds, raw));
    let groups = read_groups(reader(Col::Groups, &groups_raw))?;
    let services: Vec<&str> = groups
        .iter()
        .map(|(r, _)| crate::domain::service_name(&r.attributes))
        .collect();
    let all: u64 = match attrs.len() {
        SCAN_ATTRS_MAX => u64::MAX,
        n => (1u64 << n) - 1,
    };
    // Per group, the pairs its resource carries.
    let group_bits: Vec<u64> = groups
        .iter()
        .map(|(r, _)| {
            attrs.iter().enumerate().fold(0, |acc, (i, (k, v))| {
                let carried = r
                    .attributes
                    .iter()
                    .any(|kv| kv.key == *k && value_is(&kv.value, v));
                acc | (u64::from(carried) << i)
            })
        })
        .collect();
    let mut name_dict = reader(Col::NameDict, &dict_raw);
    let mut span_names = Vec::new();
    while !name_dict.is_empty() {
        span_names.push(name_dict.str()?);
    }
    // The attribute keys column, and a matcher per wanted key the block has (by key id).
    let attr_raw = match attrs.is_empty() {
        true => None,
        false => Some((col(Col::KeyDict)?, col(Col::AttrKeys)?, col(Col::Values)?)),
    };
    let mut key_ids: Option<ColumnReader<'_>> = None;
    let mut matchers: HashMap<usize, KeyMatcher<'_>> = HashMap::new();
    if let Some((dict, keys, values)) = &attr_raw {
        let mut dict = reader(Col::KeyDict, dict);
        let mut values = reader(Col::Values, values);
        let mut id = 0;
        while !dict.is_empty() {
            let key = dict.str()?;
            let stream = values.bytes()?;
            let on_key: Vec<(u64, &str)> = attrs
                .iter()
                .enumerate()
                .filter(|(_, (k, _))| *k == key)
                .map(|(i, (_, v))| (1u64 << i, v.as_str()))
                .collect();
            if !on_key.is_empty() {
                matchers.insert(
                    id,
                    KeyMatcher {
                        column: ColumnReader::new(Col::Values.name(), stream),
                        wanted: on_key,
                        seen: Vec::new(),
                    },
                );
            }
            id += 1;
        }
        if !values.is_empty() {
            return Err(values.invalid("a value column count unlike the key count"));
        }
        key_ids = Some(reader(Col::AttrKeys, keys));
    }
    let mut traces = reader(Col::Traces, &traces_raw);
    let mut starts = reader(Col::Starts, &starts_raw);
    let mut durations = reader(Col::Durations, &durations_raw);
    let mut parents = reader(Col::Parents, &parents_raw);
    let mut name_ids = reader(Col::Names, &names_raw);
    let mut codes = reader(Col::StatusCodes, &codes_raw);
    let mut span_groups = reader(Col::SpanGroups, &span_groups_raw);
    while !traces.is_empty() {
        let trace_id = TraceId(traces.fixed()?);
        let trace_start = u64::from_le_bytes(traces.fixed()?);
        let run = traces.varint()?;
        let keep = wanted.is_none_or(|w| w.binary_search(&trace_id).is_ok());
        for _ in 0..run {
            let span_id = match &mut span_ids {
                Some(ids) => SpanId(ids.fixed()?),
                None => SpanId::default(),
            };
            let start = trace_start.wrapping_add(starts.signed()? as u64);
            let end = start.wrapping_add(durations.signed()? as u64);
            let has_parent = parents.varint()? != 0;
            let name = span_names
                .get(name_ids.varint()? as usize)
                .ok_or_else(|| name_ids.invalid("a name id past the dictionary"))?;
            let status_code =
                i32::try_from(codes.signed()?).map_err(|_| codes.invalid("a status code"))?;
            let group = span_groups.varint()? as usize;
            let Some(service) = services.get(group) else {
                return Err(span_groups.invalid("a group past the groups"));
            };
            // A wanted key's stream is read on every occurrence of the key, kept or not: the
            // streams are per key, so the other keys' values are never touched.
            let mut bits = group_bits[group];
            if let Some(keys) = &mut key_ids {
                for _ in 0..keys.count()? {
                    let key = keys.varint()? as usize;
                    if let Some(m) = matchers.get_mut(&key) {
                        bits |= m.next()?;
                    }
                }
            }
            if !keep {
                continue;
            }
            f(&SpanFacts {
                trace_id,
                span_id,
                trace_start,
                start,
                end,
                has_parent,
                status_code,
                name,
                service,
                attrs_match: bits & all == all,
            });
        }
    }
    Ok(())
}

fn write_resource(w: &mut ColumnWriter, r: &Resource<'_>) {
    w.key_values(&r.attributes);
    w.varint(u64::from(r.dropped_attributes_count));
    w.str(&r.schema_url);
}

fn read_resource(r: &mut ColumnReader<'_>) -> Result<Resource<'static>, BlockError> {
    Ok(Resource {
        attributes: r.key_values()?,
        dropped_attributes_count: read_u32(r)?,
        schema_url: Cow::Owned(r.str()?),
    })
}

fn write_scope(w: &mut ColumnWriter, s: &Scope<'_>) {
    w.str(&s.name);
    w.str(&s.version);
    w.key_values(&s.attributes);
    w.varint(u64::from(s.dropped_attributes_count));
    w.str(&s.schema_url);
}

fn read_scope(r: &mut ColumnReader<'_>) -> Result<Scope<'static>, BlockError> {
    Ok(Scope {
        name: Cow::Owned(r.str()?),
        version: Cow::Owned(r.str()?),
        attributes: r.key_values()?,
        dropped_attributes_count: read_u32(r)?,
        schema_url: Cow::Owned(r.str()?),
    })
}

fn read_u32(r: &mut ColumnReader<'_>) -> Result<u32, BlockError> {
    u32::try_from(r.varint()?).map_err(|_| r.invalid("a count past 32 bits"))
}

/// What is seldom set on a span.
fn write_rest(w: &mut ColumnWriter, s: &Span<'_>) {
    w.str(&s.trace_state);
    w.varint(u64::from(s.flags));
    w.varint(u64::from(s.dropped_attributes_count));
    w.varint(u64::from(s.dropped_events_count));
    w.varint(u64::from(s.dropped_links_count));
    w.str(&s.status.message);
    w.varint(s.events.len() as u64);
    for e in &s.events {
        w.signed(e.time_unix_nano.wrapping_sub(s.start_time_unix_nano) as i64);
        w.str(&e.name);
        w.key_values(&e.attributes);
        w.varint(u64::from(e.dropped_attributes_count));
    }
    w.varint(s.links.len() as u64);
    for l in &s.links {
        w.fixed(&l.trace_id.0);
        w.fixed(&l.span_id.0);
        w.str(&l.trace_state);
        w.key_values(&l.attributes);
        w.varint(u64::from(l.dropped_attributes_count));
        w.varint(u64::from(l.flags));
    }
}

/// A span with what [`write_rest`] wrote; the caller sets the rest. Event times are kept as
/// offsets from the span's start until the caller knows it: see [`decode`].
fn read_rest(r: &mut ColumnReader<'_>) -> Result<Span<'static>, BlockError> {
    let trace_state = Cow::Owned(r.str()?);
    let flags = read_u32(r)?;
    let dropped_attributes_count = read_u32(r)?;
    let dropped_events_count = read_u32(r)?;
    let dropped_links_count = read_u32(r)?;
    let message = Cow::Owned(r.str()?);
    let n = r.count()?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(Event {
            // An offset from the span's start for now.
            time_unix_nano: r.signed()? as u64,
            name: Cow::Owned(r.str()?),
            attributes: r.key_values()?,
            dropped_attributes_count: read_u32(r)?,
        });
    }
    let n = r.count()?;
    let mut links = Vec::with_capacity(n);
    for _ in 0..n {
        links.push(Link {
            trace_id: TraceId(r.fixed()?),
            span_id: SpanId(r.fixed()?),
            trace_state: Cow::Owned(r.str()?),
            attributes: r.key_values()?,
            dropped_attributes_count: read_u32(r)?,
            flags: read_u32(r)?,
        });
    }
    Ok(Span {
        trace_id: TraceId::default(),
        span_id: SpanId::default(),
        trace_state,
        parent_span_id: None,
        flags,
        name: Cow::Borrowed(""),
        kind: 0,
        start_time_unix_nano: 0,
        end_time_unix_nano: 0,
        attributes: Vec::new(),
        dropped_attributes_count,
        events,
        dropped_events_count,
        links,
        dropped_links_count,
        status: Status { message, code: 0 },
    })
}
