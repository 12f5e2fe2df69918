//! Every plugin this process started and has not stopped yet, so that an application
//! can stop them all on its way out (go-plugin's `CleanupClients`).
//!
//! Plugins never outlive their host anyway (a parent-death signal and the plugin's
//! own parent watch see to that); these functions are for stopping them *before*
//! the host exits, gracefully, and from places that hold no [`PluginClient`]
//! (a signal handler task, a panic hook).
//!
//! [`PluginClient`]: crate::PluginClient

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

static LIVE: Mutex<BTreeMap<u32, String>> = Mutex::new(BTreeMap::new());

pub(crate) fn register(pid: u32, name: &str) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pid, name.to_owned());
}

pub(crate) fn unregister(pid: u32) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
}

fn snapshot() -> Vec<(u32, String)> {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(pid, name)| (*pid, name.clone()))
        .collect()
}

/// The plugins started by this process and not stopped yet: `(pid, name)`.
pub fn running_plugins() -> Vec<(u32, String)> {
    snapshot()
}

/// Sends SIGKILL to every running plugin's process group at once and returns how
/// many there were. Does not wait: for panic hooks and last-resort exits. The
/// clients that own them reap them when they are stopped or dropped.
pub fn kill_all_plugins() -> usize {
    let plugins = snapshot();
    for (pid, name) in &plugins {
        tracing::debug!(pid, plugin = %name, "killing plugin");
        signal_group(*pid, Signal::SIGKILL);
    }
    plugins.len()
}

/// Stops every running plugin: SIGTERM to each process group (an rpcplugin plugin
/// then drains its calls and removes its socket), up to `grace` for them to exit,
/// then SIGKILL for the rest. Returns how many plugins there were.
pub async fn cleanup_plugins(grace: Duration) -> usize {
    let plugins = snapshot();
    for (pid, name) in &plugins {
        tracing::debug!(pid, plugin = %name, "stopping plugin (cleanup)");
        signal_group(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    loop {
        let remaining: Vec<u32> = plugins
            .iter()
            .map(|(pid, _)| *pid)
            .filter(|pid| alive(*pid))
            .collect();
        if remaining.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for pid in remaining {
                tracing::warn!(
                    pid,
                    "plugin still running after the cleanup grace; killing it"
                );
                signal_group(pid, Signal::SIGKILL);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    plugins.len()
}

fn signal_group(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Running, not a zombie waiting for its owner to reap it.
fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if nix::sys::signal::kill(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_none_or(|state| !matches!(state, 'Z' | 'X'))
}
