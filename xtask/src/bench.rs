//! `cargo xtask bench [--seconds N] [--rounds R] [--only NAMES] [--record]`: the
//! benchmark matrix.
//!
//! Builds `rpcplugin` (the CLI), `kv_plugin` and `raw_tonic` in release, and, when
//! they can be built here, the go-plugin 1.0.1 peers (`tests/interop/go/build.sh`) and
//! the pyvider-rpcplugin 0.5.5 peers (`tests/interop/python/setup.sh`). Every pairing
//! of host and plugin runs every workload, round after round, alternating contenders
//! inside each round so that the drift of a noisy machine hits all of them alike. All
//! three load generators (`rpcplugin bench`, Go `bench-host`, Python `bench_host.py`)
//! take the same arguments and print the same `RESULT` line (INTEROP.md), so one
//! parser reads them all.
//!
//! Prints one table per workload, medians with ratios against go-plugin (its Go host
//! with its Go plugin), then the issue's targets, each with the figure that decides
//! it; `--record` writes both to docs/performance.md with the machine and the command.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The implementations whose hosts and plugins are paired.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Rust,
    Go,
    Python,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Rust => "rpcplugin",
            Side::Go => "go-plugin",
            Side::Python => "pyvider",
        }
    }
}

/// Who drives the load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Host {
    /// A framework's host (its load generator) with a framework's plugin.
    Framework(Side, Side),
    /// `examples/raw_tonic`: plain tonic on both ends, no framework (the ceiling).
    RawTonic,
}

/// One way of running host and plugin.
struct Contender {
    /// The short name `--only` selects and the targets refer to.
    key: &'static str,
    host: Host,
    automtls: bool,
    env: &'static [(&'static str, &'static str)],
}

impl Contender {
    fn name(&self) -> String {
        let mut name = match self.host {
            Host::Framework(host, plugin) if host == plugin => {
                format!("{} both sides", host.label())
            }
            Host::Framework(host, plugin) => {
                format!("{} host, {} plugin", host.label(), plugin.label())
            }
            Host::RawTonic => "raw tonic (no framework)".to_owned(),
        };
        if self
            .env
            .iter()
            .any(|(k, v)| *k == "PLUGIN_SERVER_TRANSPORTS" && *v == "tcp")
        {
            name.push_str(", tcp");
        }
        if self.automtls {
            name.push_str(", AutoMTLS");
        }
        name
    }

    fn needs(&self, side: Side) -> bool {
        matches!(self.host, Host::Framework(h, p) if h == side || p == side)
    }
}

const fn pair(key: &'static str, host: Side, plugin: Side, automtls: bool) -> Contender {
    Contender {
        key,
        host: Host::Framework(host, plugin),
        automtls,
        env: &[],
    }
}

const TCP: &[(&str, &str)] = &[("PLUGIN_SERVER_TRANSPORTS", "tcp")];

const CONTENDERS: &[Contender] = &[
    pair("rust", Side::Rust, Side::Rust, false),
    pair("go", Side::Go, Side::Go, false),
    pair("python", Side::Python, Side::Python, false),
    Contender {
        key: "raw",
        host: Host::RawTonic,
        automtls: false,
        env: &[],
    },
    pair("rust-go", Side::Rust, Side::Go, false),
    pair("go-rust", Side::Go, Side::Rust, false),
    pair("rust-python", Side::Rust, Side::Python, false),
    pair("python-rust", Side::Python, Side::Rust, false),
    pair("go-python", Side::Go, Side::Python, false),
    pair("python-go", Side::Python, Side::Go, false),
    Contender {
        key: "rust-tcp",
        host: Host::Framework(Side::Rust, Side::Rust),
        automtls: false,
        env: TCP,
    },
    pair("rust-tls", Side::Rust, Side::Rust, true),
    pair("go-tls", Side::Go, Side::Go, true),
    pair("python-tls", Side::Python, Side::Python, true),
    Contender {
        key: "rust-tcp-tls",
        host: Host::Framework(Side::Rust, Side::Rust),
        automtls: true,
        env: TCP,
    },
];

/// One load shape.
struct Workload {
    name: &'static str,
    args: &'static [&'static str],
    download: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "echo 1 KiB, concurrency 1",
        args: &["--concurrency", "1", "--size", "1024"],
        download: false,
    },
    Workload {
        name: "echo 1 KiB, concurrency 32",
        args: &["--concurrency", "32", "--size", "1024"],
        download: false,
    },
    Workload {
        name: "download, 64 KiB messages, concurrency 1",
        args: &[
            "--concurrency",
            "1",
            "--size",
            "65536",
            "--mode",
            "download",
        ],
        download: true,
    },
];

