//! A go-plugin plugin that is broken on purpose, for `rpcplugin conformance`'s
//! tests: written with plain tonic (no rpcplugin server, which would do it right),
//! it serves `proto.KV` on a Unix socket and breaks one rule, chosen by its first
//! argument:
//!
//! - `no-health`: serves no `grpc.health.v1.Health`;
//! - `ignore-shutdown`: answers `GRPCController/Shutdown` and keeps running.
//!
//! Anything else serves correctly (health, controller, socket removed on exit).
//! It checks the `BASIC_PLUGIN=hello` cookie like any plugin, and serves plaintext
//! whatever the host asks.

use rpcplugin_proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin_proto::examples::kv::{Empty as KvEmpty, GetRequest, GetResponse, PutRequest};
use rpcplugin_proto::health::v1::health_check_response::ServingStatus;
use rpcplugin_proto::health::v1::health_server::{Health, HealthServer};
use rpcplugin_proto::health::v1::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use rpcplugin_proto::plugin::Empty;
use rpcplugin_proto::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use std::io::Write as _;
use std::pin::Pin;
use std::process::ExitCode;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

struct Store;

#[tonic::async_trait]
impl Kv for Store {
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Ok(Response::new(GetResponse { value: Vec::new() }))
    }

    async fn put(&self, _: Request<PutRequest>) -> Result<Response<KvEmpty>, Status> {
        Ok(Response::new(KvEmpty {}))
    }
}

struct Serving;

type WatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for Serving {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("list"))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

struct Controller {
    stop: mpsc::Sender<()>,
    ignore: bool,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        if !self.ignore {
            let _ = self.stop.try_send(());
        }
        Ok(Response::new(Empty {}))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if std::env::var("BASIC_PLUGIN").as_deref() != Ok("hello") {
        eprintln!("broken_plugin: this is a plugin; BASIC_PLUGIN=hello is not set");
        return ExitCode::FAILURE;
    }
    let dir = std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("broken-{}.sock", std::process::id()));
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("broken_plugin: cannot listen on {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    };
    println!("1|1|unix|{}|grpc|", path.display());
    let _ = std::io::stdout().flush();
    let (stop, mut stopped) = mpsc::channel(1);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    let mut router = tonic::transport::Server::builder()
        .add_service(KvServer::new(Store))
        .add_service(GrpcControllerServer::new(Controller {
            stop,
            ignore: mode == "ignore-shutdown",
        }));
    if mode != "no-health" {
        router = router.add_service(HealthServer::new(Serving));
    }
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let served = router
        .serve_with_incoming_shutdown(incoming, async move {
            tokio::select! {
                _ = stopped.recv() => {}
                _ = sigterm.recv() => {}
            }
        })
        .await;
    let _ = std::fs::remove_file(&path);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("broken_plugin: {err}");
            ExitCode::FAILURE
        }
    }
}
