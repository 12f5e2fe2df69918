//! The layers as a user meets them: every setting given in a file, in the
//! environment and in code, and each layer winning over the ones below it; and
//! pyvider-rpcplugin's variables, each in effect or named once.

use std::io::Write;

use rpcplugin_config::{Environment, KEYS, NoticeKind, Origin, Overlay, Settings, variable_of};

/// Every key with three valid values: in the file, in the environment, in code.
/// Each column is valid as a whole (the port ranges are ordered).
const TABLE: &[(&str, &str, &str, &str)] = &[
    ("magic_cookie_key", "FILE_KEY", "ENV_KEY", "CODE_KEY"),
    ("magic_cookie_value", "file", "env", "code"),
    ("server_transports", "unix", "tcp", "tcp,unix"),
    ("client_transports", "tcp", "unix", "unix,tcp"),
    ("handshake_timeout", "2s", "3s", "4s"),
    ("shutdown_grace", "5s", "6s", "7s"),
    (
        "grpc_max_receive_message_size",
        "1048576",
        "2097152",
        "3145728",
    ),
    (
        "grpc_max_send_message_size",
        "1048576",
        "2097152",
        "3145728",
    ),
    ("ignore_sigint", "false", "true", "false"),
    ("auto_mtls", "false", "true", "false"),
    ("server_cert", "/f/cert.pem", "/e/cert.pem", "/c/cert.pem"),
    ("server_key", "/f/key.pem", "/e/key.pem", "/c/key.pem"),
    ("client_root_certs", "/f/ca.pem", "/e/ca.pem", "/c/ca.pem"),
    ("client_cert", "/f/host.pem", "/e/host.pem", "/c/host.pem"),
    ("client_key", "/f/host.key", "/e/host.key", "/c/host.key"),
    (
        "server_root_certs",
        "/f/roots.pem",
        "/e/roots.pem",
        "/c/roots.pem",
    ),
    ("unix_socket_dir", "/f", "/e", "/c"),
    ("unix_socket_group", "fg", "eg", "cg"),
    ("min_port", "10000", "11000", "12000"),
    ("max_port", "20000", "21000", "22000"),
    ("sandbox", "on", "best-effort", "off"),
    ("sandbox_read_paths", "/f/r", "/e/r", "/c/r"),
    ("sandbox_write_paths", "/f/w", "/e/w", "/c/w"),
    ("sandbox_exec_paths", "/f/x", "/e/x", "/c/x"),
    ("sandbox_tcp_connect", "1", "2", "3"),
    ("sandbox_seccomp", "false", "true", "false"),
    ("connection_timeout", "8s", "9s", "10s"),
    ("grpc_keepalive_time", "11s", "12s", "13s"),
    ("grpc_keepalive_timeout", "14s", "15s", "16s"),
    ("log_level", "debug", "info", "warn"),
    ("rate_limit_enabled", "true", "false", "true"),
    ("rate_limit_requests_per_second", "10", "20", "30"),
    ("rate_limit_burst_capacity", "1", "2", "3"),
    ("core_version", "1", "1", "1"),
    ("supported_protocol_versions", "1", "2", "3,4"),
    ("channel_ready_timeout", "17s", "18s", "19s"),
    ("cert_validity_days", "1", "2", "3"),
    ("ca_cert", "/f/any.pem", "/e/any.pem", "/c/any.pem"),
    ("server_host", "127.0.0.1", "::1", "localhost"),
    ("server_port", "30000", "30001", "30002"),
    (
        "server_unix_socket_path",
        "/f/p.sock",
        "/e/p.sock",
        "/c/p.sock",
    ),
    ("shutdown_file_path", "/f/stop", "/e/stop", "/c/stop"),
    ("health_service_enabled", "false", "true", "false"),
    ("client_retry_enabled", "true", "false", "true"),
    ("client_max_retries", "0", "1", "2"),
    ("client_initial_backoff", "20s", "21s", "22s"),
    ("client_backoff_multiplier", "1.5", "2.5", "3.5"),
    ("client_max_backoff", "23s", "24s", "25s"),
    ("client_retry_jitter", "26s", "27s", "28s"),
    ("client_retry_total_timeout", "29s", "31s", "32s"),
];

fn file_with(column: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    for row in TABLE {
        let value = [row.1, row.2, row.3][column];
        writeln!(f, "{} = {value:?}", row.0).unwrap();
    }
    (dir, path)
}

fn env_with(column: usize) -> Environment {
    Environment::from_pairs(
        TABLE
            .iter()
            .map(|row| (variable_of(row.0), [row.1, row.2, row.3][column].to_owned())),
    )
}

