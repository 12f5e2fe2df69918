//! `rpcplugin conformance`: go-plugin's protocol as a check list any plugin, in any
//! language, can be held against.
//!
//! Unlike `probe`, which starts a plugin the way rpcplugin's host does (and so
//! forgives what the host forgives), this module plays a strict go-plugin host by
//! hand: it spawns the plugin itself several times (without the cookie, plaintext,
//! with SIGTERM, with AutoMTLS, on TCP), reads the raw handshake line, dials the
//! announced address itself, and checks each rule on what the plugin did. Every
//! launch is bounded by `--timeout` and ends with the plugin's process group
//! killed, whatever the plugin did.

use crate::args::{ConformanceArgs, LaunchArgs};
use crate::probe::tls_report;
use base64::Engine as _;
use rpcplugin_core::Endpoint;
use rpcplugin_crypto::{CertificateDer, Identity, KeyAlgorithm, Role, client_config_pinned};
use rpcplugin_handshake::HandshakeLine;
use rpcplugin_proto::health::v1::health_client::HealthClient;
use rpcplugin_proto::health::v1::{HealthCheckRequest, health_check_response::ServingStatus};
use rpcplugin_proto::plugin::grpc_broker_client::GrpcBrokerClient;
use rpcplugin_proto::plugin::grpc_controller_client::GrpcControllerClient;
use rpcplugin_proto::plugin::grpc_stdio_client::GrpcStdioClient;
use rpcplugin_transport::rustls;
use serde::Serialize;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tonic::transport::Channel;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// The plugin follows the rule.
    Pass,
    /// It breaks the rule: a go-plugin host would fail with it, or be put at risk.
    Fail,
    /// It does without something optional (an old go-plugin's behaviour).
    Warn,
    /// Not checked: an earlier step failed, or the flags asked to leave it out.
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Warn => "WARN",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One rule and what the plugin did about it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    /// A stable name, e.g. `handshake.core_version`.
    pub(crate) id: &'static str,
    /// The rule, as go-plugin's protocol states it.
    pub(crate) rule: &'static str,
    /// The outcome.
    pub(crate) result: Outcome,
    /// What was seen.
    pub(crate) reason: String,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The plugin command.
    pub(crate) plugin: String,
    /// Every check, in the order run.
    pub(crate) checks: Vec<Check>,
    /// Counts.
    pub(crate) passed: usize,
    /// Counts.
    pub(crate) failed: usize,
    /// Counts.
    pub(crate) warned: usize,
    /// Counts.
    pub(crate) skipped: usize,
}

impl Report {
    /// The readable rendering: one line per check, then the counts.
    pub(crate) fn render(&self) -> String {
        let mut out = format!("rpcplugin conformance: {}\n", self.plugin);
        for c in &self.checks {
            let _ = writeln!(out, "{}  {:<32} {}", c.result.label(), c.id, c.reason);
            if c.result == Outcome::Fail {
                let _ = writeln!(out, "      rule: {}", c.rule);
            }
        }
        let _ = writeln!(
            out,
            "{} passed, {} failed, {} warnings, {} skipped",
            self.passed, self.failed, self.warned, self.skipped
        );
        out
    }
}

/// The checks so far.
#[derive(Debug, Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn add(
        &mut self,
        id: &'static str,
        rule: &'static str,
        result: Outcome,
        reason: impl Into<String>,
    ) {
        self.0.push(Check {
            id,
            rule,
            result,
            reason: reason.into(),
        });
    }

    fn pass_if(
        &mut self,
        id: &'static str,
        rule: &'static str,
        ok: bool,
        reason: impl Into<String>,
    ) {
        let result = if ok { Outcome::Pass } else { Outcome::Fail };
        self.add(id, rule, result, reason);
    }

    fn skip(&mut self, id: &'static str, rule: &'static str, why: &str) {
        self.add(id, rule, Outcome::Skip, why);
    }
}

