//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz targets in
//! `fuzz/`, each for a bounded time (default 30 s), one after the other.
//!
//! Needs `cargo install cargo-fuzz`. libFuzzer's instrumentation needs `-Z` flags;
//! the stable toolchain accepts them with `RUSTC_BOOTSTRAP=1`, which is set here.
//! A crash stops the run with libFuzzer's report; the input is saved under
//! `fuzz/artifacts/TARGET/` and becomes a regression test by adding it to
//! `fuzz/seeds/TARGET/` (and a unit test in the crate, if the bug is worth naming).

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// Every target in fuzz/Cargo.toml.
const TARGETS: &[&str] = &["handshake_line", "config_env", "log_line"];

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = 30u64;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a value")?
                    .parse()
                    .context("--seconds must be a whole number of seconds")?;
            }
            name if TARGETS.contains(&name) => targets.push(name.to_owned()),
            other => bail!(
                "unknown argument {other:?}; usage: cargo xtask fuzz [--seconds N] [{}]",
                TARGETS.join("|")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    let probe = Command::new("cargo").args(["fuzz", "--version"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        bail!("cargo-fuzz is not installed; run `cargo install cargo-fuzz` and try again");
    }
    for target in &targets {
        let corpus = format!("fuzz/corpus/{target}");
        std::fs::create_dir_all(root.join(&corpus))?;
        let seeds = format!("fuzz/seeds/{target}");
        let max_time = format!("-max_total_time={seconds}");
        crate::run_cmd(
            root,
            "cargo",
            &["fuzz", "run", target, &corpus, &seeds, "--", &max_time],
            &[("RUSTC_BOOTSTRAP", "1")],
        )
        .with_context(|| format!("fuzz target {target} failed; see fuzz/artifacts/{target}/"))?;
        eprintln!("fuzz: {target} ran {seconds} s without a crash");
    }
    Ok(())
}