const ECHO_1: usize = 0;
const ECHO_32: usize = 1;
const DOWNLOAD: usize = 2;

/// The figures of one run, from its RESULT line (NaN where it had none).
#[derive(Debug, Clone, Copy)]
struct Figures {
    req_per_s: f64,
    mib_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    launch_ms: f64,
    plugin_rss_kb: f64,
    host_rss_kb: f64,
}

/// Where the programs are.
struct Programs {
    cli: PathBuf,
    raw: PathBuf,
    rust_plugin: PathBuf,
    /// `OUTDIR` of the Go peers, when they built.
    go: Option<PathBuf>,
    /// The virtualenv's python and the peers' directory, when set up.
    python: Option<(PathBuf, PathBuf)>,
}

impl Programs {
    fn has(&self, side: Side) -> bool {
        match side {
            Side::Rust => true,
            Side::Go => self.go.is_some(),
            Side::Python => self.python.is_some(),
        }
    }

    /// The host's load generator: program and leading arguments.
    fn host(&self, side: Side) -> (PathBuf, Vec<String>) {
        match side {
            Side::Rust => (self.cli.clone(), vec!["bench".into()]),
            Side::Go => (
                self.go.as_ref().expect("Go peers").join("bench-host"),
                vec![],
            ),
            Side::Python => {
                let (python, dir) = self.python.as_ref().expect("Python peers");
                (python.clone(), vec![path(&dir.join("bench_host.py"))])
            }
        }
    }

    /// The plugin command.
    fn plugin(&self, side: Side) -> Vec<String> {
        match side {
            Side::Rust => vec![path(&self.rust_plugin)],
            Side::Go => vec![path(&self.go.as_ref().expect("Go peers").join("kv-plugin"))],
            Side::Python => {
                let (python, dir) = self.python.as_ref().expect("Python peers");
                vec![path(python), path(&dir.join("kv_plugin.py"))]
            }
        }
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

const USAGE: &str =
    "usage: cargo xtask bench [--seconds N] [--rounds R] [--only KEY,KEY...] [--record]";

/// A run that takes longer than this is killed (a hung peer must not hang the matrix).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = "3".to_owned();
    let mut rounds = 3usize;
    let mut record = false;
    let mut only: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => seconds = it.next().context("--seconds needs a value")?.clone(),
            "--rounds" => {
                rounds = it
                    .next()
                    .context("--rounds needs a value")?
                    .parse()
                    .context("--rounds must be a positive integer")?;
            }
            "--only" => {
                let list = it.next().context("--only needs a list of contender keys")?;
                only = Some(list.split(',').map(str::to_owned).collect());
            }
            "--record" => record = true,
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if let Some(keys) = &only
        && let Some(bad) = keys
            .iter()
            .find(|k| !CONTENDERS.iter().any(|c| c.key == *k))
    {
        let known: Vec<_> = CONTENDERS.iter().map(|c| c.key).collect();
        bail!("--only: no contender {bad:?}; known: {}", known.join(", "));
    }
    let programs = build(root)?;

    let contenders: Vec<&Contender> = CONTENDERS
        .iter()
        .filter(|c| {
            only.as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k == c.key))
        })
        .filter(|c| {
            let missing = [Side::Go, Side::Python]
                .into_iter()
                .find(|side| c.needs(*side) && !programs.has(*side));
            if let Some(side) = missing {
                eprintln!(
                    "skipping {}: the {} peers are not available",
                    c.name(),
                    side.label()
                );
            }
            missing.is_none()
        })
        .collect();

    // (workload, contender key) -> one Figures per successful round
    let mut results: BTreeMap<(usize, &'static str), Vec<Figures>> = BTreeMap::new();
    let mut failures = Vec::new();
    for round in 1..=rounds {
        for (w, workload) in WORKLOADS.iter().enumerate() {
            for contender in &contenders {
                match run_one(&programs, &seconds, workload, contender) {
                    Ok(figures) => {
                        eprintln!(
                            "round {round}/{rounds}  {:<40} {:<44} {:>9.0} req/s  p50 {:>6.0} us  launch {:>6.1} ms",
                            workload.name,
                            contender.name(),
                            figures.req_per_s,
                            figures.p50_us,
                            figures.launch_ms
                        );
                        results.entry((w, contender.key)).or_default().push(figures);
                    }
                    Err(err) => {
                        let what = format!("{} / {}", workload.name, contender.name());
                        eprintln!("round {round}/{rounds}  FAILED {what}: {err:#}");
                        failures.push(what);
                    }
                }
            }
        }
    }

    let mut report = render(&results, &contenders, rounds, &seconds);
    report.push_str(&targets(&results));
    if !failures.is_empty() {
        failures.sort();
        failures.dedup();
        let _ = writeln!(report, "\nRuns that failed (left out of the medians):\n");
        for f in &failures {
            let _ = writeln!(report, "- {f}");
        }
    }
    println!("{report}");
    if record {
        let doc = root.join("docs/performance.md");
        write_record(&doc, &report, rounds, &seconds)?;
        eprintln!("wrote {}", doc.display());
    }
    Ok(())
}

