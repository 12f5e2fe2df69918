//! The teaching examples run and show what they claim.

mod common;

#[test]
fn error_handling_shows_one_error_of_each_kind_with_hints() {
    let output = std::process::Command::new(common::example("error_handling"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "kind process, code process.spawn",
        "kind config, code config.missing_cookie",
        "kind handshake, code handshake.unrecognized_line",
        "kind timeout, code handshake.timeout",
        "kind security, code security.plaintext_handshake",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
    assert!(
        stdout.matches("|   hint: ").count() >= 5,
        "every error has a hint"
    );
}

#[test]
fn abstract_socket_runs_a_plugin_over_a_custom_transport() {
    let output = std::process::Command::new(common::example("abstract_socket"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "handshake: network abstract address rpcplugin-",
        "tls: on (AutoMTLS)",
        "socket file: none (/proc/net/unix lists @rpcplugin-",
        "plugin -> host (brokered): hello = 3",
        "host -> plugin (brokered): 40 + 2 = 42",
        "stopped: Graceful; plugin pid ",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
    assert!(
        stdout.contains(" gone; @rpcplugin-") && stdout.trim_end().ends_with(" gone"),
        "the plugin and its socket are gone after stop"
    );
}

#[test]
fn sandboxed_confines_its_plugin_to_the_data_directory() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(common::example("sandboxed"))
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        println!("{stdout}");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let confined = run(&[]);
    for expected in [
        "(mutual TLS)",
        "sandbox: landlock abi ",
        "; seccomp deny-list; no_new_privs",
        "write notes.txt in the data directory: ok",
        "read notes.txt in the data directory: ok (\"kept inside\")",
        "read a file outside (the host's secret): denied (read ",
        "write a file outside: denied (write ",
        "true: denied (run ",
        "connect to 127.0.0.1:",
        "still serving: read notes.txt: ok (\"kept inside\")",
        "stopped: Graceful",
    ] {
        assert!(confined.contains(expected), "missing {expected:?}");
    }
    assert_eq!(
        confined.matches(": denied (").count(),
        4,
        "four reaches denied"
    );
    assert!(confined.contains("Permission denied (os error 13)"));

    let plugin = common::example("sandboxed");
    let plugin = plugin.to_str().unwrap();
    let free = run(&["host", "--no-sandbox", "--", plugin, "plugin"]);
    assert!(free.contains("sandbox: off"));
    assert!(free.contains("read a file outside (the host's secret): ok (\"the host's secret\")"));
    assert!(
        !free.contains("denied"),
        "nothing is denied without a sandbox"
    );
}

/// Runs an example to its end (at most 60 s) and returns its stdout, failing with its
/// stderr when it fails.
fn run_example(name: &str) -> String {
    let mut child = std::process::Command::new(common::example(name))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn server_setup_shows_each_builder_choice_from_the_host() {
    let stdout = run_example("server_setup");
    for expected in [
        "version: host offers 2 and 3, plugin serves 1 and 2: agreed on 2",
        "message limit: 512 KiB put accepted",
        "message limit: 2048 KiB put refused with OutOfRange",
        "concurrency: health during the load: SERVING",
        "concurrency: 2 served, 2 refused with ResourceExhausted",
        "health: after \"unhealthy\": NOT_SERVING",
        "health: after \"healthy\": SERVING",
        "drain: the call in flight completed; plugin stopped: Graceful",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
}

#[test]
fn client_connection_restarts_a_crashed_plugin_and_stops_it() {
    let stdout = run_example("client_connection");
    for expected in [
        "settings: handshake_timeout = 10s from code",
        "health: SERVING",
        "crash: the call failed with ",
        "crash: exited, exit status: 3",
        "crash: restarted as pid ",
        "after the restart: hello = \"\"",
        "stopped: plugin pid ",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
    assert!(stdout.trim_end().ends_with(" gone"), "the plugin is gone");
    // The 100 ms deadline ends a call the plugin takes a second to answer.
    let deadline = stdout
        .lines()
        .find(|l| l.starts_with("deadline: "))
        .unwrap();
    let ms: u64 = deadline
        .rsplit(" after ")
        .next()
        .and_then(|t| t.strip_suffix(" ms"))
        .and_then(|t| t.parse().ok())
        .unwrap();
    assert!((100..900).contains(&ms), "{deadline}");
    // A new process, not the old one answering again.
    let pid = |prefix: &str| {
        let line = stdout.lines().find(|l| l.starts_with(prefix)).unwrap();
        line[prefix.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert_ne!(pid("started: plugin pid "), pid("crash: restarted as pid "));
}

#[test]
fn transport_options_serves_unix_then_tcp_in_range_and_shows_the_negotiation() {
    let stdout = run_example("transport_options");
    for expected in [
        "unix: socket directory gone after the stop",
        "tcp: served at 127.0.0.1:",
        "loopback true, port in 20000..=20100 true",
        "error: plugin transport_options serves over tcp, which this host does not accept",
        "hint: PLUGIN_CLIENT_TRANSPORTS allows [Unix]",
        "negotiation: plugin prefers tcp then unix, host accepts both: tcp",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
}

/// The number in `line` just before `word` ("produced 3 and", "at most 37 ahead").
fn number_before(stdout: &str, prefix: &str, word: &str) -> u64 {
    let line = stdout.lines().find(|l| l.starts_with(prefix)).unwrap();
    let before = &line[..line.find(word).unwrap()];
    before.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn async_patterns_shows_the_four_shapes_cancellation_deadline_and_back_pressure() {
    let stdout = run_example("async_patterns");
    for expected in [
        "unary: 40 + 2 = 42",
        "server stream: [1, 2, 3, 4, 5]",
        "client stream: 1 + ... + 10 = 55",
        "bidi: running sums of 5, 10, 20: [5, 15, 35]",
        "then the host's deadline dropped it",
        "concurrent: 200 calls at once, all answered",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
    // Dropping a stream, or its deadline passing, stops the plugin's producer long
    // before the 1000 numbers asked for; a slow reader holds it back.
    assert!(number_before(&stdout, "cancel: ", " and stopped") < 100);
    assert!(number_before(&stdout, "deadline: ", " of 1000") < 100);
    assert!(number_before(&stdout, "back-pressure: ", " ahead") < 200);
}

#[test]
fn production_config_layers_file_environment_and_code_and_forwards_the_plugins_logs() {
    let stdout = run_example("production_config");
    for expected in [
        "setting: handshake_timeout = 8s from PLUGIN_HANDSHAKE_TIMEOUT (environment)",
        "setting: shutdown_grace = 1s from code",
        "setting: connection_timeout = 4s from rpcplugin.toml line 3",
        "resource limits: the plugin's open files limit is 256",
        "rate limit: of 6 calls at once, 3 served, 3 refused",
        "stopped: Graceful",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
    // The plugin's tracing events, re-emitted by the host with its name and pid.
    let forwarded = stdout
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("plugin log: served a get"))
        .filter(|l| l.contains("plugin=production_config pid="))
        .count();
    assert!(
        forwarded >= 4,
        "{forwarded} plugin log lines in the host's output"
    );
}

/// The first number after `label` on the line starting with `prefix`.
fn figure(stdout: &str, prefix: &str, label: &str) -> f64 {
    let line = stdout.lines().find(|l| l.starts_with(prefix)).unwrap();
    let after = &line[line.find(label).unwrap() + label.len()..];
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn performance_tuning_measures_message_size_and_concurrency_and_lists_the_recorded_figures() {
    let stdout = run_example("performance_tuning");
    // Directions with a wide margin (hundreds of times, five times here), so that a
    // busy machine does not flip them.
    let small = figure(&stdout, "message size: echo    1 KiB", "KiB:");
    let large = figure(&stdout, "message size: echo 1024 KiB", "KiB:");
    assert!(
        large > 10.0 * small,
        "1 MiB echoes {large} MiB/s, 1 KiB {small}"
    );
    let one = figure(&stdout, "concurrency: echo 1 KiB,  1 at once", "once:");
    let many = figure(&stdout, "concurrency: echo 1 KiB, 16 at once", "once:");
    assert!(many > one, "16 at once {many} calls/s, one at a time {one}");
    for expected in [
        "chunk size: download 16 MiB in   4 KiB chunks:",
        "chunk size: download 16 MiB in 256 KiB chunks:",
        "recorded: lto = \"fat\" and codegen-units = 1",
        "recorded: glibc allocator thresholds",
        "recorded: AWS_LC_SYS_NO_JITTER_ENTROPY=1",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
}

#[test]
fn custom_protocols_serves_a_hand_written_contract_in_two_versions_within_the_limits() {
    let stdout = run_example("custom_protocols");
    for expected in [
        "version 1: a host offering [1] is greeted \"hello, Ada\"; proto.KV: Unimplemented",
        "version 2: a host offering [1, 2] is greeted \"good day, Ada\"; proto.KV: served",
        "message limit: a 300 KiB name accepted",
        "message limit: a 2048 KiB name refused with OutOfRange",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?}");
    }
}
