//! The command line: what `rpcplugin` accepts, declared with clap's derive and parsed
//! into plain values without any IO, so every rule (and every message a user sees for
//! a mistake) is unit-tested here.
//!
//! Values are checked by the parsers below, which return a [`UsageError`] naming the
//! flag, what it takes and an example; `main` prints that error as it is (message and
//! hint) rather than clap's wrapping of it.

use clap::{Args, Parser, Subcommand};
use rpcplugin_config::units::{parse_duration, parse_size as parse_bytes};
use rpcplugin_handshake::ReattachConfig;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `rpcplugin`: tools for go-plugin compatible gRPC plugins.
#[derive(Debug, Parser)]
#[command(
    name = "rpcplugin",
    version,
    about = "Tools for go-plugin compatible gRPC plugins, in any language",
    long_about = "Tools for go-plugin compatible gRPC plugins (rpcplugin's, HashiCorp \
                  go-plugin's, pyvider-rpcplugin's, Terraform providers): start one, \
                  answer its magic cookie, read its handshake and measure it.",
    after_help = concat!(
        "Examples:\n",
        "  rpcplugin probe -- ./kv_plugin\n",
        "  rpcplugin call --method proto.KV/Get --data '{\"key\":\"hello\"}' -- ./kv_plugin\n",
        "  rpcplugin conformance -- ./my-go-plugin\n",
        "  rpcplugin certs ca --out pki\n",
        "  rpcplugin config\n",
        "  rpcplugin bench --seconds 5 --concurrency 32 -- ./kv_plugin\n",
        "  rpcplugin completions bash > ~/.local/share/bash-completion/completions/rpcplugin\n\n",
        "Exit status:\n",
        "  0  the command worked (the plugin started and answered, the call succeeded)\n",
        "  1  the plugin or a call failed (the error and its hint are on stderr)\n",
        "  2  the command line is wrong",
    ),
    propagate_version = true
)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Launch a plugin serving bench.v1.Bench and measure it under load.
    #[command(
        long_about = "Launch a plugin, measure launch to first call, then drive \
                      bench.v1.Bench from concurrent tasks and report throughput, \
                      latency, CPU and memory.",
        after_help = BENCH_AFTER_HELP
    )]
    Bench(BenchArgs),
    /// Start a plugin and report what it announces, serves and how it stops.
    #[command(
        long_about = "Start a plugin (or attach to one with --reattach), answer its magic \
                      cookie, and report its handshake, TLS certificate, health, the \
                      services its gRPC reflection lists, whether it serves GRPCStdio \
                      and the broker, how long each start phase took, how it stopped and \
                      the tail of its stderr. Exit 0 when the plugin started and \
                      answered, 1 otherwise.",
        after_help = "Examples:\n  rpcplugin probe -- ./kv_plugin\n  \
                      rpcplugin probe --automtls --json -- ./kv_plugin\n  \
                      rpcplugin probe --terraform -- ./terraform-provider-rpcplugin"
    )]
    Probe(ProbeArgs),
    /// Call a plugin's methods with JSON in and JSON out (one response per line).
    #[command(
        long_about = "Start a plugin and make unary or server-streaming calls, in order, on \
                      that one launch: each --method with the --data of the same rank \
                      (JSON, or @FILE). Message types come from the plugin's gRPC \
                      reflection, or from --proto files compiled here (no protoc). Each \
                      response is printed as one line of JSON; a failing call prints its \
                      gRPC status and exits 1.",
        after_help = "Examples:\n  \
            rpcplugin call --method proto.KV/Put --data '{\"key\":\"a\",\"value\":\"aGk=\"}' \\\n      \
            --method proto.KV/Get --data '{\"key\":\"a\"}' -- ./kv_plugin\n  \
            rpcplugin call --proto kv.proto --method proto.KV/Get --data @get.json -- ./kv-go-plugin"
    )]
    Call(CallArgs),
    /// Hold a plugin, in any language, against go-plugin's protocol: one line per check.
    #[command(
        long_about = "Start the plugin several times as a strict go-plugin host would \
                      (without its cookie, plaintext, with SIGTERM, with AutoMTLS, on \
                      TCP) and check each rule of the protocol: PASS, FAIL (with the \
                      rule) or WARN (an optional part missing, as in old go-plugin). \
                      Exit 0 when nothing failed. --plaintext leaves out the TLS checks; \
                      --reattach cannot be used (the plugin is started many times).",
        after_help = "Examples:\n  rpcplugin conformance -- ./kv_plugin\n  \
                      rpcplugin conformance --json --terraform -- ./terraform-provider-rpcplugin"
    )]
    Conformance(ConformanceArgs),
    /// Show the effective settings, where each comes from, and unknown PLUGIN_*
    /// variables with the setting they were likely meant to be.
    #[command(after_help = "Examples:\n  rpcplugin config\n  \
                            PLUGIN_HANDSHAKE_TIMEOUT=5s rpcplugin config --file plugin.toml --json")]
    Config(ConfigArgs),
    /// Make, inspect and verify certificates for configured mutual TLS.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Example:\n  rpcplugin completions bash > ~/.local/share/bash-completion/completions/rpcplugin"
    )]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// What `rpcplugin bench --help` says after the options: the output contract
