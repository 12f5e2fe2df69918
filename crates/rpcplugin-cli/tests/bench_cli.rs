//! Runs the built `rpcplugin` binary as a user would: against the workspace's
//! `kv_plugin` example, and with the mistakes a user makes.

mod common;

use common::{alive, kv_plugin, rpcplugin, rpcplugin_with_env};
use std::time::{Duration, Instant};

/// The pid the table reports, from `... (pid 1234) ...`.
fn plugin_pid(stdout: &str) -> u32 {
    let (_, rest) = stdout
        .split_once("(pid ")
        .unwrap_or_else(|| panic!("no plugin pid in:\n{stdout}"));
    rest.split(')').next().unwrap().parse().expect("a pid")
}

#[test]
fn benchmarks_the_kv_plugin_and_stops_it() {
    bench_kv_plugin(&[], "plaintext");
}

#[test]
fn benchmarks_over_automtls_when_asked() {
    bench_kv_plugin(&["--automtls"], "mutual TLS");
}

fn bench_kv_plugin(extra: &[&str], security: &str) {
    let plugin = kv_plugin();
    let started = Instant::now();
    let mut args = vec!["bench"];
    args.extend_from_slice(extra);
    let out = rpcplugin(
        &[
            &args[..],
            &[
                "--seconds",
                "1",
                "--warmup",
                "0.2",
                "--concurrency",
                "2",
                "--",
                plugin.to_str().expect("a UTF-8 path"),
            ],
        ]
        .concat(),
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rpcplugin bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    let result: serde_json::Value =
        serde_json::from_str(&line["RESULT ".len()..]).expect("RESULT carries JSON");
    for key in [
        "req_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "launch_to_first_call_ms",
        "host_rss_kb",
        "plugin_rss_kb",
        "host_cpu_pct",
        "plugin_cpu_pct",
        "errors",
    ] {
        assert!(result[key].is_number(), "{key} is not a number in {line}");
    }
    assert!(result["req_per_s"].as_f64().unwrap() > 0.0, "{line}");
    assert!(
        result["launch_to_first_call_ms"].as_f64().unwrap() > 0.0,
        "{line}"
    );
    assert_eq!(result["errors"], 0, "{line}");
    assert!(stdout.contains("graceful"), "{stdout}");
    assert!(stdout.contains(security), "{stdout}");

    let pid = plugin_pid(&stdout);
    assert!(!alive(pid), "plugin process {pid} outlived rpcplugin bench");
}

#[test]
fn a_bad_number_is_a_usage_error_with_a_hint() {
    let out = rpcplugin(
        &["bench", "--concurrency", "0", "--", "./kv_plugin"],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--concurrency must be a positive integer"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn a_missing_plugin_is_explained() {
    let out = rpcplugin(
        &["bench", "--", "/nonexistent/rpcplugin-test-plugin"],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot start plugin"), "{stderr}");
    assert!(stderr.contains("hint: check the path"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("RESULT"),
        "no figures for a plugin that never ran"
    );
}

#[test]
fn help_prints_usage() {
    let out = rpcplugin(&["bench", "--help"], Duration::from_secs(10));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("--concurrency <C>"), "{stdout}");
    let out = rpcplugin(&["--help"], Duration::from_secs(10));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rpcplugin bench"));
}

/// The acceptance figure of the plugin's rate limit: with a limit of R calls per
/// second, 32 concurrent callers get about R successful calls per second and the
/// rest fail at once with RESOURCE_EXHAUSTED. The limit is set through the
/// environment `rpcplugin bench` passes on to its plugin (pyvider's variable
/// names); the host side reads no PLUGIN_RATE_LIMIT_* itself, so only the plugin
/// is limited. `rpcplugin bench` exits 1 when calls failed, so this reads its
/// RESULT line, printed either way.
#[test]
fn a_rate_limited_plugin_serves_about_its_rate_and_refuses_the_rest_fast() {
    const RATE: f64 = 50.0;
    const BURST: f64 = 5.0;
    const SECONDS: f64 = 2.0;
    let plugin = kv_plugin();
    let out = rpcplugin_with_env(
        &[
            "bench",
            "--seconds",
            "2",
            "--warmup",
            "0.2",
            "--concurrency",
            "32",
            "--",
            plugin.to_str().expect("a UTF-8 path"),
        ],
        &[
            ("PLUGIN_RATE_LIMIT_ENABLED", "true"),
            ("PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND", "50"),
            ("PLUGIN_RATE_LIMIT_BURST_CAPACITY", "5"),
        ],
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a run with failed calls exits 1\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}\nstderr:\n{stderr}"));
    let result: serde_json::Value = serde_json::from_str(line).expect("RESULT carries JSON");

    let ok_per_s = result["req_per_s"].as_f64().unwrap();
    let (low, high) = (0.5 * RATE, 2.0 * RATE + BURST / SECONDS);
    assert!(
        (low..=high).contains(&ok_per_s),
        "{ok_per_s} successful calls/s, expected {low}..={high}: {line}"
    );
    let errors = result["errors"].as_u64().unwrap();
    assert!(errors > 100, "32 callers overrun 50/s: {line}");
    let codes = result["error_codes"].as_object().expect("error_codes");
    assert_eq!(
        codes.keys().collect::<Vec<_>>(),
        ["resource_exhausted"],
        "every failure is RESOURCE_EXHAUSTED: {line}"
    );
    assert_eq!(codes["resource_exhausted"], errors, "{line}");
    let fail_p50 = result["error_p50_us"].as_u64().unwrap();
    assert!(
        fail_p50 < 50_000,
        "refusals take {fail_p50} µs at p50: {line}"
    );
    // The refusal names the plugin's limit (the first error of the table).
    assert!(
        stdout.contains("rate limit exceeded: 50 requests per second"),
        "{stdout}"
    );

    let pid = plugin_pid(&stdout);
    assert!(!alive(pid), "plugin process {pid} outlived rpcplugin bench");
}
