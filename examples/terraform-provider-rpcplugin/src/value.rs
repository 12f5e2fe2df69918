//! Terraform values on the wire: the msgpack encoding of `DynamicValue`, with
//! msgpack's extension type 0 for values not known until apply.
//!
//! Terraform encodes a value of its type system (cty) as msgpack, and the schema
//! says how to read it: an object is a map from attribute names to values, a null is
//! msgpack nil, and an unknown value is an extension of type 0 (Terraform since 1.6
//! may also send type 12, an unknown with refinements such as "not null"; this codec
//! reads it as a plain unknown, which every refinement allows). Numbers arrive as
//! msgpack integers, floats, or, for numbers too big for both, strings: this codec
//! keeps integers and floats and leaves strings to the schema that knows the type.

use crate::pb::DynamicValue;
use std::collections::BTreeMap;
use std::fmt;

/// The msgpack extension type of an unknown value.
pub const UNKNOWN_EXT: i8 = 0;

/// The msgpack extension type of an unknown value with refinements (cty's).
pub const REFINED_UNKNOWN_EXT: i8 = 12;

/// A Terraform value, as untyped as its msgpack encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null: an optional attribute left out, or a resource that does not exist.
    Null,
    /// Not known until apply (during plan, a value computed by another resource).
    Unknown,
    /// A bool.
    Bool(bool),
    /// A number (integer or float; lossless for both).
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// A list, set or tuple.
    List(Vec<Value>),
    /// An object or map.
    Map(BTreeMap<String, Value>),
}

/// A value that is not valid msgpack or JSON, or not a Terraform value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode a Terraform value: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

static NULL: Value = Value::Null;

impl Value {
    /// An object with these attributes.
    pub fn object<K: Into<String>>(attributes: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(attributes.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string, or null for `None`.
    pub fn string_or_null(text: Option<impl Into<String>>) -> Value {
        text.map_or(Value::Null, |t| Value::String(t.into()))
    }

    /// The attribute `name` of an object; null when absent or when `self` is not an
    /// object (an attribute of a null object is null for Terraform too).
    pub fn get(&self, name: &str) -> &Value {
        match self {
            Value::Map(map) => map.get(name).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    /// The text of a known string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the value is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether the value is unknown (not its parts: see [`Value::is_wholly_known`]).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// Whether neither the value nor anything inside it is unknown.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(items) => items.iter().all(Value::is_wholly_known),
            Value::Map(map) => map.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    /// Decodes msgpack.
    pub fn from_msgpack(mut bytes: &[u8]) -> Result<Value, DecodeError> {
        let raw = rmpv::decode::read_value(&mut bytes).map_err(|e| DecodeError(e.to_string()))?;
        if !bytes.is_empty() {
            return Err(DecodeError(format!(
                "{} bytes left after the value",
                bytes.len()
            )));
        }
        from_rmpv(raw)
    }

    /// Encodes msgpack, as Terraform reads it.
    pub fn to_msgpack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &to_rmpv(self))
            .expect("writing msgpack to a Vec cannot fail");
        out
    }

    /// Decodes JSON (state stored by Terraform, handed to UpgradeResourceState).
    /// JSON has no unknown values.
    pub fn from_json(bytes: &[u8]) -> Result<Value, DecodeError> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string()))?;
        Ok(from_json(json))
    }

    /// Decodes what Terraform sent: msgpack, else JSON, and a missing value is null.
    pub fn from_dynamic(value: Option<&DynamicValue>) -> Result<Value, DecodeError> {
        match value {
            Some(v) if !v.msgpack.is_empty() => Value::from_msgpack(&v.msgpack),
            Some(v) if !v.json.is_empty() => Value::from_json(&v.json),
            _ => Ok(Value::Null),
        }
    }

    /// The value as a `DynamicValue` (msgpack).
    pub fn to_dynamic(&self) -> DynamicValue {
        DynamicValue {
            msgpack: self.to_msgpack(),
            json: Vec::new(),
        }
    }
}

fn from_rmpv(raw: rmpv::Value) -> Result<Value, DecodeError> {
    use rmpv::Value as R;
    Ok(match raw {
        R::Nil => Value::Null,
        R::Boolean(b) => Value::Bool(b),
        R::Integer(i) => Value::Number(match (i.as_i64(), i.as_u64()) {
            (Some(n), _) => n.into(),
            (None, Some(n)) => n.into(),
            (None, None) => return Err(DecodeError(format!("integer {i} out of range"))),
        }),
        R::F32(f) => float(f64::from(f))?,
        R::F64(f) => float(f)?,
        R::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => return Err(DecodeError("a string that is not UTF-8".into())),
        },
        R::Binary(_) => return Err(DecodeError("binary data is not a Terraform value".into())),
        R::Array(items) => Value::List(items.into_iter().map(from_rmpv).collect::<Result<_, _>>()?),
        R::Map(entries) => {
            let mut map = BTreeMap::new();
            for (k, v) in entries {
                let R::String(key) = k else {
                    return Err(DecodeError(format!("a map key that is not a string: {k}")));
                };
                let Some(key) = key.into_str() else {
                    return Err(DecodeError("a map key that is not UTF-8".into()));
                };
                map.insert(key, from_rmpv(v)?);
            }
            Value::Map(map)
        }
        R::Ext(UNKNOWN_EXT | REFINED_UNKNOWN_EXT, _) => Value::Unknown,
        R::Ext(code, _) => {
            return Err(DecodeError(format!(
                "msgpack extension type {code} (Terraform uses 0 and 12 for unknown values)"
            )));
        }
    })
}

