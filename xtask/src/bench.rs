//! `cargo xtask bench [--seconds N] [--rounds R] [--record]`: the benchmark matrix.
//!
//! Builds `rpcplugin` (the CLI) and `kv_plugin` in release, then runs `rpcplugin bench`
//! for every contender and workload, round after round, alternating contenders inside
//! each round so that drift of a noisy machine hits all of them alike. Prints one table
//! of medians with ratios to the first contender (rpcplugin over a Unix socket in
//! plaintext); `--record` also writes it to docs/performance.md with the machine and the
//! command.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// One way of running the plugin.
struct Contender {
    name: &'static str,
    /// `raw_tonic` instead of `rpcplugin bench`: plain tonic, no framework.
    raw: bool,
    bench_args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const CONTENDERS: &[Contender] = &[
    Contender {
        name: "rpcplugin, unix, plaintext",
        raw: false,
        bench_args: &[],
        env: &[],
    },
    Contender {
        name: "rpcplugin, unix, AutoMTLS",
        raw: false,
        bench_args: &["--automtls"],
        env: &[],
    },
    Contender {
        name: "rpcplugin, tcp, plaintext",
        raw: false,
        bench_args: &[],
        env: &[("PLUGIN_SERVER_TRANSPORTS", "tcp")],
    },
    Contender {
        name: "rpcplugin, tcp, AutoMTLS",
        raw: false,
        bench_args: &["--automtls"],
        env: &[("PLUGIN_SERVER_TRANSPORTS", "tcp")],
    },
    Contender {
        name: "raw tonic, unix (ceiling)",
        raw: true,
        bench_args: &[],
        env: &[],
    },
];

/// One load shape.
struct Workload {
    name: &'static str,
    args: &'static [&'static str],
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "echo 1 KiB, c=1",
        args: &["--concurrency", "1", "--size", "1024"],
    },
    Workload {
        name: "echo 1 KiB, c=32",
        args: &["--concurrency", "32", "--size", "1024"],
    },
];

/// The figures of one run, from its RESULT line.
#[derive(Debug, Clone, Copy)]
struct Figures {
    req_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    launch_ms: f64,
    plugin_rss_kb: f64,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = "5".to_owned();
    let mut rounds = 3usize;
    let mut record = false;
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
            "--record" => record = true,
            other => bail!(
                "unknown argument {other:?}; usage: cargo xtask bench [--seconds N] [--rounds R] [--record]"
            ),
        }
    }
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
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
    let cli = root.join("target/release/rpcplugin");
    let plugin = root.join("target/release/examples/kv_plugin");
    let raw = root.join("target/release/examples/raw_tonic");

    // (workload, contender) -> one Figures per round
    let mut results: BTreeMap<(usize, usize), Vec<Figures>> = BTreeMap::new();
    for round in 1..=rounds {
        for (w, workload) in WORKLOADS.iter().enumerate() {
            for (c, contender) in CONTENDERS.iter().enumerate() {
                let figures = run_one(&cli, &plugin, &raw, &seconds, workload, contender)
                    .with_context(|| format!("{} / {}", workload.name, contender.name))?;
                eprintln!(
                    "round {round}/{rounds}  {:<18} {:<28} {:>9.0} req/s  p50 {:>5.0} us  launch {:>5.1} ms",
                    workload.name,
                    contender.name,
                    figures.req_per_s,
                    figures.p50_us,
                    figures.launch_ms
                );
                results.entry((w, c)).or_default().push(figures);
            }
        }
    }

    let table = render(&results, rounds, &seconds);
    println!("{table}");
    if record {
        let doc = root.join("docs/performance.md");
        write_record(&doc, &table, rounds, &seconds)?;
        eprintln!("wrote {}", doc.display());
    }
    Ok(())
}

fn run_one(
    cli: &Path,
    plugin: &Path,
    raw: &Path,
    seconds: &str,
    workload: &Workload,
    contender: &Contender,
) -> Result<Figures> {
    let mut command = if contender.raw {
        Command::new(raw)
    } else {
        let mut command = Command::new(cli);
        command.arg("bench").args(contender.bench_args);
        command
    };
    command
        .args(["--seconds", seconds])
        .args(workload.args)
        .envs(contender.env.iter().copied());
    if !contender.raw {
        command.arg("--").arg(plugin);
    }
    let output = command.output().context("cannot run the benchmark")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "rpcplugin bench failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("no RESULT line")?;
    let json: serde_json::Value = serde_json::from_str(line).context("RESULT is not JSON")?;
    let num = |key: &str| {
        json[key]
            .as_f64()
            .with_context(|| format!("RESULT has no number {key}: {line}"))
    };
    Ok(Figures {
        req_per_s: num("req_per_s")?,
        p50_us: num("p50_us")?,
        p99_us: num("p99_us")?,
        launch_ms: num("launch_to_first_call_ms")?,
        // raw_tonic does not read /proc.
        plugin_rss_kb: json["plugin_rss_kb"].as_f64().unwrap_or(f64::NAN),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn render(
    results: &BTreeMap<(usize, usize), Vec<Figures>>,
    rounds: usize,
    seconds: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Medians of {rounds} round(s) of {seconds} s per cell; ratios against the first row of each workload.\n"
    );
    let _ = writeln!(
        out,
        "| workload | contender | req/s | x | p50 µs | x | p99 µs | launch to first call ms | x | plugin RSS MB |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let base = &results[&(w, 0)];
        let base_rps = median(base.iter().map(|f| f.req_per_s).collect());
        let base_p50 = median(base.iter().map(|f| f.p50_us).collect());
        let base_launch = median(base.iter().map(|f| f.launch_ms).collect());
        for (c, contender) in CONTENDERS.iter().enumerate() {
            let runs = &results[&(w, c)];
            let rps = median(runs.iter().map(|f| f.req_per_s).collect());
            let p50 = median(runs.iter().map(|f| f.p50_us).collect());
            let p99 = median(runs.iter().map(|f| f.p99_us).collect());
            let launch = median(runs.iter().map(|f| f.launch_ms).collect());
            let rss = median(runs.iter().map(|f| f.plugin_rss_kb).collect()) / 1024.0;
            let _ = writeln!(
                out,
                "| {} | {} | {rps:.0} | {:.2} | {p50:.0} | {:.2} | {p99:.0} | {launch:.1} | {:.2} | {rss:.1} |",
                workload.name,
                contender.name,
                rps / base_rps,
                p50 / base_p50,
                launch / base_launch,
            );
        }
    }
    out
}

fn write_record(doc: &Path, table: &str, rounds: usize, seconds: &str) -> Result<()> {
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
         Measured with `cargo xtask bench --rounds {rounds} --seconds {seconds} --record`, \
         which builds in release and drives `rpcplugin bench` (the load generator of \
         INTEROP.md) against `examples/kv_plugin`, alternating contenders within each round.\n\n\
         Machine: {cores} cores, {cpu}, Linux {kernel}. The figures move by 10-20 % between \
         runs on this shared machine; compare rows of one table, not tables.\n\n\
         {table}\n\
         - *launch to first call*: from just before spawning the plugin to the first \
         successful `Bench/Echo` reply, key generation and TLS handshake included.\n\
         - AutoMTLS generates an ECDSA P-256 pair in each process, and aws-lc is built \
         without CPU jitter entropy (`.cargo/config.toml`): with it, the first random byte \
         of each process costs about 60 ms. See docs/security.md.\n"
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