/// (INTEROP.md, "The load generator").
const BENCH_AFTER_HELP: &str = "\
Output: a table, then one line `RESULT {json}` with req_per_s, p50_us, p99_us,
p999_us, launch_to_first_call_ms, host_rss_kb, plugin_rss_kb, host_cpu_pct,
plugin_cpu_pct, errors (and mib_per_s in download mode). When calls failed, the line
adds error_codes (failed calls per gRPC code, e.g. {\"resource_exhausted\":120})
and error_p50_us, error_p99_us (how fast they failed). The exit status is 0 only
if no call failed; the RESULT line is printed either way. With stderr on a terminal,
progress is shown there while the window runs.

Example:
  rpcplugin bench --seconds 5 --concurrency 32 -- ./kv_plugin";

/// `rpcplugin bench`'s flags, exactly those of the INTEROP.md contract.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Ask for AutoMTLS (default: plaintext).
    #[arg(long)]
    automtls: bool,
    /// The plugin's magic cookie.
    #[arg(long, value_name = "KEY=VALUE", value_parser = cookie, default_value = "BASIC_PLUGIN=hello")]
    cookie: (String, String),
    /// Length of the measured window, in seconds (or with a unit: 500ms, 2m).
    #[arg(long, value_name = "N", value_parser = seconds, allow_hyphen_values = true, default_value = "5")]
    seconds: Duration,
    /// Calls before the window, not counted.
    #[arg(long, value_name = "SECS", value_parser = warmup, allow_hyphen_values = true, default_value = "1")]
    warmup: Duration,
    /// Concurrent tasks sharing one connection.
    #[arg(long, value_name = "C", value_parser = concurrency, allow_hyphen_values = true, default_value = "1")]
    concurrency: usize,
    /// Payload (echo) or chunk (download) size; KiB, MiB and GiB suffixes allowed, up
    /// to 4 GiB - 1.
    #[arg(long, value_name = "BYTES", value_parser = size, default_value = "1024")]
    size: usize,
    /// Unary Echo calls, or Download streams of ~1 MiB per call.
    #[arg(long, value_name = "echo|download", value_parser = mode, default_value = "echo")]
    mode: Mode,
    /// Worker threads of the host's runtime; 0 runs everything on one thread.
    // PERFORMANCE.md: a current-thread client beats multi-thread shapes on two cores
    // shared with the plugin. Measured with kv_plugin, c=32: 53-60k req/s here,
    // 47-57k with one worker, 26-34k with two.
    #[arg(long, value_name = "N", value_parser = threads, allow_hyphen_values = true, default_value = "0")]
    threads: usize,
    /// Print only the RESULT line on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// The plugin and its arguments, after `--` (or from the first argument that is
    /// not an option).
    #[arg(value_name = "PLUGIN_COMMAND", trailing_var_arg = true)]
    command: Vec<OsString>,
}

/// How to start (or attach to) the plugin: the flags every command that runs a plugin
/// takes, with the same meaning everywhere.
#[derive(Debug, Clone, Args)]
pub(crate) struct LaunchArgs {
    /// The plugin's magic cookie [default: BASIC_PLUGIN=hello].
    #[arg(long, value_name = "KEY=VALUE", value_parser = cookie)]
    pub(crate) cookie: Option<(String, String)>,
    /// A Terraform provider: Terraform's magic cookie and protocol versions 5,6.
    #[arg(long, conflicts_with = "cookie")]
    pub(crate) terraform: bool,
    /// The app protocol versions the host offers, comma-separated [default: 1, or 5,6
    /// with --terraform].
    #[arg(long, value_name = "LIST", value_parser = versions)]
    pub(crate) protocol_versions: Option<Versions>,
    /// Ask for AutoMTLS: the host sends a certificate and pins the plugin's.
    #[arg(long, conflicts_with = "plaintext")]
    pub(crate) automtls: bool,
    /// Plaintext gRPC (the default, so that plugins without TLS can be checked).
    #[arg(long)]
    pub(crate) plaintext: bool,
    /// A variable for the plugin's environment; repeat for more.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = env_var)]
    pub(crate) env: Vec<(String, String)>,
    /// How long to wait for the handshake, and for each call.
    #[arg(long, value_name = "DURATION", value_parser = timeout, default_value = "10s")]
    pub(crate) timeout: Duration,
    /// Attach to a running plugin instead of starting one: the reattach JSON it printed
    /// in debug mode. The plugin is left running.
    #[arg(long, value_name = "JSON", value_parser = reattach, conflicts_with = "command")]
    pub(crate) reattach: Option<ReattachConfig>,
    /// The plugin and its arguments, after `--` (or from the first argument that is
    /// not an option).
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub(crate) command: Vec<OsString>,
}

/// The magic cookie of Terraform providers (terraform-plugin-go's handshake).
pub(crate) const TERRAFORM_COOKIE: (&str, &str) = (
    "TF_PLUGIN_MAGIC_COOKIE",
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2",
);

/// What to start: a command, or a running plugin to attach to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Start this program with these arguments.
    Command(OsString, Vec<OsString>),
    /// Attach to this running plugin.
    Reattach(ReattachConfig),
}

