//! The command line: what `rpcplugin` accepts, parsed into plain values without any IO,
//! so every rule (and every message a user sees for a mistake) is unit-tested here.

use rpcplugin_config::units::{parse_duration, parse_size as parse_bytes};
use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

/// Usage of the whole program, for `rpcplugin --help`.
pub(crate) const USAGE: &str = "\
rpcplugin: tools for go-plugin compatible gRPC plugins

Usage:
    rpcplugin bench [OPTIONS] -- PLUGIN_COMMAND [ARGS...]
    rpcplugin --help | --version

Commands:
    bench    launch a plugin serving bench.v1.Bench and measure it under load

Run `rpcplugin bench --help` for the benchmark's options.
";

/// Usage of `rpcplugin bench`, for `rpcplugin bench --help`.
pub(crate) const BENCH_USAGE: &str = "\
rpcplugin bench: launch a plugin, measure launch to first call, then drive
bench.v1.Bench from concurrent tasks and report throughput, latency, CPU and memory.

Usage:
    rpcplugin bench [OPTIONS] -- PLUGIN_COMMAND [ARGS...]

Options:
    --automtls           ask for AutoMTLS (default: plaintext)
    --cookie KEY=VALUE   the plugin's magic cookie [default: BASIC_PLUGIN=hello]
    --seconds N          length of the measured window, in seconds (or with a
                         unit: 500ms, 2m) [default: 5]
    --warmup SECS        calls before the window, not counted [default: 1]
    --concurrency C      concurrent tasks sharing one connection [default: 1]
    --size BYTES         payload (echo) or chunk (download) size; KiB, MiB and GiB
                         suffixes allowed, up to 4 GiB - 1 [default: 1024]
    --mode echo|download unary Echo calls, or Download streams of ~1 MiB per call
                         [default: echo]
    --threads N          worker threads of the host's runtime; 0 runs everything on
                         one thread [default: 0]
    --json               print only the RESULT line on stdout (the table goes to stderr)
    -h, --help           print this help

Output: a table, then one line `RESULT {json}` with req_per_s, p50_us, p99_us,
p999_us, launch_to_first_call_ms, host_rss_kb, plugin_rss_kb, host_cpu_pct,
plugin_cpu_pct, errors (and mib_per_s in download mode). When calls failed, the line
adds error_codes (failed calls per gRPC code, e.g. {\"resource_exhausted\":120})
and error_p50_us, error_p99_us (how fast they failed). The exit status is 0 only
if no call failed; the RESULT line is printed either way.

Example:
    rpcplugin bench --seconds 5 --concurrency 32 -- ./kv_plugin
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// Print a usage text and exit 0.
    Help(&'static str),
    /// Print the version and exit 0.
    Version,
    /// Run the load generator.
    Bench(BenchOptions),
}

/// Which `bench.v1.Bench` method the load generator drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Unary `Echo` with a payload of `size` bytes.
    Echo,
    /// Server-streaming `Download` of chunks of `size` bytes, about 1 MiB per call.
    Download,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Echo => "echo",
            Mode::Download => "download",
        })
    }
}

/// Everything `rpcplugin bench` was told.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BenchOptions {
    /// AutoMTLS was asked for (`--automtls`); plaintext otherwise.
    pub(crate) automtls: bool,
    /// The magic cookie, key and value.
    pub(crate) cookie: (String, String),
    /// The measured window.
    pub(crate) duration: Duration,
    /// Calls made before the window and not counted.
    pub(crate) warmup: Duration,
    /// Concurrent tasks.
    pub(crate) concurrency: usize,
    /// Payload or chunk size in bytes (fits a `u32`, as `DownloadRequest.chunk_size`).
    pub(crate) size: usize,
    /// Which method to drive.
    pub(crate) mode: Mode,
    /// Worker threads of the host runtime; 0 means a current-thread runtime.
    pub(crate) threads: usize,
    /// Only the RESULT line on stdout.
    pub(crate) json: bool,
    /// The plugin executable.
    pub(crate) program: OsString,
    /// Its arguments.
    pub(crate) args: Vec<OsString>,
}

impl BenchOptions {
    /// The defaults, for `program`.
    fn new(program: OsString) -> Self {
        Self {
            automtls: false,
            cookie: ("BASIC_PLUGIN".to_owned(), "hello".to_owned()),
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            concurrency: 1,
            size: 1024,
            mode: Mode::Echo,
            // PERFORMANCE.md: a current-thread client beats multi-thread shapes on two
            // cores shared with the plugin. Measured with kv_plugin, c=32: 53-60k req/s
            // here, 47-57k with one worker, 26-34k with two.
            threads: 0,
            json: false,
            program,
            args: Vec::new(),
        }
    }
}

