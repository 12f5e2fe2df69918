//! A transport defined outside rpcplugin: the plugin serves on a Linux abstract
//! Unix socket, and the host dials it with its own connector, brokered
//! connections included.
//!
//! ```text
//! cargo run --example abstract_socket          the host; it starts itself as the plugin
//! abstract_socket plugin                       the plugin (a host must start it)
//! ```
//!
//! The transport itself is `abstract_socket/transport.rs`: a plugin-side
//! [`Transport`](rpcplugin::transport::Transport) yielding connections through
//! `Listener::new(endpoint, accept)`, and a host-side connector, a tower
//! `Service<Endpoint>`. The wiring is four builder calls:
//!
//! - plugin: `.transport(AbstractTransport)` (its main server and the services it
//!   brokers) and `.connector(network, AbstractConnector)` (its brokered dials);
//! - host: `.connector(network, AbstractConnector)` (the plugin, and what the plugin
//!   brokers) and `.broker_transport(AbstractTransport)` (what the host brokers).
//!
//! The handshake line then announces the network `abstract` and the socket's name.
//! A host without a connector for `abstract` refuses the plugin with
//! `transport.no_connector`, whose hint names `.connector(..)`.
//!
//! Security: an abstract socket has no file permissions, so any process in the
//! network namespace may connect. The transport drops connections from other users
//! (it checks `SO_PEERCRED`) and AutoMTLS stays on (the default), so each side
//! still talks only to the exact peer whose certificate it was given.
//!
//! The host prints the network and address from the handshake, whether TLS is on,
//! that no socket file exists, the results of a call in each brokered direction,
//! and that the plugin and its socket are gone after stop; it exits 0 only if all
//! of that held.

#[path = "abstract_socket/transport.rs"]
mod transport;

use anyhow::{Context as _, ensure};
use rpcplugin::proto::examples::counter::add_helper_client::AddHelperClient;
use rpcplugin::proto::examples::counter::add_helper_server::{AddHelper, AddHelperServer};
use rpcplugin::proto::examples::counter::counter_client::CounterClient;
use rpcplugin::proto::examples::counter::counter_server::{Counter, CounterServer};
use rpcplugin::proto::examples::counter::{
    Empty, GetRequest, GetResponse, PutRequest, ServeHelperResponse, SumRequest, SumResponse,
    TicksRequest,
};
use rpcplugin::server::{BrokeredServer, GrpcBroker};
use rpcplugin::tonic::service::Routes;
use rpcplugin::tonic::{self, Request, Response, Status};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Mutex;
use transport::{AbstractConnector, AbstractTransport};

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");

// ---- both sides ---------------------------------------------------------------

/// Adds two numbers; served through the broker by either side.
struct Adder;

#[tonic::async_trait]
impl AddHelper for Adder {
    async fn sum(&self, request: Request<SumRequest>) -> Result<Response<SumResponse>, Status> {
        let SumRequest { a, b } = request.into_inner();
        let r = a
            .checked_add(b)
            .ok_or_else(|| Status::out_of_range("the sum overflows"))?;
        Ok(Response::new(SumResponse { r }))
    }

    type TicksStream = tokio_stream::Empty<Result<SumResponse, Status>>;

    async fn ticks(&self, _: Request<TicksRequest>) -> Result<Response<Self::TicksStream>, Status> {
        Err(Status::unimplemented("not used in this example"))
    }
}

// ---- the plugin ---------------------------------------------------------------

/// A counter that adds with the host's helper (plugin -> host) and serves a
/// helper of its own on request (host -> plugin).
struct CounterPlugin {
    broker: GrpcBroker,
    values: Mutex<HashMap<String, i64>>,
    helpers: Mutex<Vec<BrokeredServer>>,
}