impl LaunchArgs {
    /// The cookie the host presents.
    pub(crate) fn cookie(&self) -> (String, String) {
        if self.terraform {
            return (TERRAFORM_COOKIE.0.to_owned(), TERRAFORM_COOKIE.1.to_owned());
        }
        self.cookie
            .clone()
            .unwrap_or_else(|| ("BASIC_PLUGIN".to_owned(), "hello".to_owned()))
    }

    /// The app protocol versions the host offers.
    pub(crate) fn versions(&self) -> Vec<u32> {
        match (&self.protocol_versions, self.terraform) {
            (Some(Versions(list)), _) => list.clone(),
            (None, true) => vec![5, 6],
            (None, false) => vec![1],
        }
    }

    /// What to start or attach to; `example` is the command for the hint.
    pub(crate) fn target(&self, example: &str) -> Result<Target, UsageError> {
        if let Some(config) = &self.reattach {
            return Ok(Target::Reattach(config.clone()));
        }
        let (program, args) =
            split_command(self.command.clone(), example).map_err(|err| UsageError {
                hint: format!(
                    "{}, or attach to a running one with --reattach JSON",
                    err.hint
                ),
                ..err
            })?;
        Ok(Target::Command(program, args))
    }
}

/// A list of app protocol versions (`--protocol-versions 5,6`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Versions(pub(crate) Vec<u32>);

fn versions(value: &str) -> Result<Versions, UsageError> {
    let parsed: Option<Vec<u32>> = value
        .split(',')
        .map(|v| v.trim().parse::<u32>().ok().filter(|&n| n > 0))
        .collect();
    match parsed {
        Some(list) if !list.is_empty() => Ok(Versions(list)),
        _ => Err(UsageError::new(
            format!(
                "--protocol-versions must be positive integers separated by commas, got {value:?}"
            ),
            "for example --protocol-versions 1 or --protocol-versions 5,6",
        )),
    }
}

fn env_var(value: &str) -> Result<(String, String), UsageError> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains('\0') && !value.contains('\0') => {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err(UsageError::new(
            format!("--env must be KEY=VALUE, got {value:?}"),
            "for example --env RUST_LOG=debug (repeat --env for more variables)",
        )),
    }
}

