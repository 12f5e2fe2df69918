//! Fuzzes settings from `PLUGIN_*` variables, which come from whoever starts the
//! process: arbitrary names and values must give settings or a config error that
//! names a variable and has a hint, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rpcplugin_config::Settings;

/// The names users set; arbitrary names are fuzzed too.
const NAMES: &[&str] = &[
    "HANDSHAKE_TIMEOUT",
    "SHUTDOWN_GRACE",
    "SERVER_TRANSPORTS",
    "CLIENT_TRANSPORTS",
    "GRPC_MAX_RECEIVE_MESSAGE_SIZE",
    "GRPC_MAX_SEND_MESSAGE_SIZE",
    "IGNORE_SIGINT",
    "AUTO_MTLS",
    "MAGIC_COOKIE_KEY",
    "MAGIC_COOKIE_VALUE",
    "SERVER_CERT",
    "CLIENT_ROOT_CERTS",
];

fuzz_target!(|data: &[u8]| {
    // Records separated by NUL: a first byte choosing a known name (or, above the
    // table, taking the rest up to '=' as the name), then the value.
    let mut vars: Vec<(String, String)> = Vec::new();
    for record in data.split(|b| *b == 0) {
        let Some((&selector, rest)) = record.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(rest);
        let (name, value) = match NAMES.get(usize::from(selector)) {
            Some(name) => ((*name).to_owned(), text.into_owned()),
            None => match text.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => continue,
            },
        };
        vars.push((format!("PLUGIN_{name}"), value));
    }
    let pairs = vars.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    match Settings::from_vars(pairs) {
        Ok(settings) => {
            // What was accepted is usable: non-empty transports.
            assert!(!settings.client_transports.is_empty());
        }
        Err(err) => {
            assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Config, "{err}");
            assert!(err.hint().is_some(), "no hint: {err}");
        }
    }
});
