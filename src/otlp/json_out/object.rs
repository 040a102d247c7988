//! The JSON building blocks: `Obj`, an object written member by member, and string literals
//! escaped by serde_json.

use std::fmt::Write as _;
use std::io;

use super::values::key_values;
use crate::domain::ArchivedKeyValue;

/// Writes `s` as a JSON string literal, quotes included, escaped by serde_json.
pub fn write_json_str(out: &mut String, s: &str) {
    let start = out.len();
    if serde_json::to_writer(StringSink(out), s).is_err() {
        // Unreachable: serde_json hands the sink whole UTF-8 fragments of `s` and ASCII
        // escapes. Kept so that a change there cannot corrupt the output.
        out.truncate(start);
        if let Ok(json) = serde_json::to_string(s) {
            out.push_str(&json);
        }
    }
}

/// `io::Write` into a `String`, for serde_json's string escaping.
struct StringSink<'o>(&'o mut String);

impl io::Write for StringSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let s =
            std::str::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.0.push_str(s);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A JSON object being written: tracks the commas between members.
pub(super) struct Obj<'o> {
    out: &'o mut String,
    empty: bool,
}

impl<'o> Obj<'o> {
    pub(super) fn new(out: &'o mut String) -> Self {
        out.push('{');
        Obj { out, empty: true }
    }

    /// Starts member `k` and returns the output for its value.
    pub(super) fn key(&mut self, k: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
        self.out
    }

    pub(super) fn str(&mut self, k: &str, v: &str) {
        if !v.is_empty() {
            write_json_str(self.key(k), v);
        }
    }

    pub(super) fn u32(&mut self, k: &str, v: u32) {
        if v != 0 {
            let _ = write!(self.key(k), "{v}");
        }
    }

    pub(super) fn i32(&mut self, k: &str, v: i32) {
        if v != 0 {
            let _ = write!(self.key(k), "{v}");
        }
    }

    pub(super) fn u64(&mut self, k: &str, v: u64) {
        if v != 0 {
            self.u64_always(k, v);
        }
    }

    pub(super) fn u64_always(&mut self, k: &str, v: u64) {
        let _ = write!(self.key(k), "\"{v}\"");
    }

    pub(super) fn hex(&mut self, k: &str, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let out = self.key(k);
        out.reserve(bytes.len() * 2 + 2);
        out.push('"');
        for &b in bytes {
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 15)] as char);
        }
        out.push('"');
    }

    pub(super) fn attributes(&mut self, k: &str, attrs: &[ArchivedKeyValue<'_>]) {
        if !attrs.is_empty() {
            let out = self.key(k);
            out.push('[');
            key_values(out, attrs, 0);
            out.push(']');
        }
    }

    pub(super) fn end(self) {
        self.out.push('}');
    }
}
