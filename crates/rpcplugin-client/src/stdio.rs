//! The host's end of `plugin.GRPCStdio`: what the plugin wrote on stdout (and on
//! stderr, when it captures that too) after the handshake, forwarded to a sink.
//!
//! Opened right after the health check, as go-plugin hosts do. A plugin without the
//! service (go-plugin before 1.1) answers Unimplemented, which is logged at debug
//! and ends the task; so does a stream that breaks when the plugin stops.

use crate::output::{self, MAX_LINE, Piece, StderrStream};
use rpcplugin_proto::plugin::grpc_stdio_client::GrpcStdioClient;
use rpcplugin_proto::plugin::stdio_data::Channel as WireChannel;
use std::fmt;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Which of the plugin's outputs some bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StdioChannel {
    /// File descriptor 1: `println!`, `fmt.Println`, `print()`.
    Stdout,
    /// File descriptor 2, when the plugin captures it.
    Stderr,
}

/// Receives a plugin's `GRPCStdio` output, chunk by chunk, as the plugin wrote it
/// (chunks are not lines: a line may be split across two calls).
///
/// Any `Fn(StdioChannel, &[u8])` closure is a sink:
///
/// ```
/// # use rpcplugin_client::{PluginClient, StdioChannel};
/// let (tx, rx) = std::sync::mpsc::channel();
/// let builder = PluginClient::builder("./kv_plugin")
///     .stdio_sink(move |channel: StdioChannel, data: &[u8]| {
///         let _ = tx.send((channel, data.to_vec()));
///     });
/// # drop((builder, rx));
/// ```
pub trait StdioSink: Send + Sync + 'static {
    /// Called for each chunk, in order, from a task on the host's runtime: return
    /// quickly. A sink that falls behind only costs the plugin old output (it
    /// keeps a bounded backlog), never a blocked write.
    fn write(&self, channel: StdioChannel, data: &[u8]);
}

impl<F> StdioSink for F
where
    F: Fn(StdioChannel, &[u8]) + Send + Sync + 'static,
{
    fn write(&self, channel: StdioChannel, data: &[u8]) {
        self(channel, data)
    }
}

/// Where a builder sends the output.
#[derive(Clone, Default)]
pub(crate) enum Sink {
    /// Lines as `tracing` events, tagged with the plugin's name and pid.
    #[default]
    Tracing,
    Custom(Arc<dyn StdioSink>),
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Tracing => f.write_str("Tracing"),
            Sink::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Opens `StreamStdio` on `channel` and forwards it until it ends.
pub(crate) fn spawn(channel: Channel, sink: Sink, name: String, pid: u32) -> JoinHandle<()> {
    tokio::spawn(forward(channel, sink, name, pid))
}

async fn forward(channel: Channel, sink: Sink, name: String, pid: u32) {
    let mut client = GrpcStdioClient::new(channel);
    let mut stream = match client.stream_stdio(()).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            tracing::debug!(plugin = %name, pid, "the plugin does not serve plugin.GRPCStdio; its stdout is not forwarded");
            return;
        }
        Err(status) => {
            tracing::debug!(plugin = %name, pid, %status, "cannot open the plugin's GRPCStdio stream");
            return;
        }
    };
    let mut out = Output::new(sink, name, pid);
    loop {
        match stream.message().await {
            Ok(Some(message)) => match WireChannel::try_from(message.channel) {
                Ok(WireChannel::Stdout) => out.write(StdioChannel::Stdout, &message.data),
                Ok(WireChannel::Stderr) => out.write(StdioChannel::Stderr, &message.data),
                // go-plugin's host drops such data too.
                _ => tracing::warn!(
                    plugin = %out.name,
                    pid,
                    channel = message.channel,
                    "the plugin sent GRPCStdio data on an unknown channel; dropped"
                ),
            },
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(plugin = %out.name, pid, %status, "the plugin's GRPCStdio stream ended");
                break;
            }
        }
    }
    out.finish();
}

/// One stream's sink, with the line state the default sink keeps per channel.
struct Output {
    sink: Sink,
    name: String,
    pid: u32,
    stdout: Lines,
    stderr: Lines,
    stderr_stream: StderrStream,
}

impl Output {
    fn new(sink: Sink, name: String, pid: u32) -> Self {
        Output {
            sink,
            name,
            pid,
            stdout: Lines::default(),
            stderr: Lines::default(),
            stderr_stream: StderrStream::default(),
        }
    }

    fn write(&mut self, channel: StdioChannel, data: &[u8]) {
        let Output {
            sink,
            name,
            pid,
            stdout,
            stderr,
            stderr_stream,
        } = self;
        match (sink, channel) {
            (Sink::Custom(sink), _) => sink.write(channel, data),
            (Sink::Tracing, StdioChannel::Stdout) => {
                stdout.push(data, &mut |piece| emit_stdout(name, *pid, &piece));
            }
            (Sink::Tracing, StdioChannel::Stderr) => {
                stderr.push(data, &mut |piece| {
                    if let Some(line) = stderr_stream.classify(&piece) {
                        output::emit(name, *pid, &line);
                    }
                });
            }
        }
    }

    /// Logs what is left of unterminated lines.
    fn finish(&mut self) {
        if let Sink::Tracing = self.sink {
            if let Some(piece) = self.stdout.finish() {
                emit_stdout(&self.name, self.pid, &piece);
            }
            if let Some(piece) = self.stderr.finish()
                && let Some(line) = self.stderr_stream.classify(&piece)
            {
                output::emit(&self.name, self.pid, &line);
            }
        }
    }
}