/// The rules, by check id.
mod rule {
    pub(super) const COOKIE_EXIT: &str =
        "run without its magic cookie, a plugin exits with a non-zero status";
    pub(super) const COOKIE_STDERR: &str =
        "run without its magic cookie, a plugin says why on stderr";
    pub(super) const COOKIE_STDOUT: &str =
        "run without its magic cookie, a plugin prints nothing on stdout (no handshake)";
    pub(super) const LINE: &str =
        "a plugin prints its handshake as the first line on stdout, within the host's timeout";
    pub(super) const FIELDS: &str = "the handshake is CORE|APP|NETWORK|ADDRESS|PROTOCOL|CERT (go-plugin >= 1.0), with an \
         optional 7th field for multiplexing";
    pub(super) const CORE: &str = "the core protocol version is 1";
    pub(super) const APP: &str =
        "the app protocol version is one the host offered in PLUGIN_PROTOCOL_VERSIONS";
    pub(super) const HIGHEST: &str =
        "the plugin picks the highest app protocol version it shares with the host";
    pub(super) const NETWORK: &str = "the network is unix or tcp";
    pub(super) const ADDRESS: &str = "the address is one the host can dial";
    pub(super) const PROTOCOL: &str = "the protocol is grpc";
    pub(super) const PLAINTEXT: &str =
        "a plugin serves plaintext only when the host did not ask for TLS";
    pub(super) const HEALTH: &str =
        "grpc.health.v1.Health/Check of service \"plugin\" answers SERVING";
    pub(super) const STDIO: &str = "plugin.GRPCStdio/StreamStdio is served (go-plugin >= 1.1)";
    pub(super) const BROKER: &str = "plugin.GRPCBroker/StartStream is served";
    pub(super) const SHUTDOWN: &str =
        "plugin.GRPCController/Shutdown ends the process (go-plugin >= 1.0)";
    pub(super) const SOCKET: &str = "a plugin serving on a Unix socket removes it when it exits";
    pub(super) const SIGTERM: &str = "SIGTERM ends the process";
    pub(super) const SIGTERM_SOCKET: &str = "a plugin ended by SIGTERM removes its Unix socket too";
    pub(super) const TLS_ANSWERED: &str =
        "asked for AutoMTLS (PLUGIN_CLIENT_CERT set), a plugin announces a certificate";
    pub(super) const TLS_DER: &str =
        "the certificate field is base64 (standard alphabet) of an X.509 DER certificate";
    pub(super) const TLS_HOST: &str = "with the host's certificate, the TLS connection works";
    pub(super) const TLS_NO_CERT: &str = "a connection without the host's certificate is refused";
    pub(super) const TLS_OTHER: &str =
        "a connection with another certificate than the host's is refused";
    pub(super) const PORTS: &str =
        "on TCP, the plugin listens on a port within PLUGIN_MIN_PORT..=PLUGIN_MAX_PORT";
}

/// Runs every check and counts them.
pub(crate) async fn run(
    args: &ConformanceArgs,
    program: &OsString,
    plugin_args: &[OsString],
) -> Report {
    let host = Host {
        launch: &args.launch,
        program,
        args: plugin_args,
        timeout: args.launch.timeout,
    };
    let mut checks = Checks::default();
    without_cookie(&host, &mut checks).await;
    plaintext(&host, &mut checks).await;
    sigterm(&host, &mut checks).await;
    if args.launch.plaintext {
        for (id, r) in [
            ("tls.answered_when_asked", rule::TLS_ANSWERED),
            ("tls.certificate_field", rule::TLS_DER),
            ("tls.host_certificate_works", rule::TLS_HOST),
            ("tls.refuses_no_certificate", rule::TLS_NO_CERT),
            ("tls.refuses_other_certificate", rule::TLS_OTHER),
        ] {
            checks.skip(id, r, "--plaintext: TLS not checked");
        }
    } else {
        automtls(&host, &mut checks).await;
    }
    tcp_ports(&host, &mut checks).await;
    let count = |o: Outcome| checks.0.iter().filter(|c| c.result == o).count();
    Report {
        plugin: std::iter::once(program)
            .chain(plugin_args)
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        passed: count(Outcome::Pass),
        failed: count(Outcome::Fail),
        warned: count(Outcome::Warn),
        skipped: count(Outcome::Skip),
        checks: checks.0,
    }
}

/// What the strict host was told.
struct Host<'a> {
    launch: &'a LaunchArgs,
    program: &'a OsString,
    args: &'a [OsString],
    timeout: Duration,
}

/// How one launch sets up the plugin's environment.
#[derive(Debug, Default)]
struct Setup {
    cookie: bool,
    versions: Option<Vec<u32>>,
    client_cert: Option<String>,
    extra: Vec<(String, String)>,
}

