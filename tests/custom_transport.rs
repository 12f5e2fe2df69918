//! A transport defined outside the rpcplugin crates carries a host and a plugin:
//! Linux abstract Unix sockets (`examples/abstract_socket/transport.rs`), with
//! `examples/abstract_socket` as the plugin and this test as the host.
//!
//! The transport's file is included as it is (`#[path]`) rather than copied: it is
//! what a user would put in a module of their own, and one copy cannot drift from
//! the example that documents it.

mod common;

#[path = "../examples/abstract_socket/transport.rs"]
mod abstract_transport;

use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use abstract_transport::{AbstractConnector, AbstractTransport};
use common::{COOKIE, example, exec_recording_pid, hint, init_tracing, pid_alive, read_pid, show};
use common::{wait_until, within};
use rpcplugin::Code;
use rpcplugin::config::Environment;
use rpcplugin::proto::examples::counter::add_helper_client::AddHelperClient;
use rpcplugin::proto::examples::counter::add_helper_server::{AddHelper, AddHelperServer};
use rpcplugin::proto::examples::counter::counter_client::CounterClient;
use rpcplugin::proto::examples::counter::{
    Empty, GetRequest, PutRequest, SumRequest, SumResponse, TicksRequest,
};
use rpcplugin::tonic::service::Routes;
use rpcplugin::tonic::{self, Request, Response, Status};

const CALL: Duration = Duration::from_secs(10);

/// The host's helper the plugin calls back through the broker.
struct HostAdder;

#[tonic::async_trait]
impl AddHelper for HostAdder {
    async fn sum(&self, request: Request<SumRequest>) -> Result<Response<SumResponse>, Status> {
        let SumRequest { a, b } = request.into_inner();
        Ok(Response::new(SumResponse { r: a + b }))
    }

    type TicksStream = tokio_stream::Empty<Result<SumResponse, Status>>;

    async fn ticks(&self, _: Request<TicksRequest>) -> Result<Response<Self::TicksStream>, Status> {
        Err(Status::unimplemented("not needed here"))
    }
}

/// The host's settings with every place a socket could go pointed at `dir`.
fn environment_in(dir: &Path) -> Environment {
    let dir = dir.display().to_string();
    Environment::from_pairs(std::env::vars().chain([
        ("PLUGIN_UNIX_SOCKET_DIR".to_owned(), dir.clone()),
        ("TMPDIR".to_owned(), dir),
    ]))
}

/// Every socket file under `dir`, at any depth (bounded: the tree is the host's
/// private directory, a level or two deep).
fn sockets_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        assert!(found.len() + pending.len() < 1000, "unexpectedly deep tree");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_socket() {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Whether `/proc/net/unix` lists the abstract socket `name` (as `@name`).
fn listed(name: &str) -> bool {
    let wanted = format!("@{name}");
    std::fs::read_to_string("/proc/net/unix")
        .expect("/proc/net/unix is readable on Linux")
        .lines()
        .any(|line| line.split_whitespace().last() == Some(wanted.as_str()))
}

#[tokio::test]
async fn abstract_sockets_carry_calls_and_brokered_connections_and_leave_nothing() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let network = abstract_transport::network();
    let plugin = rpcplugin::plugin_client(example("abstract_socket"))
        .arg("plugin")
        .handshake(COOKIE.0, COOKIE.1)
        .environment(environment_in(dir.path()))
        .env("TMPDIR", dir.path())
        .connector(network, AbstractConnector)
        .broker_transport(AbstractTransport)
        .start()
        .await
        .unwrap_or_else(|e| panic!("the plugin starts: {}", rpcplugin::render(&e)));
    let pid = plugin.pid();

    // The handshake line announced the custom network and the socket's name.
    let announced = plugin.handshake().endpoint.clone();
    assert_eq!(announced.network(), network);
    let name = announced.to_string();
    assert!(name.starts_with("rpcplugin-"), "{name}");
    assert!(listed(&name), "the plugin listens on @{name}");
    assert!(plugin.is_tls(), "AutoMTLS stays on over a custom transport");

    // A plain call.
    let mut counter = CounterClient::new(plugin.channel());
    let before = within(CALL, "Get", counter.get(GetRequest { key: "k".into() }))
        .await
        .expect("a call over the abstract socket");
    assert_eq!(before.into_inner().value, 0);

    // Plugin -> host: the host brokers its helper over its broker transport, the
    // plugin dials it with its own AbstractConnector.
    let broker = plugin.broker();
    let id = broker.next_id();
    let server = broker
        .accept_and_serve(id, Routes::new(AddHelperServer::new(HostAdder)))
        .await
        .expect("the host serves its helper");
    assert_eq!(server.endpoint().network(), network);
    assert!(listed(&server.endpoint().to_string()));
    within(
        CALL,
        "Put",
        counter.put(PutRequest {
            add_server: id,
            key: "k".into(),
            value: 5,
        }),
    )
    .await
    .expect("the plugin called the host's helper");
    let after = counter.get(GetRequest { key: "k".into() }).await.unwrap();
    assert_eq!(after.into_inner().value, 5);
    server.stop().await;

    // Host -> plugin: the plugin brokers a helper on a new abstract socket.
    let id = counter
        .serve_helper(Empty {})
        .await
        .expect("ServeHelper")
        .into_inner()
        .broker_id;
    let channel = within(CALL, "dial", broker.dial(id))
        .await
        .expect("the host dials the plugin's helper");
    let sum = AddHelperClient::new(channel)
        .sum(SumRequest { a: 40, b: 2 })
        .await
        .expect("a call on the brokered connection");
    assert_eq!(sum.into_inner().r, 42);

    // No socket file anywhere the host or the plugin could have put one. The
    // host's private directory is there (so the settings above took effect),
    // empty of sockets.
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        entries, 1,
        "the host made its private socket dir in {dir:?}"
    );
    assert_eq!(sockets_under(dir.path()), Vec::<PathBuf>::new());

    within(CALL, "stop", plugin.stop())
        .await
        .expect("the plugin stops");
    assert!(!pid_alive(pid), "plugin {pid} is gone after stop");
    assert!(!listed(&name), "@{name} is gone after stop");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "nothing left in the socket dir: {left:?}");
}

