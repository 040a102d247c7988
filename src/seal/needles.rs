//! Needle filters: what lets a search for a rare value skip the sealed segments and blocks that
//! cannot hold it, without the filters taking memory.
//!
//! A sealed data file (format 4) ends with a needles block: a binary fuse filter (8-bit, 0.4%
//! false positives) over the keys of the whole segment, then one per block. A span block's keys
//! are its spans' attribute pairs and their resources' ([`value_key`]); a log block's, the words
//! of its bodies' strings ([`word_key`], see [`crate::domain::words`]) and its records' trace ids
//! ([`trace_id_key`]). A search probes the filters in place in the mapped file
//! (`BinaryFuse8Ref`): three bytes a filter, so a needle over a large store touches three pages
//! a segment, and those of the blocks of segments that may hold it.
//!
//! | size      | needles block field                                        |
//! |-----------|------------------------------------------------------------|
//! | 4         | entries: 1 + the data file's blocks                         |
//! | 4         | CRC32C of the table                                          |
//! | 12 × each | the table: per entry its offset in the needles block, length and CRC32C (`u32` each); length 0: no filter, anything may be there |
//! | …         | the filters, each xorf's 20-byte descriptor (seed `u64`, segment length, mask, segment count length `u32`) and its fingerprints |
//!
//! Entry 0 is the segment's, entry `i + 1` block `i`'s. A filter's CRC is checked when it is
//! first probed (not at start-up, which would read them all): a damaged one is reported once
//! and then taken to hold anything, so that it costs reads but never hides a match.

use std::sync::atomic::{AtomicU8, Ordering};

use xorf::{BinaryFuse8, BinaryFuse8Ref, DmaSerializable, Filter, FilterRef};
use xxhash_rust::xxh3::xxh3_64;

use super::format::FormatError;
use crate::domain::words::words;
use crate::domain::{AnyValue, KeyValue, TraceId};

const TAG_STRING: u8 = b'S';
const TAG_INT: u8 = b'I';
const TAG_DOUBLE: u8 = b'D';
const TAG_WORD: u8 = b'W';
const TAG_TRACE: u8 = b'T';
const TABLE_ENTRY_BYTES: usize = 12;
const HEAD_BYTES: usize = 8;
const DESCRIPTOR_BYTES: usize = BinaryFuse8::DESCRIPTOR_LEN;

/// Builds the keys of a segment's blocks, reusing one buffer for the bytes each key hashes.
#[derive(Default)]
pub struct Keys {
    buf: Vec<u8>,
}

impl Keys {
    fn pair(&mut self, key: &str, tag: u8, value: &[u8]) -> u64 {
        self.buf.clear();
        self.buf
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.push(tag);
        self.buf.extend_from_slice(value);
        xxh3_64(&self.buf)
    }

    /// The key of attribute `key` with `value`, if a search's `attr=key=text` can match it:
    /// strings and booleans by their text, integers and doubles by their value (a search
    /// compares a number with its text parsed: `500` and `0500` alike).
    pub fn value_key(&mut self, key: &str, value: &AnyValue<'_>) -> Option<u64> {
        match value {
            AnyValue::String(s) => Some(self.pair(key, TAG_STRING, s.as_bytes())),
            AnyValue::Bool(b) => Some(self.pair(key, TAG_STRING, bool_text(*b).as_bytes())),
            AnyValue::Int(i) => Some(self.pair(key, TAG_INT, &i.to_le_bytes())),
            AnyValue::Double(d) => double_bits(*d).map(|b| self.pair(key, TAG_DOUBLE, &b)),
            _ => None,
        }
    }