impl Host<'_> {
    /// Spawns the plugin in its own process group, with go-plugin's variables.
    fn spawn(&self, setup: &Setup) -> Result<Raw, String> {
        let socket_dir = rpcplugin_transport::SocketDir::create(None, None)
            .map_err(|e| format!("cannot make a socket directory: {e}"))?;
        let (key, value) = self.launch.cookie();
        let versions = setup
            .versions
            .clone()
            .unwrap_or_else(|| self.launch.versions());
        let mut command = Command::new(self.program);
        command
            .args(self.args)
            .env_remove(&key)
            .env_remove("PLUGIN_CLIENT_CERT")
            .env("PLUGIN_PROTOCOL_VERSIONS", join(&versions))
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env("PLUGIN_UNIX_SOCKET_DIR", socket_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if setup.cookie {
            command.env(&key, &value);
        }
        if let Some(cert) = &setup.client_cert {
            command.env("PLUGIN_CLIENT_CERT", cert);
        }
        for (k, v) in self.launch.env.iter().chain(&setup.extra) {
            command.env(k, v);
        }
        let mut child = command.spawn().map_err(|e| {
            format!(
                "cannot start {}: {e} (check the path and that it is executable)",
                self.program.to_string_lossy()
            )
        })?;
        let pid = child.id().unwrap_or_default();
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut text = sink.lock().unwrap_or_else(|e| e.into_inner());
                    // Keep the start and a bounded amount: a chatty plugin must not
                    // grow this without end.
                    if text.len() < 64 * 1024 {
                        text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Raw {
            child,
            pid,
            stdout,
            stderr,
            _socket_dir: socket_dir,
        })
    }
}

fn join(versions: &[u32]) -> String {
    versions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A plugin process this module started.
struct Raw {
    child: Child,
    pid: u32,
    stdout: Option<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    /// Removed (with anything left in it) when the launch ends.
    _socket_dir: rpcplugin_transport::SocketDir,
}

impl Raw {
    /// The first stdout line, or why there is none; afterwards stdout is drained.
    async fn handshake(&mut self, timeout: Duration) -> Result<String, String> {
        let Some(mut stdout) = self.stdout.take() else {
            return Err("stdout was already read".into());
        };
        let mut line = String::new();
        let read = tokio::time::timeout(timeout, stdout.read_line(&mut line)).await;
        // Whatever comes next on stdout is not ours to read, but a full pipe would
        // block the plugin.
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stdout, &mut sink).await;
        });
        match read {
            Ok(Ok(n)) if n > 0 => Ok(line.trim_end_matches(['\n', '\r']).to_owned()),
            Ok(_) => {
                let status = self.wait(Duration::from_secs(1)).await;
                Err(format!(
                    "stdout closed without a line ({}); stderr: {}",
                    status.map_or("still running".into(), |s| s.to_string()),
                    self.stderr_tail()
                ))
            }
            Err(_) => Err(format!(
                "no line within {timeout:?}; stderr: {}",
                self.stderr_tail()
            )),
        }
    }

    /// Waits up to `timeout` for the process to exit.
    async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = i32::try_from(self.pid).unwrap_or(0);
        if pid > 0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// The last lines of stderr, on one line of at most 200 characters.
    fn stderr_tail(&self) -> String {
        let text = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let tail = lines[lines.len().saturating_sub(2)..].join(" / ");
        if tail.is_empty() {
            return "(empty)".into();
        }
        short(&tail)
    }

    /// Ends the launch: SIGKILL to the whole process group (the plugin and anything
    /// it started), and the process reaped.
    async fn end(mut self) {
        let pgid = i32::try_from(self.pid).unwrap_or(0);
        if pgid > 0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.wait(Duration::from_secs(2)).await;
    }
}

/// Launch 1: no cookie. The plugin must refuse, say why on stderr, and print
/// nothing on stdout.
async fn without_cookie(host: &Host<'_>, checks: &mut Checks) {
    let mut raw = match host.spawn(&Setup::default()) {
        Ok(raw) => raw,
        Err(why) => {
            checks.add("cookie.refused", rule::COOKIE_EXIT, Outcome::Fail, why);
            return;
        }
    };
    let mut stdout = raw.stdout.take().expect("stdout is piped");
    let status = raw.wait(host.timeout).await;
    // What it printed: all of it when it exited, what is there when it still runs.
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stdout.read(&mut chunk)).await {
        if n == 0 || bytes.len() > 64 * 1024 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let printed = String::from_utf8_lossy(&bytes);
    // stderr arrives through its task; give it a moment after the exit.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stderr = raw.stderr_tail();
    match status {
        Some(status) => checks.pass_if(
            "cookie.refused",
            rule::COOKIE_EXIT,
            !status.success(),
            format!("without the cookie it exited: {status}"),
        ),
        None => checks.add(
            "cookie.refused",
            rule::COOKIE_EXIT,
            Outcome::Fail,
            format!("without the cookie it still ran after {:?}", host.timeout),
        ),
    }
    checks.pass_if(
        "cookie.stderr_message",
        rule::COOKIE_STDERR,
        stderr != "(empty)",
        format!("stderr: {stderr}"),
    );
    checks.pass_if(
        "cookie.stdout_silent",
        rule::COOKIE_STDOUT,
        printed.is_empty(),
        if printed.is_empty() {
            "nothing on stdout".to_owned()
        } else {
            format!("stdout: {:?}", printed.lines().next().unwrap_or_default())
        },
    );
    raw.end().await;
}

