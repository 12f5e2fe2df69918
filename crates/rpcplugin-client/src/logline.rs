//! Classifying one line a plugin wrote on stderr: hclog JSON, hclog text, a bare
//! `[LEVEL]` prefix, or plain text. Pure (bytes in, a [`LogLine`] out) and total: any
//! input gives a line, nothing panics, and the work is linear in the line's length.
//!
//! The rules follow go-plugin 1.0.1's host (`logStderr`), with two departures that
//! only make things more forgiving: a non-string `@message` or `@level` that would
//! panic a Go host is handled, and prefixes may follow a timestamp.
//!
//! The host uses it for every plugin's stderr; it is public for tools that read
//! plugin logs themselves (and for the fuzz target).
//!
//! ```
//! use rpcplugin_client::logline::parse;
//!
//! let line = parse(br#"{"@level":"warn","@message":"disk low","free_mb":12}"#);
//! assert_eq!(line.level, tracing::Level::WARN);
//! assert_eq!(line.message, "disk low");
//! assert_eq!(line.fields, [("free_mb".to_owned(), "12".to_owned())]);
//! ```

use serde_json::{Map, Value};
use tracing::Level;

/// One stderr line, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogLine {
    /// The level to log it at; plain text is debug, as go-plugin logs it.
    pub level: Level,
    /// The message: hclog's `@message`, the text after a `[LEVEL]` prefix, or the
    /// whole line.
    pub message: String,
    /// Key/value pairs in the order found (JSON keys sorted), values as text.
    pub fields: Vec<(String, String)>,
    /// The plugin's own timestamp, as written.
    pub timestamp: Option<String>,
    /// hclog's logger name (`@module`, or the `name:` of a text line).
    pub module: Option<String>,
}

impl LogLine {
    /// A line with only a level and a message.
    pub(crate) fn plain(level: Level, message: &str) -> Self {
        LogLine {
            level,
            message: message.to_owned(),
            fields: Vec::new(),
            timestamp: None,
            module: None,
        }
    }
}

/// Classifies one line (without its newline). Invalid UTF-8 is replaced, never
/// dropped; a trailing `\r` is removed.
pub fn parse(line: &[u8]) -> LogLine {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    // Most lines are not JSON: one byte decides before serde_json is asked.
    if text.trim_start().starts_with('{')
        && let Some(parsed) = parse_json(text)
    {
        return parsed;
    }
    parse_text(text)
}

/// Classifies a line that is known not to be JSON, such as the first piece of a
/// line longer than the reader's limit.
pub(crate) fn parse_text(line: &str) -> LogLine {
    let line = line.trim_end_matches('\r');
    let trimmed = line.trim_start();
    let (timestamp, rest) = split_timestamp(trimmed);
    let Some((level, body)) = bracket_level(rest) else {
        return LogLine::plain(Level::DEBUG, line);
    };
    // hclog pads the level to a fixed width (`[INFO]  `).
    let body = body.trim_start();
    match timestamp {
        // A timestamp and a level: hclog's text format, `name: message: k=v ...`.
        Some(timestamp) => {
            let (head, fields) = split_fields(body);
            let (module, message) = split_module(head);
            LogLine {
                level,
                message: message.to_owned(),
                fields,
                timestamp: Some(timestamp.to_owned()),
                module: module.map(str::to_owned),
            }
        }
        // A bare prefix (Go's `log.Printf("[WARN] ...")`): the rest is the message.
        None => LogLine::plain(level, body),
    }
}

/// An hclog JSON line: an object with a string `@message`. Anything else is `None`
/// (and then plain text).
fn parse_json(text: &str) -> Option<LogLine> {
    // serde_json limits nesting (128 levels), so deep input is an error, not a
    // stack overflow.
    let object: Map<String, Value> = serde_json::from_str(text).ok()?;
    let message = match object.get("@message") {
        Some(Value::String(message)) => message.clone(),
        _ => return None,
    };
    let mut level = Level::DEBUG;
    let mut timestamp = None;
    let mut module = None;
    let mut fields = Vec::new();
    for (key, value) in object {
        // The reserved keys are used only as strings; otherwise they stay fields,
        // so nothing the plugin wrote is lost.
        match (key.as_str(), value) {
            ("@message", _) => {}
            ("@level", Value::String(name)) => match level_from_name(&name) {
                Some(known) => level = known,
                None => fields.push((key, name)),
            },
            ("@timestamp", Value::String(t)) => timestamp = Some(t),
            ("@module", Value::String(m)) => module = Some(m),
            (_, value) => fields.push((key, render(value))),
        }
    }
    Some(LogLine {
        level,
        message,
        fields,
        timestamp,
        module,
    })
}

