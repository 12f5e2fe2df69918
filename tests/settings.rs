//! pyvider-rpcplugin's settings as a user moving to rpcplugin sets them: every
//! variable of its list at once, then each group in effect (start-up retries, the
//! health service, where the plugin listens, the shutdown file, TLS from one CA
//! and certificate lifetimes, the versions served), and settings given in code.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{COOKIE, events, example, kv_plugin, within};
use rpcplugin::config::Environment;
use rpcplugin::crypto::{
    CertificateAuthority, CertificateDer, CertificateInfo, KeyAlgorithm, Role,
};
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest, kv_client::KvClient};
use rpcplugin::{Code, Endpoint};

const LIMIT: Duration = Duration::from_secs(30);

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn put_get(plugin: &rpcplugin::client::PluginClient) {
    let mut kv = KvClient::new(plugin.channel());
    kv.put(PutRequest {
        key: "k".into(),
        value: b"v".to_vec(),
    })
    .await
    .unwrap();
    let got = kv
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.value, b"v");
}

/// The pyvider variables rpcplugin does not use: each must be named once, with
/// its reason, by the host and by the plugin.
const NOT_USED: &[&str] = &[
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
];

#[tokio::test]
async fn every_pyvider_variable_set_at_once_a_host_and_plugin_start_and_work() {
    events::record();
    let dir = tempfile::tempdir().unwrap();
    // Configured mTLS from one CA, as pyvider's fixed certificates are.
    let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "plugins ca").unwrap();
    let server = ca.issue(Role::Server, KeyAlgorithm::default()).unwrap();
    let host = ca.issue(Role::Client, KeyAlgorithm::default()).unwrap();
    let ca_pem = write(dir.path(), "ca.pem", &ca.identity().cert_pem());
    let server_cert = write(dir.path(), "server.pem", &server.cert_pem());
    let server_key = write(dir.path(), "server.key", &server.key_pem());
    let host_cert = write(dir.path(), "host.pem", &host.cert_pem());
    let host_key = write(dir.path(), "host.key", &host.key_pem());
    let socket = dir.path().join("kv.sock").display().to_string();
    let stop_file = dir.path().join("stop").display().to_string();
    let vars: Vec<(&str, &str)> = vec![
        ("PLUGIN_CORE_VERSION", "1"),
        ("PLUGIN_PROTOCOL_VERSIONS", "1"),
        ("PLUGIN_PROTOCOL_VERSION", "1"),
        ("SUPPORTED_PROTOCOL_VERSIONS", "1,2"),
        ("PLUGIN_MAGIC_COOKIE_KEY", COOKIE.0),
        ("PLUGIN_MAGIC_COOKIE_VALUE", COOKIE.1),
        ("PLUGIN_MAGIC_COOKIE", "test_cookie_value"),
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
        ("PLUGIN_CLIENT_CERT_FILE", &host_cert),
        ("PLUGIN_CLIENT_KEY_FILE", &host_key),
        ("PLUGIN_CLIENT_ROOT_CERTS", &ca_pem),
        ("PLUGIN_INSECURE", "false"),
        ("PLUGIN_CERT_VALIDITY_DAYS", "365"),
        ("PLUGIN_SERVER_CERT", &server_cert),
        ("PLUGIN_SERVER_KEY", &server_key),
        ("PLUGIN_SERVER_ROOT_CERTS", &ca_pem),
        ("PLUGIN_CLIENT_KEY", &host_key),
        ("PLUGIN_CA_CERT", &ca_pem),
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
        ("PLUGIN_SERVER_UNIX_SOCKET_PATH", &socket),
        ("PLUGIN_SHUTDOWN_FILE_PATH", &stop_file),
        ("PLUGIN_IGNORE_SIGINT", "true"),
        ("PLUGIN_RATE_LIMIT_ENABLED", "false"),
        ("PLUGIN_RATE_LIMIT_BURST_CAPACITY", "200"),
        ("PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND", "100.0"),
        ("PLUGIN_HEALTH_SERVICE_ENABLED", "true"),
        ("PLUGIN_UI_ENABLED", "false"),
        ("PLUGIN_SHOW_EMOJI_MATRIX", "false"),
        ("PLUGIN_EXIT_ON_STOP", "true"),
        ("PLUGIN_TIMEOUT_GRACEFUL_SHUTDOWN", "5"),
    ];
    // The host reads them from its environment; the plugin inherits them.
    let mut builder = kv_plugin().environment(Environment::from_pairs(vars.iter().copied()));
    for (k, v) in &vars {
        builder = builder.env(k, v);
    }
    let plugin = within(LIMIT, "start", builder.start()).await.unwrap();
    put_get(&plugin).await;
    // In effect: the fixed socket path, and TLS with the CA's certificates.
    assert_eq!(plugin.endpoint(), &Endpoint::Unix(socket.clone().into()));
    assert!(plugin.is_tls());
    let pid = plugin.pid();
    plugin.stop().await.unwrap();
    assert!(
        !Path::new(&socket).exists(),
        "the fixed socket is removed at stop"
    );

    // Named once each, with the reason, by the host and by the plugin (whose
    // stderr the host logs); nothing is "unknown".
    let all = events::all();
    let host_said: Vec<&str> = all
        .iter()
        .filter(|e| e.target.starts_with("rpcplugin_config"))
        .map(|e| e.message.as_str())
        .collect();
    let plugin_said: Vec<String> = events::events_of(pid)
        .into_iter()
        .map(|e| e.message)
        .collect();
    for name in NOT_USED {
        let expected = format!("{name} is not used by rpcplugin: ");
        assert_eq!(
            host_said
                .iter()
                .filter(|m| m.starts_with(&expected))
                .count(),
            1,
            "host on {name}: {host_said:#?}"
        );
        assert_eq!(
            plugin_said.iter().filter(|m| m.contains(&expected)).count(),
            1,
            "plugin on {name}: {plugin_said:#?}"
        );
    }
    for said in host_said
        .iter()
        .copied()
        .chain(plugin_said.iter().map(String::as_str))
    {
        assert!(!said.contains("unknown setting"), "{said}");
    }
}

