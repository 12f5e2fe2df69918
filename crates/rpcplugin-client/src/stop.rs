//! Stopping a plugin: the Shutdown call, then SIGTERM, then SIGKILL to its process
//! group, and what a dropped client does instead.

use rpcplugin_core::Code;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rpcplugin_core::{Error, Result};
use rpcplugin_proto::plugin::grpc_controller_client::GrpcControllerClient;
use tokio::process::Child;
use tonic::transport::Channel;

use crate::{PluginClient, registry};

/// How a plugin ended when it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopMethod {
    /// It exited after the Shutdown RPC.
    Graceful,
    /// It needed SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
    /// It had already exited before the stop began.
    AlreadyExited,
    /// The client had attached to a plugin it did not start
    /// ([`PluginClient::attach`]): it only disconnected, and the plugin runs on.
    Detached,
}

/// How a stop ended, as the `reason` of the `rpcplugin.plugin.exits` metric.
fn exit_reason(stopped: &Stopped) -> &'static str {
    match stopped.method {
        StopMethod::Graceful => "shutdown_rpc",
        StopMethod::Terminated => "sigterm",
        StopMethod::Killed => "sigkill",
        StopMethod::AlreadyExited | StopMethod::Detached if stopped.status.success() => "exited",
        StopMethod::AlreadyExited | StopMethod::Detached => "failed",
    }
}

/// The result of [`PluginClient::stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Which step of the stop sequence ended the process.
    pub method: StopMethod,
    /// Its exit status (success for [`StopMethod::Detached`], whose process did
    /// not exit).
    pub status: ExitStatus,
}

impl PluginClient {
    /// Stops the plugin: `GRPCController.Shutdown`, a grace period, SIGTERM to its
    /// process group, another grace period, SIGKILL; then reaps it and removes its
    /// socket directory. Never waits longer than about twice the grace plus a second.
    /// An attached client ([`PluginClient::attach`]) only disconnects
    /// ([`StopMethod::Detached`]): it never stops a plugin it did not start.
    pub async fn stop(mut self) -> Result<Stopped> {
        // As go-plugin: the broker goes first, then the plugin.
        self.broker.close();
        let Some(mut child) = self.child.take() else {
            use std::os::unix::process::ExitStatusExt;
            tracing::debug!(plugin = %self.name, pid = self.pid, "detached from the plugin; it keeps running");
            return Ok(Stopped {
                method: StopMethod::Detached,
                status: ExitStatus::from_raw(0),
            });
        };
        let started = Instant::now();
        let stopped = stop_child(&mut child, self.pid, &self.channel, self.grace).await;
        registry::unregister(self.pid);
        if let Ok(done) = &stopped {
            self.metrics.exit(&self.name, exit_reason(done));
            self.remove_stale_socket();
        }
        tracing::debug!(plugin = %self.name, pid = self.pid, took = ?started.elapsed(), ?stopped, "plugin stopped");
        self.finish_io().await;
        if let Some(dir) = self.socket_dir.take() {
            dir.close()?;
        }
        stopped
    }

    /// Kills the plugin at once (SIGKILL to its process group), reaps it and removes
    /// its socket directory: for a plugin that is hung or must not run a moment longer.
    /// An attached client never signals a plugin it did not start: it detaches.
    pub async fn kill(mut self) -> Result<Stopped> {
        self.broker.close();
        let Some(mut child) = self.child.take() else {
            use std::os::unix::process::ExitStatusExt;
            return Ok(Stopped {
                method: StopMethod::Detached,
                status: ExitStatus::from_raw(0),
            });
        };
        registry::unregister(self.pid);
        let method = match child.try_wait() {
            Ok(Some(_)) => StopMethod::AlreadyExited,
            _ => StopMethod::Killed,
        };
        kill_group(self.pid, Signal::SIGKILL);
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .map_err(|_| {
                Error::new(
                    Code::ProcessUnkillable,
                    format!("plugin process {} did not exit after SIGKILL", self.pid),
                )
                .with_hint("the process is probably stuck in the kernel (uninterruptible I/O); check `ps -o stat -p PID`")
            })?
            .map_err(|e| {
                Error::new(Code::ProcessWait, "cannot reap the plugin process")
                    .with_source(e)
            })?;
        tracing::debug!(plugin = %self.name, pid = self.pid, %status, "plugin killed");
        self.metrics
            .exit(&self.name, exit_reason(&Stopped { method, status }));
        self.remove_stale_socket();
        self.finish_io().await;
        if let Some(dir) = self.socket_dir.take() {
            dir.close()?;
        }
        Ok(Stopped { method, status })
    }
}

