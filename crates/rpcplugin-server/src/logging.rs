//! Plugin logs in hclog's JSON format on stderr, so that go-plugin hosts (Terraform
//! with `TF_LOG`, Vault, Packer, any rpcplugin host) show each line at its level with
//! its fields.
//!
//! ```
//! // At the start of the plugin's main. RUST_LOG filters as usual (`debug`,
//! // `my_plugin=trace`); the default is `info`.
//! rpcplugin_server::logging::init();
//! tracing::info!(port = 8080, tls = true, "plugin serving");
//! // stderr: {"@level":"info","@message":"plugin serving","@module":"my_plugin",
//! //          "@timestamp":"2026-11-22T21:24:23.639589Z","port":8080,"tls":true}
//! ```
//!
//! Each event is one JSON object on one line: `@level` (`trace` ... `error`),
//! `@message`, `@timestamp` (RFC 3339, UTC, microseconds: the only layout a go-plugin
//! 1.0.1 host accepts), `@module` (the event's target) and the event's fields as
//! keys; numbers and booleans stay JSON numbers and booleans. A go-plugin host
//! re-logs the line through its own logger at that level, with the fields as
//! `key=value` pairs; an rpcplugin host turns it into a `tracing` event.
//!
//! Lines go to stderr, never stdout, which carries the handshake line. Each line is
//! written with one `write_all` on a locked stderr, so lines from several threads
//! never interleave. Fields of enclosing spans are not included (hclog has no spans).
//!
//! To combine with other layers, add [`HclogLayer`] to a registry yourself:
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_subscriber::filter::LevelFilter::DEBUG)
//!     .with(rpcplugin_server::logging::HclogLayer::new());
//! tracing::subscriber::with_default(subscriber, || tracing::debug!("hello"));
//! ```

use rpcplugin_config::Environment;
use serde_json::{Map, Number, Value};
use std::fmt;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The filter used when `RUST_LOG` and `PLUGIN_LOG_LEVEL` are unset or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// Installs a global subscriber that writes hclog JSON on stderr, filtered by
/// `RUST_LOG`, else `PLUGIN_LOG_LEVEL` (default [`DEFAULT_FILTER`]).
///
/// An invalid `RUST_LOG` falls back to the default and says so in a warning. Does
/// nothing if the program has installed a global subscriber already.
pub fn init() {
    init_from(&Environment::capture());
}

/// [`init`] reading `RUST_LOG` (else `PLUGIN_LOG_LEVEL`) from `environment` instead
/// of the process's.
pub fn init_from(environment: &Environment) {
    let value = environment
        .get("RUST_LOG")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| environment.get("PLUGIN_LOG_LEVEL"));
    let (filter, invalid) = filter_from(value);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(HclogLayer::new())
        .try_init()
        .is_ok();
    if let (true, Some(error)) = (installed, invalid) {
        tracing::warn!(
            %error,
            default = DEFAULT_FILTER,
            "RUST_LOG is not a valid filter; using the default"
        );
    }
}

/// The filter for a `RUST_LOG` value, and why the value was refused, if it was.
fn filter_from(value: Option<&str>) -> (EnvFilter, Option<String>) {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => (EnvFilter::new(DEFAULT_FILTER), None),
        Some(value) => match EnvFilter::try_new(value) {
            Ok(filter) => (filter, None),
            Err(err) => (EnvFilter::new(DEFAULT_FILTER), Some(err.to_string())),
        },
    }
}

/// The default writer: the log channel, locked for each line.
type LockedStderr = fn() -> LogStderr;

/// The plugin's log channel, locked for one line: stderr as the host connected it.
///
/// That is file descriptor 2, except while `plugin.GRPCStdio` captures stderr
/// ([`Builder::capture_stderr`](crate::Builder::capture_stderr)): logs then still
/// go to the host's stderr pipe, where go-plugin hosts parse them as hclog, as
/// go-plugin's own logger does. [`HclogLayer::new`] writes here.
pub struct LogStderr {
    saved: std::sync::MutexGuard<'static, Option<std::fs::File>>,
    stderr: Option<io::StderrLock<'static>>,
}

