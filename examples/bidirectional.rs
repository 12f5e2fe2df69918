//! A plugin that calls back into its host through the broker, in the shape of
//! go-plugin's `examples/bidirectional` (the counter): the host serves
//! `counter.v1.AddHelper` under a broker id and passes the id in `Put`; the plugin
//! dials that id and calls `Sum` while serving the host's request. The other
//! direction too: `ServeHelper` makes the plugin serve an `AddHelper` of its own
//! under a new id, which the host dials.
//!
//! ```text
//! bidirectional                    the host, running this same program as its plugin
//! bidirectional plugin             the plugin (a host must start it)
//! bidirectional host [--automtls] [--multiplex] [--no-serve-helper] [--cookie KEY=VALUE] -- PLUGIN_COMMAND [ARGS...]
//! ```
//!
//! The host puts 1 then 2 under `hello` (the plugin adds them with the host's
//! helper), prints `hello = 3`, asks the plugin to serve its own helper and prints
//! `plugin helper: 40 + 2 = 42`, stops the plugin, and exits 0 only if both sums
//! are right, its helper was called by the plugin, and the plugin is gone.
//! `--no-serve-helper` skips the second part (for plugins without it).
//! `--multiplex` asks for go-plugin 1.6's multiplexed broker: every brokered
//! connection then runs inside the one connection to the plugin.
//! Cookie `BASIC_PLUGIN=hello`, app protocol version 1, as go-plugin's example.

use anyhow::{Context, bail, ensure};
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
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Adds numbers; counts its calls so the host can tell the plugin called it.
#[derive(Clone, Default)]
struct Adder {
    calls: Arc<AtomicUsize>,
}

type SumStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<SumResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AddHelper for Adder {
    async fn sum(&self, request: Request<SumRequest>) -> Result<Response<SumResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let SumRequest { a, b } = request.into_inner();
        let r = a
            .checked_add(b)
            .ok_or_else(|| Status::out_of_range("the sum overflows"))?;
        Ok(Response::new(SumResponse { r }))
    }

    type TicksStream = SumStream;

    async fn ticks(
        &self,
        request: Request<TicksRequest>,
    ) -> Result<Response<Self::TicksStream>, Status> {
        let TicksRequest { count, interval_ms } = request.into_inner();
        // Bounded whatever the caller asks: at most 100 000 ticks, 10 s apart.
        let count = i64::from(count.min(100_000));
        let interval = Duration::from_millis(u64::from(interval_ms.min(10_000)));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for r in 1..=count {
                if tx.send(Ok(SumResponse { r })).await.is_err() {
                    break;
                }
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// The plugin's counter: each Put asks the host's helper for the new value.
struct CounterPlugin {
    broker: GrpcBroker,
    values: Mutex<HashMap<String, i64>>,
    /// Helpers served for the host by ServeHelper, kept until the plugin stops.
    helpers: Mutex<Vec<BrokeredServer>>,
}

fn unavailable(err: &rpcplugin::Error) -> Status {
    Status::unavailable(rpcplugin::render(err))
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
        let channel = self
            .broker
            .dial(add_server)
            .await
            .map_err(|e| unavailable(&e))?;
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
        _request: Request<Empty>,
    ) -> Result<Response<ServeHelperResponse>, Status> {
        let id = self.broker.next_id();
        let server = self
            .broker
            .accept_and_serve(id, Routes::new(AddHelperServer::new(Adder::default())))
            .await
            .map_err(|e| unavailable(&e))?;
        self.helpers.lock().unwrap().push(server);
        Ok(Response::new(ServeHelperResponse { broker_id: id }))
    }
}

fn serve_plugin() -> ExitCode {
    let builder = rpcplugin::plugin_server()
        .handshake("BASIC_PLUGIN", "hello")
        .protocol_version(1);
    let counter = CounterPlugin {
        broker: builder.broker(),
        values: Mutex::default(),
        helpers: Mutex::default(),
    };
    builder.add_service(CounterServer::new(counter)).run()
}

struct HostArgs {
    automtls: bool,
    multiplex: bool,
    serve_helper: bool,
    cookie: (String, String),
    command: Vec<String>,
}

fn parse_host_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<HostArgs> {
    let mut parsed = HostArgs {
        automtls: false,
        multiplex: false,
        serve_helper: true,
        cookie: ("BASIC_PLUGIN".to_owned(), "hello".to_owned()),
        command: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--automtls" => parsed.automtls = true,
            "--multiplex" => parsed.multiplex = true,
            "--no-serve-helper" => parsed.serve_helper = false,
            "--cookie" => {
                let value = args.next().context("--cookie needs KEY=VALUE")?;
                let (k, v) = value.split_once('=').context("--cookie needs KEY=VALUE")?;
                parsed.cookie = (k.to_owned(), v.to_owned());
            }
            "--" => parsed.command.extend(args.by_ref()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    ensure!(
        !parsed.command.is_empty(),
        "usage: bidirectional host [--automtls] [--multiplex] [--no-serve-helper] [--cookie KEY=VALUE] -- PLUGIN_COMMAND [ARGS...]"
    );
    Ok(parsed)
}

async fn run_host(args: HostArgs) -> anyhow::Result<()> {
    let plugin = rpcplugin::plugin_client(&args.command[0])
        .args(&args.command[1..])
        .handshake(&args.cookie.0, &args.cookie.1)
        .protocol_versions([1])
        .auto_mtls(args.automtls)
        .multiplex_grpc(args.multiplex)
        .start()
        .await?;
    let pid = plugin.pid();
    eprintln!(
        "bidirectional: plugin {} (pid {pid}) at {} ({}{})",
        plugin.name(),
        plugin.endpoint(),
        if plugin.broker().is_multiplexed() {
            "multiplexed, "
        } else {
            ""
        },
        if plugin.is_tls() {
            "mutual TLS"
        } else {
            "plaintext"
        }
    );
    let broker = plugin.broker();
    let adder = Adder::default();
    let mut counter = CounterClient::new(plugin.channel());
    for value in [1, 2] {
        // As go-plugin's example: a fresh id and server per call.
        let id = broker.next_id();
        let server = broker
            .accept_and_serve(id, Routes::new(AddHelperServer::new(adder.clone())))
            .await?;
        counter
            .put(PutRequest {
                add_server: id,
                key: "hello".into(),
                value,
            })
            .await
            .with_context(|| format!("Put(hello, {value}) with the host's helper at id {id}"))?;
        server.stop().await;
    }
    let value = counter
        .get(GetRequest {
            key: "hello".into(),
        })
        .await?
        .into_inner()
        .value;
    println!("hello = {value}");
    let mut helper_sum = None;
    if args.serve_helper {
        let id = counter.serve_helper(Empty {}).await?.into_inner().broker_id;
        let channel = broker.dial(id).await?;
        let r = AddHelperClient::new(channel)
            .sum(SumRequest { a: 40, b: 2 })
            .await
            .with_context(|| format!("Sum on the plugin's helper at id {id}"))?
            .into_inner()
            .r;
        println!("plugin helper: 40 + 2 = {r}");
        helper_sum = Some(r);
    }
    let stopped = plugin.stop().await?;
    eprintln!(
        "bidirectional: plugin stopped ({:?}, {})",
        stopped.method, stopped.status
    );
    ensure!(value == 3, "expected hello = 3, got {value}");
    let calls = adder.calls.load(Ordering::SeqCst);
    ensure!(
        calls == 2,
        "the plugin called the host's helper {calls} times, expected 2"
    );
    if let Some(r) = helper_sum {
        ensure!(r == 42, "the plugin's helper says 40 + 2 = {r}");
    }
    ensure!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "plugin process {pid} is still there after stop"
    );
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(false)
        .init();
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("plugin") => return serve_plugin(),
        Some("host") => parse_host_args(args),
        None => std::env::current_exe()
            .context("cannot find this program to run it as the plugin")
            .map(|exe| HostArgs {
                automtls: true,
                multiplex: false,
                serve_helper: true,
                cookie: ("BASIC_PLUGIN".to_owned(), "hello".to_owned()),
                command: vec![exe.to_string_lossy().into_owned(), "plugin".to_owned()],
            }),
        Some(other) => Err(anyhow::anyhow!(
            "unknown mode {other:?}: expected `plugin`, `host`, or nothing"
        )),
    };
    let result = result.and_then(|args| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run_host(args))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match err.downcast_ref::<rpcplugin::Error>() {
                Some(e) => eprintln!("FAIL: {}", rpcplugin::render(e)),
                None => eprintln!("FAIL: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
