//! Scalars: strings, integers, doubles and bytes in their OTLP JSON forms. Each reads `null` as
//! its default, so a field set to `null` is the field absent.

use std::borrow::Cow;
use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;

/// A string: borrowed from the body unless it had escapes.
#[derive(Default)]
pub(super) struct JStr<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for JStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(StrVisitor).map(JStr)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// `uint64` / `fixed64`: a number or a decimal string.
#[derive(Default)]
pub(super) struct JU64(pub(super) u64);
/// `int64`: a number or a decimal string.
#[derive(Default)]
pub(super) struct JI64(pub(super) i64);
/// `uint32` / `fixed32`: a number or a decimal string.
#[derive(Default)]
pub(super) struct JU32(pub(super) u32);
/// An enum: an integer only (OTLP JSON forbids enum names).
#[derive(Default)]
pub(super) struct JEnum(pub(super) i32);

impl<'de> Deserialize<'de> for JU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = int(d, 0, u64::MAX.into(), true, "an unsigned 64-bit integer")?;
        Ok(JU64(v as u64))
    }
}

impl<'de> Deserialize<'de> for JI64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = int(
            d,
            i64::MIN.into(),
            i64::MAX.into(),
            true,
            "a 64-bit integer",
        )?;
        Ok(JI64(v as i64))
    }
}

impl<'de> Deserialize<'de> for JU32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = int(d, 0, u32::MAX.into(), true, "an unsigned 32-bit integer")?;
        Ok(JU32(v as u32))
    }
}

impl<'de> Deserialize<'de> for JEnum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = int(
            d,
            i32::MIN.into(),
            i32::MAX.into(),
            false,
            "an enum as an integer (OTLP JSON does not allow enum names)",
        )?;
        Ok(JEnum(v as i32))
    }
}

/// Reads an integer within `min..=max`; `null` is 0.
fn int<'de, D: Deserializer<'de>>(
    d: D,
    min: i128,
    max: i128,
    strings: bool,
    expecting: &'static str,
) -> Result<i128, D::Error> {
    let visitor = IntVisitor {
        min,
        max,
        strings,
        expecting,
    };
    Ok(d.deserialize_option(visitor)?.unwrap_or(0))
}

struct IntVisitor {
    min: i128,
    max: i128,
    /// Whether the decimal string form is accepted (not for enums).
    strings: bool,
    expecting: &'static str,
}

impl IntVisitor {
    fn check<E: de::Error>(&self, v: i128, unexpected: Unexpected<'_>) -> Result<i128, E> {
        if (self.min..=self.max).contains(&v) {
            Ok(v)
        } else {
            Err(E::invalid_value(unexpected, self))
        }
    }
}

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i128>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.check(v.into(), Unexpected::Unsigned(v)).map(Some)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.check(v.into(), Unexpected::Signed(v)).map(Some)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // `1e3` or `10.0`: accepted when integral, as protobuf JSON does.
        if v.fract() == 0.0 && v >= self.min as f64 && v <= self.max as f64 {
            self.check(v as i128, Unexpected::Float(v)).map(Some)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if !self.strings {
            return Err(E::invalid_type(Unexpected::Str(v), &self));
        }
        match parse_int_str(v) {
            Some(n) => self.check(n, Unexpected::Str(v)).map(Some),
            None => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// The parts of a JSON number: sign, integer digits, fraction digits, exponent (clamped).
fn json_number_parts(s: &str) -> Option<(bool, &[u8], &[u8], i64)> {
    fn digits(b: &[u8]) -> (&[u8], &[u8]) {
        let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
        b.split_at(n)
    }
    let b = s.as_bytes();
    let (negative, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let (int, rest) = digits(b);
    if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
        return None;
    }
    let (frac, rest) = match rest.split_first() {
        Some((b'.', r)) => {
            let (frac, rest) = digits(r);
            if frac.is_empty() {
                return None;
            }
            (frac, rest)
        }
        _ => (&[][..], rest),
    };
    let exp = match rest.split_first() {
        None => 0,
        Some((b'e' | b'E', r)) => {
            let (exp_negative, r) = match r.split_first() {
                Some((b'-', r)) => (true, r),
                Some((b'+', r)) => (false, r),
                _ => (false, r),
            };
            let (e, rest) = digits(r);
            if e.is_empty() || !rest.is_empty() {
                return None;
            }
            // Clamped: past 1e5 the value is 0, out of range or not integral anyway.
            let e = e.iter().fold(0i64, |acc, &c| {
                (acc * 10 + i64::from(c - b'0')).min(100_000)
            });
            if exp_negative {
                -e
            } else {
                e
            }
        }
        Some(_) => return None,
    };
    Some((negative, int, frac, exp))
}

/// Parses the string form of a protobuf JSON integer: a JSON number with an integral value
/// (`"12"`, `"-3"`, `"1e3"`, `"10.0"`; not `"1.5"`, `" 1"` or `"+1"`). Exact, no floats.
pub(super) fn parse_int_str(s: &str) -> Option<i128> {
    let (negative, int, frac, exp) = json_number_parts(s)?;
    let all: Vec<u8> = int.iter().chain(frac).copied().collect();
    let first = all.iter().position(|&c| c != b'0');
    let Some(first) = first else {
        return Some(0);
    };
    let mut digits = &all[first..];
    // The value is `digits * 10^scale`.
    let mut scale = exp - frac.len() as i64;
    if scale < 0 {
        let cut = usize::try_from(-scale).ok()?;
        if cut > digits.len() || digits[digits.len() - cut..].iter().any(|&c| c != b'0') {
            return None; // not integral
        }
        digits = &digits[..digits.len() - cut];
        scale = 0;
    }
    // 20 digits hold every u64 and i64; more is out of range for any field.
    if digits.len() as i64 + scale > 20 {
        return None;
    }
    let mut v: i128 = 0;
    for &c in digits {
        v = v * 10 + i128::from(c - b'0');
    }
    for _ in 0..scale {
        v *= 10;
    }
    Some(if negative { -v } else { v })
}

/// `double`: a number, a numeric string, or "NaN" / "Infinity" / "-Infinity".
pub(super) struct JF64(pub(super) f64);

impl<'de> Deserialize<'de> for JF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(F64Visitor).map(JF64)
    }
}

struct F64Visitor;

impl Visitor<'_> for F64Visitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, or \"NaN\", \"Infinity\" or \"-Infinity\"")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => json_number_parts(v)
                .and_then(|_| v.parse::<f64>().ok())
                .filter(|f| f.is_finite())
                .ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// `bytes`: base64, standard or URL-safe alphabet, with or without padding.
pub(super) struct JBytes(pub(super) Vec<u8>);

const BASE64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, BASE64_CONFIG);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, BASE64_CONFIG);

impl<'de> Deserialize<'de> for JBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(BytesVisitor).map(JBytes)
    }
}

struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        let engine = if v.contains(['-', '_']) {
            &BASE64_URL_SAFE
        } else {
            &BASE64_STANDARD
        };
        engine
            .decode(v)
            .map_err(|e| E::custom(format_args!("invalid base64 in bytesValue: {e}")))
    }
}