/// A command line that cannot be run: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageError {
    /// What is wrong, e.g. `--concurrency must be a positive integer, got "0"`.
    pub(crate) message: String,
    /// What to do about it.
    pub(crate) hint: String,
}

impl UsageError {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}\n  hint: {}", self.message, self.hint)
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(err: lexopt::Error) -> Self {
        UsageError::new(
            err.to_string(),
            "run `rpcplugin bench --help` for the options",
        )
    }
}

/// Parses the arguments after the program name.
pub(crate) fn parse<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    match parser.next()? {
        None => Err(UsageError::new(
            "no command given",
            "try `rpcplugin bench -- ./my_plugin`; `rpcplugin --help` lists the commands",
        )),
        Some(Short('h') | Long("help")) => Ok(Command::Help(USAGE)),
        Some(Short('V') | Long("version")) => Ok(Command::Version),
        Some(Value(command)) if command == "bench" => parse_bench(parser),
        Some(Value(command)) if command == "help" => match parser.next()? {
            Some(Value(topic)) if topic == "bench" => Ok(Command::Help(BENCH_USAGE)),
            _ => Ok(Command::Help(USAGE)),
        },
        Some(Value(command)) => Err(UsageError::new(
            format!("unknown command {:?}", command.to_string_lossy()),
            "the only command is `bench`; `rpcplugin --help` shows how to use it",
        )),
        Some(other) => Err(UsageError::new(
            other.unexpected().to_string(),
            "options follow the command: `rpcplugin bench [OPTIONS] -- PLUGIN_COMMAND`",
        )),
    }
}

fn parse_bench(mut parser: lexopt::Parser) -> Result<Command, UsageError> {
    use lexopt::prelude::*;
    // Options are collected first and applied once the plugin command is known.
    let mut automtls = false;
    let mut cookie = None;
    let mut duration = None;
    let mut warmup = None;
    let mut concurrency = None;
    let mut size = None;
    let mut mode = None;
    let mut threads = None;
    let mut json = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(BENCH_USAGE)),
            Long("automtls") => automtls = true,
            Long("json") => json = true,
            Long("cookie") => cookie = Some(parse_cookie(&text(&mut parser, "cookie")?)?),
            Long("seconds") => {
                duration = Some(parse_seconds(
                    "seconds",
                    &text(&mut parser, "seconds")?,
                    false,
                )?);
            }
            Long("warmup") => {
                warmup = Some(parse_seconds(
                    "warmup",
                    &text(&mut parser, "warmup")?,
                    true,
                )?);
            }
            Long("concurrency") => {
                concurrency = Some(parse_count(
                    "concurrency",
                    &text(&mut parser, "concurrency")?,
                    1,
                    MAX_CONCURRENCY,
                    "--concurrency 32",
                )?);
            }
            Long("threads") => {
                threads = Some(parse_count(
                    "threads",
                    &text(&mut parser, "threads")?,
                    0,
                    MAX_THREADS,
                    "--threads 1 (or 0 for a single-threaded host)",
                )?);
            }
            Long("size") => size = Some(parse_size(&text(&mut parser, "size")?)?),
            Long("mode") => mode = Some(parse_mode(&text(&mut parser, "mode")?)?),
            Value(program) => {
                let mut opts = BenchOptions::new(program);
                opts.args = parser.raw_args()?.collect();
                opts.automtls = automtls;
                opts.json = json;
                if let Some(cookie) = cookie {
                    opts.cookie = cookie;
                }
                opts.duration = duration.unwrap_or(opts.duration);
                opts.warmup = warmup.unwrap_or(opts.warmup);
                opts.concurrency = concurrency.unwrap_or(opts.concurrency);
                opts.size = size.unwrap_or(opts.size);
                opts.mode = mode.unwrap_or(opts.mode);
                opts.threads = threads.unwrap_or(opts.threads);
                return Ok(Command::Bench(opts));
            }
            other => return Err(other.unexpected().into()),
        }
    }
    Err(UsageError::new(
        "no plugin command given",
        "put the plugin and its arguments last, after `--`: \
         `rpcplugin bench --concurrency 32 -- ./kv_plugin`",
    ))
}

/// More tasks than this measure the host's scheduler, not the plugin.
const MAX_CONCURRENCY: usize = 100_000;
/// A sanity bound; the host shares its cores with the plugin.
const MAX_THREADS: usize = 1024;

/// The value of option `--name` as UTF-8 text.
fn text(parser: &mut lexopt::Parser, name: &str) -> Result<String, UsageError> {
    parser.value()?.into_string().map_err(|value| {
        UsageError::new(
            format!("--{name} got {value:?}, which is not valid UTF-8"),
            format!("run `rpcplugin bench --help` for what --{name} takes"),
        )
    })
}

