//! Connected byte streams, and connecting to an endpoint.

use rpcplugin_core::Code;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use rpcplugin_core::{Endpoint, Error, Network, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::unix::check_path_len;

/// A connected stream over either network, readable and writable like its inner
/// tokio stream (an enum rather than a boxed trait object, so it stays `Unpin`
/// and the inner stream is reachable, e.g. for peer credentials).
///
/// Non-exhaustive: a new network or a new layer over one (as TLS and multiplexing
/// were added) is a new variant, so a `match` outside this crate needs a `_` arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// A Unix domain socket connection.
    Unix(UnixStream),
    /// A TCP connection, with `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// TLS over one of the others (see [`Stream::accept_tls`] and
    /// [`Stream::connect_tls`]). Boxed: the TLS state is large.
    Tls(Box<crate::TlsStream>),
    /// One stream of a multiplexed connection ([`MuxSession`](crate::MuxSession)).
    Muxed(Box<crate::MuxedStream>),
    /// A connection over a custom network: whatever IO type its
    /// [`Accept`](crate::Accept) or connector yields. Boxed twice (here and the
    /// IO inside) so that the built-in variants' stream stays as small as before.
    Custom(Box<CustomStream>),
}

/// The IO type of a custom transport: bytes both ways, movable between tasks.
///
/// Implemented for every type that qualifies (tokio's streams, `DuplexStream`,
/// a TLS stream over one of them, ...).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A connection over a custom network, as a [`Stream`] carries it.
pub struct CustomStream {
    network: Network,
    io: Box<dyn Io>,
}

impl CustomStream {
    /// `io`, a connection over `network`.
    pub fn new(network: Network, io: impl Io) -> Self {
        Self {
            network,
            io: Box::new(io),
        }
    }

    pub(crate) fn boxed(network: Network, io: Box<dyn Io>) -> Stream {
        Stream::Custom(Box::new(Self { network, io }))
    }
}

impl std::fmt::Debug for CustomStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomStream")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// The network this stream runs over.
    pub fn network(&self) -> Network {
        match self {
            Self::Unix(_) => Network::Unix,
            Self::Tcp(_) => Network::Tcp,
            Self::Tls(s) => s.get_ref().0.network(),
            Self::Muxed(s) => s.network(),
            Self::Custom(s) => s.network,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Self::Muxed(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Self::Custom(s) => Pin::new(&mut *s.io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Self::Muxed(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Self::Custom(s) => Pin::new(&mut *s.io).poll_write(cx, buf),
        }
    }

    // Delegated so HTTP/2 can hand frames to `writev` in one call instead of
    // falling back to one write per buffer.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Self::Muxed(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Self::Custom(s) => Pin::new(&mut *s.io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Unix(s) => s.is_write_vectored(),
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
            Self::Muxed(_) => false,
            Self::Custom(s) => s.io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            Self::Muxed(s) => Pin::new(&mut **s).poll_flush(cx),
            Self::Custom(s) => Pin::new(&mut *s.io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Self::Muxed(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Self::Custom(s) => Pin::new(&mut *s.io).poll_shutdown(cx),
        }
    }
}

/// Connects to `endpoint`.
///
/// TCP streams get `TCP_NODELAY`: without it every gRPC call stalls 40-88 ms on
/// Nagle's algorithm and delayed ACKs.
///
/// # Errors
///
/// `transport.connect` (Transport) naming the endpoint, with the io error as
/// source and a hint when the cause is recognisable (socket gone, connection
/// refused, permission denied); `transport.socket_path_too_long` for a socket path
/// the platform cannot address.
pub async fn connect(endpoint: &Endpoint) -> Result<Stream> {
    match endpoint {
        Endpoint::Unix(path) => {
            check_path_len(path)?;
            UnixStream::connect(path)
                .await
                .map(Stream::Unix)
                .map_err(|e| connect_error(endpoint, e))
        }
        Endpoint::Tcp(addr) => {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| connect_error(endpoint, e))?;
            stream
                .set_nodelay(true)
                .map_err(|e| connect_error(endpoint, e))?;
            Ok(Stream::Tcp(stream))
        }
        other => Err(crate::connector::no_connector(other)),
    }
}

fn connect_error(endpoint: &Endpoint, e: io::Error) -> Error {
    let message = match endpoint {
        Endpoint::Unix(path) => format!("cannot connect to unix socket {}", path.display()),
        Endpoint::Tcp(addr) => format!("cannot connect to tcp {addr}"),
        other => format!("cannot connect to {} {other}", other.network()),
    };
    let hint = match (endpoint, e.kind()) {
        (Endpoint::Unix(_), io::ErrorKind::NotFound) => {
            Some("the socket is gone: the plugin probably exited".to_owned())
        }
        (Endpoint::Unix(_), io::ErrorKind::ConnectionRefused) => Some(
            "nothing is listening on the socket: the plugin probably exited without removing it"
                .to_owned(),
        ),
        (Endpoint::Tcp(addr), io::ErrorKind::ConnectionRefused) => Some(format!(
            "nothing is listening on {addr}: the plugin probably exited"
        )),
        (Endpoint::Unix(_), io::ErrorKind::PermissionDenied) => Some(
            "the socket's permissions shut this user out: run host and plugin as the same user, \
             or set PLUGIN_UNIX_SOCKET_GROUP to a group both belong to"
                .to_owned(),
        ),
        _ => None,
    };
    let err = Error::new(Code::TransportConnect, message).with_source(e);
    match hint {
        Some(hint) => err.with_hint(hint),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener as StdTcpListener;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn connect_to_missing_socket_says_the_plugin_exited() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plugin.sock");
        let err = connect(&Endpoint::Unix(path.clone())).await.unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Transport);
        assert_eq!(err.code(), Code::TransportConnect);
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(
            err.hint(),
            Some("the socket is gone: the plugin probably exited")
        );
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(
            source.downcast_ref::<io::Error>().unwrap().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connect_to_dead_unix_socket_is_refused_with_hint() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plugin.sock");
        // std leaves the file behind on drop: a socket nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = connect(&Endpoint::Unix(path)).await.unwrap_err();
        assert!(err.hint().unwrap().contains("nothing is listening"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connect_to_closed_tcp_port_is_refused_with_hint() {
        let addr = {
            let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = connect(&Endpoint::Tcp(addr)).await.unwrap_err();
        assert_eq!(err.code(), Code::TransportConnect);
        assert!(err.to_string().contains(&addr.to_string()));
        assert!(err.hint().unwrap().contains(&addr.to_string()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connect_to_overlong_socket_path_explains() {
        let path = std::path::PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
        let err = connect(&Endpoint::Unix(path)).await.unwrap_err();
        assert_eq!(err.code(), Code::TransportSocketPathTooLong);
    }
}
