//! Adapts the transport's listener to the stream of connections tonic serves, running
//! TLS handshakes when the plugin serves TLS.

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use rpcplugin_transport::rustls::ServerConfig;
use rpcplugin_transport::{
    DEFAULT_TLS_HANDSHAKE_TIMEOUT, Listener, Stream as TransportStream, TlsFailure,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::Stream;

/// Handshakes in progress at once. A client that connects and stays silent holds a
/// slot until the handshake timeout; past this many, accepting pauses (the kernel's
/// backlog holds new connections) instead of growing without bound.
const MAX_PENDING_HANDSHAKES: usize = 64;

type Handshake = Pin<Box<dyn Future<Output = io::Result<TransportStream>> + Send>>;

/// Accepted connections. Transient accept errors (out of file descriptors) are
/// logged and retried after a pause rather than ending the server or spinning.
/// With TLS, handshakes run concurrently, so one slow or hostile client never holds
/// up the host's connection.
pub(crate) struct Incoming {
    listener: Arc<Listener>,
    tls: Option<Arc<ServerConfig>>,
    handshakes: FuturesUnordered<Handshake>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Incoming {
    pub(crate) fn new(listener: Arc<Listener>, tls: Option<Arc<ServerConfig>>) -> Self {
        Self {
            listener,
            tls,
            handshakes: FuturesUnordered::new(),
            backoff: None,
        }
    }

    /// Accepts what the listener has ready (plaintext: returns it; TLS: starts its
    /// handshake). `Pending` once nothing more can be accepted now.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<TransportStream> {
        loop {
            if let Some(sleep) = self.backoff.as_mut() {
                std::task::ready!(sleep.as_mut().poll(cx));
                self.backoff = None;
            }
            if self.handshakes.len() >= MAX_PENDING_HANDSHAKES {
                return Poll::Pending;
            }
            match std::task::ready!(self.listener.poll_accept(cx)) {
                Ok(stream) => match &self.tls {
                    None => return Poll::Ready(stream),
                    Some(config) => {
                        let handshake =
                            stream.accept_tls(config.clone(), DEFAULT_TLS_HANDSHAKE_TIMEOUT);
                        self.handshakes.push(Box::pin(handshake));
                    }
                },
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a connection; retrying");
                    self.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                }
            }
        }
    }
}

impl Stream for Incoming {
    type Item = Result<Connection, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Poll::Ready(stream) = this.poll_accept(cx) {
            return Poll::Ready(Some(Ok(Connection(stream))));
        }
        while let Poll::Ready(Some(done)) = this.handshakes.poll_next_unpin(cx) {
            match done {
                Ok(stream) => return Poll::Ready(Some(Ok(Connection(stream)))),
                // A refused client is the point of mTLS, not a server failure: log it
                // (a security event worth seeing) and go on serving.
                Err(err) => log_refusal(&err),
            }
        }
        Poll::Pending
    }
}

pub(crate) fn log_refusal(err: &io::Error) {
    match TlsFailure::find(err) {
        Some(failure @ (TlsFailure::PeerCertificateRefused(_) | TlsFailure::NoPeerCertificate)) => {
            tracing::warn!(reason = %failure, "refused a TLS connection: the client is not the host this plugin trusts");
        }
        Some(TlsFailure::NotTls) => {
            tracing::warn!("refused a plaintext connection: this plugin serves mutual TLS only");
        }
        Some(failure) => tracing::debug!(reason = %failure, "a TLS handshake failed"),
        None => tracing::debug!(error = %err, "a TLS handshake failed"),
    }
}

/// One accepted connection, as tonic wants it.
pub(crate) struct Connection(TransportStream);

impl Connection {
    pub(crate) fn new(stream: TransportStream) -> Self {
        Self(stream)
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
