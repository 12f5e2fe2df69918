//! Setting up a plugin server (pyvider-rpcplugin's example 02): the builder choices
//! that change what a host sees, each shown from the host's side.
//!
//! ```text
//! cargo run --example server_setup
//! ```
//!
//! What to notice in the output:
//! - `version:` the plugin serves app protocol versions 1 and 2, the host offers
//!   2 and 3, and they settle on 2 (the highest both speak);
//! - `message limit:` the plugin takes at most 1 MiB, so a 2 MiB put is refused
//!   by the plugin (`OUT_OF_RANGE` in tonic) while a 512 KiB one goes through;
//! - `concurrency:` at most 2 calls at once in the plugin's own services: of 4
//!   slow calls sent together, 2 are served and 2 refused at once with
//!   `RESOURCE_EXHAUSTED`, and the health check still answers meanwhile;
//! - `health:` the plugin reports itself NOT_SERVING through its handle (a
//!   supervising host would restart it), then SERVING again;
//! - `drain:` a call in flight when the host stops the plugin still completes
//!   within the drain timeout.
//!
//! As in `quick_start.rs`, this program is both halves: run plainly it is the host,
//! and it starts itself with the argument `plugin` as the plugin.

use rpcplugin::client::Channel;
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::proto::health::v1::HealthCheckRequest;
use rpcplugin::proto::health::v1::health_check_response::ServingStatus;
use rpcplugin::proto::health::v1::health_client::HealthClient;
use rpcplugin::server::{HealthStatus, PluginHandle};
use rpcplugin::tonic::{self, Request, Response, Status};
use std::process::ExitCode;
use std::time::Duration;

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");
const MIB: usize = 1024 * 1024;

// ---- the plugin -------------------------------------------------------------

/// Values are not stored: `slow` takes 300 ms, `unhealthy` and `healthy` change
/// what the plugin's health service reports.
struct Service {
    handle: PluginHandle,
}

#[tonic::async_trait]
impl Kv for Service {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = req.into_inner().key;
        if key == "slow" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(Response::new(GetResponse {
            value: key.into_bytes(),
        }))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        match req.into_inner().key.as_str() {
            // "plugin" is the name go-plugin hosts (and supervisors) check.
            "unhealthy" => self.handle.set_health("plugin", HealthStatus::NotServing),
            "healthy" => self.handle.set_health("plugin", HealthStatus::Serving),
            _ => {}
        }
        Ok(Response::new(Empty {}))
    }
}

fn plugin_main() -> ExitCode {
    let builder = rpcplugin::plugin_server()
        // The cookie: not security, a guard against being run by the wrong host.
        .handshake(COOKIE.0, COOKIE.1)
        // Every app protocol version this binary speaks; the host picks the highest
        // both know (versioned.rs serves different services per version).
        .protocol_versions([1, 2])
        // Messages the plugin accepts and sends. The default, 256 MiB, suits
        // Terraform-sized schemas; a smaller one bounds the memory a host can ask of it.
        .max_message_sizes(MIB, MIB)
        // Fail fast under load rather than queue: the host sees RESOURCE_EXHAUSTED
        // at once and can retry elsewhere or later. Built-in services (health,
        // shutdown, broker) are never limited.
        .concurrency_limit(2)
        // After a stop begins, calls in flight get this long to finish.
        .drain_timeout(Duration::from_secs(2));
    // The plugin's view of itself, for the service to report its health.
    let handle = builder.handle();
    builder.add_service(KvServer::new(Service { handle })).run()
}

// ---- the host ---------------------------------------------------------------

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn host_main() -> Result<(), BoxError> {
    let me = std::env::current_exe()?;
    let plugin = rpcplugin::plugin_client(me)
        .arg("plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .protocol_versions([2, 3])
        .start()
        .await?;
    println!(
        "version: host offers 2 and 3, plugin serves 1 and 2: agreed on {}",
        plugin.protocol_version()
    );

    let mut kv = rpcplugin::client::new_client!(KvClient, plugin);
    for size in [MIB / 2, 2 * MIB] {
        let result = kv
            .put(PutRequest {
                key: "big".into(),
                value: vec![0; size],
            })
            .await;
        match result {
            Ok(_) => println!("message limit: {} KiB put accepted", size / 1024),
            Err(status) => println!(
                "message limit: {} KiB put refused with {:?}",
                size / 1024,
                status.code()
            ),
        }
    }

    // Four slow calls at once, and a health check while they run.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let mut kv = kv.clone();
            tokio::spawn(async move { kv.get(GetRequest { key: "slow".into() }).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!(
        "concurrency: health during the load: {}",
        health(plugin.channel()).await?
    );
    let (mut served, mut refused) = (0, 0);
    for call in calls {
        match call.await? {
            Ok(_) => served += 1,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => refused += 1,
            Err(status) => return Err(status.into()),
        }
    }
    println!("concurrency: {served} served, {refused} refused with ResourceExhausted");

    for key in ["unhealthy", "healthy"] {
        kv.put(PutRequest {
            key: key.into(),
            value: Vec::new(),
        })
        .await?;
        println!("health: after {key:?}: {}", health(plugin.channel()).await?);
    }

    // Stop while a call runs: the plugin drains it before it exits.
    let mut slow_kv = kv.clone();
    let in_flight =
        tokio::spawn(async move { slow_kv.get(GetRequest { key: "slow".into() }).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopped = plugin.stop().await?;
    let outcome = match in_flight.await? {
        Ok(_) => "completed".to_owned(),
        Err(status) => format!("failed with {:?}", status.code()),
    };
    println!(
        "drain: the call in flight {outcome}; plugin stopped: {:?}",
        stopped.method
    );
    Ok(())
}

/// The plugin's health as go-plugin hosts check it (service "plugin").
async fn health(channel: Channel) -> Result<&'static str, BoxError> {
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "plugin".into(),
        })
        .await?;
    Ok(ServingStatus::try_from(reply.into_inner().status)?.as_str_name())
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
