//! `rpcplugin probe`: start a plugin as an rpcplugin host would and report what a
//! person debugging it wants to know: its handshake, certificate, health, services,
//! the go-plugin services it offers, how long it took to come up and how it stopped.
//!
//! The report is a value ([`Report`]) rendered two ways: a readable block, or one
//! JSON object (`--json`, field names in the INTEROP.md contract).

use crate::args::{LaunchArgs, ProbeArgs, Target};
use crate::{launch, reflect};
use rpcplugin_client::{PluginClient, StopMethod, Stopped};
use rpcplugin_crypto::{CertificateDer, CertificateInfo, KeyType};
use rpcplugin_proto::health::v1::health_client::HealthClient;
use rpcplugin_proto::health::v1::{HealthCheckRequest, health_check_response::ServingStatus};
use rpcplugin_proto::plugin::grpc_broker_client::GrpcBrokerClient;
use rpcplugin_proto::plugin::grpc_stdio_client::GrpcStdioClient;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};
use tonic::transport::Channel;

/// How long a go-plugin service may take to answer Unimplemented before it is taken
/// as served (a served stream sends nothing until it has something to send).
const SERVED_WAIT: Duration = Duration::from_millis(500);

/// What `probe` found; `None` fields were not reached (the start failed).
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The plugin started and answered.
    pub(crate) ok: bool,
    /// The command (or the reattach target).
    pub(crate) plugin: String,
    /// Its process id.
    pub(crate) pid: Option<u32>,
    /// go-plugin's core protocol version from the handshake (1).
    pub(crate) core_protocol_version: Option<u32>,
    /// The negotiated app protocol version.
    pub(crate) app_protocol_version: Option<u32>,
    /// `unix`, `tcp` or a custom network.
    pub(crate) network: Option<String>,
    /// Where it serves.
    pub(crate) address: Option<String>,
    /// `grpc`.
    pub(crate) protocol: Option<String>,
    /// Whether it announced go-plugin 1.6's multiplexing.
    pub(crate) multiplex: Option<bool>,
    /// Whether the connection runs mutual TLS (AutoMTLS or configured certificates).
    pub(crate) mutual_tls: Option<bool>,
    /// The server certificate it announced in its handshake (AutoMTLS, and
    /// configured certificates when the plugin announces them); null otherwise.
    pub(crate) tls: Option<TlsReport>,
    /// The health of service `"plugin"` (`SERVING`, ...) or `unimplemented`.
    pub(crate) health: Option<String>,
    /// Its services and their methods, from reflection; null without reflection.
    pub(crate) services: Option<Vec<Service>>,
    /// Which reflection protocol answered.
    pub(crate) reflection: Option<&'static str>,
    /// Whether it serves `plugin.GRPCStdio`.
    pub(crate) stdio: Option<bool>,
    /// Whether it serves `plugin.GRPCBroker`.
    pub(crate) broker: Option<bool>,
    /// How long the start phases took.
    pub(crate) timings_ms: Option<Timings>,
    /// How it stopped.
    pub(crate) stop: Option<StopReport>,
    /// The last lines it wrote on stderr.
    pub(crate) stderr_tail: Vec<String>,
    /// Why it failed, when it did.
    pub(crate) error: Option<ErrorReport>,
}

/// The plugin's certificate.
#[derive(Debug, Serialize)]
pub(crate) struct TlsReport {
    /// `ECDSA P-256`, `RSA 2048`, ...
    pub(crate) key_type: String,
    /// Subject DN.
    pub(crate) subject: String,
    /// Subject alternative names.
    pub(crate) sans: Vec<String>,
    /// End of validity, RFC 3339.
    pub(crate) not_after: String,
    /// SHA-256 of the DER, colon-separated hex.
    pub(crate) sha256: String,
}

/// One service and its methods.
#[derive(Debug, Serialize)]
pub(crate) struct Service {
    /// Full name, e.g. `proto.KV`.
    pub(crate) name: String,
    /// Method names; server-streaming ones end in ` (server streaming)`, and so on.
    pub(crate) methods: Vec<String>,
}

/// The start phases, milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Timings {
    /// Spawn to handshake line.
    pub(crate) handshake: f64,
    /// Handshake to connected channel.
    pub(crate) connect: f64,
    /// The first health answer.
    pub(crate) health: f64,
}

