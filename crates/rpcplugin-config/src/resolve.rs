//! Where each setting came from ([`Origin`]), what in the environment was not
//! used and why ([`Notice`]), and the result of merging the layers ([`Loaded`]).

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::names;
use crate::{ENV_PREFIX, KEYS, Settings};

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Nothing set it: the default.
    Default,
    /// A config file, at this line when it could be found.
    File {
        /// The file.
        path: PathBuf,
        /// The first line that sets the key, 1-based.
        line: Option<usize>,
    },
    /// An environment variable (its own, or a pyvider-rpcplugin name for it).
    Variable(String),
    /// Code: a builder method or an [`Overlay`](crate::Overlay) entry, under the
    /// name it was given.
    Code {
        /// The key, variable or builder method that set it.
        name: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File {
                path,
                line: Some(line),
            } => write!(f, "{} line {line}", path.display()),
            Self::File { path, line: None } => write!(f, "{}", path.display()),
            Self::Variable(name) => write!(f, "{name} (environment)"),
            Self::Code { name } => write!(f, "code ({name})"),
        }
    }
}

/// Something set in the environment or in code that does not take effect, said
/// once to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The variable or key as it was set.
    pub name: String,
    /// Why it does not take effect.
    pub kind: NoticeKind,
}

/// Why a variable does not take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoticeKind {
    /// No setting has this name; the suggestion is a close name of the same kind.
    Unknown {
        /// The variable it was probably meant to be.
        suggestion: Option<String>,
    },
    /// A pyvider-rpcplugin variable with no meaning here.
    Unsupported {
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// Another name for the same setting is set too, and wins.
    Shadowed {
        /// The name that wins.
        by: String,
    },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match &self.kind {
            NoticeKind::Unknown {
                suggestion: Some(s),
            } => write!(f, "unknown setting {name}; did you mean {s}?"),
            NoticeKind::Unknown { suggestion: None } => write!(
                f,
                "unknown setting {name}: rpcplugin does not read it (docs/configuration.md lists every setting)"
            ),
            NoticeKind::Unsupported { reason } => {
                write!(f, "{name} is not used by rpcplugin: {reason}")
            }
            NoticeKind::Shadowed { by } => write!(
                f,
                "{name} is ignored: {by} is set too and names the same setting"
            ),
        }
    }
}

/// Says each notice where the user looks, once per process: as a `tracing`
/// warning when the program has a subscriber, else on stderr (a plugin's stderr
/// is shown by its host, and a host without a subscriber would show nothing).
pub fn report(notices: &[Notice]) {
    static SAID: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let said = SAID.get_or_init(Default::default);
    for notice in notices {
        let text = notice.to_string();
        let first = said
            .lock()
            .map(|mut said| said.insert(text.clone()))
            .unwrap_or(true);
        if first {
            warn(&text);
        }
    }
}

/// Says `text` where the user looks, as [`report`] says notices: a `tracing`
/// warning when the program has a subscriber, else a line on stderr.
pub fn warn(text: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{text}");
    } else {
        eprintln!("rpcplugin: warning: {text}");
    }
}

/// One setting's effective value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key (`handshake_timeout`).
    pub key: &'static str,
    /// Its environment variable (`PLUGIN_HANDSHAKE_TIMEOUT`).
    pub variable: String,
    /// The value as text (`30s`, `unix,tcp`, `unset`).
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

/// The settings after merging defaults < file < environment < code, with the
/// origin of each and the notices about what was not used.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub(crate) settings: Settings,
    pub(crate) origins: Vec<(&'static str, Origin)>,
    pub(crate) notices: Vec<Notice>,
}

impl Loaded {
    /// The merged settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The merged settings, by value.
    pub fn into_settings(self) -> Settings {
        self.settings
    }

    /// Where `key`'s value came from ([`Origin::Default`] for an unknown key).
    pub fn origin(&self, key: &str) -> &Origin {
        self.origins
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(&Origin::Default, |(_, o)| o)
    }

    /// What was set but does not take effect: unknown and unsupported variables,
    /// and names shadowed by another name of the same setting.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// Every setting, in [`KEYS`] order, with its value and origin.
    pub fn entries(&self) -> Vec<Entry> {
        let value = figment::value::Value::serialize(&self.settings)
            .ok()
            .and_then(|v| v.into_dict());
        KEYS.iter()
            .map(|key| Entry {
                key,
                variable: variable_of(key),
                value: value
                    .as_ref()
                    .and_then(|d| d.get(*key))
                    .map_or_else(|| "unset".to_owned(), |v| display(key, v)),
                origin: self.origin(key).clone(),
            })
            .collect()
    }
}