impl LogStderr {
    /// Locks the log channel until the value is dropped.
    pub fn lock() -> Self {
        let saved = crate::stdio::log_stderr();
        let stderr = saved.is_none().then(|| io::stderr().lock());
        LogStderr { saved, stderr }
    }
}

impl Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match (&mut *self.saved, &mut self.stderr) {
            (Some(file), _) => file.write(buf),
            (None, Some(stderr)) => stderr.write(buf),
            (None, None) => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match (&mut *self.saved, &mut self.stderr) {
            (Some(file), _) => file.flush(),
            (None, Some(stderr)) => stderr.flush(),
            (None, None) => io::stderr().flush(),
        }
    }
}

impl fmt::Debug for LogStderr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStderr")
            .field("captured", &self.saved.is_some())
            .finish()
    }
}

/// A [`Layer`] that writes each event as one line of hclog JSON.
///
/// [`HclogLayer::new`] writes to stderr; [`HclogLayer::with_writer`] to anything
/// that implements [`MakeWriter`] (each line is one `write_all` on one writer).
pub struct HclogLayer<W = LockedStderr> {
    make_writer: W,
}

impl HclogLayer {
    /// A layer writing to stderr (to the original stderr while GRPCStdio captures
    /// it: see [`LogStderr`]).
    pub fn new() -> Self {
        HclogLayer {
            make_writer: LogStderr::lock,
        }
    }
}

impl Default for HclogLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<W> HclogLayer<W> {
    /// The same layer writing to `make_writer` instead (a file, a buffer in tests).
    /// Never point it at stdout in a plugin: stdout carries the handshake.
    #[must_use]
    pub fn with_writer<W2>(self, make_writer: W2) -> HclogLayer<W2>
    where
        W2: for<'w> MakeWriter<'w> + 'static,
    {
        HclogLayer { make_writer }
    }
}

impl<W> fmt::Debug for HclogLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HclogLayer").finish_non_exhaustive()
    }
}

impl<S, W> Layer<S> for HclogLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let line = hclog_line(event, SystemTime::now());
        // A log line that cannot be written has nowhere to be reported.
        let _ = self
            .make_writer
            .make_writer_for(event.metadata())
            .write_all(&line);
    }
}

/// The JSON line (with its newline) for one event.
fn hclog_line(event: &Event<'_>, now: SystemTime) -> Vec<u8> {
    let mut object = Map::new();
    let mut message = String::new();
    event.record(&mut JsonFields {
        object: &mut object,
        message: &mut message,
    });
    // The reserved keys go in last: an event field cannot overwrite them.
    let metadata = event.metadata();
    object.insert("@level".into(), level_name(*metadata.level()).into());
    object.insert("@message".into(), message.into());
    object.insert("@module".into(), metadata.target().into());
    object.insert("@timestamp".into(), timestamp(now).into());
    let mut line = Value::Object(object).to_string().into_bytes();
    line.push(b'\n');
    line
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        _ => "trace",
    }
}

/// Collects an event's fields as JSON values; `message` is kept apart.
struct JsonFields<'a> {
    object: &'a mut Map<String, Value>,
    message: &'a mut String,
}

impl JsonFields<'_> {
    fn insert(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            *self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.object.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for JsonFields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those are written as text.
        let value = Number::from_f64(value).map_or_else(|| value.to_string().into(), Value::Number);
        self.insert(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, value.into());
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value = i64::try_from(value).map_or_else(|_| value.to_string().into(), Value::from);
        self.insert(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = u64::try_from(value).map_or_else(|_| value.to_string().into(), Value::from);
        self.insert(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, format!("{value:?}").into());
    }
}

