//! The broker (go-plugin's GRPCBroker) with real processes: `examples/bidirectional`
//! as the plugin, this test as the host. Calls in both directions, ids nobody
//! serves, and a plugin that dies while a brokered stream is open.

mod common;

use rpcplugin::Code;
use std::time::{Duration, Instant};

use common::{example, init_tracing, show, socket_path, wait_until, within};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rpcplugin::client::PluginClient;
use rpcplugin::proto::examples::counter::add_helper_client::AddHelperClient;
use rpcplugin::proto::examples::counter::add_helper_server::{AddHelper, AddHelperServer};
use rpcplugin::proto::examples::counter::counter_client::CounterClient;
use rpcplugin::proto::examples::counter::{
    Empty, GetRequest, PutRequest, SumRequest, SumResponse, TicksRequest,
};
use rpcplugin::tonic::service::Routes;
use rpcplugin::tonic::{self, Request, Response, Status};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_stream::StreamExt as _;

const CALL: Duration = Duration::from_secs(10);

/// The host's helper: adds, and counts the plugin's calls.
#[derive(Clone, Default)]
struct HostAdder {
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl AddHelper for HostAdder {
    async fn sum(&self, request: Request<SumRequest>) -> Result<Response<SumResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let SumRequest { a, b } = request.into_inner();
        Ok(Response::new(SumResponse { r: a + b }))
    }

    type TicksStream = tokio_stream::Empty<Result<SumResponse, Status>>;

    async fn ticks(&self, _: Request<TicksRequest>) -> Result<Response<Self::TicksStream>, Status> {
        Err(Status::unimplemented("not needed here"))
    }
}

async fn start(auto_mtls: bool) -> PluginClient {
    rpcplugin::plugin_client(example("bidirectional"))
        .arg("plugin")
        .handshake("BASIC_PLUGIN", "hello")
        .auto_mtls(auto_mtls)
        .start()
        .await
        .unwrap_or_else(|e| panic!("the bidirectional plugin starts: {}", rpcplugin::render(&e)))
}

async fn both_directions(auto_mtls: bool) {
    init_tracing();
    let plugin = start(auto_mtls).await;
    assert_eq!(plugin.is_tls(), auto_mtls);
    let broker = plugin.broker();
    let adder = HostAdder::default();
    let mut counter = CounterClient::new(plugin.channel());

    // Plugin -> host: the plugin calls the helper the host serves under an id (one
    // announcement per dial, as go-plugin: a fresh id for each call).
    let mut sockets = Vec::new();
    for value in [5, 7] {
        let id = broker.next_id();
        let server = broker
            .accept_and_serve(id, Routes::new(AddHelperServer::new(adder.clone())))
            .await
            .expect("the host serves its helper");
        let host_socket = socket_path(server.endpoint());
        assert!(
            host_socket.exists(),
            "the brokered socket exists while served"
        );
        within(
            CALL,
            "Put",
            counter.put(PutRequest {
                add_server: id,
                key: "k".into(),
                value,
            }),
        )
        .await
        .expect("Put calls back into the host");
        within(CALL, "stopping the brokered server", server.stop()).await;
        sockets.push(host_socket);
    }
    assert_eq!(sockets.len(), 2);
    assert_ne!(sockets[0], sockets[1], "a listener per brokered id");
    for socket in &sockets {
        assert!(
            !socket.exists(),
            "a stopped brokered server removes its socket"
        );
    }
    let got = counter
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner()
        .value;
    assert_eq!(got, 12);
    assert_eq!(adder.calls.load(Ordering::SeqCst), 2, "two callbacks");

    // Host -> plugin: the host dials the helper the plugin serves under an id.
    let id = counter
        .serve_helper(Empty {})
        .await
        .expect("the plugin serves a helper")
        .into_inner()
        .broker_id;
    let channel = within(CALL, "dial", broker.dial(id))
        .await
        .expect("the host dials the plugin's helper");
    let r = AddHelperClient::new(channel)
        .sum(SumRequest { a: 40, b: 2 })
        .await
        .expect("Sum on the plugin's helper")
        .into_inner()
        .r;
    assert_eq!(r, 42);

    let stopped = within(CALL, "stop", plugin.stop()).await.expect("stops");
    assert!(stopped.status.success());
    assert!(!broker.is_open(), "the broker closes with the plugin");
}

#[tokio::test]
async fn broker_calls_both_directions_with_automtls() {
    both_directions(true).await;
}

