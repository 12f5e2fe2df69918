//! Dialling a brokered id: the endpoint the peer announced (sockets) or a knocked
//! stream of the multiplexed session, with TLS on each connection, as one tonic
//! `Channel` connected at once so that failures show at dial time.

use rpcplugin_core::Code;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rpcplugin_core::{Endpoint, Error, Network, Result};
use rpcplugin_proto::plugin::ConnInfo;
use rpcplugin_transport::rustls::ClientConfig;
use rpcplugin_transport::rustls::pki_types::ServerName;
use rpcplugin_transport::{
    Connectors, DEFAULT_TLS_HANDSHAKE_TIMEOUT, MuxRouter, Stream, TlsFailure,
};
use tonic::transport::{Channel, Uri};

use crate::broker::GrpcBroker;

/// How long connecting to an announced endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The endpoint a peer announced, checked before dialling it.
pub(crate) fn announced_endpoint(info: &ConnInfo) -> Result<Endpoint> {
    let bad = |why: &str| {
        Error::new(
            Code::BrokerBadAddress,
            format!(
                "broker id {} was announced at {:?} {:?}, which cannot be dialled",
                info.service_id, info.network, info.address
            ),
        )
        .with_hint(why)
    };
    match info.network.parse::<Network>() {
        Ok(Network::Unix) if !info.address.is_empty() => {
            Ok(Endpoint::Unix(info.address.clone().into()))
        }
        Ok(Network::Tcp) => info
            .address
            .parse()
            .map(Endpoint::Tcp)
            .map_err(|_| bad("a tcp address must be IP:PORT")),
        // A custom network's address is its connector's business; dialling one
        // this side has no connector for fails with `transport.no_connector`.
        Ok(network @ Network::Custom(_)) => Endpoint::custom(network, info.address.clone())
            .map_err(|_| bad("a custom network's address must be one line of text")),
        _ => Err(bad(
            "the peer must announce a unix socket path or a tcp IP:PORT; a multiplexing peer \
             (go-plugin 1.6+) only multiplexes when the host sets PLUGIN_MULTIPLEX_GRPC",
        )),
    }
}

/// One gRPC channel to a brokered endpoint; reconnects (on the next call) go to
/// the same endpoint.
pub(crate) async fn connect_channel(
    id: u32,
    endpoint: Endpoint,
    tls: Option<Arc<ClientConfig>>,
    connectors: Connectors,
) -> Result<Channel> {
    // Said now, not as a connect failure after the timeout.
    connectors.require(&endpoint)?;
    let target = endpoint.clone();
    let connector = move |_: Uri| {
        let endpoint = target.clone();
        let tls = tls.clone();
        let connectors = connectors.clone();
        async move {
            let stream = connectors.connect(&endpoint).await?;
            secure(stream, tls).await
        }
    };
    channel(connector, CONNECT_TIMEOUT).await.map_err(|err| {
        let (code, hint) = match TlsFailure::find(&err) {
            Some(failure) => (
                Code::SecurityTls,
                format!(
                    "TLS with the brokered server failed ({failure}); brokered connections use \
                     the same certificates as the plugin's own connection"
                ),
            ),
            None => (
                Code::BrokerConnect,
                "the id was announced but nothing accepts connections there; the server \
                 behind it may have stopped"
                    .to_owned(),
            ),
        };
        Error::new(
            code,
            format!("cannot connect to broker id {id} at {endpoint}"),
        )
        .with_source(err)
        .with_hint(hint)
    })
}

