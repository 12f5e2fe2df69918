//! Spawning the plugin process, with the guarantees a host needs: its own process
//! group (signals reach the plugin's children too) and a parent-death signal.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc as std_mpsc;
use tokio::process::{Child, Command};

type SpawnRequest = (
    Command,
    tokio::runtime::Handle,
    std_mpsc::Sender<io::Result<Child>>,
);

/// Linux sends the parent-death signal when the *thread* that forked exits, not the
/// process. A caller on a short-lived thread (tokio's blocking pool retires idle
/// threads after 10 s) would get its plugin killed at a random moment, so every
/// spawn happens on one launcher thread that lives as long as the process.
fn launcher() -> &'static std::sync::Mutex<std_mpsc::Sender<SpawnRequest>> {
    static LAUNCHER: OnceLock<std::sync::Mutex<std_mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new()
            .name("rpcplugin-launcher".into())
            .spawn(move || {
                for (mut command, handle, reply) in rx {
                    let _guard = handle.enter();
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(err) = started {
            // The receiver is gone with the closure, so every spawn reports an error
            // instead of the host panicking.
            tracing::error!(error = %err, "cannot start the rpcplugin launcher thread");
        }
        std::sync::Mutex::new(tx)
    })
}

/// Spawns `command` in its own process group with SIGTERM as its parent-death signal.
pub(crate) async fn spawn(mut command: Command) -> io::Result<Child> {
    command.process_group(0);
    let host_pid = std::process::id();
    set_parent_death_signal(&mut command, host_pid);
    let (reply_tx, reply_rx) = std_mpsc::channel();
    let handle = tokio::runtime::Handle::current();
    launcher()
        .lock()
        .map_err(|_| io::Error::other("launcher lock poisoned"))?
        .send((command, handle, reply_tx))
        .map_err(|_| io::Error::other("the rpcplugin launcher thread could not be started"))?;
    // The launcher answers right after fork/exec; blocking here is brief but we
    // still keep the async worker free.
    tokio::task::spawn_blocking(move || reply_rx.recv())
        .await
        .map_err(io::Error::other)?
        .map_err(|_| io::Error::other("the launcher thread dropped the request"))?
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command, host_pid: u32) {
    // SAFETY: the closure runs between fork and exec in the child, where only
    // async-signal-safe calls are allowed: prctl, getppid and _exit are.
    unsafe {
        command.pre_exec(move || {
            // SIGTERM, not SIGKILL: an rpcplugin plugin then stops gracefully and
            // removes its socket; a Go plugin exits at once either way.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(io::Error::from)?;
            // The host may have died between fork and prctl: then nobody will send
            // the signal, so don't start at all.
            if std::os::unix::process::parent_id() != host_pid {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_parent_death_signal(_command: &mut Command, _host_pid: u32) {
    // No parent-death signal here: the plugin-side parent watch is the only guard.
}