fn parse_cookie(value: &str) -> Result<(String, String), UsageError> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() && !value.is_empty() => {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err(UsageError::new(
            format!("--cookie must be KEY=VALUE, got {value:?}"),
            "use the plugin's magic cookie, e.g. --cookie BASIC_PLUGIN=hello",
        )),
    }
}

/// A number of seconds, fractions allowed, or a duration with a unit (`500ms`), as
/// the settings read them; zero only if `zero_ok`.
fn parse_seconds(name: &str, value: &str, zero_ok: bool) -> Result<Duration, UsageError> {
    let parsed = parse_duration(value).filter(|d| zero_ok || !d.is_zero());
    parsed.ok_or_else(|| {
        let what = if zero_ok {
            "a number of seconds (0 or more)"
        } else {
            "a positive number of seconds"
        };
        UsageError::new(
            format!("--{name} must be {what}, got {value:?}"),
            format!("for example --{name} 5, --{name} 0.5 or --{name} 500ms"),
        )
    })
}

/// An integer in `min..=max`.
fn parse_count(
    name: &str,
    value: &str,
    min: usize,
    max: usize,
    example: &str,
) -> Result<usize, UsageError> {
    let what = if min == 0 {
        "a non-negative integer"
    } else {
        "a positive integer"
    };
    match value.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(n) if n > max => Err(UsageError::new(
            format!("--{name} must be at most {max}, got {n}"),
            format!("for example {example}"),
        )),
        _ => Err(UsageError::new(
            format!("--{name} must be {what}, got {value:?}"),
            format!("for example {example}"),
        )),
    }
}

/// Bytes, optionally with a binary unit (`KiB`, `MiB`...), as the settings read them;
/// at most `u32::MAX` (the wire type of `DownloadRequest.chunk_size`).
fn parse_size(value: &str) -> Result<usize, UsageError> {
    let bytes = parse_bytes(value)
        .filter(|&n| n <= u64::from(u32::MAX))
        .and_then(|n| usize::try_from(n).ok());
    bytes.ok_or_else(|| {
        UsageError::new(
            format!("--size must be a number of bytes up to 4 GiB, got {value:?}"),
            "for example --size 1024, --size 64KiB or --size 1MiB",
        )
    })
}