/// One stdout line as an INFO event (blank lines are not logged).
fn emit_stdout(name: &str, pid: u32, piece: &Piece) {
    let text = String::from_utf8_lossy(&piece.bytes);
    let text = text.trim_end_matches('\r');
    if !text.trim().is_empty() {
        tracing::info!(plugin = %name, pid, "{text}");
    }
}

/// Cuts a byte stream into lines of at most [`MAX_LINE`] bytes, as the stderr
/// reader does: a longer line comes out in pieces.
#[derive(Debug, Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn push(&mut self, mut data: &[u8], out: &mut impl FnMut(Piece)) {
        while !data.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &data[..data.len().min(room)];
            if let Some(pos) = window.iter().position(|&b| b == b'\n') {
                self.partial.extend_from_slice(&window[..pos]);
                out(Piece {
                    bytes: std::mem::take(&mut self.partial),
                    ends_line: true,
                });
                data = &data[pos + 1..];
            } else {
                self.partial.extend_from_slice(window);
                data = &data[window.len()..];
                if self.partial.len() >= MAX_LINE {
                    out(Piece {
                        bytes: std::mem::take(&mut self.partial),
                        ends_line: false,
                    });
                }
            }
        }
    }

    fn finish(&mut self) -> Option<Piece> {
        (!self.partial.is_empty()).then(|| Piece {
            bytes: std::mem::take(&mut self.partial),
            ends_line: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tracing::Level;
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    fn lines(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for chunk in chunks {
            lines.push(chunk, &mut |p| {
                out.push((String::from_utf8(p.bytes).unwrap(), p.ends_line))
            });
        }
        out.extend(
            lines
                .finish()
                .map(|p| (String::from_utf8(p.bytes).unwrap(), p.ends_line)),
        );
        out
    }

    #[test]
    fn chunks_become_lines_whatever_their_boundaries() {
        assert_eq!(
            lines(&[b"hel", b"lo\nwor", b"ld\n\nlast"]),
            [
                ("hello".to_owned(), true),
                ("world".to_owned(), true),
                (String::new(), true),
                ("last".to_owned(), true),
            ]
        );
    }

    #[test]
    fn a_line_longer_than_the_bound_comes_in_pieces() {
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        let mut input = big.clone();
        input.extend_from_slice(b"\nnext\n");
        let out = lines(&[&input[..1000], &input[1000..]]);
        assert_eq!(out.len(), 4);
        assert!(out[..3].iter().all(|(l, _)| l.len() <= MAX_LINE));
        assert_eq!(
            out[..3].iter().map(|(_, ends)| *ends).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(
            out[..3].iter().map(|(l, _)| l.len()).sum::<usize>(),
            big.len()
        );
        assert_eq!(out[3], ("next".to_owned(), true));
    }

    /// Level, target, message and `plugin` field of each event.
    type Event = (Level, String, String, String);

    #[derive(Clone, Default)]
    struct Events(Arc<Mutex<Vec<Event>>>);

    impl<S: tracing::Subscriber> Layer<S> for Events {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            #[derive(Default)]
            struct Fields {
                message: String,
                plugin: String,
            }
            impl Visit for Fields {
                fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                    match field.name() {
                        "message" => self.message = format!("{value:?}"),
                        "plugin" => self.plugin = format!("{value:?}"),
                        _ => {}
                    }
                }
            }
            let mut fields = Fields::default();
            event.record(&mut fields);
            self.0.lock().unwrap().push((
                *event.metadata().level(),
                event.metadata().target().to_owned(),
                fields.message,
                fields.plugin,
            ));
        }
    }

    #[test]
    fn the_default_sink_logs_stdout_at_info_and_classifies_stderr_like_the_pipe() {
        let events = Events::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
        let mut out = Output::new(Sink::Tracing, "kv".into(), 7);
        out.write(StdioChannel::Stdout, b"hello from ");
        out.write(StdioChannel::Stdout, b"println\r\n\n");
        out.write(StdioChannel::Stderr, b"[WARN] disk low\n");
        out.write(StdioChannel::Stdout, b"no newline");
        out.finish();
        let seen = events.0.lock().unwrap().clone();
        let seen: Vec<_> = seen
            .iter()
            .map(|(level, target, message, plugin)| {
                (*level, target.as_str(), message.as_str(), plugin.as_str())
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    Level::INFO,
                    "rpcplugin_client::stdio",
                    "hello from println",
                    "kv"
                ),
                (Level::WARN, "rpcplugin_client::output", "disk low", "kv"),
                (Level::INFO, "rpcplugin_client::stdio", "no newline", "kv"),
            ]
        );
    }

    #[test]
    fn a_custom_sink_gets_the_bytes_as_sent() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let got = got.clone();
            move |channel: StdioChannel, data: &[u8]| {
                got.lock().unwrap().push((channel, data.to_vec()))
            }
        };
        let mut out = Output::new(Sink::Custom(Arc::new(sink)), "kv".into(), 7);
        out.write(StdioChannel::Stdout, b"par");
        out.write(StdioChannel::Stderr, b"tial\r\n");
        out.finish();
        assert_eq!(
            *got.lock().unwrap(),
            [
                (StdioChannel::Stdout, b"par".to_vec()),
                (StdioChannel::Stderr, b"tial\r\n".to_vec())
            ]
        );
    }
}