#[test]
fn the_table_names_every_setting() {
    let mut table: Vec<&str> = TABLE.iter().map(|r| r.0).collect();
    let mut keys = KEYS.to_vec();
    table.sort_unstable();
    keys.sort_unstable();
    assert_eq!(table, keys, "a new setting needs a row here");
}

#[test]
fn code_beats_environment_beats_file_beats_default_for_every_key() {
    let (_dir, file) = file_with(0);

    // File only.
    let loaded = Settings::resolve(&Environment::default(), Some(&file), &Overlay::new()).unwrap();
    for (row, entry) in TABLE.iter().zip(loaded.entries()) {
        assert_eq!(entry.key, row.0);
        assert_eq!(entry.value, row.1, "{}", row.0);
        assert!(
            matches!(&entry.origin, Origin::File { path, line: Some(_) } if *path == file),
            "{}: {}",
            row.0,
            entry.origin
        );
    }

    // File < environment.
    let env = env_with(1);
    let loaded = Settings::resolve(&env, Some(&file), &Overlay::new()).unwrap();
    for (row, entry) in TABLE.iter().zip(loaded.entries()) {
        assert_eq!(entry.value, row.2, "{}", row.0);
        assert_eq!(
            entry.origin,
            Origin::Variable(variable_of(row.0)),
            "{}",
            row.0
        );
    }

    // File < environment < code, half by key and half by variable name.
    let mut overlay = Overlay::new();
    for (i, row) in TABLE.iter().enumerate() {
        let name = if i % 2 == 0 {
            row.0.to_owned()
        } else {
            variable_of(row.0)
        };
        overlay.set(name, row.3);
    }
    let loaded = Settings::resolve(&env, Some(&file), &overlay).unwrap();
    for (i, (row, entry)) in TABLE.iter().zip(loaded.entries()).enumerate() {
        assert_eq!(entry.value, row.3, "{}", row.0);
        let name = if i % 2 == 0 {
            row.0.to_owned()
        } else {
            variable_of(row.0)
        };
        assert_eq!(entry.origin, Origin::Code { name }, "{}", row.0);
    }
    assert!(loaded.notices().is_empty(), "{:?}", loaded.notices());
}

#[test]
fn a_bad_value_in_code_is_named_as_set_in_code() {
    let overlay = Overlay::new()
        .with("PLUGIN_MIN_PORT", "zero")
        .with("max_port", 10_u16);
    let err = Settings::resolve(&Environment::default(), None, &overlay).unwrap_err();
    assert_eq!(err.code(), rpcplugin_core::Code::ConfigInvalidValue);
    let text = err.to_string();
    assert!(
        text.contains("`min_port` (set in code as PLUGIN_MIN_PORT)"),
        "{text}"
    );
    let err = Settings::resolve(
        &Environment::default(),
        None,
        &Overlay::new().with("handshake_timout", "1s"),
    )
    .unwrap_err();
    assert_eq!(err.code(), rpcplugin_core::Code::ConfigUnknownKey);
    assert!(
        err.to_string()
            .contains("did you mean `handshake_timeout`?"),
        "{err}"
    );
}

