//! Starting a plugin after the spawn: reading and checking its handshake line,
//! connecting, and checking its health.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_config::Environment;
use rpcplugin_core::{Error, ErrorKind, Result};
use rpcplugin_crypto::Sha256;
use rpcplugin_handshake::HandshakeLine;
use rpcplugin_proto::health::v1::HealthCheckRequest;
use rpcplugin_proto::health::v1::health_check_response::ServingStatus;
use rpcplugin_proto::health::v1::health_client::HealthClient;
use tokio::io::BufReader;
use tonic::transport::Channel;

use crate::{Connection, PluginClient, Target, output, tls};

impl PluginClient {
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

    pub(crate) async fn read_handshake(
        &mut self,
        stdout: &mut BufReader<tokio::process::ChildStdout>,
        timeout: Duration,
    ) -> Result<String> {
        let child = self.child.as_mut().expect("child is running");
        let read =
            tokio::time::timeout(timeout, output::read_line_limited(stdout, output::MAX_LINE));
        let line = match read.await {
            Ok(Ok(Some(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Ok(None)) | Ok(Err(_)) => {
                // stdout closed: the plugin exited (or closed stdout) before the line.
                let status = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
                let how = match status {
                    Ok(Ok(status)) => describe_status(status),
                    _ => "closed its stdout".to_owned(),
                };
                let report = self.stderr_report().await;
                let cookie_hint = if report.contains("plugin")
                    && report.to_lowercase().contains("cookie")
                    || report.contains("not meant to be executed directly")
                {
                    "\n  the plugin did not accept the magic cookie: host and plugin must use the same cookie key and value"
                } else {
                    ""
                };
                return Err(Error::new(
                    ErrorKind::Handshake,
                    "handshake.plugin_exited",
                    format!("plugin {} {} before the handshake", self.name, how),
                )
                .with_hint(format!("{report}{cookie_hint}")));
            }
            Err(_) => {
                let report = self.stderr_report().await;
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "handshake.timeout",
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
        Ok(line)
    }

    pub(crate) fn check_handshake(
        &mut self,
        line: &str,
        versions: &[u32],
        networks: &[rpcplugin_core::Network],
    ) -> Result<HandshakeLine> {
        let tail = self.tail.lines();
        let with_context = |err: Error, what: &str| {
            let mut hint = format!(
                "the plugin's first stdout line was {:?}",
                truncate(line, 300)
            );
            if !tail.is_empty() {
                hint.push_str(&format!(
                    "; its stderr ended with:\n    {}",
                    tail.join("\n    ")
                ));
            }
            Error::new(
                err.kind(),
                err.code(),
                format!("plugin {} {what}", self.name),
            )
            .with_hint(hint)
            .with_source(err)
        };
        let parsed =
            HandshakeLine::parse(line).map_err(|e| with_context(e, "sent an invalid handshake"))?;
        rpcplugin_handshake::check_line(&parsed, versions).map_err(|e| {
            let what = if e.code() == "handshake.incompatible_app_version" {
                "has no app protocol version in common with this host"
            } else {
                "cannot be used by this host"
            };
            with_context(e, what)
        })?;
        let network = parsed.endpoint.network();
        if !networks.contains(&network) {
            return Err(Error::new(
                ErrorKind::Config,
                "config.transport_not_allowed",
                format!("plugin {} serves over {network}, which this host does not accept", self.name),
            )
            .with_hint(format!(
                "PLUGIN_CLIENT_TRANSPORTS allows {networks:?}; add {network} there, or set PLUGIN_SERVER_TRANSPORTS for the plugin"
            )));
        }
        Ok(parsed)
    }

    /// Adds the handshake line to a security refusal's hint, for the user to see
    /// what the plugin announced.
    pub(crate) fn with_line_context(&self, err: Error, line: &str) -> Error {
        let hint = format!(
            "{}; the plugin's handshake line was {:?}",
            err.hint().unwrap_or_default(),
            truncate(line.trim(), 120)
        );
        err.with_hint(hint)
    }

    /// Multiplexed: one connection to the plugin and a yamux session over it; the
    /// streams the plugin opens go to the brokered servers it knocked for.
    pub(crate) async fn start_session(
        &self,
        router: Arc<rpcplugin_transport::MuxRouter>,
    ) -> Result<()> {
        let raw = rpcplugin_transport::connect(&self.handshake.endpoint).await?;
        let (session, mut inbound) =
            rpcplugin_transport::MuxSession::new(raw, rpcplugin_transport::MuxRole::Client);
        router.set_session(session);
        let name = self.name.clone();
        tokio::spawn(async move {
            while let Some(stream) = inbound.accept().await {
                if router.route(stream).is_some() {
                    tracing::warn!(plugin = %name, "closed a stream the plugin opened without knocking");
                }
            }
        });
        Ok(())
    }

    pub(crate) async fn connect(
        &mut self,
        dial: Option<tls::Dial>,
        mux: Option<Arc<rpcplugin_transport::MuxRouter>>,
        connection: Connection,
    ) -> Result<Channel> {
        let target = Target {
            endpoint: self.handshake.endpoint.clone(),
            dial: dial.map(Arc::new),
            mux,
            connection,
        };
        self.target = Some(target.clone());
        let pinned = target.pinned();
        target.channel().await.map_err(|err| {
            if let Some(security) =
                tls::failure_error(&self.name, &self.handshake.endpoint, pinned, &err)
            {
                return security.with_source(err);
            }
            Error::new(
                ErrorKind::Transport,
                "transport.connect",
                format!("cannot connect to plugin {} at {}", self.name, self.handshake.endpoint),
            )
            .with_source(err)
            .with_hint("the plugin announced this address but nothing accepts connections there; it may have exited right after the handshake")
        })
    }

    pub(crate) async fn check_health(&self, pinned: bool) -> Result<()> {
        let mut health = HealthClient::new(self.channel.clone());
        let request = HealthCheckRequest {
            service: "plugin".to_owned(),
        };
        match tokio::time::timeout(Duration::from_secs(5), health.check(request)).await {
            Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
            Ok(Ok(reply)) => Err(Error::new(
                ErrorKind::Protocol,
                "protocol.not_serving",
                format!(
                    "plugin {} reports health status {}",
                    self.name,
                    reply.get_ref().status
                ),
            )
            .with_hint("the plugin is shutting down or not ready; check its log")),
            // Health is optional in the protocol: a plugin without it is still usable.
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Ok(()),
            // TLS 1.3 servers judge the client's certificate after the client's side
            // of the handshake: a refusal arrives with the first call.
            Ok(Err(status)) if self.tls => {
                match tls::failure_error(&self.name, &self.handshake.endpoint, pinned, &status) {
                    Some(security) => Err(security.with_source(status)),
                    None => Err(health_error(&self.name, status)),
                }
            }
            Ok(Err(status)) => Err(health_error(&self.name, status)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                "protocol.health_timeout",
                format!(
                    "plugin {} did not answer its health check within 5s",
                    self.name
                ),
            )
            .with_hint("the plugin is stuck or overloaded")),
        }
    }
}

fn health_error(name: &str, status: tonic::Status) -> Error {
    Error::new(
        ErrorKind::Protocol,
        "protocol.health",
        format!("plugin {name} failed its health check"),
    )
    .with_source(status)
    .with_hint("the plugin accepted the connection but cannot answer gRPC calls")
}

/// Hashes the executable that is about to run and returns the path to run, so the
/// file checked is the file started.
pub(crate) fn verify_checksum(
    program: &OsStr,
    env: &Environment,
    expected: &Sha256,
) -> Result<OsString> {
    let path = resolve_program(program, env).ok_or_else(|| {
        Error::new(
            ErrorKind::Process,
            "process.spawn",
            format!("cannot find plugin {}", program.to_string_lossy()),
        )
        .with_hint("give a path to the plugin executable, or put its directory on PATH")
    })?;
    let actual = Sha256::of_file(&path)?;
    if actual != *expected {
        return Err(Error::new(
            ErrorKind::Security,
            "security.checksum_mismatch",
            format!(
                "plugin {} has SHA-256 {actual}, expected {expected}",
                path.display()
            ),
        )
        .with_hint(
            "the executable is not the one the checksum was taken of: if you rebuilt or              upgraded it, record the new checksum (sha256sum PLUGIN); if not, find out who              changed it before running it",
        ));
    }
    Ok(path.into_os_string())
}

/// A program with a slash is a path (relative to the host's working directory);
/// a bare name is looked up on the host's PATH, as the spawn would.
fn resolve_program(program: &OsStr, env: &Environment) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return std::path::absolute(path).ok();
    }
    let search = env.get("PATH")?;
    std::env::split_paths(search)
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::path::absolute(found).ok())
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".to_owned(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}
