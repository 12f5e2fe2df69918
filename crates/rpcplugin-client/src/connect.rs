//! Connecting to a plugin that has said where it serves, and checking its health:
//! the phases after the handshake, shared by a launch and an attach.

use rpcplugin_core::Code;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_core::{Endpoint, Error, Result};
use rpcplugin_handshake::HandshakeLine;
use rpcplugin_proto::health::v1::HealthCheckRequest;
use rpcplugin_proto::health::v1::health_check_response::ServingStatus;
use rpcplugin_proto::health::v1::health_client::HealthClient;
use rpcplugin_transport::{Connectors, MuxRouter, TcpTransport, Transport, UnixTransport};
use tonic::transport::Channel;

use crate::spawned::Spawned;
use crate::start::Resolved;
use crate::tls::{Dial, HostTls};
use crate::{Builder, Connection, DEFAULT_BROKER_DIAL_TIMEOUT, Target, broker, handshake};

/// What the connect phase makes: a connected channel, how to make more, and the
/// broker running over it.
#[derive(Debug)]
pub(crate) struct Connected {
    pub(crate) channel: Channel,
    pub(crate) target: Target,
    pub(crate) broker: rpcplugin_broker::Driver,
}

/// Connect, for a plugin this host launched: TLS as the handshake line asks, the
/// yamux session when multiplexed, the channel, then the broker (opened before the
/// health check, as go-plugin hosts do; a plugin without a broker just closes it).
pub(crate) async fn launched(
    builder: &Builder,
    resolved: &Resolved,
    spawned: &Spawned,
    announced: &HandshakeLine,
    line: &str,
) -> Result<Connected> {
    let name = spawned.name.as_str();
    let endpoint = &announced.endpoint;
    let server_cert = announced.server_cert.as_deref();
    let dial = resolved
        .host_tls
        .dial(name, server_cert, endpoint)
        .map_err(|err| handshake::with_line_context(err, line))?;
    let mux = handshake::multiplex_router(name, builder.multiplex, announced.multiplex)?;
    // Brokered sockets go in the plugin's private directory, unless the host
    // brokers over a transport of its own.
    let transport: Arc<dyn Transport> =
        match (&builder.broker_transport, endpoint, spawned.socket_dir()) {
            (Some(custom), _, _) => custom.clone(),
            (None, Endpoint::Unix(_) | Endpoint::Custom(..), Some(dir)) => {
                Arc::new(UnixTransport::new().dir(dir))
            }
            // A sandboxed plugin may reach its socket directory, while a loopback
            // port chosen later could be named in none of its rules.
            (None, Endpoint::Tcp(_), Some(dir)) if spawned.sandbox.is_some() => {
                Arc::new(UnixTransport::new().dir(dir))
            }
            _ => Arc::new(TcpTransport::new()),
        };
    let ready = broker_ready(
        &resolved.host_tls,
        server_cert,
        dial.as_ref(),
        transport,
        &builder.connectors,
        mux.clone(),
        builder.broker_dial_timeout,
    )?;
    if let Some(router) = &mux {
        start_session(name, endpoint, &builder.connectors, router.clone()).await?;
    }
    let target = Target {
        endpoint: endpoint.clone(),
        dial: dial.map(Arc::new),
        mux,
        connection: Connection::from_settings(&resolved.settings),
        connectors: builder.connectors.clone(),
        connects: Default::default(),
    };
    let channel = open_channel(name, &target).await?;
    let broker = broker::start(channel.clone(), ready, name);
    broker.set_endpoint(endpoint.clone());
    Ok(Connected {
        channel,
        target,
        broker,
    })
}

