//! A Rust host drives `examples/kv_plugin` as a real child process: calls over a
//! Unix socket and over TCP, large messages, the ways a plugin stops, and a plugin
//! that dies mid-call.

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use common::{init_tracing, kv_plugin, pid_alive, socket_path, within};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rpcplugin::Endpoint;
use rpcplugin::client::{PluginClient, StopMethod};
use rpcplugin::proto::examples::bench::DownloadRequest;
use rpcplugin::proto::examples::bench::bench_client::BenchClient;
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest};
use rpcplugin::proto::health::v1::HealthCheckRequest;
use rpcplugin::proto::health::v1::health_check_response::ServingStatus;
use rpcplugin::proto::health::v1::health_client::HealthClient;
use rpcplugin::proto::plugin::Empty;
use rpcplugin::proto::plugin::grpc_controller_client::GrpcControllerClient;
use rpcplugin::tonic;
use tokio_stream::StreamExt;

const CALL: Duration = Duration::from_secs(5);

/// Put hello=world, read it back, and check the plugin reports itself healthy.
async fn put_get_and_health(plugin: &PluginClient) {
    let mut kv = KvClient::new(plugin.channel());
    within(
        CALL,
        "Put",
        kv.put(PutRequest {
            key: "hello".into(),
            value: b"world".to_vec(),
        }),
    )
    .await
    .expect("Put succeeds");
    let value = within(
        CALL,
        "Get",
        kv.get(GetRequest {
            key: "hello".into(),
        }),
    )
    .await
    .expect("Get succeeds")
    .into_inner()
    .value;
    assert_eq!(value, b"world");

    let mut health = HealthClient::new(plugin.channel());
    let status = within(
        CALL,
        "health check",
        health.check(HealthCheckRequest {
            service: "plugin".into(),
        }),
    )
    .await
    .expect("health check succeeds")
    .into_inner()
    .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}

/// Waits (bounded) for a plugin this host started to exit on its own, and returns
/// its exit status.
async fn exit_status_within(
    plugin: &mut PluginClient,
    timeout: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = plugin.try_exit_status() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "plugin pid {} still running after {timeout:?}",
            plugin.pid()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn unix_socket_round_trip_and_graceful_stop() {
    init_tracing();
    let plugin = kv_plugin().start().await.expect("kv_plugin starts");
    assert_eq!(plugin.protocol_version(), 1);
    let socket = socket_path(plugin.endpoint());
    let dir = socket.parent().expect("socket in a directory").to_owned();
    let pid = plugin.pid();
    assert!(socket.exists(), "socket {} exists", socket.display());
    assert!(pid_alive(pid));

    put_get_and_health(&plugin).await;

    let stopped = within(Duration::from_secs(10), "stop", plugin.stop())
        .await
        .expect("stop succeeds");
    assert_eq!(stopped.method, StopMethod::Graceful);
    assert_eq!(
        stopped.status.code(),
        Some(0),
        "exit status {}",
        stopped.status
    );
    assert!(!socket.exists(), "socket {} removed", socket.display());
    assert!(!dir.exists(), "socket directory {} removed", dir.display());
    assert!(!pid_alive(pid), "plugin pid {pid} is gone");
}

#[tokio::test]
async fn tcp_round_trip_and_graceful_stop() {
    init_tracing();
    let plugin = kv_plugin()
        .env("PLUGIN_SERVER_TRANSPORTS", "tcp")
        .start()
        .await
        .expect("kv_plugin starts on TCP");
    let addr = match plugin.endpoint() {
        Endpoint::Tcp(addr) => *addr,
        other => panic!("expected a TCP endpoint, got {other:?}"),
    };
    assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_ne!(addr.port(), 0);
    let pid = plugin.pid();

    put_get_and_health(&plugin).await;

    let stopped = within(Duration::from_secs(10), "stop", plugin.stop())
        .await
        .expect("stop succeeds");
    assert_eq!(stopped.method, StopMethod::Graceful);
    assert_eq!(
        stopped.status.code(),
        Some(0),
        "exit status {}",
        stopped.status
    );
    assert!(!pid_alive(pid), "plugin pid {pid} is gone");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "nothing listens on {addr} after stop"
    );
}

