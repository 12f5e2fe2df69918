//! Reattach with real processes: `kv_plugin --debug` started as a person would,
//! hosts (`kv_host --reattach`, and this test) attaching with the JSON it prints,
//! over a Unix socket and over TCP with configured mutual TLS.

mod common;

use rpcplugin::Code;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{example, init_tracing, pid_alive, show, wait_until, within};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rpcplugin::client::{Environment, PluginClient, ReattachConfig, StopMethod};
use rpcplugin::crypto::{CertificateAuthority, KeyAlgorithm, Role};
use rpcplugin::proto::examples::kv::GetRequest;
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::{Endpoint, Network};

const CALL: Duration = Duration::from_secs(10);

/// A debug-mode plugin started by hand, killed when the test ends.
struct DebugPlugin {
    child: Child,
    json: String,
}

impl Drop for DebugPlugin {
    fn drop(&mut self) {
        // SIGTERM, so the plugin removes its socket directory as it exits.
        common::terminate(self.child.id());
        let _ = self.child.wait();
    }
}

fn start_debug_plugin(env: &[(&str, String)]) -> DebugPlugin {
    let mut child = Command::new(example("kv_plugin"))
        .arg("--debug")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kv_plugin starts");
    let stdout = child.stdout.take().unwrap();
    // A thread, so that a plugin printing nothing cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let json = rx
        .recv_timeout(CALL)
        .expect("the debug-mode plugin prints its reattach information");
    DebugPlugin { child, json }
}

fn empty_env() -> Environment {
    Environment::from_pairs(Vec::<(String, String)>::new())
}

#[tokio::test]
async fn a_plugin_started_by_hand_is_attached_across_processes_and_survives_its_hosts() {
    init_tracing();
    let mut plugin = start_debug_plugin(&[]);
    let pid = plugin.child.id();
    let config = ReattachConfig::from_json(&plugin.json).expect("the JSON parses");
    assert_eq!(config.pid, pid);
    assert_eq!(config.app_version, 1);
    assert_eq!(
        config.server_cert, None,
        "no TLS without configured certificates"
    );
    let Endpoint::Unix(socket) = config.endpoint.clone() else {
        panic!("a debug-mode plugin serves on a unix socket by default: {config:?}");
    };

    // Two host processes, one after the other, each attaching and leaving.
    for _ in 0..2 {
        let output = Command::new(example("kv_host"))
            .args(["--reattach", &plugin.json])
            .output()
            .expect("kv_host runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kv_host failed: {stderr}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "world\n");
        assert!(stderr.contains("Detached"), "{stderr}");
        assert!(pid_alive(pid), "the plugin survives its host's exit");
    }

    // This process attaches too and reads what the other hosts wrote: the same
    // plugin process served them all.
    let attached = PluginClient::attach(config.clone())
        .environment(empty_env())
        .start()
        .await
        .map_err(show)
        .expect("attaches");
    assert!(attached.is_attached());
    assert_eq!(attached.pid(), pid);
    let value = KvClient::new(attached.channel())
        .get(GetRequest {
            key: "hello".into(),
        })
        .await
        .expect("Get")
        .into_inner()
        .value;
    assert_eq!(value, b"world");
    let stopped = attached.stop().await.unwrap();
    assert_eq!(stopped.method, StopMethod::Detached);
    // Dropping an attached client does not touch the process either.
    drop(
        PluginClient::attach(config)
            .environment(empty_env())
            .start()
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pid_alive(pid), "a detached plugin keeps running");
    assert!(socket.exists());

    // Its owner stops it.
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let status = within(CALL, "the plugin's exit", async {
        loop {
            if let Some(status) = plugin.child.try_wait().unwrap() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "the plugin removes its socket");
}

#[tokio::test]
async fn attaching_over_tcp_needs_a_certificate_from_the_plugins_ca() {
    init_tracing();
    let ca = CertificateAuthority::generate(KeyAlgorithm::default(), "reattach test ca").unwrap();
    let server = ca.issue(Role::Server, KeyAlgorithm::default()).unwrap();
    let plugin = start_debug_plugin(&[
        ("PLUGIN_SERVER_TRANSPORTS", "tcp".to_owned()),
        ("PLUGIN_SERVER_CERT", server.cert_pem()),
        ("PLUGIN_SERVER_KEY", server.key_pem()),
        ("PLUGIN_CLIENT_ROOT_CERTS", ca.identity().cert_pem()),
    ]);
    let config = ReattachConfig::from_json(&plugin.json).unwrap();
    assert_eq!(config.endpoint.network(), Network::Tcp);
    assert_eq!(
        config.server_cert.as_deref(),
        Some(server.cert_der().as_ref())
    );

    // A host with a certificate the plugin's CA issued.
    let host = ca.issue(Role::Client, KeyAlgorithm::default()).unwrap();
    let attached = PluginClient::attach(config.clone())
        .environment(empty_env())
        .identity(host)
        .server_ca_roots([ca.certificate().clone()])
        .start()
        .await
        .map_err(show)
        .expect("a host with the CA's certificate attaches");
    assert!(attached.is_tls());
    attached.stop().await.unwrap();

    // A host without a certificate is told what to configure.
    let err = PluginClient::attach(config.clone())
        .environment(empty_env())
        .start()
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("no certificate, no attach");
    assert_eq!(err.kind(), rpcplugin::ErrorKind::Security);
    assert!(common::hint(&err).contains("PLUGIN_CLIENT_ROOT_CERTS"));

    // A host whose certificate another CA issued is refused by the plugin.
    let other = CertificateAuthority::generate(KeyAlgorithm::default(), "stranger").unwrap();
    let err = PluginClient::attach(config)
        .environment(empty_env())
        .identity(other.issue(Role::Client, KeyAlgorithm::default()).unwrap())
        .server_ca_roots([ca.certificate().clone()])
        .start()
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("a stranger's certificate is refused");
    assert_eq!(err.code(), Code::SecurityClientCertRejected);
    assert!(pid_alive(plugin.child.id()));
}

#[tokio::test]
async fn a_debug_mode_plugin_refuses_plaintext_tcp() {
    let output = within(CALL, "kv_plugin --debug", async {
        tokio::process::Command::new(example("kv_plugin"))
            .arg("--debug")
            .env("PLUGIN_SERVER_TRANSPORTS", "tcp")
            .env_remove("PLUGIN_SERVER_CERT")
            .env_remove("PLUGIN_SERVER_KEY")
            .output()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not serve plaintext over tcp"),
        "{stderr}"
    );
    assert!(stderr.contains("PLUGIN_CLIENT_ROOT_CERTS"), "{stderr}");
}

#[tokio::test]
async fn attaching_to_a_plugin_that_exited_says_so() {
    init_tracing();
    let mut plugin = start_debug_plugin(&[]);
    let json = plugin.json.clone();
    let pid = plugin.child.id();
    assert!(common::terminate(pid), "the plugin stops on SIGTERM");
    plugin.child.wait().unwrap();
    assert!(wait_until(CALL, || !pid_alive(pid)).await);
    let err = PluginClient::attach(ReattachConfig::from_json(&json).unwrap())
        .environment(empty_env())
        .start()
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("the plugin is gone");
    assert_eq!(err.code(), Code::ProcessReattachGone);
    assert!(common::hint(&err).contains("debug mode"));
}
