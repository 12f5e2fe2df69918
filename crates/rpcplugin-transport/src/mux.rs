//! Many streams over one connection: a yamux session (hashicorp/yamux's protocol,
//! through the `yamux` crate), as go-plugin 1.6+ uses for its multiplexed broker.
//!
//! One task drives the session: it opens outbound streams on request and hands
//! inbound ones to [`MuxIncoming`]. Streams are [`Stream::Muxed`], so TLS and
//! everything above work on them as on sockets. The session lives while any
//! [`MuxSession`] clone does; dropping the last one closes the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rpcplugin_core::Network;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use crate::Stream;

/// Inbound streams waiting to be taken; past this, new ones are refused (closed).
const INBOUND_QUEUE: usize = 64;

/// Which end of the session this side is (yamux stream ids: clients odd, servers
/// even). go-plugin: the host is the client, the plugin the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxRole {
    /// The side that dialled the connection (the host).
    Client,
    /// The side that accepted it (the plugin).
    Server,
}

/// A handle on a yamux session; cheap to clone.
#[derive(Debug, Clone)]
pub struct MuxSession {
    inner: Arc<SessionInner>,
}

#[derive(Debug)]
struct SessionInner {
    open: mpsc::Sender<oneshot::Sender<io::Result<yamux::Stream>>>,
    network: Network,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The streams the other side opens.
#[derive(Debug)]
pub struct MuxIncoming {
    rx: mpsc::Receiver<Stream>,
}

impl MuxIncoming {
    /// The next stream the peer opened; `None` once the session is over.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

impl MuxSession {
    /// Starts a session over `stream` (plain: TLS runs inside each stream, as
    /// go-plugin does). Must be called inside a tokio runtime.
    pub fn new(stream: Stream, role: MuxRole) -> (Self, MuxIncoming) {
        let network = stream.network();
        let mode = match role {
            MuxRole::Client => yamux::Mode::Client,
            MuxRole::Server => yamux::Mode::Server,
        };
        let connection = yamux::Connection::new(stream.compat(), yamux::Config::default(), mode);
        let (open_tx, open_rx) = mpsc::channel(16);
        let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
        let task = tokio::spawn(drive(connection, open_rx, in_tx, network));
        (
            Self {
                inner: Arc::new(SessionInner {
                    open: open_tx,
                    network,
                    task,
                }),
            },
            MuxIncoming { rx: in_rx },
        )
    }

    /// Opens a new stream to the peer.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] once the session is over, or yamux's error.
    pub async fn open(&self) -> io::Result<Stream> {
        let (tx, rx) = oneshot::channel();
        let gone = || {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "the multiplexed session is closed",
            )
        };
        self.inner.open.send(tx).await.map_err(|_| gone())?;
        let stream = rx.await.map_err(|_| gone())??;
        Ok(muxed(stream, self.inner.network))
    }

