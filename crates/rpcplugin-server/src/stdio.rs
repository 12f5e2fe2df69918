//! `plugin.GRPCStdio`: what the plugin's code writes on stdout (and, when asked, on
//! stderr) after the handshake, streamed to the host.
//!
//! [`Capture`] points file descriptor 1 (and 2) at pipes once the handshake line is
//! out, so every writer is caught: `println!`, C libraries, child processes that
//! inherit the descriptors. One reader thread per pipe hands the bytes to the
//! [`Hub`], a byte-bounded buffer that every `StreamStdio` call reads from. Threads,
//! not tasks: a handler that prints while it holds the runtime's only worker must
//! still find its writes drained, or a full pipe would block it for good.
//!
//! The hub never blocks a writer. It keeps the last [`BACKLOG_BYTES`] of output:
//! output no host has read yet goes to the next subscriber, and a subscriber that
//! falls further behind than that loses the oldest chunks (a warning says how many).

use rpcplugin_proto::plugin::StdioData;
use rpcplugin_proto::plugin::grpc_stdio_server::GrpcStdio;
use rpcplugin_proto::plugin::stdio_data::Channel;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tonic::{Request, Response, Status};

/// How much output the hub keeps for subscribers that have not read it yet.
pub(crate) const BACKLOG_BYTES: usize = 64 * 1024;

/// The most one read takes from a pipe: the largest `StdioData` sent.
const CHUNK_BYTES: usize = 16 * 1024;

/// How long a stop waits for the pipes to drain after the descriptors are restored.
/// Normally they end at once; a child process still holding one must not hold up
/// the stop.
const DRAIN_WAIT: Duration = Duration::from_millis(250);

/// The original stderr while fd 2 is captured: where the plugin's own logs keep
/// going (`logging::LogStderr`), since hosts parse the stderr pipe as hclog.
pub(crate) static LOG_STDERR: Mutex<Option<File>> = Mutex::new(None);

pub(crate) fn log_stderr() -> MutexGuard<'static, Option<File>> {
    LOG_STDERR.lock().unwrap_or_else(|e| e.into_inner())
}

/// One read from a pipe.
#[derive(Debug, Clone)]
struct Chunk {
    channel: Channel,
    data: Vec<u8>,
}

/// The output buffer between the reader threads and the `StreamStdio` calls.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    state: Mutex<State>,
    /// Woken on every publish and on close.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The kept chunks; `chunks[0]` has sequence number `first`.
    chunks: VecDeque<Chunk>,
    first: u64,
    bytes: usize,
    /// One past the newest chunk handed to any subscriber: a new subscriber starts
    /// here, so output is delivered once, not to every later connection again.
    delivered: u64,
    closed: bool,
}

impl State {
    fn end(&self) -> u64 {
        self.first + self.chunks.len() as u64
    }
}

/// What a subscriber finds when it looks for its next chunk.
#[derive(Debug)]
enum Take {
    /// The next chunk, and how many were dropped before it because the
    /// subscriber fell behind.
    Chunk(Chunk, u64),
    Empty,
    Closed,
}