/// Checks a handshake line field by field, as a strict go-plugin host reads it.
fn check_line(line: &str, offered: &[u32], checks: &mut Checks) -> Option<HandshakeLine> {
    let fields: Vec<&str> = line.split('|').collect();
    let n = fields.len();
    match n {
        6 | 7 => checks.add(
            "handshake.fields",
            rule::FIELDS,
            Outcome::Pass,
            format!("{n} fields: {line:?}"),
        ),
        5 => checks.add(
            "handshake.fields",
            rule::FIELDS,
            Outcome::Warn,
            format!("5 fields, no certificate field (go-plugin before 1.0): {line:?}"),
        ),
        _ => {
            checks.add(
                "handshake.fields",
                rule::FIELDS,
                Outcome::Fail,
                format!("{n} fields: {line:?}"),
            );
            for (id, r) in [
                ("handshake.core_version", rule::CORE),
                ("handshake.app_version", rule::APP),
                ("handshake.network", rule::NETWORK),
                ("handshake.address", rule::ADDRESS),
                ("handshake.protocol", rule::PROTOCOL),
            ] {
                checks.skip(id, r, "the line has too few fields to read");
            }
            return None;
        }
    }
    checks.pass_if(
        "handshake.core_version",
        rule::CORE,
        fields[0] == "1",
        format!("core version {:?}", fields[0]),
    );
    let app = fields[1].parse::<u32>().ok();
    checks.pass_if(
        "handshake.app_version",
        rule::APP,
        app.is_some_and(|v| offered.contains(&v)),
        format!("app version {:?}, offered {}", fields[1], join(offered)),
    );
    match fields[2] {
        "unix" | "tcp" => checks.add("handshake.network", rule::NETWORK, Outcome::Pass, fields[2]),
        other => checks.add(
            "handshake.network",
            rule::NETWORK,
            Outcome::Warn,
            format!("{other:?}: a custom network, which only hosts with a connector for it dial"),
        ),
    }
    checks.pass_if(
        "handshake.protocol",
        rule::PROTOCOL,
        fields[4] == "grpc",
        format!("protocol {:?}", fields[4]),
    );
    match HandshakeLine::parse(line) {
        Ok(parsed) => {
            checks.add(
                "handshake.address",
                rule::ADDRESS,
                Outcome::Pass,
                parsed.endpoint.to_string(),
            );
            Some(parsed)
        }
        Err(err) => {
            checks.add(
                "handshake.address",
                rule::ADDRESS,
                Outcome::Fail,
                err.to_string(),
            );
            None
        }
    }
}