/// Builds what the matrix runs; the peers only when they can be built here.
fn build(root: &Path) -> Result<Programs> {
    crate::run_cmd(
        root,
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "rpcplugin-cli",
            "--bin",
            "rpcplugin",
        ],
        &[],
    )?;
    crate::run_cmd(
        root,
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "rpcplugin",
            "--example",
            "kv_plugin",
            "--example",
            "raw_tonic",
        ],
        &[],
    )?;
    let out = root.join("target/interop");
    std::fs::create_dir_all(&out)?;
    let go_dir = out.join("go");
    let go = match crate::run_cmd(
        root,
        "bash",
        &["tests/interop/go/build.sh", &path(&go_dir)],
        &[],
    ) {
        Ok(()) => Some(go_dir),
        Err(err) => {
            eprintln!("warning: no go-plugin peers ({err:#}); their contenders are skipped");
            None
        }
    };
    let venv = out.join("venv");
    let python = match crate::run_cmd(
        root,
        "bash",
        &["tests/interop/python/setup.sh", &path(&venv)],
        &[],
    ) {
        Ok(()) => Some((venv.join("bin/python"), root.join("tests/interop/python"))),
        Err(err) => {
            eprintln!("warning: no pyvider peers ({err:#}); their contenders are skipped");
            None
        }
    };
    Ok(Programs {
        cli: root.join("target/release/rpcplugin"),
        raw: root.join("target/release/examples/raw_tonic"),
        rust_plugin: root.join("target/release/examples/kv_plugin"),
        go,
        python,
    })
}

fn run_one(
    programs: &Programs,
    seconds: &str,
    workload: &Workload,
    contender: &Contender,
) -> Result<Figures> {
    let mut command = match contender.host {
        Host::RawTonic => {
            let mut command = Command::new(&programs.raw);
            command.args(["--seconds", seconds]).args(workload.args);
            command
        }
        Host::Framework(host, plugin) => {
            let (program, lead) = programs.host(host);
            let mut command = Command::new(program);
            command.args(lead);
            if contender.automtls {
                command.arg("--automtls");
            }
            command
                .args(["--json", "--seconds", seconds])
                .args(workload.args)
                .arg("--")
                .args(programs.plugin(plugin));
            command
        }
    };
    command.envs(contender.env.iter().copied());
    let output = crate::output_with_timeout(&mut command, RUN_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        bail!(
            "exit {}; last lines of stderr:\n  {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("no RESULT line on stdout")?;
    parse_result(line)
}

fn parse_result(line: &str) -> Result<Figures> {
    let json: serde_json::Value = serde_json::from_str(line).context("RESULT is not JSON")?;
    let num = |key: &str| {
        json[key]
            .as_f64()
            .with_context(|| format!("RESULT has no number {key}: {line}"))
    };
    // raw_tonic reads no /proc figures, and only download runs have MiB/s.
    let maybe = |key: &str| json[key].as_f64().unwrap_or(f64::NAN);
    Ok(Figures {
        req_per_s: num("req_per_s")?,
        mib_per_s: maybe("mib_per_s"),
        p50_us: num("p50_us")?,
        p99_us: num("p99_us")?,
        launch_ms: num("launch_to_first_call_ms")?,
        plugin_rss_kb: maybe("plugin_rss_kb"),
        host_rss_kb: maybe("host_rss_kb"),
    })
}

/// The median of the finite values; NaN when there are none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

type Results = BTreeMap<(usize, &'static str), Vec<Figures>>;

/// The median of one figure of one cell.
fn cell(results: &Results, workload: usize, key: &str, figure: fn(&Figures) -> f64) -> f64 {
    results
        .iter()
        .find(|((w, k), _)| *w == workload && *k == key)
        .map_or(f64::NAN, |(_, runs)| median(runs.iter().map(figure)))
}

fn fmt(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "–".to_owned()
    }
}

fn with_unit(value: f64, unit: &str) -> String {
    if value.is_finite() {
        format!("{value:.2}{unit}")
    } else {
        "–".to_owned()
    }
}

fn ratio(value: f64, base: f64) -> String {
    if value.is_finite() && base.is_finite() && base > 0.0 {
        format!("{:.2}", value / base)
    } else {
        "–".to_owned()
    }
}

fn render(results: &Results, contenders: &[&Contender], rounds: usize, seconds: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Medians of {rounds} round(s) of {seconds} s per cell (after 1 s of warm-up); \
         *x go* is the ratio to go-plugin's Go host with its Go plugin in the same run.\n"
    );
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let base = |figure: fn(&Figures) -> f64| cell(results, w, "go", figure);
        let _ = writeln!(out, "### {}\n", workload.name);
        let (rate_name, rate): (&str, fn(&Figures) -> f64) = if workload.download {
            ("MiB/s", |f| f.mib_per_s)
        } else {
            ("req/s", |f| f.req_per_s)
        };
        let _ = writeln!(
            out,
            "| contender | {rate_name} | x go | p50 µs | x go | p99 µs | launch to first call ms | x go | plugin RSS MB | host RSS MB |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for contender in contenders {
            let get = |figure: fn(&Figures) -> f64| cell(results, w, contender.key, figure);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                contender.name(),
                fmt(get(rate), 0),
                ratio(get(rate), base(rate)),
                fmt(get(|f| f.p50_us), 0),
                ratio(get(|f| f.p50_us), base(|f| f.p50_us)),
                fmt(get(|f| f.p99_us), 0),
                fmt(get(|f| f.launch_ms), 1),
                ratio(get(|f| f.launch_ms), base(|f| f.launch_ms)),
                fmt(get(|f| f.plugin_rss_kb) / 1024.0, 1),
                fmt(get(|f| f.host_rss_kb) / 1024.0, 1),
            );
        }
        out.push('\n');
    }
    out
}