fn timeout(value: &str) -> Result<Duration, UsageError> {
    parse_seconds("timeout", value, false)
}

fn reattach(value: &str) -> Result<ReattachConfig, UsageError> {
    ReattachConfig::from_json(value).map_err(|err| {
        UsageError::new(
            format!("--reattach: {}", err.message()),
            err.hint()
                .unwrap_or("pass the JSON line the plugin printed in debug mode")
                .to_owned(),
        )
    })
}

/// `rpcplugin probe`'s flags.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// How to start the plugin.
    #[command(flatten)]
    pub(crate) launch: LaunchArgs,
    /// Print one JSON object on stdout instead of the report.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `rpcplugin call`'s flags.
#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// How to start the plugin.
    #[command(flatten)]
    pub(crate) launch: LaunchArgs,
    /// A method to call, SERVICE/METHOD (e.g. proto.KV/Get); repeat for more calls,
    /// made in order.
    #[arg(long, value_name = "SERVICE/METHOD", required = true, value_parser = method)]
    pub(crate) method: Vec<(String, String)>,
    /// The request of the --method of the same rank, as JSON, or @FILE to read it from
    /// a file (@- reads stdin) [default: {}].
    #[arg(long, value_name = "JSON|@FILE")]
    pub(crate) data: Vec<String>,
    /// A .proto file describing the services, compiled here: for plugins that serve
    /// no reflection. Repeat for more files.
    #[arg(long, value_name = "FILE")]
    pub(crate) proto: Vec<PathBuf>,
    /// A directory the --proto files' imports are relative to (each file's own
    /// directory is one already).
    #[arg(long, value_name = "DIR")]
    pub(crate) import_path: Vec<PathBuf>,
}

impl CallArgs {
    /// The calls, each method with its JSON text (`{}` without one; `@FILE` read).
    pub(crate) fn requests(&self) -> Result<Vec<crate::call::Request>, UsageError> {
        if self.data.len() > self.method.len() {
            return Err(UsageError::new(
                format!(
                    "{} --data for {} --method",
                    self.data.len(),
                    self.method.len()
                ),
                "give each --method its --data, in the same order",
            ));
        }
        self.method
            .iter()
            .enumerate()
            .map(|(i, (service, method))| {
                let json = match self.data.get(i) {
                    Some(value) => crate::call::read_data(value).map_err(|text| UsageError {
                        message: text
                            .trim_start_matches("error: ")
                            .split("\n  hint: ")
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                        hint: "give the path of a file holding the request as JSON, or the JSON itself".into(),
                    })?,
                    None => "{}".to_owned(),
                };
                Ok(crate::call::Request {
                    service: service.clone(),
                    method: method.clone(),
                    json,
                })
            })
            .collect()
    }
}

fn method(value: &str) -> Result<(String, String), UsageError> {
    crate::call::split_method(value).ok_or_else(|| {
        UsageError::new(
            format!("--method must be SERVICE/METHOD, got {value:?}"),
            "use the full service name and the method, e.g. --method proto.KV/Get \
             (`rpcplugin probe` lists them)",
        )
    })
}

/// `rpcplugin conformance`'s flags.
#[derive(Debug, Args)]
pub(crate) struct ConformanceArgs {
    /// How to start the plugin.
    #[command(flatten)]
    pub(crate) launch: LaunchArgs,
    /// Print one JSON object (every check, and the counts) instead of the list.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `rpcplugin config`'s flags.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// A config file (TOML, YAML or JSON) instead of the one PLUGIN_CONFIG_FILE names.
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `rpcplugin certs` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Make a certificate authority: DIR/ca.pem and DIR/ca-key.pem.
    #[command(after_help = "Example:\n  rpcplugin certs ca --out pki")]
    Ca(CaArgs),
    /// Issue a plugin (--server) or host (--client) certificate from a CA made by
    /// `certs ca`: DIR/NAME.pem and DIR/NAME-key.pem, and the variables that use them.
    #[command(
        after_help = "Examples:\n  rpcplugin certs issue --ca pki --name kv-plugin --server --out pki\n  \
                            rpcplugin certs issue --ca pki --name host --client --out pki"
    )]
    Issue(IssueArgs),
    /// Show what certificates say: subject, SANs, key type, validity, days left,
    /// SHA-256 fingerprint.
    Inspect(InspectArgs),
    /// Check that a certificate chains to a CA (with the intermediates that follow
    /// it in its file), and is valid now.
    #[command(after_help = "Example:\n  rpcplugin certs verify --ca pki/ca.pem pki/kv-plugin.pem")]
    Verify(VerifyArgs),
}