impl Hub {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Keeps a chunk, dropping the oldest ones beyond [`BACKLOG_BYTES`]. Never
    /// blocks on subscribers; after [`Hub::close`] output is discarded.
    fn publish(&self, channel: Channel, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.bytes += data.len();
            state.chunks.push_back(Chunk {
                channel,
                data: data.to_vec(),
            });
            while state.bytes > BACKLOG_BYTES && state.chunks.len() > 1 {
                let dropped = state.chunks.pop_front().expect("more than one chunk");
                state.bytes -= dropped.data.len();
                state.first += 1;
            }
        }
        self.changed.notify_waiters();
    }

    /// Ends every subscription once it has read what is kept.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    fn subscribe(self: &Arc<Self>) -> Subscriber {
        let state = self.lock();
        Subscriber {
            hub: self.clone(),
            cursor: state.delivered.max(state.first),
        }
    }

    fn take(&self, cursor: &mut u64) -> Take {
        let mut state = self.lock();
        let lost = state.first.saturating_sub(*cursor);
        *cursor = (*cursor).max(state.first);
        if *cursor < state.end() {
            let index = usize::try_from(*cursor - state.first).expect("index within the deque");
            let chunk = state.chunks[index].clone();
            *cursor += 1;
            state.delivered = state.delivered.max(*cursor);
            Take::Chunk(chunk, lost)
        } else if state.closed {
            Take::Closed
        } else {
            Take::Empty
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One `StreamStdio` call's position in the hub.
#[derive(Debug)]
struct Subscriber {
    hub: Arc<Hub>,
    cursor: u64,
}

impl Subscriber {
    /// The next chunk as a message; `None` once the hub is closed and read.
    async fn next(&mut self) -> Option<StdioData> {
        loop {
            // Registered before looking, so a publish in between is not missed.
            let changed = self.hub.changed.notified();
            match self.hub.take(&mut self.cursor) {
                Take::Chunk(chunk, lost) => {
                    if lost > 0 {
                        tracing::warn!(
                            chunks = lost,
                            "the host reads GRPCStdio more slowly than the plugin writes; older output was dropped"
                        );
                    }
                    return Some(StdioData {
                        channel: chunk.channel as i32,
                        data: chunk.data,
                    });
                }
                Take::Closed => return None,
                Take::Empty => changed.await,
            }
        }
    }
}

/// `plugin.GRPCStdio`: each call streams the output from where the previous
/// subscriber stopped, and ends when the plugin stops.
#[derive(Debug, Clone)]
pub(crate) struct StdioService {
    pub(crate) hub: Arc<Hub>,
}

type StdioStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<StdioData, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcStdio for StdioService {
    type StreamStdioStream = StdioStream;

    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        let subscriber = self.hub.subscribe();
        let stream = futures_util::stream::unfold(subscriber, |mut subscriber| async move {
            let message = subscriber.next().await?;
            Some((Ok(message), subscriber))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Which descriptor a redirect replaced.
#[derive(Debug, Clone, Copy)]
enum Target {
    Stdout,
    Stderr,
}

impl Target {
    fn channel(self) -> Channel {
        match self {
            Target::Stdout => Channel::Stdout,
            Target::Stderr => Channel::Stderr,
        }
    }
}

/// One replaced descriptor and what it pointed at before.
#[derive(Debug)]
struct Redirect {
    target: Target,
    original: OwnedFd,
}

/// The plugin's stdout (and stderr) pointed into the hub, until [`Capture::stop`]
/// or drop puts the original descriptors back.
#[derive(Debug)]
pub(crate) struct Capture {
    hub: Arc<Hub>,
    redirects: Vec<Redirect>,
    /// Each resolves (with an error) when its reader thread has seen the end.
    drained: Vec<oneshot::Receiver<()>>,
}

impl Capture {
    /// Captures stdout, and stderr when asked. Call after the handshake line is
    /// flushed. A descriptor that cannot be captured is left as it is, with a warning.
    pub(crate) fn start(hub: Arc<Hub>, stderr: bool) -> Capture {
        let mut capture = Capture {
            hub,
            redirects: Vec::new(),
            drained: Vec::new(),
        };
        let targets: &[Target] = if stderr {
            &[Target::Stdout, Target::Stderr]
        } else {
            &[Target::Stdout]
        };
        for &target in targets {
            if let Err(err) = capture.redirect(target) {
                tracing::warn!(
                    error = %err,
                    ?target,
                    "cannot capture the plugin's output for GRPCStdio; it goes where it went before"
                );
            }
        }
        capture
    }

    fn redirect(&mut self, target: Target) -> io::Result<()> {
        let (reader, writer) = io::pipe()?;
        let original = match target {
            Target::Stdout => io::stdout().as_fd().try_clone_to_owned()?,
            Target::Stderr => io::stderr().as_fd().try_clone_to_owned()?,
        };
        let (drained_tx, drained_rx) = oneshot::channel();
        let hub = self.hub.clone();
        std::thread::Builder::new()
            .name("rpcplugin-stdio".into())
            .spawn(move || {
                read_pipe(reader, target.channel(), &hub);
                drop(drained_tx);
            })?;
        match target {
            Target::Stdout => {
                // Locked so no println! is split between the two destinations;
                // flushed so what was printed before goes where it was meant to.
                let mut stdout = io::stdout().lock();
                stdout.flush()?;
                nix::unistd::dup2_stdout(&writer)?;
            }
            Target::Stderr => {
                // The plugin's logs keep going to the original stderr. Set before
                // stderr is locked: the log writer takes the two locks in the
                // other order.
                *log_stderr() = Some(File::from(original.try_clone()?));
                let _stderr = io::stderr().lock();
                if let Err(err) = nix::unistd::dup2_stderr(&writer) {
                    drop(_stderr);
                    *log_stderr() = None;
                    return Err(err.into());
                }
            }
        }
        // fd 1 (or 2) is now the only writer: when it is restored, the reader ends.
        drop(writer);
        self.redirects.push(Redirect { target, original });
        self.drained.push(drained_rx);
        Ok(())
    }

    /// Puts the original descriptors back, lets the readers forward what is still
    /// in the pipes (bounded in time), and ends every `StreamStdio` call once it
    /// has sent the rest, so that the server's graceful stop is not held up.
    pub(crate) async fn stop(mut self) {
        self.restore();
        let drained = std::mem::take(&mut self.drained);
        let _ = tokio::time::timeout(DRAIN_WAIT, async {
            for reader in drained {
                let _ = reader.await;
            }
        })
        .await;
        // Drop closes the hub.
    }

    fn restore(&mut self) {
        for Redirect { target, original } in self.redirects.drain(..) {
            let restored = match target {
                Target::Stdout => {
                    let mut stdout = io::stdout().lock();
                    let _ = stdout.flush();
                    nix::unistd::dup2_stdout(&original)
                }
                Target::Stderr => {
                    let stderr = io::stderr().lock();
                    let restored = nix::unistd::dup2_stderr(&original);
                    drop(stderr);
                    *log_stderr() = None;
                    restored
                }
            };
            if let Err(err) = restored {
                tracing::warn!(error = %err, ?target, "cannot restore the plugin's output descriptor");
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.restore();
        self.hub.close();
    }
}

/// Reads one pipe until every writer is gone, into the hub.
fn read_pipe(mut reader: io::PipeReader, channel: Channel, hub: &Hub) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => hub.publish(channel, &buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Logging here could write into the very pipe being read.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn text(message: &StdioData) -> &str {
        std::str::from_utf8(&message.data).unwrap()
    }

    async fn next_now(subscriber: &mut Subscriber) -> Option<StdioData> {
        tokio::time::timeout(Duration::from_secs(5), subscriber.next())
            .await
            .expect("a chunk or the end arrives")
    }

    #[tokio::test]
    async fn output_written_before_anyone_listens_goes_to_the_first_subscriber_only() {
        let hub = Hub::new();
        hub.publish(Channel::Stdout, b"early\n");
        hub.publish(Channel::Stderr, b"oops\n");

        let mut first = hub.subscribe();
        let message = next_now(&mut first).await.unwrap();
        assert_eq!(
            (message.channel, text(&message)),
            (Channel::Stdout as i32, "early\n")
        );
        let message = next_now(&mut first).await.unwrap();
        assert_eq!(
            (message.channel, text(&message)),
            (Channel::Stderr as i32, "oops\n")
        );
        drop(first);

        // A later connection starts where the output was last delivered.
        hub.publish(Channel::Stdout, b"late\n");
        let mut second = hub.subscribe();
        assert_eq!(text(&next_now(&mut second).await.unwrap()), "late\n");
    }

    #[tokio::test]
    async fn every_open_subscriber_gets_new_output_and_close_ends_them_after_the_rest() {
        let hub = Hub::new();
        let mut a = hub.subscribe();
        let mut b = hub.subscribe();
        let waiting = tokio::spawn(async move { next_now(&mut a).await.map(|m| m.data) });
        tokio::task::yield_now().await;
        hub.publish(Channel::Stdout, b"one");
        assert_eq!(waiting.await.unwrap().unwrap(), b"one");

        hub.publish(Channel::Stdout, b"two");
        hub.close();
        hub.publish(Channel::Stdout, b"after close");
        assert_eq!(next_now(&mut b).await.unwrap().data, b"one");
        assert_eq!(next_now(&mut b).await.unwrap().data, b"two");
        assert!(next_now(&mut b).await.is_none());
    }

    #[tokio::test]
    async fn a_flood_keeps_the_newest_output_within_the_bound() {
        let hub = Hub::new();
        let line = [b'x'; 1000];
        for _ in 0..1000 {
            hub.publish(Channel::Stdout, &line);
        }
        hub.publish(Channel::Stdout, b"last");
        assert!(hub.lock().bytes <= BACKLOG_BYTES);
        hub.close();

        let mut subscriber = hub.subscribe();
        let mut received = Vec::new();
        while let Some(message) = next_now(&mut subscriber).await {
            received.extend(message.data);
        }
        assert!(received.len() <= BACKLOG_BYTES);
        assert!(received.len() > BACKLOG_BYTES - line.len());
        assert!(received.ends_with(b"last"));
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_loses_the_oldest_chunks_not_the_newest() {
        let hub = Hub::new();
        let mut slow = hub.subscribe();
        hub.publish(Channel::Stdout, b"first");
        for _ in 0..200 {
            hub.publish(Channel::Stdout, &[b'y'; 1024]);
        }
        hub.publish(Channel::Stdout, b"newest");
        hub.close();
        let first = next_now(&mut slow).await.unwrap();
        assert_ne!(first.data, b"first");
        let mut last = first;
        while let Some(message) = next_now(&mut slow).await {
            last = message;
        }
        assert_eq!(last.data, b"newest");
    }

    #[tokio::test]
    async fn the_service_streams_messages_and_ends_when_the_hub_closes() {
        let hub = Hub::new();
        let service = StdioService { hub: hub.clone() };
        let mut stream = service
            .stream_stdio(Request::new(()))
            .await
            .unwrap()
            .into_inner();
        hub.publish(Channel::Stdout, b"hello\n");
        let message = stream.next().await.unwrap().unwrap();
        assert_eq!(message.data, b"hello\n");
        hub.close();
        let end = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        assert!(matches!(end, Ok(None)), "the stream ends: {end:?}");
    }
}
