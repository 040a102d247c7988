//! The byte-level pieces of a sealed block: columns written as varints, fixed-width ids and
//! length-prefixed bytes, and read back with every length checked.

use std::borrow::Cow;

use crate::domain::{AnyValue, KeyValue};
use crate::limits::VALUE_DEPTH_MAX;

/// A column being written.
#[derive(Default, Debug, Clone)]
pub struct ColumnWriter {
    pub bytes: Vec<u8>,
}

impl ColumnWriter {
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.bytes.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
    }

    /// A signed value, zigzag-encoded so that small magnitudes take few bytes.
    pub fn signed(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn fixed(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.bytes.extend_from_slice(b);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// Any value, self-describing: a tag, then its content.
    pub fn value(&mut self, v: &AnyValue<'_>) {
        match v {
            AnyValue::Empty => self.varint(0),
            AnyValue::String(s) => {
                self.varint(1);
                self.str(s);
            }
            AnyValue::Bool(b) => {
                self.varint(2);
                self.varint(u64::from(*b));
            }
            AnyValue::Int(i) => {
                self.varint(3);
                self.signed(*i);
            }
            AnyValue::Double(d) => {
                self.varint(4);
                self.fixed(&d.to_le_bytes());
            }
            AnyValue::Bytes(b) => {
                self.varint(5);
                self.bytes(b);
            }
            AnyValue::Array(items) => {
                self.varint(6);
                self.varint(items.len() as u64);
                for item in items {
                    self.value(item);
                }
            }
            AnyValue::KvList(kvs) => {
                self.varint(7);
                self.key_values(kvs);
            }
        }
    }

    /// A list of attributes, keys and values inline.
    pub fn key_values(&mut self, kvs: &[KeyValue<'_>]) {
        self.varint(kvs.len() as u64);
        for kv in kvs {
            self.str(&kv.key);
            self.value(&kv.value);
        }
    }
}

/// Why a sealed block cannot be read: it is damaged (or not a block).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("sealed block: {what} runs past the end of column {column}")]
    Truncated {
        column: &'static str,
        what: &'static str,
    },
    #[error("sealed block: {what} in column {column}")]
    Invalid {
        column: &'static str,
        what: &'static str,
    },
    #[error("sealed block: column {0} does not decompress")]
    Compression(&'static str),
}

/// A column being read.
pub struct ColumnReader<'a> {
    name: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ColumnReader<'a> {
    pub fn new(name: &'static str, buf: &'a [u8]) -> Self {
        ColumnReader { name, buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn truncated(&self, what: &'static str) -> BlockError {
        BlockError::Truncated {
            column: self.name,
            what,
        }
    }

    pub fn invalid(&self, what: &'static str) -> BlockError {
        BlockError::Invalid {
            column: self.name,
            what,
        }
    }

    pub fn varint(&mut self) -> Result<u64, BlockError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.truncated("a varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.invalid("a varint longer than 64 bits"))
    }

    pub fn signed(&mut self) -> Result<i64, BlockError> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A count of things each at least one byte long: bounded by what is left, so that a
    /// damaged count cannot make a reader reserve unbounded memory.
    pub fn count(&mut self) -> Result<usize, BlockError> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.buf.len() - self.pos => Ok(n),
            _ => Err(self.invalid("a count larger than the column")),
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], BlockError> {
        let end = self.pos + N;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated("a fixed-width field"))?;
        self.pos = end;
        Ok(b.try_into().expect("N bytes"))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], BlockError> {
        let n = self.varint()? as usize;
        self.take(n)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], BlockError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.truncated("bytes"))?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated("bytes"))?;
        self.pos = end;
        Ok(b)
    }

    pub fn str(&mut self) -> Result<String, BlockError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.invalid("a string that is not UTF-8"))
    }

    pub fn value(&mut self) -> Result<AnyValue<'static>, BlockError> {
        self.value_at(0)
    }

    /// Reads past a value without building it; where it lay in the column.
    pub fn skip_value(&mut self) -> Result<std::ops::Range<usize>, BlockError> {
        let start = self.pos;
        self.skip_value_at(0)?;
        Ok(start..self.pos)
    }

    fn skip_value_at(&mut self, depth: usize) -> Result<(), BlockError> {
        if depth > VALUE_DEPTH_MAX + 1 {
            return Err(self.invalid("values nested deeper than stored values can be"));
        }
        match self.varint()? {
            0 => {}
            1 | 5 => {
                self.bytes()?;
            }
            2 | 3 => {
                self.varint()?;
            }
            4 => {
                self.fixed::<8>()?;
            }
            6 => {
                for _ in 0..self.count()? {
                    self.skip_value_at(depth + 1)?;
                }
            }
            7 => {
                for _ in 0..self.count()? {
                    self.bytes()?;
                    self.skip_value_at(depth + 1)?;
                }
            }
            _ => return Err(self.invalid("an unknown value tag")),
        }
        Ok(())
    }

    /// The value at `range`, a range [`ColumnReader::skip_value`] gave.
    pub fn value_in(&self, range: std::ops::Range<usize>) -> Result<AnyValue<'static>, BlockError> {
        let bytes = self
            .buf
            .get(range)
            .ok_or_else(|| self.invalid("a value range outside the column"))?;
        ColumnReader::new(self.name, bytes).value()
    }

    /// A value at nesting `depth`: a damaged block cannot nest deeper than validation lets
    /// values nest, so it cannot overflow the stack.
    fn value_at(&mut self, depth: usize) -> Result<AnyValue<'static>, BlockError> {
        if depth > VALUE_DEPTH_MAX + 1 {
            return Err(self.invalid("values nested deeper than stored values can be"));
        }
        Ok(match self.varint()? {
            0 => AnyValue::Empty,
            1 => AnyValue::String(Cow::Owned(self.str()?)),
            2 => AnyValue::Bool(self.varint()? != 0),
            3 => AnyValue::Int(self.signed()?),
            4 => AnyValue::Double(f64::from_le_bytes(self.fixed()?)),
            5 => AnyValue::Bytes(Cow::Owned(self.bytes()?.to_vec())),
            6 => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value_at(depth + 1)?);
                }
                AnyValue::Array(items)
            }
            7 => AnyValue::KvList(self.key_values_at(depth + 1)?),
            _ => return Err(self.invalid("an unknown value tag")),
        })
    }

    pub fn key_values(&mut self) -> Result<Vec<KeyValue<'static>>, BlockError> {
        self.key_values_at(0)
    }

    fn key_values_at(&mut self, depth: usize) -> Result<Vec<KeyValue<'static>>, BlockError> {
        let n = self.count()?;
        let mut kvs = Vec::with_capacity(n);
        for _ in 0..n {
            let key = Cow::Owned(self.str()?);
            kvs.push(KeyValue {
                key,
                value: self.value_at(depth)?,
            });
        }
        Ok(kvs)
    }
}
