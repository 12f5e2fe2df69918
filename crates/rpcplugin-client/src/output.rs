//! Reading the plugin's stdout and stderr without ever blocking the plugin or
//! growing without bound, and turning stderr lines into `tracing` events (also
//! those that arrive over GRPCStdio, see `stdio.rs`).

use crate::logline::{self, LogLine};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tracing::Level;

/// go-plugin's hosts read lines of at most 64 KiB; longer lines come in pieces.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Reads one line of at most `limit` bytes (without its newline). Returns `None` at
/// end of input. A longer line is returned in pieces of `limit` bytes.
pub(crate) async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    Ok(read_piece(reader, limit).await?.map(|piece| piece.bytes))
}

/// A line, or a piece of one that was longer than the limit.
#[derive(Debug)]
pub(crate) struct Piece {
    pub(crate) bytes: Vec<u8>,
    /// Whether the line ends here (a newline or the end of input followed).
    pub(crate) ends_line: bool,
}

/// As [`read_line_limited`], saying whether the piece ends its line.
pub(crate) async fn read_piece<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Option<Piece>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(Piece {
                bytes: line,
                ends_line: true,
            }));
        }
        let room = limit - line.len();
        let window = &buf[..buf.len().min(room)];
        if let Some(pos) = window.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&window[..pos]);
            reader.consume(pos + 1);
            return Ok(Some(Piece {
                bytes: line,
                ends_line: true,
            }));
        }
        let n = window.len();
        line.extend_from_slice(window);
        reader.consume(n);
        if line.len() >= limit {
            return Ok(Some(Piece {
                bytes: line,
                ends_line: false,
            }));
        }
    }
}

/// The last lines the plugin wrote on stderr, kept to explain failures.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    lines: Mutex<VecDeque<String>>,
}

const TAIL_LINES: usize = 20;
const TAIL_LINE_CHARS: usize = 400;

