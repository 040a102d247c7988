//! `AnyValue` and key-value lists, written recursively up to the depth limit, and doubles in
//! their protobuf JSON forms.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::object::write_json_str;
use crate::domain::{ArchivedAnyValue, ArchivedKeyValue};
use crate::limits::VALUE_DEPTH_MAX;

/// Writes one `AnyValue` object; the empty value is `{}`.
pub fn write_any_value(out: &mut String, v: &ArchivedAnyValue<'_>) {
    any_value(out, v, 0);
}

/// Values deeper than [`VALUE_DEPTH_MAX`] never pass validation; the bound only keeps the
/// recursion finite whatever the archive holds.
pub(super) fn any_value(out: &mut String, v: &ArchivedAnyValue<'_>, depth: usize) {
    match v {
        ArchivedAnyValue::Empty => out.push_str("{}"),
        ArchivedAnyValue::String(s) => {
            out.push_str("{\"stringValue\":");
            write_json_str(out, s.as_str());
            out.push('}');
        }
        ArchivedAnyValue::Bool(b) => {
            out.push_str(if *b {
                "{\"boolValue\":true}"
            } else {
                "{\"boolValue\":false}"
            });
        }
        ArchivedAnyValue::Int(i) => {
            let _ = write!(out, "{{\"intValue\":\"{}\"}}", i.to_native());
        }
        ArchivedAnyValue::Double(d) => {
            out.push_str("{\"doubleValue\":");
            write_f64(out, d.to_native());
            out.push('}');
        }
        ArchivedAnyValue::Bytes(b) => {
            out.push_str("{\"bytesValue\":\"");
            BASE64.encode_string(b.as_slice(), out);
            out.push_str("\"}");
        }
        ArchivedAnyValue::Array(items) => {
            if depth >= VALUE_DEPTH_MAX {
                out.push_str("{}");
                return;
            }
            out.push_str("{\"arrayValue\":{\"values\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                any_value(out, item, depth + 1);
            }
            out.push_str("]}}");
        }
        ArchivedAnyValue::KvList(kvs) => {
            if depth >= VALUE_DEPTH_MAX {
                out.push_str("{}");
                return;
            }
            out.push_str("{\"kvlistValue\":{\"values\":[");
            key_values(out, kvs, depth + 1);
            out.push_str("]}}");
        }
    }
}

/// The elements of a key-value list, without the brackets.
pub(super) fn key_values(out: &mut String, kvs: &[ArchivedKeyValue<'_>], depth: usize) {
    for (i, kv) in kvs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"key\":");
        write_json_str(out, kv.key.as_str());
        out.push_str(",\"value\":");
        any_value(out, &kv.value, depth);
        out.push('}');
    }
}

/// A finite double as a JSON number (shortest form that reads back exactly), the others as
/// the strings of the protobuf JSON mapping.
fn write_f64(out: &mut String, d: f64) {
    match serde_json::Number::from_f64(d) {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None if d.is_nan() => out.push_str("\"NaN\""),
        None if d > 0.0 => out.push_str("\"Infinity\""),
        None => out.push_str("\"-Infinity\""),
    }
}
