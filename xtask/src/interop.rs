//! `cargo xtask interop [go|python|terraform]`: rpcplugin's examples against real peers.
//!
//! - Terraform: the example provider under the real Terraform CLI (see
//!   [`crate::terraform`]);
//! - Go: go-plugin 1.0.1 from Debian (`tests/interop/go/build.sh` installs what is
//!   missing with apt and builds offline in GOPATH mode);
//! - Python: pyvider-rpcplugin 0.5.5 from PyPI (`tests/interop/python/setup.sh`
//!   makes a virtualenv).
//!
//! Each pairing runs the INTEROP.md KV contract (put `hello`=`world`, get it, stop
//! the plugin, check it is gone) in both directions, and with Go the bidirectional
//! example (the broker both ways: the plugin calls the host's helper, the host
//! calls the plugin's) and the sandbox (a Go plugin confined by an rpcplugin
//! host), each with a time limit; the run ends with a `N passed, N failed` line.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What a case expects.
enum Expect {
    /// Exit 0 and exactly `world` on stdout.
    World,
    /// As `World`, and this text in stderr (the host saying it used TLS).
    WorldWith(&'static str),
    /// A non-zero exit, and this text somewhere in stderr.
    Failure(&'static str),
    /// Exit 0, exactly this on stdout, and (when given) this text in stderr.
    Prints(&'static str, Option<&'static str>),
    /// Exit 0 and this text somewhere in stdout.
    Succeeds(&'static str),
    /// Exit 1 with each of these texts in stdout (a peer's known findings).
    FailsWith(&'static [&'static str]),
}

/// Starts `$1 --debug` as a person would, hands its reattach JSON to the host `$2
/// --reattach`, and checks the plugin outlives the host; the plugin is stopped
/// with SIGTERM at the end whatever happened.
const REATTACH_SCRIPT: &str = r#"
set -u
out=$(mktemp -d)
"$1" --debug > "$out/json" 2> "$out/plugin.err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$out"' EXIT
for _ in $(seq 200); do [ -s "$out/json" ] && break; sleep 0.05; done
json=$(head -n 1 "$out/json")
[ -n "$json" ] || { echo "FAIL: no reattach JSON; plugin said: $(cat "$out/plugin.err")" >&2; exit 1; }
"$2" --reattach "$json" || exit 1
kill -0 "$pid" 2>/dev/null || { echo "FAIL: the plugin is gone after the host exited" >&2; exit 1; }
echo "plugin survived the host" >&2
"#;

/// What the bidirectional example's hosts print when both broker directions work.
const COUNTER_OUT: &str = "hello = 3\nplugin helper: 40 + 2 = 42\n";

struct Case {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    expect: Expect,
}

const CASE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let peers = ["go", "python", "terraform"];
    let named: Vec<&String> = args
        .iter()
        .filter(|a| peers.contains(&a.as_str()))
        .collect();
    let want = |peer: &str| named.is_empty() || named.iter().any(|a| *a == peer);
    if want("terraform") {
        crate::terraform::run(root, args)?;
    }
    if !want("go") && !want("python") {
        return Ok(());
    }
    let out = root.join("target/interop");
    std::fs::create_dir_all(&out)?;
    crate::run_cmd(root, "cargo", &["build", "--examples"], &[])?;
    crate::run_cmd(root, "cargo", &["build", "-p", "rpcplugin-cli"], &[])?;
    let examples = root.join("target/debug/examples");
    let kv_plugin = examples.join("kv_plugin");
    let kv_host = examples.join("kv_host");
    let cli = root.join("target/debug/rpcplugin");
    let bidirectional = examples.join("bidirectional");
    let s = |p: &Path| p.to_string_lossy().into_owned();

    let mut cases = Vec::new();
    if want("go") {
        let go = out.join("go");
        crate::run_cmd(root, "bash", &["tests/interop/go/build.sh", &s(&go)], &[])?;
        let (go_host, go_plugin) = (go.join("kv-host"), go.join("kv-plugin"));
        cases.push(Case {
            name: "go-plugin host -> rpcplugin kv_plugin (unix)".into(),
            program: go_host.clone(),
            args: vec!["--strict-shutdown".into(), "--".into(), s(&kv_plugin)],
            env: vec![],
            expect: Expect::World,
        });
        cases.push(Case {
            name: "go-plugin host -> rpcplugin kv_plugin (tcp)".into(),
            program: go_host.clone(),
            args: vec!["--strict-shutdown".into(), "--".into(), s(&kv_plugin)],
            env: vec![("PLUGIN_SERVER_TRANSPORTS", "tcp")],
            expect: Expect::World,
        });
        cases.push(Case {
            name: "go-plugin host with a wrong cookie -> rpcplugin kv_plugin refuses".into(),
            program: go_host,
            args: vec![
                "--cookie".into(),
                "BASIC_PLUGIN=nope".into(),
                "--".into(),
                s(&kv_plugin),
            ],
            env: vec![],
            expect: Expect::Failure("This binary is a plugin"),
        });
        // 8 MiB messages from a go-plugin plugin (its gRPC server sends up to
        // i32::MAX): an rpcplugin host decodes them with its default limits, where
        // tonic's own 4 MiB would refuse them.
        cases.push(Case {
            name: "rpcplugin bench --mode download --size 8MiB -> go-plugin kv-plugin (host message limits)".into(),
            program: cli.clone(),
            args: [
                "bench", "--json", "--mode", "download", "--size", "8MiB", "--seconds", "1",
                "--warmup", "0", "--",
            ]
            .iter()
            .map(|a| (*a).to_owned())
            .chain([s(&go_plugin)])
            .collect(),
            env: vec![],
            expect: Expect::Succeeds("\"errors\":0"),
        });
        cases.push(Case {
            name: "rpcplugin kv_host -> go-plugin kv-plugin".into(),
            program: kv_host.clone(),
            args: vec!["--".into(), s(&go_plugin)],
            env: vec![],
            expect: Expect::World,
        });
        // AutoMTLS both ways: the Go host's P-521/SHA-512 CA:TRUE certificate must be
        // pinned and verified by rpcplugin, and rpcplugin's P-256 one by Go.
        for (name, env) in [
            (
                "go-plugin host --automtls -> rpcplugin kv_plugin (unix)",
                vec![],
            ),
            (
                "go-plugin host --automtls -> rpcplugin kv_plugin (tcp)",
                vec![("PLUGIN_SERVER_TRANSPORTS", "tcp")],
            ),
        ] {
            cases.push(Case {
                name: name.into(),
                program: go.join("kv-host"),
                args: vec![
                    "--automtls".into(),
                    "--strict-shutdown".into(),
                    "--".into(),
                    s(&kv_plugin),
                ],
                env,
                // The Go host fails every call rather than downgrade, so success
                // means TLS; this line says it was asked for.
                expect: Expect::WorldWith("automtls=true"),
            });
        }
        cases.push(Case {
            name: "rpcplugin kv_host --automtls -> go-plugin kv-plugin (P-521 server cert)".into(),
            program: kv_host.clone(),
            args: vec!["--automtls".into(), "--".into(), s(&go_plugin)],
            env: vec![],
            expect: Expect::WorldWith("mutual TLS"),
        });
        push_broker_cases(&mut cases, &go, &bidirectional);
        push_cli_cases(
            &mut cases,
            &cli,
            &root.join("proto/examples/kv.proto"),
            "go-plugin kv-plugin",
            &[s(&go_plugin)],
            Expect::Succeeds("22 passed, 0 failed, 3 warnings"),
        );
        // The sandbox is the kernel's, set before the plugin runs: a Go plugin is
        // confined like a Rust one. The host exits 0 only if the data directory
        // works and reading, writing, running and dialling outside are denied.
        cases.push(Case {
            name: "rpcplugin sandboxed host -> go-plugin probe-plugin (confined: outside denied, still serving)".into(),
            program: examples.join("sandboxed"),
            args: vec!["host".into(), "--".into(), s(&go.join("probe-plugin"))],
            env: vec![],
            expect: Expect::Succeeds("connect to 127.0.0.1:"),
        });
        cases.push(Case {
            name: "rpcplugin kv_host with PLUGIN_SANDBOX=on -> go-plugin kv-plugin".into(),
            program: kv_host.clone(),
            args: vec!["--".into(), s(&go_plugin)],
            env: vec![
                ("PLUGIN_SANDBOX", "on"),
                ("RUST_LOG", "rpcplugin_client::start=info"),
            ],
            expect: Expect::WorldWith("plugin sandboxed"),
        });
        cases.push(Case {
            name: "go-plugin kv-host (version 1) -> rpcplugin versioned plugin (serves 1 and 2)"
                .into(),
            program: go.join("kv-host"),
            args: vec![
                "--strict-shutdown".into(),
                "--".into(),
                s(&examples.join("versioned")),
                "plugin".into(),
            ],
            env: vec![],
            expect: Expect::World,
        });
        for (name, host) in [
            (
                "go-plugin kv-host --reattach -> rpcplugin kv_plugin --debug (started by hand)",
                go.join("kv-host"),
            ),
            (
                "rpcplugin kv_host --reattach -> rpcplugin kv_plugin --debug (started by hand)",
                kv_host.clone(),
            ),
        ] {
            cases.push(Case {
                name: name.into(),
                program: "bash".into(),
                args: vec![
                    "-c".into(),
                    REATTACH_SCRIPT.into(),
                    "reattach".into(),
                    s(&kv_plugin),
                    s(&host),
                ],
                env: vec![],
                expect: Expect::WorldWith("plugin survived the host"),
            });
        }
        // A plugin author's crate with its own proto (tests/empty-crate), built as a
        // user builds it: a go-plugin host starts it and checks its health.
        let greeter = build_empty_crate(root)?;
        for (name, automtls) in [
            (
                "go-plugin host -> greeter plugin from an empty crate",
                false,
            ),
            (
                "go-plugin host --automtls -> greeter plugin from an empty crate",
                true,
            ),
        ] {
            let mut args = vec![
                "--ping-only".into(),
                "--strict-shutdown".into(),
                "--cookie".into(),
                "GREETER_PLUGIN=hello".into(),
            ];
            if automtls {
                args.insert(0, "--automtls".into());
            }
            args.extend(["--".into(), s(&greeter)]);
            cases.push(Case {
                name: name.into(),
                program: go.join("kv-host"),
                args,
                env: vec![],
                expect: Expect::Prints("SERVING\n", None),
            });
        }
    }
    if want("python") {
        let venv = out.join("venv");
        crate::run_cmd(
            root,
            "bash",
            &["tests/interop/python/setup.sh", &s(&venv)],
            &[],
        )?;
        let python = venv.join("bin/python");
        let py_dir = root.join("tests/interop/python");
        cases.push(Case {
            name: "pyvider host -> rpcplugin kv_plugin".into(),
            program: python.clone(),
            args: vec![s(&py_dir.join("kv_host.py")), "--".into(), s(&kv_plugin)],
            env: vec![],
            expect: Expect::World,
        });
        cases.push(Case {
            name: "rpcplugin kv_host -> pyvider kv_plugin.py".into(),
            program: kv_host.clone(),
            args: vec!["--".into(), s(&python), s(&py_dir.join("kv_plugin.py"))],
            env: vec![],
            expect: Expect::World,
        });
        cases.push(Case {
            name: "pyvider host --mtls (P-384) -> rpcplugin kv_plugin".into(),
            program: python.clone(),
            args: vec![
                s(&py_dir.join("kv_host.py")),
                "--mtls".into(),
                "--".into(),
                s(&kv_plugin),
            ],
            env: vec![],
            expect: Expect::WorldWith("tls=yes"),
        });
        cases.push(Case {
            name: "rpcplugin kv_host --automtls -> pyvider kv_plugin.py (P-384 server cert)".into(),
            program: kv_host,
            args: vec![
                "--automtls".into(),
                "--".into(),
                s(&python),
                s(&py_dir.join("kv_plugin.py")),
            ],
            env: vec![],
            expect: Expect::WorldWith("mutual TLS"),
        });
        // pyvider 0.5.5 serves AutoMTLS without checking the host's certificate,
        // and takes an ephemeral port whatever PLUGIN_MIN_PORT/MAX_PORT say
        // (docs/interop.md): conformance must keep saying so.
        push_cli_cases(
            &mut cases,
            &cli,
            &root.join("proto/examples/kv.proto"),
            "pyvider kv_plugin.py",
            &[s(&python), s(&py_dir.join("kv_plugin.py"))],
            Expect::FailsWith(&[
                "FAIL  tls.refuses_no_certificate",
                "FAIL  tls.refuses_other_certificate",
                "FAIL  tcp.port_range",
                "22 passed, 3 failed, 0 warnings",
            ]),
        );
    }

    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let started = Instant::now();
        match run_case(case) {
            Ok(()) => {
                passed += 1;
                eprintln!(
                    "PASS  {} ({:.0} ms)",
                    case.name,
                    started.elapsed().as_secs_f64() * 1e3
                );
            }
            Err(err) => {
                failed += 1;
                eprintln!("FAIL  {}: {err:#}", case.name);
            }
        }
    }
    println!("interop: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} interop case(s) failed");
    }
    Ok(())
}

