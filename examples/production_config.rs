//! Production configuration (pyvider-rpcplugin's example 08): a config file,
//! environment overrides, settings in code, a rate limit, resource limits, the
//! plugin's logs in the host's `tracing`, and a graceful stop.
//!
//! ```text
//! cargo run --example production_config
//! ```
//!
//! What to notice in the output:
//! - `setting:` each value with its origin: the file and its line, a variable that
//!   overrides the file, code that overrides both (defaults < file < environment <
//!   code; docs/configuration.md lists every key);
//! - `rate limit:` the plugin reads the same file (the host passes
//!   `PLUGIN_CONFIG_FILE`): a burst of 3, so of 6 calls at once 3 are refused with
//!   `RESOURCE_EXHAUSTED`;
//! - `resource limits:` the plugin process runs with the host's `RLIMIT_NOFILE`
//!   of 256, as its own `/proc/self/limits` says;
//! - `INFO ... plugin log` lines: the plugin logs with `tracing` (as hclog JSON on
//!   stderr, what go-plugin hosts read too), and the host re-emits each event in
//!   its own `tracing` at the plugin's level, with the plugin's name and pid;
//! - `stopped: Graceful`: the Shutdown call, then the plugin drains and exits.
//!
//! As in `quick_start.rs`, this program is both halves: run plainly it is the host,
//! and it starts itself with the argument `plugin` as the plugin.

use rpcplugin::client::{Environment, ResourceLimits};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::tonic::{self, Code, Request, Response, Status};
use std::process::ExitCode;
use std::time::Duration;

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");

/// The deployment's settings, as an operator would write them.
const CONFIG: &str = r#"# rpcplugin settings (docs/configuration.md)
handshake_timeout = "5s"
connection_timeout = "4s"
shutdown_grace = "3s"
rate_limit_enabled = true
rate_limit_requests_per_second = 1.0
rate_limit_burst_capacity = 3
log_level = "info"
"#;

// ---- the plugin -------------------------------------------------------------

/// `limits` answers with the process's open-files limit; any other key with itself.
struct Service;

#[tonic::async_trait]
impl Kv for Service {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = req.into_inner().key;
        tracing::info!(key = %key, "plugin log: served a get");
        let value = if key == "limits" {
            let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .unwrap_or_default()
                .split_whitespace()
                .nth(3)
                .unwrap_or("unknown")
                .to_owned()
        } else {
            key
        };
        Ok(Response::new(GetResponse {
            value: value.into_bytes(),
        }))
    }

    async fn put(&self, _: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

fn plugin_main() -> ExitCode {
    // hclog JSON on stderr at PLUGIN_LOG_LEVEL (here from the file): the format
    // go-plugin hosts and rpcplugin hosts both read.
    rpcplugin::server::logging::init();
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service(KvServer::new(Service))
        .run()
}

// ---- the host ---------------------------------------------------------------

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn host_main() -> Result<(), BoxError> {
    // The host's own logging; the plugin's events arrive in it.
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .without_time()
        .init();

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rpcplugin.toml");
    std::fs::write(&file, CONFIG)?;

    let builder = rpcplugin::plugin_client(std::env::current_exe()?)
        .arg("plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .config_file(&file)
        // The environment the settings are read from; a real host leaves this out
        // and its process's environment is used. Here an operator's override.
        .environment(Environment::from_pairs([(
            "PLUGIN_HANDSHAKE_TIMEOUT",
            "8s",
        )]))
        // Code wins over both.
        .shutdown_grace(Duration::from_secs(1))
        // The plugin reads the same file.
        .env("PLUGIN_CONFIG_FILE", &file)
        // Limits the kernel enforces on the plugin process.
        .resource_limits(ResourceLimits::new().open_files(256));
    let settings = builder.effective_settings()?;
    let values = settings.settings();
    for (key, value) in [
        ("handshake_timeout", values.handshake_timeout),
        ("shutdown_grace", values.shutdown_grace),
        ("connection_timeout", values.connection_timeout),
    ] {
        let origin = settings.origin(key).to_string();
        // The file's path is a temporary one; show its name only.
        let origin = origin.replace(&format!("{}/", dir.path().display()), "");
        println!("setting: {key} = {value:?} from {origin}");
    }

    let plugin = builder.start().await?;
    let mut kv = rpcplugin::client::new_client!(KvClient, plugin);

    let limit = kv
        .get(GetRequest {
            key: "limits".into(),
        })
        .await?
        .into_inner()
        .value;
    println!(
        "resource limits: the plugin's open files limit is {}",
        String::from_utf8_lossy(&limit)
    );

    // The first call spent one token of the 3; wait for the bucket to refill.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let mut kv = kv.clone();
            tokio::spawn(async move {
                kv.get(GetRequest {
                    key: format!("call {i}"),
                })
                .await
            })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for call in calls {
        match call.await? {
            Ok(_) => served += 1,
            Err(status) if status.code() == Code::ResourceExhausted => refused += 1,
            Err(status) => return Err(status.into()),
        }
    }
    println!("rate limit: of 6 calls at once, {served} served, {refused} refused");

    // Let the plugin's last log lines arrive before the stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = plugin.stop().await?;
    println!("stopped: {:?}", stopped.method);
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