impl PluginClient {
    /// The Unix socket the plugin announced, when it served on one.
    fn unix_socket(&self) -> Option<std::path::PathBuf> {
        match &self.handshake.endpoint {
            rpcplugin_core::Endpoint::Unix(path) => Some(path.clone()),
            _ => None,
        }
    }

    /// After the process is reaped: a plugin that died without cleaning up (a
    /// crash, SIGKILL) leaves its socket, and an rpcplugin plugin its private
    /// directory; nobody else would ever remove them.
    fn remove_stale_socket(&self) {
        if let Some(socket) = self.unix_socket() {
            rpcplugin_transport::remove_stale_socket(&socket, self.pid);
        }
    }
}

async fn stop_child(
    child: &mut Child,
    pid: u32,
    channel: &Channel,
    grace: Duration,
) -> Result<Stopped> {
    if let Ok(Some(status)) = child.try_wait() {
        kill_group(pid, Signal::SIGKILL);
        return Ok(Stopped {
            method: StopMethod::AlreadyExited,
            status,
        });
    }
    let mut controller = GrpcControllerClient::new(channel.clone());
    let shutdown = tokio::time::timeout(
        grace,
        controller.shutdown(rpcplugin_proto::plugin::Empty {}),
    );
    match shutdown.await {
        Ok(Ok(_)) => {}
        // go-plugin 1.0.1 stops inside the handler and never replies; the process
        // exiting is what counts.
        Ok(Err(status)) => tracing::debug!(pid, %status, "shutdown call failed"),
        Err(_) => tracing::debug!(pid, "shutdown call timed out"),
    }
    let steps = [
        (None, StopMethod::Graceful),
        (Some(Signal::SIGTERM), StopMethod::Terminated),
        (Some(Signal::SIGKILL), StopMethod::Killed),
    ];
    for (signal, method) in steps {
        if let Some(signal) = signal {
            tracing::debug!(
                pid,
                ?signal,
                "plugin still running; signalling its process group"
            );
            kill_group(pid, signal);
        }
        let wait = if signal == Some(Signal::SIGKILL) {
            Duration::from_secs(5)
        } else {
            grace
        };
        if let Ok(status) = tokio::time::timeout(wait, child.wait()).await {
            let status = status.map_err(|e| {
                Error::new(Code::ProcessWait, "cannot reap the plugin process").with_source(e)
            })?;
            // Children the plugin left behind go with it.
            kill_group(pid, Signal::SIGKILL);
            return Ok(Stopped { method, status });
        }
    }
    Err(Error::new(
        Code::ProcessUnkillable,
        format!("plugin process {pid} did not exit after SIGKILL"),
    )
    .with_hint("the process is probably stuck in the kernel (uninterruptible I/O); check `ps -o stat -p PID`"))
}

pub(crate) fn kill_group(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // ESRCH (nobody left in the group) is the normal case after an exit.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

impl Drop for PluginClient {
    fn drop(&mut self) {
        self.broker.close();
        if let Some(child) = self.child.take() {
            end_dropped(child, self.pid, self.unix_socket());
        }
    }
}

/// Ends a plugin process whose owner was dropped without a stop: a
/// [`PluginClient`], or the start guard when a start fails after the spawn.
pub(crate) fn end_dropped(mut child: Child, pid: u32, socket: Option<std::path::PathBuf>) {
    registry::unregister(pid);
    let remove_socket = move || {
        if let Some(socket) = &socket {
            rpcplugin_transport::remove_stale_socket(socket, pid);
        }
    };
    if matches!(child.try_wait(), Ok(Some(_))) {
        kill_group(pid, Signal::SIGKILL);
        remove_socket();
        return;
    }
    // No RPC from a destructor: SIGTERM lets an rpcplugin plugin stop gracefully
    // and remove its socket. Its HTTP/2 shutdown needs this host's runtime to
    // answer a PING, so the bounded wait and the SIGKILL happen on a reaper
    // thread rather than by blocking the thread that dropped us.
    kill_group(pid, Signal::SIGTERM);
    let reap = move || {
        let deadline = Instant::now() + DROP_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Also takes the plugin's own children, exited leader or not.
        kill_group(pid, Signal::SIGKILL);
        let _ = child.start_kill();
        // Reaped within a bounded wait: SIGKILL is not instant for a process
        // with many threads, and the socket may only go once it has exited.
        for _ in 0..200 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                remove_socket();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let spawned = std::thread::Builder::new()
        .name("rpcplugin-reaper".into())
        .spawn(reap);
    if spawned.is_err() {
        kill_group(pid, Signal::SIGKILL);
    }
}

/// How long a dropped client's plugin gets between SIGTERM and SIGKILL.
const DROP_GRACE: Duration = Duration::from_millis(500);
