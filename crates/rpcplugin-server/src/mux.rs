//! The plugin's side of a multiplexed connection (go-plugin 1.6+ when the host
//! sets `PLUGIN_MULTIPLEX_GRPC`): the first connection the host makes carries a
//! yamux session, and every gRPC connection, the main one and the brokered ones,
//! is a stream of it with its own TLS.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rpcplugin_transport::rustls::ServerConfig;
use rpcplugin_transport::{
    DEFAULT_TLS_HANDSHAKE_TIMEOUT, Listener, MuxRole, MuxRouter, MuxSession, Stream,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::incoming::Connection;

/// TLS handshakes in progress at once, as for sockets.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// Connections for the main gRPC server: streams of the session on the first
/// connection accepted, except those a knock claimed for a brokered listener.
/// Later connections to the socket are refused: the session is the connection.
pub(crate) fn main_incoming(
    listener: Arc<Listener>,
    tls: Option<Arc<ServerConfig>>,
    router: Arc<MuxRouter>,
) -> ReceiverStream<io::Result<Connection>> {
    let (tx, rx) = mpsc::channel(8);
    let (streams_tx, streams_rx) = mpsc::channel(8);
    tokio::spawn(with_tls(streams_rx, tls, tx.clone()));
    tokio::spawn(async move {
        let raw = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(raw) => break raw,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot accept the host's connection; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = tx.closed() => return,
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
                        && streams_tx.send(stream).await.is_err()
                    {
                        break;
                    }
                }
                extra = listener.accept() => {
                    if extra.is_ok() {
                        tracing::warn!("refused a second connection: this plugin multiplexes everything over the host's first one");
                    }
                }
                () = tx.closed() => break,
            }
        }
        tracing::debug!("multiplexed session with the host ended");
    });
    ReceiverStream::new(rx)
}

/// Connections for a brokered server: the streams its knocks claimed.
pub(crate) fn brokered_incoming(
    streams: mpsc::Receiver<Stream>,
    tls: Option<Arc<ServerConfig>>,
) -> ReceiverStream<io::Result<Connection>> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(with_tls(streams, tls, tx));
    ReceiverStream::new(rx)
}

/// Runs the server side of TLS on each stream (concurrently, bounded) and passes
/// the connections on.
async fn with_tls(
    mut streams: mpsc::Receiver<Stream>,
    tls: Option<Arc<ServerConfig>>,
    tx: mpsc::Sender<io::Result<Connection>>,
) {
    let permits = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    while let Some(stream) = tokio::select! {
        stream = streams.recv() => stream,
        () = tx.closed() => None,
    } {
        let Some(config) = tls.clone() else {
            if tx.send(Ok(Connection::new(stream))).await.is_err() {
                break;
            }
            continue;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            match stream
                .accept_tls(config, DEFAULT_TLS_HANDSHAKE_TIMEOUT)
                .await
            {
                Ok(stream) => {
                    let _ = tx.send(Ok(Connection::new(stream))).await;
                }
                Err(err) => crate::incoming::log_refusal(&err),
            }
            drop(permit);
        });
    }
}
