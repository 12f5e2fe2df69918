//! A snapshot of the process environment, read once.

use std::collections::BTreeMap;

/// The environment variables of this process, captured once so the rest of a
/// program sees one consistent view (and tests can supply their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// Reads the process environment. Variables whose name or value is not UTF-8
    /// are kept lossily converted: a host's certificate PEM is always ASCII.
    pub fn capture() -> Self {
        Self::from_pairs(std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        }))
    }

    /// An environment made of the given pairs (for tests and embedding).
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// A lookup closure, the shape the sans-IO handshake crate takes.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |key| self.get(key).map(str::to_owned)
    }

    /// Every variable whose name starts with `prefix`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.vars
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_prefix() {
        let env = Environment::from_pairs([("BASIC_PLUGIN", "hello"), ("PLUGIN_MIN_PORT", "1")]);
        assert_eq!(env.lookup()("BASIC_PLUGIN").as_deref(), Some("hello"));
        assert_eq!(env.get("NOPE"), None);
        assert_eq!(env.with_prefix("PLUGIN_").count(), 1);
    }
}
