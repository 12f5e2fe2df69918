//! `rpcplugin config` as an operator runs it: the effective settings with their
//! sources (default, file and line, environment) and unknown variables flagged.

mod common;

use common::{outputs, rpcplugin_with_env};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn shows_sources_and_flags_typos() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugin.yaml");
    std::fs::write(
        &file,
        "connection_timeout: 2s\nmin_port: 20000\nmax_port: 20010\n",
    )
    .unwrap();
    let out = rpcplugin_with_env(
        &["config", "--json", "--file", file.to_str().unwrap()],
        &[("PLUGIN_AUTO_MTLS", "false"), ("PLUGIN_MAX_PROT", "1")],
        LIMIT,
    );
    assert!(out.status.success(), "{}", outputs(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let setting = |key: &str| {
        report["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(setting("auto_mtls")["value"], false);
    assert_eq!(setting("auto_mtls")["source"], "environment");
    assert_eq!(setting("connection_timeout")["value"], 2.0);
    assert_eq!(
        setting("min_port")["source"],
        format!("file {}:2", file.display())
    );
    assert_eq!(setting("handshake_timeout")["source"], "default");
    assert_eq!(report["unknown"][0]["variable"], "PLUGIN_MAX_PROT");
    assert_eq!(report["unknown"][0]["suggestion"], "PLUGIN_MAX_PORT");
    // The config layer's own warning is not repeated on stderr.
    assert!(out.stderr.is_empty(), "{}", outputs(&out));
}

#[test]
fn an_invalid_value_fails_with_the_variable_and_a_hint() {
    let out = rpcplugin_with_env(&["config"], &[("PLUGIN_MIN_PORT", "20")], LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PLUGIN_MAX_PORT"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}
