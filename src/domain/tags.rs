//! Tag discovery: the attribute keys seen, by scope, and each key's most frequent values, for
//! the UIs' choices (`GET /api/v1/tags`, `GET /api/v1/tags/{key}/values`).
//!
//! A [`TagTable`] is kept per head segment (its index part) and written into each sealed
//! segment's sidecar, so that discovery reads no record. Both note resources for every item
//! and the attributes of the items a [`Sampler`] picks. It is bounded whatever clients send:
//! at most [`TAG_KEYS_MAX`] keys (a scope, a service and an attribute key), each counting
//! [`TAG_VALUES_TRACKED`] values by the space-saving algorithm (a value more frequent than one
//! in that many is always among them; the counts of the rest are estimates from above), of at
//! most [`TAG_VALUE_BYTES_MAX`] bytes each, and [`TAG_TEXT_BYTES_MAX`] of value text in all.
//! Keys and values past a bound are not noted; the table says it was truncated.
//!
//! Values are scalars: strings, booleans, integers and doubles (NaN excluded). Bytes, arrays
//! and maps are noted as keys without values.

use std::hash::{BuildHasher, Hash};

use super::{AnyValue, ArchivedAnyValue, ArchivedKeyValue, KeyValue};
use crate::limits::{
    TAG_KEYS_MAX, TAG_SAMPLE_EVERY, TAG_TEXT_BYTES_MAX, TAG_VALUES_TRACKED, TAG_VALUE_BYTES_MAX,
};

/// Where an attribute was seen. Resources are told apart by signal, so that a trace UI lists
/// only the keys of the resources of spans, a log UI those of log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TagScope {
    /// The resource of spans.
    TraceResource = 0,
    Span = 1,
    /// The resource of log records.
    LogResource = 2,
    Log = 3,
}

impl TagScope {
    pub const ALL: [TagScope; 4] = [
        TagScope::TraceResource,
        TagScope::Span,
        TagScope::LogResource,
        TagScope::Log,
    ];

    /// The scope's name in the query API: both resources are `resource`.
    pub fn name(self) -> &'static str {
        match self {
            TagScope::TraceResource | TagScope::LogResource => "resource",
            TagScope::Span => "span",
            TagScope::Log => "log",
        }
    }

    pub fn is_traces(self) -> bool {
        matches!(self, TagScope::TraceResource | TagScope::Span)
    }

    pub fn from_byte(b: u8) -> Option<TagScope> {
        TagScope::ALL.get(b as usize).copied()
    }
}

/// A scalar attribute value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    /// A `String`, not a `Box<str>`: a counted value that gives its place to another reuses
    /// the buffer (high-cardinality keys replace one on most items they are noted for).
    Str(String),
    Int(i64),
    /// Never NaN; `-0.0` is kept as `0.0`.
    Double(f64),
    Bool(bool),
}

/// A scalar attribute value, borrowed from a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TagValueRef<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

/// A double as discovery keeps it: `-0.0` as `0.0`, NaN not at all (it equals nothing).
fn double(d: f64) -> Option<f64> {
    match d {
        d if d.is_nan() => None,
        0.0 => Some(0.0),
        d => Some(d),
    }
}

impl<'a> TagValueRef<'a> {
    /// The value of `v` if it is listed: a scalar, a string of at most [`TAG_VALUE_BYTES_MAX`].
    pub fn of(v: &'a AnyValue<'_>) -> Option<TagValueRef<'a>> {
        match v {
            AnyValue::String(s) if s.len() <= TAG_VALUE_BYTES_MAX => Some(TagValueRef::Str(s)),
            AnyValue::Bool(b) => Some(TagValueRef::Bool(*b)),
            AnyValue::Int(i) => Some(TagValueRef::Int(*i)),
            AnyValue::Double(d) => double(*d).map(TagValueRef::Double),
            _ => None,
        }
    }

    /// [`TagValueRef::of`] for a stored value.
    pub fn of_archived(v: &'a ArchivedAnyValue<'_>) -> Option<TagValueRef<'a>> {
        match v {
            ArchivedAnyValue::String(s) if s.len() <= TAG_VALUE_BYTES_MAX => {
                Some(TagValueRef::Str(s.as_str()))
            }
            ArchivedAnyValue::Bool(b) => Some(TagValueRef::Bool(*b)),
            ArchivedAnyValue::Int(i) => Some(TagValueRef::Int(i.to_native())),
            ArchivedAnyValue::Double(d) => double(d.to_native()).map(TagValueRef::Double),
            _ => None,
        }
    }

    fn to_owned(self) -> TagValue {
        match self {
            TagValueRef::Str(s) => TagValue::Str(s.to_owned()),
            TagValueRef::Int(i) => TagValue::Int(i),
            TagValueRef::Double(d) => TagValue::Double(d),
            TagValueRef::Bool(b) => TagValue::Bool(b),
        }
    }

    /// Bytes of text this value holds (what [`TAG_TEXT_BYTES_MAX`] bounds).
    fn text_bytes(self) -> usize {
        match self {
            TagValueRef::Str(s) => s.len(),
            _ => 0,
        }
    }

    fn hash(self) -> u64 {
        let h = foldhash::fast::FixedState::default();
        match self {
            TagValueRef::Str(s) => h.hash_one((0u8, s)),
            TagValueRef::Int(i) => h.hash_one((1u8, i)),
            TagValueRef::Double(d) => h.hash_one((2u8, d.to_bits())),
            TagValueRef::Bool(b) => h.hash_one((3u8, b)),
        }
    }
}