/// pyvider-rpcplugin's list (docs: shared/design/observed/pyvider-rpcplugin-0.5.5.md,
/// section 10) with a valid value for each.
const PYVIDER: &[(&str, &str)] = &[
    ("PLUGIN_CORE_VERSION", "1"),
    ("PLUGIN_PROTOCOL_VERSIONS", "1"),
    ("PLUGIN_PROTOCOL_VERSION", "1"),
    ("SUPPORTED_PROTOCOL_VERSIONS", "1,2"),
    ("PLUGIN_MAGIC_COOKIE_KEY", "BASIC_PLUGIN"),
    ("PLUGIN_MAGIC_COOKIE_VALUE", "hello"),
    ("PLUGIN_LOG_LEVEL", "INFO"),
    ("PLUGIN_HANDSHAKE_TIMEOUT", "10.0"),
    ("PLUGIN_CONNECTION_TIMEOUT", "30.0"),
    ("PLUGIN_CHANNEL_READY_TIMEOUT", "10.0"),
    ("PLUGIN_SERVER_READY_TIMEOUT", "5.0"),
    ("PLUGIN_SERVER_TRANSPORTS", "unix,tcp"),
    ("PLUGIN_CLIENT_TRANSPORTS", "unix,tcp"),
    ("PLUGIN_SUPPORTED_TRANSPORTS", "unix,tcp"),
    ("PLUGIN_TRANSPORT_BUFFER_SIZE", "16384"),
    ("PLUGIN_BUFFER_SIZE", "16384"),
    ("PLUGIN_CHUNK_SIZE", "8192"),
    ("PLUGIN_AUTO_MTLS", "true"),
    ("PLUGIN_MTLS_CERT_DIR", "/tmp/plugin-certs"),
    ("PLUGIN_CLIENT_CERT_FILE", "/etc/host/cert.pem"),
    ("PLUGIN_CLIENT_KEY_FILE", "/etc/host/key.pem"),
    ("PLUGIN_CLIENT_ROOT_CERTS", "/etc/plugin/roots.pem"),
    ("PLUGIN_INSECURE", "false"),
    ("PLUGIN_CERT_VALIDITY_DAYS", "365"),
    ("PLUGIN_SERVER_CERT", "/etc/plugin/cert.pem"),
    ("PLUGIN_SERVER_KEY", "/etc/plugin/key.pem"),
    ("PLUGIN_SERVER_ROOT_CERTS", "/etc/host/roots.pem"),
    ("PLUGIN_CLIENT_CERT", "-----BEGIN CERTIFICATE-----"),
    ("PLUGIN_CLIENT_KEY", "/etc/host/key.pem"),
    ("PLUGIN_CA_CERT", "/etc/ca.pem"),
    ("PLUGIN_GRPC_KEEPALIVE_TIME_MS", "30000"),
    ("PLUGIN_GRPC_KEEPALIVE_TIMEOUT_MS", "5000"),
    ("PLUGIN_GRPC_GRACE_PERIOD", "0.5"),
    ("PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE", "4194304"),
    ("PLUGIN_GRPC_MAX_SEND_MESSAGE_SIZE", "4194304"),
    ("PLUGIN_CLIENT_MAX_RETRIES", "3"),
    ("PLUGIN_CLIENT_RETRY_ENABLED", "true"),
    ("PLUGIN_CLIENT_INITIAL_BACKOFF_MS", "100"),
    ("PLUGIN_CLIENT_RETRY_TOTAL_TIMEOUT_S", "30.0"),
    ("PLUGIN_CLIENT_RETRY_DELAY", "1.0"),
    ("PLUGIN_CLIENT_BACKOFF_MULTIPLIER", "2.0"),
    ("PLUGIN_CLIENT_MAX_RETRY_DELAY", "10.0"),
    ("PLUGIN_CLIENT_MAX_BACKOFF_MS", "5000"),
    ("PLUGIN_CLIENT_RETRY_JITTER_MS", "50"),
    ("PLUGIN_SERVER_HOST", "localhost"),
    ("PLUGIN_SERVER_PORT", "0"),
    ("PLUGIN_SERVER_UNIX_SOCKET_PATH", "/tmp/plugin.sock"),
    ("PLUGIN_SHUTDOWN_FILE_PATH", "/tmp/plugin.stop"),
    ("PLUGIN_IGNORE_SIGINT", "true"),
    ("PLUGIN_RATE_LIMIT_ENABLED", "false"),
    ("PLUGIN_RATE_LIMIT_BURST_CAPACITY", "200"),
    ("PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND", "100.0"),
    ("PLUGIN_HEALTH_SERVICE_ENABLED", "true"),
    ("PLUGIN_UI_ENABLED", "false"),
    ("PLUGIN_SHOW_EMOJI_MATRIX", "false"),
    ("PLUGIN_EXIT_ON_STOP", "true"),
    ("PLUGIN_TIMEOUT_GRACEFUL_SHUTDOWN", "5"),
    ("PLUGIN_MAGIC_COOKIE", "test_cookie_value"),
];

