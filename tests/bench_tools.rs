//! The benchmark's ceiling (`examples/raw_tonic`) runs and reports, so `cargo xtask
//! bench` can rely on it.

mod common;

#[test]
fn raw_tonic_reports_a_result_line_without_errors() {
    let output = std::process::Command::new(common::example("raw_tonic"))
        .args(["--seconds", "0.3", "--concurrency", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {stdout}"));
    assert!(line.contains("\"errors\":0"), "{line}");
    let rps: f64 = line
        .split("\"req_per_s\":")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no req_per_s in {line}"));
    assert!(rps > 0.0, "{line}");
}

#[test]
fn raw_tonic_refuses_unknown_arguments() {
    let output = std::process::Command::new(common::example("raw_tonic"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: raw_tonic"));
}