/// A field value as text: strings as they are, anything else as compact JSON.
fn render(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// hclog's level names (any case), plus the spellings other loggers use.
fn level_from_name(name: &str) -> Option<Level> {
    let name = name.trim();
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    if is("trace") {
        Some(Level::TRACE)
    } else if is("debug") {
        Some(Level::DEBUG)
    } else if is("info") {
        Some(Level::INFO)
    } else if is("warn") || is("warning") {
        Some(Level::WARN)
    } else if is("error") || is("err") {
        Some(Level::ERROR)
    } else {
        None
    }
}

/// Splits a leading timestamp off: one or two tokens made of digits and date/time
/// punctuation, starting with a digit (hclog's `2026-11-22T21:24:23.639Z`, Go's
/// `log` package's `2026/11/22 21:24:23`). Only used when a `[LEVEL]` follows.
fn split_timestamp(line: &str) -> (Option<&str>, &str) {
    fn token_len(s: &str) -> usize {
        if !s.starts_with(|c: char| c.is_ascii_digit()) {
            return 0;
        }
        s.find(|c: char| !(c.is_ascii_digit() || "-:./TZ+".contains(c)))
            .unwrap_or(s.len())
    }
    let first = token_len(line);
    if first == 0 || !line[first..].starts_with(' ') {
        return (None, line);
    }
    let mut end = first;
    let after = line[end..].trim_start();
    let second = token_len(after);
    if second > 0 && after[second..].starts_with(' ') {
        end = line.len() - after.len() + second;
    }
    let rest = line[end..].trim_start();
    if rest.starts_with('[') {
        (Some(&line[..end]), rest)
    } else {
        (None, line)
    }
}

/// A `[LEVEL]` prefix and the text after it.
fn bracket_level(text: &str) -> Option<(Level, &str)> {
    let inner = text.strip_prefix('[')?;
    // The longest name is 7 bytes (`WARNING`); look no further.
    let close = inner.bytes().take(8).position(|b| b == b']')?;
    let name = &inner[..close];
    if name.trim() != name {
        return None;
    }
    Some((level_from_name(name)?, &inner[close + 1..]))
}

/// How many `": "` positions are tried as the start of hclog's trailing key/value
/// list. Bounds the work on a line full of colons to a small multiple of its length.
const MAX_FIELD_SPLITS: usize = 8;

/// Splits hclog text's trailing `: k=v k2="v 2"` list off the message: the first
/// `": "` after which the rest parses entirely as pairs.
fn split_fields(body: &str) -> (&str, Vec<(String, String)>) {
    for (at, _) in body.match_indices(": ").take(MAX_FIELD_SPLITS) {
        if let Some(fields) = parse_pairs(&body[at + 2..]) {
            return (&body[..at], fields);
        }
    }
    (body, Vec::new())
}

/// `k=v k2="quoted \"value\""` as pairs; `None` unless the whole text is pairs.
fn parse_pairs(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start_matches(' ');
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = &rest[..eq];
        if key.is_empty() || key.contains(' ') {
            return None;
        }
        let after = &rest[eq + 1..];
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let (value, len) = unquote(quoted)?;
            (value, &quoted[len..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        if !(remaining.is_empty() || remaining.starts_with(' ')) {
            return None;
        }
        pairs.push((key.to_owned(), value));
        rest = remaining.trim_start_matches(' ');
    }
    Some(pairs)
}

/// The value of a Go-quoted string whose opening quote is already consumed, and how
/// many bytes were used, closing quote included. Common escapes are decoded; others
/// are kept as written.
fn unquote(text: &str) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                '"' => value.push('"'),
                '\\' => value.push('\\'),
                other => {
                    value.push('\\');
                    value.push(other);
                }
            },
            c => value.push(c),
        }
    }
    None
}

