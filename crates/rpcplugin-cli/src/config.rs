//! `rpcplugin config`: the settings an rpcplugin host or plugin started here would
//! run with, where each comes from, and the `PLUGIN_*` variables it would ignore.
//!
//! Built on what rpcplugin-config offers today ([`Settings::from_sources`],
//! [`KEYS`], [`unknown_variables`]); the source of each value is worked out here
//! (the variable when set, else the file when it has the key, else the default).
//! This module is the only place that does so: when the config layer reports
//! sources itself (the operations issue), it switches to that and shrinks.

use crate::args::ConfigArgs;
use rpcplugin_config::{ENV_PREFIX, Environment, KEYS, Settings, unknown_variables};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One setting as `config` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Entry {
    /// The key (`handshake_timeout`), as in a config file.
    pub(crate) key: &'static str,
    /// Its variable (`PLUGIN_HANDSHAKE_TIMEOUT`).
    pub(crate) variable: String,
    /// The effective value as JSON; keys and inline PEM are not shown.
    pub(crate) value: serde_json::Value,
    /// `default`, `file PATH:LINE`, or `environment`.
    pub(crate) source: String,
}

/// A variable no setting reads.
#[derive(Debug, Serialize)]
pub(crate) struct Unknown {
    /// The variable as set.
    pub(crate) variable: String,
    /// The setting's variable it was probably meant to be.
    pub(crate) suggestion: Option<String>,
}

/// What `config` found.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The config file read, if any.
    pub(crate) file: Option<String>,
    /// Every setting, in the order of [`KEYS`].
    pub(crate) settings: Vec<Entry>,
    /// `PLUGIN_*` variables that are neither settings nor protocol variables.
    pub(crate) unknown: Vec<Unknown>,
}

/// Resolves the settings from this process's environment and `--file` (else
/// `PLUGIN_CONFIG_FILE`); an invalid value is the config layer's error, rendered.
pub(crate) fn run(args: &ConfigArgs) -> Result<Report, String> {
    report(&Environment::capture(), args.file.as_deref())
}

fn report(env: &Environment, file: Option<&Path>) -> Result<Report, String> {
    let settings = Settings::from_sources(env, file).map_err(|e| rpcplugin_core::render(&e))?;
    let file = file.map(Path::to_path_buf).or_else(|| {
        env.get("PLUGIN_CONFIG_FILE")
            .filter(|f| !f.is_empty())
            .map(Into::into)
    });
    let text = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok());
    let values = serde_json::to_value(&settings)
        .map_err(|e| format!("error: cannot show the settings: {e}"))?;
    let settings = KEYS
        .iter()
        .map(|&key| {
            let variable = format!("{ENV_PREFIX}{}", key.to_ascii_uppercase());
            let source = if env.get(&variable).is_some() {
                "environment".to_owned()
            } else if let Some(line) = text.as_deref().and_then(|t| line_of(t, key)) {
                let path = file
                    .as_ref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_default();
                format!("file {path}:{line}")
            } else {
                "default".to_owned()
            };
            Entry {
                key,
                value: shown(values.get(key).cloned().unwrap_or_default()),
                variable,
                source,
            }
        })
        .collect();
    let unknown = unknown_variables(env)
        .into_iter()
        .map(|u| Unknown {
            variable: u.name,
            suggestion: u.suggestion,
        })
        .collect();
    Ok(Report {
        file: file.map(|f| f.display().to_string()),
        settings,
        unknown,
    })
}

/// The value to show: inline PEM (a private key set in the variable itself) is
/// summarised, never printed; paths are shown.
fn shown(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(text) if text.contains("-----BEGIN") => {
            serde_json::Value::String(format!("(inline PEM, {} bytes)", text.len()))
        }
        other => other,
    }
}

/// The line (1-based) where a TOML, YAML or JSON file sets `key`, if it does at
/// the start of a line.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix('"')
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix('"'))
                .or_else(|| line.strip_prefix(key));
            rest.is_some_and(|r| {
                let r = r.trim_start();
                r.starts_with('=') || r.starts_with(':')
            })
        })
        .map(|i| i + 1)
}

/// Settings that are durations (`Settings` serializes them as seconds).
fn is_duration(key: &str) -> bool {
    key.ends_with("_timeout") || key.ends_with("_grace") || key.ends_with("_time")
}