fn parse_mode(value: &str) -> Result<Mode, UsageError> {
    match value {
        "echo" => Ok(Mode::Echo),
        "download" => Ok(Mode::Download),
        _ => Err(UsageError::new(
            format!("--mode must be echo or download, got {value:?}"),
            "--mode echo measures unary calls, --mode download streaming throughput",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(args: &[&str]) -> BenchOptions {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        match parse(all) {
            Ok(Command::Bench(opts)) => opts,
            other => panic!("expected bench options for {args:?}, got {other:?}"),
        }
    }

    fn error(args: &[&str]) -> UsageError {
        match parse(args.iter().copied()) {
            Err(err) => err,
            Ok(cmd) => panic!("expected an error for {args:?}, got {cmd:?}"),
        }
    }

    #[test]
    fn defaults_match_the_interop_contract() {
        let opts = bench(&["--", "./kv_plugin"]);
        assert!(!opts.automtls);
        assert_eq!(opts.cookie, ("BASIC_PLUGIN".into(), "hello".into()));
        assert_eq!(opts.duration, Duration::from_secs(5));
        assert_eq!(opts.warmup, Duration::from_secs(1));
        assert_eq!(opts.concurrency, 1);
        assert_eq!(opts.size, 1024);
        assert_eq!(opts.mode, Mode::Echo);
        assert!(!opts.json);
        assert_eq!(opts.program, "./kv_plugin");
        assert!(opts.args.is_empty());
    }

    #[test]
    fn every_option_is_read() {
        let opts = bench(&[
            "--automtls",
            "--cookie",
            "MY_PLUGIN=abc=def",
            "--seconds=2.5",
            "--warmup",
            "0",
            "--concurrency",
            "32",
            "--size",
            "64KiB",
            "--mode",
            "download",
            "--threads",
            "2",
            "--json",
            "--",
            "python3",
            "plugin.py",
        ]);
        assert!(opts.automtls);
        assert!(opts.json);
        assert_eq!(opts.cookie, ("MY_PLUGIN".into(), "abc=def".into()));
        assert_eq!(opts.duration, Duration::from_millis(2500));
        assert_eq!(opts.warmup, Duration::ZERO);
        assert_eq!(opts.concurrency, 32);
        assert_eq!(opts.size, 64 * 1024);
        assert_eq!(opts.mode, Mode::Download);
        assert_eq!(opts.threads, 2);
        assert_eq!(opts.program, "python3");
        assert_eq!(opts.args, vec![OsString::from("plugin.py")]);
    }

    #[test]
    fn the_plugins_own_options_are_passed_through() {
        // After the plugin command nothing is ours, `--help` and `--` included.
        let opts = bench(&["--", "./p", "--help", "--", "-x"]);
        assert_eq!(opts.program, "./p");
        assert_eq!(opts.args, vec!["--help", "--", "-x"]);
        // Without `--` the first free argument starts the plugin command too.
        let opts = bench(&["--seconds", "1", "./p", "--seconds", "9"]);
        assert_eq!(opts.duration, Duration::from_secs(1));
        assert_eq!(opts.args, vec!["--seconds", "9"]);
    }

    #[test]
    fn bad_numbers_say_what_is_expected() {
        let err = error(&["bench", "--concurrency", "0", "--", "p"]);
        assert_eq!(
            err.message,
            "--concurrency must be a positive integer, got \"0\""
        );
        assert!(err.hint.contains("--concurrency 32"), "{}", err.hint);
        let err = error(&["bench", "--concurrency", "-3", "--", "p"]);
        assert!(err.message.contains("positive integer"), "{}", err.message);
        let err = error(&["bench", "--seconds", "0", "--", "p"]);
        assert_eq!(
            err.message,
            "--seconds must be a positive number of seconds, got \"0\""
        );
        let err = error(&["bench", "--seconds", "NaN", "--", "p"]);
        assert!(err.message.contains("positive number"), "{}", err.message);
        let err = error(&["bench", "--warmup", "-1", "--", "p"]);
        assert!(err.message.contains("0 or more"), "{}", err.message);
        let err = error(&["bench", "--size", "5GiB", "--", "p"]);
        assert!(err.message.starts_with("--size must be"), "{}", err.message);
        let err = error(&["bench", "--size", "8MiB"]);
        assert_eq!(err.message, "no plugin command given");
        let err = error(&["bench", "--threads", "99999", "--", "p"]);
        assert_eq!(err.message, "--threads must be at most 1024, got 99999");
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4294967295"), Ok(u32::MAX as usize));
        assert!(parse_size("4294967296").is_err());
        assert!(parse_size("1k").is_err());
        // The settings' units: `PLUGIN_*_MAX_MESSAGE_SIZE=1GiB` and `--size 1GiB` agree.
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512 B"), Ok(512));
    }

    #[test]
    fn durations_take_the_settings_units() {
        let opts = bench(&["--seconds", "1.5s", "--warmup", "500ms", "--", "p"]);
        assert_eq!(opts.duration, Duration::from_millis(1500));
        assert_eq!(opts.warmup, Duration::from_millis(500));
        let err = error(&["bench", "--seconds", "0ms", "--", "p"]);
        assert!(err.message.contains("positive number"), "{}", err.message);
        assert!(err.hint.contains("500ms"), "{}", err.hint);
    }

    #[test]
    fn bad_words_are_named() {
        let err = error(&["bench", "--mode", "upload", "--", "p"]);
        assert_eq!(
            err.message,
            "--mode must be echo or download, got \"upload\""
        );
        let err = error(&["bench", "--cookie", "nokey", "--", "p"]);
        assert_eq!(err.message, "--cookie must be KEY=VALUE, got \"nokey\"");
        assert!(err.hint.contains("BASIC_PLUGIN=hello"));
        let err = error(&["bench", "--frobnicate", "--", "p"]);
        assert_eq!(err.message, "invalid option '--frobnicate'");
        assert!(err.hint.contains("--help"));
        let err = error(&["bench", "--seconds"]);
        assert_eq!(err.message, "missing argument for option '--seconds'");
        let err = error(&["bench", "--json=yes", "--", "p"]);
        assert!(err.message.contains("--json"), "{}", err.message);
    }

    #[test]
    fn commands_and_help() {
        assert_eq!(error(&[]).message, "no command given");
        assert_eq!(
            error(&["benchmark"]).message,
            "unknown command \"benchmark\""
        );
        assert_eq!(parse(["--help"]), Ok(Command::Help(USAGE)));
        assert_eq!(parse(["-h"]), Ok(Command::Help(USAGE)));
        assert_eq!(parse(["--version"]), Ok(Command::Version));
        assert_eq!(parse(["bench", "--help"]), Ok(Command::Help(BENCH_USAGE)));
        assert_eq!(
            parse(["bench", "--seconds", "1", "-h", "--", "p"]),
            Ok(Command::Help(BENCH_USAGE))
        );
        assert_eq!(parse(["help", "bench"]), Ok(Command::Help(BENCH_USAGE)));
        assert!(error(&["--seconds", "1"]).hint.contains("rpcplugin bench"));
    }

    #[test]
    fn usage_error_display_has_message_and_hint() {
        let err = UsageError::new("bad", "do this");
        assert_eq!(err.to_string(), "error: bad\n  hint: do this");
    }
}
