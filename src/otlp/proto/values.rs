//! Attributes and values: `KeyValue` (with the fast path for the common attribute shape),
//! `AnyValue`, `ArrayValue` and `KeyValueList`, where the depth limit is enforced.

use std::borrow::Cow;

use super::fields::*;
use super::reader::{utf8, Reader, I64, LEN, VARINT};
use super::Result;
use crate::domain::{AnyValue, KeyValue};
use crate::limits::PROTO_DEPTH_MAX;
use crate::otlp::DecodeError;

/// Decodes one element of a repeated `KeyValue` field (at protobuf depth `depth`) into `list`.
///
/// Hot path, inlined into every message that has attributes: as a call, its prologue and
/// the reader kept in memory across it were 8% of the span decoder's instructions
/// (callgrind, decode bench).
#[inline(always)]
pub(super) fn attribute<'a>(
    r: &mut Reader<'a>,
    wire: u8,
    list: &mut Vec<KeyValue<'a>>,
    depth: usize,
    what: &'static str,
) -> Result<()> {
    let sub = r.message(wire, what)?;
    r.grow(list)?;
    // The pair's value is at `depth + 1`, which `any_value` refuses past PROTO_DEPTH_MAX:
    // the fast path, which has no depth check, only below that.
    if depth < PROTO_DEPTH_MAX {
        if let Some(kv) = key_value_fast(sub.buf) {
            list.push(kv);
            return Ok(());
        }
    }
    // Decoded in place, which spares a copy of the pair through the stack.
    list.push(KeyValue {
        key: Cow::Borrowed(""),
        value: AnyValue::Empty,
    });
    key_value(sub, list.last_mut().expect("just pushed"), depth)
}

/// Tags (field number and wire type in one byte) of the shape [`key_value_fast`] reads.
const TAG_KEY_VALUE_KEY: u8 = (KEY_VALUE_KEY as u8) << 3 | LEN;
const TAG_KEY_VALUE_VALUE: u8 = (KEY_VALUE_VALUE as u8) << 3 | LEN;
const TAG_ANY_STRING: u8 = (ANY_STRING as u8) << 3 | LEN;
const TAG_ANY_BOOL: u8 = (ANY_BOOL as u8) << 3 | VARINT;
pub(super) const TAG_ANY_INT: u8 = (ANY_INT as u8) << 3 | VARINT;
pub(super) const TAG_ANY_DOUBLE: u8 = (ANY_DOUBLE as u8) << 3 | I64;

/// The `KeyValue` message `buf` if it has the shape nearly every attribute has: the key, then
/// the value holding one string, bool, int or double, in this order, each length under 128,
/// and nothing else. `None` for anything else, including bytes that are not UTF-8: the
/// general decoder ([`key_value`]) then decodes it, or reports what is wrong with it. For a
/// message of this shape both give the same pair.
///
/// Hot path: attributes are most of a span. The general decoder loops over the fields of two
/// nested messages, checking each key and wire type; this reads the few bytes it expects
/// (`scripts/ir-per-call.py` on the decode bench).
#[inline(always)]
pub(super) fn key_value_fast(buf: &[u8]) -> Option<KeyValue<'_>> {
    let [TAG_KEY_VALUE_KEY, key_len, rest @ ..] = buf else {
        return None;
    };
    let key_len = usize::from(*key_len);
    if key_len >= 0x80 || key_len > rest.len() {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let [TAG_KEY_VALUE_VALUE, value_len, value @ ..] = rest else {
        return None;
    };
    if *value_len >= 0x80 || usize::from(*value_len) != value.len() {
        return None;
    }
    let value = match value {
        [TAG_ANY_STRING, len, s @ ..] if *len < 0x80 && usize::from(*len) == s.len() => {
            AnyValue::String(Cow::Borrowed(utf8(s)?))
        }
        [TAG_ANY_BOOL, b] if *b < 0x80 => AnyValue::Bool(*b != 0),
        [TAG_ANY_INT, varint @ ..] => {
            let mut r = Reader::new(varint);
            let v = r.varint().ok()?;
            if r.pos != varint.len() {
                return None;
            }
            AnyValue::Int(v as i64)
        }
        [TAG_ANY_DOUBLE, bits @ ..] => {
            AnyValue::Double(f64::from_bits(u64::from_le_bytes(bits.try_into().ok()?)))
        }
        _ => return None,
    };
    Some(KeyValue {
        key: Cow::Borrowed(utf8(key)?),
        value,
    })
}