#[test]
fn every_pyvider_variable_is_in_effect_or_named_with_a_reason() {
    let env = Environment::from_pairs(PYVIDER.iter().copied());
    let loaded = Settings::resolve(&env, None, &Overlay::new()).unwrap();
    let notices = loaded.notices();
    assert!(
        !notices
            .iter()
            .any(|n| matches!(n.kind, NoticeKind::Unknown { .. })),
        "{notices:?}"
    );
    // Each variable at most once.
    for (name, _) in PYVIDER {
        assert!(
            notices.iter().filter(|n| n.name == *name).count() <= 1,
            "{name}"
        );
    }
    let named = |name: &str| notices.iter().find(|n| n.name == name);
    for unsupported in [
        "PLUGIN_PROTOCOL_VERSION",
        "PLUGIN_SERVER_READY_TIMEOUT",
        "PLUGIN_SUPPORTED_TRANSPORTS",
        "PLUGIN_TRANSPORT_BUFFER_SIZE",
        "PLUGIN_BUFFER_SIZE",
        "PLUGIN_CHUNK_SIZE",
        "PLUGIN_MTLS_CERT_DIR",
        "PLUGIN_INSECURE",
        "PLUGIN_CLIENT_RETRY_DELAY",
        "PLUGIN_CLIENT_MAX_RETRY_DELAY",
        "PLUGIN_UI_ENABLED",
        "PLUGIN_SHOW_EMOJI_MATRIX",
        "PLUGIN_EXIT_ON_STOP",
    ] {
        let notice = named(unsupported).unwrap_or_else(|| panic!("{unsupported} not named"));
        let text = notice.to_string();
        assert!(
            text.starts_with(&format!("{unsupported} is not used by rpcplugin: ")),
            "{text}"
        );
    }
    // Two pyvider names for the shutdown grace: the first listed wins, the other is named.
    assert_eq!(
        named("PLUGIN_TIMEOUT_GRACEFUL_SHUTDOWN").unwrap().kind,
        NoticeKind::Shadowed {
            by: "PLUGIN_GRPC_GRACE_PERIOD".into()
        }
    );
    let s = loaded.settings();
    // Milliseconds variables read as milliseconds.
    assert_eq!(
        s.grpc_keepalive_time,
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(s.grpc_keepalive_timeout, std::time::Duration::from_secs(5));
    assert_eq!(
        s.client_initial_backoff,
        std::time::Duration::from_millis(100)
    );
    assert_eq!(s.client_max_backoff, std::time::Duration::from_secs(5));
    assert_eq!(s.client_retry_jitter, std::time::Duration::from_millis(50));
    assert_eq!(
        s.client_retry_total_timeout,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(s.shutdown_grace, std::time::Duration::from_millis(500));
    assert_eq!(s.supported_protocol_versions, Some(vec![1, 2]));
    // A setting's own variable wins over pyvider's other name for it.
    assert_eq!(
        s.client_cert.as_deref(),
        Some("-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(
        named("PLUGIN_CLIENT_CERT_FILE").unwrap().kind,
        NoticeKind::Shadowed {
            by: "PLUGIN_CLIENT_CERT".into()
        }
    );
    assert_eq!(s.server_port, None, "0 is any port");
    assert!(s.client_retry_enabled);
    assert_eq!(s.cert_validity_days, 365);
    assert_eq!(
        loaded.origin("grpc_keepalive_time"),
        &Origin::Variable("PLUGIN_GRPC_KEEPALIVE_TIME_MS".into())
    );
}

#[test]
fn suggestions_are_close_and_of_the_same_kind() {
    let env = Environment::from_pairs([
        ("PLUGIN_HANDSHAKE_TIMOUT", "5"),
        ("PLUGIN_AUTOMTLS", "false"),
        ("PLUGIN_SERVER_HOTS", "localhost"),
        ("PLUGIN_CONNECTION_TIMEOUT_MS", "500"),
        ("PLUGIN_WHATEVER_THIS_IS", "1"),
    ]);
    let loaded = Settings::resolve(&env, None, &Overlay::new()).unwrap();
    let suggestion = |name: &str| {
        loaded
            .notices()
            .iter()
            .find(|n| n.name == name)
            .map(|n| match &n.kind {
                NoticeKind::Unknown { suggestion } => suggestion.clone(),
                other => panic!("{other:?}"),
            })
            .unwrap()
    };
    assert_eq!(
        suggestion("PLUGIN_HANDSHAKE_TIMOUT").as_deref(),
        Some("PLUGIN_HANDSHAKE_TIMEOUT")
    );
    assert_eq!(
        suggestion("PLUGIN_AUTOMTLS").as_deref(),
        Some("PLUGIN_AUTO_MTLS")
    );
    assert_eq!(
        suggestion("PLUGIN_SERVER_HOTS").as_deref(),
        Some("PLUGIN_SERVER_HOST")
    );
    // A milliseconds name is never pointed at a seconds variable.
    assert_eq!(suggestion("PLUGIN_CONNECTION_TIMEOUT_MS"), None);
    assert_eq!(suggestion("PLUGIN_WHATEVER_THIS_IS"), None);
}

#[test]
fn the_cookie_value_alone_uses_pyviders_default_key() {
    let s = Settings::from_vars([("PLUGIN_MAGIC_COOKIE_VALUE", "hello")]).unwrap();
    assert_eq!(
        s.magic_cookie(None),
        Some(("PLUGIN_MAGIC_COOKIE".to_owned(), "hello".to_owned()))
    );
}

#[test]
fn only_core_version_1_and_loopback_hosts_are_accepted() {
    let err = Settings::from_vars([("PLUGIN_CORE_VERSION", "2")]).unwrap_err();
    assert!(err.to_string().contains("PLUGIN_CORE_VERSION"), "{err}");
    let err = Settings::from_vars([("PLUGIN_SERVER_HOST", "0.0.0.0")]).unwrap_err();
    assert!(err.to_string().contains("PLUGIN_SERVER_HOST"), "{err}");
    assert!(err.hint().unwrap().contains("loopback"), "{:?}", err.hint());
}
