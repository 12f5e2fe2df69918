//! A plugin confined to one data directory (Linux): it works there, and when it
//! reaches outside (a file, a program, a TCP port) it gets "permission denied",
//! while it keeps serving and the host is none the worse.
//!
//! ```text
//! sandboxed                       the host, running this program as its plugin
//! sandboxed plugin                the plugin (a host must start it)
//! sandboxed host [--no-sandbox] [--tcp] [--plaintext] -- PLUGIN_COMMAND [ARGS...]
//! ```
//!
//! The plugin serves the KV service as a probe: the key says what to try.
//!
//! | call | the plugin |
//! | --- | --- |
//! | `Put("file:PATH", bytes)` | writes `bytes` to `PATH` |
//! | `Get("file:PATH")` | reads `PATH` |
//! | `Get("exec:PATH")` | runs `PATH` and answers its exit status |
//! | `Get("connect:IP:PORT")` | opens a TCP connection, answers `connected` |
//!
//! A failure is the call's error, with the system's message ("Permission denied
//! (os error 13)"). Any plugin that answers these keys can be run with
//! `sandboxed host -- ...`: `tests/interop/go` has one in Go, which the same
//! sandbox confines the same way, since the confinement is the kernel's.
//!
//! The host makes a data directory and, outside it, a file and a listening TCP
//! port; starts the plugin with `Sandbox::new().write_path(data)` (`--no-sandbox`:
//! without one); has it write and read a file in the data directory, then read the
//! outside file, write beside it, run `true` and connect to the port; then reads
//! in the data directory again, stops the plugin, and exits 0 only if every
//! outcome is the expected one (denied outside with a sandbox, allowed without).
//! `--tcp` asks the plugin to serve on loopback TCP; `--plaintext` turns AutoMTLS
//! off.

use anyhow::{Context, bail, ensure};
use rpcplugin::client::{PluginClient, Sandbox};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::tonic::transport::Channel;
use rpcplugin::tonic::{self, Request, Response, Status};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");

// ---- the plugin -------------------------------------------------------------

/// Does what each key says, with the plugin's own rights.
struct Probe;

/// The system's error as the call's: `PERMISSION_DENIED` when it was denied.
fn status(what: &str, err: &std::io::Error) -> Status {
    let message = format!("{what}: {err}");
    match err.kind() {
        std::io::ErrorKind::PermissionDenied => Status::permission_denied(message),
        std::io::ErrorKind::NotFound => Status::not_found(message),
        _ => Status::unavailable(message),
    }
}

/// Runs blocking file, process and socket calls off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
}

#[tonic::async_trait]
impl Kv for Probe {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = req.into_inner().key;
        let value = blocking(move || {
            if let Some(path) = key.strip_prefix("file:") {
                return std::fs::read(path).map_err(|e| status(&format!("read {path}"), &e));
            }
            if let Some(program) = key.strip_prefix("exec:") {
                let output = std::process::Command::new(program)
                    .output()
                    .map_err(|e| status(&format!("run {program}"), &e))?;
                return Ok(output.status.to_string().into_bytes());
            }
            if let Some(addr) = key.strip_prefix("connect:") {
                let addr = addr
                    .parse()
                    .map_err(|_| Status::invalid_argument(format!("not IP:PORT: {addr}")))?;
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    .map_err(|e| status(&format!("connect {addr}"), &e))?;
                return Ok(b"connected".to_vec());
            }
            Err(Status::invalid_argument(format!(
                "unknown key {key:?}: expected file:, exec: or connect:"
            )))
        })
        .await?;
        Ok(Response::new(GetResponse { value }))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = req.into_inner();
        blocking(move || {
            let path = key
                .strip_prefix("file:")
                .ok_or_else(|| Status::invalid_argument("only file:PATH can be put"))?;
            std::fs::write(path, value).map_err(|e| status(&format!("write {path}"), &e))
        })
        .await?;
        Ok(Response::new(Empty {}))
    }
}

fn plugin_main() -> ExitCode {
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service(KvServer::new(Probe))
        .run()
}

// ---- the host ---------------------------------------------------------------

struct HostArgs {
    sandbox: bool,
    tcp: bool,
    automtls: bool,
    command: Vec<String>,
}

