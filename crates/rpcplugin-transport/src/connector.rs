//! Dialling endpoints: the built-in connectors for `unix` and `tcp`, and
//! [`Connectors`], which also dials custom networks with connectors the
//! application registers (any tower `Service<Endpoint>`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rpcplugin_core::{Code, Endpoint, Error, Network, Result};
use tower_service::Service;

use crate::stream::{CustomStream, Io, Stream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type DialFuture = Pin<Box<dyn Future<Output = std::result::Result<Stream, BoxError>> + Send>>;

/// Dials Unix socket endpoints: the built-in connector for `unix`, a tower
/// `Service<Endpoint>` like any custom one. See [`connect`](crate::connect).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnixConnector;

/// Dials TCP endpoints (`TCP_NODELAY` set): the built-in connector for `tcp`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

macro_rules! builtin_connector {
    ($name:ident) => {
        impl Service<Endpoint> for $name {
            type Response = Stream;
            type Error = Error;
            type Future = Pin<Box<dyn Future<Output = Result<Stream>> + Send>>;

            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, endpoint: Endpoint) -> Self::Future {
                Box::pin(async move { crate::connect(&endpoint).await })
            }
        }
    };
}

builtin_connector!(UnixConnector);
builtin_connector!(TcpConnector);

/// The connectors a host (or a plugin's broker) dials with: `unix` and `tcp`
/// built in, plus one per custom network the application registers.
///
/// A connector is any tower `Service<Endpoint>` whose response is an [`Io`]
/// (tonic's `connect_with_connector` shape, keyed by the endpoint instead of a
/// URI). Registering one for `unix` or `tcp` replaces the built-in one.
///
/// ```
/// use rpcplugin_transport::{Connectors, Endpoint, Network};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let memory = Network::custom("memory").unwrap();
/// let connectors = Connectors::new().with(
///     memory,
///     tower::service_fn(|_: Endpoint| async {
///         let (near, _far) = tokio::io::duplex(64);
///         Ok::<_, std::io::Error>(near)
///     }),
/// );
/// assert!(connectors.supports(memory) && connectors.supports(Network::Unix));
/// let stream = connectors.connect(&Endpoint::custom(memory, "m-1").unwrap()).await.unwrap();
/// assert_eq!(stream.network(), memory);
///
/// let other = Endpoint::custom(Network::custom("vsock").unwrap(), "3:5000").unwrap();
/// let err = Connectors::new().connect(&other).await.unwrap_err();
/// assert_eq!(err.code(), rpcplugin_transport::Code::TransportNoConnector);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Connectors {
    // Empty unless the application registers one: the built-in networks are
    // dialled directly, with nothing boxed.
    custom: Vec<(Network, Arc<dyn Dial>)>,
}

impl fmt::Debug for Connectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connectors")
            .field(
                "custom",
                &self.custom.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Connectors {
    /// The built-in connectors only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Dials `network`'s endpoints with `connector` (replacing any connector
    /// registered for it before).
    #[must_use]
    pub fn with<S>(mut self, network: Network, connector: S) -> Self
    where
        S: Service<Endpoint> + Clone + Send + Sync + 'static,
        S::Response: Io,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        self.custom.retain(|(n, _)| *n != network);
        self.custom
            .push((network, Arc::new(ServiceDial { network, connector })));
        self
    }

    /// Adds every connector of `other`, which win over this one's.
    #[must_use]
    pub fn merged(mut self, other: &Self) -> Self {
        for (network, dial) in &other.custom {
            self.custom.retain(|(n, _)| n != network);
            self.custom.push((*network, dial.clone()));
        }
        self
    }

    /// Whether this can dial `network`.
    pub fn supports(&self, network: Network) -> bool {
        matches!(network, Network::Unix | Network::Tcp)
            || self.custom.iter().any(|(n, _)| *n == network)
    }

    /// Fails with `transport.no_connector` (and a hint) unless this can dial
    /// `endpoint`'s network: for refusing an endpoint before trying it.
    ///
    /// # Errors
    ///
    /// `transport.no_connector`.
    pub fn require(&self, endpoint: &Endpoint) -> Result<()> {
        if self.supports(endpoint.network()) {
            Ok(())
        } else {
            Err(no_connector(endpoint))
        }
    }

    /// The custom networks registered.
    pub fn custom_networks(&self) -> impl Iterator<Item = Network> + '_ {
        self.custom.iter().map(|(n, _)| *n)
    }

    /// Connects to `endpoint` with its network's connector.
    ///
    /// # Errors
    ///
    /// `transport.no_connector` when no connector serves the endpoint's network;
    /// `transport.connect` (with the connector's error as source) when it fails;
    /// for the built-in networks, what [`connect`](crate::connect) returns.
    pub async fn connect(&self, endpoint: &Endpoint) -> Result<Stream> {
        let network = endpoint.network();
        match self.custom.iter().find(|(n, _)| *n == network) {
            Some((_, dial)) => dial.dial(endpoint.clone()).await.map_err(|err| {
                Error::new(
                    Code::TransportConnect,
                    format!("cannot connect to {endpoint} over {network}"),
                )
                .with_source(err)
                .with_hint(format!(
                    "the {network} connector failed: check that the plugin is still serving there"
                ))
            }),
            None => crate::connect(endpoint).await,
        }
    }
}

/// The error for an endpoint whose network nobody registered a connector for.
pub(crate) fn no_connector(endpoint: &Endpoint) -> Error {
    let network = endpoint.network();
    Error::new(
        Code::TransportNoConnector,
        format!("cannot connect to {endpoint} over {network}: no connector for {network}"),
    )
    .with_hint(format!(
        "the plugin serves over the custom network {network}: give the host a connector for \
         it (.connector(Network::custom(\"{network}\"), ..) on the client builder), or have the \
         plugin serve over unix or tcp"
    ))
}

/// A registered connector with its types erased.
trait Dial: Send + Sync {
    fn dial(&self, endpoint: Endpoint) -> DialFuture;
}

struct ServiceDial<S> {
    network: Network,
    connector: S,
}

impl<S> Dial for ServiceDial<S>
where
    S: Service<Endpoint> + Clone + Send + Sync + 'static,
    S::Response: Io,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    fn dial(&self, endpoint: Endpoint) -> DialFuture {
        let mut connector = self.connector.clone();
        let network = self.network;
        Box::pin(async move {
            std::future::poll_fn(|cx| connector.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let io = connector.call(endpoint).await.map_err(Into::into)?;
            Ok(CustomStream::boxed(network, Box::new(io)))
        })
    }
}
