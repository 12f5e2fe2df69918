//! Accepted connections as tonic serves them, TLS handshakes done: from a
//! listener (a socket of its own) or from the streams a multiplexed session hands
//! over. Brokered servers of both roles use it, and so does the plugin's main
//! server, so that the per-socket and the multiplexed paths share one accept and
//! one TLS step.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use rpcplugin_transport::rustls::ServerConfig;
use rpcplugin_transport::{DEFAULT_TLS_HANDSHAKE_TIMEOUT, Listener, Stream, TlsFailure};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::Role;

/// Handshakes in progress at once. A client that connects and stays silent holds a
/// slot until the handshake timeout; past this many, accepting pauses (the kernel's
/// backlog, or the session's stream queue, holds new connections) instead of
/// growing without bound.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// How long accepting pauses after an error (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Handshake = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

enum Source {
    Listener(Arc<Listener>),
    /// Ends when its sender does (the session or the brokered listener is gone).
    Streams(mpsc::Receiver<Stream>),
}

/// Accepted connections, a `Stream` of [`Connection`]s to give tonic's
/// `serve_with_incoming`. With TLS, handshakes run concurrently (at most 64, each
/// bounded in time), so one slow or hostile client never holds up the others;
/// refused ones are logged, not returned. Transient accept errors are logged and
/// retried after a pause rather than ending the server or spinning.
pub struct Incoming {
    source: Source,
    tls: Option<Arc<ServerConfig>>,
    role: Role,
    handshakes: FuturesUnordered<Handshake>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("role", &self.role)
            .field("tls", &self.tls.is_some())
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// Connections accepted on `listener`, served with `tls` when given, by the
    /// side `role` (which its refusal logs name).
    pub fn new(listener: Arc<Listener>, tls: Option<Arc<ServerConfig>>, role: Role) -> Self {
        Self::with_source(Source::Listener(listener), tls, role)
    }

    /// Connections that arrive as streams of a multiplexed session on `streams`;
    /// ends once `streams` is closed and the last handshake is done.
    pub fn from_streams(
        streams: mpsc::Receiver<Stream>,
        tls: Option<Arc<ServerConfig>>,
        role: Role,
    ) -> Self {
        Self::with_source(Source::Streams(streams), tls, role)
    }

    fn with_source(source: Source, tls: Option<Arc<ServerConfig>>, role: Role) -> Self {
        Self {
            source,
            tls,
            role,
            handshakes: FuturesUnordered::new(),
            backoff: None,
        }
    }

    /// Accepts what the source has ready (plaintext: returns it; TLS: starts its
    /// handshake). `Pending` once nothing more can be accepted now, `None` once
    /// the source has ended.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<Stream>> {
        loop {
            if let Some(sleep) = self.backoff.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.backoff = None;
            }
            if self.handshakes.len() >= MAX_PENDING_HANDSHAKES {
                return Poll::Pending;
            }
            let accepted = match &mut self.source {
                Source::Listener(listener) => ready!(listener.poll_accept(cx)),
                Source::Streams(streams) => match ready!(streams.poll_recv(cx)) {
                    Some(stream) => Ok(stream),
                    None => return Poll::Ready(None),
                },
            };
            match accepted {
                Ok(stream) => match &self.tls {
                    None => return Poll::Ready(Some(stream)),
                    Some(config) => {
                        let handshake =
                            stream.accept_tls(config.clone(), DEFAULT_TLS_HANDSHAKE_TIMEOUT);
                        self.handshakes.push(Box::pin(handshake));
                    }
                },
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a connection; retrying");
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
            }
        }
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let source_ended = match this.poll_accept(cx) {
            Poll::Ready(Some(stream)) => return Poll::Ready(Some(Ok(Connection(stream)))),
            Poll::Ready(None) => true,
            Poll::Pending => false,
        };
        while let Poll::Ready(Some(done)) = this.handshakes.poll_next_unpin(cx) {
            match done {
                Ok(stream) => return Poll::Ready(Some(Ok(Connection(stream)))),
                // A refused client is the point of mTLS, not a server failure: log it
                // (a security event worth seeing) and go on serving.
                Err(err) => log_refusal(this.role, &err),
            }
        }
        if source_ended && this.handshakes.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// Says why a TLS handshake with a connecting peer failed, in the words of the
/// side that accepted it.
fn log_refusal(role: Role, err: &io::Error) {
    let failure = TlsFailure::find(err);
    match (role, failure) {
        (
            Role::Plugin,
            Some(failure @ (TlsFailure::PeerCertificateRefused(_) | TlsFailure::NoPeerCertificate)),
        ) => {
            tracing::warn!(reason = %failure, "refused a TLS connection: the client is not the host this plugin trusts");
        }
        (Role::Plugin, Some(TlsFailure::NotTls)) => {
            tracing::warn!("refused a plaintext connection: this plugin serves mutual TLS only");
        }
        (Role::Plugin, Some(failure)) => {
            tracing::debug!(reason = %failure, "a TLS handshake failed")
        }
        (Role::Plugin, None) => tracing::debug!(error = %err, "a TLS handshake failed"),
        (Role::Host, Some(failure @ TlsFailure::RefusedByPeer(_))) => tracing::warn!(
            reason = %failure,
            "a brokered connection from the plugin failed: it refused this host's certificate; \
             go-plugin plugins before 1.4.4 cannot dial back to their host under AutoMTLS \
             (go-plugin#109)"
        ),
        (Role::Host, Some(failure)) => tracing::warn!(
            reason = %failure,
            "refused a brokered connection: TLS failed (the plugin must present its own certificate)"
        ),
        (Role::Host, None) => {
            tracing::debug!(error = %err, "a brokered connection failed during TLS");
        }
    }
}

/// One accepted connection, as tonic wants it: the transport's stream, TLS done.
pub struct Connection(Stream);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("network", &self.0.network())
            .field("tls", &self.0.is_tls())
            .finish()
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpcplugin_transport::{Transport as _, UnixTransport};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test(flavor = "current_thread")]
    async fn plaintext_connections_come_out_as_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let listener = Arc::new(UnixTransport::new().dir(dir.path()).bind().await.unwrap());
        let mut incoming = Incoming::new(listener.clone(), None, Role::Plugin);
        let mut client = rpcplugin_transport::connect(listener.endpoint())
            .await
            .unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut conn = tokio::time::timeout(Duration::from_secs(5), incoming.next())
            .await
            .expect("accepted in time")
            .unwrap()
            .unwrap();
        let mut buf = [0; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn streams_end_when_their_sender_does() {
        let (tx, rx) = mpsc::channel(1);
        let mut incoming = Incoming::from_streams(rx, None, Role::Host);
        drop(tx);
        let next = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await;
        assert!(next.expect("ends at once").is_none());
    }
}