/// Key types a generated certificate can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KeyArg {
    /// ECDSA P-256 (accepted everywhere).
    P256,
    /// ECDSA P-384.
    P384,
    /// ECDSA P-521 (what go-plugin's AutoMTLS uses).
    P521,
    /// Ed25519.
    Ed25519,
}

/// `certs ca`.
#[derive(Debug, Args)]
pub(crate) struct CaArgs {
    /// The directory to write to (made if missing; existing files are never overwritten).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// The CA's common name.
    #[arg(long, default_value = "rpcplugin CA")]
    pub(crate) name: String,
    /// The key type.
    #[arg(long, value_enum, default_value = "p256")]
    pub(crate) key: KeyArg,
    /// Days of validity [default: 365].
    #[arg(long, value_parser = days)]
    pub(crate) days: Option<u32>,
}

/// `certs issue`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["server", "client"])))]
pub(crate) struct IssueArgs {
    /// The directory of the CA (its ca.pem and ca-key.pem).
    #[arg(long, value_name = "DIR")]
    pub(crate) ca: PathBuf,
    /// The certificate's name: its common name and first SAN (a DNS name or an IP
    /// address; localhost and the loopback addresses are added), and its file names.
    #[arg(long)]
    pub(crate) name: String,
    /// A plugin's certificate (serverAuth).
    #[arg(long)]
    pub(crate) server: bool,
    /// A host's certificate (clientAuth).
    #[arg(long)]
    pub(crate) client: bool,
    /// The directory to write to (made if missing; existing files are never overwritten).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// The key type.
    #[arg(long, value_enum, default_value = "p256")]
    pub(crate) key: KeyArg,
    /// Days of validity [default: 30].
    #[arg(long, value_parser = days)]
    pub(crate) days: Option<u32>,
}

/// `certs inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A PEM (or DER) file with one or more certificates.
    pub(crate) file: PathBuf,
    /// Print a JSON array, one object per certificate.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `certs verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The trusted CA certificate(s).
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: PathBuf,
    /// The certificate, followed in the same file by any intermediates.
    pub(crate) cert: PathBuf,
}

fn days(value: &str) -> Result<u32, UsageError> {
    match value.trim().parse::<u32>() {
        Ok(n) if (1..=36_500).contains(&n) => Ok(n),
        _ => Err(UsageError::new(
            format!("--days must be a whole number of days from 1 to 36500, got {value:?}"),
            "for example --days 90",
        )),
    }
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

/// Everything `rpcplugin bench` was told, checked.
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

impl BenchArgs {
    /// The checked options; the plugin command is required.
    pub(crate) fn into_options(self) -> Result<BenchOptions, UsageError> {
        let (program, args) = split_command(self.command, "bench --concurrency 32")?;
        Ok(BenchOptions {
            automtls: self.automtls,
            cookie: self.cookie,
            duration: self.seconds,
            warmup: self.warmup,
            concurrency: self.concurrency,
            size: self.size,
            mode: self.mode,
            threads: self.threads,
            json: self.json,
            program,
            args,
        })
    }
}

/// The program and its arguments, or the error for a command line without them.
fn split_command(
    command: Vec<OsString>,
    example: &str,
) -> Result<(OsString, Vec<OsString>), UsageError> {
    let mut parts = command.into_iter();
    let Some(program) = parts.next() else {
        return Err(UsageError::new(
            "no plugin command given",
            format!(
                "put the plugin and its arguments last, after `--`: \
                 `rpcplugin {example} -- ./kv_plugin`"
            ),
        ));
    };
    Ok((program, parts.collect()))
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
    pub(crate) fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
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

impl std::error::Error for UsageError {}

/// Parses the arguments after the program name (for tests; `main` goes through
/// [`Cli::try_parse`]).
#[cfg(test)]
pub(crate) fn parse<I>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator,
    I::Item: Into<OsString> + Clone,
{
    Cli::try_parse_from(
        std::iter::once(OsString::from("rpcplugin")).chain(args.into_iter().map(Into::into)),
    )
}

/// What to print for a command line clap refused: our own message and hint when one
/// of the value parsers below refused a value, clap's text otherwise.
pub(crate) fn render_clap_error(err: &clap::Error) -> String {
    use std::error::Error as _;
    match err.source().and_then(|s| s.downcast_ref::<UsageError>()) {
        Some(usage) => usage.to_string(),
        None => err.render().to_string(),
    }
}

/// More tasks than this measure the host's scheduler, not the plugin.
const MAX_CONCURRENCY: usize = 100_000;
/// A sanity bound; the host shares its cores with the plugin.
const MAX_THREADS: usize = 1024;

/// `--cookie KEY=VALUE` (the value may itself contain `=`).
pub(crate) fn cookie(value: &str) -> Result<(String, String), UsageError> {
    key_value(value).ok_or_else(|| {
        UsageError::new(
            format!("--cookie must be KEY=VALUE, got {value:?}"),
            "use the plugin's magic cookie, e.g. --cookie BASIC_PLUGIN=hello",
        )
    })
}

/// `KEY=VALUE` with a non-empty key and value.
fn key_value(value: &str) -> Option<(String, String)> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() && !value.is_empty() => {
            Some((key.to_owned(), value.to_owned()))
        }
        _ => None,
    }
}