#[tokio::test]
async fn broker_calls_both_directions_in_plaintext() {
    both_directions(false).await;
}

#[tokio::test]
async fn dialling_an_id_nobody_serves_times_out_with_a_hint() {
    init_tracing();
    let plugin = start(true).await;
    let started = Instant::now();
    let err = plugin
        .broker()
        .dial_with_timeout(99, Duration::from_millis(300))
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("nobody serves id 99");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(err.code(), Code::BrokerDialTimeout);
    assert_eq!(err.kind(), rpcplugin::ErrorKind::Timeout);
    assert!(err.to_string().contains("99"), "{err}");
    assert!(common::hint(&err).contains("AcceptAndServe(99"));
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn a_plugin_dialling_an_id_the_host_never_serves_fails_after_five_seconds() {
    init_tracing();
    let plugin = start(false).await;
    let mut counter = CounterClient::new(plugin.channel());
    let started = Instant::now();
    let status = within(
        CALL,
        "Put with an unserved id",
        counter.put(PutRequest {
            add_server: 77,
            key: "k".into(),
            value: 1,
        }),
    )
    .await
    .expect_err("nobody serves id 77");
    let took = started.elapsed();
    println!("the host sees: {status}");
    // go-plugin's dial timeout, the default on both sides.
    assert!(
        took >= Duration::from_millis(4900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status
            .message()
            .contains("the host announced no broker id 77"),
        "{status}"
    );
    assert!(status.message().contains("accept_and_serve"), "{status}");
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn a_plugin_that_dies_with_a_brokered_stream_open_ends_it_and_closes_the_broker() {
    init_tracing();
    let plugin = start(true).await;
    let pid = plugin.pid();
    let broker = plugin.broker();
    // A host-side brokered server too: it must go when the plugin goes.
    let id = broker.next_id();
    let server = broker
        .accept_and_serve(id, Routes::new(AddHelperServer::new(HostAdder::default())))
        .await
        .unwrap();
    let host_socket = socket_path(server.endpoint());

    let mut counter = CounterClient::new(plugin.channel());
    let helper = counter.serve_helper(Empty {}).await.unwrap().into_inner();
    let channel = broker.dial(helper.broker_id).await.unwrap();
    let mut ticks = AddHelperClient::new(channel)
        .ticks(TicksRequest {
            count: 100_000,
            interval_ms: 10,
        })
        .await
        .expect("the brokered stream opens")
        .into_inner();
    for expected in 1..=3 {
        let tick = within(CALL, "a tick", ticks.next())
            .await
            .expect("ticks flow")
            .expect("ticks before the kill are fine");
        assert_eq!(tick.r, expected);
    }

    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();

    let ended = within(CALL, "the brokered stream after SIGKILL", async {
        loop {
            match ticks.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => break Some(status),
                None => break None,
            }
        }
    })
    .await;
    let status = ended.expect("a brokered stream cut by a dead plugin ends with an error");
    println!("the brokered stream ended with: {status}");
    assert!(
        wait_until(CALL, || !broker.is_open()).await,
        "the broker closes when the plugin's stream ends"
    );
    assert!(
        wait_until(CALL, || !host_socket.exists()).await,
        "the host's brokered listener is removed when the plugin is gone"
    );
    assert!(!server.is_serving());
    let err = broker
        .dial(helper.broker_id)
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("no dial after the plugin is gone");
    assert_eq!(err.code(), Code::BrokerClosed);
    assert!(err.to_string().contains("stream ended"), "{err}");
    let stopped = within(CALL, "stop", plugin.stop()).await.unwrap();
    assert_eq!(stopped.method, rpcplugin::client::StopMethod::AlreadyExited);
}

/// The plugin's first stdout line when started with `env`.
async fn handshake_line(env: &[(&str, &str)]) -> String {
    let mut child = tokio::process::Command::new(example("bidirectional"))
        .arg("plugin")
        .env("BASIC_PLUGIN", "hello")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    within(
        CALL,
        "the handshake line",
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await
    .unwrap();
    // SIGTERM, so the plugin removes its socket directory as it exits.
    let pid = child.id().expect("running");
    tokio::task::spawn_blocking(move || common::terminate(pid))
        .await
        .unwrap();
    child.wait().await.unwrap();
    line.trim_end().to_owned()
}

#[tokio::test]
async fn the_seventh_handshake_field_only_when_the_host_asks_for_multiplexing() {
    // go-plugin 1.0 hosts split the line into at most 6 fields: a 7th would end up
    // inside the certificate field.
    let plain = handshake_line(&[]).await;
    assert_eq!(plain.split('|').count(), 6, "{plain}");
    let asked = handshake_line(&[("PLUGIN_MULTIPLEX_GRPC", "true")]).await;
    assert_eq!(asked.split('|').count(), 7, "{asked}");
    assert!(asked.ends_with("|true"), "{asked}");
}

async fn start_multiplexed() -> PluginClient {
    rpcplugin::plugin_client(example("bidirectional"))
        .arg("plugin")
        .handshake("BASIC_PLUGIN", "hello")
        .multiplex_grpc(true)
        .start()
        .await
        .unwrap_or_else(|e| panic!("the bidirectional plugin starts: {}", rpcplugin::render(&e)))
}

#[tokio::test]
async fn a_multiplexed_broker_calls_both_directions_inside_one_connection() {
    init_tracing();
    let plugin = start_multiplexed().await;
    assert!(plugin.is_tls());
    let broker = plugin.broker();
    assert!(broker.is_multiplexed());
    let socket = socket_path(plugin.endpoint());
    let socket_dir = socket.parent().unwrap().to_owned();
    let adder = HostAdder::default();
    let mut counter = CounterClient::new(plugin.channel());
    for value in [5, 7] {
        let id = broker.next_id();
        let server = broker
            .accept_and_serve(id, Routes::new(AddHelperServer::new(adder.clone())))
            .await
            .expect("the host serves its helper");
        assert_eq!(server.endpoint(), plugin.endpoint(), "no socket of its own");
        within(
            CALL,
            "Put",
            counter.put(PutRequest {
                add_server: id,
                key: "k".into(),
                value,
            }),
        )
        .await
        .expect("Put calls back into the host over the multiplexed connection");
        server.stop().await;
    }
    assert_eq!(adder.calls.load(Ordering::SeqCst), 2);
    let id = counter
        .serve_helper(Empty {})
        .await
        .unwrap()
        .into_inner()
        .broker_id;
    let channel = within(CALL, "dial", broker.dial(id)).await.expect("dials");
    let r = AddHelperClient::new(channel)
        .sum(SumRequest { a: 40, b: 2 })
        .await
        .expect("Sum on the plugin's helper")
        .into_inner()
        .r;
    assert_eq!(r, 42);
    // Everything ran over the plugin's one socket.
    let entries: Vec<_> = std::fs::read_dir(&socket_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries, [socket], "only the plugin's own socket");
    let stopped = within(CALL, "stop", plugin.stop()).await.unwrap();
    assert!(stopped.status.success());
}

#[tokio::test]
async fn a_multiplexed_dial_of_an_id_nobody_serves_is_refused_at_once() {
    init_tracing();
    let plugin = start_multiplexed().await;
    let started = Instant::now();
    let err = plugin
        .broker()
        .dial(99)
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("nobody serves id 99");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.code(), Code::BrokerKnockRefused);
    assert!(err.to_string().contains("no listener for id 99"), "{err}");
    assert!(common::hint(&err).contains("AcceptAndServe(99"));
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn a_plugin_that_dies_with_a_multiplexed_stream_open_ends_it() {
    init_tracing();
    let plugin = start_multiplexed().await;
    let pid = plugin.pid();
    let broker = plugin.broker();
    let mut counter = CounterClient::new(plugin.channel());
    let helper = counter.serve_helper(Empty {}).await.unwrap().into_inner();
    let channel = broker.dial(helper.broker_id).await.unwrap();
    let mut ticks = AddHelperClient::new(channel)
        .ticks(TicksRequest {
            count: 100_000,
            interval_ms: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let first = within(CALL, "a tick", ticks.next()).await.unwrap().unwrap();
    assert_eq!(first.r, 1);
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let ended = within(CALL, "the stream after SIGKILL", async {
        loop {
            match ticks.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => break Some(status),
                None => break None,
            }
        }
    })
    .await;
    assert!(ended.is_some(), "the stream ends with an error");
    assert!(wait_until(CALL, || !broker.is_open()).await);
    // The stream can end before the kernel has finished the process off.
    assert!(wait_until(CALL, || common::reapable(pid)).await);
    let stopped = within(CALL, "stop", plugin.stop()).await.unwrap();
    assert_eq!(stopped.method, rpcplugin::client::StopMethod::AlreadyExited);
}