impl fmt::Display for Loaded {
    /// A table: variable, value, origin; then the notices.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries();
        let width = entries.iter().map(|e| e.variable.len()).max().unwrap_or(0);
        let value_width = entries
            .iter()
            .map(|e| e.value.len())
            .max()
            .unwrap_or(0)
            .min(40);
        for e in &entries {
            writeln!(
                f,
                "{:width$}  {:value_width$}  {}",
                e.variable, e.value, e.origin
            )?;
        }
        for n in &self.notices {
            writeln!(f, "warning: {n}")?;
        }
        Ok(())
    }
}

/// A key's environment variable.
pub fn variable_of(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// Keys whose values are durations (serialized as fractional seconds).
const DURATION_KEYS: &[&str] = &[
    "handshake_timeout",
    "shutdown_grace",
    "connection_timeout",
    "grpc_keepalive_time",
    "grpc_keepalive_timeout",
    "channel_ready_timeout",
    "client_initial_backoff",
    "client_max_backoff",
    "client_retry_jitter",
    "client_retry_total_timeout",
];

fn display(key: &str, value: &figment::value::Value) -> String {
    use figment::value::Value;
    match value {
        Value::String(_, s) => s.clone(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) if DURATION_KEYS.contains(&key) => {
            let secs = n.to_f64().unwrap_or_default();
            if secs < 1.0 && secs > 0.0 {
                format!("{}ms", (secs * 1000.0).round())
            } else {
                format!("{secs}s")
            }
        }
        Value::Num(_, n) => match n.to_u128() {
            Some(i) => i.to_string(),
            None => n.to_f64().unwrap_or_default().to_string(),
        },
        Value::Array(_, items) => items
            .iter()
            .map(|v| display(key, v))
            .collect::<Vec<_>>()
            .join(","),
        Value::Empty(..) => "unset".to_owned(),
        Value::Dict(..) => "(table)".to_owned(),
        Value::Char(_, c) => c.to_string(),
    }
}

/// The notices about variables of `env`: unknown (with a close name of the same
/// kind), unsupported (with the reason), and names shadowed by another name of the
/// same setting.
pub(crate) fn variable_notices(env: &crate::Environment) -> Vec<Notice> {
    let known: Vec<String> = KEYS
        .iter()
        .map(|k| variable_of(k))
        .chain(names::ALIASES.iter().map(|a| a.variable.to_owned()))
        .collect();
    let mut notices: Vec<Notice> = env
        .with_prefix(ENV_PREFIX)
        .map(|(name, _)| name)
        .filter(|name| {
            !known.iter().any(|k| k == name)
                && !crate::settings::PROTOCOL_VARIABLES.contains(name)
                && !crate::settings::HOST_TO_PLUGIN_VARIABLES.contains(name)
        })
        .map(|name| Notice {
            name: name.to_owned(),
            kind: match names::unsupported(name) {
                Some(u) => NoticeKind::Unsupported { reason: u.reason },
                None => NoticeKind::Unknown {
                    suggestion: closest(name, known.iter().map(String::as_str)),
                },
            },
        })
        .collect();
    for key in KEYS {
        let mut set = std::iter::once(variable_of(key))
            .chain(
                names::ALIASES
                    .iter()
                    .filter(|a| a.key == *key)
                    .map(|a| a.variable.to_owned()),
            )
            .filter(|v| env.get(v).is_some_and(|v| !v.is_empty()));
        if let Some(winner) = set.next() {
            notices.extend(set.map(|name| Notice {
                name,
                kind: NoticeKind::Shadowed { by: winner.clone() },
            }));
        }
    }
    notices
}

/// The candidate within a small edit distance of `name` whose last word is the
/// same or a typo of it, so that `_MS` is never offered for a seconds variable,
/// nor `_CERT` for `_HOST`.
pub(crate) fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let last = |s: &str| s.rsplit('_').next().unwrap_or_default().to_owned();
    let name_last = last(name);
    let same_kind = |c: &str| {
        let c_last = last(c);
        let (short, long) = if name_last.len() < c_last.len() {
            (&name_last, &c_last)
        } else {
            (&c_last, &name_last)
        };
        // A typo in the last word, or words run together (AUTOMTLS for AUTO_MTLS);
        // never a unit for another (S and MS).
        strsim::damerau_levenshtein(short, long) <= 1 && short.len() > 2
            || short.len() >= 3 && long.ends_with(short.as_str())
            || short == long
    };
    candidates
        .filter(|c| same_kind(c))
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 3.min(c.len() / 4).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}