#[tokio::test]
async fn messages_larger_than_tonic_default_round_trip() {
    init_tracing();
    let plugin = kv_plugin().start().await.expect("kv_plugin starts");
    // The host's default limits (i32::MAX), not tonic's.
    let mut kv = rpcplugin::client::new_client!(KvClient, plugin);
    // 8 MiB: twice tonic's 4 MiB default, well under the plugin's 256 MiB.
    let value: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    within(
        Duration::from_secs(10),
        "8 MiB Put",
        kv.put(PutRequest {
            key: "big".into(),
            value: value.clone(),
        }),
    )
    .await
    .expect("an 8 MiB Put is accepted");
    let got = within(
        Duration::from_secs(10),
        "8 MiB Get",
        kv.get(GetRequest { key: "big".into() }),
    )
    .await
    .expect("an 8 MiB Get is answered")
    .into_inner()
    .value;
    assert_eq!(got.len(), value.len());
    assert!(got == value, "the 8 MiB value came back changed");
    plugin.stop().await.expect("stop succeeds");
}

#[tokio::test]
async fn plugin_killed_mid_stream_ends_calls_with_errors() {
    init_tracing();
    let plugin = kv_plugin().start().await.expect("kv_plugin starts");
    let pid = plugin.pid();
    let mut bench = BenchClient::new(plugin.channel());
    let mut stream = within(
        CALL,
        "Download",
        bench.download(DownloadRequest {
            chunk_size: 65536,
            count: 1_000_000,
        }),
    )
    .await
    .expect("Download starts")
    .into_inner();
    for _ in 0..3 {
        let chunk = within(CALL, "a Download message", stream.next())
            .await
            .expect("the stream has messages")
            .expect("messages before the kill are fine");
        assert_eq!(chunk.data.len(), 65536);
    }

    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL the plugin");

    // Messages already buffered may still arrive; then the stream must fail.
    let ended = within(CALL, "the stream after SIGKILL", async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => break Some(status),
                None => break None,
            }
        }
    })
    .await;
    let status = ended.expect("a stream cut by a dead plugin ends with an error, not a clean end");
    println!("stream ended with: {status}");

    let mut kv = KvClient::new(plugin.channel());
    let unary = within(
        CALL,
        "a unary call to the dead plugin",
        kv.get(GetRequest {
            key: "hello".into(),
        }),
    )
    .await;
    let status = unary.expect_err("a call to a dead plugin fails");
    println!("unary call failed with: {status}");
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ),
        "unexpected status {status:?}"
    );
    // The socket closes while the kernel is still tearing the process down; it
    // has exited once it is a zombie.
    assert!(
        common::wait_until(Duration::from_secs(5), || !pid_alive(pid)).await,
        "the SIGKILLed plugin exits"
    );
    let stopped = within(Duration::from_secs(10), "stop", plugin.stop())
        .await
        .expect("stopping a dead plugin succeeds");
    assert_eq!(stopped.method, StopMethod::AlreadyExited);
}

#[tokio::test]
async fn shutdown_rpc_replies_then_plugin_exits() {
    init_tracing();
    let mut plugin = kv_plugin().start().await.expect("kv_plugin starts");
    let socket = socket_path(plugin.endpoint());
    let pid = plugin.pid();

    let mut controller = GrpcControllerClient::new(plugin.channel());
    within(CALL, "Shutdown", controller.shutdown(Empty {}))
        .await
        .expect("rpcplugin answers Shutdown before stopping");

    let status = exit_status_within(&mut plugin, Duration::from_secs(2)).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(!pid_alive(pid));
    assert!(
        !socket.exists(),
        "plugin removed its socket {}",
        socket.display()
    );

    let stopped = plugin.stop().await.expect("stop after exit succeeds");
    assert_eq!(stopped.method, StopMethod::AlreadyExited);
}