/// hclog text's `name: message` when `name` looks like a logger name (no spaces;
/// letters, digits, `.`, `-`, `_`, `/`).
fn split_module(head: &str) -> (Option<&str>, &str) {
    if let Some((name, message)) = head.split_once(": ") {
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if is_name {
            return (Some(name), message);
        }
    }
    (None, head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(line: &LogLine) -> Vec<(&str, &str)> {
        line.fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn hclog_json_gives_level_message_timestamp_module_and_fields() {
        let line = parse(
            br#"{"@level":"debug","@message":"plugin address","@module":"kv-plugin","@timestamp":"2026-11-22T21:24:23.650161Z","address":"/tmp/plugin1","network":"unix"}"#,
        );
        assert_eq!(line.level, Level::DEBUG);
        assert_eq!(line.message, "plugin address");
        assert_eq!(line.module.as_deref(), Some("kv-plugin"));
        assert_eq!(
            line.timestamp.as_deref(),
            Some("2026-11-22T21:24:23.650161Z")
        );
        assert_eq!(
            fields(&line),
            [("address", "/tmp/plugin1"), ("network", "unix")]
        );
    }

    #[test]
    fn hclog_json_levels_in_any_case() {
        for (name, level) in [
            ("trace", Level::TRACE),
            ("DEBUG", Level::DEBUG),
            ("Info", Level::INFO),
            ("warn", Level::WARN),
            ("WARN", Level::WARN),
            ("error", Level::ERROR),
            ("ERROR", Level::ERROR),
        ] {
            let json = format!(r#"{{"@level":"{name}","@message":"m"}}"#);
            assert_eq!(parse(json.as_bytes()).level, level, "{name}");
        }
    }

    #[test]
    fn json_field_values_of_every_type_become_compact_text() {
        let line = parse(
            br#"{"@level":"info","@message":"m","n":42,"f":1.5,"t":true,"z":null,"a":[1,"x"],"o":{"k":{"deep":[]}}}"#,
        );
        assert_eq!(line.level, Level::INFO);
        assert_eq!(
            fields(&line),
            [
                ("a", r#"[1,"x"]"#),
                ("f", "1.5"),
                ("n", "42"),
                ("o", r#"{"k":{"deep":[]}}"#),
                ("t", "true"),
                ("z", "null"),
            ]
        );
    }

    #[test]
    fn json_with_odd_reserved_keys_keeps_them_as_fields() {
        let line = parse(br#"{"@message":"m","@level":7,"@module":["x"]}"#);
        assert_eq!(line.level, Level::DEBUG);
        assert_eq!(line.module, None);
        assert_eq!(fields(&line), [("@level", "7"), ("@module", r#"["x"]"#)]);

        let line = parse(br#"{"@message":"m","@level":"fatal"}"#);
        assert_eq!(line.level, Level::DEBUG);
        assert_eq!(fields(&line), [("@level", "fatal")]);
    }

    #[test]
    fn json_that_is_not_hclog_is_plain_text() {
        for input in [
            "{}",
            r#"{"@message": 5}"#,
            r#"{"msg":"zap style","level":"error"}"#,
            r#"[1, 2, {"@message": "in an array"}]"#,
            r#"{"@message":"trailing garbage"} x"#,
            "{not json",
            "\"a string\"",
        ] {
            let line = parse(input.as_bytes());
            assert_eq!(line.level, Level::DEBUG, "{input}");
            assert_eq!(line.message, input);
            assert!(line.fields.is_empty(), "{input}");
        }
    }

    #[test]
    fn hclog_text_line_gives_module_message_and_fields() {
        let line = parse(
            br#"2026-11-22T21:24:23.639Z [INFO]  kv-host.kv_plugin: plugin started: path=/tmp/x pid=42 note="two words" q="a \"b\"""#,
        );
        assert_eq!(line.level, Level::INFO);
        assert_eq!(line.timestamp.as_deref(), Some("2026-11-22T21:24:23.639Z"));
        assert_eq!(line.module.as_deref(), Some("kv-host.kv_plugin"));
        assert_eq!(line.message, "plugin started");
        assert_eq!(
            fields(&line),
            [
                ("path", "/tmp/x"),
                ("pid", "42"),
                ("note", "two words"),
                ("q", r#"a "b""#)
            ]
        );
    }

    #[test]
    fn hclog_text_without_fields_or_module() {
        let line = parse(b"2026-11-22T21:24:23.639Z [WARN]  kv: low disk");
        assert_eq!(line.level, Level::WARN);
        assert_eq!(line.module.as_deref(), Some("kv"));
        assert_eq!(line.message, "low disk");
        assert!(line.fields.is_empty());

        let line = parse(b"2026-11-22T21:24:23.639Z [ERROR] it broke, badly");
        assert_eq!(line.level, Level::ERROR);
        assert_eq!(line.module, None);
        assert_eq!(line.message, "it broke, badly");
    }

    #[test]
    fn bracket_prefixes_choose_the_level() {
        for (input, level, message) in [
            ("[ERROR] boom", Level::ERROR, "boom"),
            ("[ERR] boom", Level::ERROR, "boom"),
            ("[WARN] careful", Level::WARN, "careful"),
            ("[WARNING] careful", Level::WARN, "careful"),
            ("[INFO] hello: a=b", Level::INFO, "hello: a=b"),
            ("[DEBUG] detail", Level::DEBUG, "detail"),
            ("[TRACE] very detailed", Level::TRACE, "very detailed"),
            ("  [INFO] indented", Level::INFO, "indented"),
            (
                "2026/11/22 21:24:23 [WARN] go log package",
                Level::WARN,
                "go log package",
            ),
        ] {
            let line = parse(input.as_bytes());
            assert_eq!(
                (line.level, line.message.as_str()),
                (level, message),
                "{input}"
            );
        }
    }

    #[test]
    fn other_lines_are_plain_text_at_debug() {
        for input in [
            "hello world",
            "[git] not a level",
            "[INFOX] not a level",
            "[ INFO ] not a level",
            "goroutine 1 [running]:",
            "2026 not a timestamp [INFO]",
            "",
            "\tmain.main()",
        ] {
            let line = parse(input.as_bytes());
            assert_eq!(line.level, Level::DEBUG, "{input}");
            assert_eq!(line.message, input);
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let line = parse(b"[ERROR] bad \xff\xfe bytes\r");
        assert_eq!(line.level, Level::ERROR);
        assert_eq!(line.message, "bad \u{fffd}\u{fffd} bytes");

        let line = parse(b"{\"@level\":\"warn\",\"@message\":\"m \xc3\x28\",\"k\":\"\xff\"}");
        assert_eq!(line.level, Level::WARN);
        assert_eq!(line.message, "m \u{fffd}(");
        assert_eq!(fields(&line), [("k", "\u{fffd}")]);
    }

    #[test]
    fn a_megabyte_line_is_classified_whole() {
        let big = "x".repeat(1 << 20);
        let line = parse(format!("[WARN] {big}").as_bytes());
        assert_eq!(line.level, Level::WARN);
        assert_eq!(line.message.len(), 1 << 20);

        let json = format!(r#"{{"@level":"error","@message":"big","blob":"{big}"}}"#);
        let line = parse(json.as_bytes());
        assert_eq!(line.level, Level::ERROR);
        assert_eq!(line.fields[0].1.len(), 1 << 20);
    }

    #[test]
    fn deeply_nested_json_is_plain_text_not_a_crash() {
        let deep = format!(
            r#"{{"@message":"m","k":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let line = parse(deep.as_bytes());
        assert_eq!(line.level, Level::DEBUG);
        assert_eq!(line.message.len(), deep.len());
    }

    #[test]
    fn many_colons_stay_cheap() {
        // Every ": " could start the field list, and each candidate parses as pairs
        // up to the final `x`: trying them all would be quadratic (seconds here).
        let body = "m".to_owned() + &": a=b".repeat(12_000) + " x";
        let started = std::time::Instant::now();
        let line = parse(format!("2026-11-22T21:24:23.639Z [INFO]  {body}").as_bytes());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(line.level, Level::INFO);
        assert!(line.message.ends_with("a=b x"));
        assert!(line.fields.is_empty());
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let line = parse(&bytes);
            // Without brackets or braces nothing can be a level or JSON: the whole
            // line is the message.
            let text = String::from_utf8_lossy(&bytes);
            if !text.contains(['[', '{']) {
                prop_assert_eq!(line.level, Level::DEBUG);
                prop_assert_eq!(line.message.as_str(), text.trim_end_matches('\r'));
            }
        }

        #[test]
        fn never_panics_on_near_misses(
            prefix in "[ \t]{0,2}(\\{|\\[|[0-9]{4}[-/][0-9:.TZ -]{0,12})?",
            body in "[\\[\\]{}\":=,@a-zA-Z0-9 \\\\.-]{0,80}",
        ) {
            let _ = parse(format!("{prefix}{body}").as_bytes());
            let _ = parse_text(&format!("{prefix}{body}"));
        }
    }
}
