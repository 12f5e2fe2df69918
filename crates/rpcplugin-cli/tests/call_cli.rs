//! `rpcplugin call` as a user runs it: JSON in, one JSON line per response out,
//! several calls on one launch, message types from reflection or from `--proto`
//! files, AutoMTLS, a Terraform provider, and a failing call's status.

mod common;

use common::{kv_plugin, outputs, rpcplugin, terraform_provider};
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect()
}

fn kv_proto() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../proto/examples/kv.proto")
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn puts_then_gets_on_one_launch_by_reflection() {
    let kv = kv_plugin();
    let out = rpcplugin(
        &[
            "call",
            "--method",
            "proto.KV/Put",
            "--data",
            r#"{"key":"greeting","value":"aGVsbG8="}"#,
            "--method",
            "proto.KV/Get",
            "--data",
            r#"{"key":"greeting"}"#,
            "--",
            kv.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", outputs(&out));
    // Put answers Empty; Get returns what Put stored (bytes are base64 in JSON).
    assert_eq!(
        lines(&out),
        [
            serde_json::json!({}),
            serde_json::json!({"value": "aGVsbG8="})
        ]
    );
}

#[test]
fn proto_files_and_data_files_over_automtls() {
    let kv = kv_plugin();
    let dir = tempfile::tempdir().unwrap();
    let put = dir.path().join("put.json");
    std::fs::write(&put, r#"{"key": "k", "value": "dmFsdWU="}"#).unwrap();
    let out = rpcplugin(
        &[
            "call",
            "--automtls",
            "--proto",
            &kv_proto(),
            "--method",
            "proto.KV/Put",
            "--data",
            &format!("@{}", put.display()),
            "--method",
            "proto.KV.Get",
            "--data",
            r#"{"key":"k"}"#,
            "--",
            kv.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", outputs(&out));
    assert_eq!(lines(&out)[1], serde_json::json!({"value": "dmFsdWU="}));
}

#[test]
fn a_server_stream_prints_a_line_per_message() {
    let kv = kv_plugin();
    let out = rpcplugin(
        &[
            "call",
            "--method",
            "bench.v1.Bench/Download",
            "--data",
            r#"{"chunkSize": 3, "count": 4}"#,
            "--",
            kv.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", outputs(&out));
    let lines = lines(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| l["data"].as_str().unwrap().len() == 4));
}

#[test]
fn calls_a_terraform_provider() {
    let provider = terraform_provider();
    let out = rpcplugin(
        &[
            "call",
            "--terraform",
            "--method",
            "tfplugin6.Provider/GetMetadata",
            "--",
            provider.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", outputs(&out));
    let metadata = &lines(&out)[0];
    assert_eq!(
        metadata["resources"][0]["typeName"], "rpcplugin_file",
        "{metadata}"
    );
}

#[test]
fn a_failing_call_prints_its_status_and_exits_1() {
    let kv = kv_plugin();
    // Listed by the plugin's reflection, not served by kv_plugin.
    let out = rpcplugin(
        &[
            "call",
            "--method",
            "proto.KV/Get",
            "--data",
            r#"{"key":"first"}"#,
            "--method",
            "counter.v1.Counter/Get",
            "--",
            kv.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
    // The calls before the failure printed their answers.
    assert_eq!(lines(&out), [serde_json::json!({})]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("counter.v1.Counter/Get failed: UNIMPLEMENTED"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");

    // Bad JSON is refused before any call, with the fields the message has.
    let out = rpcplugin(
        &[
            "call",
            "--method",
            "proto.KV/Get",
            "--data",
            r#"{"name":"x"}"#,
            "--",
            kv.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", outputs(&out));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a proto.GetRequest"), "{stderr}");
    assert!(stderr.contains(r#"{"key"}"#), "{stderr}");
}