    /// Adds the keys of `attrs` to `out`.
    pub fn attrs(&mut self, attrs: &[KeyValue<'_>], out: &mut Vec<u64>) {
        out.extend(
            attrs
                .iter()
                .filter_map(|kv| self.value_key(&kv.key, &kv.value)),
        );
    }

    /// The keys a value matching `attr=key=text` may have: one of them is in the filter of
    /// any block holding a match.
    pub fn query_keys(&mut self, key: &str, text: &str) -> Vec<u64> {
        let mut out = vec![self.pair(key, TAG_STRING, text.as_bytes())];
        if let Ok(i) = text.parse::<i64>() {
            out.push(self.pair(key, TAG_INT, &i.to_le_bytes()));
        }
        if let Some(b) = text.parse::<f64>().ok().and_then(double_bits) {
            out.push(self.pair(key, TAG_DOUBLE, &b));
        }
        out
    }
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// The bytes a double is keyed by: equal doubles have equal bytes (`-0.0` is `0.0`); `None` for
/// NaN, which equals nothing.
fn double_bits(d: f64) -> Option<[u8; 8]> {
    match d {
        d if d.is_nan() => None,
        0.0 => Some(0f64.to_bits().to_le_bytes()),
        d => Some(d.to_bits().to_le_bytes()),
    }
}

/// The key of a word of a log body.
pub fn word_key(word: &str) -> u64 {
    let mut buf = Vec::with_capacity(1 + word.len());
    buf.push(TAG_WORD);
    buf.extend_from_slice(word.as_bytes());
    xxh3_64(&buf)
}

/// The key of a log record's trace id.
pub fn trace_id_key(id: &TraceId) -> u64 {
    let mut buf = [0u8; 17];
    buf[0] = TAG_TRACE;
    buf[1..].copy_from_slice(&id.0);
    xxh3_64(&buf)
}

/// Adds to `out` the keys of the words of the strings in log body `v`: the strings
/// `contains` looks in.
pub fn body_keys(v: &AnyValue<'_>, out: &mut Vec<u64>) {
    match v {
        AnyValue::String(s) => out.extend(words(s).map(word_key)),
        AnyValue::Array(items) => items.iter().for_each(|i| body_keys(i, out)),
        AnyValue::KvList(kvs) => kvs.iter().for_each(|kv| body_keys(&kv.value, out)),
        _ => {}
    }
}

/// The filter of `keys` (sorted and deduplicated here); `None` when there are none, or for a
/// key set no filter could be built for (then anything may be there).
pub fn build(keys: &mut Vec<u64>) -> Option<BinaryFuse8> {
    keys.sort_unstable();
    keys.dedup();
    match keys.is_empty() {
        true => None,
        false => BinaryFuse8::try_from(&keys[..]).ok(),
    }
}

/// The needles block of `filters`: the segment's first, then each block's.
pub fn encode(filters: &[Option<BinaryFuse8>]) -> Vec<u8> {
    let table_bytes = TABLE_ENTRY_BYTES * filters.len();
    let mut table = Vec::with_capacity(table_bytes);
    let mut body = Vec::new();
    let mut at = HEAD_BYTES + table_bytes;
    for f in filters {
        let start = body.len();
        if let Some(f) = f {
            let mut descriptor = [0u8; DESCRIPTOR_BYTES];
            f.dma_copy_descriptor_to(&mut descriptor);
            body.extend_from_slice(&descriptor);
            body.extend_from_slice(f.dma_fingerprints());
        }
        let bytes = &body[start..];
        for v in [at as u32, bytes.len() as u32, crc32c::crc32c(bytes)] {
            table.extend_from_slice(&v.to_le_bytes());
        }
        at += bytes.len();
    }
    let mut out = Vec::with_capacity(at);
    out.extend_from_slice(&(filters.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&table).to_le_bytes());
    out.extend_from_slice(&table);
    out.extend_from_slice(&body);
    debug_assert_eq!(out.len(), at);
    out
}

/// A filter entry's state, learnt when it is first probed.
const UNCHECKED: u8 = 0;
const INTACT: u8 = 1;
const DAMAGED: u8 = 2;

/// Which filter to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Segment,
    Block(usize),
}

impl Entry {
    fn index(self) -> usize {
        match self {
            Entry::Segment => 0,
            Entry::Block(i) => i + 1,
        }
    }
}

/// A filter found damaged when first probed: its entry and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    pub entry: Entry,
    pub reason: &'static str,
}

/// A data file's needles block, read in place: its table checked, each filter checked when
/// first probed.
pub struct Needles {
    /// Where the block's bytes start in the data file, and its length.
    at: usize,
    len: usize,
    state: Box<[AtomicU8]>,
}

impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Needles({} entries, {} bytes)",
            self.state.len(),
            self.len
        )
    }
}

