//! Configuration as users set it: a config file, environment variables over it,
//! for host and plugin, and what a mistake in a file looks like from the host.

mod common;

use rpcplugin::Code;
use std::time::Duration;

use common::{kv_plugin, within};
use rpcplugin::Endpoint;

const LIMIT: Duration = Duration::from_secs(20);

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_host_config_file_places_sockets_and_ports() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = dir.path().join("sockets");
    std::fs::create_dir(&sockets).unwrap();
    let file = write(
        dir.path(),
        "host.toml",
        &format!(
            "unix_socket_dir = {:?}\nmin_port = 31000\nmax_port = 31100\nconnection_timeout = \"3s\"\n",
            sockets.display().to_string()
        ),
    );
    let plugin = within(LIMIT, "start", kv_plugin().config_file(&file).start())
        .await
        .unwrap();
    let Endpoint::Unix(path) = plugin.endpoint().clone() else {
        panic!("expected a unix socket, got {}", plugin.endpoint());
    };
    assert!(path.starts_with(&sockets), "{}", path.display());
    plugin.stop().await.unwrap();

    // The same file, with the plugin told to use TCP: the port comes from the range
    // the host passed on.
    let plugin = within(
        LIMIT,
        "start",
        kv_plugin()
            .config_file(&file)
            .env("PLUGIN_SERVER_TRANSPORTS", "tcp")
            .start(),
    )
    .await
    .unwrap();
    let Endpoint::Tcp(addr) = plugin.endpoint().clone() else {
        panic!("expected tcp, got {}", plugin.endpoint());
    };
    assert!((31000..=31100).contains(&addr.port()), "{addr}");
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn a_plugin_reads_its_config_file_and_the_environment_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "plugin.yaml", "server_transports: [tcp]\n");
    let file_text = file.display().to_string();
    let plugin = within(
        LIMIT,
        "start",
        kv_plugin().env("PLUGIN_CONFIG_FILE", &file_text).start(),
    )
    .await
    .unwrap();
    assert!(matches!(plugin.endpoint(), Endpoint::Tcp(_)), "file: tcp");
    plugin.stop().await.unwrap();

    let plugin = within(
        LIMIT,
        "start",
        kv_plugin()
            .env("PLUGIN_CONFIG_FILE", &file_text)
            .env("PLUGIN_SERVER_TRANSPORTS", "unix")
            .start(),
    )
    .await
    .unwrap();
    assert!(
        matches!(plugin.endpoint(), Endpoint::Unix(_)),
        "env beats file"
    );
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn a_mistake_in_the_plugins_config_file_reaches_the_host_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "plugin.toml",
        "shutdown_grace = 1\nserver_transports = [\"udp\"]\n",
    );
    let err = within(
        LIMIT,
        "start",
        kv_plugin()
            .env("PLUGIN_CONFIG_FILE", file.display().to_string())
            .start(),
    )
    .await
    .unwrap_err();
    let text = rpcplugin::render(&err);
    println!("{text}");
    assert_eq!(err.code(), Code::HandshakePluginExited);
    assert!(
        text.contains(&format!("{} line 2", file.display())),
        "{text}"
    );
    assert!(text.contains("server_transports"), "{text}");
}

#[tokio::test]
async fn a_mistake_in_the_hosts_config_file_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "host.json", r#"{"handshake_timout": 5}"#);
    let err = kv_plugin().config_file(&file).start().await.unwrap_err();
    assert_eq!(err.code(), Code::ConfigUnknownKey);
    assert!(
        err.to_string().contains("did you mean `handshake_timeout`"),
        "{err}"
    );
}