/// A channel whose every connection knocks for `id`, then opens a stream of the
/// multiplexed session (TLS inside it), as go-plugin 1.6's dial.
pub(crate) async fn connect_muxed(
    broker: GrpcBroker,
    router: Arc<MuxRouter>,
    id: u32,
    timeout: Duration,
) -> Result<Channel> {
    let tls = broker.inner.ready()?.dial_tls.clone();
    let connector = move |_: Uri| {
        let broker = broker.clone();
        let router = router.clone();
        let tls = tls.clone();
        async move {
            let stream = knock_and_open(&broker, &router, id, timeout).await?;
            secure(stream, tls).await
        }
    };
    channel(connector, timeout + CONNECT_TIMEOUT)
        .await
        .map_err(|err| {
            // The knock's own error, when that is what failed.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
            while let Some(e) = source {
                if let Some(ours) = e.downcast_ref::<Error>() {
                    return Error::new(ours.code(), ours.to_string())
                        .with_hint(ours.hint().unwrap_or_default().to_owned());
                }
                source = e.source();
            }
            Error::new(
                Code::BrokerConnect,
                format!("cannot connect to broker id {id} over the multiplexed connection"),
            )
            .with_source(err)
        })
}

/// Knocks for `id` and opens the stream the peer then hands to that id's server.
/// One dial at a time per side, so that the peer pairs each stream with its knock.
async fn knock_and_open(
    broker: &GrpcBroker,
    router: &MuxRouter,
    id: u32,
    timeout: Duration,
) -> Result<Stream> {
    let _one_at_a_time = broker.inner.dial_lock.lock().await;
    broker.inner.knock(id, timeout).await?;
    let session = router.session().ok_or_else(|| {
        Error::new(
            Code::BrokerClosed,
            format!("cannot dial broker id {id}: the multiplexed connection is closed"),
        )
        .with_hint("the other side went away, or this one is stopping")
    })?;
    session.open().await.map_err(|err| {
        Error::new(
            Code::BrokerConnect,
            format!("cannot open a multiplexed stream for broker id {id}"),
        )
        .with_source(err)
        .with_hint("the multiplexed connection is gone")
    })
}

/// TLS on a brokered connection this side opened, when the broker uses TLS.
async fn secure(stream: Stream, tls: Option<Arc<ClientConfig>>) -> Result<TokioIo<Stream>> {
    let stream = match tls {
        None => stream,
        Some(config) => stream
            .connect_tls(config, localhost(), DEFAULT_TLS_HANDSHAKE_TIMEOUT)
            .await
            .map_err(|err| {
                Error::new(Code::SecurityTls, "tls handshake failed").with_source(err)
            })?,
    };
    Ok(TokioIo::new(stream))
}

/// Connects a channel now through `connector`. The URI is a placeholder: the
/// connector knows where to go, and h2 wants an `:authority` that is no path.
async fn channel<C, F>(
    connector: C,
    timeout: Duration,
) -> std::result::Result<Channel, tonic::transport::Error>
where
    C: FnMut(Uri) -> F + Send + Clone + 'static,
    F: std::future::Future<Output = Result<TokioIo<Stream>>> + Send + 'static,
{
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(connector))
        .await
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid DNS name")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(network: &str, address: &str) -> ConnInfo {
        ConnInfo {
            service_id: 1,
            network: network.into(),
            address: address.into(),
            knock: None,
        }
    }

    #[test]
    fn announced_addresses_are_checked() {
        assert_eq!(
            announced_endpoint(&info("unix", "/tmp/s")).unwrap(),
            Endpoint::Unix("/tmp/s".into())
        );
        assert_eq!(
            announced_endpoint(&info("tcp", "127.0.0.1:10001")).unwrap(),
            Endpoint::Tcp("127.0.0.1:10001".parse().unwrap())
        );
        assert_eq!(
            announced_endpoint(&info("pipe", "x"))
                .unwrap()
                .network()
                .as_str(),
            "pipe"
        );
        for (network, address) in [
            ("", ""),
            ("unix", ""),
            ("tcp", "localhost"),
            ("pipe", "a|b"),
        ] {
            let err = announced_endpoint(&info(network, address)).unwrap_err();
            assert_eq!(
                err.code(),
                Code::BrokerBadAddress,
                "{network:?} {address:?}"
            );
            assert!(err.hint().is_some());
        }
    }
}
