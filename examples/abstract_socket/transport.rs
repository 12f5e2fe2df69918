//! A transport that does not ship with rpcplugin: Linux abstract Unix sockets.
//!
//! An abstract socket has a name, not a path: nothing is created on disk, so
//! nothing is left behind when a plugin crashes, and the name is gone as soon as
//! the last descriptor closes. The price is that it has no file permissions:
//! any process in the same network namespace can connect to it (and can list the
//! names in `/proc/net/unix`). So both halves here check the peer's credentials
//! (`SO_PEERCRED`) and drop a connection from another user before a byte is read
//! or written; AutoMTLS (on by default) then authenticates the exact peer on top.
//!
//! Written only against rpcplugin's public API (`rpcplugin::transport`), std,
//! tokio and tower, as an application would. `examples/abstract_socket.rs` uses it
//! on both sides; `tests/custom_transport.rs` includes this same file as the host.

use std::future::Future;
use std::io::{self, Read as _};
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use rpcplugin::transport::{Accept, Listener, Transport};
use rpcplugin::{Code, Endpoint, Error, Network};

/// The network name the handshake line announces for these sockets.
pub(crate) fn network() -> Network {
    Network::custom("abstract").expect("a valid network name")
}

/// The plugin side (and a host's brokered servers): binds a fresh abstract
/// socket named `rpcplugin-<pid>-<random>` each time it is asked.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AbstractTransport;

impl Transport for AbstractTransport {
    fn network(&self) -> Network {
        network()
    }

    fn bind(&self) -> Pin<Box<dyn Future<Output = rpcplugin::Result<Listener>> + Send + '_>> {
        Box::pin(async move {
            // A random suffix, not a counter: the names are visible to every
            // process (in /proc/net/unix), and one another process could guess
            // and bind first would make the plugin fail to start.
            let name = format!("rpcplugin-{}-{:016x}", std::process::id(), random_u64()?);
            let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(bind_error)?;
            let std_listener =
                std::os::unix::net::UnixListener::bind_addr(&addr).map_err(bind_error)?;
            // tokio's from_std requires a non-blocking socket.
            std_listener.set_nonblocking(true).map_err(bind_error)?;
            let listener = tokio::net::UnixListener::from_std(std_listener).map_err(bind_error)?;
            let endpoint = Endpoint::custom(network(), name)
                .map_err(|e| Error::new(Code::TransportBadEndpoint, e.to_string()))?;
            // Nothing to clean up on drop: the name disappears with the socket.
            Ok(Listener::new(
                endpoint,
                SameUserAccept {
                    listener,
                    uid: current_uid(),
                },
            ))
        })
    }
}

/// Accepts connections from processes of this user only.
struct SameUserAccept {
    listener: tokio::net::UnixListener,
    uid: u32,
}

impl Accept for SameUserAccept {
    type Io = tokio::net::UnixStream;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        loop {
            let (stream, _) = std::task::ready!(self.listener.poll_accept(cx))?;
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == self.uid => return Poll::Ready(Ok(stream)),
                // Dropped at once: the socket is reachable from the whole network
                // namespace, the plugin is meant for this user only.
                Ok(cred) => tracing::warn!(
                    peer_uid = cred.uid(),
                    peer_pid = ?cred.pid(),
                    "abstract socket: dropped a connection from another user"
                ),
                Err(err) => tracing::warn!(
                    error = %err,
                    "abstract socket: dropped a connection whose credentials cannot be read"
                ),
            }
            // Loop: the next connection may be ready already; if not,
            // poll_accept registered the waker.
        }
    }
}

/// The host side (and a plugin's brokered dials): a tower `Service<Endpoint>`
/// that connects to an abstract name and checks that its owner is this user.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AbstractConnector;

impl tower::Service<Endpoint> for AbstractConnector {
    type Response = tokio::net::UnixStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, endpoint: Endpoint) -> Self::Future {
        Box::pin(async move {
            let name = endpoint.to_string();
            // std's connect blocks until the listener's backlog has room, which is
            // at once unless the plugin is overloaded: off the async workers.
            let stream = tokio::task::spawn_blocking(move || {
                let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
                let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
                stream.set_nonblocking(true)?;
                Ok::<_, io::Error>(stream)
            })
            .await
            .map_err(io::Error::other)??;
            let stream = tokio::net::UnixStream::from_std(stream)?;
            // Whoever holds the name is who we talk to: make sure it is us. (A
            // brokered name comes from the peer over the TLS-protected broker
            // stream; the check costs one syscall per connection.)
            let owner = stream.peer_cred()?.uid();
            if owner != current_uid() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("abstract socket {endpoint} belongs to uid {owner}, not to this user"),
                ));
            }
            Ok(stream)
        })
    }
}

fn bind_error(err: io::Error) -> Error {
    Error::new(Code::TransportBind, "cannot bind an abstract Unix socket")
        .with_source(err)
        .with_hint(
            "abstract sockets exist on Linux only; check that this process may create sockets",
        )
}

fn current_uid() -> u32 {
    nix::unistd::Uid::current().as_raw()
}

fn random_u64() -> rpcplugin::Result<u64> {
    let mut bytes = [0; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(bind_error)?;
    Ok(u64::from_ne_bytes(bytes))
}