/// The issue's targets, each decided by figures of this run.
fn targets(results: &Results) -> String {
    let get = |w: usize, key: &str, figure: fn(&Figures) -> f64| cell(results, w, key, figure);
    // Every run launches the plugin once, so launch times pool all workloads.
    let launches = |key: &str| {
        median(
            results
                .iter()
                .filter(|((_, k), _)| *k == key)
                .flat_map(|(_, runs)| runs.iter().map(|f| f.launch_ms)),
        )
    };
    let rps = |f: &Figures| f.req_per_s;
    let p50 = |f: &Figures| f.p50_us;
    let mib = |f: &Figures| f.mib_per_s;
    let rss = |f: &Figures| f.plugin_rss_kb;
    // (target, measured, met?)
    let mut rows: Vec<(&str, String, Option<bool>)> = Vec::new();
    let mut at_least = |name: &'static str, value: f64, limit: f64, unit: &str| {
        let met = value.is_finite().then_some(value >= limit);
        rows.push((name, with_unit(value, unit), met));
    };
    at_least(
        "c=32 throughput ≥ 2.5x go-plugin",
        get(ECHO_32, "rust", rps) / get(ECHO_32, "go", rps),
        2.5,
        "x",
    );
    at_least(
        "c=32 throughput ≥ 0.95x raw tonic",
        get(ECHO_32, "rust", rps) / get(ECHO_32, "raw", rps),
        0.95,
        "x",
    );
    at_least(
        "download ≥ 5x go-plugin's MiB/s",
        get(DOWNLOAD, "rust", mib) / get(DOWNLOAD, "go", mib),
        5.0,
        "x",
    );
    at_least(
        "AutoMTLS c=32 throughput ≥ 0.85x plaintext",
        get(ECHO_32, "rust-tls", rps) / get(ECHO_32, "rust", rps),
        0.85,
        "x",
    );
    let mut at_most = |name: &'static str, value: f64, limit: f64, unit: &str| {
        let met = value.is_finite().then_some(value <= limit);
        rows.push((name, with_unit(value, unit), met));
    };
    at_most(
        "c=1 p50 ≤ 0.5x go-plugin",
        get(ECHO_1, "rust", p50) / get(ECHO_1, "go", p50),
        0.5,
        "x",
    );
    at_most(
        "launch, plaintext ≤ 0.4x go-plugin (all runs)",
        launches("rust") / launches("go"),
        0.4,
        "x",
    );
    at_most(
        "launch, AutoMTLS < 5 ms (all runs)",
        launches("rust-tls"),
        5.0,
        " ms",
    );
    at_most(
        "plugin RSS after c=32 load < 8 MB (plaintext)",
        get(ECHO_32, "rust", rss) / 1024.0,
        8.0,
        " MB",
    );
    at_most(
        "plugin RSS after c=32 load < 8 MB (AutoMTLS)",
        get(ECHO_32, "rust-tls", rss) / 1024.0,
        8.0,
        " MB",
    );
    let mut out = String::from(
        "### Targets (issue 7)\n\n| target | measured | met |\n| --- | ---: | --- |\n",
    );
    for (name, value, met) in rows {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {name} | {value} | {met} |");
    }
    out
}