/// How the plugin stopped.
#[derive(Debug, Serialize)]
pub(crate) struct StopReport {
    /// `shutdown_rpc`, `sigterm`, `sigkill`, `already_exited` or `detached`.
    pub(crate) method: &'static str,
    /// `exit status: 0`, `signal: 15 (SIGTERM)`, ...
    pub(crate) status: String,
    /// The exit code, when it exited.
    pub(crate) exit_code: Option<i32>,
}

/// A failure, as the host's error says it.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorReport {
    /// The error's code (`process.exited_early`, ...), for scripts.
    pub(crate) code: String,
    /// What happened.
    pub(crate) message: String,
    /// What to do.
    pub(crate) hint: Option<String>,
    /// The full text with causes and hints, as printed for a person.
    pub(crate) rendered: String,
}

impl Report {
    fn new(plugin: String) -> Self {
        Self {
            ok: false,
            plugin,
            pid: None,
            core_protocol_version: None,
            app_protocol_version: None,
            network: None,
            address: None,
            protocol: None,
            multiplex: None,
            mutual_tls: None,
            tls: None,
            health: None,
            services: None,
            reflection: None,
            stdio: None,
            broker: None,
            timings_ms: None,
            stop: None,
            stderr_tail: Vec::new(),
            error: None,
        }
    }
}

/// Runs the probe; the exit status is 0 when the plugin started and answered.
pub(crate) async fn run(args: &ProbeArgs, target: &Target) -> Report {
    probe(&args.launch, target).await
}

async fn probe(launch_args: &LaunchArgs, target: &Target) -> Report {
    let mut report = Report::new(launch::describe(target));
    let plugin = match launch::start(launch_args, target).await {
        Ok(plugin) => plugin,
        Err(err) => {
            report.error = Some(ErrorReport {
                code: err.code().to_string(),
                message: err.message().to_owned(),
                hint: err.hint().map(str::to_owned),
                rendered: rpcplugin_core::render(&err),
            });
            return report;
        }
    };
    describe_handshake(&mut report, &plugin);
    report.timings_ms = plugin.start_timings().map(|t| Timings {
        handshake: millis(t.handshake),
        connect: millis(t.connect),
        health: millis(t.health),
    });
    let channel = plugin.channel();
    let health = health(&channel, launch_args.timeout).await;
    report.ok = health.is_ok();
    report.health = Some(health.unwrap_or_else(|why| why));
    match reflect::Reflection::connect(channel.clone(), launch_args.timeout).await {
        Ok((session, names)) => {
            report.reflection = Some(session.version().as_str());
            report.services = Some(describe_services(&session, names).await);
        }
        Err(reflect::Failure::Unimplemented) => {}
        Err(reflect::Failure::Error(why)) => {
            report
                .stderr_tail
                .push(format!("(rpcplugin: reflection failed: {why})"));
        }
    }
    // Last before the stop: go-plugin's broker closes when a StartStream ends, and
    // this one ends as soon as it is answered.
    report.stdio = Some(serves(GrpcStdioClient::new(channel.clone()).stream_stdio(())).await);
    report.broker = Some(
        serves(
            GrpcBrokerClient::new(channel).start_stream(futures_util::stream::pending::<
                rpcplugin_proto::plugin::ConnInfo,
            >()),
        )
        .await,
    );
    let mut tail = plugin.stderr_tail();
    tail.append(&mut report.stderr_tail);
    report.stderr_tail = tail;
    let stopped = plugin.stop().await;
    report.stop = Some(describe_stop(stopped));
    report
}

fn describe_handshake(report: &mut Report, plugin: &PluginClient) {
    let line = plugin.handshake();
    report.pid = Some(plugin.pid());
    report.core_protocol_version = Some(line.core_version);
    report.app_protocol_version = Some(line.app_version);
    report.network = Some(line.endpoint.network().as_str().to_owned());
    report.address = Some(line.endpoint.to_string());
    report.protocol = Some(line.protocol.as_str().to_owned());
    report.multiplex = Some(line.multiplex);
    report.mutual_tls = Some(plugin.is_tls());
    report.tls = line.server_cert.as_deref().map(tls_report);
}

