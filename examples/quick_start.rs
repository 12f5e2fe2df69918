//! The quick start: a host launches a plugin and calls it.
//!
//! ```text
//! cargo run --example quick_start
//! ```
//!
//! To stay one file, this program is both: run plainly it is the host, and it
//! launches itself with the argument `plugin` as the plugin. In a real project the
//! two are separate executables (see `kv_host.rs` and `kv_plugin.rs`).

use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::tonic::{self, Request, Response, Status};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Mutex;

/// Host and plugin must agree on these, or the plugin refuses to start.
const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");

// ---- the plugin -------------------------------------------------------------

#[derive(Default)]
struct Store(Mutex<HashMap<String, Vec<u8>>>);

#[tonic::async_trait]
impl Kv for Store {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let value = self.0.lock().unwrap().get(&req.into_inner().key).cloned();
        Ok(Response::new(GetResponse {
            value: value.unwrap_or_default(),
        }))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = req.into_inner();
        self.0.lock().unwrap().insert(key, value);
        Ok(Response::new(Empty {}))
    }
}

fn plugin_main() -> ExitCode {
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service_with(|limits| limits.apply(KvServer::new(Store::default())))
        .run()
}

// ---- the host ---------------------------------------------------------------

/// Any error: rpcplugin's own (with a hint) or a call's `Status`.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn host_main() -> Result<(), BoxError> {
    let me = std::env::current_exe().expect("the path of this program");
    let started = std::time::Instant::now();
    let plugin = rpcplugin::plugin_client(me)
        .arg("plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .start()
        .await?;
    println!(
        "started plugin pid {} at {} in {:.1} ms",
        plugin.pid(),
        plugin.endpoint(),
        started.elapsed().as_secs_f64() * 1000.0
    );

    let mut kv = rpcplugin::client::new_client!(KvClient, plugin);
    kv.put(PutRequest {
        key: "hello".into(),
        value: b"world".to_vec(),
    })
    .await?;
    let reply = kv
        .get(GetRequest {
            key: "hello".into(),
        })
        .await?;
    println!(
        "hello = {}",
        String::from_utf8_lossy(&reply.into_inner().value)
    );

    let stopped = plugin.stop().await?;
    println!("plugin stopped: {:?}", stopped.method);
    Ok(())
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("plugin") {
        return plugin_main();
    }
    // Optional: glibc's allocator set for streaming messages, as plugins have it
    // (up to 4x faster large downloads; see docs/performance.md).
    rpcplugin::client::tune_allocator();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match runtime.block_on(host_main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // render() shows the cause chain and every hint rpcplugin's errors carry.
            eprintln!("{}", rpcplugin::render(&*err));
            ExitCode::FAILURE
        }
    }
}
