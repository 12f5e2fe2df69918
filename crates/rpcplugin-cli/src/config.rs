//! `rpcplugin config`: the settings an rpcplugin host or plugin started here would
//! run with, where each comes from, and what in the environment it would not use.
//!
//! The config layer does the work ([`Settings::resolve`]: values, origins,
//! notices); this module only shows it, keeping keys and inline PEM out of sight.

use crate::args::ConfigArgs;
use rpcplugin_config::{Environment, NoticeKind, Origin, Overlay, Settings};
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
    /// The value as the config layer writes it (`30s`, `unix,tcp`, `unset`), for
    /// the readable table; inline PEM summarised.
    #[serde(skip)]
    pub(crate) text: String,
    /// `default`, `file PATH:LINE`, `environment`, or `environment (NAME)` when
    /// another name of the setting (pyvider-rpcplugin's) set it.
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

/// A variable that is set but not used, and why.
#[derive(Debug, Serialize)]
pub(crate) struct Ignored {
    /// The variable as set.
    pub(crate) variable: String,
    /// Why it is not used, and what to do instead.
    pub(crate) message: String,
}

/// What `config` found.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The config file read, if any.
    pub(crate) file: Option<String>,
    /// Every setting, in the order of [`rpcplugin_config::KEYS`].
    pub(crate) settings: Vec<Entry>,
    /// `PLUGIN_*` variables that are neither settings nor protocol variables.
    pub(crate) unknown: Vec<Unknown>,
    /// Variables rpcplugin knows and does not use: pyvider-rpcplugin's with no
    /// meaning here, and names shadowed by another name of the same setting.
    pub(crate) ignored: Vec<Ignored>,
}

/// Resolves the settings from this process's environment and `--file` (else
/// `PLUGIN_CONFIG_FILE`); an invalid value is the config layer's error, rendered.
pub(crate) fn run(args: &ConfigArgs) -> Result<Report, String> {
    report(&Environment::capture(), args.file.as_deref())
}

fn report(env: &Environment, file: Option<&Path>) -> Result<Report, String> {
    let loaded =
        Settings::resolve(env, file, &Overlay::new()).map_err(|e| rpcplugin_core::render(&e))?;
    let file = file.map(Path::to_path_buf).or_else(|| {
        env.get("PLUGIN_CONFIG_FILE")
            .filter(|f| !f.is_empty())
            .map(Into::into)
    });
    let values = serde_json::to_value(loaded.settings())
        .map_err(|e| format!("error: cannot show the settings: {e}"))?;
    let settings = loaded
        .entries()
        .into_iter()
        .map(|entry| {
            let source = match &entry.origin {
                Origin::Default => "default".to_owned(),
                Origin::File { path, line } => match line {
                    Some(line) => format!("file {}:{line}", path.display()),
                    None => format!("file {}", path.display()),
                },
                Origin::Variable(name) if *name == entry.variable => "environment".to_owned(),
                Origin::Variable(name) => format!("environment ({name})"),
                Origin::Code { name } => format!("code ({name})"),
                other => other.to_string(),
            };
            let value = shown(values.get(entry.key).cloned().unwrap_or_default());
            let text = match &value {
                serde_json::Value::String(s) if s.starts_with("(inline PEM") => s.clone(),
                _ => entry.value,
            };
            Entry {
                key: entry.key,
                value,
                text,
                variable: entry.variable,
                source,
            }
        })
        .collect();
    let mut unknown = Vec::new();
    let mut ignored = Vec::new();
    for notice in loaded.notices() {
        match &notice.kind {
            NoticeKind::Unknown { suggestion } => unknown.push(Unknown {
                variable: notice.name.clone(),
                suggestion: suggestion.clone(),
            }),
            _ => ignored.push(Ignored {
                variable: notice.name.clone(),
                message: notice.to_string(),
            }),
        }
    }
    Ok(Report {
        file: file.map(|f| f.display().to_string()),
        settings,
        unknown,
        ignored,
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

/// The readable table.
pub(crate) fn render(report: &Report) -> String {
    let mut out =
        String::from("rpcplugin settings (defaults < config file < PLUGIN_* variables < code)\n");
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
        let value = &entry.text;
        let _ = writeln!(
            out,
            "  {:<width$}  {:<24} {}",
            entry.variable, value, entry.source
        );
    }
    for ignored in &report.ignored {
        let _ = writeln!(out, "  note: {}", ignored.message);
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
        assert!(text.contains("3s"), "{text}");
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
    fn pyvider_names_show_as_the_source_and_unused_ones_are_explained() {
        let env = Environment::from_pairs([
            ("PLUGIN_GRPC_KEEPALIVE_TIME_MS", "30000"),
            ("PLUGIN_UI_ENABLED", "false"),
        ]);
        let report = report(&env, None).unwrap();
        let keepalive = entry(&report, "grpc_keepalive_time");
        assert_eq!(
            keepalive.source,
            "environment (PLUGIN_GRPC_KEEPALIVE_TIME_MS)"
        );
        assert_eq!(keepalive.value, 30.0);
        assert!(report.unknown.is_empty(), "{:?}", report.unknown);
        assert_eq!(report.ignored.len(), 1, "{:?}", report.ignored);
        assert!(
            report.ignored[0]
                .message
                .starts_with("PLUGIN_UI_ENABLED is not used by rpcplugin: "),
            "{:?}",
            report.ignored
        );
        let text = render(&report);
        assert!(
            text.contains("note: PLUGIN_UI_ENABLED is not used"),
            "{text}"
        );
    }
}
