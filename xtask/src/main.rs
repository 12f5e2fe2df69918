//! Project automation: `cargo xtask <command>`.
//!
//! - `codegen [--check]`: regenerate (or check) the committed gRPC code from `proto/`,
//!   docs/configuration.md, and the list of error codes in docs/troubleshooting.md.
//! - `interop [go|python|terraform]`: run rpcplugin's examples against real
//!   go-plugin (Go) and pyvider-rpcplugin (Python) peers, installing what is missing,
//!   and the example Terraform provider under the real Terraform CLI
//!   (`interop terraform --bench [--rounds N]`: its start-up figures, in release).
//! - `bench [--seconds N] [--rounds R] [--only KEYS] [--record]`: the benchmark matrix
//!   in release, every pairing of rpcplugin, go-plugin and pyvider hosts and plugins,
//!   with ratios and the performance targets (`--record` writes docs/performance.md).
//! - `fuzz [--seconds N] [TARGET...]`: the cargo-fuzz targets, each for a bounded time.
//! - `deny`: cargo-deny (licenses, bans, sources; advisories where the RustSec
//!   database can be fetched) over the main workspace and `fuzz/`.
//! - `package`: `cargo package` (with verification) of every published crate, and
//!   their crates.io and docs.rs metadata.
//! - `ci`: everything CI checks, in order.

mod bench;
mod codegen;
mod codesdoc;
mod configdoc;
mod deny;
mod fuzz;
mod interop;
mod package;
mod terraform;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    match args.first().map(String::as_str) {
        Some("codegen") => {
            let check = args.iter().any(|a| a == "--check");
            codegen::run(&root, check)?;
            configdoc::run(&root, check)?;
            codesdoc::run(&root, check)
        }
        Some("interop") => interop::run(&root, &args[1..]),
        Some("bench") => bench::run(&root, &args[1..]),
        Some("fuzz") => fuzz::run(&root, &args[1..]),
        Some("deny") => deny::run(&root),
        Some("package") => package::run(&root),
        Some("ci") => ci(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 codegen [--check]   regenerate the committed gRPC code, docs/configuration.md and the error codes of docs/troubleshooting.md (or fail if stale)\n  \
                 interop [go|python|terraform]\n                      \
                 run the examples against go-plugin and pyvider peers, the provider under Terraform\n  \
                 interop terraform --bench [--rounds N]\n                      \
                 Terraform's provider start-up and plan/apply times (release provider)\n  \
                 bench [--seconds N] [--rounds R] [--only KEYS] [--record]\n                      \
                 the benchmark matrix in release: rpcplugin, go-plugin, pyvider, raw tonic\n  \
                 fuzz [--seconds N] [TARGET...]\n                      \
                 run the fuzz targets, each for N seconds (default 30)\n  \
                 deny                cargo-deny: licenses, bans, sources, advisories\n  \
                 package             cargo package of every published crate, and its metadata\n  \
                 ci                  fmt, codegen check, deny, clippy, tests, doc, interop"
            );
            bail!("unknown or missing command");
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Runs a command in `dir`, echoing it, and fails when it fails.
fn run_cmd(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} {} failed: {status}", args.join(" "));
    }
    Ok(())
}

/// Runs `command` to its end with stdin closed and its output captured in files (a
/// pipe that nobody drains could block it), killing it after `timeout`.
fn output_with_timeout(
    command: &mut std::process::Command,
    timeout: std::time::Duration,
) -> Result<std::process::Output> {
    use std::process::Stdio;
    let dir = tempfile::tempdir()?;
    let (stdout_path, stderr_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .with_context(|| format!("cannot run {}", command.get_program().to_string_lossy()))?;
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("no result within {timeout:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: std::fs::read(&stdout_path)?,
        stderr: std::fs::read(&stderr_path)?,
    })
}

/// What .ci/run checks, in the order that fails fastest.
fn ci(root: &Path) -> Result<()> {
    run_cmd(root, "cargo", &["fmt", "--all", "--", "--check"], &[])?;
    codegen::run(root, true)?;
    configdoc::run(root, true)?;
    codesdoc::run(root, true)?;
    deny::run(root)?;
    run_cmd(
        root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    run_cmd(
        root,
        "cargo",
        &["nextest", "run", "--workspace", "--profile", "ci"],
        &[],
    )?;
    // The `otel` feature (off by default): its code, unit tests and the
    // cross-process trace test.
    let otel = [
        "-p",
        "rpcplugin",
        "-p",
        "rpcplugin-client",
        "-p",
        "rpcplugin-server",
    ];
    run_cmd(
        root,
        "cargo",
        &[
            &["clippy", "--all-targets", "--features", "otel"][..],
            &otel,
            &["--", "-D", "warnings"],
        ]
        .concat(),
        &[],
    )?;
    // Selecting test targets builds no example: build the one the test starts.
    run_cmd(
        root,
        "cargo",
        &[
            "build",
            "-p",
            "rpcplugin",
            "--features",
            "otel",
            "--example",
            "traced_plugin",
        ],
        &[],
    )?;
    run_cmd(
        root,
        "cargo",
        &[
            &["nextest", "run", "--profile", "ci", "--features", "otel"][..],
            &otel,
            &["--lib", "--test", "trace_context", "--test", "metrics"],
        ]
        .concat(),
        &[],
    )?;
    // A plugin author's crate outside the workspace (its own proto, plugin and
    // in-process test), depending on the facade by path as a user would.
    run_cmd(
        &root.join("tests/empty-crate"),
        "cargo",
        &["test", "--locked", "--offline"],
        &[],
    )?;
    run_cmd(root, "cargo", &["test", "--workspace", "--doc"], &[])?;
    run_cmd(
        root,
        "cargo",
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    run_cmd(
        root,
        "cargo",
        &[&["doc", "--no-deps", "--features", "otel"][..], &otel].concat(),
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    check_layers(root)?;
    package::run(root)?;
    interop::run(root, &[])
}

/// The layering rule of ../shared/design/ARCHITECTURE.md, when the checker is beside us.
fn check_layers(root: &Path) -> Result<()> {
    let checker = root.join("../shared/tools/check-layers.py");
    if checker.exists() {
        run_cmd(root, "python3", &[&checker.to_string_lossy()], &[])?;
    } else {
        eprintln!("layering check skipped: {} not found", checker.display());
    }
    Ok(())
}
