//! Reading the plugin's stdout and stderr without ever blocking the plugin or
//! growing without bound.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// go-plugin's hosts read lines of at most 64 KiB; longer lines come in pieces.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Reads one line of at most `limit` bytes (without its newline). Returns `None` at
/// end of input. A longer line is returned in pieces of `limit` bytes.
pub(crate) async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let room = limit - line.len();
        let window = &buf[..buf.len().min(room)];
        if let Some(pos) = window.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&window[..pos]);
            reader.consume(pos + 1);
            return Ok(Some(line));
        }
        let n = window.len();
        line.extend_from_slice(window);
        reader.consume(n);
        if line.len() >= limit {
            return Ok(Some(line));
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
/// keeps the tail. `[LEVEL]` prefixes choose the level; other lines are debug.
pub(crate) async fn forward_stderr<R: AsyncBufRead + Unpin>(
    mut reader: R,
    tail: Arc<Tail>,
    name: String,
    pid: u32,
) {
    loop {
        match read_line_limited(&mut reader, MAX_LINE).await {
            Ok(Some(bytes)) => {
                let line = String::from_utf8_lossy(&bytes);
                let line = line.trim_end_matches('\r');
                tail.push(line);
                log_line(&name, pid, line);
            }
            Ok(None) => return,
            Err(err) => {
                tracing::debug!(plugin = %name, pid, error = %err, "cannot read plugin stderr");
                return;
            }
        }
    }
}

fn log_line(name: &str, pid: u32, line: &str) {
    let prefix = |p: &str| line.trim_start().starts_with(p);
    if prefix("[ERROR]") {
        tracing::error!(plugin = %name, pid, "{line}");
    } else if prefix("[WARN]") {
        tracing::warn!(plugin = %name, pid, "{line}");
    } else if prefix("[INFO]") {
        tracing::info!(plugin = %name, pid, "{line}");
    } else if prefix("[TRACE]") {
        tracing::trace!(plugin = %name, pid, "{line}");
    } else {
        tracing::debug!(plugin = %name, pid, "{line}");
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
