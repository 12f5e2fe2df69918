//! Plugins that never become usable: what `start()` reports (code, kind, message,
//! hint quoting the plugin's own output) and that nothing is left running.

mod common;

use rpcplugin::Code;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    COOKIE, example, exec_recording_pid, hint, init_tracing, kv_plugin, live_group_members,
    pid_alive, read_pid, show, wait_until, wait_until_blocking, within,
};
use rpcplugin::ErrorKind;

/// Bounds a `start()` that should fail; the default handshake timeout is 30 s.
const START: Duration = Duration::from_secs(10);

async fn start_err(builder: rpcplugin::client::Builder) -> rpcplugin::Error {
    match within(START, "start", builder.start()).await {
        Ok(plugin) => panic!(
            "start succeeded (pid {}, {}) but should have failed",
            plugin.pid(),
            plugin.endpoint()
        ),
        Err(err) => show(err),
    }
}

#[tokio::test]
async fn wrong_cookie_is_explained_with_plugin_stderr() {
    init_tracing();
    let err = start_err(kv_plugin().handshake(COOKIE.0, "nope")).await;
    assert_eq!(err.code(), Code::HandshakePluginExited);
    assert_eq!(err.kind(), ErrorKind::Handshake);
    let message = err.to_string();
    assert!(message.contains("kv_plugin"), "message: {message}");
    assert!(
        message.contains("exited with status 1"),
        "message: {message}"
    );
    let hint = hint(&err);
    assert!(hint.contains("This binary is a plugin"), "hint: {hint}");
    assert!(hint.contains("magic cookie"), "hint: {hint}");
    assert!(
        hint.contains("same cookie key and value"),
        "the hint says what to do: {hint}"
    );
}

#[tokio::test]
async fn plugin_exiting_early_reports_status_and_stderr() {
    init_tracing();
    let builder = rpcplugin::plugin_client("sh")
        .args(["-c", "echo boom >&2; exit 3"])
        .handshake(COOKIE.0, COOKIE.1);
    let err = start_err(builder).await;
    assert_eq!(err.code(), Code::HandshakePluginExited);
    assert_eq!(err.kind(), ErrorKind::Handshake);
    let message = err.to_string();
    assert!(
        message.contains("exited with status 3"),
        "message: {message}"
    );
    let hint = hint(&err);
    assert!(hint.contains("boom"), "hint: {hint}");
}

#[tokio::test]
async fn garbage_instead_of_handshake_kills_the_process_group() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("a temp dir");
    let sh_pid_file = tmp.path().join("sh.pid");
    let sleep_pid_file = tmp.path().join("sleep.pid");
    let script = r#"echo $$ > "$0"; sleep 5 & echo $! > "$1"; echo hello-from-plugin; wait"#;
    let builder = rpcplugin::plugin_client("sh")
        .args([
            "-c",
            script,
            &sh_pid_file.display().to_string(),
            &sleep_pid_file.display().to_string(),
        ])
        .handshake(COOKIE.0, COOKIE.1);
    let err = start_err(builder).await;
    assert_eq!(err.code(), Code::HandshakeUnrecognizedLine);
    assert_eq!(err.kind(), ErrorKind::Handshake);
    let hint = hint(&err);
    assert!(hint.contains("\"hello-from-plugin\""), "hint: {hint}");
    let rendered = rpcplugin::render(&err);
    assert!(
        rendered.contains("unrecognized remote plugin message"),
        "rendered: {rendered}"
    );

    let sh = read_pid(&sh_pid_file);
    let sleep = read_pid(&sleep_pid_file);
    let gone = wait_until(Duration::from_millis(500), || {
        !pid_alive(sh) && !pid_alive(sleep)
    })
    .await;
    assert!(
        gone,
        "sh (pid {sh}, alive {}) and its sleep child (pid {sleep}, alive {}) are gone",
        pid_alive(sh),
        pid_alive(sleep)
    );
    assert_eq!(
        live_group_members(sh),
        Vec::<u32>::new(),
        "nothing is left in the plugin's process group"
    );
}

#[tokio::test]
async fn no_common_protocol_version_is_refused_and_plugin_stopped() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("a temp dir");
    let pid_file = tmp.path().join("plugin.pid");
    let builder = rpcplugin::plugin_client("sh")
        .args(exec_recording_pid(&pid_file, &example("kv_plugin"), &[]))
        .name("kv_plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .protocol_versions([2]);
    let err = start_err(builder).await;
    assert_eq!(err.code(), Code::HandshakeIncompatibleAppVersion);
    assert_eq!(err.kind(), ErrorKind::Handshake);
    let rendered = rpcplugin::render(&err);
    assert!(
        rendered.contains("plugin speaks app protocol version 1, host speaks [2]"),
        "rendered: {rendered}"
    );
    assert!(
        rendered.contains("install a plugin release made for this version of the host"),
        "rendered: {rendered}"
    );

    let pid = read_pid(&pid_file);
    assert!(
        wait_until(Duration::from_millis(500), || !pid_alive(pid)).await,
        "plugin pid {pid} is gone after the refused handshake"
    );
}

#[tokio::test]
async fn handshake_timeout_is_bounded_and_kills_the_plugin() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("a temp dir");
    let pid_file = tmp.path().join("sleep.pid");
    let builder = rpcplugin::plugin_client("sh")
        .args(exec_recording_pid(&pid_file, Path::new("sleep"), &["30"]))
        .name("sleep")
        .handshake(COOKIE.0, COOKIE.1)
        .handshake_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = start_err(builder).await;
    let took = started.elapsed();
    println!("start() failed after {took:?}");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.code(), Code::HandshakeTimeout);
    assert!(err.is_timeout());
    let message = err.to_string();
    assert!(message.contains("500ms"), "message: {message}");
    let hint = hint(&err);
    assert!(hint.contains("PLUGIN_HANDSHAKE_TIMEOUT"), "hint: {hint}");
    assert!(took < Duration::from_secs(2), "start() took {took:?}");

    let pid = read_pid(&pid_file);
    assert!(
        wait_until(Duration::from_millis(500), || !pid_alive(pid)).await,
        "sleep (pid {pid}) is gone after the timeout"
    );
}

#[test]
fn run_by_a_person_the_plugin_explains_itself() {
    let mut child = std::process::Command::new(example("kv_plugin"))
        .env_remove(COOKIE.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kv_plugin runs");
    let exited = wait_until_blocking(Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("kv_plugin output");
    assert!(exited, "kv_plugin without its cookie exits at once");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- what the person sees on stderr ---\n{stderr}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status {}",
        output.status
    );
    assert_eq!(stdout, "", "stdout stays empty");
    assert!(
        stderr.contains("This binary is a plugin"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("magic cookie BASIC_PLUGIN is not set"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("hint: this binary is a plugin: it is started by its host application"),
        "stderr: {stderr}"
    );
}
