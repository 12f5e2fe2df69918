//! Adapts the transport's listener to the stream of connections tonic serves.

use rpcplugin_transport::{Listener, Stream as TransportStream};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::Stream;

/// Accepted connections. Transient accept errors (out of file descriptors) are
/// logged and retried after a pause rather than ending the server or spinning.
pub(crate) struct Incoming {
    listener: Arc<Listener>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Incoming {
    pub(crate) fn new(listener: Arc<Listener>) -> Self {
        Self {
            listener,
            backoff: None,
        }
    }
}

impl Stream for Incoming {
    type Item = Result<Connection, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(sleep) = self.backoff.as_mut() {
                std::task::ready!(sleep.as_mut().poll(cx));
                self.backoff = None;
            }
            match std::task::ready!(self.listener.poll_accept(cx)) {
                Ok(stream) => return Poll::Ready(Some(Ok(Connection(stream)))),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a connection; retrying");
                    self.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                }
            }
        }
    }
}

/// One accepted connection, as tonic wants it.
pub(crate) struct Connection(TransportStream);

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