/// The `rpcplugin` command line against a peer's KV plugin (`plugin` is its command):
/// probe plaintext and AutoMTLS, call Put then Get with `--proto` (neither peer
/// serves reflection) both ways, and conformance with the peer's known result.
fn push_cli_cases(
    cases: &mut Vec<Case>,
    cli: &Path,
    kv_proto: &Path,
    peer: &'static str,
    plugin: &[String],
    conformance: Expect,
) {
    let args = |first: &[&str]| -> Vec<String> {
        first
            .iter()
            .map(|a| (*a).to_owned())
            .chain(["--".to_owned()])
            .chain(plugin.iter().cloned())
            .collect()
    };
    let proto = kv_proto.to_string_lossy().into_owned();
    let put_get = |tls: &str| -> Vec<String> {
        let mut first = vec!["call", "--proto", &proto];
        if !tls.is_empty() {
            first.push(tls);
        }
        first.extend([
            "--method",
            "proto.KV/Put",
            "--data",
            r#"{"key":"hello","value":"d29ybGQ="}"#,
            "--method",
            "proto.KV/Get",
            "--data",
            r#"{"key":"hello"}"#,
        ]);
        args(&first)
    };
    for (what, call_args, expect) in [
        (
            "probe",
            args(&["probe", "--json"]),
            Expect::Succeeds(r#""health":"SERVING""#),
        ),
        (
            "probe --automtls",
            args(&["probe", "--json", "--automtls"]),
            Expect::Succeeds(r#""mutual_tls":true"#),
        ),
        (
            "call --proto (put, get)",
            put_get(""),
            Expect::Prints("{}\n{\"value\":\"d29ybGQ=\"}\n", None),
        ),
        (
            "call --proto --automtls (put, get)",
            put_get("--automtls"),
            Expect::Prints("{}\n{\"value\":\"d29ybGQ=\"}\n", None),
        ),
        (
            "conformance",
            args(&["conformance", "--timeout", "20s"]),
            conformance,
        ),
    ] {
        cases.push(Case {
            name: format!("rpcplugin {what} -> {peer}"),
            program: cli.to_owned(),
            args: call_args,
            env: vec![],
            expect,
        });
    }
}

/// The bidirectional example (docs/interop.md): the broker in both directions,
/// between every pairing of rpcplugin and go-plugin 1.0.1.
fn push_broker_cases(cases: &mut Vec<Case>, go: &Path, bidirectional: &Path) {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (go_host, go_plugin) = (go.join("counter-host"), go.join("counter-plugin"));
    let rust_plugin = || vec!["--".into(), s(bidirectional), "plugin".into()];
    let with = |first: &[&str], rest: Vec<String>| {
        first
            .iter()
            .map(|a| (*a).to_owned())
            .chain(rest)
            .collect::<Vec<_>>()
    };
    cases.push(Case {
        name: "rpcplugin bidirectional host -> rpcplugin plugin (broker both ways, AutoMTLS)"
            .into(),
        program: bidirectional.to_owned(),
        args: with(&["host", "--automtls"], rust_plugin()),
        env: vec![],
        expect: Expect::Prints(COUNTER_OUT, Some("mutual TLS")),
    });
    cases.push(Case {
        name:
            "rpcplugin bidirectional host --multiplex -> rpcplugin plugin (one connection, yamux)"
                .into(),
        program: bidirectional.to_owned(),
        args: with(&["host", "--automtls", "--multiplex"], rust_plugin()),
        env: vec![],
        expect: Expect::Prints(COUNTER_OUT, Some("multiplexed, mutual TLS")),
    });
    // go-plugin 1.0.1 cannot multiplex: this Go host speaks go-plugin 1.6's
    // multiplexed broker by hand on hashicorp/yamux (tests/interop/go/src/muxhost).
    for (name, env) in [
        (
            "Go mux-counter-host (hashicorp/yamux, knocks by hand) -> rpcplugin bidirectional plugin (unix)",
            vec![],
        ),
        (
            "Go mux-counter-host (hashicorp/yamux, knocks by hand) -> rpcplugin bidirectional plugin (tcp)",
            vec![("PLUGIN_SERVER_TRANSPORTS", "tcp")],
        ),
    ] {
        cases.push(Case {
            name: name.into(),
            program: go.join("mux-counter-host"),
            args: rust_plugin(),
            env,
            expect: Expect::Prints(COUNTER_OUT, Some("knocks acknowledged both ways")),
        });
    }
    cases.push(Case {
        name: "rpcplugin bidirectional host --multiplex -> Go mux-counter-plugin (hashicorp/yamux server)".into(),
        program: bidirectional.to_owned(),
        args: vec![
            "host".into(),
            "--multiplex".into(),
            "--".into(),
            s(&go.join("mux-counter-plugin")),
        ],
        env: vec![],
        expect: Expect::Prints(COUNTER_OUT, Some("multiplexed, plaintext")),
    });
    cases.push(Case {
        name: "rpcplugin bidirectional host --multiplex -> go-plugin counter-plugin: refused (1.0.1 cannot multiplex)".into(),
        program: bidirectional.to_owned(),
        args: vec!["host".into(), "--multiplex".into(), "--".into(), s(&go_plugin)],
        env: vec![],
        expect: Expect::Failure("does not support a multiplexed broker"),
    });
    cases.push(Case {
        name: "go-plugin counter-host -> rpcplugin bidirectional plugin (unix)".into(),
        program: go_host.clone(),
        args: rust_plugin(),
        env: vec![],
        expect: Expect::Prints(COUNTER_OUT, None),
    });
    cases.push(Case {
        name: "go-plugin counter-host -> rpcplugin bidirectional plugin (tcp)".into(),
        program: go_host.clone(),
        args: rust_plugin(),
        env: vec![("PLUGIN_SERVER_TRANSPORTS", "tcp")],
        expect: Expect::Prints(COUNTER_OUT, None),
    });
    // The Rust plugin pins the Go host's certificate when dialling back, so this
    // works although go-plugin 1.0.1's own plugins cannot do it (go-plugin#109).
    cases.push(Case {
        name: "go-plugin counter-host --automtls -> rpcplugin bidirectional plugin".into(),
        program: go_host,
        args: with(&["--automtls"], rust_plugin()),
        env: vec![],
        expect: Expect::Prints(COUNTER_OUT, None),
    });
    cases.push(Case {
        name: "rpcplugin bidirectional host -> go-plugin counter-plugin".into(),
        program: bidirectional.to_owned(),
        args: vec!["host".into(), "--".into(), s(&go_plugin)],
        env: vec![],
        expect: Expect::Prints(COUNTER_OUT, Some("plaintext")),
    });
    // go-plugin 1.0.1 plugins check the host's certificate against the system
    // roots under the name "unused" when dialling back: a known go-plugin bug,
    // fixed in 1.4.4. This case notices if the peer ever behaves otherwise.
    cases.push(Case {
        name: "rpcplugin bidirectional host --automtls -> go-plugin counter-plugin: its callback fails (go-plugin#109)".into(),
        program: bidirectional.to_owned(),
        args: vec!["host".into(), "--automtls".into(), "--".into(), s(&go_plugin)],
        env: vec![],
        expect: Expect::Failure("valid for localhost, not unused"),
    });
}

fn run_case(case: &Case) -> Result<()> {
    let mut command = Command::new(&case.program);
    command.args(&case.args).envs(case.env.iter().copied());
    let output = crate::output_with_timeout(&mut command, CASE_TIMEOUT)?;
    let status = output.status;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let tail = || {
        stderr
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n      ")
    };
    match case.expect {
        Expect::World if status.success() && stdout == "world\n" => Ok(()),
        Expect::World => bail!("{status}, stdout {stdout:?}\n      {}", tail()),
        Expect::WorldWith(needle)
            if status.success() && stdout == "world\n" && stderr.contains(needle) =>
        {
            Ok(())
        }
        Expect::WorldWith(needle) => bail!(
            "expected world and {needle:?} in stderr, got {status}, stdout {stdout:?}\n      {}",
            tail()
        ),
        Expect::Failure(needle) if !status.success() && stderr.contains(needle) => Ok(()),
        Expect::Succeeds(needle) if status.success() && stdout.contains(needle) => Ok(()),
        Expect::Succeeds(needle) => bail!(
            "expected success and {needle:?} in stdout, got {status}, stdout {stdout:?}\n      {}",
            tail()
        ),
        Expect::Prints(out, needle)
            if status.success() && stdout == out && needle.is_none_or(|n| stderr.contains(n)) =>
        {
            Ok(())
        }
        Expect::Prints(out, needle) => bail!(
            "expected stdout {out:?} and {needle:?} in stderr, got {status}, stdout {stdout:?}\n      {}",
            tail()
        ),
        Expect::FailsWith(needles)
            if status.code() == Some(1) && needles.iter().all(|n| stdout.contains(n)) =>
        {
            Ok(())
        }
        Expect::FailsWith(needles) => bail!(
            "expected exit 1 and {needles:?} in stdout, got {status}, stdout {stdout:?}\n      {}",
            tail()
        ),
        Expect::Failure(needle) => {
            bail!(
                "expected a failure mentioning {needle:?}, got {status}, stdout {stdout:?}\n      {}",
                tail()
            )
        }
    }
}

/// Builds the plugin of tests/empty-crate (a crate outside the workspace, with its
/// own lock) into the workspace's target directory and returns its path.
pub(crate) fn build_empty_crate(root: &Path) -> Result<PathBuf> {
    let target = root.join("target");
    crate::run_cmd(
        &root.join("tests/empty-crate"),
        "cargo",
        &[
            "build",
            "--locked",
            "--offline",
            "--target-dir",
            &target.to_string_lossy(),
        ],
        &[],
    )?;
    Ok(target.join("debug/greeter-plugin"))
}
