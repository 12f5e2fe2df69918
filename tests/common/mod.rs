//! Helpers shared by the root integration tests: finding the example binaries,
//! watching processes and sockets, bounded waits.
//!
//! Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

pub(crate) mod events;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rpcplugin::Endpoint;

/// The cookie of `examples/kv_plugin.rs`.
pub(crate) const COOKIE: (&str, &str) = ("BASIC_PLUGIN", "hello");

/// The path of an example binary built next to this test binary.
///
/// `cargo test` and `cargo nextest run` build the examples before running tests, so
/// a missing binary means the tests were built some other way; fail loudly rather
/// than skip.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test binary");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "example binary {} is missing; run `cargo build --examples` (cargo test and \
         cargo nextest run build it on their own)",
        path.display()
    );
    path
}

/// A host-side builder for `examples/kv_plugin` with its cookie.
pub(crate) fn kv_plugin() -> rpcplugin::client::Builder {
    rpcplugin::plugin_client(example("kv_plugin")).handshake(COOKIE.0, COOKIE.1)
}

/// Logs from the library (and the plugin's stderr, which the client forwards) in the
/// test output; `RUST_LOG=debug` for more.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "rpcplugin=info,rpcplugin_client=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Prints the error as a user sees it (visible with `--nocapture`) and returns it.
pub(crate) fn show(err: rpcplugin::Error) -> rpcplugin::Error {
    println!(
        "--- what the user sees ---\n{}\n--- code {} kind {:?} ---",
        rpcplugin::render(&err),
        err.code(),
        err.kind()
    );
    err
}

/// The hint of an error, or a test failure that shows the whole error.
pub(crate) fn hint(err: &rpcplugin::Error) -> &str {
    err.hint()
        .unwrap_or_else(|| panic!("error has no hint: {}", rpcplugin::render(err)))
}

/// The socket path of a Unix endpoint; fails the test for TCP.
pub(crate) fn socket_path(endpoint: &Endpoint) -> PathBuf {
    match endpoint {
        Endpoint::Unix(path) => path.clone(),
        other => panic!("expected a Unix socket endpoint, got {other:?}"),
    }
}

/// Whether a process with this pid exists and has not exited.
///
/// `kill(pid, 0)` alone counts zombies as alive, and an orphan's zombie may linger
/// until init reaps it, so a zombie (state `Z` or `X` in `/proc/PID/stat`) counts as
/// gone.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_err() {
        return false;
    }
    match process_state(pid) {
        Some(state) => !matches!(state, 'Z' | 'X'),
        // kill says it exists but /proc does not (another pid namespace): trust kill.
        None => true,
    }
}

/// The one-letter state of a process from `/proc/PID/stat` (`T` once stopped).
pub(crate) fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; the state follows
    // the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Live (non-zombie) processes in process group `pgid`.
pub(crate) fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            // After the name: state ppid pgrp ...
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
            pgrp == Some(pgid) && !matches!(state, "Z" | "X")
        })
        .collect()
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub(crate) async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_until`], for tests without a runtime.
pub(crate) fn wait_until_blocking(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Awaits `fut`, failing the test with `what` if it takes longer than `timeout`.
pub(crate) async fn within<T>(timeout: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {timeout:?}"))
}

/// Arguments for `sh` that write the shell's pid to `pid_file`, then `exec` the
/// command (same pid): how a test learns the pid of a plugin whose start fails.
pub(crate) fn exec_recording_pid(pid_file: &Path, program: &Path, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        "-c".to_owned(),
        r#"echo $$ > "$0"; exec "$@""#.to_owned(),
        pid_file.display().to_string(),
        program.display().to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv
}

/// Reads a pid a shell wrote with `echo $$ > file`.
pub(crate) fn read_pid(file: &Path) -> u32 {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read pid file {}: {e}", file.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {} holds {text:?}: {e}", file.display()))
}

/// Whether a killed process can be reaped: gone or a zombie, with every thread
/// finished (a zombie leader waits for its other threads).
pub(crate) fn reapable(pid: u32) -> bool {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    !pid_alive(pid) && threads <= 1
}

/// Builds the Go peers from `tests/interop/go` (once per test process; `flock` keeps parallel test
/// processes from building into the same directory at once). `None` means Go is
/// not installed and cannot be.
pub(crate) fn go_peers() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = root.join("target/interop/go");
            std::fs::create_dir_all(&out).expect("target/interop/go can be made");
            let script = root.join("tests/interop/go/build.sh");
            let output = Command::new("flock")
                .arg(out.join(".build.lock"))
                .arg("bash")
                .arg(&script)
                .arg(&out)
                .output()
                .expect("flock and bash run");
            if output.status.success() {
                return Some(out);
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            let has_go = Command::new("sh")
                .args(["-c", "command -v go || test -x /usr/lib/go/bin/go"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !has_go && stderr.contains("not root") {
                eprintln!(
                    "SKIP: Go is not installed and cannot be installed here (not root):\n{stderr}"
                );
                return None;
            }
            panic!(
                "building the Go peers failed ({}):\n{stderr}",
                output.status
            );
        })
        .clone()
}

/// Ends a plugin a test started by hand the way a host would: SIGTERM, so an
/// rpcplugin plugin removes its socket and private directory, then SIGKILL if it
/// has not exited within 2 s. Returns whether SIGTERM was enough.
pub(crate) fn terminate(pid: u32) -> bool {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pid_t = Pid::from_raw(pid as i32);
    let _ = kill(pid_t, Signal::SIGTERM);
    let exited = wait_until_blocking(Duration::from_secs(2), || reapable(pid));
    if !exited {
        let _ = kill(pid_t, Signal::SIGKILL);
    }
    exited
}