/// Launch 2: a plaintext host. The handshake, then health, stdio, broker, and the
/// Shutdown RPC with the socket's removal.
async fn plaintext(host: &Host<'_>, checks: &mut Checks) {
    let offered = host.launch.versions();
    let setup = Setup {
        cookie: true,
        ..Setup::default()
    };
    let mut raw = match host.spawn(&setup) {
        Ok(raw) => raw,
        Err(why) => {
            checks.add("handshake.line", rule::LINE, Outcome::Fail, why);
            return;
        }
    };
    let line = match raw.handshake(host.timeout).await {
        Ok(line) => {
            checks.add(
                "handshake.line",
                rule::LINE,
                Outcome::Pass,
                "a line on stdout",
            );
            line
        }
        Err(why) => {
            checks.add("handshake.line", rule::LINE, Outcome::Fail, why);
            raw.end().await;
            return;
        }
    };
    let Some(parsed) = check_line(&line, &offered, checks) else {
        raw.end().await;
        return;
    };
    highest_version(host, parsed.app_version, &offered, checks).await;
    checks.pass_if(
        "tls.plaintext_when_not_asked",
        rule::PLAINTEXT,
        true,
        if parsed.server_cert.is_some() {
            "announced a certificate without being asked (configured TLS); allowed".to_owned()
        } else {
            "plaintext, as the host asked".to_owned()
        },
    );
    // A plugin serving TLS unasked can only be reached by pinning what it announced.
    let tls = match &parsed.server_cert {
        Some(der) => match no_client_cert_config(der) {
            Ok(config) => Some(config),
            Err(why) => {
                checks.add("health.serving", rule::HEALTH, Outcome::Skip, why);
                raw.end().await;
                return;
            }
        },
        None => None,
    };
    let channel = match dial(&parsed.endpoint, tls, host.timeout).await {
        Ok(channel) => channel,
        Err(why) => {
            checks.add(
                "health.serving",
                rule::HEALTH,
                Outcome::Fail,
                format!("cannot connect: {why}"),
            );
            raw.end().await;
            return;
        }
    };
    let (ok, reason) = health(&channel, host.timeout).await;
    checks.pass_if("health.serving", rule::HEALTH, ok, reason);
    let stdio = served(GrpcStdioClient::new(channel.clone()).stream_stdio(())).await;
    served_check(checks, "stdio.served", rule::STDIO, stdio);
    // Last of the calls: go-plugin closes its broker when a StartStream ends.
    let broker = served(GrpcBrokerClient::new(channel.clone()).start_stream(
        futures_util::stream::pending::<rpcplugin_proto::plugin::ConnInfo>(),
    ))
    .await;
    served_check(checks, "broker.served", rule::BROKER, broker);

    let mut controller = GrpcControllerClient::new(channel.clone());
    let shutdown = controller.shutdown(rpcplugin_proto::plugin::Empty {});
    let answer = tokio::time::timeout(host.timeout, shutdown).await;
    drop(channel);
    let status = raw.wait(host.timeout).await;
    let reason = match (&answer, status) {
        (_, Some(status)) => format!("exited after Shutdown: {status}"),
        (Ok(Err(s)), None) if s.code() == tonic::Code::Unimplemented => {
            "GRPCController is not served".to_owned()
        }
        (Ok(Err(s)), None) => format!(
            "Shutdown failed ({}) and the process runs on",
            crate::status_text(s)
        ),
        (_, None) => format!("still running {:?} after Shutdown", host.timeout),
    };
    checks.pass_if("shutdown.rpc", rule::SHUTDOWN, status.is_some(), reason);
    socket_check(
        checks,
        "socket.removed",
        rule::SOCKET,
        &parsed.endpoint,
        status.is_some(),
        Outcome::Fail,
    );
    raw.end().await;
}

/// When the plugin chose a version below the highest offered, offers only the
/// higher ones: a plugin that then accepts one did not pick the highest in common.
async fn highest_version(host: &Host<'_>, chosen: u32, offered: &[u32], checks: &mut Checks) {
    let higher: Vec<u32> = offered.iter().copied().filter(|&v| v > chosen).collect();
    if higher.is_empty() {
        checks.add(
            "handshake.highest_version",
            rule::HIGHEST,
            Outcome::Pass,
            format!("chose {chosen}, the highest offered"),
        );
        return;
    }
    let setup = Setup {
        cookie: true,
        versions: Some(higher.clone()),
        ..Setup::default()
    };
    let Ok(mut raw) = host.spawn(&setup) else {
        checks.skip(
            "handshake.highest_version",
            rule::HIGHEST,
            "could not start it again",
        );
        return;
    };
    let answer = raw.handshake(host.timeout).await;
    raw.end().await;
    let speaks_higher = answer
        .ok()
        .and_then(|line| HandshakeLine::parse(&line).ok())
        .map(|l| l.app_version)
        .filter(|v| higher.contains(v));
    match speaks_higher {
        Some(v) => checks.add(
            "handshake.highest_version",
            rule::HIGHEST,
            Outcome::Fail,
            format!("chose {chosen} of {}, but it speaks {v}", join(offered)),
        ),
        None => checks.add(
            "handshake.highest_version",
            rule::HIGHEST,
            Outcome::Pass,
            format!("chose {chosen}; offered only {} it refuses", join(&higher)),
        ),
    }
}

