//! Security as a user meets it: AutoMTLS on by default, every refusal with its
//! message and hint, configured CA certificates, executable checksums, and sockets
//! other users cannot reach. Real plugin processes throughout.

mod common;

use rpcplugin::Code;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{COOKIE, example, exec_recording_pid, hint, kv_plugin, pid_alive, read_pid, show};
use rpcplugin::crypto::{
    CertOptions, CertificateAuthority, Identity, KeyAlgorithm, Role, Sha256, client_config_pinned,
};
use rpcplugin::handshake::HandshakeLine;
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest};
use rpcplugin::proto::health::v1::HealthCheckRequest;
use rpcplugin::proto::health::v1::health_client::HealthClient;
use rpcplugin::tonic::transport::{Channel, Uri};
use rpcplugin::transport::rustls::ClientConfig;
use rpcplugin::transport::rustls::pki_types::ServerName;
use rpcplugin::transport::{DEFAULT_TLS_HANDSHAKE_TIMEOUT, TlsFailure};
use rpcplugin::{Endpoint, ErrorKind};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(20);

async fn start_err(builder: rpcplugin::client::Builder) -> rpcplugin::Error {
    match common::within(LIMIT, "start", builder.start()).await {
        Ok(client) => panic!("expected a refusal, the plugin started: {client:?}"),
        Err(err) => show(err),
    }
}

async fn put_get(channel: Channel) {
    let mut kv = KvClient::new(channel);
    kv.put(PutRequest {
        key: "k".into(),
        value: b"v".to_vec(),
    })
    .await
    .unwrap();
    let value = kv
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner()
        .value;
    assert_eq!(value, b"v");
}

/// kv_plugin started by hand, as a foreign host would: our environment, our line
/// reading. Killed on drop.
struct RawPlugin {
    child: Child,
    line: HandshakeLine,
}

async fn launch_raw(vars: &[(&str, &str)]) -> RawPlugin {
    let mut child = Command::new(example("kv_plugin"))
        .env(COOKIE.0, COOKIE.1)
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    common::within(LIMIT, "handshake line", stdout.read_line(&mut line))
        .await
        .unwrap();
    let line = HandshakeLine::parse(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
    RawPlugin { child, line }
}

impl Drop for RawPlugin {
    fn drop(&mut self) {
        // SIGTERM (not kill_on_drop's SIGKILL), so the plugin removes its socket
        // directory as it exits.
        if let Ok(None) = self.child.try_wait()
            && let Some(pid) = self.child.id()
        {
            common::terminate(pid);
        }
    }
}

impl RawPlugin {
    /// Stops the plugin and returns what it wrote on stderr.
    async fn stderr(mut self) -> String {
        // SIGTERM, so the plugin removes its socket directory as it exits.
        if let Some(pid) = self.child.id() {
            tokio::task::spawn_blocking(move || common::terminate(pid))
                .await
                .unwrap();
        }
        let _ = self.child.wait().await;
        let mut text = String::new();
        let mut stderr = self.child.stderr.take().unwrap();
        let _ = stderr.read_to_string(&mut text).await;
        text
    }
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        out.push_str(&format!("\n  -> {e} [{e:?}]"));
        cur = e.source();
    }
    out
}

