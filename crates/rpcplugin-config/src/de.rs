//! Deserializers that accept what people write in environment variables.

use crate::units::{parse_duration, parse_size};
use rpcplugin_core::Network;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::time::Duration;

/// A duration given as seconds (`10`, `2.5`) or with a unit (`500ms`, `2s`, `1m`).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration in seconds (\"10\", \"2.5\") or with a unit (\"500ms\", \"2s\", \"1m\")")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v)
                .map_err(|_| E::invalid_value(de::Unexpected::Float(v), &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

/// A transport list: `"unix,tcp"` or a sequence of names.
pub(crate) fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Network>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<Network>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a comma-separated list of \"unix\" and \"tcp\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<Network>, E> {
            let list: Result<Vec<Network>, E> = v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| builtin(s).ok_or_else(|| E::invalid_value(de::Unexpected::Str(s), &self)))
                .collect();
            let list = list?;
            if list.is_empty() {
                return Err(E::invalid_length(0, &self));
            }
            Ok(list)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Network>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(
                    builtin(&s)
                        .ok_or_else(|| de::Error::invalid_value(de::Unexpected::Str(&s), &self))?,
                );
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// `unix` or `tcp`: the networks settings can name. A custom network comes with
/// a transport or connector given in code, never from a variable.
fn builtin(name: &str) -> Option<Network> {
    match name.parse() {
        Ok(n @ (Network::Unix | Network::Tcp)) => Some(n),
        _ => None,
    }
}

/// A size in bytes: a number, or a string with an optional unit (`"4MiB"`, `"256 MiB"`, `"1GiB"`).
pub(crate) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size in bytes (\"4194304\", \"4MiB\", \"1GiB\")")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            parse_size(v)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

/// A boolean as people write it: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
pub(crate) fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }
    d.deserialize_any(V)
}

/// A positive number (`100`, `2.5`), as a number or a string.
pub(crate) fn positive_number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number above 0")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            self.visit_f64(v as f64)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            self.visit_f64(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse::<f64>()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
                .and_then(|n| self.visit_f64(n))
        }
    }
    d.deserialize_any(V)
}

/// go-plugin's core protocol version: 1, the only one.
pub(crate) fn core_version<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = count(d)?;
    if v == 1 {
        Ok(v)
    } else {
        Err(de::Error::invalid_value(
            de::Unexpected::Unsigned(v.into()),
            &"1 (go-plugin's only core protocol version)",
        ))
    }
}

/// App protocol versions: `"1,2,3"`, `"[1, 2]"` or a sequence, each a whole number
/// from 1.
pub(crate) fn versions<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    struct V;
    const EXPECTED: &str = "a comma-separated list of app protocol versions (\"5,6\")";
    impl<'de> Visitor<'de> for V {
        type Value = Vec<u32>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<u32>, E> {
            match u32::try_from(v) {
                Ok(n) if n > 0 => Ok(vec![n]),
                _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<u32>, E> {
            u64::try_from(v)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u32>, E> {
            let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
            let list = inner
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| match s.trim().parse::<u32>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                })
                .collect::<Result<Vec<u32>, E>>()?;
            if list.is_empty() {
                return Err(E::invalid_length(0, &self));
            }
            Ok(list)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u32>, A::Error> {
            let mut out = Vec::new();
            while let Some(n) = seq.next_element::<u32>()? {
                if n == 0 {
                    return Err(de::Error::invalid_value(de::Unexpected::Unsigned(0), &self));
                }
                out.push(n);
            }
            if out.is_empty() {
                return Err(de::Error::invalid_length(0, &self));
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A whole number from `min` to `max`, as a number or a string of digits;
/// `expecting` says which in errors.
fn whole<'de, D: Deserializer<'de>>(
    d: D,
    min: u64,
    max: u64,
    expecting: &'static str,
) -> Result<u64, D::Error> {
    struct V {
        min: u64,
        max: u64,
        expecting: &'static str,
    }
    impl Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            if (self.min..=self.max).contains(&v) {
                Ok(v)
            } else {
                Err(E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            v.trim()
                .parse::<u64>()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
                .and_then(|n| self.visit_u64(n))
        }
    }
    d.deserialize_any(V {
        min,
        max,
        expecting,
    })
}

/// A TCP port, 1 to 65535, as a number or a string of digits.
pub(crate) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    whole(d, 1, u16::MAX.into(), "a TCP port from 1 to 65535").map(|n| n as u16)
}

/// A TCP port, 0 (any) to 65535, as a number or a string of digits.
pub(crate) fn port_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    whole(d, 0, u16::MAX.into(), "a TCP port from 0 (any) to 65535").map(|n| n as u16)
}

/// A count from 1 to `u32::MAX`, as a number or a string of digits.
pub(crate) fn positive_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    whole(d, 1, u32::MAX.into(), "a whole number from 1").map(|n| n as u32)
}

/// A count from 0 to `u32::MAX`, as a number or a string of digits.
pub(crate) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    whole(d, 0, u32::MAX.into(), "a whole number from 0").map(|n| n as u32)
}