/// The certificate's details; an unparsable one is reported as such.
pub(crate) fn tls_report(der: &[u8]) -> TlsReport {
    match CertificateInfo::parse(&CertificateDer::from(der)) {
        Ok(info) => TlsReport {
            key_type: key_type_name(&info.key_type),
            subject: info.subject,
            sans: info.sans,
            not_after: rfc3339(info.not_after),
            sha256: info.sha256,
        },
        Err(err) => TlsReport {
            key_type: "unknown".into(),
            subject: format!("(not a certificate: {err})"),
            sans: Vec::new(),
            not_after: String::new(),
            sha256: String::new(),
        },
    }
}

/// `ECDSA P-256`, `Ed25519`, `RSA 2048`, or the algorithm's OID.
pub(crate) fn key_type_name(key: &KeyType) -> String {
    match key {
        KeyType::EcdsaP256 => "ECDSA P-256".into(),
        KeyType::EcdsaP384 => "ECDSA P-384".into(),
        KeyType::EcdsaP521 => "ECDSA P-521".into(),
        KeyType::Ed25519 => "Ed25519".into(),
        KeyType::Rsa { bits } => format!("RSA {bits}"),
        KeyType::Other(oid) => format!("other ({oid})"),
        other => format!("{other:?}"),
    }
}

/// A time as RFC 3339 in UTC, e.g. `2027-01-04T07:00:00Z`.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{at:?}"))
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// The status of service `"plugin"`, or why there is none.
async fn health(channel: &Channel, timeout: Duration) -> Result<String, String> {
    let mut client = HealthClient::new(channel.clone());
    let request = HealthCheckRequest {
        service: "plugin".into(),
    };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Ok(Ok(reply)) => {
            let status = ServingStatus::try_from(reply.get_ref().status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| format!("status {}", reply.get_ref().status));
            if status == "SERVING" {
                Ok(status)
            } else {
                Err(status)
            }
        }
        // Old plugins serve no health; the host accepts them, and so does probe.
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            Ok("unimplemented".into())
        }
        Ok(Err(status)) => Err(format!("failed: {}", crate::status_text(&status))),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Whether the call `answer` is served: Unimplemented comes back at once from a
/// server without it; a served stream answers, or stays open without a word.
async fn serves<T>(answer: impl std::future::Future<Output = Result<T, tonic::Status>>) -> bool {
    match tokio::time::timeout(SERVED_WAIT, answer).await {
        Ok(Err(status)) => status.code() != tonic::Code::Unimplemented,
        Ok(Ok(_)) | Err(_) => true,
    }
}

/// Each service's methods, from its descriptors; a service whose descriptors cannot
/// be had is listed without methods.
async fn describe_services(session: &reflect::Reflection, names: Vec<String>) -> Vec<Service> {
    let pool = session.pool_for(&names).await.ok();
    names
        .into_iter()
        .map(|name| {
            let methods = pool
                .as_ref()
                .and_then(|p| p.get_service_by_name(&name))
                .map(|service| {
                    service
                        .methods()
                        .map(|m| {
                            let kind = match (m.is_client_streaming(), m.is_server_streaming()) {
                                (false, false) => "",
                                (false, true) => " (server streaming)",
                                (true, false) => " (client streaming)",
                                (true, true) => " (bidi streaming)",
                            };
                            format!("{}{kind}", m.name())
                        })
                        .collect()
                })
                .unwrap_or_default();
            Service { name, methods }
        })
        .collect()
}

fn describe_stop(stopped: rpcplugin_client::Result<Stopped>) -> StopReport {
    match stopped {
        Ok(Stopped { method, status }) => StopReport {
            method: match method {
                StopMethod::Graceful => "shutdown_rpc",
                StopMethod::Terminated => "sigterm",
                StopMethod::Killed => "sigkill",
                StopMethod::AlreadyExited => "already_exited",
                StopMethod::Detached => "detached",
                _ => "stopped",
            },
            status: status.to_string(),
            exit_code: status.code(),
        },
        Err(err) => StopReport {
            method: "failed",
            status: rpcplugin_core::render(&err),
            exit_code: None,
        },
    }
}

