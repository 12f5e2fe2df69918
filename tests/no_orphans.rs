//! A plugin never outlives its host: not when the host drops the client without
//! stopping it, and not when the host process is SIGKILLed.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{init_tracing, kv_plugin, pid_alive, socket_path, wait_until, within};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Set to `1` to make [`orphan_host_process`] act; unset, it returns at once.
const ORPHAN_HOST_ENV: &str = "RPCPLUGIN_TEST_ORPHAN_HOST";

#[tokio::test]
async fn dropped_client_leaves_no_plugin_and_no_socket() {
    init_tracing();
    let plugin = kv_plugin().start().await.expect("kv_plugin starts");
    let pid = plugin.pid();
    let socket = socket_path(plugin.endpoint());
    let dir = socket.parent().expect("socket in a directory").to_owned();
    assert!(pid_alive(pid) && socket.exists());

    // Drop has no runtime to wait on: it must be bounded (the client promises a
    // fraction of a second).
    let dropping = Instant::now();
    drop(plugin);
    let took = dropping.elapsed();
    println!("drop took {took:?}");
    assert!(took < Duration::from_secs(1), "drop blocked for {took:?}");

    assert!(
        wait_until(Duration::from_secs(1), || !pid_alive(pid)).await,
        "plugin pid {pid} is gone within 1 s of dropping the client"
    );
    assert!(!socket.exists(), "socket {} removed", socket.display());
    assert!(!dir.exists(), "socket directory {} removed", dir.display());
}

#[tokio::test]
async fn a_plugin_that_died_without_cleaning_up_leaves_no_socket_once_stopped_or_dropped() {
    init_tracing();
    for drop_it in [false, true] {
        let plugin = kv_plugin().start().await.expect("kv_plugin starts");
        let pid = plugin.pid();
        let socket = socket_path(plugin.endpoint());
        let dir = socket.parent().expect("socket in a directory").to_owned();
        // The OOM killer, a crash: the plugin gets no chance to remove its socket.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert!(wait_until(Duration::from_secs(5), || common::reapable(pid)).await);
        assert!(socket.exists(), "a killed plugin leaves its socket behind");
        if drop_it {
            drop(plugin);
            assert!(
                wait_until(Duration::from_secs(2), || !dir.exists()).await,
                "the dropped client removes {}",
                dir.display()
            );
        } else {
            let stopped = within(Duration::from_secs(10), "stop", plugin.stop())
                .await
                .expect("stop succeeds");
            assert_eq!(stopped.method, rpcplugin::client::StopMethod::AlreadyExited);
            assert!(!socket.exists(), "socket {} removed", socket.display());
            assert!(!dir.exists(), "socket directory {} removed", dir.display());
        }
    }
}

/// The host side of [`host_killed_plugin_stops_and_removes_socket`], run by it as a
/// separate process: starts kv_plugin, says where it is, and waits to be killed.
#[test]
#[ignore = "a helper process for host_killed_plugin_stops_and_removes_socket"]
fn orphan_host_process() {
    if std::env::var_os(ORPHAN_HOST_ENV).is_none_or(|v| v != "1") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let plugin = kv_plugin().start().await.expect("kv_plugin starts");
        let socket = socket_path(plugin.endpoint());
        // A leading newline: libtest may have written "test orphan_host_process ... ".
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "\nPID {} SOCKET {}", plugin.pid(), socket.display())
            .and_then(|()| stdout.flush())
            .expect("write to the parent test");
        drop(stdout);
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(plugin);
    });
}

#[tokio::test]
async fn host_killed_plugin_stops_and_removes_socket() {
    init_tracing();
    // The host's socket directory goes here: nobody removes it once the host is
    // SIGKILLed, and the tempdir does.
    let tmp = tempfile::tempdir().expect("a temp dir");
    let mut host = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "orphan_host_process", "--nocapture"])
        .env(ORPHAN_HOST_ENV, "1")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the host process starts");

    let mut lines = BufReader::new(host.stdout.take().expect("piped")).lines();
    let (pid, socket) = within(Duration::from_secs(15), "the host's PID line", async {
        while let Some(line) = lines.next_line().await.expect("host stdout") {
            println!("host: {line}");
            if let Some(at) = line.find("PID ") {
                let mut fields = line[at..].split_whitespace();
                let (Some("PID"), Some(pid), Some("SOCKET"), Some(path)) =
                    (fields.next(), fields.next(), fields.next(), fields.next())
                else {
                    panic!("malformed line from the host: {line:?}");
                };
                return (pid.parse::<u32>().expect("a pid"), PathBuf::from(path));
            }
        }
        panic!("the host exited without starting the plugin");
    })
    .await;
    assert!(pid_alive(pid), "plugin pid {pid} runs while its host does");
    assert!(socket.exists(), "socket {} exists", socket.display());

    host.start_kill().expect("SIGKILL the host");
    within(Duration::from_secs(5), "reaping the host", host.wait())
        .await
        .expect("host reaped");

    assert!(
        wait_until(Duration::from_millis(1500), || !pid_alive(pid)).await,
        "plugin pid {pid} is gone within 1.5 s of its host's death"
    );
    assert!(
        wait_until(Duration::from_millis(200), || !socket.exists()).await,
        "the orphaned plugin removed its socket {}",
        socket.display()
    );
}