impl TagValue {
    pub fn as_ref(&self) -> TagValueRef<'_> {
        match self {
            TagValue::Str(s) => TagValueRef::Str(s),
            TagValue::Int(i) => TagValueRef::Int(*i),
            TagValue::Double(d) => TagValueRef::Double(*d),
            TagValue::Bool(b) => TagValueRef::Bool(*b),
        }
    }

    /// The type's name in the query API (Tempo's names for them).
    pub fn kind(&self) -> &'static str {
        match self {
            TagValue::Str(_) => "string",
            TagValue::Int(_) => "int",
            TagValue::Double(_) => "double",
            TagValue::Bool(_) => "bool",
        }
    }

    /// The value as a search's `attr=key=value` takes it.
    pub fn text(&self) -> String {
        match self {
            TagValue::Str(s) => s.to_string(),
            TagValue::Int(i) => i.to_string(),
            TagValue::Double(d) => d.to_string(),
            TagValue::Bool(b) => b.to_string(),
        }
    }

    /// An order of values of any kind, for stable answers (kinds, then values).
    pub fn order(&self, other: &TagValue) -> std::cmp::Ordering {
        let rank = |v: &TagValue| match v {
            TagValue::Str(_) => 0,
            TagValue::Int(_) => 1,
            TagValue::Double(_) => 2,
            TagValue::Bool(_) => 3,
        };
        match (self, other) {
            (TagValue::Str(a), TagValue::Str(b)) => a.cmp(b),
            (TagValue::Int(a), TagValue::Int(b)) => a.cmp(b),
            (TagValue::Double(a), TagValue::Double(b)) => a.total_cmp(b),
            (TagValue::Bool(a), TagValue::Bool(b)) => a.cmp(b),
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }
}

/// Picks the items a head part notes: about one in [`TAG_SAMPLE_EVERY`], at gaps drawn
/// uniformly from 1 to twice that less one, each noted item weighing the gap it closes. A
/// fixed stride would alias with the shape of batches (one span in 16 of traces of 4 spans
/// is always a root, and a child's keys would never be seen); the random gaps do not, and
/// no run of `2 × TAG_SAMPLE_EVERY - 1` items goes unsampled. Counts are then estimates whose
/// sum falls short of the truth by less than one gap.
#[derive(Debug, Clone)]
pub struct Sampler {
    state: u64,
    gap: u32,
    left: u32,
}

impl Default for Sampler {
    fn default() -> Self {
        let mut s = Sampler {
            state: 0x9E37_79B9_7F4A_7C15,
            gap: 0,
            left: 0,
        };
        s.draw();
        s
    }
}

impl Sampler {
    fn draw(&mut self) {
        // xorshift64: cheap, and only the spread of the gaps matters.
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        let span = 2 * TAG_SAMPLE_EVERY as u64 - 1;
        self.gap = (1 + x % span) as u32;
        self.left = self.gap;
    }

    /// Whether the next item is noted, with the items it stands for.
    #[inline]
    pub fn pick(&mut self) -> Option<u64> {
        self.left -= 1;
        if self.left > 0 {
            return None;
        }
        let weight = u64::from(self.gap);
        self.draw();
        Some(weight)
    }
}

/// One counted value.
#[derive(Debug, Clone)]
struct Slot {
    hash: u64,
    value: TagValue,
    count: u64,
}

