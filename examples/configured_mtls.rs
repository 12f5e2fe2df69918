//! Mutual TLS with certificates from your own CA instead of AutoMTLS.
//!
//! ```text
//! cargo run --example configured_mtls
//! ```
//!
//! AutoMTLS (the default) needs no setup: each launch makes throw-away certificates.
//! Configured certificates are for when someone else must be able to check who is
//! who: plugins reached over TCP from another machine, audited deployments, or a
//! plugin that must only ever talk to hosts your CA vouches for. This program:
//!
//! 1. makes a CA and issues a server certificate (the plugin's) and a client
//!    certificate (the host's) from it, writing them as PEM files;
//! 2. launches itself as the plugin with `PLUGIN_SERVER_CERT`, `PLUGIN_SERVER_KEY`
//!    and `PLUGIN_CLIENT_ROOT_CERTS` in its environment (paths, `file://` URIs and
//!    inline PEM are all accepted; this uses each form once);
//! 3. as the host, presents its CA-issued certificate and accepts only a plugin
//!    certificate issued by the same CA;
//! 4. shows the refusal a host with a certificate from another CA gets.
//!
//! It also pins the plugin executable's SHA-256 before launching it.

use rpcplugin::crypto::{CertificateAuthority, KeyAlgorithm, Role, Sha256};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::tonic::{self, Request, Response, Status};
use std::path::Path;
use std::process::ExitCode;

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");

// ---- the plugin: nothing TLS-specific in its code ------------------------------

struct Store;

#[tonic::async_trait]
impl Kv for Store {
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Ok(Response::new(GetResponse {
            value: b"over CA-verified TLS".to_vec(),
        }))
    }

    async fn put(&self, _: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

fn plugin_main() -> ExitCode {
    // The certificates arrive through PLUGIN_SERVER_CERT and friends.
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service_with(|limits| limits.apply(KvServer::new(Store)))
        .run()
}

// ---- the host ------------------------------------------------------------------

/// The files an operator would deploy: the CA certificate, and each side's
/// certificate and key. Keys are written 0600.
fn write_pki(dir: &Path, ca: &CertificateAuthority) -> Result<(), BoxError> {
    let server = ca.issue(Role::Server, KeyAlgorithm::default())?;
    std::fs::write(dir.join("ca.pem"), ca.identity().cert_pem())?;
    std::fs::write(dir.join("plugin.pem"), server.cert_pem())?;
    write_private(&dir.join("plugin.key"), &server.key_pem())?;
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Any error: rpcplugin's own (with a hint), I/O, or a call's `Status`.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn host_main() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("rpcplugin-pki-{}", std::process::id()));
    let result = run_host(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_host(dir: &Path) -> Result<(), BoxError> {
    std::fs::create_dir(dir)?;
    let ca = CertificateAuthority::generate(KeyAlgorithm::EcdsaP384, "example plugin CA")?;
    write_pki(dir, &ca)?;
    let host_identity = ca.issue(Role::Client, KeyAlgorithm::default())?;

    let me = std::env::current_exe().expect("the path of this program");
    // In production, record the digest when the plugin is installed; here the
    // plugin is this very program.
    let digest = Sha256::of_file(&me)?;
    let plugin_env = |builder: rpcplugin::client::Builder| {
        builder
            .arg("plugin")
            .handshake(COOKIE.0, COOKIE.1)
            .checksum(digest)
            // A file:// URI, a plain path, and inline PEM: all three forms work.
            .env(
                "PLUGIN_SERVER_CERT",
                format!("file://{}", dir.join("plugin.pem").display()),
            )
            .env("PLUGIN_SERVER_KEY", dir.join("plugin.key"))
            .env("PLUGIN_CLIENT_ROOT_CERTS", ca.identity().cert_pem())
    };

    let plugin = plugin_env(rpcplugin::plugin_client(&me))
        .identity(host_identity)
        .server_ca_roots([ca.certificate().clone()])
        .start()
        .await?;
    let reply = KvClient::new(plugin.channel())
        .get(GetRequest { key: "k".into() })
        .await?;
    println!(
        "plugin pid {} (mutual TLS: {}) says: {}",
        plugin.pid(),
        plugin.is_tls(),
        String::from_utf8_lossy(&reply.into_inner().value)
    );
    plugin.stop().await?;

    // A host whose certificate another CA issued is turned away by the plugin.
    let stranger = CertificateAuthority::generate(KeyAlgorithm::default(), "someone else")?
        .issue(Role::Client, KeyAlgorithm::default())?;
    match plugin_env(rpcplugin::plugin_client(&me))
        .identity(stranger)
        .server_ca_roots([ca.certificate().clone()])
        .start()
        .await
    {
        Ok(_) => println!("unexpected: the plugin accepted a stranger"),
        Err(err) => println!(
            "a host with another CA's certificate gets:\n{}",
            rpcplugin::render(&err)
        ),
    }
    Ok(())
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("plugin") {
        return plugin_main();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match runtime.block_on(host_main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", rpcplugin::render(&*err));
            ExitCode::FAILURE
        }
    }
}