impl Needles {
    /// The needles block at `at..at + len` of `file`, for `blocks` data blocks: its table read
    /// and checked (a few hundred bytes; the filters are not read).
    pub fn open(file: &[u8], at: usize, len: usize, blocks: usize) -> Result<Needles, FormatError> {
        let bytes = at
            .checked_add(len)
            .and_then(|end| file.get(at..end))
            .ok_or(FormatError::Truncated)?;
        if bytes.len() < HEAD_BYTES {
            return Err(FormatError::Truncated);
        }
        let entries = u32_at(bytes, 0) as usize;
        if entries != blocks + 1 {
            return Err(FormatError::Invalid("needles table length"));
        }
        let table = bytes
            .get(HEAD_BYTES..HEAD_BYTES + TABLE_ENTRY_BYTES * entries)
            .ok_or(FormatError::Truncated)?;
        if crc32c::crc32c(table) != u32_at(bytes, 4) {
            return Err(FormatError::Checksum("needles table"));
        }
        for e in table.chunks_exact(TABLE_ENTRY_BYTES) {
            let (off, n) = (u32_at(e, 0) as usize, u32_at(e, 4) as usize);
            if n != 0 && (n < DESCRIPTOR_BYTES || off.checked_add(n).is_none_or(|end| end > len)) {
                return Err(FormatError::Invalid("a needle filter's place"));
            }
        }
        Ok(Needles {
            at,
            len,
            state: (0..entries).map(|_| AtomicU8::new(UNCHECKED)).collect(),
        })
    }

