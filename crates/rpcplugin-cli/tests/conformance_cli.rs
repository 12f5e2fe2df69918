//! `rpcplugin conformance`: rpcplugin's own plugins pass it, and deliberately
//! broken plugins (no health, a malformed handshake, a plaintext answer to an
//! AutoMTLS host, Shutdown ignored, the cookie ignored) are each caught, with
//! nothing left running.

mod common;

use common::{example, gone_soon, json, kv_plugin, outputs, rpcplugin, script, terraform_provider};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `conformance --json` and returns (exit code, report).
fn conformance(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = rpcplugin(&[&["conformance", "--json"], args].concat(), LIMIT);
    let report = json(&out);
    let failed = report["failed"].as_u64().unwrap();
    assert_eq!(
        out.status.code(),
        Some(i32::from(failed > 0)),
        "exit status and failures disagree: {}",
        outputs(&out)
    );
    (out.status.code(), report)
}

/// The ids of the checks with this result.
fn with_result(report: &serde_json::Value, result: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == result)
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn rpcplugins_kv_plugin_passes_every_check() {
    let kv = kv_plugin();
    let (code, report) = conformance(&["--", kv.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(with_result(&report, "fail"), Vec::<String>::new());
    assert_eq!(
        with_result(&report, "warn"),
        Vec::<String>::new(),
        "{report:#}"
    );
    assert!(report["passed"].as_u64().unwrap() >= 24, "{report:#}");
    for id in [
        "tls.refuses_other_certificate",
        "tcp.port_range",
        "shutdown.sigterm",
    ] {
        assert!(
            with_result(&report, "pass").iter().any(|p| p == id),
            "{id}: {report:#}"
        );
    }
}

#[test]
fn the_terraform_provider_passes_with_terraform_flags() {
    let provider = terraform_provider();
    let (code, report) = conformance(&["--terraform", "--", provider.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(with_result(&report, "fail"), Vec::<String>::new());
}

#[test]
fn the_readable_list_names_each_rule_broken() {
    let broken = example("broken_plugin");
    let out = rpcplugin(
        &[
            "conformance",
            "--plaintext",
            "--timeout",
            "3s",
            "--",
            broken.to_str().unwrap(),
            "no-health",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL  health.serving"), "{text}");
    assert!(
        text.contains("rule: grpc.health.v1.Health/Check of service \"plugin\" answers SERVING"),
        "{text}"
    );
    assert!(text.contains("WARN  stdio.served"), "{text}");
    assert!(text.contains("SKIP  tls.answered_when_asked"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.contains(" passed, 1 failed, "), "{last}");
}

#[test]
fn broken_plugins_are_each_caught() {
    let broken = example("broken_plugin");
    let broken = broken.to_str().unwrap();

    let (_, report) = conformance(&["--plaintext", "--timeout", "3s", "--", broken, "no-health"]);
    assert_eq!(
        with_result(&report, "fail"),
        ["health.serving"],
        "{report:#}"
    );

    let (_, report) = conformance(&[
        "--plaintext",
        "--timeout",
        "3s",
        "--",
        broken,
        "ignore-shutdown",
    ]);
    assert_eq!(with_result(&report, "fail"), ["shutdown.rpc"], "{report:#}");

    // It serves plaintext whatever the host asks: caught when AutoMTLS is asked.
    let (_, report) = conformance(&["--timeout", "3s", "--", broken, "serve"]);
    assert_eq!(
        with_result(&report, "fail"),
        ["tls.answered_when_asked"],
        "{report:#}"
    );

    // A script that ignores the cookie and prints a short line, then hangs with a
    // child; it records both pids to check that nothing survives.
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let malformed = script(
        dir.path(),
        "malformed.sh",
        &format!(
            "echo $$ >> {0}\nsleep 30 & echo $! >> {0}\necho '1|1|unix'\nwait",
            pids.display()
        ),
    );
    let (code, report) = conformance(&["--timeout", "2s", "--", malformed.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let failed = with_result(&report, "fail");
    for id in [
        "cookie.refused",
        "cookie.stderr_message",
        "cookie.stdout_silent",
        "handshake.fields",
    ] {
        assert!(
            failed.iter().any(|f| f == id),
            "{id} not caught: {report:#}"
        );
    }
    let pids = std::fs::read_to_string(&pids).unwrap();
    assert!(pids.lines().count() >= 4, "{pids}");
    for pid in pids.lines() {
        let pid: u32 = pid.trim().parse().unwrap();
        assert!(
            gone_soon(pid),
            "process {pid} outlived rpcplugin conformance"
        );
    }
}

#[test]
fn conformance_cannot_attach() {
    let json = r#"{"Protocol":"grpc","ProtocolVersion":1,"Pid":42,"Addr":{"Network":"unix","String":"/tmp/x.sock"}}"#;
    let out = rpcplugin(&["conformance", "--reattach", json], LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", outputs(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot attach"));
}
