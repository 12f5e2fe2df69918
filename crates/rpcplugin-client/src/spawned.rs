//! [`Spawned`]: the guard that owns a started plugin process and its socket
//! directory until its [`PluginClient`] exists.

use rpcplugin_core::Code;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_core::{Error, Result};
use rpcplugin_handshake::HandshakeLine;
use rpcplugin_transport::SocketDir;
use tokio::io::BufReader;
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;

use crate::connect::Connected;
use crate::{EffectiveSandbox, PluginClient, output, registry, stdio, stop};

/// A plugin process between its spawn and its finished [`PluginClient`].
///
/// Dropped before [`Spawned::into_client`] (any phase failed, or the start's
/// future was cancelled), it ends the process as a dropped client does (SIGTERM,
/// then SIGKILL to its process group from a reaper thread) and removes the socket
/// directory.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) name: String,
    pub(crate) pid: u32,
    /// Taken by [`Spawned::into_client`], which disarms the guard.
    child: Option<Child>,
    socket_dir: Option<SocketDir>,
    /// The last lines of the plugin's stderr, for hints and for the client.
    pub(crate) tail: Arc<output::Tail>,
    stderr_task: Option<JoinHandle<()>>,
    /// Until the handshake line is read; then drained into the log.
    stdout: Option<BufReader<ChildStdout>>,
    stdout_task: Option<JoinHandle<()>>,
    /// The confinement it was started with.
    pub(crate) sandbox: Option<EffectiveSandbox>,
}

impl Spawned {
    /// Takes ownership of a just-spawned process and starts forwarding its stderr.
    pub(crate) fn new(
        mut child: Child,
        name: String,
        socket_dir: SocketDir,
        sandbox: Option<EffectiveSandbox>,
    ) -> Self {
        let pid = child.id().unwrap_or_default();
        registry::register(pid, &name);
        tracing::debug!(plugin = %name, pid, "plugin started");
        let tail = Arc::new(output::Tail::default());
        let stderr_task = child.stderr.take().map(|stderr| {
            tokio::spawn(output::forward_stderr(
                BufReader::new(stderr),
                tail.clone(),
                name.clone(),
                pid,
            ))
        });
        Self {
            stdout: child.stdout.take().map(BufReader::new),
            child: Some(child),
            socket_dir: Some(socket_dir),
            stderr_task,
            stdout_task: None,
            sandbox,
            tail,
            name,
            pid,
        }
    }

    /// The plugin's private socket directory (its brokered sockets go there too).
    pub(crate) fn socket_dir(&self) -> Option<&Path> {
        self.socket_dir.as_ref().map(SocketDir::path)
    }