/// Launch 3: SIGTERM ends the plugin (and, better, it removes its socket).
async fn sigterm(host: &Host<'_>, checks: &mut Checks) {
    let setup = Setup {
        cookie: true,
        ..Setup::default()
    };
    let started = match host.spawn(&setup) {
        Ok(mut raw) => match raw.handshake(host.timeout).await {
            Ok(line) => Some((raw, HandshakeLine::parse(&line).ok())),
            Err(_) => {
                raw.end().await;
                None
            }
        },
        Err(_) => None,
    };
    let Some((mut raw, line)) = started else {
        checks.skip(
            "shutdown.sigterm",
            rule::SIGTERM,
            "the plugin did not start",
        );
        return;
    };
    // Signal a plugin that serves, as a host would: one that answered its health
    // check (when it is plaintext) has finished starting, signal handlers included.
    if let Some(line) = line.as_ref().filter(|l| l.server_cert.is_none())
        && let Ok(channel) = dial(&line.endpoint, None, host.timeout).await
    {
        let _ = health(&channel, host.timeout).await;
    }
    raw.signal(nix::sys::signal::Signal::SIGTERM);
    let status = raw.wait(host.timeout).await;
    checks.pass_if(
        "shutdown.sigterm",
        rule::SIGTERM,
        status.is_some(),
        match status {
            Some(status) => format!("exited after SIGTERM: {status}"),
            None => format!("still running {:?} after SIGTERM", host.timeout),
        },
    );
    if let Some(line) = line {
        // Go's default SIGTERM action ends a process without running its cleanup:
        // a warning, not a failure (go-plugin's hosts remove what is left).
        socket_check(
            checks,
            "socket.removed_after_sigterm",
            rule::SIGTERM_SOCKET,
            &line.endpoint,
            status.is_some(),
            Outcome::Warn,
        );
    }
    raw.end().await;
}

/// Launch 4: an AutoMTLS host (a P-521 certificate, as go-plugin's hosts make).
async fn automtls(host: &Host<'_>, checks: &mut Checks) {
    let ids = [
        ("tls.answered_when_asked", rule::TLS_ANSWERED),
        ("tls.certificate_field", rule::TLS_DER),
        ("tls.host_certificate_works", rule::TLS_HOST),
        ("tls.refuses_no_certificate", rule::TLS_NO_CERT),
        ("tls.refuses_other_certificate", rule::TLS_OTHER),
    ];
    let skip_from = |checks: &mut Checks, from: usize, why: &str| {
        for (id, r) in &ids[from..] {
            checks.skip(id, r, why);
        }
    };
    let (host_id, other_id) = match (
        Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client),
        Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Client),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            skip_from(checks, 0, "could not make the host's certificates");
            return;
        }
    };
    let setup = Setup {
        cookie: true,
        client_cert: Some(host_id.cert_pem()),
        ..Setup::default()
    };
    let Ok(mut raw) = host.spawn(&setup) else {
        skip_from(checks, 0, "the plugin did not start");
        return;
    };
    let line = match raw.handshake(host.timeout).await {
        Ok(line) => line,
        Err(why) => {
            skip_from(
                checks,
                0,
                &format!("no handshake with PLUGIN_CLIENT_CERT set: {why}"),
            );
            raw.end().await;
            return;
        }
    };
    let cert_field = line.split('|').nth(5).unwrap_or_default();
    if cert_field.is_empty() {
        checks.add(
            ids[0].0,
            ids[0].1,
            Outcome::Fail,
            format!("answered in plaintext: {line:?}"),
        );
        skip_from(checks, 1, "no certificate announced");
        raw.end().await;
        return;
    }
    checks.add(
        ids[0].0,
        ids[0].1,
        Outcome::Pass,
        "a certificate was announced",
    );
    let der = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(cert_field.trim_end_matches('='))
        .ok();
    let parsed = der
        .as_ref()
        .map(|d| tls_report(d))
        .filter(|r| !r.sha256.is_empty());
    let (Some(der), Some(report)) = (der, parsed) else {
        checks.add(
            ids[1].0,
            ids[1].1,
            Outcome::Fail,
            "not base64 of a DER certificate",
        );
        skip_from(checks, 2, "the certificate cannot be read");
        raw.end().await;
        return;
    };
    checks.add(
        ids[1].0,
        ids[1].1,
        Outcome::Pass,
        format!(
            "{}, {}, SHA-256 {}",
            report.key_type,
            report.subject,
            &report.sha256[..23]
        ),
    );
    let endpoint = match HandshakeLine::parse(&line) {
        Ok(parsed) => parsed.endpoint,
        Err(err) => {
            skip_from(checks, 2, &format!("the handshake cannot be read: {err}"));
            raw.end().await;
            return;
        }
    };
    let server_cert = CertificateDer::from(der.clone());
    let attempt = |config: Result<Arc<rustls::ClientConfig>, String>| {
        let endpoint = endpoint.clone();
        async move {
            let config = config?;
            let channel = dial(&endpoint, Some(config), host.timeout).await?;
            let (ok, reason) = health(&channel, host.timeout).await;
            if ok { Ok(reason) } else { Err(reason) }
        }
    };
    let good =
        attempt(client_config_pinned(&host_id, server_cert.clone()).map_err(|e| e.to_string()))
            .await;
    checks.pass_if(
        ids[2].0,
        ids[2].1,
        good.is_ok(),
        match &good {
            Ok(reason) => format!("health over mutual TLS: {reason}"),
            Err(why) => why.clone(),
        },
    );
    let none = attempt(no_client_cert_config(&der)).await;
    checks.pass_if(
        ids[3].0,
        ids[3].1,
        none.is_err(),
        match &none {
            Ok(_) => "a client without a certificate got answers".to_owned(),
            Err(why) => format!("refused: {}", short(why)),
        },
    );
    let other =
        attempt(client_config_pinned(&other_id, server_cert).map_err(|e| e.to_string())).await;
    checks.pass_if(
        ids[4].0,
        ids[4].1,
        other.is_err(),
        match &other {
            Ok(_) => "a client with another certificate got answers".to_owned(),
            Err(why) => format!("refused: {}", short(why)),
        },
    );
    raw.end().await;
}

