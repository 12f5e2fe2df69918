//! `rpcplugin probe` as a user runs it: against the workspace's KV plugin (plaintext,
//! AutoMTLS, attached in debug mode), the Terraform provider, and plugins that fail
//! each way a start can fail. Every run is bounded in time, and each test checks that
//! no plugin process outlived it.

mod common;

use common::{gone_soon, json, kv_plugin, outputs, rpcplugin, script, terraform_provider};
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// The method names reflection lists for `service` in a `--json` report.
fn methods(report: &serde_json::Value, service: &str) -> Vec<String> {
    report["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services in {report}"))
        .iter()
        .find(|s| s["name"] == service)
        .unwrap_or_else(|| panic!("{service} is not listed in {report}"))["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn probes_the_kv_plugin_in_plaintext() {
    let plugin = kv_plugin();
    let out = rpcplugin(&["probe", "--json", "--", plugin.to_str().unwrap()], LIMIT);
    assert!(out.status.success(), "{}", outputs(&out));
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["core_protocol_version"], 1);
    assert_eq!(report["app_protocol_version"], 1);
    assert_eq!(report["network"], "unix");
    assert_eq!(report["protocol"], "grpc");
    assert_eq!(report["multiplex"], false);
    assert!(report["tls"].is_null(), "{report}");
    assert_eq!(report["mutual_tls"], false);
    assert_eq!(report["health"], "SERVING");
    assert_eq!(methods(&report, "proto.KV"), ["Get", "Put"]);
    assert_eq!(report["reflection"], "grpc.reflection.v1");
    assert_eq!(report["stdio"], true);
    assert_eq!(report["broker"], true);
    for phase in ["handshake", "connect", "health"] {
        assert!(
            report["timings_ms"][phase].as_f64().unwrap() > 0.0,
            "{phase}: {report}"
        );
    }
    assert_eq!(report["stop"]["method"], "shutdown_rpc");
    assert_eq!(report["stop"]["exit_code"], 0);
    assert!(
        report["stderr_tail"][0]
            .as_str()
            .unwrap()
            .contains("kv_plugin serving"),
        "{report}"
    );
    let address = report["address"].as_str().unwrap();
    assert!(
        !std::path::Path::new(address).exists(),
        "the socket {address} outlived the plugin"
    );
    let pid = report["pid"].as_u64().unwrap() as u32;
    assert!(gone_soon(pid), "plugin {pid} outlived rpcplugin probe");
}