fn float(f: f64) -> Result<Value, DecodeError> {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| DecodeError(format!("{f} is not a Terraform number")))
}

fn to_rmpv(value: &Value) -> rmpv::Value {
    use rmpv::Value as R;
    match value {
        Value::Null => R::Nil,
        // What Terraform itself writes: fixext 1 of type 0 with a zero byte.
        Value::Unknown => R::Ext(UNKNOWN_EXT, vec![0]),
        Value::Bool(b) => R::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                R::from(i)
            } else if let Some(u) = n.as_u64() {
                R::from(u)
            } else {
                R::F64(n.as_f64().unwrap_or_default())
            }
        }
        Value::String(s) => R::from(s.as_str()),
        Value::List(items) => R::Array(items.iter().map(to_rmpv).collect()),
        Value::Map(map) => R::Map(
            map.iter()
                .map(|(k, v)| (R::from(k.as_str()), to_rmpv(v)))
                .collect(),
        ),
    }
}

fn from_json(json: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => Value::Number(n),
        J::String(s) => Value::String(s),
        J::Array(items) => Value::List(items.into_iter().map(from_json).collect()),
        J::Object(map) => Value::Map(map.into_iter().map(|(k, v)| (k, from_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> Value {
        Value::object([
            ("path", Value::String("a.txt".into())),
            ("content", Value::Unknown),
            ("permissions", Value::Null),
            ("count", Value::Number(3.into())),
            (
                "ratio",
                Value::Number(serde_json::Number::from_f64(0.5).unwrap()),
            ),
            (
                "flags",
                Value::List(vec![Value::Bool(true), Value::Unknown]),
            ),
        ])
    }

    #[test]
    fn values_survive_a_round_trip_through_msgpack() {
        let value = object();
        assert_eq!(Value::from_msgpack(&value.to_msgpack()).unwrap(), value);
        let dynamic = value.to_dynamic();
        assert!(dynamic.json.is_empty());
        assert_eq!(Value::from_dynamic(Some(&dynamic)).unwrap(), value);
    }

    #[test]
    fn unknown_is_written_as_terraform_writes_it() {
        // fixext 1 (0xd4), extension type 0, one zero byte: cty's encoding.
        assert_eq!(Value::Unknown.to_msgpack(), [0xd4, 0x00, 0x00]);
    }

    #[test]
    fn unknowns_are_read_in_every_form_terraform_sends() {
        // Unrefined, with an empty payload (ext 8 of length 0) and with a zero byte.
        assert_eq!(Value::from_msgpack(&[0xc7, 0, 0]).unwrap(), Value::Unknown);
        assert_eq!(Value::from_msgpack(&[0xd4, 0, 0]).unwrap(), Value::Unknown);
        // Refined ("known not to be null": map {1: false}), type 12.
        assert_eq!(
            Value::from_msgpack(&[0xd4, 12, 0x80]).unwrap(),
            Value::Unknown
        );
        let refined = [0xc7, 3, 12, 0x81, 0x01, 0xc2];
        assert_eq!(Value::from_msgpack(&refined).unwrap(), Value::Unknown);
    }

    #[test]
    fn unknown_parts_make_a_value_not_wholly_known() {
        let value = object();
        assert!(!value.is_wholly_known());
        assert!(value.get("content").is_unknown());
        assert_eq!(value.get("path").as_str(), Some("a.txt"));
        assert!(value.get("missing").is_null());
        assert!(Value::object([("a", Value::String("b".into()))]).is_wholly_known());
    }

    #[test]
    fn what_is_not_a_terraform_value_is_refused_with_a_reason() {
        let err = Value::from_msgpack(&[0xd4, 5, 0]).unwrap_err();
        assert!(err.to_string().contains("extension type 5"), "{err}");
        assert!(Value::from_msgpack(&[0xc4, 1, 0]).is_err(), "binary");
        assert!(
            Value::from_msgpack(&[0xc0, 0xc0]).is_err(),
            "trailing bytes"
        );
        assert!(
            Value::from_msgpack(&[0x81, 0x01, 0xc0]).is_err(),
            "integer key"
        );
        assert!(Value::from_msgpack(&[0xa3, b'a']).is_err(), "truncated");
    }

    #[test]
    fn numbers_keep_their_kind() {
        let big = Value::Number(u64::MAX.into());
        assert_eq!(Value::from_msgpack(&big.to_msgpack()).unwrap(), big);
        let negative = Value::Number((-7).into());
        assert_eq!(negative.to_msgpack(), [0xf9]);
        assert_eq!(Value::from_msgpack(&[0xf9]).unwrap(), negative);
    }

    #[test]
    fn json_state_reads_as_the_same_values() {
        let value = Value::from_json(br#"{"id":"/x","n":2,"ok":true,"l":[null]}"#).unwrap();
        assert_eq!(
            value,
            Value::object([
                ("id", Value::String("/x".into())),
                ("n", Value::Number(2.into())),
                ("ok", Value::Bool(true)),
                ("l", Value::List(vec![Value::Null])),
            ])
        );
        let dynamic = DynamicValue {
            msgpack: vec![],
            json: br#"{"a":"b"}"#.to_vec(),
        };
        assert_eq!(
            Value::from_dynamic(Some(&dynamic))
                .unwrap()
                .get("a")
                .as_str(),
            Some("b")
        );
        assert_eq!(Value::from_dynamic(None).unwrap(), Value::Null);
    }
}
