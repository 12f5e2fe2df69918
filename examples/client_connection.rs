//! Connecting to a plugin and keeping it running (pyvider-rpcplugin's example 03):
//! timeouts, a health check, a deadline per call, supervision that starts the plugin
//! again after a crash, and a stop that leaves nothing behind.
//!
//! ```text
//! cargo run --example client_connection
//! ```
//!
//! What to notice in the output:
//! - `settings:` the host's time limits and where each value came from (code,
//!   `PLUGIN_*` variables or the default);
//! - `health: SERVING`: the same check go-plugin hosts make;
//! - `deadline:` a call that would take a second ends at the host's 100 ms
//!   deadline, which travels with the call (`grpc-timeout`): tonic's server ends
//!   it with `CANCELLED` ("Timeout expired"), and the plugin keeps serving;
//! - `crash:` the plugin exits in the middle of a call; the supervisor starts it
//!   again (a new pid) and the same channel works again, without the old process's
//!   state;
//! - `stopped:` the supervisor's stop ends the plugin, and its pid is gone.
//!
//! As in `quick_start.rs`, this program is both halves: run plainly it is the host,
//! and it starts itself with the argument `plugin` as the plugin.

use rpcplugin::client::{RestartPolicy, Supervisor, SupervisorEvent, SupervisorOptions};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::proto::health::v1::HealthCheckRequest;
use rpcplugin::proto::health::v1::health_check_response::ServingStatus;
use rpcplugin::proto::health::v1::health_client::HealthClient;
use rpcplugin::tonic::{self, Request, Response, Status};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");

// ---- the plugin -------------------------------------------------------------

/// A KV store with two keys that misbehave on purpose: `slow` takes a second to
/// answer and `crash` ends the process, as a bug would.
#[derive(Default)]
struct Store(Mutex<HashMap<String, Vec<u8>>>);

#[tonic::async_trait]
impl Kv for Store {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = req.into_inner().key;
        if key == "slow" {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let value = self.0.lock().unwrap().get(&key).cloned();
        Ok(Response::new(GetResponse {
            value: value.unwrap_or_default(),
        }))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = req.into_inner();
        if key == "crash" {
            std::process::exit(3);
        }
        self.0.lock().unwrap().insert(key, value);
        Ok(Response::new(Empty {}))
    }
}

fn plugin_main() -> ExitCode {
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service(KvServer::new(Store::default()))
        .run()
}

// ---- the host ---------------------------------------------------------------

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn host_main() -> Result<(), BoxError> {
    let me = std::env::current_exe()?;
    let builder = rpcplugin::plugin_client(me)
        .arg("plugin")
        .handshake(COOKIE.0, COOKIE.1)
        // How long the plugin may take to print its handshake line, and to accept
        // the connection after it.
        .handshake_timeout(Duration::from_secs(10))
        .connection_timeout(Duration::from_secs(5))
        // Start-up retries (off by default, as go-plugin): only for failures another
        // attempt can change; a wrong cookie or a TLS refusal fails at once.
        .retry_start(2);
    let settings = builder.effective_settings()?;
    let values = settings.settings();
    for (key, value) in [
        ("handshake_timeout", values.handshake_timeout),
        ("connection_timeout", values.connection_timeout),
        ("shutdown_grace", values.shutdown_grace),
    ] {
        println!("settings: {key} = {value:?} from {}", settings.origin(key));
    }

    // Supervision: a start again after a failure (not after a clean exit), and a
    // health check every 200 ms that kills and restarts a plugin that hangs.
    let options = SupervisorOptions::new(RestartPolicy::OnFailure)
        .backoff(Duration::from_millis(50), Duration::from_secs(1))
        .health_checks(Duration::from_millis(200), Duration::from_secs(1), 2);
    let supervisor = Supervisor::start(builder, options).await?;
    let mut events = supervisor.subscribe();
    let first_pid = supervisor.pid().ok_or("the plugin runs")?;
    println!("started: plugin pid {first_pid}");

    // One channel for the supervisor's life, whichever process serves it.
    let channel = supervisor.channel();
    let mut kv = KvClient::new(channel.clone());
    let mut health = HealthClient::new(channel);
    let reply = health
        .check(HealthCheckRequest {
            service: "plugin".into(),
        })
        .await?;
    println!(
        "health: {}",
        ServingStatus::try_from(reply.into_inner().status)?.as_str_name()
    );

    kv.put(PutRequest {
        key: "hello".into(),
        value: b"world".to_vec(),
    })
    .await?;

    // A deadline per call: the host gives up and the plugin cancels the call.
    let mut slow = Request::new(GetRequest { key: "slow".into() });
    slow.set_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let status = kv.get(slow).await.expect_err("the deadline passes first");
    println!(
        "deadline: {:?} ({}) after {} ms",
        status.code(),
        status.message(),
        started.elapsed().as_millis()
    );

    // A crash in the middle of a call: the call fails, the supervisor restarts.
    let status = kv
        .put(PutRequest {
            key: "crash".into(),
            value: Vec::new(),
        })
        .await
        .expect_err("the plugin exits before it answers");
    println!("crash: the call failed with {:?}", status.code());
    let new_pid = wait_for_restart(&mut events).await?;
    println!("crash: restarted as pid {new_pid} (was {first_pid})");

    // The same client again; the new process has none of the old one's state.
    let reply = kv
        .get(GetRequest {
            key: "hello".into(),
        })
        .await?;
    println!(
        "after the restart: hello = {:?} (state lives in the process)",
        String::from_utf8_lossy(&reply.into_inner().value)
    );

    supervisor.stop().await?;
    let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(new_pid as i32), None).is_err();
    println!(
        "stopped: plugin pid {new_pid} {}",
        if gone { "gone" } else { "still running" }
    );
    Ok(())
}

/// The pid of the next instance the supervisor starts, within 10 s.
async fn wait_for_restart(
    events: &mut tokio::sync::broadcast::Receiver<SupervisorEvent>,
) -> Result<u32, BoxError> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(SupervisorEvent::Exited { status, .. }) => println!("crash: exited, {status}"),
                Ok(SupervisorEvent::Started { pid, restarts }) if restarts > 0 => return Ok(pid),
                Ok(_) => {}
                Err(err) => return Err(BoxError::from(err)),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await?
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
