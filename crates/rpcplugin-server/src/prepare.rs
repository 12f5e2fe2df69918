//! Everything a plugin does before it binds: settings, the cookie check, TLS,
//! version negotiation, limits and the transport.

use std::sync::Arc;
use std::time::Duration;

use rpcplugin_config::{DEFAULT_PLUGIN_MAX_MESSAGE_SIZE, Environment, Settings};
use rpcplugin_core::{Error, ErrorKind, Network, Result};
use rpcplugin_handshake::{MagicCookie, Negotiated, ReceivedEnv};
use rpcplugin_transport::{TcpTransport, Transport, UnixTransport};

use crate::{
    AddService, Builder, DEFAULT_BROKER_DIAL_TIMEOUT, GrpcBroker, Limits, broker, tls, versions,
};

impl Builder {
    /// Everything up to binding: the checks a person running the plugin by hand hits
    /// first, before any socket exists.
    pub(crate) fn prepare(mut self) -> Result<Prepared> {
        let env = self.environment.take().unwrap_or_else(Environment::capture);
        let settings = Settings::from_sources(&env, self.config_file.as_deref())?;
        let received = if self.debug {
            debug_env()
        } else {
            received_env(self.cookie.take(), &settings, &env)?
        };
        let tls = std::mem::take(&mut self.tls)
            .resolve(&settings, received.client_cert_pem.as_deref())?;
        let versions =
            versions::served_versions(self.versions.as_deref(), self.versioned.keys().copied());
        if versions.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "config.no_versions",
                "the plugin serves no app protocol version",
            )
            .with_hint("call .protocol_version(N) or .versioned_services(N, ..) on the plugin server builder"));
        }
        if let Some(list) = &received.protocol_versions {
            for bad in &list.rejected {
                tracing::warn!(entry = %bad, "host sent an invalid app protocol version; skipped");
            }
        }
        let negotiated = if self.debug {
            // Nobody offers anything: the newest version is the one being debugged.
            Negotiated::Agreed(versions.iter().copied().max().unwrap_or(1))
        } else {
            received.negotiate(&versions)
        };
        if let Negotiated::NoneInCommon { fallback } = negotiated {
            tracing::warn!(
                served = ?versions,
                offered = ?received.protocol_versions.as_ref().map(|l| &l.versions),
                announced = fallback,
                "no app protocol version in common with the host; announcing the lowest served, the host will refuse it"
            );
        }
        let limits = Limits {
            max_receive_message_size: self
                .max_receive
                .or(settings.grpc_max_receive_message_size)
                .unwrap_or(DEFAULT_PLUGIN_MAX_MESSAGE_SIZE),
            max_send_message_size: self
                .max_send
                .or(settings.grpc_max_send_message_size)
                .unwrap_or(DEFAULT_PLUGIN_MAX_MESSAGE_SIZE),
        };
        let debug = self.debug;
        let transports = self
            .transports
            .take()
            .or_else(|| settings.server_transports.clone())
            .unwrap_or_else(|| {
                if debug {
                    vec![Network::Unix]
                } else {
                    automatic_transports(&received)
                }
            });
        if self.debug && tls.is_none() && transports.first() == Some(&Network::Tcp) {
            return Err(Error::new(
                ErrorKind::Security,
                "security.debug_plaintext_tcp",
                "a debug-mode plugin does not serve plaintext over tcp",
            )
            .with_hint(
                "any local user could call it: serve on a unix socket (the default), or \
                 configure TLS (PLUGIN_SERVER_CERT, PLUGIN_SERVER_KEY and \
                 PLUGIN_CLIENT_ROOT_CERTS) so that only hosts with a certificate of that CA \
                 can attach",
            ));
        }
        Self::finish_prepare(
            self, settings, received, tls, negotiated, limits, transports,
        )
    }

    fn finish_prepare(
        mut self,
        settings: Settings,
        received: ReceivedEnv,
        tls: Option<tls::ServerTls>,
        negotiated: Negotiated,
        limits: Limits,
        transports: Vec<Network>,
    ) -> Result<Prepared> {
        let transport: Arc<dyn Transport> = match transports.first() {
            Some(Network::Unix) | None => {
                let mut t = UnixTransport::new();
                if let Some(dir) = &received.unix_socket_dir {
                    t = t.dir(dir);
                }
                if let Some(group) = &received.unix_socket_group {
                    t = t.group(group);
                }
                Arc::new(t)
            }
            Some(Network::Tcp) => {
                let mut t = TcpTransport::new();
                if let Some((min, max)) = received.port_range {
                    t = t.port_range(min, max);
                }
                Arc::new(t)
            }
        };
        let mux = received
            .multiplex_grpc
            .then(|| Arc::new(rpcplugin_transport::MuxRouter::new()));
        self.broker.set_ready(broker::Ready {
            mux: mux.clone(),
            transport: transport.clone(),
            accept_tls: tls.as_ref().map(|t| t.config.clone()),
            dial_tls: tls.as_ref().map(|t| t.dial.clone()),
            dial_timeout: self
                .broker_dial_timeout
                .unwrap_or(DEFAULT_BROKER_DIAL_TIMEOUT),
        });
        let mut services = self.services;
        let mut service_names = self.service_names;
        if let Some(set) = self.versioned.remove(&negotiated.version()) {
            services.extend(set.services);
            service_names.extend(set.names);
        }
        tracing::debug!(version = negotiated.version(), services = ?service_names, "serving");
        Ok(Prepared {
            app_version: negotiated.version(),
            tls,
            multiplex: mux,
            transport,
            limits,
            services,
            service_names,
            reflection: self.reflection,
            ignore_sigint: settings.ignore_sigint,
            drain_timeout: self.drain_timeout.unwrap_or(settings.shutdown_grace),
            capture_stderr: self.capture_stderr,
            broker: self.broker,
            debug: self.debug,
        })
    }
}

pub(crate) struct Prepared {
    pub(crate) app_version: u32,
    pub(crate) tls: Option<tls::ServerTls>,
    /// The host asked for a multiplexed connection (`PLUGIN_MULTIPLEX_GRPC`).
    pub(crate) multiplex: Option<Arc<rpcplugin_transport::MuxRouter>>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) limits: Limits,
    pub(crate) services: Vec<AddService>,
    pub(crate) service_names: Vec<String>,
    pub(crate) reflection: Vec<&'static [u8]>,
    pub(crate) ignore_sigint: bool,
    pub(crate) drain_timeout: Duration,
    pub(crate) capture_stderr: bool,
    pub(crate) broker: GrpcBroker,
    pub(crate) debug: bool,
}

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
            ErrorKind::Config,
            "config.missing_cookie",
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
