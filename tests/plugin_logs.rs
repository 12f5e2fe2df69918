//! Plugin logs across real processes: a Go go-plugin plugin's hclog lines in an
//! rpcplugin host's `tracing`, and an rpcplugin plugin's lines in a Go go-plugin
//! host's log, each at its level with its fields.
//!
//! The Go peers are built by `tests/interop/go/build.sh` into `target/interop/go`
//! (it installs Go with apt when missing and running as root). Without Go, and no way
//! to install it, the Go tests print SKIP.

mod common;

use common::events::Seen;
use common::{COOKIE, example, go_peers, kv_plugin};
use rpcplugin::proto::examples::kv::PutRequest;
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use std::process::Command;
use std::time::Duration;
use tracing::Level;

const LIMIT: Duration = Duration::from_secs(30);

/// The plugin's stderr lines the host forwarded, for the plugin with this pid.
fn events_of(pid: u32) -> Vec<Seen> {
    common::events::events_of(pid)
        .into_iter()
        .filter(|s| s.target == "rpcplugin_client::output")
        .collect()
}

/// Waits until the plugin with this pid has logged a line with `message`.
async fn logged(pid: u32, message: &str) -> Seen {
    let found = common::wait_until(LIMIT, || {
        events_of(pid).iter().any(|s| s.message == message)
    })
    .await;
    let events = events_of(pid);
    assert!(found, "no {message:?} from pid {pid}; got {events:#?}");
    events.into_iter().find(|s| s.message == message).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_plugins_hclog_lines_reach_the_hosts_tracing_at_their_levels() {
    let Some(go) = go_peers() else { return };
    common::events::record();
    let plugin = common::within(
        LIMIT,
        "start the Go plugin",
        rpcplugin::plugin_client(go.join("kv-plugin"))
            .handshake(COOKIE.0, COOKIE.1)
            .start(),
    )
    .await
    .expect("the Go plugin starts");
    let pid = plugin.pid();
    KvClient::new(plugin.channel())
        .put(PutRequest {
            key: "hello".into(),
            value: b"world".to_vec(),
        })
        .await
        .expect("put");

    // go-plugin's own lines (hclog JSON, no module) ...
    let mtls = logged(pid, "configuring server automatic mTLS").await;
    assert_eq!(mtls.level, Level::INFO);
    assert_eq!(mtls.field("plugin"), "kv-plugin");
    let address = logged(pid, "plugin address").await;
    assert_eq!(address.level, Level::DEBUG);
    assert!(
        address.field("fields").contains("network=unix"),
        "{address:?}"
    );
    assert!(
        address
            .field("timestamp")
            .starts_with(|c: char| c.is_ascii_digit()),
        "{address:?}"
    );
    // ... and the plugin's own logger, named kv-plugin.
    let put = logged(pid, "put").await;
    assert_eq!(put.level, Level::DEBUG);
    assert_eq!(put.field("module"), "kv-plugin");
    assert_eq!(put.field("fields"), "key=hello len=5");

    plugin.stop().await.expect("stop");
    let events = events_of(pid);
    println!("{events:#?}");
    assert!(
        events.iter().all(|s| !s.message.starts_with('{')),
        "no hclog line fell through as raw JSON: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpcplugin_plugins_logs_reach_an_rpcplugin_host_with_typed_fields() {
    common::events::record();
    let plugin = common::within(
        LIMIT,
        "start kv_plugin",
        kv_plugin().env("RUST_LOG", "info").start(),
    )
    .await
    .expect("kv_plugin starts");
    let pid = plugin.pid();
    let serving = logged(pid, "kv_plugin serving").await;
    plugin.stop().await.expect("stop");
    assert_eq!(serving.level, Level::INFO);
    assert_eq!(serving.field("plugin"), "kv_plugin");
    assert_eq!(serving.field("module"), "kv_plugin");
    // The number stays a number through JSON: no quotes, no float.
    assert_eq!(
        serving.field("fields"),
        "max_receive_message_size=268435456"
    );
}

#[test]
fn a_go_host_shows_an_rpcplugin_plugins_levels_and_fields() {
    let Some(go) = go_peers() else { return };
    let output = Command::new(go.join("kv-host"))
        .arg("--")
        .arg(example("kv_plugin"))
        .env("RUST_LOG", "debug,h2=info")
        .env("KV_HOST_LOG_LEVEL", "debug")
        .output()
        .expect("kv-host runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kv-host failed:\n{stderr}");
    assert_eq!(stdout.trim(), "world", "kv_plugin's stdout is untouched");

    // go-plugin's host re-logs each JSON line through hclog, named after the plugin,
    // at the line's level, with the fields as pairs.
    let from_plugin: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("kv-host.kv_plugin: "))
        .collect();
    println!("{}", from_plugin.join("\n"));
    let line = |message: &str| {
        from_plugin
            .iter()
            .find(|l| l.contains(&format!("kv-host.kv_plugin: {message}:")))
            .unwrap_or_else(|| panic!("the Go host did not show {message:?}:\n{stderr}"))
    };
    let serving = line("kv_plugin serving");
    assert!(serving.contains(" [INFO]  "), "{serving}");
    assert!(serving.contains("@module=kv_plugin"), "{serving}");
    // Go decodes JSON numbers as float64 and hclog prints them so.
    assert!(
        serving.contains("max_receive_message_size=2.68435456e+08"),
        "{serving}"
    );
    let address = line("plugin address");
    assert!(address.contains(" [DEBUG] "), "{address}");
    assert!(address.contains("network=unix"), "{address}");
    // A line with a timestamp the host cannot parse would be shown raw, at debug.
    assert!(
        from_plugin.iter().all(|l| !l.contains("{\"@level\"")),
        "every line was understood as hclog JSON"
    );
}
