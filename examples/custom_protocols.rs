//! Custom protocols (pyvider-rpcplugin's example 09): a contract of your own, in
//! versions, served next to the generated ones.
//!
//! ```text
//! cargo run --example custom_protocols
//! ```
//!
//! The usual way to a contract of your own is a `.proto` file compiled in your
//! crate's `build.rs` (tonic-prost-build with protox: no system `protoc`);
//! docs/plugin-authors.md walks through it and `tests/empty-crate` is that crate,
//! run by a go-plugin host in CI. An example file has no `build.rs`, so this one
//! shows the other way, which needs nothing but rpcplugin: the contract written in
//! Rust with the prost and tonic that rpcplugin re-exports (`rpcplugin::prost`,
//! `rpcplugin::tonic_prost`), on the wire exactly what the `.proto` below would
//! generate, so Go and Python peers with that `.proto` interoperate.
//!
//! ```proto
//! package greeter.v1;
//! service Greeter { rpc Greet(GreetRequest) returns (GreetReply); }
//! message GreetRequest { string name = 1; }
//! message GreetReply { string greeting = 1; }
//! ```
//!
//! What to notice in the output:
//! - `version 1:` a host that speaks only version 1 gets version 1's greeting, and
//!   a call to a service version 1 does not serve fails with `UNIMPLEMENTED`;
//! - `version 2:` a host that speaks both gets version 2: its greeting and the KV
//!   service that version adds (go-plugin's `VersionedPlugins`);
//! - `message limit:` a hand-written service takes the plugin's limits through
//!   `add_service_with`, so a 300 KiB name passes a 1 MiB limit and a 2 MiB one is
//!   refused.
//!
//! As in `quick_start.rs`, this program is both halves: run plainly it is the host,
//! and it starts itself with the argument `plugin` as the plugin.

use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::server::{Limits, ServiceSet};
use rpcplugin::tonic::body::Body;
use rpcplugin::tonic::codegen::{BoxFuture, http};
use rpcplugin::tonic::server::{Grpc, NamedService, UnaryService};
use rpcplugin::tonic::{self, Code, Request, Response, Status};
use rpcplugin::tonic_prost::ProstCodec;
use std::convert::Infallible;
use std::process::ExitCode;
use std::task::{Context, Poll};

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");
const MIB: usize = 1024 * 1024;

// ---- the contract, in Rust --------------------------------------------------

/// `greeter.v1.GreetRequest`.
#[derive(Clone, PartialEq, rpcplugin::prost::Message)]
#[prost(prost_path = "::rpcplugin::prost")]
struct GreetRequest {
    #[prost(string, tag = "1")]
    name: String,
}

/// `greeter.v1.GreetReply`.
#[derive(Clone, PartialEq, rpcplugin::prost::Message)]
#[prost(prost_path = "::rpcplugin::prost")]
struct GreetReply {
    #[prost(string, tag = "1")]
    greeting: String,
}

const GREET: &str = "/greeter.v1.Greeter/Greet";

// ---- the plugin -------------------------------------------------------------

/// `greeter.v1.Greeter`, greeting with `word`, decoding and encoding within
/// `limits`.
#[derive(Clone)]
struct Greeter {
    word: &'static str,
    limits: Limits,
}

impl NamedService for Greeter {
    const NAME: &'static str = "greeter.v1.Greeter";
}

impl UnaryService<GreetRequest> for Greeter {
    type Response = GreetReply;
    type Future = std::future::Ready<Result<Response<GreetReply>, Status>>;

    fn call(&mut self, request: Request<GreetRequest>) -> Self::Future {
        let name = request.into_inner().name;
        let greeting = format!("{}, {}", self.word, &name[..name.len().min(16)]);
        std::future::ready(Ok(Response::new(GreetReply { greeting })))
    }
}

/// The routing a generated server does: one path per method, `UNIMPLEMENTED`
/// for the rest.
impl tower::Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let greeter = self.clone();
        Box::pin(async move {
            if request.uri().path() != GREET {
                return Ok(Status::unimplemented("").into_http());
            }
            let mut grpc = Grpc::new(ProstCodec::<GreetReply, GreetRequest>::default())
                .apply_max_message_size_config(
                    Some(greeter.limits.max_receive_message_size),
                    Some(greeter.limits.max_send_message_size),
                );
            Ok(grpc.unary(greeter, request).await)
        })
    }
}

/// Version 2's addition: a KV store that keeps nothing.
struct Forgetful;

#[tonic::async_trait]
impl Kv for Forgetful {
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Ok(Response::new(GetResponse::default()))
    }

    async fn put(&self, _: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

fn plugin_main() -> ExitCode {
    let greeter = |word| move |limits| Greeter { word, limits };
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .max_message_sizes(MIB, MIB)
        .versioned_services(1, ServiceSet::new().add_service_with(greeter("hello")))
        .versioned_services(
            2,
            ServiceSet::new()
                .add_service_with(greeter("good day"))
                .add_service(KvServer::new(Forgetful)),
        )
        .run()
}

// ---- the host ---------------------------------------------------------------

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Calls `greeter.v1.Greeter/Greet` the way a generated client does.
async fn greet(channel: rpcplugin::client::Channel, name: String) -> Result<String, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(4 * MIB)
        .max_decoding_message_size(4 * MIB);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let reply: Response<GreetReply> = grpc
        .unary(
            Request::new(GreetRequest { name }),
            http::uri::PathAndQuery::from_static(GREET),
            ProstCodec::default(),
        )
        .await?;
    Ok(reply.into_inner().greeting)
}

async fn host_main() -> Result<(), BoxError> {
    let me = std::env::current_exe()?;
    for offered in [vec![1], vec![1, 2]] {
        let plugin = rpcplugin::plugin_client(&me)
            .arg("plugin")
            .handshake(COOKIE.0, COOKIE.1)
            .protocol_versions(offered.iter().copied())
            .start()
            .await?;
        let version = plugin.protocol_version();
        let greeting = greet(plugin.channel(), "Ada".into()).await?;
        let mut kv = rpcplugin::client::new_client!(KvClient, plugin);
        let kv_call = match kv.get(GetRequest { key: "k".into() }).await {
            Ok(_) => "served".to_owned(),
            Err(status) => format!("{:?}", status.code()),
        };
        println!(
            "version {version}: a host offering {offered:?} is greeted {greeting:?}; proto.KV: {kv_call}"
        );

        if version == 2 {
            for size in [300 * 1024, 2 * MIB] {
                let outcome = match greet(plugin.channel(), "x".repeat(size)).await {
                    Ok(_) => "accepted".to_owned(),
                    Err(status) if status.code() == Code::OutOfRange => {
                        "refused with OutOfRange".to_owned()
                    }
                    Err(status) => return Err(status.into()),
                };
                println!(
                    "message limit: a {} KiB name {outcome} (the plugin's limit: 1 MiB)",
                    size / 1024
                );
            }
        }
        plugin.stop().await?;
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
