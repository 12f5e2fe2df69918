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
//! How much the hub holds depends on who listens:
//!
//! - subscribers connected: up to [`BUFFER_BYTES`] they have not taken yet. Beyond
//!   that the reader thread waits for them, so the pipe fills and the plugin's
//!   writes wait too: a host that reads gets everything, at its pace (as with a
//!   terminal). A subscriber that takes nothing for [`STALL`] is marked stalled:
//!   the writer stops waiting for it, and it loses the oldest output until it
//!   catches up (the plugin logs a warning). A write therefore waits at most
//!   [`STALL`] per stuck host, never indefinitely;
//! - nobody connected (go-plugin 1.0.1 hosts never open the stream): nothing waits,
//!   and the newest [`BACKLOG_BYTES`] are kept for the next subscriber.
//!
//! The streams run on the plugin's runtime, so output written synchronously from an
//! async handler is only sent once the handler yields: a single burst larger than
//! the buffer and the pipe (about 1 MiB) costs one stall and its oldest part.

use rpcplugin_proto::plugin::StdioData;
use rpcplugin_proto::plugin::grpc_stdio_server::GrpcStdio;
use rpcplugin_proto::plugin::stdio_data::Channel;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};
use tonic::{Request, Response, Status};

/// How much output the hub keeps for the next subscriber while nobody listens.
pub(crate) const BACKLOG_BYTES: usize = 64 * 1024;

/// How much output the hub holds for connected subscribers before the writer
/// waits for them.
pub(crate) const BUFFER_BYTES: usize = 1024 * 1024;

/// How long the writer waits for a subscriber that takes nothing before it stops
/// waiting for that one.
pub(crate) const STALL: Duration = Duration::from_millis(500);

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
#[derive(Debug)]
pub(crate) struct Hub {
    state: Mutex<State>,
    /// Wakes subscribers: on every publish and on close.
    changed: Notify,
    /// Wakes a waiting writer: a subscriber took a chunk or went away.
    taken: Condvar,
    stall: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// The held chunks; `chunks[0]` has sequence number `first`.
    chunks: VecDeque<Chunk>,
    first: u64,
    bytes: usize,
    /// One past the newest chunk handed to any subscriber: a new subscriber starts
    /// here, so output is delivered once, not to every later connection again.
    delivered: u64,
    subscribers: Vec<Position>,
    next_id: u64,
    closed: bool,
}

/// Where one subscriber is.
#[derive(Debug)]
struct Position {
    id: u64,
    /// The sequence number of its next chunk.
    cursor: u64,
    /// It took nothing for a whole stall: the writer does not wait for it.
    stalled: bool,
}

impl State {
    fn end(&self) -> u64 {
        self.first + self.chunks.len() as u64
    }

    /// The most the hub holds now.
    fn limit(&self) -> usize {
        if self.subscribers.is_empty() {
            BACKLOG_BYTES
        } else {
            BUFFER_BYTES
        }
    }

    fn waits_for_someone(&self) -> bool {
        self.subscribers.iter().any(|s| !s.stalled)
    }

    /// The oldest chunk still needed: by the slowest subscriber that keeps up,
    /// else by the next subscriber.
    fn needed_from(&self) -> u64 {
        self.subscribers
            .iter()
            .filter(|s| !s.stalled)
            .map(|s| s.cursor)
            .min()
            .unwrap_or(self.delivered)
    }

    fn pop_front(&mut self) {
        if let Some(chunk) = self.chunks.pop_front() {
            self.bytes -= chunk.data.len();
            self.first += 1;
        }
    }

    /// Drops the oldest chunks nobody still needs until `len` more bytes fit.
    /// What was delivered is otherwise kept: a stalled subscriber that resumes
    /// gets the newest output.
    fn make_room(&mut self, len: usize) {
        let from = self.needed_from();
        while self.bytes + len > self.limit() && self.first < from && !self.chunks.is_empty() {
            self.pop_front();
        }
    }

    fn position(&mut self, id: u64) -> &mut Position {
        self.subscribers
            .iter_mut()
            .find(|s| s.id == id)
            .expect("a live subscriber has a position")
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
        Self::with_stall(STALL)
    }

    fn with_stall(stall: Duration) -> Arc<Self> {
        Arc::new(Hub {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            taken: Condvar::new(),
            stall,
        })
    }

