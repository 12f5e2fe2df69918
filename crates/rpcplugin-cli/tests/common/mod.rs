//! What the CLI's tests share: building the workspace's plugins into this test's
//! target directory, running `rpcplugin` under a time limit, and checking that no
//! process outlived it.

#![allow(dead_code)] // Each test file uses its own part.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const RPCPLUGIN: &str = env!("CARGO_BIN_EXE_rpcplugin");

/// target/<profile>, where this test's `rpcplugin` was built.
fn profile_dir() -> &'static Path {
    Path::new(RPCPLUGIN)
        .parent()
        .expect("the binary is in target/<profile>")
}

/// Runs `cargo build` with `args` for this test's target directory and profile. The
/// plugins belong to other packages, so cargo does not build them for this crate's
/// tests. `--workspace` resolves features as a workspace-wide `cargo test` does, so
/// after one the build is a no-op.
fn cargo_build(args: &[&str]) {
    let profile_dir = profile_dir();
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory is in the target directory");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a profile directory name");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&root)
        .args(["build", "--quiet", "--workspace"])
        .args(args)
        .arg("--target-dir")
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// Builds example `name` of the root package and returns its path.
pub(crate) fn example(name: &str) -> PathBuf {
    cargo_build(&["--example", name]);
    let path = profile_dir().join("examples").join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// `examples/kv_plugin.rs`: go-plugin's KV example and bench.v1.Bench.
pub(crate) fn kv_plugin() -> PathBuf {
    example("kv_plugin")
}

/// The Terraform provider of examples/terraform-provider-rpcplugin.
pub(crate) fn terraform_provider() -> PathBuf {
    cargo_build(&["--bin", "terraform-provider-rpcplugin"]);
    let path = profile_dir().join("terraform-provider-rpcplugin");
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Runs `rpcplugin` with `args`, killing it if it takes longer than `limit`.
pub(crate) fn rpcplugin(args: &[&str], limit: Duration) -> Output {
    rpcplugin_with_env(args, &[], limit)
}

/// [`rpcplugin`] with variables added to its environment (which the plugin inherits).
pub(crate) fn rpcplugin_with_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut child = Command::new(RPCPLUGIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rpcplugin starts");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for rpcplugin").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "rpcplugin {args:?} ran longer than {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

/// Waits up to two seconds for `pid` to be gone (a plugin's reaper may still be
/// sending its SIGKILL), and says whether it is.
pub(crate) fn gone_soon(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A small shell script in `dir`, made executable: a plugin that misbehaves.
pub(crate) fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make the script executable");
    path
}

/// stdout and stderr, for assertion messages.
pub(crate) fn outputs(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one JSON object `--json` printed on stdout.
pub(crate) fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e})\n{}", outputs(out)))
}