    /// Whether the session still runs.
    pub fn is_open(&self) -> bool {
        !self.inner.task.is_finished()
    }
}

fn muxed(stream: yamux::Stream, network: Network) -> Stream {
    Stream::Muxed(Box::new(MuxedStream {
        inner: stream.compat(),
        network,
    }))
}

type Connection = yamux::Connection<Compat<Stream>>;

async fn drive(
    mut connection: Connection,
    mut open_rx: mpsc::Receiver<oneshot::Sender<io::Result<yamux::Stream>>>,
    in_tx: mpsc::Sender<Stream>,
    network: Network,
) {
    let mut waiting: Option<oneshot::Sender<io::Result<yamux::Stream>>> = None;
    let mut opening = true;
    std::future::poll_fn(|cx| {
        loop {
            if waiting.is_none() && opening {
                match open_rx.poll_recv(cx) {
                    Poll::Ready(Some(tx)) => waiting = Some(tx),
                    // No handle left to open streams: keep serving inbound ones.
                    Poll::Ready(None) => opening = false,
                    Poll::Pending => {}
                }
            }
            if waiting.is_some()
                && let Poll::Ready(result) = connection.poll_new_outbound(cx)
            {
                let reply = waiting.take().expect("checked above");
                let _ = reply.send(result.map_err(io::Error::other));
                continue;
            }
            match connection.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => match in_tx.try_send(muxed(stream, network)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            "refused a multiplexed stream: too many waiting to be taken"
                        );
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        tracing::debug!("refused a multiplexed stream: this side takes no more");
                    }
                },
                Poll::Ready(Some(Err(err))) => {
                    tracing::debug!(error = %err, "the multiplexed session failed");
                    return Poll::Ready(());
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    if let Some(reply) = waiting {
        let _ = reply.send(Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "the multiplexed session is closed",
        )));
    }
}

/// One stream of a [`MuxSession`].
#[derive(Debug)]
pub struct MuxedStream {
    inner: Compat<yamux::Stream>,
    network: Network,
}

impl MuxedStream {
    /// The network of the connection the session runs over.
    pub fn network(&self) -> Network {
        self.network
    }
}

impl AsyncRead for MuxedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MuxedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The accepting side of go-plugin's multiplexed broker: which streams the peer
/// opens belong to which brokered listener.
///
/// The dialling side sends a knock for an id over the broker stream, waits for the
/// acknowledgement, then opens a stream; so the next stream to arrive after a knock
/// was acknowledged belongs to that id (dials are serialised on the dialling side,
/// as go-plugin's are). Streams with no knock before them go to the default
/// listener (the plugin's main gRPC server), or are refused where there is none.
#[derive(Debug, Default)]
pub struct MuxRouter {
    session: std::sync::Mutex<Option<MuxSession>>,
    knocked: std::sync::Mutex<std::collections::VecDeque<u32>>,
    listeners: std::sync::Mutex<std::collections::HashMap<u32, mpsc::Sender<Stream>>>,
}

/// At most this many knocks wait for their stream; more is a peer misbehaving.
const MAX_KNOCKED: usize = 64;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MuxRouter {
    /// A router with no session yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session streams are opened on (set once the connection exists).
    pub fn set_session(&self, session: MuxSession) {
        *lock(&self.session) = Some(session);
    }

    /// The session, while there is one.
    pub fn session(&self) -> Option<MuxSession> {
        lock(&self.session).clone()
    }

    /// Registers a brokered listener for `id`: streams knocked for it arrive here.
    pub fn listen(&self, id: u32) -> mpsc::Receiver<Stream> {
        let (tx, rx) = mpsc::channel(8);
        lock(&self.listeners).insert(id, tx);
        rx
    }

    /// Removes the listener for `id`.
    pub fn unlisten(&self, id: u32) {
        lock(&self.listeners).remove(&id);
    }

    /// A knock for `id` arrived: the peer's next stream is for that listener.
    ///
    /// # Errors
    ///
    /// The text of the acknowledgement's error when nothing listens on `id` (or
    /// too many knocks wait), as go-plugin answers.
    pub fn knock(&self, id: u32) -> Result<(), String> {
        if !lock(&self.listeners).contains_key(&id) {
            return Err(format!("no listener for id {id}"));
        }
        let mut knocked = lock(&self.knocked);
        if knocked.len() >= MAX_KNOCKED {
            return Err(format!("too many knocks waiting; refused id {id}"));
        }
        knocked.push_back(id);
        Ok(())
    }

    /// Hands `stream` to the listener of the oldest knock; gives it back when no
    /// knock waits (a stream for the default listener).
    pub fn route(&self, stream: Stream) -> Option<Stream> {
        let Some(id) = lock(&self.knocked).pop_front() else {
            return Some(stream);
        };
        let listener = lock(&self.listeners).get(&id).cloned();
        match listener {
            Some(tx) => {
                if tx.try_send(stream).is_err() {
                    tracing::warn!(
                        id,
                        "refused a brokered stream: its listener is gone or full"
                    );
                }
            }
            None => tracing::debug!(id, "a knocked listener went away before its stream arrived"),
        }
        None
    }

    /// Ends the session and forgets every listener.
    pub fn close(&self) {
        lock(&self.session).take();
        lock(&self.listeners).clear();
        lock(&self.knocked).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Transport, UnixTransport, connect};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(flavor = "current_thread")]
    async fn streams_opened_by_either_side_carry_bytes_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixTransport::new().dir(dir.path()).bind().await.unwrap();
        let client_raw = connect(listener.endpoint()).await.unwrap();
        let server_raw = listener.accept().await.unwrap();
        let (client, mut client_in) = MuxSession::new(client_raw, MuxRole::Client);
        let (server, mut server_in) = MuxSession::new(server_raw, MuxRole::Server);

        for (opener, acceptor) in [(&client, &mut server_in), (&server, &mut client_in)] {
            let mut a = opener.open().await.unwrap();
            assert_eq!(a.network(), Network::Unix);
            // yamux announces a stream with its first frame.
            a.write_all(b"ping").await.unwrap();
            a.flush().await.unwrap();
            let mut b = acceptor.accept().await.unwrap();
            let mut buf = [0; 4];
            b.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            // More than yamux's 256 KiB initial window: flow control works.
            let big = vec![7u8; 600 * 1024];
            let expected = big.clone();
            let writer = tokio::spawn(async move {
                b.write_all(&big).await.unwrap();
                b.flush().await.unwrap();
                b
            });
            let mut got = vec![0; expected.len()];
            a.read_exact(&mut got).await.unwrap();
            assert!(got == expected);
            drop(writer.await.unwrap());
        }
        drop(client);
        assert!(
            server_in.accept().await.is_none(),
            "the session ends with the peer"
        );
        assert!(server.open().await.is_err());
    }
}