    /// The same, with its state on the calling thread's heap ([`super::SealedSegment::rehomed`]).
    pub fn rehomed(&self) -> Needles {
        Needles {
            at: self.at,
            len: self.len,
            state: self
                .state
                .iter()
                .map(|s| AtomicU8::new(s.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> usize {
        self.len
    }

    /// Whether `entry`'s filter may hold, for each of `all_of`, one of its keys (no false
    /// negatives). No filter: anything may be there. A filter found damaged on this, its first
    /// probe, is `Err` (the caller reports it; it is then taken to hold anything).
    pub fn may_match(
        &self,
        file: &[u8],
        entry: Entry,
        all_of: &[Vec<u64>],
    ) -> Result<bool, Damaged> {
        let i = entry.index();
        let Some(state) = self.state.get(i) else {
            return Ok(true);
        };
        let bytes = &file[self.at..self.at + self.len];
        let e = &bytes[HEAD_BYTES + TABLE_ENTRY_BYTES * i..][..TABLE_ENTRY_BYTES];
        let (off, n, crc) = (u32_at(e, 0) as usize, u32_at(e, 4) as usize, u32_at(e, 8));
        if n == 0 {
            return Ok(true);
        }
        let filter = &bytes[off..off + n];
        match state.load(Ordering::Relaxed) {
            DAMAGED => return Ok(true),
            INTACT => {}
            _ => {
                let reason = match crc32c::crc32c(filter) == crc {
                    false => Some("checksum mismatch"),
                    true => (!descriptor_fits(filter)).then_some("a descriptor out of bounds"),
                };
                if let Some(reason) = reason {
                    state.store(DAMAGED, Ordering::Relaxed);
                    return Err(Damaged { entry, reason });
                }
                state.store(INTACT, Ordering::Relaxed);
            }
        }
        let (descriptor, fingerprints) = filter.split_at(DESCRIPTOR_BYTES);
        let f = BinaryFuse8Ref::from_dma(descriptor, fingerprints);
        Ok(all_of.iter().all(|any| any.iter().any(|k| f.contains(k))))
    }
}

/// Whether a filter's descriptor keeps every probe inside its fingerprints, so that a filter
/// whose CRC happens to match is still never read out of bounds: xorf probes one fingerprint
/// below `segment_count_length` and two in the next two segments, masked within each.
fn descriptor_fits(filter: &[u8]) -> bool {
    let (length, mask, count_length) = (u32_at(filter, 8), u32_at(filter, 12), u32_at(filter, 16));
    let fingerprints = (filter.len() - DESCRIPTOR_BYTES) as u64;
    length.is_power_of_two()
        && mask == length - 1
        && u64::from(count_length) + 2 * u64::from(length) <= fingerprints.min(u64::from(u32::MAX))
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::block::value_is;
    use proptest::prelude::*;

    fn keys(n: u64, salt: u64) -> Vec<u64> {
        (0..n)
            .map(|i| xxh3_64(&(i ^ salt << 32).to_le_bytes()))
            .collect()
    }

    /// Each key set's filter, in place, holds its keys; an entry without one holds anything.
    #[test]
    fn filters_read_in_place_hold_their_keys() {
        let sizes = [1u64, 2, 3, 7, 100, 1000, 4099, 65_536, 300_000];
        let sets: Vec<Vec<u64>> = sizes.iter().map(|&n| keys(n, n)).collect();
        let mut filters: Vec<Option<BinaryFuse8>> =
            sets.iter().map(|k| build(&mut k.clone())).collect();
        filters.push(None);
        let bytes = encode(&filters);
        // At an odd offset in a file, as a block lies after its frame.
        let mut file = vec![0xA5u8; 3];
        file.extend_from_slice(&bytes);
        let n = Needles::open(&file, 3, bytes.len(), filters.len() - 1).unwrap();
        for (i, set) in sets.iter().enumerate() {
            let entry = match i {
                0 => Entry::Segment,
                i => Entry::Block(i - 1),
            };
            for k in set {
                assert_eq!(n.may_match(&file, entry, &[vec![*k]]), Ok(true), "{i}");
            }
            // Not in the set: 0.4% false positives.
            let others = keys(10_000, 1 << 20);
            let yes = others
                .iter()
                .filter(|k| n.may_match(&file, entry, &[vec![**k]]) == Ok(true))
                .count();
            assert!(yes < 100, "{yes} false positives of 10000 in set {i}");
            // All of the groups, each by any of its keys.
            assert_eq!(
                n.may_match(
                    &file,
                    entry,
                    &[vec![others[0], set[0]], vec![set[set.len() - 1]]]
                ),
                Ok(true)
            );
        }
        let last = Entry::Block(filters.len() - 2);
        assert_eq!(n.may_match(&file, last, &[vec![1]]), Ok(true));
    }

    #[test]
    fn a_damaged_filter_is_reported_once_then_holds_anything() {
        let set = keys(5000, 9);
        let filters = vec![build(&mut set.clone()), build(&mut keys(10, 3))];
        let mut bytes = encode(&filters);
        let n = Needles::open(&bytes, 0, bytes.len(), 1).unwrap();
        // In the block's filter, the last.
        let at = bytes.len() - 5;
        bytes[at] ^= 0x40;
        let absent = [vec![xxh3_64(b"absent")]];
        // The segment's filter lies before the damage.
        assert_eq!(n.may_match(&bytes, Entry::Segment, &absent), Ok(false));
        let damaged = n.may_match(&bytes, Entry::Block(0), &absent).unwrap_err();
        assert_eq!(damaged.entry, Entry::Block(0));
        assert_eq!(n.may_match(&bytes, Entry::Block(0), &absent), Ok(true));
        // A damaged table is refused when opened.
        let mut table = encode(&filters);
        table[10] ^= 1;
        assert!(Needles::open(&table, 0, table.len(), 1).is_err());
        assert!(Needles::open(&encode(&filters), 0, encode(&filters).len(), 2).is_err());
    }

    fn value() -> impl Strategy<Value = AnyValue<'static>> {
        prop_oneof![
            prop::sample::select(vec!["500", "0500", "true", "x", "", "-0", "1e3"])
                .prop_map(|s| AnyValue::String(s.into())),
            any::<bool>().prop_map(AnyValue::Bool),
            prop::sample::select(vec![0i64, 500, -1, i64::MAX, 1000]).prop_map(AnyValue::Int),
            prop::sample::select(vec![0.0f64, -0.0, 500.0, 0.5, 1e3, f64::NAN])
                .prop_map(AnyValue::Double),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "500",
            "0500",
            "+500",
            "500.0",
            "5e2",
            "true",
            "false",
            "x",
            "",
            "-0",
            "0",
            "0.0",
            "1e3",
            "1000",
            "0.5",
            "NaN",
            "9223372036854775807",
        ])
        .prop_map(str::to_owned)
    }

    proptest! {
        /// A value `attr=key=text` matches is keyed by one of the search's keys for it, so no
        /// block holding a match is skipped.
        #[test]
        fn a_matching_value_has_one_of_the_searchs_keys(v in value(), t in text()) {
            let mut k = Keys::default();
            if value_is(&v, &t) {
                let key = k.value_key("http.status", &v).expect("a matchable value has a key");
                prop_assert!(k.query_keys("http.status", &t).contains(&key), "{v:?} {t:?}");
            }
        }
    }
}
