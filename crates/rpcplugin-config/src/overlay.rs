//! [`Overlay`]: settings given in code, as pyvider-rpcplugin's per-instance
//! `config=` dict, applied over the file and the environment.

use std::path::PathBuf;
use std::time::Duration;

use figment::value::Value;

/// A value set in code: what the typed builder methods and
/// [`Overlay::set`] accept. Text is read exactly as the same text in an
/// environment variable would be (`"5s"`, `"unix,tcp"`, `"true"`), with the same
/// errors.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigValue {
    /// Text, parsed by the setting as an environment variable's value is.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Int(u64),
    /// A number.
    Float(f64),
    /// A duration.
    Duration(Duration),
    /// A list (transports, versions): each item as text.
    List(Vec<String>),
}

impl ConfigValue {
    /// figment's value: durations as fractional seconds, which every duration
    /// setting reads.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Self::Text(s) => Value::from(s.clone()),
            Self::Bool(b) => Value::from(*b),
            Self::Int(n) => Value::from(*n),
            Self::Float(f) => Value::from(*f),
            Self::Duration(d) => Value::from(d.as_secs_f64()),
            Self::List(items) => Value::from(items.join(",")),
        }
    }
}

impl From<&str> for ConfigValue {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}
impl From<String> for ConfigValue {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<bool> for ConfigValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<u16> for ConfigValue {
    fn from(v: u16) -> Self {
        Self::Int(v.into())
    }
}
impl From<u32> for ConfigValue {
    fn from(v: u32) -> Self {
        Self::Int(v.into())
    }
}
impl From<u64> for ConfigValue {
    fn from(v: u64) -> Self {
        Self::Int(v)
    }
}
impl From<usize> for ConfigValue {
    fn from(v: usize) -> Self {
        Self::Int(v as u64)
    }
}
impl From<f64> for ConfigValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}
impl From<Duration> for ConfigValue {
    fn from(v: Duration) -> Self {
        Self::Duration(v)
    }
}
impl From<PathBuf> for ConfigValue {
    fn from(v: PathBuf) -> Self {
        Self::Text(v.to_string_lossy().into_owned())
    }
}
impl From<&std::path::Path> for ConfigValue {
    fn from(v: &std::path::Path) -> Self {
        Self::Text(v.to_string_lossy().into_owned())
    }
}
impl From<Vec<String>> for ConfigValue {
    fn from(v: Vec<String>) -> Self {
        Self::List(v)
    }
}

/// Settings given in code, over the config file and the environment: the last
/// and highest of the layers ("defaults < file < environment < code").
///
/// Keys are a setting's key (`handshake_timeout`), its variable
/// (`PLUGIN_HANDSHAKE_TIMEOUT`), or one of pyvider-rpcplugin's names for it
/// (`PLUGIN_GRPC_KEEPALIVE_TIME_MS`, read in milliseconds). Nothing is checked
/// when a value is set: [`Settings::resolve`](crate::Settings::resolve) checks
/// everything at once, with the same messages as for the environment, naming the
/// value as "set in code". A later value for the same setting replaces an earlier
/// one.
///
/// ```
/// use rpcplugin_config::{Environment, Origin, Overlay, Settings};
/// use std::time::Duration;
///
/// let env = Environment::from_pairs([("PLUGIN_HANDSHAKE_TIMEOUT", "7s")]);
/// let overlay = Overlay::new()
///     .with("PLUGIN_HANDSHAKE_TIMEOUT", "2s")
///     .with("grpc_keepalive_time", Duration::from_secs(30));
/// let loaded = Settings::resolve(&env, None, &overlay).unwrap();
/// assert_eq!(loaded.settings().handshake_timeout, Duration::from_secs(2));
/// assert!(matches!(loaded.origin("handshake_timeout"), Origin::Code { .. }));
///
/// // A bad value in code is refused like a bad variable.
/// let bad = Overlay::new().with("handshake_timeout", "soon");
/// let err = Settings::resolve(&env, None, &bad).unwrap_err();
/// assert!(err.to_string().contains("set in code"), "{err}");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    entries: Vec<(String, ConfigValue)>,
}

impl Overlay {
    /// No settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (a key, a variable or a pyvider-rpcplugin name) to `value`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<ConfigValue>) {
        self.entries.push((key.into(), value.into()));
    }

    /// [`set`](Self::set), by value.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<ConfigValue>) -> Self {
        self.set(key, value);
        self
    }

    /// Every `(key, value)` of `pairs`, as pyvider-rpcplugin's `config=` dict.
    pub fn extend<K, V>(&mut self, pairs: impl IntoIterator<Item = (K, V)>)
    where
        K: Into<String>,
        V: Into<ConfigValue>,
    {
        for (k, v) in pairs {
            self.set(k, v);
        }
    }

    /// Nothing was set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in the order they were set.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &ConfigValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}