/// Decodes a `KeyValue` message (at protobuf depth `depth`) into `kv`, an empty one.
pub(super) fn key_value<'a>(mut r: Reader<'a>, kv: &mut KeyValue<'a>, depth: usize) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            KEY_VALUE_KEY => kv.key = r.str(wire, "wrong wire type for KeyValue.key")?,
            KEY_VALUE_VALUE => {
                let sub = r.message(wire, "wrong wire type for KeyValue.value")?;
                any_value(sub, &mut kv.value, depth + 1)?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Merges an `AnyValue` message (at protobuf depth `depth`) into `value`. Every recursion
/// of values passes through here, so this is where the depth limit is enforced.
pub(super) fn any_value<'a>(
    mut r: Reader<'a>,
    value: &mut AnyValue<'a>,
    depth: usize,
) -> Result<()> {
    if depth > PROTO_DEPTH_MAX {
        return Err(DecodeError::TooDeep);
    }
    while let Some((field, wire)) = r.key()? {
        let new = match field {
            ANY_STRING => {
                AnyValue::String(r.str(wire, "wrong wire type for AnyValue.string_value")?)
            }
            ANY_BOOL => {
                AnyValue::Bool(r.uint64(wire, "wrong wire type for AnyValue.bool_value")? != 0)
            }
            ANY_INT => {
                AnyValue::Int(r.uint64(wire, "wrong wire type for AnyValue.int_value")? as i64)
            }
            ANY_DOUBLE => {
                let bits = r.fixed64(wire, "wrong wire type for AnyValue.double_value")?;
                AnyValue::Double(f64::from_bits(bits))
            }
            ANY_BYTES => AnyValue::Bytes(Cow::Borrowed(
                r.bytes(wire, "wrong wire type for AnyValue.bytes_value")?,
            )),
            ANY_ARRAY => {
                let sub = r.message(wire, "wrong wire type for AnyValue.array_value")?;
                let mut items = match std::mem::replace(value, AnyValue::Empty) {
                    AnyValue::Array(items) => items,
                    _ => Vec::new(),
                };
                array_value(sub, &mut items, depth + 1)?;
                AnyValue::Array(items)
            }
            ANY_KVLIST => {
                let sub = r.message(wire, "wrong wire type for AnyValue.kvlist_value")?;
                let mut kvs = match std::mem::replace(value, AnyValue::Empty) {
                    AnyValue::KvList(kvs) => kvs,
                    _ => Vec::new(),
                };
                key_value_list(sub, &mut kvs, depth + 1)?;
                AnyValue::KvList(kvs)
            }
            ANY_STRING_STRINDEX => {
                r.uint64(wire, "wrong wire type for AnyValue.string_value_strindex")?;
                AnyValue::Empty
            }
            _ => {
                r.skip(wire)?;
                continue;
            }
        };
        // Hot path: the value replaced is nearly always the empty one the caller pushed, which
        // owns nothing. Dropping it is an out-of-line call that does nothing, 3.4% of the
        // decoder's instructions (callgrind, decode bench), so it is forgotten; only a value
        // set twice in one message is dropped.
        if matches!(value, AnyValue::Empty) {
            std::mem::forget(std::mem::replace(value, new));
        } else {
            *value = new;
        }
    }
    Ok(())
}

/// Appends the values of an `ArrayValue` message (at protobuf depth `depth`) to `items`.
fn array_value<'a>(mut r: Reader<'a>, items: &mut Vec<AnyValue<'a>>, depth: usize) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            LIST_VALUES => {
                let sub = r.message(wire, "wrong wire type for ArrayValue.values")?;
                r.grow(items)?;
                items.push(AnyValue::Empty);
                any_value(sub, items.last_mut().expect("just pushed"), depth + 1)?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Appends the pairs of a `KeyValueList` message (at protobuf depth `depth`) to `kvs`.
fn key_value_list<'a>(mut r: Reader<'a>, kvs: &mut Vec<KeyValue<'a>>, depth: usize) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            LIST_VALUES => attribute(
                &mut r,
                wire,
                kvs,
                depth + 1,
                "wrong wire type for KeyValueList.values",
            )?,
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}
