//! The sandbox settings' own types and parsers: [`SandboxMode`] (`PLUGIN_SANDBOX`),
//! colon-separated path lists (`PLUGIN_SANDBOX_READ_PATHS` and its siblings, read
//! like `PATH`) and comma-separated port lists (`PLUGIN_SANDBOX_TCP_CONNECT`).
//!
//! They live apart from the other settings' parsers so that the sandbox is one
//! block of the configuration: the client crate turns these values into its
//! `Sandbox` policy; nothing here knows how a plugin is confined.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;

/// Whether a host confines the plugins it starts (`PLUGIN_SANDBOX`).
///
/// Read from `off`, `on` or `best-effort` (booleans work too: `true` is `on`).
///
/// ```
/// use rpcplugin_config::{SandboxMode, Settings};
///
/// let settings = Settings::from_vars([("PLUGIN_SANDBOX", "best-effort")]).unwrap();
/// assert_eq!(settings.sandbox, SandboxMode::BestEffort);
/// assert_eq!(Settings::default().sandbox, SandboxMode::Off);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SandboxMode {
    /// Plugins run with all of the host's rights (the default, as go-plugin).
    #[default]
    Off,
    /// Plugins are confined, and a kernel that lacks a feature the sandbox needs
    /// makes the start fail rather than run the plugin less confined.
    On,
    /// Plugins are confined as far as the kernel allows; what it lacks is logged as
    /// a warning and the plugin runs without it.
    BestEffort,
}

impl SandboxMode {
    /// The value as written in settings: `off`, `on` or `best-effort`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::BestEffort => "best-effort",
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SandboxMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SandboxMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SandboxMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"off\", \"on\" or \"best-effort\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<SandboxMode, E> {
                Ok(if v { SandboxMode::On } else { SandboxMode::Off })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SandboxMode, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "off" | "false" | "no" | "0" => Ok(SandboxMode::Off),
                    "on" | "true" | "yes" | "1" => Ok(SandboxMode::On),
                    "best-effort" | "best_effort" => Ok(SandboxMode::BestEffort),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of paths: `"/srv/data:/etc/app"` (colon-separated, as `PATH`; empty
/// parts are skipped) or a sequence of strings (a config file's list).
pub(crate) fn path_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<PathBuf>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("paths separated by ':' (\"/srv/data:/etc/app\") or a list of paths")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<PathBuf>, E> {
            Ok(v.split(':')
                .filter(|part| !part.is_empty())
                .map(PathBuf::from)
                .collect())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<PathBuf>, A::Error> {
            let mut out = Vec::new();
            while let Some(path) = seq.next_element::<String>()? {
                if path.is_empty() {
                    return Err(de::Error::invalid_value(de::Unexpected::Str(""), &self));
                }
                out.push(PathBuf::from(path));
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A list of TCP ports, 1 to 65535: `"443,8080"` or a sequence of numbers.
pub(crate) fn port_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    const EXPECTED: &str = "TCP ports from 1 to 65535 separated by ',' (\"443,8080\")";
    fn port<E: de::Error>(text: &str) -> Result<u16, E> {
        text.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &EXPECTED))
    }
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<u16>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<u16>, E> {
            port(&v.to_string()).map(|p| vec![p])
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<u16>, E> {
            port(&v.to_string()).map(|p| vec![p])
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u16>, E> {
            v.split(',')
                .filter(|part| !part.trim().is_empty())
                .map(port)
                .collect()
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u16>, A::Error> {
            let mut out = Vec::new();
            while let Some(value) = seq.next_element::<u64>()? {
                out.push(port(&value.to_string())?);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use crate::{SandboxMode, Settings};
    use std::path::PathBuf;

    #[test]
    fn the_mode_reads_words_and_booleans() {
        for (text, mode) in [
            ("off", SandboxMode::Off),
            ("on", SandboxMode::On),
            ("ON", SandboxMode::On),
            ("true", SandboxMode::On),
            ("0", SandboxMode::Off),
            ("best-effort", SandboxMode::BestEffort),
            ("best_effort", SandboxMode::BestEffort),
        ] {
            let s = Settings::from_vars([("PLUGIN_SANDBOX", text)]).unwrap();
            assert_eq!(s.sandbox, mode, "{text}");
        }
        let err = Settings::from_vars([("PLUGIN_SANDBOX", "strict")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("PLUGIN_SANDBOX"), "{text}");
        assert!(text.contains("best-effort"), "{text}");
    }

    #[test]
    fn paths_are_colon_separated_and_ports_comma_separated() {
        let s = Settings::from_vars([
            ("PLUGIN_SANDBOX", "on"),
            ("PLUGIN_SANDBOX_READ_PATHS", "/etc/app::/usr/share/app"),
            ("PLUGIN_SANDBOX_WRITE_PATHS", "/srv/data"),
            ("PLUGIN_SANDBOX_EXEC_PATHS", "/opt/tools/bin:"),
            ("PLUGIN_SANDBOX_TCP_CONNECT", "443, 8080"),
            ("PLUGIN_SANDBOX_SECCOMP", "false"),
        ])
        .unwrap();
        assert_eq!(
            s.sandbox_read_paths,
            [PathBuf::from("/etc/app"), PathBuf::from("/usr/share/app")]
        );
        assert_eq!(s.sandbox_write_paths, [PathBuf::from("/srv/data")]);
        assert_eq!(s.sandbox_exec_paths, [PathBuf::from("/opt/tools/bin")]);
        assert_eq!(s.sandbox_tcp_connect, [443, 8080]);
        assert!(!s.sandbox_seccomp);

        let err = Settings::from_vars([("PLUGIN_SANDBOX_TCP_CONNECT", "443,http")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("PLUGIN_SANDBOX_TCP_CONNECT"), "{text}");
        assert!(text.contains("\"http\""), "{text}");
        assert!(Settings::from_vars([("PLUGIN_SANDBOX_TCP_CONNECT", "0")]).is_err());
    }

    #[test]
    fn a_config_file_takes_lists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.toml");
        std::fs::write(
            &path,
            "sandbox = \"on\"\nsandbox_write_paths = [\"/srv/data\"]\nsandbox_read_paths = \"/etc/a:/etc/b\"\nsandbox_tcp_connect = [5432]\n",
        )
        .unwrap();
        let s = Settings::from_sources(&crate::Environment::default(), Some(&path)).unwrap();
        assert_eq!(s.sandbox, SandboxMode::On);
        assert_eq!(s.sandbox_write_paths, [PathBuf::from("/srv/data")]);
        assert_eq!(s.sandbox_read_paths.len(), 2);
        assert_eq!(s.sandbox_tcp_connect, [5432]);
        assert!(s.sandbox_seccomp, "on by default");
    }
}
