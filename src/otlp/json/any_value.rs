//! `AnyValue`, by hand: a oneof, read straight into the domain type.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::containers::{Msg, Seq, M};
use super::convert::attributes;
use super::mirror::{JArrayValue, JKeyValueList};
use super::scalars::{JBytes, JStr, JF64, JI64};
use crate::domain::AnyValue;

pub(super) struct JAnyValue<'a>(pub(super) AnyValue<'a>);

impl Default for JAnyValue<'_> {
    fn default() -> Self {
        JAnyValue(AnyValue::Empty)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JAnyValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(AnyValueVisitor).map(JAnyValue)
    }
}

/// The members of the `AnyValue` oneof, by either name.
enum AnyValueField {
    String,
    Bool,
    Int,
    Double,
    Array,
    KvList,
    Bytes,
    Unknown,
}

impl<'de> Deserialize<'de> for AnyValueField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(AnyValueFieldVisitor)
    }
}

struct AnyValueFieldVisitor;

impl Visitor<'_> for AnyValueFieldVisitor {
    type Value = AnyValueField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AnyValue field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyValueField, E> {
        Ok(match v {
            "stringValue" | "string_value" => AnyValueField::String,
            "boolValue" | "bool_value" => AnyValueField::Bool,
            "intValue" | "int_value" => AnyValueField::Int,
            "doubleValue" | "double_value" => AnyValueField::Double,
            "arrayValue" | "array_value" => AnyValueField::Array,
            "kvlistValue" | "kvlist_value" => AnyValueField::KvList,
            "bytesValue" | "bytes_value" => AnyValueField::Bytes,
            _ => AnyValueField::Unknown,
        })
    }
}

struct AnyValueVisitor;

impl<'de> Visitor<'de> for AnyValueVisitor {
    type Value = AnyValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AnyValue object")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(AnyValue::Empty)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(AnyValue::Empty)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = None;
        while let Some(field) = map.next_key::<AnyValueField>()? {
            // `null` members are absent: `Option` reads them as `None`.
            let v = match field {
                AnyValueField::String => map
                    .next_value::<Option<JStr<'de>>>()?
                    .map(|s| AnyValue::String(s.0)),
                AnyValueField::Bool => map.next_value::<Option<bool>>()?.map(AnyValue::Bool),
                AnyValueField::Int => map
                    .next_value::<Option<JI64>>()?
                    .map(|i| AnyValue::Int(i.0)),
                AnyValueField::Double => map
                    .next_value::<Option<JF64>>()?
                    .map(|d| AnyValue::Double(d.0)),
                AnyValueField::Bytes => map
                    .next_value::<Option<JBytes>>()?
                    .map(|b| AnyValue::Bytes(Cow::Owned(b.0))),
                AnyValueField::Array => map.next_value::<Msg<JArrayValue<'de>>>()?.map(|M(a)| {
                    // In place, like `attributes`.
                    AnyValue::Array(
                        a.values
                            .map_or_else(Vec::new, |Seq(v)| v)
                            .into_iter()
                            .map(|v| v.0)
                            .collect(),
                    )
                }),
                AnyValueField::KvList => map
                    .next_value::<Msg<JKeyValueList<'de>>>()?
                    .map(|M(l)| AnyValue::KvList(attributes(l.values))),
                AnyValueField::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                    None
                }
            };
            if let Some(v) = v {
                if value.is_some() {
                    return Err(de::Error::custom(
                        "AnyValue has more than one of stringValue, boolValue, intValue, \
                         doubleValue, arrayValue, kvlistValue, bytesValue",
                    ));
                }
                value = Some(v);
            }
        }
        Ok(value.unwrap_or(AnyValue::Empty))
    }
}