#[tokio::test]
async fn sigterm_stops_plugin_and_removes_socket() {
    init_tracing();
    let mut plugin = kv_plugin().start().await.expect("kv_plugin starts");
    let socket = socket_path(plugin.endpoint());
    let dir = socket.parent().expect("socket in a directory").to_owned();
    let pid = plugin.pid();

    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).expect("SIGTERM the plugin");
    let status = exit_status_within(&mut plugin, Duration::from_secs(3)).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        !socket.exists(),
        "plugin removed its socket {}",
        socket.display()
    );

    drop(plugin);
    assert!(
        !dir.exists(),
        "the host removed its socket directory {}",
        dir.display()
    );
}

#[tokio::test]
async fn quick_start_example_runs() {
    let mut command = tokio::process::Command::new(common::example("quick_start"));
    command.kill_on_drop(true);
    let output = within(Duration::from_secs(20), "quick_start", command.output())
        .await
        .expect("quick_start runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(output.status.success(), "exit status {}", output.status);
    assert!(stdout.contains("hello = world"), "stdout: {stdout}");
    assert!(
        stdout.contains("plugin stopped: Graceful"),
        "stdout: {stdout}"
    );
}

/// What grpcurl and go-plugin's tooling see: reflection lists every service the
/// plugin serves and hands out descriptors that decode, with the methods of
/// `bench.v1.Bench` in them (the served set carries no source info since codegen
/// strips it, as protoc-gen-go does, so plugins start faster).
#[tokio::test]
async fn reflection_lists_the_services_and_describes_them() {
    use prost::Message as _;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    init_tracing();
    let plugin = kv_plugin().start().await.expect("kv_plugin starts");
    let mut client = ServerReflectionClient::new(plugin.channel());
    let ask = |request: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let requests = tokio_stream::iter([
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "bench.v1.Bench".into(),
        )),
    ]);
    let mut replies = within(
        Duration::from_secs(10),
        "reflection",
        client.server_reflection_info(requests),
    )
    .await
    .expect("reflection answers")
    .into_inner();

    let listed = match replies.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service,
        other => panic!("expected a service list, got {other:?}"),
    };
    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    for service in [
        "proto.KV",
        "bench.v1.Bench",
        "grpc.health.v1.Health",
        "plugin.GRPCController",
        "plugin.GRPCBroker",
        "plugin.GRPCStdio",
    ] {
        assert!(names.contains(&service), "{service} missing from {names:?}");
    }

    let files = match replies.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::FileDescriptorResponse(files)) => files.file_descriptor_proto,
        other => panic!("expected file descriptors, got {other:?}"),
    };
    let bench = files
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("a descriptor")
        })
        .find(|file| file.package() == "bench.v1")
        .expect("the file of bench.v1.Bench");
    let methods: Vec<&str> = bench.service[0].method.iter().map(|m| m.name()).collect();
    assert_eq!(methods, ["Echo", "Download"]);
    assert!(bench.source_code_info.is_none(), "source info is stripped");
    plugin.stop().await.expect("stop");
}

/// A host may send SIGTERM the moment it has read the handshake line: the plugin
/// has its handlers in place by then, stops gracefully (exit 0) and removes its
/// socket. Twenty times, since the window was a few milliseconds wide.
#[test]
fn sigterm_right_after_the_handshake_line_is_a_graceful_stop() {
    use std::io::BufRead;
    for _ in 0..20 {
        let mut child = std::process::Command::new(common::example("kv_plugin"))
            .env(common::COOKIE.0, common::COOKIE.1)
            .env("PLUGIN_PROTOCOL_VERSIONS", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let exited = common::wait_until_blocking(std::time::Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        assert!(exited, "the plugin did not stop on SIGTERM");
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?} after {line:?}");
        let socket = line.split('|').nth(3).unwrap();
        assert!(
            !std::path::Path::new(socket).exists(),
            "{socket} left behind"
        );
    }
}
