//! A host that runs any KV plugin (rpcplugin's, go-plugin's, pyvider's).
//! Interop contract (INTEROP.md):
//!
//! ```text
//! kv_host [--automtls] [--cookie KEY=VALUE] -- PLUGIN_COMMAND [ARGS...]
//! ```
//!
//! Puts `hello` = `world`, gets it back, prints the value, stops the plugin, and
//! exits 0 only if everything matched and the plugin process is gone.

use anyhow::{Context, bail};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest};
use std::process::ExitCode;

struct Args {
    automtls: bool,
    cookie: (String, String),
    command: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut automtls = false;
    let mut cookie = ("BASIC_PLUGIN".to_owned(), "hello".to_owned());
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--automtls" => automtls = true,
            "--cookie" => {
                let value = args.next().context("--cookie needs KEY=VALUE")?;
                let (k, v) = value.split_once('=').context("--cookie needs KEY=VALUE")?;
                cookie = (k.to_owned(), v.to_owned());
            }
            "--" => {
                command.extend(args.by_ref());
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if command.is_empty() {
        bail!("usage: kv_host [--automtls] [--cookie KEY=VALUE] -- PLUGIN_COMMAND [ARGS...]");
    }
    Ok(Args {
        automtls,
        cookie,
        command,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    // The interop contract wants plaintext unless asked, so peers without TLS can be
    // tested; the library's own default is AutoMTLS on.
    let plugin = rpcplugin::plugin_client(&args.command[0])
        .args(&args.command[1..])
        .handshake(&args.cookie.0, &args.cookie.1)
        .protocol_versions([1])
        .auto_mtls(args.automtls)
        .start()
        .await?;
    let pid = plugin.pid();
    eprintln!(
        "kv_host: plugin {} (pid {pid}) serves version {} at {} ({}, {})",
        plugin.name(),
        plugin.protocol_version(),
        plugin.endpoint(),
        plugin.endpoint().network(),
        if plugin.is_tls() {
            "mutual TLS"
        } else {
            "plaintext"
        }
    );
    let mut kv = KvClient::new(plugin.channel());
    kv.put(PutRequest {
        key: "hello".into(),
        value: b"world".to_vec(),
    })
    .await?;
    let value = kv
        .get(GetRequest {
            key: "hello".into(),
        })
        .await?
        .into_inner()
        .value;
    println!("{}", String::from_utf8_lossy(&value));
    let stopped = plugin.stop().await?;
    eprintln!(
        "kv_host: plugin stopped ({:?}, {})",
        stopped.method, stopped.status
    );
    if value != b"world" {
        bail!(
            "expected \"world\", got {:?}",
            String::from_utf8_lossy(&value)
        );
    }
    // stop() reaped the process; make sure nothing with its pid is left.
    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
        bail!("plugin process {pid} is still there after stop");
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let result = parse_args().and_then(|args| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(args))
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