/// The readable table.
pub(crate) fn render(report: &Report) -> String {
    let mut out =
        String::from("rpcplugin settings (defaults < config file < PLUGIN_* variables)\n");
    match &report.file {
        Some(file) => {
            let _ = writeln!(out, "config file: {file}");
        }
        None => out.push_str("config file: none (--file or PLUGIN_CONFIG_FILE names one)\n"),
    }
    let width = report
        .settings
        .iter()
        .map(|e| e.variable.len())
        .max()
        .unwrap_or(0);
    for entry in &report.settings {
        let value = match &entry.value {
            serde_json::Value::Null => "(unset)".to_owned(),
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            // Durations are seconds in the JSON, as the settings read a bare number.
            serde_json::Value::Number(n) if is_duration(entry.key) => format!("{n}s"),
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:<24} {}",
            entry.variable, value, entry.source
        );
    }
    if report.unknown.is_empty() {
        out.push_str("unknown PLUGIN_* variables: none\n");
    } else {
        out.push_str("unknown PLUGIN_* variables (ignored):\n");
        for unknown in &report.unknown {
            match &unknown.suggestion {
                Some(s) => {
                    let _ = writeln!(out, "  {}: did you mean {s}?", unknown.variable);
                }
                None => {
                    let _ = writeln!(out, "  {}", unknown.variable);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(report: &'a Report, key: &str) -> &'a Entry {
        report.settings.iter().find(|e| e.key == key).unwrap()
    }

    #[test]
    fn sources_are_default_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plugin.toml");
        std::fs::write(
            &file,
            "# tuned\nhandshake_timeout = \"5s\"\nshutdown_grace = \"1s\"\n",
        )
        .unwrap();
        let env = Environment::from_pairs([
            ("PLUGIN_SHUTDOWN_GRACE", "3"),
            ("PLUGIN_HANDSHAKE_TIMOUT", "9"),
            ("PLUGIN_PROTOCOL_VERSIONS", "1"),
        ]);
        let report = report(&env, Some(&file)).unwrap();
        let timeout = entry(&report, "handshake_timeout");
        assert_eq!(timeout.source, format!("file {}:2", file.display()));
        let grace = entry(&report, "shutdown_grace");
        assert_eq!(grace.source, "environment");
        assert_eq!(entry(&report, "auto_mtls").source, "default");
        assert_eq!(entry(&report, "auto_mtls").value, true);
        assert_eq!(report.unknown.len(), 1, "{:?}", report.unknown);
        assert_eq!(report.unknown[0].variable, "PLUGIN_HANDSHAKE_TIMOUT");
        assert_eq!(
            report.unknown[0].suggestion.as_deref(),
            Some("PLUGIN_HANDSHAKE_TIMEOUT")
        );
        let text = render(&report);
        assert!(text.contains("PLUGIN_SHUTDOWN_GRACE"), "{text}");
        assert!(text.contains("3.0s"), "{text}");
        assert!(
            text.contains("PLUGIN_HANDSHAKE_TIMOUT: did you mean PLUGIN_HANDSHAKE_TIMEOUT?"),
            "{text}"
        );
    }

    #[test]
    fn inline_keys_are_never_shown() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIG...\n-----END PRIVATE KEY-----\n";
        let env = Environment::from_pairs([
            ("PLUGIN_SERVER_KEY", pem),
            ("PLUGIN_SERVER_CERT", "/etc/p.pem"),
        ]);
        let report = report(&env, None).unwrap();
        let key = entry(&report, "server_key");
        assert_eq!(key.value, format!("(inline PEM, {} bytes)", pem.len()));
        assert_eq!(entry(&report, "server_cert").value, "/etc/p.pem");
    }

    #[test]
    fn a_bad_value_is_the_config_layers_error() {
        let env = Environment::from_pairs([("PLUGIN_HANDSHAKE_TIMEOUT", "soon")]);
        let err = report(&env, None).unwrap_err();
        assert!(err.contains("PLUGIN_HANDSHAKE_TIMEOUT"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }

    #[test]
    fn keys_are_found_in_each_format() {
        assert_eq!(
            line_of("a = 1\nhandshake_timeout = 2", "handshake_timeout"),
            Some(2)
        );
        assert_eq!(
            line_of("handshake_timeout: 2s", "handshake_timeout"),
            Some(1)
        );
        assert_eq!(
            line_of("{\n  \"handshake_timeout\": \"2s\"\n}", "handshake_timeout"),
            Some(2)
        );
        assert_eq!(
            line_of("handshake_timeout_x = 1", "handshake_timeout"),
            None
        );
    }
}