    /// Handshake: the first line the plugin prints on stdout, within `timeout`.
    /// What it prints after the line is drained into the log.
    pub(crate) async fn read_handshake(&mut self, timeout: Duration) -> Result<String> {
        let Some(mut stdout) = self.stdout.take() else {
            return Err(Error::new(
                Code::HandshakePluginExited,
                format!(
                    "plugin {} has no stdout to read a handshake from",
                    self.name
                ),
            ));
        };
        let read = tokio::time::timeout(
            timeout,
            output::read_line_limited(&mut stdout, output::MAX_LINE),
        );
        let line = match read.await {
            Ok(Ok(Some(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
            // stdout closed: the plugin exited (or closed stdout) before the line.
            Ok(Ok(None)) | Ok(Err(_)) => return Err(self.exited_before_handshake().await),
            Err(_) => {
                let report = self.stderr_report().await;
                return Err(Error::new(
                    Code::HandshakeTimeout,
                    format!(
                        "plugin {} printed no handshake within {timeout:?}",
                        self.name
                    ),
                )
                .with_hint(format!(
                    "a plugin prints its handshake line on stdout once it serves; raise \
                     PLUGIN_HANDSHAKE_TIMEOUT if it starts slowly; {report}"
                )));
            }
        };
        self.stdout_task = Some(tokio::spawn(output::drain_stdout(
            stdout,
            self.name.clone(),
            self.pid,
        )));
        Ok(line)
    }

    /// The error for a plugin whose stdout closed before the handshake line: how
    /// it ended, what it wrote on stderr, and whether that was about the cookie.
    async fn exited_before_handshake(&mut self) -> Error {
        let how = match self.child.as_mut() {
            Some(child) => match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
                Ok(Ok(status)) => describe_status(status),
                _ => "closed its stdout".to_owned(),
            },
            None => "closed its stdout".to_owned(),
        };
        let report = self.stderr_report().await;
        let cookie_hint = if report.contains("plugin") && report.to_lowercase().contains("cookie")
            || report.contains("not meant to be executed directly")
        {
            "\n  the plugin did not accept the magic cookie: host and plugin must use the same cookie key and value"
        } else {
            ""
        };
        Error::new(
            Code::HandshakePluginExited,
            format!("plugin {} {} before the handshake", self.name, how),
        )
        .with_hint(format!("{report}{cookie_hint}"))
    }

    /// Describes what the plugin wrote on stderr, for hints.
    async fn stderr_report(&mut self) -> String {
        // A plugin that just exited may still have lines in the pipe.
        if let Some(task) = self.stderr_task.as_mut()
            && tokio::time::timeout(Duration::from_millis(500), task)
                .await
                .is_ok()
        {
            // Finished: a JoinHandle must not be polled again.
            self.stderr_task = None;
        }
        let lines = self.tail.lines();
        if lines.is_empty() {
            "it wrote nothing on stderr".to_owned()
        } else {
            format!("its stderr ended with:\n    {}", lines.join("\n    "))
        }
    }

    /// The last phase: hands the process, the connection and the output tasks to
    /// the client (disarming the guard) and starts forwarding `GRPCStdio`.
    pub(crate) fn into_client(
        mut self,
        handshake: HandshakeLine,
        connected: Connected,
        grace: Duration,
        sink: stdio::Sink,
    ) -> PluginClient {
        let name = std::mem::take(&mut self.name);
        let stdio_task = stdio::spawn(connected.channel.clone(), sink, name.clone(), self.pid);
        PluginClient {
            pid: self.pid,
            child: self.child.take(),
            channel: connected.channel,
            handshake,
            socket_dir: self.socket_dir.take(),
            tail: self.tail.clone(),
            grace,
            stderr_task: self.stderr_task.take(),
            stdout_task: self.stdout_task.take(),
            stdio_task: Some(stdio_task),
            target: connected.target,
            broker: connected.broker,
            attached: false,
            started: std::time::Instant::now(),
            calls: Default::default(),
            metrics: Default::default(),
            timings: None,
            sandbox: self.sandbox.take(),
            name,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop::end_dropped(child, self.pid, None);
        }
        // The socket directory's own drop removes it, with whatever is left in it.
    }
}

/// How a process ended, for messages: "exited with status 3".
pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::start::{Resolved, spawn};
    use rpcplugin_config::Environment;
    use std::time::Instant;

    /// Spawns `sh -c script` the way a start does, with a cookie from the
    /// environment and a socket directory of its own.
    async fn spawn_sh(script: &str) -> Spawned {
        spawn_sh_in(script, None).await
    }

    async fn spawn_sh_in(script: &str, sandbox: Option<crate::Sandbox>) -> Spawned {
        let builder = PluginClient::builder("/bin/sh")
            .sandbox(sandbox)
            .args(["-c", script])
            .environment(Environment::from_pairs([
                ("PLUGIN_MAGIC_COOKIE_KEY", "BASIC_PLUGIN"),
                ("PLUGIN_MAGIC_COOKIE_VALUE", "hello"),
                ("PLUGIN_AUTO_MTLS", "false"),
            ]));
        let resolved = Resolved::new(&builder).unwrap();
        spawn(&builder, &resolved, "/bin/sh".as_ref())
            .await
            .unwrap()
    }

    fn alive(pid: u32) -> bool {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
        nix::sys::signal::kill(pid, None).is_ok()
    }

    /// Polls for at most two seconds.
    async fn eventually(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done()
    }

    #[tokio::test]
    async fn the_first_stdout_line_is_the_handshake() {
        let mut spawned =
            spawn_sh("echo \"1|1|unix|$PLUGIN_UNIX_SOCKET_DIR/plugin.sock|grpc|\"; sleep 5").await;
        let dir = spawned.socket_dir().unwrap().to_owned();
        let line = spawned
            .read_handshake(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            line,
            format!("1|1|unix|{}/plugin.sock|grpc|", dir.display())
        );
    }

    #[tokio::test]
    async fn a_sandboxed_child_reads_only_what_its_policy_names() {
        let script = "a=denied; read -r l < /etc/passwd && a=passwd; \
                      b=denied; read -r l < /etc/hostname && b=hostname; \
                      c=denied; : > \"$PLUGIN_UNIX_SOCKET_DIR/x\" && c=socket-dir; \
                      echo \"$a $b $c\"";
        let policy = crate::Sandbox::new().read_path("/etc/hostname");
        let mut confined = spawn_sh_in(script, Some(policy)).await;
        let effective = confined.sandbox.clone().expect("sandboxed");
        assert!(effective.filesystem, "{effective}");
        let line = confined
            .read_handshake(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(line, "denied hostname socket-dir", "{effective}");
        let mut free = spawn_sh_in(script, None).await;
        let line = free.read_handshake(Duration::from_secs(5)).await.unwrap();
        assert_eq!(line, "passwd hostname socket-dir");
    }

    #[tokio::test]
    async fn a_plugin_that_exits_first_is_reported_with_its_stderr() {
        let mut spawned =
            spawn_sh("echo 'This binary is a plugin. These are not meant to be executed directly.' >&2; exit 1")
                .await;
        let err = spawned
            .read_handshake(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::HandshakePluginExited);
        assert_eq!(
            err.to_string(),
            "plugin sh exited with status 1 before the handshake"
        );
        let hint = err.hint().unwrap();
        assert!(hint.contains("not meant to be executed directly"), "{hint}");
        assert!(hint.contains("magic cookie"), "{hint}");
    }

    #[tokio::test]
    async fn a_silent_plugin_times_out_and_the_dropped_guard_cleans_up() {
        let mut spawned = spawn_sh("echo starting >&2; exec sleep 30").await;
        let (pid, dir) = (spawned.pid, spawned.socket_dir().unwrap().to_owned());
        assert!(dir.is_dir());
        let err = spawned
            .read_handshake(Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::HandshakeTimeout);
        assert!(err.hint().unwrap().contains("starting"), "{err:?}");
        assert!(alive(pid));
        drop(spawned);
        assert!(!dir.exists(), "the socket directory is removed at once");
        assert!(
            eventually(|| !alive(pid)).await,
            "the plugin process {pid} is ended and reaped"
        );
    }
}