#[test]
fn probes_over_automtls_and_shows_the_certificate() {
    let plugin = kv_plugin();
    let out = rpcplugin(
        &["probe", "--automtls", "--", plugin.to_str().unwrap()],
        LIMIT,
    );
    assert!(out.status.success(), "{}", outputs(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tls           mutual TLS, ECDSA P-256, CN=localhost"),
        "{text}"
    );
    assert!(text.contains("SANs localhost, 127.0.0.1, ::1"), "{text}");
    assert!(text.contains("valid until 20"), "{text}");
    assert!(text.contains("health        plugin: SERVING"), "{text}");
    assert!(
        text.contains("stop          shutdown_rpc, exit status: 0"),
        "{text}"
    );

    let out = rpcplugin(
        &[
            "probe",
            "--automtls",
            "--json",
            "--",
            plugin.to_str().unwrap(),
        ],
        LIMIT,
    );
    let report = json(&out);
    let sha = report["tls"]["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 95, "{sha}");
    assert!(report["tls"]["not_after"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn probes_a_terraform_provider() {
    let provider = terraform_provider();
    let out = rpcplugin(
        &[
            "probe",
            "--terraform",
            "--json",
            "--",
            provider.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", outputs(&out));
    let report = json(&out);
    assert_eq!(report["ok"], true, "{report}");
    // Terraform's hosts offer 5 and 6; the provider speaks protocol 6.
    assert_eq!(report["app_protocol_version"], 6, "{report}");
    let pid = report["pid"].as_u64().unwrap() as u32;
    assert!(gone_soon(pid), "provider {pid} outlived rpcplugin probe");
    // Without --terraform the cookie is wrong: the provider refuses to start.
    let out = rpcplugin(
        &["probe", "--json", "--", provider.to_str().unwrap()],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
}

#[test]
fn attaches_to_a_plugin_in_debug_mode_and_leaves_it_running() {
    let plugin = kv_plugin();
    let mut debug = Command::new(&plugin)
        .arg("--debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kv_plugin --debug starts");
    // Ends the debug-mode plugin whatever the assertions below do.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    std::io::BufReader::new(debug.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the reattach line");
    let debug = Kill(debug);
    let out = rpcplugin(&["probe", "--json", "--reattach", line.trim()], LIMIT);
    assert!(out.status.success(), "{}", outputs(&out));
    let report = json(&out);
    assert_eq!(report["health"], "SERVING");
    assert_eq!(report["stop"]["method"], "detached");
    assert!(report["timings_ms"].is_null(), "{report}");
    assert!(
        common::alive(debug.0.id()),
        "probe stopped a plugin it did not start"
    );
}

/// Runs `probe --json` on a plugin that fails, and returns the error's code and
/// hint after checking what every failure must show.
fn failed_probe(args: &[&str]) -> (String, String) {
    let out = rpcplugin(&[&["probe", "--json"], args].concat(), LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    let code = report["error"]["code"].as_str().expect("an error code");
    let hint = report["error"]["hint"].as_str().expect("a hint");
    (code.to_owned(), hint.to_owned())
}

#[test]
fn a_plugin_that_fails_to_start_is_reported_with_its_hint() {
    let dir = tempfile::tempdir().unwrap();
    let kv = kv_plugin();

    let (code, hint) = failed_probe(&["--cookie", "WRONG=cookie", "--", kv.to_str().unwrap()]);
    assert_eq!(code, "handshake.plugin_exited");
    assert!(
        hint.contains("magic cookie BASIC_PLUGIN is not set"),
        "{hint}"
    );

    // Each script records its pid and its child's, to check nothing survives.
    let pids = dir.path().join("pids");
    let crash = script(
        dir.path(),
        "crash.sh",
        &format!(
            "echo $$ >> {0}\necho 'panic: out of cheese' >&2\nexit 3",
            pids.display()
        ),
    );
    let (code, hint) = failed_probe(&["--", crash.to_str().unwrap()]);
    assert_eq!(code, "handshake.plugin_exited");
    assert!(hint.contains("out of cheese"), "{hint}");

    let garbage = script(
        dir.path(),
        "garbage.sh",
        &format!(
            "echo $$ >> {0}\nsleep 30 & echo $! >> {0}\necho 'Listening on port 8080'\nwait",
            pids.display()
        ),
    );
    let (code, hint) = failed_probe(&["--", garbage.to_str().unwrap()]);
    assert_eq!(code, "handshake.unrecognized_line");
    assert!(hint.contains("Listening on port 8080"), "{hint}");

    // Plaintext is refused when the host asked for AutoMTLS.
    let plaintext = script(
        dir.path(),
        "plaintext.sh",
        &format!(
            "echo $$ >> {0}\nsleep 30 & echo $! >> {0}\necho \"1|1|unix|$PLUGIN_UNIX_SOCKET_DIR/p.sock|grpc|\"\nwait",
            pids.display()
        ),
    );
    let (code, hint) = failed_probe(&["--automtls", "--", plaintext.to_str().unwrap()]);
    assert_eq!(code, "security.plaintext_handshake");
    assert!(!hint.is_empty());

    let pids = std::fs::read_to_string(&pids).unwrap();
    assert_eq!(pids.lines().count(), 5, "{pids}");
    for pid in pids.lines() {
        let pid: u32 = pid.trim().parse().unwrap();
        assert!(gone_soon(pid), "process {pid} outlived rpcplugin probe");
    }
}

#[test]
fn a_probe_without_a_plugin_is_a_usage_error() {
    let out = rpcplugin(&["probe", "--json"], LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", outputs(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no plugin command given"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(out.stdout.is_empty());
}