#[tokio::test]
async fn a_host_without_a_connector_refuses_with_a_hint_and_leaves_no_process() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let args = exec_recording_pid(&pid_file, &example("abstract_socket"), &["plugin"]);
    let err = rpcplugin::plugin_client("sh")
        .args(&args)
        .handshake(COOKIE.0, COOKIE.1)
        .start()
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("no connector for the network `abstract`");
    assert_eq!(err.code(), Code::TransportNoConnector);
    assert!(err.to_string().contains("abstract"), "{err}");
    assert!(hint(&err).contains(".connector("), "{}", hint(&err));

    let pid = read_pid(&pid_file);
    assert!(
        wait_until(Duration::from_secs(5), || !pid_alive(pid)).await,
        "the refused plugin {pid} was stopped"
    );
}

/// A process connecting as `uid` to the abstract socket `name`; prints what it saw:
/// `closed` when the listener dropped it, `data` or `timeout` otherwise.
const PEER_SCRIPT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(3)
s.connect("\0" + sys.argv[1])
try:
    print("closed" if s.recv(1) == b"" else "data")
except ConnectionResetError:
    print("closed")
except socket.timeout:
    print("timeout")
"#;

/// Abstract sockets have no permissions, so the transport's accept checks the
/// peer's uid: another user's connection is dropped before any byte, this user's
/// goes through. Needs root (to run a peer as `nobody`) and /usr/bin/python3.
#[tokio::test]
async fn connections_from_another_user_are_dropped() {
    use rpcplugin::transport::Transport as _;
    use tower::ServiceExt as _;

    init_tracing();
    let python = Path::new("/usr/bin/python3");
    if !nix::unistd::Uid::effective().is_root() || !python.is_file() {
        println!("skipped: needs root and /usr/bin/python3 to connect as another user");
        return;
    }
    let listener = AbstractTransport.bind().await.expect("binds");
    let endpoint = listener.endpoint().clone();
    let (accepted, mut accepted_rx) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = tokio::spawn(async move {
        while let Ok(stream) = listener.accept().await {
            if accepted.send(stream).is_err() {
                break;
            }
        }
    });

    let stranger = tokio::process::Command::new(python)
        .args(["-c", PEER_SCRIPT, &endpoint.to_string()])
        .uid(65534)
        .gid(65534)
        .kill_on_drop(true)
        .output();
    let stranger = within(CALL, "the other user's connection", stranger)
        .await
        .expect("python3 runs as nobody");
    let saw = String::from_utf8_lossy(&stranger.stdout);
    assert_eq!(
        saw.trim(),
        "closed",
        "the other user was dropped; stderr: {}",
        String::from_utf8_lossy(&stranger.stderr)
    );
    assert!(
        accepted_rx.try_recv().is_err(),
        "the other user's connection never reached the server"
    );

    let _mine = AbstractConnector
        .oneshot(endpoint)
        .await
        .expect("this user connects");
    let stream = within(CALL, "this user's connection", accepted_rx.recv())
        .await
        .expect("this user's connection is accepted");
    assert_eq!(stream.network(), abstract_transport::network());
    acceptor.abort();
}