fn write_record(doc: &Path, report: &str, rounds: usize, seconds: &str) -> Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let text = format!(
        "# Performance\n\n\
         Measured with `cargo xtask bench --rounds {rounds} --seconds {seconds} --record`. It \
         builds in release and runs every pairing of host and plugin among rpcplugin, \
         go-plugin 1.0.1 (Debian's, Go host `bench-host`) and pyvider-rpcplugin 0.5.5 (Python \
         host `bench_host.py`), plus plain tonic with no framework, alternating contenders \
         within each round. The three load generators take the same arguments and print the \
         same `RESULT` line (INTEROP.md), over a Unix socket unless the row says tcp.\n\n\
         Machine: {cores} cores, {cpu}, Linux {kernel}. Host and plugin share the cores, and \
         the figures move by 10-20 % between runs on this shared machine: compare rows of one \
         table, not tables.\n\n\
         {report}\n\
         - *launch to first call*: from just before spawning the plugin to the first \
         successful `Bench/Echo` reply, key generation and TLS handshake included.\n\
         - An rpcplugin plugin serves a pyvider host on loopback TCP: pyvider's gRPC sends \
         the socket path as the HTTP/2 authority over Unix sockets, which h2 refuses \
         (docs/interop.md).\n"
    );
    // Notes written by hand below the marker survive a new record.
    let kept = std::fs::read_to_string(doc)
        .ok()
        .and_then(|old| old.find(MARKER).map(|i| old[i..].to_owned()))
        .unwrap_or_else(|| format!("{MARKER}\n"));
    std::fs::write(doc, format!("{text}\n{kept}"))
        .with_context(|| format!("cannot write {}", doc.display()))
}

/// Everything from this line on in docs/performance.md is kept by `--record`.
const MARKER: &str = "<!-- notes below are kept by cargo xtask bench --record -->";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_result_line_of_every_load_generator() {
        let f = parse_result(r#"{"req_per_s":100.5, "mib_per_s":6.0, "p50_us":9, "p99_us":20, "p999_us":30, "launch_to_first_call_ms":4.5, "host_rss_kb":null, "plugin_rss_kb":2048, "host_cpu_pct":null, "plugin_cpu_pct":null, "errors":0}"#)
            .unwrap();
        assert_eq!(f.req_per_s, 100.5);
        assert_eq!(f.mib_per_s, 6.0);
        assert!(f.host_rss_kb.is_nan());
        assert_eq!(f.plugin_rss_kb, 2048.0);
        assert!(parse_result(r#"{"p50_us":9}"#).is_err());
    }

    #[test]
    fn medians_skip_what_was_not_measured() {
        assert_eq!(median([3.0, f64::NAN, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0].into_iter()), 2.5);
        assert!(median(std::iter::empty()).is_nan());
    }

    #[test]
    fn a_missing_baseline_is_reported_as_not_measured() {
        let mut results = Results::new();
        let figures = Figures {
            req_per_s: 1000.0,
            mib_per_s: f64::NAN,
            p50_us: 50.0,
            p99_us: 90.0,
            launch_ms: 3.0,
            plugin_rss_kb: 6000.0,
            host_rss_kb: 7000.0,
        };
        results.insert((ECHO_32, "rust"), vec![figures]);
        let text = targets(&results);
        assert!(
            text.contains("| c=32 throughput ≥ 2.5x go-plugin | – | not measured |"),
            "{text}"
        );
        assert!(
            text.contains("| plugin RSS after c=32 load < 8 MB (plaintext) | 5.86 MB | yes |"),
            "{text}"
        );
    }

    #[test]
    fn contender_keys_are_unique() {
        let mut keys: Vec<_> = CONTENDERS.iter().map(|c| c.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), CONTENDERS.len());
    }
}