impl Tail {
    pub(crate) fn push(&self, line: &str) {
        let mut line: String = line.chars().take(TAIL_LINE_CHARS).collect();
        if line.len() < TAIL_LINE_CHARS && line.ends_with('\r') {
            line.pop();
        }
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Forwards stderr lines into `tracing` (tagged with the plugin's name and pid) and
/// keeps the tail. Each line is logged as soon as it is read, so memory stays at one
/// line (at most [`MAX_LINE`]) plus the tail however much the plugin writes.
pub(crate) async fn forward_stderr<R: AsyncBufRead + Unpin>(
    mut reader: R,
    tail: Arc<Tail>,
    name: String,
    pid: u32,
) {
    let mut stream = StderrStream::default();
    loop {
        match read_piece(&mut reader, MAX_LINE).await {
            Ok(Some(piece)) => {
                let text = String::from_utf8_lossy(&piece.bytes);
                tail.push(text.trim_end_matches('\r'));
                if let Some(line) = stream.classify(&piece) {
                    emit(&name, pid, &line);
                }
            }
            Ok(None) => return,
            Err(err) => {
                tracing::debug!(plugin = %name, pid, error = %err, "cannot read plugin stderr");
                return;
            }
        }
    }
}

/// What one stderr stream has said so far that changes how later lines are read.
#[derive(Debug, Default)]
pub(crate) struct StderrStream {
    /// The plugin panicked: a stack trace follows, so every later line is an error.
    panicked: bool,
    /// The level of a line cut into pieces, for its later pieces.
    continues: Option<Level>,
}

impl StderrStream {
    /// The log line for one piece of stderr; `None` for blank lines.
    pub(crate) fn classify(&mut self, piece: &Piece) -> Option<LogLine> {
        let text = String::from_utf8_lossy(&piece.bytes);
        let mut line = match self.continues {
            // The rest of a cut line: its level is the first piece's.
            Some(level) => LogLine::plain(level, text.trim_end_matches('\r')),
            None => {
                if starts_panic(&text) {
                    self.panicked = true;
                }
                if piece.ends_line {
                    logline::parse(&piece.bytes)
                } else {
                    // A cut line cannot be a whole JSON object; its start can still
                    // carry a `[LEVEL]` prefix.
                    logline::parse_text(&text)
                }
            }
        };
        self.continues = (!piece.ends_line).then_some(line.level);
        if self.panicked {
            line.level = Level::ERROR;
        }
        (!line.message.trim().is_empty() || !line.fields.is_empty()).then_some(line)
    }
}

/// The first line of a crash report: Go's `panic:` (and the runtime's `fatal
/// error:`), Rust's default panic hook.
fn starts_panic(line: &str) -> bool {
    line.starts_with("panic: ")
        || line.starts_with("fatal error: ")
        || (line.starts_with("thread '") && line.contains("' panicked at"))
}

/// One tracing event for one line, at the line's level.
pub(crate) fn emit(name: &str, pid: u32, line: &LogLine) {
    // tracing's field names are fixed at compile time (they live in the callsite's
    // static metadata), so the plugin's own keys cannot become fields of their own:
    // they are rendered together into `fields`, as `key=value key2="two words"`.
    let fields = (!line.fields.is_empty()).then(|| render_fields(&line.fields));
    let fields = fields.as_deref();
    let module = line.module.as_deref();
    let timestamp = line.timestamp.as_deref();
    let message = line.message.as_str();
    // A tracing level must be a constant at each callsite: one call per level.
    match line.level {
        Level::ERROR => {
            tracing::error!(plugin = %name, pid, module, fields, timestamp, "{message}")
        }
        Level::WARN => tracing::warn!(plugin = %name, pid, module, fields, timestamp, "{message}"),
        Level::INFO => tracing::info!(plugin = %name, pid, module, fields, timestamp, "{message}"),
        Level::DEBUG => {
            tracing::debug!(plugin = %name, pid, module, fields, timestamp, "{message}")
        }
        _ => tracing::trace!(plugin = %name, pid, module, fields, timestamp, "{message}"),
    }
}

/// `key=value` pairs separated by spaces; a key or value that is empty or holds a
/// space, a quote or `=` is quoted so the pairs can be told apart.
fn render_fields(fields: &[(String, String)]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        if !out.is_empty() {
            out.push(' ');
        }
        push_token(&mut out, key);
        out.push('=');
        push_token(&mut out, value);
    }
    out
}

fn push_token(out: &mut String, token: &str) {
    let plain = !token.is_empty()
        && !token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if plain {
        out.push_str(token);
    } else {
        out.push_str(&format!("{token:?}"));
    }
}

/// After the handshake go-plugin hosts read and discard stdout; so do we, so a
/// chatty plugin never blocks on a full pipe.
pub(crate) async fn drain_stdout<R: AsyncBufRead + Unpin>(mut reader: R, name: String, pid: u32) {
    while let Ok(Some(bytes)) = read_line_limited(&mut reader, MAX_LINE).await {
        tracing::debug!(plugin = %name, pid, line = %String::from_utf8_lossy(&bytes), "plugin wrote to stdout after the handshake");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tokio::io::AsyncWriteExt;
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    /// One event as a host's subscriber sees it.
    #[derive(Debug, Clone)]
    struct Seen {
        level: Level,
        message: String,
        fields: BTreeMap<String, String>,
    }

    impl Seen {
        fn field(&self, name: &str) -> Option<&str> {
            self.fields.get(name).map(String::as_str)
        }
    }

    /// Records every event into a shared list.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Seen>>>);

    impl Capture {
        fn seen(&self) -> Vec<Seen> {
            self.0.lock().unwrap().clone()
        }

        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            struct Fields<'a>(&'a mut Seen);
            impl Visit for Fields<'_> {
                fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                    let value = format!("{value:?}");
                    if field.name() == "message" {
                        self.0.message = value;
                    } else {
                        self.0.fields.insert(field.name().to_owned(), value);
                    }
                }
                fn record_str(&mut self, field: &Field, value: &str) {
                    self.0
                        .fields
                        .insert(field.name().to_owned(), value.to_owned());
                }
            }
            let mut seen = Seen {
                level: *event.metadata().level(),
                message: String::new(),
                fields: BTreeMap::new(),
            };
            event.record(&mut Fields(&mut seen));
            self.0.lock().unwrap().push(seen);
        }
    }

    /// Runs the forwarder over `input` under a capturing subscriber.
    async fn forward(input: &[u8]) -> (Vec<Seen>, Arc<Tail>) {
        let capture = Capture::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        let tail = Arc::new(Tail::default());
        forward_stderr(input, tail.clone(), "kv".into(), 42).await;
        (capture.seen(), tail)
    }

    fn levels_and_messages(seen: &[Seen]) -> Vec<(Level, &str)> {
        seen.iter().map(|s| (s.level, s.message.as_str())).collect()
    }

    #[tokio::test]
    async fn each_format_becomes_an_event_at_its_level_tagged_with_the_plugin() {
        let input = concat!(
            r#"{"@level":"info","@message":"configuring server automatic mTLS","@timestamp":"2026-11-22T21:24:23.639589Z"}"#,
            "\n",
            r#"{"@level":"debug","@message":"plugin address","@module":"kv-plugin","address":"/tmp/p1","network":"unix","n":3}"#,
            "\n",
            "2026-11-22T21:24:23.639Z [WARN]  kv-plugin: disk low: free=\"1 GB\"\r\n",
            "[ERROR] cannot open the store\n",
            "just some text\n",
            "\n",
        );
        let (seen, _) = forward(input.as_bytes()).await;
        assert_eq!(
            levels_and_messages(&seen),
            [
                (Level::INFO, "configuring server automatic mTLS"),
                (Level::DEBUG, "plugin address"),
                (Level::WARN, "disk low"),
                (Level::ERROR, "cannot open the store"),
                (Level::DEBUG, "just some text"),
            ]
        );
        for event in &seen {
            assert_eq!(event.field("plugin"), Some("kv"));
            assert_eq!(event.field("pid"), Some("42"));
        }
        assert_eq!(
            seen[0].field("timestamp"),
            Some("2026-11-22T21:24:23.639589Z")
        );
        assert_eq!(seen[0].field("fields"), None);
        assert_eq!(seen[1].field("module"), Some("kv-plugin"));
        assert_eq!(
            seen[1].field("fields"),
            Some("address=/tmp/p1 n=3 network=unix")
        );
        assert_eq!(seen[2].field("module"), Some("kv-plugin"));
        assert_eq!(seen[2].field("fields"), Some(r#"free="1 GB""#));
        assert_eq!(seen[4].field("module"), None);
    }

    #[tokio::test]
    async fn a_go_panic_turns_the_rest_of_the_stream_into_errors() {
        let input = "[INFO] serving\n\
            panic: runtime error: index out of range [3] with length 3\n\
            \n\
            goroutine 1 [running]:\n\
            main.main()\n\
            \t/src/main.go:5 +0x1d\n\
            {\"@level\":\"debug\",\"@message\":\"late\",\"k\":1}\n";
        let (seen, _) = forward(input.as_bytes()).await;
        assert_eq!(
            levels_and_messages(&seen),
            [
                (Level::INFO, "serving"),
                (
                    Level::ERROR,
                    "panic: runtime error: index out of range [3] with length 3"
                ),
                (Level::ERROR, "goroutine 1 [running]:"),
                (Level::ERROR, "main.main()"),
                (Level::ERROR, "\t/src/main.go:5 +0x1d"),
                (Level::ERROR, "late"),
            ]
        );
        assert_eq!(seen[5].field("fields"), Some("k=1"));
    }

    #[tokio::test]
    async fn a_rust_panic_turns_the_rest_of_the_stream_into_errors() {
        let input = "thread 'main' panicked at src/main.rs:2:5:\nboom\n\
            note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        let (seen, _) = forward(input.as_bytes()).await;
        assert!(seen.iter().all(|s| s.level == Level::ERROR), "{seen:?}");
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].message, "boom");

        // "panic:" only counts at the start of a line.
        let (seen, _) = forward(b"[INFO] no panic: here\nafter\n").await;
        assert_eq!(
            levels_and_messages(&seen),
            [(Level::INFO, "no panic: here"), (Level::DEBUG, "after")]
        );
    }

    #[tokio::test]
    async fn a_megabyte_line_arrives_in_bounded_pieces_at_its_level() {
        let mut input = b"[ERROR] ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1 << 20));
        input.extend_from_slice(b"\nnext line\n");
        let json = format!(
            "{{\"@level\":\"error\",\"@message\":\"{}\"}}\n",
            "y".repeat(1 << 20)
        );
        input.extend_from_slice(json.as_bytes());
        input.extend_from_slice(b"[WARN] last\n");
        let (seen, tail) = forward(&input).await;

        assert!(seen.iter().all(|s| s.message.len() <= MAX_LINE));
        let (big, rest): (Vec<_>, Vec<_>) = seen.iter().partition(|s| s.message.starts_with('x'));
        assert!(big.iter().all(|s| s.level == Level::ERROR));
        // Nothing is dropped: the pieces add up to the line (minus its prefix).
        assert_eq!(big.iter().map(|s| s.message.len()).sum::<usize>(), 1 << 20);
        assert_eq!(rest[0].message, "next line");
        assert_eq!(rest[0].level, Level::DEBUG);
        // A JSON line cut in pieces cannot be parsed: plain text at debug, as
        // go-plugin does.
        let json_pieces: Vec<_> = rest[1..rest.len() - 1].iter().collect();
        assert_eq!(json_pieces.len(), (json.len() - 1).div_ceil(MAX_LINE));
        assert!(json_pieces.iter().all(|s| s.level == Level::DEBUG));
        let last = rest[rest.len() - 1];
        assert_eq!((last.level, last.message.as_str()), (Level::WARN, "last"));
        // The tail keeps pieces cut short, never the megabyte.
        assert!(tail.lines().iter().all(|l| l.len() <= TAIL_LINE_CHARS));
    }

    #[tokio::test]
    async fn a_flood_is_logged_as_it_is_read_and_only_the_tail_is_kept() {
        const LINES: usize = 100_000;
        let capture = Capture::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        // The pipe holds 64 KiB: the writer can only finish if lines are consumed
        // while it writes, and the first line must be logged before the last is sent.
        let (mut plugin, host) = tokio::io::duplex(64 * 1024);
        let tail = Arc::new(Tail::default());
        let forwarder = tokio::spawn(forward_stderr(
            tokio::io::BufReader::new(host),
            tail.clone(),
            "flood".into(),
            7,
        ));
        plugin.write_all(b"[WARN] first\n").await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while capture.count() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the first line is logged before the stream ends");
        for i in 1..LINES {
            let line = match i % 3 {
                0 => format!("[ERROR] line {i}\n"),
                1 => format!("{{\"@level\":\"info\",\"@message\":\"line {i}\",\"i\":{i}}}\n"),
                _ => format!("line {i}\n"),
            };
            plugin.write_all(line.as_bytes()).await.unwrap();
        }
        drop(plugin);
        forwarder.await.unwrap();

        let seen = capture.seen();
        assert_eq!(seen.len(), LINES);
        assert_eq!(seen[0].level, Level::WARN);
        for (i, event) in seen.iter().enumerate().skip(1) {
            let want = [Level::ERROR, Level::INFO, Level::DEBUG][i % 3];
            assert_eq!(
                (event.level, event.message.as_str()),
                (want, format!("line {i}").as_str())
            );
        }
        let kept = tail.lines();
        assert_eq!(kept.len(), TAIL_LINES);
        // The tail keeps lines as written (99 999 is a multiple of 3).
        assert_eq!(kept.last().unwrap(), &format!("[ERROR] line {}", LINES - 1));
    }

    #[tokio::test]
    async fn invalid_utf8_is_logged_replaced() {
        let (seen, tail) = forward(b"[WARN] caf\xe9 \xff\n").await;
        assert_eq!(
            levels_and_messages(&seen),
            [(Level::WARN, "caf\u{fffd} \u{fffd}")]
        );
        assert_eq!(tail.lines(), ["[WARN] caf\u{fffd} \u{fffd}"]);
    }

    #[test]
    fn fields_render_as_unambiguous_pairs() {
        let fields = [
            ("a".to_owned(), "1".to_owned()),
            ("note".to_owned(), "two words".to_owned()),
            ("empty".to_owned(), String::new()),
            ("eq".to_owned(), "x=y".to_owned()),
            ("odd key".to_owned(), "line\nbreak".to_owned()),
        ];
        assert_eq!(
            render_fields(&fields),
            r#"a=1 note="two words" empty="" eq="x=y" "odd key"="line\nbreak""#
        );
    }

    #[tokio::test]
    async fn long_lines_come_in_bounded_pieces() {
        let mut input = vec![b'a'; 10];
        input.push(b'\n');
        input.extend(std::iter::repeat_n(b'b', 25));
        let mut reader = tokio::io::BufReader::with_capacity(4, input.as_slice());
        assert_eq!(
            read_line_limited(&mut reader, 8).await.unwrap().unwrap(),
            b"aaaaaaaa"
        );
        assert_eq!(
            read_line_limited(&mut reader, 8).await.unwrap().unwrap(),
            b"aa"
        );
        let mut total = 0;
        while let Some(piece) = read_line_limited(&mut reader, 8).await.unwrap() {
            assert!(piece.len() <= 8);
            total += piece.len();
        }
        assert_eq!(total, 25);
    }

    #[test]
    fn tail_keeps_the_last_lines_only() {
        let tail = Tail::default();
        for i in 0..100 {
            tail.push(&format!("line {i}"));
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last().unwrap(), "line 99");
    }
}
