//! go-plugin's `plugin.GRPCBroker`, host side: the broker itself is
//! rpcplugin-broker's, in the host's role; what is the host's own is calling
//! `StartStream` on the plugin's channel right after connecting (as go-plugin
//! hosts do) and keeping it for the connection's life.
//!
//! TLS follows go-plugin 1.4.4 and later (go-plugin#193, symmetric AutoMTLS): a
//! brokered server presents the host's certificate and requires exactly the
//! plugin's (or, with configured roots and no announced certificate, one from those
//! roots); a brokered connection the host dials uses the same TLS as its main
//! connection. go-plugin 1.0.1 plugins cannot dial back under AutoMTLS (they check
//! the host's certificate against the system roots, go-plugin#109); plaintext works.

use futures_util::TryStreamExt as _;
use rpcplugin_broker::{Config, Driver, Role};
use rpcplugin_proto::plugin::grpc_broker_client::GrpcBrokerClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tracing::Instrument as _;

pub use rpcplugin_broker::{BrokeredServer, DEFAULT_BROKER_DIAL_TIMEOUT, GrpcBroker};

/// Messages the host sends on the stream not yet taken by gRPC.
const STREAM_QUEUE: usize = 16;

/// A host broker that talks over `channel`'s `StartStream`, opened now. A plugin
/// without a broker answers Unimplemented, and the broker's errors say so.
pub(crate) fn start(channel: Channel, config: Config, plugin: &str) -> Driver {
    let driver = Driver::new(Role::Host);
    driver.set_ready(config);
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let mut client = GrpcBrokerClient::new(channel);
    let call = async move {
        let response = client.start_stream(ReceiverStream::new(rx)).await?;
        Ok::<_, tonic::Status>(response.into_inner())
    };
    let inbound = Box::pin(futures_util::stream::once(call).try_flatten());
    let span = tracing::debug_span!("broker", plugin = %plugin);
    tokio::spawn(driver.pump(inbound, tx).instrument(span));
    driver
}
