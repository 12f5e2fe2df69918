//! What ends a serving plugin: the Shutdown call, signals, the host going away,
//! or the caller's own future, all funnelled into one channel.

use rpcplugin_core::Code;
use std::future::Future;
use std::time::Duration;

use rpcplugin_core::{Error, Result};
use tokio::sync::mpsc;

/// Why the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The host called `plugin.GRPCController/Shutdown`.
    ShutdownRpc,
    /// SIGTERM (or SIGINT when not ignored).
    Signal,
    /// The host process is gone (this process was re-parented).
    HostGone,
    /// The future given to [`Builder::serve_with_shutdown`](crate::Builder::serve_with_shutdown) completed.
    Requested,
    /// The file named by `PLUGIN_SHUTDOWN_FILE_PATH` appeared (and was removed).
    ShutdownFile,
}

/// SIGTERM, SIGINT (unless ignored), the host going away, and the caller's signal
/// all end in the same stop channel.
pub(crate) fn spawn_stop_sources(
    stop: mpsc::Sender<StopReason>,
    ignore_sigint: bool,
    watch_parent: bool,
    shutdown_file: Option<std::path::PathBuf>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal as unix_signal};
    let signal_error = |err: std::io::Error| {
        Error::new(Code::ProcessSignal, "cannot install signal handlers").with_source(err)
    };
    let mut term = unix_signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = unix_signal(SignalKind::interrupt()).map_err(signal_error)?;
    let parent = std::os::unix::process::parent_id();
    Ok(tokio::spawn(async move {
        let mut interrupts = 0u32;
        let mut ticks = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut signal = std::pin::pin!(signal);
        let reason = loop {
            tokio::select! {
                _ = term.recv() => break StopReason::Signal,
                _ = int.recv() => {
                    if !ignore_sigint {
                        break StopReason::Signal;
                    }
                    // A terminal's Ctrl-C reaches the whole process group; the host
                    // decides how its plugins stop (as go-plugin does).
                    interrupts += 1;
                    tracing::debug!(count = interrupts, "plugin received interrupt signal, ignoring");
                }
                _ = tick.tick() => {
                    // Re-parented: the host died without stopping us. Never on PID 1
                    // parents (a container's init started us on purpose).
                    if watch_parent && parent != 1 && std::os::unix::process::parent_id() != parent {
                        break StopReason::HostGone;
                    }
                    // pyvider-rpcplugin's shutdown file, looked for every second.
                    ticks += 1;
                    if let Some(path) = shutdown_file.as_deref().filter(|_| ticks.is_multiple_of(5))
                        && path.exists()
                    {
                        if let Err(e) = std::fs::remove_file(path) {
                            tracing::warn!(path = %path.display(), error = %e, "cannot remove the shutdown file");
                        }
                        tracing::info!(path = %path.display(), "shutdown file found; stopping");
                        break StopReason::ShutdownFile;
                    }
                }
                () = &mut signal => break StopReason::Requested,
            }
        };
        let _ = stop.send(reason).await;
    }))
}
