//! Transport options (pyvider-rpcplugin's example 04): a Unix socket, loopback TCP
//! within a port range, how host and plugin agree on one, and where a custom
//! transport fits.
//!
//! ```text
//! cargo run --example transport_options
//! ```
//!
//! What to notice in the output:
//! - `unix:` the default: a socket in a directory only this user can open, gone
//!   once the plugin stops;
//! - `tcp:` with `PLUGIN_SERVER_TRANSPORTS=tcp` for the plugin, it listens on
//!   127.0.0.1 only, on a port inside the host's range (`PLUGIN_MIN_PORT` and
//!   `PLUGIN_MAX_PORT`, which the host passes on);
//! - `negotiation:` the plugin picks the first transport in its own list and
//!   announces it on its handshake line; a host that does not accept that one
//!   refuses it, with a hint naming both settings;
//! - custom transports (an abstract Unix socket, vsock, ...) are their own example:
//!   `cargo run --example abstract_socket`.
//!
//! As in `quick_start.rs`, this program is both halves: run plainly it is the host,
//! and it starts itself with the argument `plugin` as the plugin.

use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::tonic::{self, Request, Response, Status};
use rpcplugin::{Endpoint, Network};
use std::process::ExitCode;

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");

// ---- the plugin -------------------------------------------------------------

/// Answers each key with itself.
struct Echo;

#[tonic::async_trait]
impl Kv for Echo {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Ok(Response::new(GetResponse {
            value: req.into_inner().key.into_bytes(),
        }))
    }

    async fn put(&self, _: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

fn plugin_main() -> ExitCode {
    // No transport in code: the plugin follows PLUGIN_SERVER_TRANSPORTS, else a
    // Unix socket. `.transports([Network::Tcp])` would fix it in code instead.
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service(KvServer::new(Echo))
        .run()
}

// ---- the host ---------------------------------------------------------------

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A host builder for this program as its plugin.
fn host() -> Result<rpcplugin::client::Builder, BoxError> {
    Ok(rpcplugin::plugin_client(std::env::current_exe()?)
        .arg("plugin")
        .handshake(COOKIE.0, COOKIE.1))
}

/// Starts the plugin, makes one call, stops it; returns where it served.
async fn call_once(builder: rpcplugin::client::Builder) -> Result<Endpoint, BoxError> {
    let plugin = builder.start().await?;
    let endpoint = plugin.endpoint().clone();
    let mut kv = rpcplugin::client::new_client!(KvClient, plugin);
    let reply = kv.get(GetRequest { key: "ping".into() }).await?;
    assert_eq!(reply.into_inner().value, b"ping");
    plugin.stop().await?;
    Ok(endpoint)
}

async fn host_main() -> Result<(), BoxError> {
    // The default: a Unix socket in a private directory.
    let endpoint = call_once(host()?).await?;
    if let Endpoint::Unix(path) = &endpoint {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = path.parent().ok_or("a socket directory")?;
        println!("unix: served at {}", path.display());
        // Checked after the stop: the directory went with the plugin.
        println!(
            "unix: socket directory {} after the stop",
            if dir.exists() {
                format!(
                    "still there (mode {:o})",
                    dir.metadata()?.permissions().mode() & 0o777
                )
            } else {
                "gone".to_owned()
            }
        );
    } else {
        return Err(format!("expected a Unix socket, got {endpoint}").into());
    }

    // Loopback TCP, within a port range.
    let (min, max) = (20000, 20100);
    let endpoint = call_once(
        host()?
            .env("PLUGIN_SERVER_TRANSPORTS", "tcp")
            .port_range(min, max),
    )
    .await?;
    match endpoint {
        Endpoint::Tcp(address) => println!(
            "tcp: served at {address}: loopback {}, port in {min}..={max} {}",
            address.ip().is_loopback(),
            (min..=max).contains(&address.port())
        ),
        other => return Err(format!("expected TCP, got {other}").into()),
    }

    // The plugin chooses, the host accepts or refuses.
    let refused = call_once(
        host()?
            .env("PLUGIN_SERVER_TRANSPORTS", "tcp")
            .client_transports([Network::Unix]),
    )
    .await
    .expect_err("a host that accepts Unix only refuses a TCP plugin");
    println!("negotiation: a Unix-only host and a TCP plugin:");
    println!("{}", rpcplugin::render(&*refused));
    let endpoint = call_once(
        host()?
            .env("PLUGIN_SERVER_TRANSPORTS", "tcp,unix")
            .client_transports([Network::Unix, Network::Tcp]),
    )
    .await?;
    println!(
        "negotiation: plugin prefers tcp then unix, host accepts both: {}",
        endpoint.network().as_str()
    );
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
