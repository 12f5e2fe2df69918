//! [`Target`]: where a plugin serves and how each connection to it is made
//! (transport, multiplexed stream, TLS), for the first channel and every reconnect.

use rpcplugin_core::Code;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rpcplugin_config::{DEFAULT_HOST_MAX_MESSAGE_SIZE, Settings};
use rpcplugin_core::{Endpoint, Error, Result};
use tonic::transport::Channel;

use crate::tls;

/// Where a plugin serves and how to reach it: everything a (re)connection needs.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) endpoint: Endpoint,
    pub(crate) dial: Option<Arc<tls::Dial>>,
    /// The yamux session's router when the connection is multiplexed: each
    /// connection is then a stream of that session, not a new socket connection.
    pub(crate) mux: Option<Arc<rpcplugin_transport::MuxRouter>>,
    pub(crate) connection: Connection,
    /// How the endpoint (and any other the plugin announces) is dialled.
    pub(crate) connectors: rpcplugin_transport::Connectors,
    /// Connections made so far (the first, then tonic's reconnects).
    pub(crate) connects: Arc<std::sync::atomic::AtomicU64>,
}

/// The largest HTTP/2 frame the plugin may send: 1 MiB instead of 16 KiB cuts the
/// per-frame work of large messages (headers, wake-ups, copies) by 64, and small
/// messages are sent in one frame either way. hyper's flow-control windows (2 MiB
/// per stream, 5 MiB per connection) stay: 8 and 16 MiB measured within noise of
/// them (docs/performance.md) and would let an unread stream hold more memory.
const HTTP2_MAX_FRAME_SIZE: u32 = 1 << 20;

/// How channels to a plugin connect and keep their connection, and the message
/// limits of the clients made on them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Connection {
    pub(crate) timeout: Duration,
    pub(crate) keepalive: Option<(Duration, Duration)>,
    /// The largest message a client made on the channel decodes.
    pub(crate) max_receive: usize,
    /// The largest message a client made on the channel encodes.
    pub(crate) max_send: usize,
}

impl Connection {
    /// From the settings, with the host's message limits
    /// ([`DEFAULT_HOST_MAX_MESSAGE_SIZE`], go-plugin's `i32::MAX`) where none is set.
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        Self {
            timeout: settings.connection_timeout,
            keepalive: settings
                .grpc_keepalive_time
                .map(|time| (time, settings.grpc_keepalive_timeout)),
            max_receive: settings
                .grpc_max_receive_message_size
                .unwrap_or(DEFAULT_HOST_MAX_MESSAGE_SIZE),
            max_send: settings
                .grpc_max_send_message_size
                .unwrap_or(DEFAULT_HOST_MAX_MESSAGE_SIZE),
        }
    }

    /// A tonic endpoint with these settings. The authority must be a host name:
    /// h2 rejects a socket path there.
    pub(crate) fn endpoint(&self) -> tonic::transport::Endpoint {
        let endpoint = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_timeout(self.timeout)
            .max_frame_size(HTTP2_MAX_FRAME_SIZE);
        match self.keepalive {
            Some((interval, timeout)) => endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(true),
            None => endpoint,
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.dial.is_some())
            .field("multiplexed", &self.mux.is_some())
            .field("connection", &self.connection)
            .finish()
    }
}

impl Target {
    pub(crate) fn pinned(&self) -> bool {
        self.dial.as_ref().is_some_and(|d| d.pinned)
    }

    /// One connection: the transport, then TLS when asked.
    pub(crate) async fn connect(&self) -> Result<TokioIo<rpcplugin_transport::Stream>> {
        let stream = match self.mux.as_ref().map(|router| router.session()) {
            None => self.connectors.connect(&self.endpoint).await?,
            Some(session) => {
                let closed = |err: std::io::Error| {
                    Error::new(
                        Code::TransportConnect,
                        "the multiplexed connection to the plugin is closed",
                    )
                    .with_source(err)
                    .with_hint("the plugin probably exited")
                };
                let session = session.ok_or_else(|| {
                    closed(std::io::Error::from(std::io::ErrorKind::NotConnected))
                })?;
                session.open().await.map_err(closed)?
            }
        };
        let stream = match &self.dial {
            None => stream,
            Some(dial) => stream
                .connect_tls(
                    dial.config.clone(),
                    dial.server_name.clone(),
                    rpcplugin_transport::DEFAULT_TLS_HANDSHAKE_TIMEOUT,
                )
                .await
                .map_err(|err| {
                    Error::new(Code::SecurityTls, "tls handshake failed").with_source(err)
                })?,
        };
        self.connects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(TokioIo::new(stream))
    }

    /// A connected channel to this target.
    pub(crate) async fn channel(self) -> std::result::Result<Channel, tonic::transport::Error> {
        let endpoint = self.connection.endpoint();
        let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
            let target = self.clone();
            async move { target.connect().await }
        });
        endpoint.connect_with_connector(connector).await
    }
}
