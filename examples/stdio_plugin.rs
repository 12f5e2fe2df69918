//! A plugin that prints: what it writes on stdout after the handshake reaches the
//! host over `plugin.GRPCStdio`, whichever way it was written.
//!
//! It serves `proto.KV` (cookie `BASIC_PLUGIN=hello`, version 1) in memory, so any
//! KV host can drive it; `Put` also writes the value out, and the key says how:
//!
//! | key | writes the value with |
//! | --- | --- |
//! | `println` | `println!` (Rust's buffered stdout) |
//! | `print` | `print!`, no newline, no flush |
//! | `thread` | `println!` on a blocking thread, so the runtime stays free to send it |
//! | `fd` | `write(2)` on file descriptor 1, as C code would |
//! | `child` | a child process (`sh -c 'echo VALUE'`) that inherited stdout |
//! | `eprintln` | `eprintln!` (stderr) |
//! | `log` | `tracing::info!` (hclog JSON on the original stderr) |
//! | any other | `println!("KEY=VALUE")` |
//!
//! `STDIO_PLUGIN_CAPTURE_STDERR=1` captures stderr too; `STDIO_PLUGIN_EARLY=TEXT`
//! prints TEXT on stdout before the handshake, which a host must refuse, quoting it.

use rpcplugin::proto::examples::kv::kv_server::{Kv, KvServer};
use rpcplugin::proto::examples::kv::{Empty, GetRequest, GetResponse, PutRequest};
use rpcplugin::tonic::{self, Request, Response, Status};
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;

#[derive(Default)]
struct Printer {
    values: Mutex<HashMap<String, Vec<u8>>>,
}

#[tonic::async_trait]
impl Kv for Printer {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = request.into_inner().key;
        let value = self.values.lock().unwrap().get(&key).cloned();
        Ok(Response::new(GetResponse {
            value: value.unwrap_or_default(),
        }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<Empty>, Status> {
        let PutRequest { key, value } = request.into_inner();
        let text = String::from_utf8_lossy(&value).into_owned();
        let failed = |err: &dyn std::fmt::Display| Status::internal(err.to_string());
        match key.as_str() {
            "println" => println!("{text}"),
            "print" => print!("{text}"),
            "thread" => tokio::task::spawn_blocking(move || println!("{text}"))
                .await
                .map_err(|e| failed(&e))?,
            "fd" => {
                nix::unistd::write(std::io::stdout(), &value).map_err(|e| failed(&e))?;
            }
            "child" => {
                let status = std::process::Command::new("sh")
                    .args(["-c", "echo \"$0\"", &text])
                    .status()
                    .map_err(|e| failed(&e))?;
                if !status.success() {
                    return Err(Status::internal(format!("sh: {status}")));
                }
            }
            "eprintln" => eprintln!("{text}"),
            "log" => tracing::info!("{text}"),
            other => println!("{other}={text}"),
        }
        self.values.lock().unwrap().insert(key, value);
        Ok(Response::new(Empty {}))
    }
}

fn main() -> ExitCode {
    rpcplugin::server::logging::init();
    if let Ok(text) = std::env::var("STDIO_PLUGIN_EARLY") {
        // What a careless plugin (or a library it calls) does at start-up.
        println!("{text}");
        let _ = std::io::stdout().flush();
    }
    let capture_stderr = std::env::var("STDIO_PLUGIN_CAPTURE_STDERR").is_ok_and(|v| v == "1");
    rpcplugin::plugin_server()
        .handshake("BASIC_PLUGIN", "hello")
        .protocol_version(1)
        .capture_stderr(capture_stderr)
        .add_service_with(|limits| limits.apply(KvServer::new(Printer::default())))
        .run()
}
