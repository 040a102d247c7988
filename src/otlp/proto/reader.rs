//! The wire level: wire types, the `Reader` cursor over one message (varints, keys,
//! length-delimited fields, run counting) and the UTF-8 check of strings.

use std::borrow::Cow;

use super::Result;
use crate::otlp::{Budget, DecodeError};

// Wire types.
pub(super) const VARINT: u8 = 0;
pub(super) const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const SGROUP: u8 = 3;
pub(super) const EGROUP: u8 = 4;
pub(super) const I32: u8 = 5;

/// A cursor over one length-delimited protobuf message.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    /// The bytes of this message only.
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    /// Offset of `buf[0]` in the body, for error offsets.
    base: usize,
    /// Offset in `buf` of the last key read, for wrong-wire-type errors and run counting.
    key_at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(body: &'a [u8]) -> Self {
        Reader {
            buf: body,
            pos: 0,
            base: 0,
            key_at: 0,
        }
    }

    #[cold]
    fn error(&self, at: usize, what: &'static str) -> DecodeError {
        DecodeError::Protobuf {
            what,
            offset: self.base + at,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads a varint; one- and two-byte varints (most keys and lengths) take the fast path.
    #[inline(always)]
    pub(super) fn varint(&mut self) -> Result<u64> {
        if let Some(&b0) = self.buf.get(self.pos) {
            if b0 < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            if let Some(&b1) = self.buf.get(self.pos + 1) {
                if b1 < 0x80 {
                    self.pos += 2;
                    return Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7);
                }
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..63).step_by(7) {
            let b = self.byte(start)?;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        // The tenth byte holds bit 63 only.
        let b = self.byte(start)?;
        if b > 1 {
            return Err(self.error(start, "varint overflows 64 bits"));
        }
        Ok(value | u64::from(b) << 63)
    }

    fn byte(&mut self, varint_start: usize) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.error(varint_start, "truncated varint"))?;
        self.pos += 1;
        Ok(b)
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    #[inline(always)]
    pub(super) fn key(&mut self) -> Result<Option<(u32, u8)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        self.key_at = self.pos;
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(self.error(self.key_at, "field key exceeds 32 bits"));
        }
        if key >> 3 == 0 {
            return Err(self.error(self.key_at, "field number 0 is invalid"));
        }
        Ok(Some(((key >> 3) as u32, (key & 7) as u8)))
    }

    /// Checks the wire type of the field whose key was just read.
    #[inline(always)]
    fn expect(&self, wire: u8, expected: u8, what: &'static str) -> Result<()> {
        if wire == expected {
            Ok(())
        } else {
            Err(self.error(self.key_at, what))
        }
    }

    #[inline]
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(self.pos, what));
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// The payload of a length-delimited field, wire type already checked.
    #[inline(always)]
    fn delimited(&mut self) -> Result<&'a [u8]> {
        let at = self.pos;
        let len = self.varint()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.remaining() => {
                let bytes = &self.buf[self.pos..self.pos + len];
                self.pos += len;
                Ok(bytes)
            }
            _ => Err(self.error(at, "length runs past the end of the message")),
        }
    }

    #[inline]
    pub(super) fn uint64(&mut self, wire: u8, what: &'static str) -> Result<u64> {
        self.expect(wire, VARINT, what)?;
        self.varint()
    }

    /// `uint32` keeps the low 32 bits of the varint, as protobuf does.
    pub(super) fn uint32(&mut self, wire: u8, what: &'static str) -> Result<u32> {
        Ok(self.uint64(wire, what)? as u32)
    }

    /// `int32` and enums: negative values are sign-extended 10-byte varints, truncated back.
    pub(super) fn int32(&mut self, wire: u8, what: &'static str) -> Result<i32> {
        Ok(self.uint64(wire, what)? as i32)
    }

    #[inline]
    pub(super) fn fixed64(&mut self, wire: u8, what: &'static str) -> Result<u64> {
        self.expect(wire, I64, what)?;
        let bytes = self.take(8, "truncated fixed64")?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    #[inline]
    pub(super) fn fixed32(&mut self, wire: u8, what: &'static str) -> Result<u32> {
        self.expect(wire, I32, what)?;
        let bytes = self.take(4, "truncated fixed32")?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    #[inline(always)]
    pub(super) fn bytes(&mut self, wire: u8, what: &'static str) -> Result<&'a [u8]> {
        self.expect(wire, LEN, what)?;
        self.delimited()
    }

    #[inline(always)]
    pub(super) fn str(&mut self, wire: u8, what: &'static str) -> Result<Cow<'a, str>> {
        let bytes = self.bytes(wire, what)?;
        match utf8(bytes) {
            Some(s) => Ok(Cow::Borrowed(s)),
            None => Err(DecodeError::Utf8 {
                offset: self.base + self.pos - bytes.len(),
            }),
        }
    }

    /// An embedded message: a reader over its bytes.
    #[inline(always)]
    pub(super) fn message(&mut self, wire: u8, what: &'static str) -> Result<Reader<'a>> {
        self.expect(wire, LEN, what)?;
        let bytes = self.delimited()?;
        Ok(Reader {
            buf: bytes,
            pos: 0,
            base: self.base + self.pos - bytes.len(),
            key_at: 0,
        })
    }

    /// Skips the value of an unknown field.
    pub(super) fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            VARINT => self.varint().map(drop),
            I64 => self.take(8, "truncated fixed64").map(drop),
            LEN => self.delimited().map(drop),
            I32 => self.take(4, "truncated fixed32").map(drop),
            SGROUP | EGROUP => {
                Err(self.error(self.key_at, "groups (wire types 3, 4) are not supported"))
            }
            _ => Err(self.error(self.key_at, "invalid wire type (6 or 7)")),
        }
    }

    /// How many length-delimited fields with the key just read follow each other from it on,
    /// that one included: the capacity to reserve for a repeated field. Reads keys and
    /// lengths only; stops early on anything malformed, which the real decoding reports.
    pub(super) fn run_len(&self) -> usize {
        let mut r = Reader {
            pos: self.key_at,
            ..*self
        };
        let Ok(key) = r.varint() else { return 0 };
        let mut n = 0;
        loop {
            match r.varint().map(usize::try_from) {
                Ok(Ok(len)) if len <= r.remaining() => r.pos += len,
                _ => return n,
            }
            n += 1;
            // Hot path: a key of one byte (attributes: 10 or so per span) is compared as a
            // byte. A key encoded longer than it needs (a non-minimal varint) ends the count:
            // this is only a capacity hint.
            match r.buf.get(r.pos) {
                None => return n,
                Some(&b) if key < 0x80 => {
                    if u64::from(b) != key {
                        return n;
                    }
                    r.pos += 1;
                }
                Some(_) => {
                    if r.varint() != Ok(key) {
                        return n;
                    }
                }
            }
        }
    }

    /// Makes room for one more element of `list`, the run of elements starting at the key
    /// just read: reserves the whole run on the first one, and charges the element against
    /// the request's decoded-size budget (see [`Budget`]).
    #[inline]
    pub(super) fn grow<T>(&self, list: &mut Vec<T>) -> Result<()> {
        Budget::charge(std::mem::size_of::<T>())?;
        if list.capacity() == 0 {
            list.reserve_exact(
                self.run_len()
                    .min(Budget::left() / std::mem::size_of::<T>().max(1) + 1),
            );
        }
        Ok(())
    }
}

/// `bytes` as a string if they are UTF-8.
///
/// Most strings in OTLP are short ASCII keys and values. For them, an inlined ASCII check
/// is much cheaper than the call into `core::str::from_utf8` that `simdutf8` makes below 64
/// bytes: measured on the `decode` bench, +20% spans/s (2.2 to 2.65 M/s on one core).
#[inline(always)]
pub(super) fn utf8(bytes: &[u8]) -> Option<&str> {
    if is_ascii(bytes) {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        simdutf8::basic::from_utf8(bytes).ok()
    }
}

/// Whether `bytes` are all ASCII: the high bits of all bytes ORed together, 8 at a time, the
/// last 8 (or 4) overlapping the ones before.
///
/// Hot path: `<[u8]>::is_ascii` is not inlined here, and its call, with alignment handling
/// meant for long slices, took 11% of the span decoder's instructions for strings that are
/// mostly 3-30 bytes (callgrind, decode bench). `utf8` trusts this check for
/// `from_utf8_unchecked`: it is tested against std at every short length.
#[inline(always)]
pub(super) fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let n = bytes.len();
    let acc = if n >= 8 {
        let mut acc = word(n - 8);
        let mut at = 0;
        while at + 8 < n {
            acc |= word(at);
            at += 8;
        }
        acc
    } else if n >= 4 {
        u64::from(half(0) | half(n - 4))
    } else {
        bytes.iter().fold(0u64, |acc, &b| acc | u64::from(b))
    };
    acc & HIGH == 0
}
