//! The plugin's side of a multiplexed connection (go-plugin 1.6+ when the host
//! sets `PLUGIN_MULTIPLEX_GRPC`): the first connection the host makes carries a
//! yamux session, and every gRPC connection, the main one and the brokered ones,
//! is a stream of it with its own TLS. Brokered streams are rpcplugin-broker's;
//! this module accepts the session and feeds the main server.

use std::sync::Arc;
use std::time::Duration;

use rpcplugin_broker::{Incoming, Role};
use rpcplugin_transport::rustls::ServerConfig;
use rpcplugin_transport::{Listener, MuxRole, MuxRouter, MuxSession, Stream};
use tokio::sync::mpsc;

/// Connections for the main gRPC server: streams of the session on the first
/// connection accepted, except those a knock claimed for a brokered listener.
/// Later connections to the socket are refused: the session is the connection.
pub(crate) fn main_incoming(
    listener: Arc<Listener>,
    tls: Option<Arc<ServerConfig>>,
    router: Arc<MuxRouter>,
) -> Incoming {
    let (streams_tx, streams_rx) = mpsc::channel(8);
    tokio::spawn(run_session(listener, router, streams_tx));
    Incoming::from_streams(streams_rx, tls, Role::Plugin)
}

/// Accepts the host's connection, runs the session on it and passes the main
/// server's streams on, until the session or the main server ends.
async fn run_session(
    listener: Arc<Listener>,
    router: Arc<MuxRouter>,
    streams: mpsc::Sender<Stream>,
) {
    let raw = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(raw) => break raw,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept the host's connection; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = streams.closed() => return,
        }
    };
    let (session, mut inbound) = MuxSession::new(raw, MuxRole::Server);
    router.set_session(session);
    tracing::debug!("multiplexed session with the host started");
    loop {
        tokio::select! {
            stream = inbound.accept() => {
                let Some(stream) = stream else { break };
                if let Some(stream) = router.route(stream)
                    && streams.send(stream).await.is_err()
                {
                    break;
                }
            }
            extra = listener.accept() => {
                if extra.is_ok() {
                    tracing::warn!("refused a second connection: this plugin multiplexes everything over the host's first one");
                }
            }
            () = streams.closed() => break,
        }
    }
    tracing::debug!("multiplexed session with the host ended");
}