/// Launch 5: TCP asked for (`PLUGIN_SERVER_TRANSPORTS=tcp`, which rpcplugin and
/// pyvider plugins read) within a narrow port range.
async fn tcp_ports(host: &Host<'_>, checks: &mut Checks) {
    let Some((min, max)) = free_port_range() else {
        checks.skip(
            "tcp.port_range",
            rule::PORTS,
            "found no free port range on loopback",
        );
        return;
    };
    let setup = Setup {
        cookie: true,
        extra: vec![
            ("PLUGIN_SERVER_TRANSPORTS".into(), "tcp".into()),
            ("PLUGIN_MIN_PORT".into(), min.to_string()),
            ("PLUGIN_MAX_PORT".into(), max.to_string()),
        ],
        ..Setup::default()
    };
    let Ok(mut raw) = host.spawn(&setup) else {
        checks.skip("tcp.port_range", rule::PORTS, "the plugin did not start");
        return;
    };
    let line = raw.handshake(host.timeout).await;
    raw.end().await;
    match line.map(|l| HandshakeLine::parse(&l).map(|p| p.endpoint)) {
        Ok(Ok(Endpoint::Tcp(addr))) => checks.pass_if(
            "tcp.port_range",
            rule::PORTS,
            (min..=max).contains(&addr.port()),
            format!("listened on {addr} with PLUGIN_MIN_PORT={min}, PLUGIN_MAX_PORT={max}"),
        ),
        Ok(Ok(other)) => checks.add(
            "tcp.port_range",
            rule::PORTS,
            Outcome::Warn,
            format!(
                "serves {} when asked for tcp: ports not exercised",
                other.network().as_str()
            ),
        ),
        Ok(Err(err)) => checks.skip(
            "tcp.port_range",
            rule::PORTS,
            &format!("bad handshake: {err}"),
        ),
        Err(why) => checks.add(
            "tcp.port_range",
            rule::PORTS,
            Outcome::Fail,
            format!("no handshake with PLUGIN_MIN_PORT={min}, PLUGIN_MAX_PORT={max}: {why}"),
        ),
    }
}

/// Ten consecutive loopback ports that are free now.
fn free_port_range() -> Option<(u16, u16)> {
    for _ in 0..20 {
        let probe = std::net::TcpListener::bind(("127.0.0.1", 0)).ok()?;
        let base = probe.local_addr().ok()?.port();
        drop(probe);
        let top = base.checked_add(9)?;
        if (base..=top).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Some((base, top));
        }
    }
    None
}

fn served_check(
    checks: &mut Checks,
    id: &'static str,
    r: &'static str,
    served: Result<bool, String>,
) {
    match served {
        Ok(true) => checks.add(id, r, Outcome::Pass, "served"),
        Ok(false) => checks.add(id, r, Outcome::Warn, "not served (Unimplemented)"),
        Err(why) => checks.add(id, r, Outcome::Fail, why),
    }
}