/// The most frequent values of one key, by the space-saving algorithm: at most
/// [`TAG_VALUES_TRACKED`] counted; a new value past that takes the place of the least counted
/// one, and its count (so a count is never below the truth).
#[derive(Debug, Clone, Default)]
pub struct TopValues {
    slots: Vec<Slot>,
}

impl TopValues {
    /// Counts `weight` occurrences of `v`; the change in text bytes held, which is positive
    /// only if `room` allows it (a value that does not fit is not noted).
    fn add(&mut self, v: TagValueRef<'_>, weight: u64, room: usize) -> isize {
        let hash = v.hash();
        if let Some(s) = self
            .slots
            .iter_mut()
            .find(|s| s.hash == hash && s.value.as_ref() == v)
        {
            s.count += weight;
            return 0;
        }
        let bytes = v.text_bytes();
        if self.slots.len() < TAG_VALUES_TRACKED {
            if bytes > room {
                return 0;
            }
            self.slots.push(Slot {
                hash,
                value: v.to_owned(),
                count: weight,
            });
            return bytes as isize;
        }
        let (at, _) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.count)
            .expect("a full table has slots");
        let old = self.slots[at].value.as_ref().text_bytes();
        if bytes > old + room {
            return 0;
        }
        let s = &mut self.slots[at];
        match (&mut s.value, v) {
            (TagValue::Str(text), TagValueRef::Str(new)) => {
                text.clear();
                text.push_str(new);
            }
            (value, v) => *value = v.to_owned(),
        }
        (s.hash, s.count) = (hash, s.count + weight);
        bytes as isize - old as isize
    }

    /// The values and their counts, most frequent first (ties in [`TagValue::order`]).
    pub fn top(&self, n: usize) -> Vec<(&TagValue, u64)> {
        let mut all: Vec<(&TagValue, u64)> =
            self.slots.iter().map(|s| (&s.value, s.count)).collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.order(b.0)));
        all.truncate(n);
        all
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A table holding `values` as they are (read back from a sidecar).
    pub fn from_counts(values: Vec<(TagValue, u64)>) -> TopValues {
        TopValues {
            slots: values
                .into_iter()
                .map(|(value, count)| Slot {
                    hash: value.as_ref().hash(),
                    value,
                    count,
                })
                .collect(),
        }
    }
}

/// The keys of one scope and service, each with its values.
type Keys = foldhash::HashMap<Box<str>, TopValues>;

/// The attribute keys seen, by scope and service (`S`: how the holder numbers services), each
/// with its most frequent values. Bounded as the module says.
#[derive(Debug, Clone)]
pub struct TagTable<S> {
    by_scope: foldhash::HashMap<(TagScope, S), Keys>,
    keys: usize,
    text_bytes: usize,
    truncated: bool,
}

impl<S> Default for TagTable<S> {
    fn default() -> Self {
        TagTable {
            by_scope: Default::default(),
            keys: 0,
            text_bytes: 0,
            truncated: false,
        }
    }
}

/// Bytes a key costs beside its text, about: its map slot and its values' vector.
const KEY_OVERHEAD_BYTES: usize = 64;
/// Bytes a counted value costs beside its text.
const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

