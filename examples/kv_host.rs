//! A host that runs any KV plugin (rpcplugin's, go-plugin's, pyvider's).
//! Interop contract (INTEROP.md):
//!
//! ```text
//! kv_host [--automtls] [--cookie KEY=VALUE] -- PLUGIN_COMMAND [ARGS...]
//! kv_host --reattach JSON
//! ```
//!
//! Puts `hello` = `world`, gets it back, prints the value, stops the plugin, and
//! exits 0 only if everything matched and the plugin process is gone.
//!
//! With `--reattach` it attaches to a plugin already running in debug mode
//! (`kv_plugin --debug` prints the JSON) instead of starting one, does the same
//! calls, detaches, and exits 0 only if the plugin is still running. Certificates
//! for a plugin serving configured TLS come from `PLUGIN_CLIENT_CERT`,
//! `PLUGIN_CLIENT_KEY` and `PLUGIN_SERVER_ROOT_CERTS`.

use anyhow::{Context, bail};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest};
use std::process::ExitCode;

struct Args {
    automtls: bool,
    reattach: Option<String>,
    cookie: (String, String),
    command: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut automtls = false;
    let mut reattach = None;
    let mut cookie = ("BASIC_PLUGIN".to_owned(), "hello".to_owned());
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--automtls" => automtls = true,
            "--reattach" => reattach = Some(args.next().context("--reattach needs JSON")?),
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
    if command.is_empty() && reattach.is_none() {
        bail!(
            "usage: kv_host [--automtls] [--cookie KEY=VALUE] -- PLUGIN_COMMAND [ARGS...] | kv_host --reattach JSON"
        );
    }
    Ok(Args {
        automtls,
        reattach,
        cookie,
        command,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    // The interop contract wants plaintext unless asked, so peers without TLS can be
    // tested; the library's own default is AutoMTLS on.
    if let Some(json) = &args.reattach {
        return run_attached(json).await;
    }
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
    let mut kv = rpcplugin::client::new_client!(KvClient, plugin);
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

async fn put_and_get(channel: rpcplugin::client::Channel) -> anyhow::Result<Vec<u8>> {
    let mut kv = KvClient::new(channel);
    kv.put(PutRequest {
        key: "hello".into(),
        value: b"world".to_vec(),
    })
    .await?;
    Ok(kv
        .get(GetRequest {
            key: "hello".into(),
        })
        .await?
        .into_inner()
        .value)
}

async fn run_attached(json: &str) -> anyhow::Result<()> {
    let config = rpcplugin::client::ReattachConfig::from_json(json)?;
    let plugin = rpcplugin::client::PluginClient::attach(config)
        .protocol_versions([1])
        .start()
        .await?;
    let pid = plugin.pid();
    eprintln!(
        "kv_host: attached to plugin pid {pid} at {} ({})",
        plugin.endpoint(),
        if plugin.is_tls() {
            "mutual TLS"
        } else {
            "plaintext"
        }
    );
    let value = put_and_get(plugin.channel()).await?;
    println!("{}", String::from_utf8_lossy(&value));
    let stopped = plugin.stop().await?;
    eprintln!("kv_host: {:?}; the plugin keeps running", stopped.method);
    if value != b"world" {
        bail!(
            "expected \"world\", got {:?}",
            String::from_utf8_lossy(&value)
        );
    }
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        bail!(
            "the plugin (pid {pid}) is gone after detaching; a host must not stop a plugin it did not start"
        );
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
    rpcplugin::client::tune_allocator();
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
