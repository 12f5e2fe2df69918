//! What a broker needs to serve and dial, known once its owner has chosen the
//! transport and TLS of the main connection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_transport::rustls::{ClientConfig, ServerConfig};
use rpcplugin_transport::{Connectors, MuxRouter, Transport};

use crate::DEFAULT_BROKER_DIAL_TIMEOUT;

/// A broker's settings, given to [`Driver::set_ready`](crate::Driver::set_ready).
///
/// Brokered connections use the main connection's certificates, symmetrically as
/// go-plugin 1.4.4 and later do (go-plugin#193): the owner builds both rustls
/// configs from them.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use rpcplugin_broker::Config;
/// use rpcplugin_transport::TcpTransport;
///
/// let config = Config::new(Arc::new(TcpTransport::new())).dial_timeout(Duration::from_secs(2));
/// assert!(!config.is_multiplexed());
/// ```
#[derive(Clone)]
#[must_use]
pub struct Config {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) connectors: Connectors,
    pub(crate) accept_tls: Option<Arc<ServerConfig>>,
    pub(crate) dial_tls: Option<Arc<ClientConfig>>,
    pub(crate) dial_timeout: Duration,
    pub(crate) mux: Option<Arc<MuxRouter>>,
    pub(crate) http2_max_frame_size: Option<u32>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("network", &self.transport.network())
            .field("connectors", &self.connectors)
            .field("accept_tls", &self.accept_tls.is_some())
            .field("dial_tls", &self.dial_tls.is_some())
            .field("dial_timeout", &self.dial_timeout)
            .field("multiplexed", &self.mux.is_some())
            .field("http2_max_frame_size", &self.http2_max_frame_size)
            .finish()
    }
}

impl Config {
    /// Brokered servers bind their listeners with `transport` (one new listener
    /// per id), any transport, custom ones included; dials use the built-in
    /// connectors; plaintext, the default dial timeout, not multiplexed.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            connectors: Connectors::new(),
            accept_tls: None,
            dial_tls: None,
            dial_timeout: DEFAULT_BROKER_DIAL_TIMEOUT,
            mux: None,
            http2_max_frame_size: None,
        }
    }

    /// How dials reach the endpoints the peer announces: the built-in connectors
    /// and these custom ones (for a peer that brokers over a custom network).
    pub fn connectors(mut self, connectors: Connectors) -> Self {
        self.connectors = connectors;
        self
    }

    /// How brokered servers run TLS with the peer's connections (`None`:
    /// plaintext): this side's certificate presented, the peer's required.
    pub fn accept_tls(mut self, config: Option<Arc<ServerConfig>>) -> Self {
        self.accept_tls = config;
        self
    }

    /// How dials run TLS with the peer's brokered servers (`None`: plaintext):
    /// this side's certificate presented, exactly the peer's trusted.
    pub fn dial_tls(mut self, config: Option<Arc<ClientConfig>>) -> Self {
        self.dial_tls = config;
        self
    }

    /// How long a dial waits for the peer's announcement of an id (default
    /// [`DEFAULT_BROKER_DIAL_TIMEOUT`]); also how long an announcement nobody
    /// dials is kept.
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Multiplexes brokered connections as yamux streams of the main connection,
    /// routed by `router`, instead of sockets of their own (the host asked with
    /// `PLUGIN_MULTIPLEX_GRPC` and the plugin agreed). `None` keeps sockets.
    pub fn multiplexed(mut self, router: Option<Arc<MuxRouter>>) -> Self {
        self.mux = router;
        self
    }

    /// Whether [`multiplexed`](Self::multiplexed) was given a router.
    pub fn is_multiplexed(&self) -> bool {
        self.mux.is_some()
    }

    /// The largest HTTP/2 frame brokered servers accept (`None`: h2's default,
    /// 16 KiB). The plugin advertises the same as on its main server.
    pub fn http2_max_frame_size(mut self, size: Option<u32>) -> Self {
        self.http2_max_frame_size = size;
        self
    }
}