impl<S: Copy + Eq + Hash> TagTable<S> {
    /// Notes `attrs` of a stored record seen in `scope` with `service`, `weight` times.
    pub fn note_archived(
        &mut self,
        scope: TagScope,
        service: S,
        attrs: &[ArchivedKeyValue<'_>],
        weight: u64,
    ) {
        if attrs.is_empty() {
            return;
        }
        let mut t = self.scope(scope, service);
        for kv in attrs {
            t.note(kv.key.as_str(), TagValueRef::of_archived(&kv.value), weight);
        }
    }

    /// Notes `attrs` seen in `scope` with `service`, `weight` times.
    pub fn note(&mut self, scope: TagScope, service: S, attrs: &[KeyValue<'_>], weight: u64) {
        if attrs.is_empty() {
            return;
        }
        let mut t = self.scope(scope, service);
        for kv in attrs {
            t.note(&kv.key, TagValueRef::of(&kv.value), weight);
        }
    }

    fn scope(&mut self, scope: TagScope, service: S) -> Noting<'_> {
        Noting {
            keys: self.by_scope.entry((scope, service)).or_default(),
            count: &mut self.keys,
            text_bytes: &mut self.text_bytes,
            truncated: &mut self.truncated,
        }
    }

    /// Puts `values` in as they are (a sidecar read back), within the same bounds.
    pub fn insert(&mut self, scope: TagScope, service: S, key: &str, values: TopValues) {
        if self.keys >= TAG_KEYS_MAX {
            self.truncated = true;
            return;
        }
        let text: usize = values
            .slots
            .iter()
            .map(|s| s.value.as_ref().text_bytes())
            .sum();
        let keys = self.by_scope.entry((scope, service)).or_default();
        if keys.insert(key.into(), values).is_none() {
            self.keys += 1;
            self.text_bytes += key.len() + text;
        }
    }

    /// Keeps each key's `n` most frequent values only (what a sidecar keeps).
    pub fn trim(&mut self, n: usize) {
        for values in self
            .by_scope
            .values_mut()
            .flat_map(|keys| keys.values_mut())
        {
            if values.slots.len() <= n {
                continue;
            }
            values.slots.sort_unstable_by(|a, b| {
                b.count.cmp(&a.count).then_with(|| a.value.order(&b.value))
            });
            for s in values.slots.drain(n..) {
                self.text_bytes -= s.value.as_ref().text_bytes();
            }
            values.slots.shrink_to_fit();
        }
    }

    /// Every key with its scope, service and values, in no order.
    pub fn entries(&self) -> impl Iterator<Item = (TagScope, S, &str, &TopValues)> {
        self.by_scope.iter().flat_map(|(&(scope, service), keys)| {
            keys.iter()
                .map(move |(k, v)| (scope, service, k.as_ref(), v))
        })
    }

    /// Whether keys or values were left out for the bounds.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn set_truncated(&mut self) {
        self.truncated = true;
    }

    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Memory held, about.
    pub fn approx_bytes(&self) -> usize {
        let slots: usize = self
            .by_scope
            .values()
            .flat_map(|keys| keys.values())
            .map(|v| v.slots.capacity() * SLOT_BYTES)
            .sum();
        self.text_bytes + self.keys * KEY_OVERHEAD_BYTES + slots
    }
}

/// One scope and service's keys, being noted.
struct Noting<'t> {
    keys: &'t mut Keys,
    count: &'t mut usize,
    text_bytes: &'t mut usize,
    truncated: &'t mut bool,
}

