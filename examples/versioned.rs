//! One plugin binary serving two app protocol versions (go-plugin's
//! `VersionedPlugins`): version 1 serves `proto.KV`; version 2 serves `proto.KV`
//! and `bench.v1.Bench`. The host offers the versions it speaks and learns which
//! one was agreed on.
//!
//! ```text
//! versioned            the host: runs this program as its plugin four times, offering
//!                      [1], [2], [1, 2] and [3], and prints what each got
//! versioned plugin     the plugin (a host must start it)
//! ```
//!
//! Exits 0 only if versions 1 and 2 were served as asked and [3] was refused with
//! an error naming both sides' versions.

use anyhow::{Context, ensure};
use rpcplugin::Code;
use rpcplugin::proto::examples::bench::Payload;
use rpcplugin::proto::examples::bench::bench_client::BenchClient;
use rpcplugin::proto::examples::bench::bench_server::{Bench, BenchServer};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::server::ServiceSet;
use rpcplugin::tonic::{self, Request, Response, Status};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Store {
    values: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

#[tonic::async_trait]
impl Kv for Store {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = request.into_inner().key;
        let value = self.values.lock().unwrap().get(&key).cloned();
        Ok(Response::new(GetResponse {
            value: value.unwrap_or_default(),
        }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = request.into_inner();
        self.values.lock().unwrap().insert(key, value);
        Ok(Response::new(Empty {}))
    }
}

struct Echo;

#[tonic::async_trait]
impl Bench for Echo {
    async fn echo(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    type DownloadStream = tokio_stream::Empty<Result<Payload, Status>>;

    async fn download(
        &self,
        _: Request<rpcplugin::proto::examples::bench::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        Err(Status::unimplemented("only echo here"))
    }
}

fn serve_plugin() -> ExitCode {
    let store = Store::default();
    rpcplugin::plugin_server()
        .handshake("BASIC_PLUGIN", "hello")
        .versioned_services(
            1,
            ServiceSet::new().add_service(KvServer::new(store.clone())),
        )
        .versioned_services(
            2,
            ServiceSet::new()
                .add_service(KvServer::new(store))
                .add_service(BenchServer::new(Echo)),
        )
        .run()
}

/// Starts the plugin offering `versions`; returns the agreed version and whether
/// `bench.v1.Bench` answered.
async fn ask(plugin_exe: &std::path::Path, versions: &[u32]) -> rpcplugin::Result<(u32, bool)> {
    let plugin = rpcplugin::plugin_client(plugin_exe)
        .arg("plugin")
        .handshake("BASIC_PLUGIN", "hello")
        .protocol_versions(versions.iter().copied())
        .start()
        .await?;
    let version = plugin.protocol_version();
    let mut kv = KvClient::new(plugin.channel());
    let kv_works = kv
        .put(PutRequest {
            key: "k".into(),
            value: b"v".to_vec(),
        })
        .await
        .is_ok();
    let bench = BenchClient::new(plugin.channel())
        .echo(Payload {
            data: b"ping".to_vec().into(),
        })
        .await;
    let bench_works = match bench {
        Ok(reply) => reply.into_inner().data[..] == b"ping"[..],
        Err(status) if status.code() == tonic::Code::Unimplemented => false,
        Err(status) => {
            eprintln!("versioned: unexpected Bench failure: {status}");
            false
        }
    };
    plugin.stop().await?;
    if !kv_works {
        eprintln!("versioned: proto.KV failed under version {version}");
    }
    Ok((version, bench_works && kv_works))
}

async fn run_host() -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    for (offer, want_version, want_bench) in [
        (&[1][..], 1, false),
        (&[2][..], 2, true),
        (&[1, 2][..], 2, true),
    ] {
        let (version, bench) = ask(&exe, offer).await?;
        println!(
            "host offers {offer:?}: plugin serves version {version}, bench.v1.Bench {}",
            if bench { "served" } else { "not served" }
        );
        ensure!(
            version == want_version && bench == want_bench,
            "expected version {want_version} with bench {want_bench}"
        );
    }
    let refused = ask(&exe, &[3]).await;
    let err = refused
        .err()
        .context("a host speaking only version 3 was not refused")?;
    println!(
        "host offers [3]: refused ({})\n{}",
        err.code(),
        rpcplugin::render(&err)
    );
    ensure!(err.code() == Code::HandshakeIncompatibleAppVersion);
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
    if std::env::args().nth(1).as_deref() == Some("plugin") {
        return serve_plugin();
    }
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run_host()));
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