fn seconds(value: &str) -> Result<Duration, UsageError> {
    parse_seconds("seconds", value, false)
}

fn warmup(value: &str) -> Result<Duration, UsageError> {
    parse_seconds("warmup", value, true)
}

fn concurrency(value: &str) -> Result<usize, UsageError> {
    parse_count("concurrency", value, 1, MAX_CONCURRENCY, "--concurrency 32")
}

fn threads(value: &str) -> Result<usize, UsageError> {
    parse_count(
        "threads",
        value,
        0,
        MAX_THREADS,
        "--threads 1 (or 0 for a single-threaded host)",
    )
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
fn size(value: &str) -> Result<usize, UsageError> {
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

fn mode(value: &str) -> Result<Mode, UsageError> {
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
            Ok(Cli {
                command: Command::Bench(bench),
            }) => bench.into_options().expect("a plugin command"),
            other => panic!("expected bench options for {args:?}, got {other:?}"),
        }
    }

    /// The message `main` prints for a refused command line.
    fn error(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Err(err) => render_clap_error(&err),
            Ok(Cli {
                command: Command::Bench(bench),
            }) => match bench.into_options() {
                Err(err) => err.to_string(),
                Ok(opts) => panic!("expected an error for {args:?}, got {opts:?}"),
            },
            Ok(cli) => panic!("expected an error for {args:?}, got {cli:?}"),
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
        assert_eq!(opts.threads, 0);
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
            err,
            "error: --concurrency must be a positive integer, got \"0\"\n  \
             hint: for example --concurrency 32"
        );
        let err = error(&["bench", "--concurrency", "-3", "--", "p"]);
        assert!(err.contains("positive integer"), "{err}");
        let err = error(&["bench", "--seconds", "0", "--", "p"]);
        assert!(
            err.contains("--seconds must be a positive number of seconds, got \"0\""),
            "{err}"
        );
        let err = error(&["bench", "--seconds", "NaN", "--", "p"]);
        assert!(err.contains("positive number"), "{err}");
        let err = error(&["bench", "--warmup", "-1", "--", "p"]);
        assert!(err.contains("0 or more"), "{err}");
        let err = error(&["bench", "--size", "5GiB", "--", "p"]);
        assert!(err.starts_with("error: --size must be"), "{err}");
        let err = error(&["bench", "--size", "8MiB"]);
        assert!(err.starts_with("error: no plugin command given"), "{err}");
        assert!(err.contains("hint: put the plugin"), "{err}");
        let err = error(&["bench", "--threads", "99999", "--", "p"]);
        assert!(
            err.contains("--threads must be at most 1024, got 99999"),
            "{err}"
        );
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("1KiB"), Ok(1024));
        assert_eq!(size("4MiB"), Ok(4 << 20));
        assert_eq!(size("4294967295"), Ok(u32::MAX as usize));
        assert!(size("4294967296").is_err());
        assert!(size("1k").is_err());
        // The settings' units: `PLUGIN_*_MAX_MESSAGE_SIZE=1GiB` and `--size 1GiB` agree.
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("512 B"), Ok(512));
    }

    #[test]
    fn durations_take_the_settings_units() {
        let opts = bench(&["--seconds", "1.5s", "--warmup", "500ms", "--", "p"]);
        assert_eq!(opts.duration, Duration::from_millis(1500));
        assert_eq!(opts.warmup, Duration::from_millis(500));
        let err = error(&["bench", "--seconds", "0ms", "--", "p"]);
        assert!(err.contains("positive number"), "{err}");
        assert!(err.contains("500ms"), "{err}");
    }

    #[test]
    fn bad_words_are_named() {
        let err = error(&["bench", "--mode", "upload", "--", "p"]);
        assert!(
            err.contains("--mode must be echo or download, got \"upload\""),
            "{err}"
        );
        let err = error(&["bench", "--cookie", "nokey", "--", "p"]);
        assert!(
            err.contains("--cookie must be KEY=VALUE, got \"nokey\""),
            "{err}"
        );
        assert!(err.contains("BASIC_PLUGIN=hello"));
        // clap's own messages for what its parser refuses, with a pointer to --help.
        let err = error(&["bench", "--frobnicate", "--", "p"]);
        assert!(err.contains("unexpected argument '--frobnicate'"), "{err}");
        assert!(err.contains("--help"), "{err}");
        let err = error(&["bench", "--seconds"]);
        assert!(
            err.contains("a value is required for '--seconds <N>'"),
            "{err}"
        );
        let err = error(&["bench", "--json=yes", "--", "p"]);
        assert!(err.contains("--json"), "{err}");
    }

    #[test]
    fn commands_and_help() {
        let kind = |args: &[&str]| parse(args.iter().copied()).unwrap_err().kind();
        use clap::error::ErrorKind;
        assert_eq!(
            kind(&[]),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert_eq!(kind(&["benchmark"]), ErrorKind::InvalidSubcommand);
        assert_eq!(kind(&["--help"]), ErrorKind::DisplayHelp);
        assert_eq!(kind(&["-h"]), ErrorKind::DisplayHelp);
        assert_eq!(kind(&["--version"]), ErrorKind::DisplayVersion);
        assert_eq!(kind(&["bench", "--help"]), ErrorKind::DisplayHelp);
        assert_eq!(
            kind(&["bench", "--seconds", "1", "-h", "--", "p"]),
            ErrorKind::DisplayHelp
        );
        assert_eq!(kind(&["help", "bench"]), ErrorKind::DisplayHelp);
        // `benchmark` is close enough to `bench` for clap to suggest it.
        let err = error(&["benchmark"]);
        assert!(err.contains("'bench'"), "{err}");
    }

    fn probe(args: &[&str]) -> ProbeArgs {
        let mut all = vec!["probe"];
        all.extend_from_slice(args);
        match parse(all) {
            Ok(Cli {
                command: Command::Probe(probe),
            }) => probe,
            other => panic!("expected probe options for {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn launch_flags_have_go_plugin_defaults() {
        let p = probe(&["--", "./kv_plugin", "-v"]);
        assert_eq!(p.launch.cookie(), ("BASIC_PLUGIN".into(), "hello".into()));
        assert_eq!(p.launch.versions(), [1]);
        assert!(!p.launch.automtls);
        assert_eq!(p.launch.timeout, Duration::from_secs(10));
        assert!(!p.json);
        match p.launch.target("probe").unwrap() {
            Target::Command(program, args) => {
                assert_eq!(program, "./kv_plugin");
                assert_eq!(args, ["-v"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn terraform_sets_its_cookie_and_versions() {
        let p = probe(&["--terraform", "--json", "--", "./provider"]);
        assert_eq!(p.launch.cookie().0, "TF_PLUGIN_MAGIC_COOKIE");
        assert_eq!(p.launch.versions(), [5, 6]);
        assert!(p.json);
        let p = probe(&[
            "--terraform",
            "--protocol-versions",
            "6",
            "--",
            "./provider",
        ]);
        assert_eq!(p.launch.versions(), [6]);
        let err = error(&["probe", "--terraform", "--cookie", "A=b", "--", "p"]);
        assert!(err.contains("cannot be used with"), "{err}");
    }

    #[test]
    fn launch_flags_are_read_and_checked() {
        let p = probe(&[
            "--automtls",
            "--cookie",
            "K=v",
            "--env",
            "A=1",
            "--env=B=x=y",
            "--timeout",
            "500ms",
            "--protocol-versions",
            "2, 3",
            "./p",
        ]);
        assert!(p.launch.automtls);
        assert_eq!(p.launch.cookie(), ("K".into(), "v".into()));
        assert_eq!(
            p.launch.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(p.launch.timeout, Duration::from_millis(500));
        assert_eq!(p.launch.versions(), [2, 3]);
        let err = error(&["probe", "--automtls", "--plaintext", "--", "p"]);
        assert!(err.contains("cannot be used with"), "{err}");
        let err = error(&["probe", "--protocol-versions", "1,x", "--", "p"]);
        assert!(
            err.contains("--protocol-versions must be positive integers"),
            "{err}"
        );
        let err = error(&["probe", "--env", "NOVALUE", "--", "p"]);
        assert!(err.contains("--env must be KEY=VALUE"), "{err}");
        let err = error(&["probe", "--reattach", "{}", "--", "p"]);
        assert!(err.contains("--reattach"), "{err}");
        assert!(err.contains("hint:"), "{err}");
        let p = probe(&[]);
        let err = p.launch.target("probe").unwrap_err();
        assert_eq!(err.message, "no plugin command given");
        assert!(err.hint.contains("--reattach"), "{}", err.hint);
    }

    #[test]
    fn reattach_replaces_the_command() {
        let json = r#"{"Protocol":"grpc","ProtocolVersion":1,"Pid":42,"Addr":{"Network":"unix","String":"/tmp/x/plugin.sock"}}"#;
        let p = probe(&["--reattach", json]);
        match p.launch.target("probe").unwrap() {
            Target::Reattach(config) => assert_eq!(config.pid, 42),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn calls_pair_methods_with_their_data() {
        let call = |args: &[&str]| match parse(["call"].iter().chain(args).copied()) {
            Ok(Cli {
                command: Command::Call(call),
            }) => call,
            other => panic!("expected call options for {args:?}, got {other:?}"),
        };
        let c = call(&[
            "--method",
            "proto.KV/Put",
            "--data",
            r#"{"key":"a"}"#,
            "--method",
            "proto.KV.Get",
            "--proto",
            "kv.proto",
            "--",
            "./p",
        ]);
        let requests = c.requests().unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            (requests[0].service.as_str(), requests[0].method.as_str()),
            ("proto.KV", "Put")
        );
        assert_eq!(requests[0].json, r#"{"key":"a"}"#);
        assert_eq!(requests[1].method, "Get");
        assert_eq!(requests[1].json, "{}");
        assert_eq!(c.proto, [PathBuf::from("kv.proto")]);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("get.json");
        std::fs::write(&file, r#"{"key":"from a file"}"#).unwrap();
        let data = format!("@{}", file.display());
        let c = call(&["--method", "proto.KV/Get", "--data", &data, "./p"]);
        assert_eq!(c.requests().unwrap()[0].json, r#"{"key":"from a file"}"#);

        let c = call(&["--method", "a.B/C", "--data", "@/nonexistent/x.json", "./p"]);
        let err = c.requests().unwrap_err();
        assert!(
            err.message
                .starts_with("cannot read --data @/nonexistent/x.json"),
            "{}",
            err.message
        );
        let c = call(&["--method", "a.B/C", "--data", "{}", "--data", "{}", "./p"]);
        assert_eq!(c.requests().unwrap_err().message, "2 --data for 1 --method");
        let err = error(&["call", "--method", "Get", "--", "p"]);
        assert!(err.contains("--method must be SERVICE/METHOD"), "{err}");
        let err = error(&["call", "--", "p"]);
        assert!(err.contains("--method <SERVICE/METHOD>"), "{err}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_error_display_has_message_and_hint() {
        let err = UsageError::new("bad", "do this");
        assert_eq!(err.to_string(), "error: bad\n  hint: do this");
    }
}
