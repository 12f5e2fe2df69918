//! Spawning the plugin process, with the guarantees a host needs: its own process
//! group (signals reach the plugin's children too) and a parent-death signal.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc as std_mpsc;
use tokio::process::{Child, Command};

use crate::sandbox;

type SpawnRequest = (
    Command,
    tokio::runtime::Handle,
    tokio::sync::oneshot::Sender<io::Result<Child>>,
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

/// Limits on a plugin process's resources, set with `setrlimit` in the child before
/// it executes the plugin: the first step of isolating a plugin (they bound a
/// runaway plugin; they are no sandbox).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceLimits {
    /// Virtual memory, bytes (`RLIMIT_AS`): allocations beyond it fail. Runtimes
    /// reserve address space generously (threads' stacks, malloc arenas), so leave
    /// room: a small Rust plugin needs a few hundred MiB, a Go one about 1 GiB.
    pub address_space: Option<u64>,
    /// CPU time, whole seconds (`RLIMIT_CPU`): the kernel sends SIGXCPU when it
    /// is used up, which ends a plugin that does not handle it, and SIGKILL one
    /// second of CPU later.
    pub cpu_time: Option<std::time::Duration>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
}

impl ResourceLimits {
    /// No limits (the host's own apply).
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits virtual memory to `bytes`.
    pub fn address_space(mut self, bytes: u64) -> Self {
        self.address_space = Some(bytes);
        self
    }

    /// Limits CPU time (rounded up to whole seconds).
    pub fn cpu_time(mut self, time: std::time::Duration) -> Self {
        self.cpu_time = Some(time);
        self
    }

    /// Limits open file descriptors.
    pub fn open_files(mut self, count: u64) -> Self {
        self.open_files = Some(count);
        self
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Spawns `command` in its own process group with SIGTERM as its parent-death
/// signal, `limits` applied and, last, the sandbox's `confinement`.
pub(crate) async fn spawn(
    mut command: Command,
    limits: ResourceLimits,
    confinement: Option<sandbox::Confinement>,
) -> io::Result<Child> {
    command.process_group(0);
    let host_pid = std::process::id();
    set_parent_death_signal(&mut command, host_pid);
    if !limits.is_empty() {
        set_resource_limits(&mut command, limits);
    }
    // Last: the steps before it need nothing the sandbox denies, and no step
    // after it runs in the host's rights.
    if let Some(confinement) = confinement {
        sandbox::install(&mut command, confinement);
    }
    // A oneshot, not a blocking receive: awaiting it needs no thread of tokio's
    // blocking pool, whose first use would add a thread start to every launch.
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    launcher()
        .lock()
        .map_err(|_| io::Error::other("launcher lock poisoned"))?
        .send((command, handle, reply_tx))
        .map_err(|_| io::Error::other("the rpcplugin launcher thread could not be started"))?;
    reply_rx
        .await
        .map_err(|_| io::Error::other("the launcher thread dropped the request"))?
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command, host_pid: u32) {
    // SAFETY: the closure runs between fork and exec in the child, where only
    // async-signal-safe calls are allowed: prctl, getppid and _exit are, and
    // `io::Error::from(Errno)` holds the raw error number without allocating.
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

#[allow(unsafe_code)]
fn set_resource_limits(command: &mut Command, limits: ResourceLimits) {
    use nix::sys::resource::{Resource, setrlimit};
    let cpu_seconds = limits
        .cpu_time
        .map(|t| t.as_secs() + u64::from(t.subsec_nanos() > 0));
    // SAFETY: runs between fork and exec in the child; setrlimit is a plain system
    // call (async-signal-safe), the values were computed before the fork, and
    // `io::Error::from(Errno)` holds the raw error number without allocating.
    unsafe {
        command.pre_exec(move || {
            if let Some(bytes) = limits.address_space {
                setrlimit(Resource::RLIMIT_AS, bytes, bytes).map_err(io::Error::from)?;
            }
            if let Some(seconds) = cpu_seconds {
                // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL
                // (equal limits would skip straight to SIGKILL).
                setrlimit(Resource::RLIMIT_CPU, seconds, seconds + 1).map_err(io::Error::from)?;
            }
            if let Some(count) = limits.open_files {
                setrlimit(Resource::RLIMIT_NOFILE, count, count).map_err(io::Error::from)?;
            }
            Ok(())
        });
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_parent_death_signal(_command: &mut Command, _host_pid: u32) {
    // No parent-death signal here: the plugin-side parent watch is the only guard.
}