fn parse_host_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<HostArgs> {
    let mut parsed = HostArgs {
        sandbox: true,
        tcp: false,
        automtls: true,
        command: Vec::new(),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-sandbox" => parsed.sandbox = false,
            "--tcp" => parsed.tcp = true,
            "--plaintext" => parsed.automtls = false,
            "--" => parsed.command.extend(args.by_ref()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    ensure!(
        !parsed.command.is_empty(),
        "usage: sandboxed host [--no-sandbox] [--tcp] [--plaintext] -- PLUGIN_COMMAND [ARGS...]"
    );
    Ok(parsed)
}

/// What a probe came to: the value, or the call's message.
type Outcome = Result<Vec<u8>, Status>;

/// Prints one probe's outcome as a person reads it, and returns it.
fn report(what: &str, outcome: Outcome) -> Outcome {
    match &outcome {
        Ok(value) if value.is_empty() => println!("{what}: ok"),
        Ok(value) => println!("{what}: ok ({:?})", String::from_utf8_lossy(value)),
        Err(status) if denied(status) => println!("{what}: denied ({})", status.message()),
        Err(status) => println!("{what}: failed ({:?}: {})", status.code(), status.message()),
    }
    outcome
}

/// Whether the plugin was refused by the system. rpcplugin plugins answer
/// `PERMISSION_DENIED`; others (go-plugin's KV wrapper) pass the system's message.
fn denied(status: &Status) -> bool {
    let message = status.message().to_ascii_lowercase();
    status.code() == tonic::Code::PermissionDenied
        || message.contains("permission denied")
        || message.contains("operation not permitted")
}

async fn get(kv: &mut KvClient<Channel>, key: String) -> Outcome {
    kv.get(GetRequest { key })
        .await
        .map(|r| r.into_inner().value)
}

/// The program a plugin may not run: `true`, wherever this system keeps it.
fn true_program() -> anyhow::Result<PathBuf> {
    ["/usr/bin/true", "/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("no `true` program in /usr/bin or /bin")
}

async fn run_host(args: HostArgs) -> anyhow::Result<()> {
    let data = tempfile::tempdir().context("cannot make the data directory")?;
    let outside = tempfile::tempdir().context("cannot make the outside directory")?;
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "the host's secret")?;
    // A local service the plugin is not meant to reach (the backlog accepts the
    // connection; nothing needs to answer).
    let service = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = service.local_addr()?.port();

    let mut builder = PluginClient::builder(&args.command[0])
        .args(&args.command[1..])
        .handshake(COOKIE.0, COOKIE.1)
        .auto_mtls(args.automtls)
        // Whatever PLUGIN_SANDBOX says: this example shows both ways itself.
        .sandbox(args.sandbox.then(|| Sandbox::new().write_path(data.path())));
    if args.tcp {
        builder = builder.env("PLUGIN_SERVER_TRANSPORTS", "tcp");
    }
    let plugin = builder.start().await?;
    println!(
        "plugin pid {} at {} ({})",
        plugin.pid(),
        plugin.endpoint(),
        if plugin.is_tls() {
            "mutual TLS"
        } else {
            "plaintext"
        }
    );
    match plugin.sandbox() {
        Some(sandbox) => println!("sandbox: {sandbox}"),
        None => println!("sandbox: off"),
    }

    let mut kv = KvClient::new(plugin.channel());
    let notes = data.path().join("notes.txt");
    let file = |path: &Path| format!("file:{}", path.display());
    let inside_write = kv
        .put(PutRequest {
            key: file(&notes),
            value: b"kept inside".to_vec(),
        })
        .await
        .map(|_| Vec::new());
    let mut inside = vec![report(
        "write notes.txt in the data directory",
        inside_write,
    )];
    inside.push(report(
        "read notes.txt in the data directory",
        get(&mut kv, file(&notes)).await,
    ));
    let planted = outside.path().join("planted.txt");
    let outside_write = kv
        .put(PutRequest {
            key: file(&planted),
            value: b"planted".to_vec(),
        })
        .await
        .map(|_| Vec::new());
    let program = true_program()?;
    let reaching_out = [
        report(
            "read a file outside (the host's secret)",
            get(&mut kv, file(&secret)).await,
        ),
        report("write a file outside", outside_write),
        report(
            &format!("run {}", program.display()),
            get(&mut kv, format!("exec:{}", program.display())).await,
        ),
        report(
            &format!("connect to 127.0.0.1:{port}"),
            get(&mut kv, format!("connect:127.0.0.1:{port}")).await,
        ),
    ];
    inside.push(report(
        "still serving: read notes.txt",
        get(&mut kv, file(&notes)).await,
    ));
    let stopped = plugin.stop().await?;
    println!("stopped: {:?}", stopped.method);

    for outcome in &inside {
        ensure!(outcome.is_ok(), "the data directory must work: {outcome:?}");
    }
    for outcome in &reaching_out {
        match (args.sandbox, outcome) {
            (true, Err(status)) if denied(status) => {}
            (false, Ok(_)) => {}
            (sandboxed, outcome) => bail!(
                "with the sandbox {}, reaching outside gave {outcome:?}",
                if sandboxed { "on" } else { "off" }
            ),
        }
    }
    ensure!(
        planted.exists() != args.sandbox,
        "the planted file exists only without a sandbox"
    );
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("plugin") => return plugin_main(),
        Some("host") => parse_host_args(args),
        None => std::env::current_exe()
            .context("cannot find this program to run it as the plugin")
            .map(|exe| HostArgs {
                sandbox: true,
                tcp: false,
                automtls: true,
                command: vec![exe.to_string_lossy().into_owned(), "plugin".to_owned()],
            }),
        Some(other) => Err(anyhow::anyhow!(
            "unknown mode {other:?}: expected `plugin`, `host`, or nothing"
        )),
    };
    let result = result.and_then(|args| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run_host(args))
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
