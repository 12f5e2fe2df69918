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