#[tonic::async_trait]
impl Counter for CounterPlugin {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = request.into_inner().key;
        let value = self.values.lock().unwrap().get(&key).copied().unwrap_or(0);
        Ok(Response::new(GetResponse { value }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest {
            add_server,
            key,
            value,
        } = request.into_inner();
        // Dialled with the plugin's AbstractConnector: the host brokers its
        // helper on an abstract socket too.
        let channel = self
            .broker
            .dial(add_server)
            .await
            .map_err(|e| Status::unavailable(rpcplugin::render(&e)))?;
        let current = self.values.lock().unwrap().get(&key).copied().unwrap_or(0);
        let sum = AddHelperClient::new(channel)
            .sum(SumRequest {
                a: current,
                b: value,
            })
            .await?
            .into_inner()
            .r;
        self.values.lock().unwrap().insert(key, sum);
        Ok(Response::new(Empty {}))
    }

    async fn serve_helper(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<ServeHelperResponse>, Status> {
        let id = self.broker.next_id();
        // Bound with the plugin's transport: a new abstract socket.
        let server = self
            .broker
            .accept_and_serve(id, Routes::new(AddHelperServer::new(Adder)))
            .await
            .map_err(|e| Status::unavailable(rpcplugin::render(&e)))?;
        self.helpers.lock().unwrap().push(server);
        Ok(Response::new(ServeHelperResponse { broker_id: id }))
    }
}

fn plugin_main() -> ExitCode {
    let builder = rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .transport(AbstractTransport)
        .connector(transport::network(), AbstractConnector);
    let counter = CounterPlugin {
        broker: builder.broker(),
        values: Mutex::default(),
        helpers: Mutex::default(),
    };
    builder.add_service(CounterServer::new(counter)).run()
}

// ---- the host -----------------------------------------------------------------

/// Whether `/proc/net/unix` lists the abstract socket `name` (shown there as `@name`).
fn listed(name: &str) -> bool {
    let wanted = format!("@{name}");
    std::fs::read_to_string("/proc/net/unix")
        .map(|table| {
            table
                .lines()
                .any(|l| l.split_whitespace().last() == Some(&wanted))
        })
        .unwrap_or(false)
}

async fn host_main() -> anyhow::Result<()> {
    let me = std::env::current_exe().context("the path of this program")?;
    let plugin = rpcplugin::plugin_client(me)
        .arg("plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .connector(transport::network(), AbstractConnector)
        .broker_transport(AbstractTransport)
        .start()
        .await?;
    let pid = plugin.pid();
    let endpoint = plugin.endpoint().clone();
    let name = endpoint.to_string();
    println!("handshake: network {} address {name}", endpoint.network());
    println!(
        "tls: {}",
        if plugin.is_tls() {
            "on (AutoMTLS)"
        } else {
            "off"
        }
    );
    ensure!(plugin.is_tls(), "AutoMTLS is the default and must be on");
    ensure!(
        !std::path::Path::new(&name).exists() && listed(&name),
        "the plugin's socket should be abstract (in /proc/net/unix, not on disk)"
    );
    println!("socket file: none (/proc/net/unix lists @{name})");

    // Plugin -> host: the host brokers its helper (an abstract socket of its own),
    // the plugin dials it while serving Put.
    let broker = plugin.broker();
    let mut counter = CounterClient::new(plugin.channel());
    for value in [1, 2] {
        let id = broker.next_id();
        let server = broker
            .accept_and_serve(id, Routes::new(AddHelperServer::new(Adder)))
            .await?;
        ensure!(
            server.endpoint().network() == transport::network(),
            "the host's brokered server is bound with its broker transport"
        );
        counter
            .put(PutRequest {
                add_server: id,
                key: "hello".into(),
                value,
            })
            .await
            .context("Put, which makes the plugin dial the host's helper")?;
        server.stop().await;
    }
    let value = counter
        .get(GetRequest {
            key: "hello".into(),
        })
        .await?
        .into_inner()
        .value;
    println!("plugin -> host (brokered): hello = {value}");
    ensure!(value == 3, "1 + 2 should be 3, got {value}");

    // Host -> plugin: the plugin brokers a helper, the host dials it.
    let id = counter.serve_helper(Empty {}).await?.into_inner().broker_id;
    let sum = AddHelperClient::new(broker.dial(id).await?)
        .sum(SumRequest { a: 40, b: 2 })
        .await?
        .into_inner()
        .r;
    println!("host -> plugin (brokered): 40 + 2 = {sum}");
    ensure!(sum == 42, "40 + 2 should be 42, got {sum}");

    let stopped = plugin.stop().await?;
    let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
    println!(
        "stopped: {:?}; plugin pid {pid} {}; @{name} {}",
        stopped.method,
        if gone { "gone" } else { "still running" },
        if listed(&name) {
            "still listed"
        } else {
            "gone"
        },
    );
    ensure!(gone && !listed(&name), "nothing may be left behind");
    Ok(())
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("plugin") {
        return plugin_main();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(host_main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // rpcplugin's errors inside carry hints; render them with the chain.
            eprintln!("abstract_socket: {err:#}");
            ExitCode::FAILURE
        }
    }
}