/// A channel to `endpoint` made without the client library, TLS or not.
async fn raw_channel(endpoint: Endpoint, tls: Option<Arc<ClientConfig>>) -> Channel {
    let connector = tower::service_fn(move |_: Uri| {
        let (endpoint, tls) = (endpoint.clone(), tls.clone());
        async move {
            let stream = rpcplugin::transport::connect(&endpoint).await?;
            let stream = match tls {
                None => stream,
                Some(config) => stream
                    .connect_tls(
                        config,
                        ServerName::try_from("localhost").unwrap(),
                        DEFAULT_TLS_HANDSHAKE_TIMEOUT,
                    )
                    .await
                    .map_err(|e| {
                        rpcplugin::Error::new(rpcplugin::Code::SecurityTls, "tls").with_source(e)
                    })?,
            };
            Ok::<_, rpcplugin::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    rpcplugin::tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector_lazy(connector)
}

async fn health(channel: Channel) -> Result<i32, rpcplugin::tonic::Status> {
    let request = HealthCheckRequest {
        service: "plugin".into(),
    };
    let mut client = HealthClient::new(channel);
    common::within(LIMIT, "health check", client.check(request))
        .await
        .map(|r| r.into_inner().status)
}

fn expired(role: Role) -> Identity {
    let day = Duration::from_secs(86_400);
    let past = CertOptions::new(KeyAlgorithm::default())
        .not_before(std::time::SystemTime::now() - 30 * day)
        .validity(day);
    Identity::self_signed_with(role, &past).unwrap()
}

#[tokio::test]
async fn automtls_is_the_default_and_plaintext_clients_are_refused() {
    common::init_tracing();
    let plugin = common::within(LIMIT, "start", kv_plugin().start())
        .await
        .unwrap();
    assert!(
        plugin.is_tls(),
        "a host asks for mutual TLS unless told not to"
    );
    assert!(plugin.handshake().server_cert.is_some());

    // Someone else on the machine who can reach the socket, without the host's
    // certificate, gets nowhere...
    let plaintext = raw_channel(plugin.endpoint().clone(), None).await;
    let status = health(plaintext).await.unwrap_err();
    println!("plaintext client: {status}");
    assert_ne!(status.code(), rpcplugin::tonic::Code::Ok);

    // ...while the host's calls work.
    put_get(plugin.channel()).await;
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn explicit_plaintext_still_works_for_plugins_without_tls() {
    let plugin = common::within(LIMIT, "start", kv_plugin().auto_mtls(false).start())
        .await
        .unwrap();
    assert!(!plugin.is_tls());
    assert_eq!(plugin.handshake().server_cert, None);
    put_get(plugin.channel()).await;
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn the_plugin_refuses_a_client_with_another_certificate() {
    let host = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
    let intruder = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
    let plugin = launch_raw(&[("PLUGIN_CLIENT_CERT", &host.cert_pem())]).await;
    let server_cert = plugin
        .line
        .server_cert
        .clone()
        .expect("announces a certificate");
    let endpoint = plugin.line.endpoint.clone();

    let wrong = client_config_pinned(&intruder, server_cert.clone().into()).unwrap();
    let status = health(raw_channel(endpoint.clone(), Some(wrong)).await)
        .await
        .unwrap_err();
    let failure = TlsFailure::find(&status)
        .unwrap_or_else(|| panic!("not a TLS failure: {status:?} {}", chain(&status)));
    println!("intruder sees: {failure}");
    assert!(failure.is_certificate_problem(), "{failure:?}");

    let right = client_config_pinned(&host, server_cert.into()).unwrap();
    assert_eq!(
        health(raw_channel(endpoint, Some(right)).await)
            .await
            .unwrap(),
        1, // SERVING
    );
    let stderr = plugin.stderr().await;
    assert!(
        stderr.contains("refused a TLS connection"),
        "the plugin logs the refusal: {stderr}"
    );
}

#[tokio::test]
async fn the_plugin_refuses_an_expired_host_certificate_at_start() {
    let mut child = Command::new(example("kv_plugin"))
        .env(COOKIE.0, COOKIE.1)
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("PLUGIN_CLIENT_CERT", expired(Role::Client).cert_pem())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = common::within(LIMIT, "plugin exit", async {
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .await
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        (child.wait().await.unwrap(), stdout, stderr)
    })
    .await;
    let (status, stdout, stderr) = output;
    println!("{stderr}");
    assert_eq!(status.code(), Some(1));
    assert_eq!(stdout, "", "no handshake line for a host it cannot trust");
    assert!(stderr.contains("PLUGIN_CLIENT_CERT"), "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
}

#[tokio::test]
async fn the_host_refuses_to_present_an_expired_certificate() {
    let err = start_err(kv_plugin().identity(expired(Role::Client))).await;
    assert_eq!(err.code(), Code::CryptoCertExpired);
    assert_eq!(err.kind(), ErrorKind::Security);
    assert!(err.to_string().contains("host's certificate"), "{err}");
    assert!(hint(&err).contains("issue a new certificate"));
}

#[tokio::test]
async fn the_host_refuses_a_plugin_that_answers_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let args = exec_recording_pid(&pid_file, &example("kv_plugin"), &[]);
    // The plugin was told not to do AutoMTLS; the host did not agree to plaintext.
    let builder = rpcplugin::plugin_client("sh")
        .args(&args)
        .name("kv_plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .env("PLUGIN_AUTO_MTLS", "false");
    let err = start_err(builder).await;
    assert_eq!(err.kind(), ErrorKind::Security);
    assert_eq!(err.code(), Code::SecurityPlaintextHandshake);
    assert!(err.to_string().contains("plaintext"), "{err}");
    assert!(hint(&err).contains("does not fall back to plaintext"));
    assert!(hint(&err).contains("handshake line was"), "shows the line");
    let pid = read_pid(&pid_file);
    assert!(
        common::wait_until(Duration::from_secs(3), || !pid_alive(pid)).await,
        "the refused plugin {pid} was stopped"
    );
}

#[tokio::test]
async fn the_host_refuses_a_server_presenting_another_certificate() {
    // The plugin serves certificate B but its line announces A: what the host sees
    // if something other than its plugin answers. A shell pipeline rewrites field 6.
    let announced = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
    let served = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
    let line = HandshakeLine::new(1, Endpoint::Tcp("127.0.0.1:1".parse().unwrap()))
        .with_server_cert(announced.cert_der().to_vec())
        .encode();
    let fake_field = line.trim_end().rsplit('|').next().unwrap().to_owned();
    let builder = rpcplugin::plugin_client("sh")
        .arg("-c")
        .arg(r#""$0" | sed -u "s#|[^|]*\$#|$FAKE_CERT#""#)
        .arg(example("kv_plugin"))
        .name("kv_plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .env("FAKE_CERT", fake_field)
        .env("PLUGIN_SERVER_CERT", served.cert_pem())
        .env("PLUGIN_SERVER_KEY", served.key_pem());
    let err = start_err(builder).await;
    assert_eq!(err.kind(), ErrorKind::Security);
    assert_eq!(err.code(), Code::SecurityServerCertRejected);
    assert!(
        err.to_string().contains("not the pinned certificate"),
        "{err}"
    );
    assert!(hint(&err).contains("exactly the certificate it announced"));
}

#[tokio::test]
async fn a_checksum_mismatch_refuses_to_launch_and_names_both_digests() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = dir.path().join("plugin.sh");
    std::fs::write(&script, "#!/bin/sh\ntouch \"$MARKER\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let actual = Sha256::of_file(&script).unwrap();
    let expected: Sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
        .parse()
        .unwrap();

    let builder = rpcplugin::plugin_client(&script)
        .handshake(COOKIE.0, COOKIE.1)
        .env("MARKER", &marker)
        .checksum(expected);
    let err = start_err(builder).await;
    assert_eq!(err.kind(), ErrorKind::Security);
    assert_eq!(err.code(), Code::SecurityChecksumMismatch);
    let text = err.to_string();
    assert!(text.contains(&actual.to_string()), "{text}");
    assert!(text.contains(&expected.to_string()), "{text}");
    assert!(hint(&err).contains("sha256sum"));
    assert!(!marker.exists(), "the plugin must not have run");
}

#[tokio::test]
async fn a_matching_checksum_launches_the_plugin() {
    let path = example("kv_plugin");
    let digest = Sha256::of_file(&path).unwrap();
    let plugin = common::within(LIMIT, "start", kv_plugin().checksum(digest).start())
        .await
        .unwrap();
    put_get(plugin.channel()).await;
    plugin.stop().await.unwrap();
}

/// Certificates from a CA, in the three forms PLUGIN_* variables accept.
struct Pki {
    _dir: tempfile::TempDir,
    ca: CertificateAuthority,
    vars: Vec<(&'static str, String)>,
}

fn plugin_pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate(KeyAlgorithm::EcdsaP384, "rpcplugin test CA").unwrap();
    let server = ca.issue(Role::Server, KeyAlgorithm::default()).unwrap();
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert, server.cert_pem()).unwrap();
    std::fs::write(&key, server.key_pem()).unwrap();
    let vars = vec![
        ("PLUGIN_SERVER_CERT", format!("file://{}", cert.display())),
        ("PLUGIN_SERVER_KEY", key.display().to_string()),
        ("PLUGIN_CLIENT_ROOT_CERTS", ca.identity().cert_pem()),
    ];
    Pki {
        _dir: dir,
        ca,
        vars,
    }
}

fn with_vars(
    mut builder: rpcplugin::client::Builder,
    vars: &[(&str, String)],
) -> rpcplugin::client::Builder {
    for (k, v) in vars {
        builder = builder.env(k, v);
    }
    builder
}

#[tokio::test]
async fn configured_ca_certificates_work_and_a_foreign_host_is_refused() {
    let pki = plugin_pki();
    let host = pki.ca.issue(Role::Client, KeyAlgorithm::default()).unwrap();
    let builder = with_vars(kv_plugin(), &pki.vars)
        .identity(host)
        .server_ca_roots([pki.ca.certificate().clone()]);
    let plugin = common::within(LIMIT, "start", builder.start())
        .await
        .unwrap();
    assert!(plugin.is_tls());
    put_get(plugin.channel()).await;
    plugin.stop().await.unwrap();

    // A host whose certificate comes from another CA.
    let other_ca = CertificateAuthority::generate(KeyAlgorithm::default(), "other CA").unwrap();
    let foreign = other_ca
        .issue(Role::Client, KeyAlgorithm::default())
        .unwrap();
    let builder = with_vars(kv_plugin(), &pki.vars)
        .identity(foreign)
        .server_ca_roots([pki.ca.certificate().clone()]);
    let err = start_err(builder).await;
    assert_eq!(err.kind(), ErrorKind::Security);
    assert_eq!(err.code(), Code::SecurityClientCertRejected);
    assert!(hint(&err).contains("PLUGIN_CLIENT_ROOT_CERTS"));
}

#[tokio::test]
async fn a_host_expecting_another_ca_refuses_the_plugin() {
    let pki = plugin_pki();
    let other_ca = CertificateAuthority::generate(KeyAlgorithm::default(), "other CA").unwrap();
    let host = pki.ca.issue(Role::Client, KeyAlgorithm::default()).unwrap();
    let builder = with_vars(kv_plugin(), &pki.vars)
        .identity(host)
        .server_ca_roots([other_ca.certificate().clone()]);
    let err = start_err(builder).await;
    assert_eq!(err.code(), Code::SecurityServerCertRejected);
    assert!(err.to_string().contains("trusted ca"), "{err}");
    assert!(hint(&err).contains("PLUGIN_SERVER_ROOT_CERTS"));
}

/// The host's TLS as one value works as the setters do, and a setter after it
/// changes its one part only.
#[tokio::test]
async fn a_tls_config_value_is_what_the_setters_set() {
    let pki = plugin_pki();
    let host = pki.ca.issue(Role::Client, KeyAlgorithm::default()).unwrap();
    let config = rpcplugin::TlsConfig::new()
        .identity(host)
        .ca_roots([pki.ca.certificate().clone()]);
    let builder = with_vars(kv_plugin(), &pki.vars).tls(config.clone());
    let plugin = common::within(LIMIT, "start", builder.start())
        .await
        .unwrap();
    assert!(plugin.is_tls());
    put_get(plugin.channel()).await;
    plugin.stop().await.unwrap();

    let other_ca = CertificateAuthority::generate(KeyAlgorithm::default(), "other CA").unwrap();
    let builder = with_vars(kv_plugin(), &pki.vars)
        .tls(config)
        .server_ca_roots([other_ca.certificate().clone()]);
    let err = start_err(builder).await;
    assert_eq!(err.code(), Code::SecurityServerCertRejected);

    let plaintext = kv_plugin().tls(rpcplugin::TlsConfig::new().auto_mtls(false));
    let plugin = common::within(LIMIT, "start", plaintext.start())
        .await
        .unwrap();
    assert!(!plugin.is_tls());
    plugin.stop().await.unwrap();
}

// ---- socket privacy: another uid cannot connect --------------------------------

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;
const DAEMON_GROUP: u32 = 1;

/// Tries to connect to `socket` as `uid`/`gid` (no supplementary groups) and says
/// what happened: "connected", "denied", or an error.
fn connect_as(uid: u32, gid: u32, socket: &Path) -> String {
    use std::os::unix::process::CommandExt;
    let script = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX)\n\
                  try:\n    s.connect(sys.argv[1]); print('connected')\n\
                  except PermissionError: print('denied')\n\
                  except Exception as e: print('error', e)\n";
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(socket)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test]
async fn another_user_cannot_connect_to_the_plugin_socket() {
    if !running_as_root() {
        eprintln!("SKIP: switching to another uid needs root");
        return;
    }
    // A directory anyone may enter, so the socket's own mode is what is tested.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir_text = dir.path().display().to_string();
    let plugin = launch_raw(&[("PLUGIN_UNIX_SOCKET_DIR", &dir_text)]).await;
    let socket = common::socket_path(&plugin.line.endpoint);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", socket.display());
    assert_eq!(connect_as(NOBODY, NOGROUP, &socket), "denied");
    assert_eq!(connect_as(0, 0, &socket), "connected", "the owner can");

    // Without a directory given, the plugin's own is private too.
    let private = launch_raw(&[]).await;
    let socket = common::socket_path(&private.line.endpoint);
    assert_eq!(connect_as(NOBODY, NOGROUP, &socket), "denied");
    drop((plugin, private));
}

#[tokio::test]
async fn the_configured_group_can_connect_and_no_one_else() {
    if !running_as_root() {
        eprintln!("SKIP: switching to another uid needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), None, Some(NOGROUP)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
    let dir_text = dir.path().display().to_string();
    let plugin = launch_raw(&[
        ("PLUGIN_UNIX_SOCKET_DIR", &dir_text),
        ("PLUGIN_UNIX_SOCKET_GROUP", "nogroup"),
    ])
    .await;
    let socket = common::socket_path(&plugin.line.endpoint);
    assert_eq!(connect_as(NOBODY, NOGROUP, &socket), "connected");
    assert_eq!(connect_as(NOBODY, DAEMON_GROUP, &socket), "denied");
    drop(plugin);
}

#[test]
fn the_configured_mtls_example_runs_and_shows_the_refusal() {
    let output = std::process::Command::new(example("configured_mtls"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("(mutual TLS: true) says: over CA-verified TLS"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refused this host's certificate"),
        "{stdout}"
    );
}