/// What the broker needs to serve and dial: the transport for brokered listeners
/// and the host's TLS both ways.
pub(crate) fn broker_ready(
    host_tls: &HostTls,
    server_cert: Option<&[u8]>,
    dial: Option<&Dial>,
    transport: Arc<dyn Transport>,
    connectors: &Connectors,
    mux: Option<Arc<MuxRouter>>,
    dial_timeout: Option<Duration>,
) -> Result<rpcplugin_broker::Config> {
    Ok(rpcplugin_broker::Config::new(transport)
        .connectors(connectors.clone())
        .multiplexed(mux)
        .accept_tls(host_tls.broker_accept(server_cert)?)
        .dial_tls(dial.map(|d| d.config.clone()))
        .dial_timeout(dial_timeout.unwrap_or(DEFAULT_BROKER_DIAL_TIMEOUT)))
}

/// Multiplexed: one connection to the plugin and a yamux session over it; the
/// streams the plugin opens go to the brokered servers it knocked for.
async fn start_session(
    name: &str,
    endpoint: &Endpoint,
    connectors: &Connectors,
    router: Arc<MuxRouter>,
) -> Result<()> {
    let raw = connectors.connect(endpoint).await?;
    let (session, mut inbound) =
        rpcplugin_transport::MuxSession::new(raw, rpcplugin_transport::MuxRole::Client);
    router.set_session(session);
    let name = name.to_owned();
    tokio::spawn(async move {
        while let Some(stream) = inbound.accept().await {
            if router.route(stream).is_some() {
                tracing::warn!(plugin = %name, "closed a stream the plugin opened without knocking");
            }
        }
    });
    Ok(())
}

/// The first connection to `target`, with the error a user should see when it
/// fails (a TLS refusal named as such).
pub(crate) async fn open_channel(name: &str, target: &Target) -> Result<Channel> {
    let endpoint = &target.endpoint;
    target.clone().channel().await.map_err(|err| {
        if let Some(security) = crate::tls::failure_error(name, endpoint, target.pinned(), &err) {
            return security.with_source(err);
        }
        Error::new(
            Code::TransportConnect,
            format!("cannot connect to plugin {name} at {endpoint}"),
        )
        .with_source(err)
        .with_hint("the plugin announced this address but nothing accepts connections there; it may have exited right after the handshake")
    })
}

/// Check health: `grpc.health.v1.Health/Check` for `"plugin"`, within 5 s. A plugin
/// without the service passes (health is optional in the protocol).
pub(crate) async fn check_health(
    name: &str,
    channel: &Channel,
    target: &Target,
    timeout: Duration,
) -> Result<()> {
    let mut health = HealthClient::new(channel.clone());
    let request = HealthCheckRequest {
        service: "plugin".to_owned(),
    };
    match tokio::time::timeout(timeout, health.check(request)).await {
        Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
        Ok(Ok(reply)) => Err(Error::new(
            Code::ProtocolNotServing,
            format!(
                "plugin {name} reports health status {}",
                reply.get_ref().status
            ),
        )
        .with_hint("the plugin is shutting down or not ready; check its log")),
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Ok(()),
        // TLS 1.3 servers judge the client's certificate after the client's side
        // of the handshake: a refusal arrives with the first call.
        Ok(Err(status)) if target.dial.is_some() => {
            match crate::tls::failure_error(name, &target.endpoint, target.pinned(), &status) {
                Some(security) => Err(security.with_source(status)),
                None => Err(health_error(name, status)),
            }
        }
        Ok(Err(status)) => Err(health_error(name, status)),
        Err(_) => Err(Error::new(
            Code::ProtocolHealthTimeout,
            format!("plugin {name} did not answer its health check within {timeout:?}"),
        )
        .with_hint("the plugin is stuck or overloaded; PLUGIN_CHANNEL_READY_TIMEOUT sets how long a host waits")),
    }
}

fn health_error(name: &str, status: tonic::Status) -> Error {
    Error::new(
        Code::ProtocolHealth,
        format!("plugin {name} failed its health check"),
    )
    .with_source(status)
    .with_hint("the plugin accepted the connection but cannot answer gRPC calls")
}
