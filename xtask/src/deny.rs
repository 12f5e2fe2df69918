//! `cargo xtask deny`: cargo-deny over both workspaces, the main one and `fuzz/`
//! (its own workspace with its own Cargo.lock), with the rules of `deny.toml`.
//!
//! Licenses, bans and sources need only the lock files and the registry's crate
//! metadata, so they are always checked. Advisories need the RustSec database, a git
//! repository on GitHub: they are checked when it can be fetched, and when it cannot
//! (the project's own machines reach only the crates.io, PyPI, Debian and npm
//! registries) the run says so on stderr rather than pass in silence or fail on
//! something the code did not do.

use crate::{output_with_timeout, run_cmd};
use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The checks that need nothing beyond Cargo.lock.
const OFFLINE_CHECKS: &[&str] = &["licenses", "bans", "sources"];

/// Long enough to clone the database over a slow link; an unreachable host fails
/// within seconds anyway, and git gives up by itself on a transfer that stalls
/// (`GIT_HTTP_LOW_SPEED_*` below), so the kill at this deadline is a last resort.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) fn run(root: &Path) -> Result<()> {
    if Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        bail!(
            "cargo-deny is not installed; install it with `cargo install --locked cargo-deny` \
             (.ci/run does this on a fresh machine)"
        );
    }
    // `--workspace`: the root manifest is also the facade package, and without it
    // cargo-deny would check the facade's graph only (not the CLI, not xtask).
    let main: &[&str] = &["deny", "--workspace", "--locked"];
    // fuzz/Cargo.lock follows the library crates' dependencies only when someone
    // builds the fuzz targets, so it is checked as cargo would resolve it today (no
    // `--locked`). The skips for xtask's build tools do not occur there.
    let fuzz: &[&str] = &[
        "deny",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--config",
        "deny.toml",
    ];
    let fuzz_lints: &[&str] = &["--allow", "unmatched-skip"];
    run_cmd(
        root,
        "cargo",
        &[main, &["check"], OFFLINE_CHECKS].concat(),
        &[],
    )?;
    run_cmd(
        root,
        "cargo",
        &[fuzz, &["check"], fuzz_lints, OFFLINE_CHECKS].concat(),
        &[],
    )?;

    eprintln!("$ cargo-deny fetch db");
    // cargo-deny itself rather than through `cargo`: a kill at the deadline then
    // reaches the process that runs git, not a wrapper that would leave it behind.
    let fetched = output_with_timeout(
        Command::new("cargo-deny")
            .args(["fetch", "db"])
            .env("GIT_HTTP_LOW_SPEED_LIMIT", "1000")
            .env("GIT_HTTP_LOW_SPEED_TIME", "60")
            .current_dir(root),
        FETCH_TIMEOUT,
    );
    match fetched {
        Ok(output) if output.status.success() => {
            // The database is local now: check against it without fetching again.
            run_cmd(
                root,
                "cargo",
                &[main, &["--offline", "check", "advisories"]].concat(),
                &[],
            )?;
            run_cmd(
                root,
                "cargo",
                &[fuzz, &["--offline", "check"], fuzz_lints, &["advisories"]].concat(),
                &[],
            )
        }
        failed => {
            let why = match failed {
                Ok(output) => String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no message")
                    .to_owned(),
                Err(err) => err.to_string(),
            };
            eprintln!(
                "ADVISORIES NOT CHECKED: the RustSec advisory database cannot be fetched \
                 from this machine ({why}).\n\
                 Licenses, bans and sources were checked. Run `cargo deny --workspace check \
                 advisories` on a machine that reaches GitHub."
            );
            Ok(())
        }
    }
}
