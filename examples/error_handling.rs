//! A host handling each kind of error rpcplugin returns.
//!
//! ```text
//! cargo run --example error_handling
//! ```
//!
//! Every error has a `kind()` to branch on, a stable `code()` to match precisely or
//! count in metrics, a one-line Display, a `hint()` saying what to do, and a source
//! chain; `rpcplugin::render` prints all of it. This program provokes one failure of
//! each kind, using itself as a misbehaving plugin, and shows how a host might react.

use rpcplugin::{Error, ErrorKind};
use std::process::ExitCode;
use std::time::Duration;

/// The plugin side's misbehaviours, chosen by the first argument.
fn misbehave(mode: &str) -> ExitCode {
    match mode {
        // Prints something that is not a handshake line.
        "garbage" => {
            println!("hello from a confused plugin");
            ExitCode::SUCCESS
        }
        // Never prints a handshake line.
        "silent" => {
            std::thread::sleep(Duration::from_secs(30));
            ExitCode::SUCCESS
        }
        // A real plugin that refuses AutoMTLS (PLUGIN_AUTO_MTLS=false is set by the
        // host below): it answers in plaintext, which the host must not accept.
        _ => rpcplugin::plugin_server()
            .handshake("BASIC_PLUGIN", "hello")
            .run(),
    }
}

/// What a host might do for each kind.
fn react(err: &Error) -> &'static str {
    match err.kind() {
        ErrorKind::Config => "fix the configuration; retrying will not help",
        ErrorKind::Process => "check the plugin's installation",
        ErrorKind::Handshake => "the plugin is broken or incompatible: report it, disable it",
        ErrorKind::Timeout => "maybe retry once with a longer timeout, then give up",
        ErrorKind::Security => "refuse the plugin and alert: this may be an attack",
        ErrorKind::Transport | ErrorKind::Protocol => "retry with backoff (a Supervisor does)",
        _ => "log it",
    }
}

async fn provoke(what: &str) -> Error {
    let me = std::env::current_exe().expect("the path of this program");
    let builder = match what {
        "missing executable" => rpcplugin::plugin_client("/nonexistent/plugin"),
        "no cookie configured" => rpcplugin::plugin_client(&me),
        "garbage on stdout" => rpcplugin::plugin_client(&me).arg("garbage"),
        "no handshake in time" => rpcplugin::plugin_client(&me)
            .arg("silent")
            .handshake_timeout(Duration::from_millis(500)),
        "plaintext where TLS was asked" => rpcplugin::plugin_client(&me)
            .arg("plaintext")
            .env("PLUGIN_AUTO_MTLS", "false"),
        _ => unreachable!(),
    };
    let builder = if what == "no cookie configured" {
        builder
    } else {
        builder.handshake("BASIC_PLUGIN", "hello")
    };
    match builder.start().await {
        Ok(plugin) => {
            let _ = plugin.stop().await;
            panic!("{what}: the plugin started");
        }
        Err(err) => err,
    }
}

async fn host() {
    for what in [
        "missing executable",
        "no cookie configured",
        "garbage on stdout",
        "no handshake in time",
        "plaintext where TLS was asked",
    ] {
        let err = provoke(what).await;
        println!("== {what}: kind {}, code {}", err.kind(), err.code());
        println!("   the host would: {}", react(&err));
        for line in rpcplugin::render(&err).lines() {
            println!("   | {line}");
        }
    }
}

fn main() -> ExitCode {
    if let Some(mode) = std::env::args().nth(1) {
        return misbehave(&mode);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(host());
    ExitCode::SUCCESS
}