impl Noting<'_> {
    fn note(&mut self, key: &str, value: Option<TagValueRef<'_>>, weight: u64) {
        let values = match self.keys.get_mut(key) {
            Some(v) => v,
            None => {
                if *self.count >= TAG_KEYS_MAX || *self.text_bytes + key.len() > TAG_TEXT_BYTES_MAX
                {
                    *self.truncated = true;
                    return;
                }
                *self.count += 1;
                *self.text_bytes += key.len();
                self.keys.entry(key.into()).or_default()
            }
        };
        let Some(v) = value else { return };
        let room = TAG_TEXT_BYTES_MAX.saturating_sub(*self.text_bytes);
        let change = values.add(v, weight, room);
        if change == 0 && v.text_bytes() > room {
            *self.truncated = true;
        }
        *self.text_bytes = (*self.text_bytes as isize + change) as usize;
        debug_assert!(*self.text_bytes <= TAG_TEXT_BYTES_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::borrow::Cow;

    fn kv<'a>(k: &'a str, v: AnyValue<'a>) -> KeyValue<'a> {
        KeyValue {
            key: Cow::Borrowed(k),
            value: v,
        }
    }

    #[test]
    fn values_are_counted_by_kind_and_value() {
        let mut t = TagTable::<u32>::default();
        let s = |x: &'static str| AnyValue::String(Cow::Borrowed(x));
        t.note(TagScope::Span, 0, &[kv("code", AnyValue::Int(200))], 3);
        t.note(TagScope::Span, 0, &[kv("code", s("200"))], 1);
        t.note(TagScope::Span, 0, &[kv("code", AnyValue::Int(500))], 1);
        t.note(TagScope::Span, 0, &[kv("ratio", AnyValue::Double(-0.0))], 1);
        t.note(TagScope::Span, 0, &[kv("ratio", AnyValue::Double(0.0))], 1);
        t.note(
            TagScope::Span,
            0,
            &[kv("ratio", AnyValue::Double(f64::NAN))],
            1,
        );
        t.note(
            TagScope::Span,
            0,
            &[kv("blob", AnyValue::Bytes(Cow::Borrowed(b"x")))],
            1,
        );
        #[allow(clippy::type_complexity)]
        let mut got: Vec<(&str, Vec<(String, &str, u64)>)> = t
            .entries()
            .map(|(_, _, k, v)| {
                let vals = v
                    .top(10)
                    .into_iter()
                    .map(|(v, n)| (v.text(), v.kind(), n))
                    .collect();
                (k, vals)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("blob", vec![]),
                (
                    "code",
                    vec![
                        ("200".into(), "int", 3),
                        ("200".into(), "string", 1),
                        ("500".into(), "int", 1)
                    ]
                ),
                ("ratio", vec![("0".into(), "double", 2)]),
            ]
        );
    }

    #[test]
    fn keys_past_the_bound_are_left_out_and_said_to_be() {
        let mut t = TagTable::<u32>::default();
        let names: Vec<String> = (0..TAG_KEYS_MAX + 10).map(|i| format!("k{i}")).collect();
        for n in &names {
            t.note(TagScope::Log, 7, &[kv(n, AnyValue::Bool(true))], 1);
        }
        assert_eq!(t.keys(), TAG_KEYS_MAX);
        assert_eq!(t.entries().count(), TAG_KEYS_MAX);
        assert!(t.truncated());
    }

    #[test]
    fn long_strings_are_keys_without_values() {
        let mut t = TagTable::<u32>::default();
        let long = "x".repeat(TAG_VALUE_BYTES_MAX + 1);
        t.note(
            TagScope::Span,
            0,
            &[kv("sql", AnyValue::String(Cow::Owned(long)))],
            1,
        );
        let (_, _, k, v) = t.entries().next().unwrap();
        assert_eq!(k, "sql");
        assert!(v.is_empty());
    }

    #[test]
    fn text_stays_within_its_bound() {
        let mut t = TagTable::<u32>::default();
        for i in 0..(4 * TAG_TEXT_BYTES_MAX / TAG_VALUE_BYTES_MAX) {
            let v = format!("{i:0width$}", width = TAG_VALUE_BYTES_MAX);
            t.note(
                TagScope::Span,
                (i % 1000) as u32,
                &[kv("id", AnyValue::String(Cow::Owned(v)))],
                1,
            );
        }
        assert!(t.truncated());
        assert!(t.text_bytes <= TAG_TEXT_BYTES_MAX);
    }

    #[test]
    fn the_sampler_leaves_no_long_run_and_its_weights_add_up() {
        let mut s = Sampler::default();
        let (mut run, mut weight, mut noted) = (0, 0, 0);
        for _ in 0..100_000 {
            match s.pick() {
                Some(w) => {
                    assert_eq!(w, run + 1);
                    weight += w;
                    noted += 1;
                    run = 0;
                }
                None => run += 1,
            }
            assert!(run < 2 * TAG_SAMPLE_EVERY as u64 - 1);
        }
        assert!(100_000 - weight < 2 * TAG_SAMPLE_EVERY as u64);
        let per = 100_000 / noted;
        assert!(
            (TAG_SAMPLE_EVERY as u64 - 1..=TAG_SAMPLE_EVERY as u64 + 1).contains(&per),
            "{per}"
        );
    }

    proptest! {
        /// Space-saving's promise: a value more frequent than one in TAG_VALUES_TRACKED is
        /// counted, and no count is below the truth.
        #[test]
        fn frequent_values_are_kept_and_counts_never_fall_short(
            stream in proptest::collection::vec(0u16..400, 1..3000),
            heavy in 0u16..400,
        ) {
            let mut stream = stream;
            let n = stream.len();
            // Make `heavy` frequent enough to be guaranteed a slot.
            for i in (0..n).step_by(TAG_VALUES_TRACKED / 2) {
                stream[i] = heavy;
            }
            let mut top = TopValues::default();
            let mut truth = std::collections::HashMap::new();
            for &v in &stream {
                top.add(TagValueRef::Int(i64::from(v)), 1, usize::MAX);
                *truth.entry(v).or_insert(0u64) += 1;
            }
            for (v, count) in top.top(TAG_VALUES_TRACKED) {
                let TagValue::Int(i) = v else { unreachable!() };
                prop_assert!(count >= truth[&(*i as u16)]);
            }
            for (&v, &count) in &truth {
                if count as usize * TAG_VALUES_TRACKED > n {
                    prop_assert!(top.top(TAG_VALUES_TRACKED).iter().any(|(x, _)| **x == TagValue::Int(i64::from(v))));
                }
            }
        }
    }
}
