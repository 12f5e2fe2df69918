//! Everything a plugin does before it binds: settings, the cookie check, TLS,
//! version negotiation, limits and the transport.

use rpcplugin_core::Code;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_config::{DEFAULT_PLUGIN_MAX_MESSAGE_SIZE, Environment, Settings};
use rpcplugin_core::{Error, Network, Result};
use rpcplugin_handshake::{MagicCookie, Negotiated, ReceivedEnv};
use rpcplugin_transport::{MuxRouter, TcpTransport, Transport, UnixTransport};

use crate::{AddService, Builder, DEFAULT_BROKER_DIAL_TIMEOUT, Limits, broker, tls, versions};

impl Builder {
    /// Everything up to binding, as phases: settings; what the host asked for
    /// (the cookie check); TLS; the app protocol version; message limits; the
    /// transport; then the broker is made ready and the services of the agreed
    /// version chosen. A person running the plugin by hand hits these checks first,
    /// before any socket exists.
    pub(crate) fn prepare(mut self) -> Result<Prepared> {
        let env = self.environment.take().unwrap_or_else(Environment::capture);
        let loaded = Settings::resolve(&env, self.config_file.as_deref(), &self.overlay)?;
        rpcplugin_config::report(loaded.notices());
        let settings = loaded.into_settings();
        let received = if self.debug {
            debug_env()
        } else if self.in_process.is_some() {
            // The host is this program: it sets the plugin's own cookie.
            let (key, value) = settings
                .magic_cookie(self.cookie.take())
                .unwrap_or_else(|| ("RPCPLUGIN_IN_PROCESS".to_owned(), "1".to_owned()));
            let cookie = MagicCookie::new(key, value)?;
            ReceivedEnv::from_lookup(&cookie, |key| {
                if key == cookie.key() {
                    Some(cookie.value().to_owned())
                } else {
                    env.get(key).map(str::to_owned)
                }
            })?
        } else {
            received_env(self.cookie.take(), &settings, &env)?
        };
        let tls = tls::resolve(&self.tls, &settings, received.client_cert_pem.as_deref())?;
        let mut served =
            versions::served_versions(self.versions.as_deref(), self.versioned.keys().copied());
        if let Some(supported) = &settings.supported_protocol_versions {
            let all = served.clone();
            served.retain(|v| supported.contains(v));
            if served.is_empty() {
                return Err(Error::new(
                    Code::ConfigNoVersions,
                    format!(
                        "SUPPORTED_PROTOCOL_VERSIONS ({supported:?}) names none of the versions this plugin serves ({all:?})"
                    ),
                )
                .with_hint("name at least one of the served versions, or unset SUPPORTED_PROTOCOL_VERSIONS"));
            }
        }
        let negotiated = negotiate(&served, &received, self.debug)?;
        let limits = limits(self.max_receive, self.max_send, &settings);
        let transports = self
            .transports
            .take()
            .or_else(|| settings.server_transports.clone())
            .unwrap_or_else(|| default_transports(self.debug, &received));
        if self.debug && self.transport.is_none() {
            refuse_plaintext_tcp(tls.is_some(), &transports)?;
        }
        let transport = match self.transport.take() {
            Some(custom) => custom,
            None => transport(transports.first().copied(), &received, &settings)?,
        };
        let mux = received.multiplex_grpc.then(|| Arc::new(MuxRouter::new()));
        self.broker.set_ready(
            rpcplugin_broker::Config::new(transport.clone())
                .connectors(self.connectors.clone())
                .multiplexed(mux.clone())
                .accept_tls(tls.as_ref().map(|t| t.config.clone()))
                .dial_tls(tls.as_ref().map(|t| t.dial.clone()))
                .dial_timeout(
                    self.broker_dial_timeout
                        .unwrap_or(DEFAULT_BROKER_DIAL_TIMEOUT),
                )
                .http2_max_frame_size(Some(crate::serve::HTTP2_MAX_FRAME_SIZE)),
        );
        let layers = crate::layers::with_builtin(
            std::mem::take(&mut self.layers),
            self.rate_limit.take(),
            self.concurrency_limit,
            &settings,
        )?;
        let (services, service_names) = self.services_for(negotiated.version());
        tracing::debug!(version = negotiated.version(), services = ?service_names, "serving");
        Ok(Prepared {
            app_version: negotiated.version(),
            tls,
            multiplex: mux,
            transport,
            limits,
            layers,
            server_settings: self.server_settings,
            services,
            service_names,
            reflection: self.reflection,
            ignore_sigint: settings.ignore_sigint,
            shutdown_file: settings.shutdown_file_path.clone(),
            health_service: settings.health_service_enabled,
            drain_timeout: self.drain_timeout.unwrap_or(settings.shutdown_grace),
            capture_stderr: self.capture_stderr,
            broker: self.broker,
            debug: self.debug,
            in_process: self.in_process.take(),
            handle: self.handle.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// The services every version serves, plus those of `version`'s set.
    fn services_for(&mut self, version: u32) -> (Vec<AddService>, Vec<String>) {
        let mut services = std::mem::take(&mut self.services);
        let mut names = std::mem::take(&mut self.service_names);
        if let Some(set) = self.versioned.remove(&version) {
            services.extend(set.services);
            names.extend(set.names);
        }
        (services, names)
    }
}

/// The app protocol version to announce: the highest the host offers among those
/// `served` (a debug-mode plugin, offered nothing, announces its newest).
fn negotiate(served: &[u32], received: &ReceivedEnv, debug: bool) -> Result<Negotiated> {
    if served.is_empty() {
        return Err(Error::new(
            Code::ConfigNoVersions,
            "the plugin serves no app protocol version",
        )
        .with_hint(
            "call .protocol_version(N) or .versioned_services(N, ..) on the plugin server builder",
        ));
    }
    if let Some(list) = &received.protocol_versions {
        for bad in &list.rejected {
            tracing::warn!(entry = %bad, "host sent an invalid app protocol version; skipped");
        }
    }
    if debug {
        // Nobody offers anything: the newest version is the one being debugged.
        return Ok(Negotiated::Agreed(
            served.iter().copied().max().unwrap_or(1),
        ));
    }
    let negotiated = received.negotiate(served);
    if let Negotiated::NoneInCommon { fallback } = negotiated {
        tracing::warn!(
            served = ?served,
            offered = ?received.protocol_versions.as_ref().map(|l| &l.versions),
            announced = fallback,
            "no app protocol version in common with the host; announcing the lowest served, the host will refuse it"
        );
    }
    Ok(negotiated)
}

/// Message limits: the builder's, else the settings', else
/// [`DEFAULT_PLUGIN_MAX_MESSAGE_SIZE`].
fn limits(receive: Option<usize>, send: Option<usize>, settings: &Settings) -> Limits {
    Limits {
        max_receive_message_size: receive
            .or(settings.grpc_max_receive_message_size)
            .unwrap_or(DEFAULT_PLUGIN_MAX_MESSAGE_SIZE),
        max_send_message_size: send
            .or(settings.grpc_max_send_message_size)
            .unwrap_or(DEFAULT_PLUGIN_MAX_MESSAGE_SIZE),
    }
}

/// The transports when neither the builder nor the settings name them.
fn default_transports(debug: bool, received: &ReceivedEnv) -> Vec<Network> {
    if debug {
        vec![Network::Unix]
    } else {
        automatic_transports(received)
    }
}

/// A debug-mode plugin serves no plaintext over TCP: any local user could call it.
fn refuse_plaintext_tcp(tls: bool, transports: &[Network]) -> Result<()> {
    if tls || transports.first() != Some(&Network::Tcp) {
        return Ok(());
    }
    Err(Error::new(
        Code::SecurityDebugPlaintextTcp,
        "a debug-mode plugin does not serve plaintext over tcp",
    )
    .with_hint(
        "any local user could call it: serve on a unix socket (the default), or \
         configure TLS (PLUGIN_SERVER_CERT, PLUGIN_SERVER_KEY and \
         PLUGIN_CLIENT_ROOT_CERTS) so that only hosts with a certificate of that CA \
         can attach",
    ))
}

/// The transport for the preferred network, set up as the host asked (socket
/// directory and group, port range).
fn transport(
    network: Option<Network>,
    received: &ReceivedEnv,
    settings: &Settings,
) -> Result<Arc<dyn Transport>> {
    match network {
        Some(Network::Unix) | None => {
            let mut t = UnixTransport::new();
            if let Some(dir) = &received.unix_socket_dir {
                t = t.dir(dir);
            }
            if let Some(path) = &settings.server_unix_socket_path {
                t = t.path(path);
            }
            if let Some(group) = &received.unix_socket_group {
                t = t.group(group);
            }
            Ok(Arc::new(t))
        }
        Some(Network::Tcp) => {
            let mut t = TcpTransport::new();
            if let Some((min, max)) = received.port_range {
                t = t.port_range(min, max);
            }
            // A fixed port (PLUGIN_SERVER_PORT) wins over the host's range.
            if let Some(port) = settings.server_port {
                t = t.port_range(port, port);
            }
            // Checked to be loopback when the settings were resolved.
            if let Some(ip) = settings.server_ip() {
                t = t.host(ip);
            }
            Ok(Arc::new(t))
        }
        // `Network` is non-exhaustive: one added in core before this crate can
        // listen on it.
        Some(other) => Err(Error::new(
            Code::TransportNoCommonNetwork,
            format!("this plugin cannot serve over {other}: it has no listener for it"),
        )
        .with_hint("set PLUGIN_SERVER_TRANSPORTS to unix, tcp or both")),
    }
}

/// What [`Builder::prepare`] decided, for `Prepared::run`: everything settled,
/// nothing bound yet.
pub(crate) struct Prepared {
    pub(crate) app_version: u32,
    pub(crate) tls: Option<tls::ServerTls>,
    /// The host asked for a multiplexed connection (`PLUGIN_MULTIPLEX_GRPC`).
    pub(crate) multiplex: Option<Arc<rpcplugin_transport::MuxRouter>>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) limits: Limits,
    /// The layers around each user service (built-in limits, then the user's).
    pub(crate) layers: crate::layers::ServiceLayers,
    pub(crate) server_settings: crate::layers::ServerSettings,
    pub(crate) services: Vec<AddService>,
    pub(crate) service_names: Vec<String>,
    pub(crate) reflection: Vec<&'static [u8]>,
    pub(crate) ignore_sigint: bool,
    /// `PLUGIN_SHUTDOWN_FILE_PATH`: a file whose appearance stops the plugin.
    pub(crate) shutdown_file: Option<std::path::PathBuf>,
    /// `PLUGIN_HEALTH_SERVICE_ENABLED`: serve `grpc.health.v1`.
    pub(crate) health_service: bool,
    pub(crate) drain_timeout: Duration,
    pub(crate) capture_stderr: bool,
    pub(crate) broker: broker::PluginBroker,
    pub(crate) debug: bool,
    /// Served inside another program: where the handshake line goes.
    pub(crate) in_process: Option<Announce>,
    /// What plugin code sees of the server (state, counters, health).
    pub(crate) handle: crate::PluginHandle,
    /// The plugin's instruments (feature `otel`).
    pub(crate) metrics: crate::metrics::Metrics,
}

/// Where a plugin served in-process hands its handshake line.
pub(crate) type Announce = Box<dyn FnOnce(rpcplugin_handshake::HandshakeLine) + Send>;

/// Unix sockets, except for hosts that send no `PLUGIN_PROTOCOL_VERSIONS`.
///
/// Every go-plugin host (and rpcplugin's) sends that variable; pyvider-rpcplugin's
/// does not. Its gRPC stack (grpc-core) sends the percent-encoded socket path as the
/// HTTP/2 `:authority` over Unix sockets, which the h2 server refuses as malformed
/// (grpc/grpc#38142, hyperium/h2#487), so such hosts get loopback TCP, where the
/// authority is a plain `127.0.0.1:PORT`. Set the transports explicitly to override.
fn automatic_transports(received: &ReceivedEnv) -> Vec<Network> {
    if received.protocol_versions.is_some() {
        vec![Network::Unix, Network::Tcp]
    } else {
        tracing::debug!(
            "host sent no PLUGIN_PROTOCOL_VERSIONS (not a go-plugin host); serving on loopback TCP"
        );
        vec![Network::Tcp, Network::Unix]
    }
}

/// The environment a debug-mode plugin acts on: nothing from a host.
fn debug_env() -> ReceivedEnv {
    ReceivedEnv {
        protocol_versions: None,
        client_cert_pem: None,
        port_range: None,
        unix_socket_dir: None,
        unix_socket_group: None,
        multiplex_grpc: false,
    }
}

/// The cookie check, then what the host asked for.
fn received_env(
    cookie: Option<(String, String)>,
    settings: &Settings,
    env: &Environment,
) -> Result<ReceivedEnv> {
    let Some((key, value)) = settings.magic_cookie(cookie) else {
        return Err(Error::new(
            Code::ConfigMissingCookie,
            "no magic cookie configured for this plugin",
        )
        .with_hint(
            "call .handshake(KEY, VALUE) on the plugin server builder (or set \
             PLUGIN_MAGIC_COOKIE_KEY and PLUGIN_MAGIC_COOKIE_VALUE); the host must use the same",
        ));
    };
    let cookie = MagicCookie::new(key, value)?;
    ReceivedEnv::from_lookup(&cookie, env.lookup())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PluginServer, ServiceSet};
    use rpcplugin_crypto::{Identity, KeyAlgorithm, Role};
    use rpcplugin_proto::examples::kv::kv_server::KvServer;

    /// A builder as a host would start it: the cookie, and `vars`.
    fn started_with(vars: &[(&str, &str)]) -> Builder {
        let mut all = vec![("BASIC_PLUGIN", "hello")];
        all.extend_from_slice(vars);
        PluginServer::builder()
            .handshake("BASIC_PLUGIN", "hello")
            .environment(Environment::from_pairs(all))
    }

    #[test]
    fn run_by_hand_the_plugin_is_refused_before_any_socket_exists() {
        let by_hand = PluginServer::builder()
            .handshake("BASIC_PLUGIN", "hello")
            .environment(Environment::from_pairs([("HOME", "/home/me")]));
        let err = by_hand.prepare().err().unwrap();
        assert_eq!(err.code(), Code::HandshakeMissingCookie);

        let no_cookie = PluginServer::builder().environment(Environment::from_pairs([("A", "b")]));
        let err = no_cookie.prepare().err().unwrap();
        assert_eq!(err.code(), Code::ConfigMissingCookie);
        assert!(err.hint().unwrap().contains(".handshake(KEY, VALUE)"));
    }

    #[test]
    fn the_highest_version_the_host_offers_wins() {
        let offered = [("PLUGIN_PROTOCOL_VERSIONS", "1,2,x")];
        let prepared = started_with(&offered)
            .protocol_versions([2, 3])
            .prepare()
            .unwrap();
        assert_eq!(prepared.app_version, 2);
        let none_in_common = started_with(&[("PLUGIN_PROTOCOL_VERSIONS", "7")])
            .protocol_versions([2, 3])
            .prepare()
            .unwrap();
        assert_eq!(
            none_in_common.app_version, 2,
            "the lowest served, for the host to refuse"
        );
        let err = started_with(&offered)
            .protocol_versions([])
            .prepare()
            .err()
            .unwrap();
        assert_eq!(err.code(), Code::ConfigNoVersions);
    }

    #[test]
    fn only_the_agreed_versions_set_is_served() {
        let set = || ServiceSet::new().add_service(KvServer::new(Kv));
        let prepared = started_with(&[("PLUGIN_PROTOCOL_VERSIONS", "1,2")])
            .versioned_services(2, set())
            .versioned_services(5, ServiceSet::new())
            .prepare()
            .unwrap();
        assert_eq!(prepared.app_version, 2);
        assert_eq!(prepared.service_names, ["proto.KV"]);
        let v5 = started_with(&[("PLUGIN_PROTOCOL_VERSIONS", "5")])
            .versioned_services(2, set())
            .versioned_services(5, ServiceSet::new())
            .prepare()
            .unwrap();
        assert!(v5.service_names.is_empty(), "{:?}", v5.service_names);
    }

    #[test]
    fn a_debug_mode_plugin_serves_its_newest_version_on_a_unix_socket() {
        let debug = PluginServer::builder()
            .protocol_versions([1, 4])
            .debug_mode(true)
            .environment(Environment::from_pairs([("HOME", "/home/me")]));
        let prepared = debug.prepare().unwrap();
        assert_eq!(prepared.app_version, 4);
        assert_eq!(prepared.transport.network(), Network::Unix);
        assert!(prepared.tls.is_none());

        let over_tcp = PluginServer::builder()
            .debug_mode(true)
            .transports([Network::Tcp])
            .environment(Environment::from_pairs([("HOME", "/home/me")]));
        let err = over_tcp.prepare().err().unwrap();
        assert_eq!(err.code(), Code::SecurityDebugPlaintextTcp);
    }

    #[test]
    fn hosts_without_protocol_versions_get_tcp() {
        let go_host = started_with(&[("PLUGIN_PROTOCOL_VERSIONS", "1")]);
        assert_eq!(
            go_host.prepare().unwrap().transport.network(),
            Network::Unix
        );
        let pyvider_host = started_with(&[]);
        assert_eq!(
            pyvider_host.prepare().unwrap().transport.network(),
            Network::Tcp
        );
        let configured = started_with(&[("PLUGIN_SERVER_TRANSPORTS", "tcp")]);
        assert_eq!(
            configured.prepare().unwrap().transport.network(),
            Network::Tcp
        );
        let in_code =
            started_with(&[("PLUGIN_SERVER_TRANSPORTS", "tcp")]).transports([Network::Unix]);
        assert_eq!(
            in_code.prepare().unwrap().transport.network(),
            Network::Unix
        );
    }

    #[test]
    fn message_limits_come_from_the_builder_then_the_settings() {
        let vars = [("PLUGIN_GRPC_MAX_RECEIVE_MESSAGE_SIZE", "1048576")];
        let prepared = started_with(&vars).prepare().unwrap();
        assert_eq!(prepared.limits.max_receive_message_size, 1 << 20);
        assert_eq!(
            prepared.limits.max_send_message_size,
            DEFAULT_PLUGIN_MAX_MESSAGE_SIZE
        );
        let in_code = started_with(&vars)
            .max_message_sizes(10, 20)
            .prepare()
            .unwrap();
        assert_eq!(
            (
                in_code.limits.max_receive_message_size,
                in_code.limits.max_send_message_size
            ),
            (10, 20)
        );
    }

    #[test]
    fn the_handshake_line_announces_the_certificate_and_multiplexing() {
        let host = Identity::self_signed(KeyAlgorithm::default(), Role::Client).unwrap();
        let pem = host.cert_pem();
        let vars = [
            ("PLUGIN_PROTOCOL_VERSIONS", "3"),
            ("PLUGIN_CLIENT_CERT", pem.as_str()),
            ("PLUGIN_MULTIPLEX_GRPC", "true"),
        ];
        let prepared = started_with(&vars).protocol_version(3).prepare().unwrap();
        let endpoint = rpcplugin_core::Endpoint::Unix("/tmp/p/plugin.sock".into());
        let line = prepared.handshake_line(endpoint.clone());
        assert_eq!(line.app_version, 3);
        assert_eq!(line.endpoint, endpoint);
        assert!(line.multiplex);
        let served = &prepared.tls.as_ref().expect("AutoMTLS").announced;
        assert_eq!(line.server_cert.as_deref(), Some(served.as_ref()));

        let plain = started_with(&[("PLUGIN_PROTOCOL_VERSIONS", "1")])
            .prepare()
            .unwrap();
        let line = plain.handshake_line(endpoint);
        assert_eq!((line.server_cert, line.multiplex), (None, false));
    }

    #[derive(Default)]
    struct Kv;

    #[tonic::async_trait]
    impl rpcplugin_proto::examples::kv::kv_server::Kv for Kv {
        async fn get(
            &self,
            _: tonic::Request<rpcplugin_proto::examples::kv::GetRequest>,
        ) -> std::result::Result<
            tonic::Response<rpcplugin_proto::examples::kv::GetResponse>,
            tonic::Status,
        > {
            Err(tonic::Status::unimplemented("test"))
        }
        async fn put(
            &self,
            _: tonic::Request<rpcplugin_proto::examples::kv::PutRequest>,
        ) -> std::result::Result<tonic::Response<rpcplugin_proto::examples::kv::Empty>, tonic::Status>
        {
            Err(tonic::Status::unimplemented("test"))
        }
    }
}
