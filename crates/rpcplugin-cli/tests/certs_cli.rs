//! `rpcplugin certs` as an operator uses it: a CA, a plugin certificate and a host
//! certificate made with the CLI alone carry a real configured-mTLS start of the
//! KV plugin (the `configured_mtls` example's flow), and a host certificate of
//! another CA is turned away.

mod common;

use common::{json, kv_plugin, outputs, rpcplugin, rpcplugin_with_env};
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn certs(args: &[&str]) -> String {
    let out = rpcplugin(&[&["certs"], args].concat(), LIMIT);
    assert!(out.status.success(), "certs {args:?}: {}", outputs(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).to_str().unwrap().to_owned()
}

/// `probe --json` of the KV plugin with the plugin's files in its environment
/// and the host's in rpcplugin's.
fn probe_configured(plugin_pki: &Path, host_pki: &Path, host_name: &str) -> serde_json::Value {
    let kv = kv_plugin();
    let server_cert = format!("PLUGIN_SERVER_CERT={}", path(plugin_pki, "kv-plugin.pem"));
    let server_key = format!(
        "PLUGIN_SERVER_KEY={}",
        path(plugin_pki, "kv-plugin-key.pem")
    );
    let client_roots = format!("PLUGIN_CLIENT_ROOT_CERTS={}", path(plugin_pki, "ca.pem"));
    let host_cert = path(host_pki, &format!("{host_name}.pem"));
    let host_key = path(host_pki, &format!("{host_name}-key.pem"));
    let server_roots = path(plugin_pki, "ca.pem");
    let out = rpcplugin_with_env(
        &[
            "probe",
            "--json",
            "--env",
            &server_cert,
            "--env",
            &server_key,
            "--env",
            &client_roots,
            "--",
            kv.to_str().unwrap(),
        ],
        &[
            ("PLUGIN_CLIENT_CERT", &host_cert),
            ("PLUGIN_CLIENT_KEY", &host_key),
            ("PLUGIN_SERVER_ROOT_CERTS", &server_roots),
        ],
        LIMIT,
    );
    let report = json(&out);
    assert_eq!(
        out.status.success(),
        report["ok"] == true,
        "{}",
        outputs(&out)
    );
    report
}

#[test]
fn certificates_made_by_the_cli_carry_a_configured_mtls_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_str = pki.to_str().unwrap();
    let made = certs(&["ca", "--out", pki_str, "--key", "p384"]);
    assert!(made.contains("PLUGIN_CLIENT_ROOT_CERTS="), "{made}");
    let server = certs(&[
        "issue",
        "--ca",
        pki_str,
        "--name",
        "kv-plugin",
        "--server",
        "--out",
        pki_str,
    ]);
    assert!(
        server.contains(&format!("PLUGIN_SERVER_CERT={pki_str}/kv-plugin.pem")),
        "{server}"
    );
    let client = certs(&[
        "issue", "--ca", pki_str, "--name", "host", "--client", "--out", pki_str,
    ]);
    assert!(
        client.contains(&format!("PLUGIN_CLIENT_KEY={pki_str}/host-key.pem")),
        "{client}"
    );

    let report = probe_configured(&pki, &pki, "host");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["mutual_tls"], true, "{report}");
    assert_eq!(report["health"], "SERVING");
    assert_eq!(report["tls"]["subject"], "CN=kv-plugin", "{report}");

    // A host whose certificate another CA issued is turned away.
    let other = dir.path().join("other");
    let other_str = other.to_str().unwrap();
    certs(&["ca", "--out", other_str, "--name", "someone else"]);
    certs(&[
        "issue", "--ca", other_str, "--name", "host", "--client", "--out", other_str,
    ]);
    let report = probe_configured(&pki, &other, "host");
    assert_eq!(report["ok"], false, "{report}");
    assert!(report["error"]["hint"].is_string(), "{report}");
}

#[test]
fn inspect_and_verify_read_what_issue_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().to_str().unwrap();
    certs(&["ca", "--out", pki, "--name", "plugins CA", "--days", "10"]);
    certs(&[
        "issue",
        "--ca",
        pki,
        "--name",
        "127.0.0.1",
        "--server",
        "--out",
        pki,
        "--key",
        "ed25519",
    ]);
    let inspected = certs(&["inspect", "--json", &format!("{pki}/127.0.0.1.pem")]);
    let info: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(info[0]["subject"], "CN=127.0.0.1");
    assert_eq!(info[0]["key_type"], "Ed25519");
    assert_eq!(info[0]["is_ca"], false);
    // The name is already among a server's loopback SANs: not repeated.
    assert_eq!(
        info[0]["sans"],
        serde_json::json!(["localhost", "127.0.0.1", "::1"])
    );
    assert!(
        (28..=30).contains(&info[0]["days_left"].as_i64().unwrap()),
        "{info}"
    );
    let ca = certs(&["inspect", &format!("{pki}/ca.pem")]);
    assert!(ca.contains("CA          yes"), "{ca}");
    assert!(ca.contains("days left)"), "{ca}");

    let ok = certs(&[
        "verify",
        "--ca",
        &format!("{pki}/ca.pem"),
        &format!("{pki}/127.0.0.1.pem"),
    ]);
    assert_eq!(ok, "OK: CN=127.0.0.1 chains to CN=plugins CA, valid now\n");

    // Against another CA: exit 1 with the reason and a hint.
    let other = tempfile::tempdir().unwrap();
    let other = other.path().to_str().unwrap();
    certs(&["ca", "--out", other]);
    let out = rpcplugin(
        &[
            "certs",
            "verify",
            "--ca",
            &format!("{other}/ca.pem"),
            &format!("{pki}/127.0.0.1.pem"),
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not valid under this ca"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");

    // A key is never overwritten.
    let out = rpcplugin(&["certs", "ca", "--out", pki], LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // The role is required, and only one.
    let out = rpcplugin(
        &["certs", "issue", "--ca", pki, "--name", "x", "--out", pki],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", outputs(&out));
    let out = rpcplugin(
        &[
            "certs", "issue", "--ca", pki, "--name", "x", "--server", "--client", "--out", pki,
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", outputs(&out));
    let out = rpcplugin(
        &[
            "certs",
            "issue",
            "--ca",
            "/nonexistent",
            "--name",
            "x",
            "--server",
            "--out",
            pki,
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rpcplugin certs ca --out"));
}