fn socket_check(
    checks: &mut Checks,
    id: &'static str,
    r: &'static str,
    endpoint: &Endpoint,
    exited: bool,
    otherwise: Outcome,
) {
    let Endpoint::Unix(path) = endpoint else {
        checks.skip(id, r, "not a Unix socket");
        return;
    };
    if !exited {
        checks.skip(id, r, "the process did not exit by itself");
        return;
    }
    if path.exists() {
        checks.add(
            id,
            r,
            otherwise,
            format!("{} is left behind", path.display()),
        );
        // Not ours, but stale sockets of a finished check help no one.
        if is_socket(path) {
            let _ = std::fs::remove_file(path);
        }
    } else {
        checks.add(id, r, Outcome::Pass, format!("{} is gone", path.display()));
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Whether `answer` is served: `Ok(false)` for Unimplemented, which comes at once;
/// a served stream answers, or stays open without a word.
async fn served<T>(
    answer: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<bool, String> {
    match tokio::time::timeout(Duration::from_millis(500), answer).await {
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Ok(false),
        Ok(Err(status)) => Err(format!("failed: {}", crate::status_text(&status))),
        Ok(Ok(_)) | Err(_) => Ok(true),
    }
}

async fn health(channel: &Channel, timeout: Duration) -> (bool, String) {
    let request = HealthCheckRequest {
        service: "plugin".into(),
    };
    match tokio::time::timeout(timeout, HealthClient::new(channel.clone()).check(request)).await {
        Ok(Ok(reply)) => {
            let status = reply.get_ref().status;
            let name = ServingStatus::try_from(status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| format!("status {status}"));
            (status == ServingStatus::Serving as i32, name)
        }
        Ok(Err(status)) => (false, crate::status_text(&status)),
        Err(_) => (false, format!("no answer within {timeout:?}")),
    }
}

/// The first line of an error chain's text, shortened for a check line.
fn short(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    let mut out: String = first.chars().take(200).collect();
    if first.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// A TLS client that pins `server_der` and presents no certificate.
fn no_client_cert_config(server_der: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rpcplugin_crypto::PinnedServerCertVerifier::new(
        CertificateDer::from(server_der.to_vec()),
        &provider,
    )
    .map_err(|e| e.to_string())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![rpcplugin_crypto::ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A channel to `endpoint` (over TLS with `tls`), dialled now.
async fn dial(
    endpoint: &Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Channel, String> {
    let target = endpoint.clone();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let (target, tls) = (target.clone(), tls.clone());
        async move {
            let stream = rpcplugin_transport::connect(&target)
                .await
                .map_err(std::io::Error::other)?;
            let stream = match tls {
                Some(config) => {
                    let name = rustls::pki_types::ServerName::try_from("localhost")
                        .expect("localhost is a valid server name");
                    stream.connect_tls(config, name, timeout).await?
                }
                None => stream,
            };
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let uri = tonic::transport::Endpoint::from_static("http://localhost").connect_timeout(timeout);
    let connect = uri.connect_with_connector(connector);
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(err)) => Err(error_chain(&err)),
        Err(_) => Err(format!("no connection within {timeout:?}")),
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(checks: &Checks) -> Vec<(&'static str, Outcome)> {
        checks.0.iter().map(|c| (c.id, c.result)).collect()
    }

    #[test]
    fn a_good_line_passes_every_field() {
        let mut checks = Checks::default();
        let line = check_line("1|1|unix|/tmp/p.sock|grpc|", &[1], &mut checks);
        assert!(line.is_some());
        assert!(
            checks.0.iter().all(|c| c.result == Outcome::Pass),
            "{:?}",
            checks.0
        );
    }

    #[test]
    fn bad_lines_fail_the_field_they_break() {
        let mut checks = Checks::default();
        assert!(check_line("1|1|unix", &[1], &mut checks).is_none());
        assert_eq!(ids(&checks)[0], ("handshake.fields", Outcome::Fail));

        let mut checks = Checks::default();
        check_line("2|3|udp|x|netrpc|", &[1, 2], &mut checks);
        let got = ids(&checks);
        assert!(
            got.contains(&("handshake.core_version", Outcome::Fail)),
            "{got:?}"
        );
        assert!(
            got.contains(&("handshake.app_version", Outcome::Fail)),
            "{got:?}"
        );
        assert!(
            got.contains(&("handshake.network", Outcome::Warn)),
            "{got:?}"
        );
        assert!(
            got.contains(&("handshake.protocol", Outcome::Fail)),
            "{got:?}"
        );

        let mut checks = Checks::default();
        check_line("1|1|unix|/tmp/p.sock|grpc", &[1], &mut checks);
        assert_eq!(ids(&checks)[0], ("handshake.fields", Outcome::Warn));
    }

    #[test]
    fn the_report_ends_with_the_counts() {
        let mut checks = Checks::default();
        checks.add("a.b", "rule a", Outcome::Pass, "fine");
        checks.add("c.d", "rule c", Outcome::Fail, "broken");
        let report = Report {
            plugin: "./p".into(),
            passed: 1,
            failed: 1,
            warned: 0,
            skipped: 0,
            checks: checks.0,
        };
        let text = report.render();
        assert!(text.contains("PASS  a.b"), "{text}");
        assert!(text.contains("FAIL  c.d"), "{text}");
        assert!(text.contains("      rule: rule c"), "{text}");
        assert!(
            text.ends_with("1 passed, 1 failed, 0 warnings, 0 skipped\n"),
            "{text}"
        );
    }
}