/// The readable report.
pub(crate) fn render(report: &Report) -> String {
    let mut out = String::new();
    let row = |out: &mut String, key: &str, value: &str| {
        let _ = writeln!(out, "{key:<13} {value}");
    };
    let pid = report
        .pid
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    row(&mut out, "plugin", &format!("{}{pid}", report.plugin));
    if let Some(err) = &report.error {
        row(&mut out, "result", "FAILED to start");
        for line in err.rendered.lines() {
            let _ = writeln!(out, "  {line}");
        }
        return out;
    }
    row(
        &mut out,
        "handshake",
        &format!(
            "core {}, app protocol {}, {} on {} {}{}",
            opt(report.core_protocol_version),
            opt(report.app_protocol_version),
            report.protocol.as_deref().unwrap_or("?"),
            report.network.as_deref().unwrap_or("?"),
            report.address.as_deref().unwrap_or("?"),
            if report.multiplex == Some(true) {
                ", multiplexed"
            } else {
                ""
            }
        ),
    );
    match (&report.tls, report.mutual_tls) {
        (None, Some(true)) => row(&mut out, "tls", "mutual TLS (no certificate announced)"),
        (None, _) => row(&mut out, "tls", "none (plaintext)"),
        (Some(tls), _) => {
            row(
                &mut out,
                "tls",
                &format!("mutual TLS, {}, {}", tls.key_type, tls.subject),
            );
            row(&mut out, "", &format!("SANs {}", tls.sans.join(", ")));
            row(&mut out, "", &format!("valid until {}", tls.not_after));
            row(&mut out, "", &format!("SHA-256 {}", tls.sha256));
        }
    }
    row(
        &mut out,
        "health",
        &format!("plugin: {}", report.health.as_deref().unwrap_or("?")),
    );
    match &report.services {
        None => row(&mut out, "services", "unknown (no gRPC reflection)"),
        Some(services) => {
            row(
                &mut out,
                "services",
                &format!(
                    "{} (from {})",
                    services.len(),
                    report.reflection.unwrap_or("?")
                ),
            );
            for service in services {
                row(
                    &mut out,
                    "",
                    &format!("{}: {}", service.name, service.methods.join(", ")),
                );
            }
        }
    }
    let served = |s: Option<bool>| match s {
        Some(true) => "served",
        Some(false) => "not served",
        None => "?",
    };
    row(&mut out, "stdio", served(report.stdio));
    row(&mut out, "broker", served(report.broker));
    if let Some(t) = &report.timings_ms {
        row(
            &mut out,
            "timings",
            &format!(
                "spawn to handshake {:.1} ms, connect {:.1} ms, first health answer {:.1} ms",
                t.handshake, t.connect, t.health
            ),
        );
    }
    if let Some(stop) = &report.stop {
        row(
            &mut out,
            "stop",
            &format!("{}, {}", stop.method, stop.status),
        );
    }
    if report.stderr_tail.is_empty() {
        row(&mut out, "stderr", "(nothing)");
    } else {
        row(
            &mut out,
            "stderr",
            &format!("last {} lines:", report.stderr_tail.len()),
        );
        for line in &report.stderr_tail {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn opt(value: Option<u32>) -> String {
    value.map_or_else(|| "?".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_renders_the_error_and_its_hint() {
        let mut report = Report::new("./p".into());
        report.error = Some(ErrorReport {
            code: "process.exited_early".into(),
            message: "plugin p exited".into(),
            hint: Some("check its stderr".into()),
            rendered: "error: plugin p exited\n  hint: check its stderr".into(),
        });
        let text = render(&report);
        assert!(text.contains("FAILED to start"), "{text}");
        assert!(text.contains("  hint: check its stderr"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["error"]["code"], "process.exited_early");
        assert!(json["tls"].is_null() && json["services"].is_null());
    }

    #[test]
    fn certificates_are_described() {
        let id = rpcplugin_crypto::Identity::self_signed(
            rpcplugin_crypto::KeyAlgorithm::EcdsaP521,
            rpcplugin_crypto::Role::Server,
        )
        .unwrap();
        let tls = tls_report(id.cert_der());
        assert_eq!(tls.key_type, "ECDSA P-521");
        assert_eq!(tls.subject, "CN=localhost");
        assert!(tls.sans.contains(&"127.0.0.1".to_owned()));
        assert!(
            tls.not_after.ends_with('Z') && tls.not_after.len() == 20,
            "{}",
            tls.not_after
        );
        assert_eq!(tls.sha256.len(), 32 * 3 - 1);
        assert!(
            tls_report(b"junk")
                .subject
                .starts_with("(not a certificate")
        );
    }

    #[test]
    fn rfc3339_is_utc_seconds() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(86_400_500);
        assert_eq!(rfc3339(at), "1970-01-02T00:00:00Z");
    }
}