    /// Adds a chunk. Blocks while the buffer is full and a subscriber is reading
    /// (at most a stall per subscriber that stops); otherwise drops the oldest
    /// held output beyond the limit. After [`Hub::close`] output is
    /// discarded. Called from the reader threads, never from the runtime.
    fn publish(&self, channel: Channel, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            let deadline = Instant::now() + self.stall;
            loop {
                if state.closed {
                    return;
                }
                state.make_room(data.len());
                if state.bytes + data.len() <= state.limit() || !state.waits_for_someone() {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    // Whoever holds the oldest needed chunk has stopped reading.
                    let from = state.needed_from();
                    for slow in state.subscribers.iter_mut().filter(|s| s.cursor == from) {
                        slow.stalled = true;
                    }
                    continue;
                }
                state = self
                    .taken
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            state.bytes += data.len();
            state.chunks.push_back(Chunk {
                channel,
                data: data.to_vec(),
            });
            while state.bytes > state.limit() && state.chunks.len() > 1 {
                state.pop_front();
            }
        }
        self.changed.notify_waiters();
    }

    /// Ends every subscription once it has read what is held.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
        self.taken.notify_all();
    }

    fn subscribe(self: &Arc<Self>) -> Subscriber {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let cursor = state.delivered.max(state.first);
        state.subscribers.push(Position {
            id,
            cursor,
            stalled: false,
        });
        Subscriber {
            hub: self.clone(),
            id,
        }
    }

    fn take(&self, id: u64) -> Take {
        let mut state = self.lock();
        let (first, end) = (state.first, state.end());
        let position = state.position(id);
        let lost = first.saturating_sub(position.cursor);
        position.cursor = position.cursor.max(first);
        if position.cursor < end {
            let cursor = position.cursor;
            position.cursor += 1;
            let index = usize::try_from(cursor - first).expect("index within the deque");
            let chunk = state.chunks[index].clone();
            state.delivered = state.delivered.max(cursor + 1);
            drop(state);
            self.taken.notify_all();
            Take::Chunk(chunk, lost)
        } else {
            // Caught up: worth waiting for again.
            position.stalled = false;
            if state.closed {
                Take::Closed
            } else {
                Take::Empty
            }
        }
    }

    fn unsubscribe(&self, id: u64) {
        self.lock().subscribers.retain(|s| s.id != id);
        self.taken.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One `StreamStdio` call's position in the hub.
#[derive(Debug)]
struct Subscriber {
    hub: Arc<Hub>,
    id: u64,
}

impl Subscriber {
    /// The next chunk as a message; `None` once the hub is closed and read.
    async fn next(&mut self) -> Option<StdioData> {
        loop {
            // Registered before looking, so a publish in between is not missed.
            let changed = self.hub.changed.notified();
            match self.hub.take(self.id) {
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

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
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
    async fn a_subscriber_that_stops_reading_costs_one_stall_then_loses_the_oldest_output() {
        let stall = Duration::from_millis(100);
        let hub = Hub::with_stall(stall);
        let mut slow = hub.subscribe();
        let started = Instant::now();
        hub.publish(Channel::Stdout, b"first");
        for _ in 0..2000 {
            hub.publish(Channel::Stdout, &[b'y'; 1024]);
        }
        hub.publish(Channel::Stdout, b"newest");
        let took = started.elapsed();
        // The writer waited once for the silent subscriber, then stopped waiting.
        assert!(took >= stall && took < stall * 5, "{took:?}");
        assert!(hub.lock().bytes <= BUFFER_BYTES);
        hub.close();
        let first = next_now(&mut slow).await.unwrap();
        assert_ne!(first.data, b"first");
        let mut last = first;
        while let Some(message) = next_now(&mut slow).await {
            last = message;
        }
        assert_eq!(last.data, b"newest");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_that_reads_gets_a_burst_far_larger_than_the_buffer_whole() {
        let hub = Hub::new();
        let mut reader = hub.subscribe();
        let writer = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                // 4 MiB: four times what the hub holds.
                for i in 0..4096u32 {
                    let mut chunk = vec![b'z'; 1020];
                    chunk.extend_from_slice(&i.to_be_bytes());
                    hub.publish(Channel::Stdout, &chunk);
                }
                hub.close();
            })
        };
        let mut received = Vec::new();
        while let Some(message) = next_now(&mut reader).await {
            received.push(message.data);
        }
        writer.join().unwrap();
        assert_eq!(received.len(), 4096, "every chunk arrived");
        for (i, chunk) in received.iter().enumerate() {
            assert_eq!(chunk[1020..], (i as u32).to_be_bytes());
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_goes_away_is_not_waited_for() {
        let hub = Hub::new();
        let gone = hub.subscribe();
        drop(gone);
        let started = Instant::now();
        for _ in 0..2000 {
            hub.publish(Channel::Stdout, &[b'y'; 1024]);
        }
        assert!(started.elapsed() < STALL, "{:?}", started.elapsed());
        assert!(hub.lock().bytes <= BACKLOG_BYTES);
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
