//! A bound listener that owns what binding created on disk.

use rpcplugin_core::Code;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use rpcplugin_core::{Endpoint, Error, Network, Result};
use tokio::net::{TcpListener, TcpStream, UnixListener};

use crate::socket_dir::SocketDir;
use crate::stream::{CustomStream, Stream};
use crate::unix::SocketFile;

/// A bound socket accepting [`Stream`]s, made by [`Transport::bind`](crate::Transport::bind).
///
/// A custom transport makes one with [`Listener::new`] from its endpoint and an
/// [`Accept`]; it owns whatever binding made, and cleans up in its `Drop`.
///
/// A Unix listener owns its socket file, and the private directory around it when
/// the transport made one; dropping the listener removes them (a failure is logged
/// with `tracing::warn`), [`close`](Self::close) does the same and reports errors.
#[derive(Debug)]
pub struct Listener {
    endpoint: Endpoint,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Unix {
        // Declared first so the fd closes before the file goes: a client then sees
        // "refused" or "gone", never a half-removed listener.
        listener: UnixListener,
        socket: SocketFile,
        // After `socket`: the directory goes last, once it is empty.
        dir: Option<SocketDir>,
    },
    Tcp(TcpListener),
    Custom(Box<dyn AcceptBoxed>),
}

/// Accepts the connections of a custom transport's listener (tonic's incoming
/// stream and hyper's `Accept`, as one poll method).
///
/// The IO type is the transport's own; [`Listener`] boxes it into a
/// [`Stream::Custom`]. TLS, when served, runs over it as over a Unix socket.
pub trait Accept: Send + Sync + 'static {
    /// A connection's byte stream.
    type Io: crate::Io;

    /// Polls for the next connection; errors are logged and accepting goes on
    /// (as for `accept(2)`'s transient failures).
    ///
    /// # Errors
    ///
    /// The io error of one failed accept.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>>;
}

/// [`Accept`] with its IO type boxed, so that [`Listener`] holds any.
trait AcceptBoxed: Send + Sync {
    fn poll_accept_boxed(&self, cx: &mut Context<'_>, network: Network)
    -> Poll<io::Result<Stream>>;
}

impl<A: Accept> AcceptBoxed for A {
    fn poll_accept_boxed(
        &self,
        cx: &mut Context<'_>,
        network: Network,
    ) -> Poll<io::Result<Stream>> {
        self.poll_accept(cx)
            .map_ok(|io| CustomStream::boxed(network, Box::new(io)))
    }
}

impl std::fmt::Debug for dyn AcceptBoxed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Accept")
    }
}

impl Listener {
    pub(crate) fn unix(listener: UnixListener, socket: SocketFile, dir: Option<SocketDir>) -> Self {
        Self {
            endpoint: Endpoint::Unix(socket.path().to_owned()),
            inner: Inner::Unix {
                listener,
                socket,
                dir,
            },
        }
    }

    pub(crate) fn tcp(listener: TcpListener, addr: SocketAddr) -> Self {
        Self {
            endpoint: Endpoint::Tcp(addr),
            inner: Inner::Tcp(listener),
        }
    }

    /// A custom transport's listener: bound at `endpoint` (announced in the
    /// handshake line as it displays), accepting with `accept`. Dropping the
    /// listener drops `accept`, which must release what binding took.
    pub fn new(endpoint: Endpoint, accept: impl Accept) -> Self {
        Self {
            endpoint,
            inner: Inner::Custom(Box::new(accept)),
        }
    }

    /// Where this listener is bound: the socket path, or the real TCP address
    /// (with the port the OS chose). This is what the handshake line announces.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Waits for the next connection.
    ///
    /// TCP streams come with `TCP_NODELAY` set: gRPC writes small frames and
    /// waits for replies, which Nagle's algorithm would delay by tens of
    /// milliseconds per call.
    ///
    /// # Errors
    ///
    /// The io error from `accept(2)`; most (such as running out of file
    /// descriptors) are transient, so a server should log and keep accepting.
    pub async fn accept(&self) -> io::Result<Stream> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection, for code that implements `Stream`-like
    /// incoming-connection types by hand (such as tonic's `serve_with_incoming`).
    /// Behaves as [`accept`](Self::accept).
    ///
    /// # Errors
    ///
    /// As for [`accept`](Self::accept).
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Stream>> {
        match &self.inner {
            Inner::Unix { listener, .. } => listener
                .poll_accept(cx)
                .map_ok(|(stream, _)| Stream::Unix(stream)),
            Inner::Tcp(listener) => listener
                .poll_accept(cx)
                .map_ok(|(stream, _)| Stream::Tcp(nodelay(stream))),
            Inner::Custom(accept) => accept.poll_accept_boxed(cx, self.endpoint.network()),
        }
    }

    /// Stops listening and removes the socket file and private directory now,
    /// reporting what could not be removed (where `Drop` can only log it).
    ///
    /// # Errors
    ///
    /// `transport.socket_remove` or `transport.socket_dir_remove`.
    pub fn close(self) -> Result<()> {
        match self.inner {
            Inner::Tcp(listener) => {
                drop(listener);
                Ok(())
            }
            Inner::Custom(accept) => {
                drop(accept);
                Ok(())
            }
            Inner::Unix {
                listener,
                mut socket,
                dir,
            } => {
                drop(listener);
                let removed = socket.remove();
                // A private directory takes the socket with it, whatever became of
                // the socket's own removal.
                if let Some(dir) = dir {
                    return dir.close();
                }
                removed.map_err(|e| {
                    Error::new(
                        Code::TransportSocketRemove,
                        format!("cannot remove socket {}", socket.path().display()),
                    )
                    .with_source(e)
                })
            }
        }
    }
}

fn nodelay(stream: TcpStream) -> TcpStream {
    if let Err(e) = stream.set_nodelay(true) {
        // Only fails on a connection that is already dead; the next read says so.
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on accepted stream");
    }
    stream
}
