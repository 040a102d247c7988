//! JSON arrays and objects: `Seq`, an array whose growth is charged against the request's
//! budget (`Cost` says how much per element), and `M`, a message that must be a JSON object.

use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::any_value::JAnyValue;
use super::mirror::{
    JEvent, JKeyValue, JLink, JLogRecord, JResourceLogs, JResourceSpans, JScopeLogs, JScopeSpans,
    JSpan,
};
use crate::domain::{AnyValue, Event, KeyValue, Link, LogBatch, LogRecord, Scope, Span, SpanBatch};
use crate::otlp::Budget;

/// A repeated message field; absent and `null` are empty.
pub(super) type List<T> = Option<Seq<M<T>>>;
/// A message field; absent and `null` are the default message.
pub(super) type Msg<T> = Option<M<T>>;

pub(super) fn list<T>(l: List<T>) -> impl Iterator<Item = T> {
    l.map_or_else(Vec::new, |Seq(l)| l)
        .into_iter()
        .map(|M(t)| t)
}

pub(super) fn msg<T: Default>(m: Msg<T>) -> T {
    m.map(|M(t)| t).unwrap_or_default()
}

/// A JSON array, read into a `Vec` whose growth is charged against the request's [`Budget`]:
/// each slot costs [`Cost::BYTES`]. The capacity grows by doubling (from 4), but never past
/// what the budget has left, so what is allocated is what is charged; when not one more
/// element fits, parsing fails at once with a custom error that [`parse`] turns into
/// [`DecodeError::TooLarge`].
///
/// [`parse`]: super::parse
/// [`DecodeError::TooLarge`]: crate::otlp::DecodeError::TooLarge
pub(super) struct Seq<T>(pub(super) Vec<T>);

impl<'de, T: Deserialize<'de> + Cost> Deserialize<'de> for Seq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(SeqVisitor(PhantomData)).map(Seq)
    }
}

struct SeqVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Cost> Visitor<'de> for SeqVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element()? {
            if list.len() == list.capacity() {
                let more = list.capacity().max(4).min(Budget::left() / T::BYTES).max(1);
                Budget::charge(more * T::BYTES).map_err(de::Error::custom)?;
                list.reserve_exact(more);
            }
            list.push(item);
        }
        Ok(list)
    }
}

/// What one element of a [`Seq`] costs the budget: its own size, plus that of the domain value
/// it becomes when that is another allocation (the mirror list is freed only once the domain
/// one is built, so both are alive at once).
trait Cost {
    const BYTES: usize;
}

impl Cost for M<JResourceSpans<'_>> {
    const BYTES: usize = size_of::<Self>();
}

impl Cost for M<JScopeSpans<'_>> {
    /// Becomes an entry of the resource's scope list, then a batch.
    const BYTES: usize =
        size_of::<Self>() + size_of::<(Scope<'_>, Vec<Span<'_>>)>() + size_of::<SpanBatch<'_>>();
}

impl Cost for M<JSpan<'_>> {
    const BYTES: usize = size_of::<Self>() + size_of::<Span<'_>>();
}

impl Cost for M<JEvent<'_>> {
    const BYTES: usize = size_of::<Self>() + size_of::<Event<'_>>();
}

impl Cost for M<JLink<'_>> {
    const BYTES: usize = size_of::<Self>() + size_of::<Link<'_>>();
}

impl Cost for M<JResourceLogs<'_>> {
    const BYTES: usize = size_of::<Self>();
}

impl Cost for M<JScopeLogs<'_>> {
    /// Becomes an entry of the resource's scope list, then a batch.
    const BYTES: usize = size_of::<Self>()
        + size_of::<(Scope<'_>, Vec<LogRecord<'_>>)>()
        + size_of::<LogBatch<'_>>();
}

impl Cost for M<JLogRecord<'_>> {
    const BYTES: usize = size_of::<Self>() + size_of::<LogRecord<'_>>();
}

impl Cost for M<JKeyValue<'_>> {
    /// Converted in place: see [`attributes`](super::convert::attributes).
    const BYTES: usize = size_of::<Self>();
}

impl Cost for JAnyValue<'_> {
    /// Converted in place: a `JAnyValue` is an `AnyValue`.
    const BYTES: usize = size_of::<Self>();
}

// The in-place conversions above (`collect` reuses the allocation of a `vec::IntoIter` when the
// element layouts match) are what makes charging the mirror alone right.
const _: () = {
    assert!(size_of::<M<JKeyValue<'_>>>() == size_of::<KeyValue<'_>>());
    assert!(std::mem::align_of::<M<JKeyValue<'_>>>() == std::mem::align_of::<KeyValue<'_>>());
    assert!(size_of::<JAnyValue<'_>>() == size_of::<AnyValue<'_>>());
    assert!(std::mem::align_of::<JAnyValue<'_>>() == std::mem::align_of::<AnyValue<'_>>());
};

/// A protobuf message: a JSON object only. serde's derived `Deserialize` of a struct also
/// takes a JSON array of the fields in order, which is not protobuf JSON; `M` asks the
/// deserializer for a map instead.
pub(super) struct M<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for M<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(ObjectOnly(d)).map(M)
    }
}

/// Forwards every request to `deserialize_map` of the inner deserializer. Only used for
/// derived structs, whose visitor reads a map.
struct ObjectOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}
