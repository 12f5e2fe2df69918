//! A plugin any go-plugin host can run: go-plugin's KV example, plus the benchmark
//! service. Interop contract: see INTEROP.md (`proto.KV`, `bench.v1.Bench`, cookie
//! `BASIC_PLUGIN=hello`, app protocol version 1).
//!
//! Logs are hclog JSON on stderr (`RUST_LOG` filters, default `info`), so go-plugin
//! hosts show them at their levels.
//!
//! Run by a person it explains that a host must start it, and exits 1:
//!
//! ```text
//! cargo run --example kv_plugin
//! ```
//!
//! With `--debug` it runs on its own instead (debug mode): it prints its reattach
//! information as one line of JSON on stdout and serves until Ctrl-C; hosts attach
//! with that line (`kv_host --reattach JSON`) and leave it running.

use rpcplugin::proto::examples::bench::bench_server::{Bench, BenchServer};
use rpcplugin::proto::examples::bench::{DownloadRequest, Payload};
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::tonic::{self, Request, Response, Status};
use std::collections::HashMap;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Mutex;

/// Values kept in memory; a missing key reads as an empty value (as go-plugin's example).
#[derive(Default)]
struct Store {
    values: Mutex<HashMap<String, Vec<u8>>>,
}

#[tonic::async_trait]
impl Kv for Store {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = request.into_inner().key;
        let value = self
            .values
            .lock()
            .unwrap()
            .get(&key)
            .cloned()
            .unwrap_or_default();
        Ok(Response::new(GetResponse { value }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = request.into_inner();
        self.values.lock().unwrap().insert(key, value);
        Ok(Response::new(Empty {}))
    }
}

struct Echo;

type PayloadStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Payload, Status>> + Send>>;

#[tonic::async_trait]
impl Bench for Echo {
    async fn echo(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        Ok(Response::new(request.into_inner()))
    }

    type DownloadStream = PayloadStream;

    async fn download(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let DownloadRequest { chunk_size, count } = request.into_inner();
        let chunk = Payload {
            data: vec![0xAB; chunk_size as usize].into(),
        };
        let stream = tokio_stream::iter((0..count).map(move |_| Ok(chunk.clone())));
        Ok(Response::new(Box::pin(stream)))
    }
}

fn main() -> ExitCode {
    // hclog JSON on stderr (stdout carries the handshake line and nothing else): a
    // go-plugin host shows each line at its level with its fields. RUST_LOG filters.
    rpcplugin::server::logging::init();
    let debug = std::env::args().skip(1).any(|a| a == "--debug");
    rpcplugin::plugin_server()
        .handshake("BASIC_PLUGIN", "hello")
        .protocol_version(1)
        .debug_mode(debug)
        .add_service_with(|limits| {
            // Services are built once the cookie is checked and the socket bound,
            // just before the handshake line: the plugin is starting to serve.
            tracing::info!(
                max_receive_message_size = limits.max_receive_message_size,
                "kv_plugin serving"
            );
            limits.apply(KvServer::new(Store::default()))
        })
        .add_service_with(|limits| limits.apply(BenchServer::new(Echo)))
        .run()
}