/// A plugin that exits at once on its first `fails` launches (counted in
/// `counter`), then runs the KV plugin.
fn flaky_plugin(dir: &Path, fails: u32) -> (String, std::path::PathBuf) {
    let counter = dir.join("launches");
    let script = format!(
        "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > {c}\nif [ $n -le {fails} ]; then echo \"crash $n\" >&2; exit 3; fi\nexec {kv}\n",
        c = counter.display(),
        kv = example("kv_plugin").display()
    );
    let path = write(dir, "flaky.sh", &script);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (path, counter)
}

fn launches(counter: &Path) -> u32 {
    std::fs::read_to_string(counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn with_retries_on_a_plugin_failing_twice_starts_on_the_third_launch() {
    let dir = tempfile::tempdir().unwrap();
    let (flaky, counter) = flaky_plugin(dir.path(), 2);
    let plugin = within(
        LIMIT,
        "start",
        rpcplugin::plugin_client(&flaky)
            .handshake(COOKIE.0, COOKIE.1)
            .environment(Environment::from_pairs([
                ("PLUGIN_CLIENT_RETRY_ENABLED", "true"),
                ("PLUGIN_CLIENT_INITIAL_BACKOFF_MS", "20"),
            ]))
            .start(),
    )
    .await
    .unwrap();
    put_get(&plugin).await;
    assert_eq!(launches(&counter), 3);
    plugin.stop().await.unwrap();

    // Off (the default), the first failure is the answer.
    std::fs::remove_file(&counter).unwrap();
    let err = within(
        LIMIT,
        "start",
        rpcplugin::plugin_client(&flaky)
            .handshake(COOKIE.0, COOKIE.1)
            .start(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::HandshakePluginExited);
    assert_eq!(launches(&counter), 1);

    // Retries used up: the last failure, with each earlier one listed.
    std::fs::remove_file(&counter).unwrap();
    let err = within(
        LIMIT,
        "start",
        rpcplugin::plugin_client(&flaky)
            .handshake(COOKIE.0, COOKIE.1)
            .retry_start(1)
            .config("client_initial_backoff", Duration::from_millis(10))
            .start(),
    )
    .await
    .unwrap_err();
    assert_eq!(launches(&counter), 2);
    let text = err.to_string();
    assert!(
        text.contains("attempt 2 of the start; attempt 1: "),
        "{text}"
    );
    assert!(
        rpcplugin::render(&err).contains("crash 2"),
        "{}",
        rpcplugin::render(&err)
    );
}

#[tokio::test]
async fn a_wrong_cookie_is_refused_at_once_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (flaky, counter) = flaky_plugin(dir.path(), 0);
    let started = std::time::Instant::now();
    let err = within(
        LIMIT,
        "start",
        rpcplugin::plugin_client(&flaky)
            .handshake(COOKIE.0, "wrong")
            .retry_start(3)
            .config("PLUGIN_CLIENT_INITIAL_BACKOFF_MS", 500_u32)
            .start(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::HandshakePluginExited);
    assert!(common::hint(&err).contains("magic cookie"), "{err}");
    assert_eq!(launches(&counter), 1, "not retried");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "no backoff was waited"
    );
}

#[tokio::test]
async fn without_its_health_service_a_plugin_still_starts_and_serves() {
    let plugin = within(
        LIMIT,
        "start",
        kv_plugin()
            .env("PLUGIN_HEALTH_SERVICE_ENABLED", "false")
            .start(),
    )
    .await
    .unwrap();
    put_get(&plugin).await;
    let mut health =
        rpcplugin::proto::health::v1::health_client::HealthClient::new(plugin.channel());
    let status = health
        .check(rpcplugin::proto::health::v1::HealthCheckRequest {
            service: "plugin".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn a_fixed_tcp_port_and_host_are_where_the_plugin_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let plugin = within(
        LIMIT,
        "start",
        kv_plugin()
            .env("PLUGIN_SERVER_TRANSPORTS", "tcp")
            .env("PLUGIN_SERVER_HOST", "127.0.0.1")
            .env("PLUGIN_SERVER_PORT", port.to_string())
            .start(),
    )
    .await
    .unwrap();
    assert_eq!(
        plugin.endpoint(),
        &Endpoint::Tcp(([127, 0, 0, 1], port).into())
    );
    put_get(&plugin).await;
    plugin.stop().await.unwrap();

    // A host that is not loopback is refused by the plugin, before it listens.
    let err = within(
        LIMIT,
        "start",
        kv_plugin().env("PLUGIN_SERVER_HOST", "0.0.0.0").start(),
    )
    .await
    .unwrap_err();
    assert!(
        rpcplugin::render(&err).contains("not a loopback address"),
        "{}",
        rpcplugin::render(&err)
    );
}

#[tokio::test]
async fn the_shutdown_file_stops_the_plugin_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let stop_file = dir.path().join("stop-now");
    let mut plugin = within(
        LIMIT,
        "start",
        kv_plugin()
            .env("PLUGIN_SHUTDOWN_FILE_PATH", stop_file.display().to_string())
            .start(),
    )
    .await
    .unwrap();
    put_get(&plugin).await;
    std::fs::write(&stop_file, "").unwrap();
    let status = within(Duration::from_secs(5), "exit", plugin.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!stop_file.exists());
}

#[tokio::test]
async fn one_ca_in_plugin_ca_cert_verifies_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "plugins ca").unwrap();
    let server = ca.issue(Role::Server, KeyAlgorithm::default()).unwrap();
    let host = ca.issue(Role::Client, KeyAlgorithm::default()).unwrap();
    let ca_pem = write(dir.path(), "ca.pem", &ca.identity().cert_pem());
    let plugin = within(
        LIMIT,
        "start",
        kv_plugin()
            .environment(Environment::from_pairs([
                ("PLUGIN_CA_CERT", ca_pem.as_str()),
                (
                    "PLUGIN_CLIENT_CERT",
                    &write(dir.path(), "h.pem", &host.cert_pem()),
                ),
                (
                    "PLUGIN_CLIENT_KEY",
                    &write(dir.path(), "h.key", &host.key_pem()),
                ),
            ]))
            .env("PLUGIN_CA_CERT", &ca_pem)
            .env(
                "PLUGIN_SERVER_CERT",
                write(dir.path(), "s.pem", &server.cert_pem()),
            )
            .env(
                "PLUGIN_SERVER_KEY",
                write(dir.path(), "s.key", &server.key_pem()),
            )
            .start(),
    )
    .await
    .unwrap();
    assert!(plugin.is_tls());
    put_get(&plugin).await;
    plugin.stop().await.unwrap();

    // A host certificate from another CA is refused by the plugin.
    let other = CertificateAuthority::generate(KeyAlgorithm::default(), "other ca").unwrap();
    let stranger = other.issue(Role::Client, KeyAlgorithm::default()).unwrap();
    let err = within(
        LIMIT,
        "start",
        kv_plugin()
            .environment(Environment::from_pairs([
                ("PLUGIN_CA_CERT", ca_pem.as_str()),
                (
                    "PLUGIN_CLIENT_CERT",
                    &write(dir.path(), "x.pem", &stranger.cert_pem()),
                ),
                (
                    "PLUGIN_CLIENT_KEY",
                    &write(dir.path(), "x.key", &stranger.key_pem()),
                ),
            ]))
            .env("PLUGIN_CA_CERT", &ca_pem)
            .env(
                "PLUGIN_SERVER_CERT",
                write(dir.path(), "s2.pem", &server.cert_pem()),
            )
            .env(
                "PLUGIN_SERVER_KEY",
                write(dir.path(), "s2.key", &server.key_pem()),
            )
            .start(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.kind(),
        rpcplugin::ErrorKind::Security,
        "{}",
        rpcplugin::render(&err)
    );
}

#[tokio::test]
async fn generated_certificates_live_as_many_days_as_configured() {
    let plugin = within(
        LIMIT,
        "start",
        kv_plugin().env("PLUGIN_CERT_VALIDITY_DAYS", "3").start(),
    )
    .await
    .unwrap();
    let der = plugin
        .handshake()
        .server_cert
        .clone()
        .expect("AutoMTLS announces a certificate");
    let info = CertificateInfo::parse(&CertificateDer::from(der)).unwrap();
    let lifetime = info.not_after.duration_since(info.not_before).unwrap();
    // Valid from a minute ago (clock skew) for three days.
    assert!(
        (Duration::from_secs(3 * 86_400)..=Duration::from_secs(3 * 86_400 + 120))
            .contains(&lifetime),
        "{lifetime:?}"
    );
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn supported_protocol_versions_limits_what_a_plugin_serves() {
    let versioned = || {
        rpcplugin::plugin_client(example("versioned"))
            .arg("plugin")
            .handshake(COOKIE.0, COOKIE.1)
            .protocol_versions([1, 2])
    };
    let plugin = within(LIMIT, "start", versioned().start()).await.unwrap();
    assert_eq!(plugin.protocol_version(), 2);
    plugin.stop().await.unwrap();
    let plugin = within(
        LIMIT,
        "start",
        versioned().env("SUPPORTED_PROTOCOL_VERSIONS", "1").start(),
    )
    .await
    .unwrap();
    assert_eq!(plugin.protocol_version(), 1);
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn settings_in_code_win_over_environment_and_file_and_show_where_they_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "host.toml",
        "connection_timeout = \"3s\"\nhandshake_timeout = \"4s\"\n",
    );
    let builder = kv_plugin()
        .config_file(&file)
        .environment(Environment::from_pairs([
            ("PLUGIN_HANDSHAKE_TIMEOUT", "6s"),
            ("PLUGIN_GRPC_KEEPALIVE_TIME_MS", "30000"),
        ]))
        .handshake_timeout(Duration::from_secs(9))
        .configs([("PLUGIN_CLIENT_MAX_RETRIES", "5")]);
    let loaded = builder.effective_settings().unwrap();
    let s = loaded.settings();
    assert_eq!(s.handshake_timeout, Duration::from_secs(9));
    assert_eq!(s.connection_timeout, Duration::from_secs(3));
    assert_eq!(s.grpc_keepalive_time, Some(Duration::from_secs(30)));
    assert_eq!(s.client_max_retries, 5);
    let table = loaded.to_string();
    for line in [
        "PLUGIN_HANDSHAKE_TIMEOUT",
        "PLUGIN_CONNECTION_TIMEOUT",
        "PLUGIN_GRPC_KEEPALIVE_TIME ",
    ] {
        assert!(table.contains(line), "{table}");
    }
    let row = |var: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{var} ")))
            .unwrap_or_else(|| panic!("{var} in {table}"))
            .to_owned()
    };
    assert!(
        row("PLUGIN_HANDSHAKE_TIMEOUT").ends_with("code (handshake_timeout)"),
        "{table}"
    );
    assert!(
        row("PLUGIN_CONNECTION_TIMEOUT").ends_with(&format!("{file} line 1")),
        "{table}"
    );
    assert!(
        row("PLUGIN_GRPC_KEEPALIVE_TIME").ends_with("PLUGIN_GRPC_KEEPALIVE_TIME_MS (environment)"),
        "{table}"
    );
    // And the start uses them: a bad value in code fails it, named as code.
    let err = kv_plugin()
        .config("connection_timeout", "soon")
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ConfigInvalidValue);
    assert!(err.to_string().contains("set in code"), "{err}");
}
