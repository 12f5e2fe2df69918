//! The TCP transport: loopback by default, optionally within a port range.

use rpcplugin_core::Code;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;

use rpcplugin_core::{Error, Network, Result};
use tokio::net::TcpListener;

use crate::Transport;
use crate::listener::Listener;

/// Binds TCP listeners.
///
/// By default on `127.0.0.1` with a port the OS chooses: a plugin should never be
/// reachable from another machine. With [`port_range`](Self::port_range) (go-plugin
/// hosts send `PLUGIN_MIN_PORT=10000`, `PLUGIN_MAX_PORT=25000`) ports are tried in
/// order from `min` to `max`, skipping those in use.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    host: IpAddr,
    range: Option<(u16, u16)>,
}

impl Default for TcpTransport {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            range: None,
        }
    }
}

impl TcpTransport {
    /// A transport binding `127.0.0.1` on an OS-chosen port.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds on `ip` instead of `127.0.0.1`. Anything but loopback exposes the
    /// plugin to the network; use it only with mTLS.
    #[must_use]
    pub fn host(mut self, ip: IpAddr) -> Self {
        self.host = ip;
        self
    }

    /// Tries ports `min..=max` in order (`PLUGIN_MIN_PORT`, `PLUGIN_MAX_PORT`).
    ///
    /// The range is checked when binding: `min > max` is a configuration error.
    /// Port 0 inside a range is skipped (it would mean "any port", escaping the
    /// range), except for the range `0..=0`, which means exactly that.
    #[must_use]
    pub fn port_range(mut self, min: u16, max: u16) -> Self {
        self.range = Some((min, max));
        self
    }

    async fn bind_tcp(&self) -> Result<Listener> {
        let (min, max) = match self.range {
            None | Some((0, 0)) => {
                return self.bind_port(0).await.map_err(|e| self.bind_error(0, e));
            }
            Some((min, max)) if min > max => {
                return Err(Error::new(
                    Code::TransportPortRange,
                    format!("PLUGIN_MIN_PORT ({min}) is above PLUGIN_MAX_PORT ({max})"),
                )
                .with_hint("set PLUGIN_MIN_PORT to at most PLUGIN_MAX_PORT"));
            }
            Some(range) => range,
        };
        let mut last_err = None;
        // Bounded by the range itself: at most 65535 cheap, failing bind calls.
        for port in min.max(1)..=max {
            match self.bind_port(port).await {
                Ok(listener) => return Ok(listener),
                // Taken, or privileged: go-plugin moves on to the next port too.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    last_err = Some(e);
                }
                Err(e) => return Err(self.bind_error(port, e)),
            }
        }
        let err = Error::new(
            Code::TransportNoFreePort,
            format!("no free tcp port on {} in {min}..={max}", self.host),
        )
        .with_hint(
            "every port in the range is in use: widen PLUGIN_MIN_PORT/PLUGIN_MAX_PORT \
             or stop what holds them",
        );
        Err(match last_err {
            Some(e) => err.with_source(e),
            None => err,
        })
    }

    async fn bind_port(&self, port: u16) -> io::Result<Listener> {
        let listener = TcpListener::bind(SocketAddr::new(self.host, port)).await?;
        // The real address: with port 0 only the OS knows which port it chose.
        let addr = listener.local_addr()?;
        Ok(Listener::tcp(listener, addr))
    }

    fn bind_error(&self, port: u16, e: io::Error) -> Error {
        let err = Error::new(
            Code::TransportBind,
            format!("cannot bind tcp {}", SocketAddr::new(self.host, port)),
        );
        let err = if e.kind() == io::ErrorKind::AddrNotAvailable {
            err.with_hint(format!(
                "{} is not an address of this machine: bind 127.0.0.1",
                self.host
            ))
        } else {
            err
        };
        err.with_source(e)
    }
}

impl Transport for TcpTransport {
    fn network(&self) -> Network {
        Network::Tcp
    }

    fn bind(&self) -> Pin<Box<dyn Future<Output = Result<Listener>> + Send + '_>> {
        Box::pin(self.bind_tcp())
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener as StdTcpListener;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{Endpoint, Stream, connect};

    fn port_of(listener: &Listener) -> u16 {
        match listener.endpoint() {
            Endpoint::Tcp(addr) => addr.port(),
            other => panic!("expected a tcp endpoint, got {other}"),
        }
    }

    /// A held port `p` with `p + 1` free (as far as a probe can tell).
    fn held_port_with_free_successor() -> (StdTcpListener, u16) {
        for _ in 0..50 {
            let held = StdTcpListener::bind("127.0.0.1:0").unwrap();
            let p = held.local_addr().unwrap().port();
            if p < u16::MAX && StdTcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                return (held, p);
            }
        }
        panic!("no two adjacent free loopback ports in 50 tries");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tcp_bind_defaults_to_loopback_and_echoes_with_nodelay() {
        let listener = TcpTransport::new().bind().await.unwrap();
        let Endpoint::Tcp(addr) = listener.endpoint().clone() else {
            panic!("not tcp");
        };
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(addr.port(), 0, "the endpoint must carry the real port");

        let endpoint = listener.endpoint().clone();
        let server = async {
            let mut s = listener.accept().await.unwrap();
            let Stream::Tcp(tcp) = &s else {
                panic!("not tcp")
            };
            assert!(tcp.nodelay().unwrap());
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        };
        let client = async {
            let mut c = connect(&endpoint).await.unwrap();
            let Stream::Tcp(tcp) = &c else {
                panic!("not tcp")
            };
            assert!(tcp.nodelay().unwrap());
            c.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        };
        tokio::join!(server, client);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tcp_port_range_skips_a_port_in_use() {
        let (_held, p) = held_port_with_free_successor();
        let listener = TcpTransport::new()
            .port_range(p, p + 1)
            .bind()
            .await
            .unwrap();
        assert_eq!(port_of(&listener), p + 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tcp_port_range_exhausted_names_the_variables() {
        let held = StdTcpListener::bind("127.0.0.1:0").unwrap();
        let p = held.local_addr().unwrap().port();
        let err = TcpTransport::new()
            .port_range(p, p)
            .bind()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Transport);
        assert_eq!(err.code(), Code::TransportNoFreePort);
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("PLUGIN_MIN_PORT") && hint.contains("PLUGIN_MAX_PORT"),
            "{hint}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tcp_port_range_min_above_max_is_config_error() {
        let err = TcpTransport::new()
            .port_range(20000, 10000)
            .bind()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Config);
        assert_eq!(err.code(), Code::TransportPortRange);
        let msg = err.to_string();
        assert!(
            msg.contains("PLUGIN_MIN_PORT") && msg.contains("PLUGIN_MAX_PORT"),
            "{msg}"
        );
        assert!(err.hint().is_some());
    }
}