/// `2026-11-22T21:24:23.639589Z`: hclog's JSON timestamp layout, which go-plugin
/// hosts parse strictly (another layout makes them treat the line as plain text).
fn timestamp(now: SystemTime) -> String {
    // RFC 3339 with exactly six fraction digits: `time`'s `Rfc3339` writes as many
    // digits as the value needs, which is not hclog's layout.
    const HCLOG: &[BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    // A clock before 1970 or past what `time` represents (year 9999) logs the epoch
    // rather than panicking in the logger.
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    time::Duration::try_from(since_epoch)
        .ok()
        .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_add(d))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(HCLOG)
        .expect("a UTC date-time has every component of the layout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A writer into a shared buffer that counts its `write` calls.
    #[derive(Clone, Default)]
    struct Buffer {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            *self.writes.lock().unwrap() += 1;
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    /// Runs `f` under an hclog layer writing into a buffer; the lines as JSON.
    fn capture(f: impl FnOnce()) -> (Vec<Map<String, Value>>, Buffer) {
        let buffer = Buffer::default();
        let subscriber =
            tracing_subscriber::registry().with(HclogLayer::new().with_writer(buffer.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.bytes.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'), "{text}");
        let lines = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        (lines, buffer)
    }

    #[test]
    fn each_event_is_one_hclog_json_line_with_typed_fields() {
        let (lines, buffer) = capture(|| {
            tracing::info!(
                target: "kv_plugin",
                port = 8080_u16,
                offset = -3,
                ratio = 0.5,
                tls = true,
                name = "kv",
                shown = %"display",
                debugged = ?vec![1, 2],
                "plugin serving"
            );
            tracing::warn!("second {}", 2);
        });
        assert_eq!(lines.len(), 2);
        assert_eq!(*buffer.writes.lock().unwrap(), 2, "one write per line");
        let first = &lines[0];
        assert_eq!(first["@level"], "info");
        assert_eq!(first["@message"], "plugin serving");
        assert_eq!(first["@module"], "kv_plugin");
        assert_eq!(first["port"], 8080);
        assert_eq!(first["offset"], -3);
        assert_eq!(first["ratio"], 0.5);
        assert_eq!(first["tls"], true);
        assert_eq!(first["name"], "kv");
        assert_eq!(first["shown"], "display");
        assert_eq!(first["debugged"], "[1, 2]");
        assert_eq!(lines[1]["@level"], "warn");
        assert_eq!(lines[1]["@message"], "second 2");
        assert!(
            lines[1]["@module"]
                .as_str()
                .unwrap()
                .starts_with("rpcplugin_server")
        );
    }

    #[test]
    fn every_level_has_hclog_name() {
        let (lines, _) = capture(|| {
            tracing::trace!("t");
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!("e");
        });
        let levels: Vec<_> = lines.iter().map(|l| l["@level"].clone()).collect();
        assert_eq!(levels, ["trace", "debug", "info", "warn", "error"]);
    }

    #[test]
    fn reserved_keys_cannot_be_overwritten_and_odd_values_stay_valid_json() {
        let (lines, _) = capture(|| {
            tracing::error!(
                "@level" = "info",
                nan = f64::NAN,
                big = u128::MAX,
                quote = "a \"b\"\nc",
                "oops"
            );
        });
        assert_eq!(lines[0]["@level"], "error");
        assert_eq!(lines[0]["nan"], "NaN");
        assert_eq!(lines[0]["big"], u128::MAX.to_string());
        assert_eq!(lines[0]["quote"], "a \"b\"\nc");
    }

    #[test]
    fn timestamps_use_hclogs_layout() {
        let at = |secs: u64, micros: u64| {
            timestamp(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(1_795_382_663, 639_589), "2026-11-22T21:24:23.639589Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(at(4_133_980_799, 999_999), "2100-12-31T23:59:59.999999Z");
        // Year 11476: past what `time` writes.
        assert_eq!(at(300_000_000_000, 0), "1970-01-01T00:00:00.000000Z");

        let (lines, _) = capture(|| tracing::info!("now"));
        let now = lines[0]["@timestamp"].as_str().unwrap();
        assert_eq!(now.len(), "2026-11-22T21:24:23.639589Z".len(), "{now}");
        assert!(now.ends_with('Z'));
    }

    #[test]
    fn rust_log_chooses_the_filter_and_a_bad_one_falls_back() {
        assert!(filter_from(None).1.is_none());
        assert_eq!(filter_from(Some("  ")).0.to_string(), DEFAULT_FILTER);
        let (filter, invalid) = filter_from(Some("kv_plugin=debug"));
        assert_eq!(filter.to_string(), "kv_plugin=debug");
        assert!(invalid.is_none());
        let (filter, invalid) = filter_from(Some("kv_plugin=loud"));
        assert_eq!(filter.to_string(), DEFAULT_FILTER);
        assert!(invalid.is_some());
    }
}
