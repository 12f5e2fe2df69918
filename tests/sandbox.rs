//! Sandboxed plugins, for real (Linux with Landlock ABI 6 or later and seccomp):
//! `examples/sandboxed` as the plugin, asked to read, write, run a program and
//! dial TCP outside its policy; the bidirectional example with the broker both
//! ways; a Go plugin; the configuration; failures; the cost at launch.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{example, init_tracing, show, within};
use rpcplugin::Code;
use rpcplugin::client::{IfUnsupported, PathAccess, PluginClient, Sandbox};
use rpcplugin::config::Environment;
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest};
use rpcplugin::tonic::transport::Channel;
use rpcplugin::tonic::{self, Status};

const CALL: Duration = Duration::from_secs(10);

/// The probe plugin of `examples/sandboxed`, with AutoMTLS (the default).
fn probe_plugin() -> rpcplugin::client::Builder {
    rpcplugin::plugin_client(example("sandboxed"))
        .arg("plugin")
        .handshake("BASIC_PLUGIN", "hello")
}

async fn start(builder: rpcplugin::client::Builder) -> PluginClient {
    within(CALL, "start", builder.start())
        .await
        .unwrap_or_else(|e| panic!("the plugin starts: {}", rpcplugin::render(&e)))
}

/// A place outside any policy: a file with a secret, a directory to write in, a
/// program to run and a listening loopback port.
struct Outside {
    dir: tempfile::TempDir,
    secret: PathBuf,
    program: PathBuf,
    service: std::net::TcpListener,
}

impl Outside {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret.txt");
        std::fs::write(&secret, "the host's secret").unwrap();
        let program = ["/usr/bin/true", "/bin/true"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("a `true` program");
        Self {
            dir,
            secret,
            program,
            service: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn port(&self) -> u16 {
        self.service.local_addr().unwrap().port()
    }
}

/// What the four reaches outside came to, in order: read, write, exec, connect.
struct Reach {
    read: Result<Vec<u8>, Status>,
    write: Result<(), Status>,
    exec: Result<Vec<u8>, Status>,
    connect: Result<Vec<u8>, Status>,
}

impl Reach {
    fn all_denied(&self) -> bool {
        denied(&self.read) && denied(&self.write) && denied(&self.exec) && denied(&self.connect)
    }

    fn all_allowed(&self) -> bool {
        self.read.is_ok() && self.write.is_ok() && self.exec.is_ok() && self.connect.is_ok()
    }
}

impl std::fmt::Debug for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |r: Result<(), &Status>| match r {
            Ok(()) => "ok".to_owned(),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        writeln!(f, "read:    {}", show(self.read.as_ref().map(|_| ())))?;
        writeln!(f, "write:   {}", show(self.write.as_ref().map(|_| ())))?;
        writeln!(f, "exec:    {}", show(self.exec.as_ref().map(|_| ())))?;
        write!(f, "connect: {}", show(self.connect.as_ref().map(|_| ())))
    }
}

/// Denied by the system: an rpcplugin plugin answers PERMISSION_DENIED, a
/// go-plugin one passes Go's "permission denied".
fn denied<T>(outcome: &Result<T, Status>) -> bool {
    outcome.as_ref().is_err_and(|s| {
        s.code() == tonic::Code::PermissionDenied
            || s.message()
                .to_ascii_lowercase()
                .contains("permission denied")
    })
}

async fn get(kv: &mut KvClient<Channel>, key: String) -> Result<Vec<u8>, Status> {
    within(CALL, "Get", kv.get(GetRequest { key }))
        .await
        .map(|r| r.into_inner().value)
}

async fn put(kv: &mut KvClient<Channel>, path: &Path, value: &[u8]) -> Result<(), Status> {
    let key = format!("file:{}", path.display());
    within(
        CALL,
        "Put",
        kv.put(PutRequest {
            key,
            value: value.to_vec(),
        }),
    )
    .await
    .map(|_| ())
}

async fn reach_out(kv: &mut KvClient<Channel>, outside: &Outside) -> Reach {
    Reach {
        read: get(kv, format!("file:{}", outside.secret.display())).await,
        write: put(kv, &outside.dir.path().join("planted.txt"), b"planted").await,
        exec: get(kv, format!("exec:{}", outside.program.display())).await,
        connect: get(kv, format!("connect:127.0.0.1:{}", outside.port())).await,
    }
}

/// The plugin still runs and works in its data directory: it kept serving
/// whatever it was denied.
async fn still_serves(plugin: &mut PluginClient, kv: &mut KvClient<Channel>, data: &Path) {
    assert_eq!(plugin.try_exit_status(), None, "the plugin still runs");
    let notes = data.join("notes.txt");
    put(kv, &notes, b"kept inside")
        .await
        .expect("writes in its data directory");
    let value = get(kv, format!("file:{}", notes.display()))
        .await
        .expect("reads it back");
    assert_eq!(value, b"kept inside");
}

async fn confined_and_still_serving(tcp: bool) {
    init_tracing();
    let data = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    let mut builder = probe_plugin().sandbox(Sandbox::new().write_path(data.path()));
    if tcp {
        builder = builder.env("PLUGIN_SERVER_TRANSPORTS", "tcp");
    }
    let mut plugin = start(builder).await;
    assert!(plugin.is_tls(), "AutoMTLS");
    match (tcp, plugin.endpoint()) {
        (true, rpcplugin::Endpoint::Tcp(_)) | (false, rpcplugin::Endpoint::Unix(_)) => {}
        (_, other) => panic!("unexpected endpoint {other}"),
    }
    let sandbox = plugin
        .sandbox()
        .expect("a sandboxed plugin reports its sandbox");
    println!("sandbox: {sandbox}");
    assert!(sandbox.filesystem && sandbox.network && sandbox.scoped && sandbox.seccomp);
    assert!(sandbox.missing.is_empty());
    assert!(
        sandbox
            .paths
            .iter()
            .any(|p| p.path == data.path() && p.access == PathAccess::ReadWrite && !p.implicit),
        "{sandbox}"
    );

    let mut kv = KvClient::new(plugin.channel());
    still_serves(&mut plugin, &mut kv, data.path()).await;
    let reach = reach_out(&mut kv, &outside).await;
    println!("{reach:?}");
    assert!(
        reach.all_denied(),
        "every reach outside is denied:\n{reach:?}"
    );
    assert!(!outside.dir.path().join("planted.txt").exists());
    still_serves(&mut plugin, &mut kv, data.path()).await;

    // What the plugin sees of itself: its own /proc/self (allowed in the child),
    // no new privileges, a seccomp filter.
    let status = get(&mut kv, "file:/proc/self/status".into())
        .await
        .expect("the plugin reads its own /proc/self");
    let status = String::from_utf8_lossy(&status);
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(
        denied(&get(&mut kv, "file:/proc/1/status".into()).await),
        "another process's /proc is outside"
    );
    // /proc/self's magic links resolve to the real file, which is checked.
    let through_proc = format!("file:/proc/self/root{}", outside.secret.display());
    assert!(
        denied(&get(&mut kv, through_proc).await),
        "no way out through /proc/self/root"
    );

    let stopped = within(CALL, "stop", plugin.stop()).await.unwrap();
    assert!(stopped.status.success(), "{:?}", stopped.status);
}

#[tokio::test]
async fn a_confined_plugin_over_unix_is_denied_outside_and_keeps_serving() {
    confined_and_still_serving(false).await;
}

#[tokio::test]
async fn a_confined_plugin_over_tcp_is_denied_outside_and_keeps_serving() {
    confined_and_still_serving(true).await;
}

#[tokio::test]
async fn the_same_plugin_without_a_sandbox_can_do_all_four() {
    init_tracing();
    let data = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    // Explicitly unconfined, whatever PLUGIN_SANDBOX the environment holds.
    let mut plugin = start(probe_plugin().sandbox(None)).await;
    assert!(plugin.sandbox().is_none());
    let mut kv = KvClient::new(plugin.channel());
    let reach = reach_out(&mut kv, &outside).await;
    println!("{reach:?}");
    assert!(reach.all_allowed(), "{reach:?}");
    assert_eq!(reach.read.unwrap(), b"the host's secret");
    assert_eq!(
        std::fs::read(outside.dir.path().join("planted.txt")).unwrap(),
        b"planted"
    );
    still_serves(&mut plugin, &mut kv, data.path()).await;
    within(CALL, "stop", plugin.stop()).await.unwrap();
}

#[tokio::test]
async fn what_the_policy_names_is_allowed_and_only_that() {
    init_tracing();
    let outside = Outside::new();
    let other = tempfile::tempdir().unwrap();
    let policy = Sandbox::new()
        .read_path(&outside.secret)
        .write_path(outside.dir.path())
        .exec_path(&outside.program)
        .tcp_connect(outside.port());
    let plugin = start(probe_plugin().sandbox(policy)).await;
    let sandbox = plugin.sandbox().unwrap();
    assert_eq!(sandbox.tcp_connect, [outside.port()]);
    let mut kv = KvClient::new(plugin.channel());
    let reach = reach_out(&mut kv, &outside).await;
    println!("{reach:?}");
    assert!(reach.all_allowed(), "{reach:?}");
    // A neighbour of what is allowed is still outside.
    assert!(denied(&put(&mut kv, &other.path().join("x"), b"x").await));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(denied(
        &get(&mut kv, format!("connect:127.0.0.1:{port}")).await
    ));
    within(CALL, "stop", plugin.stop()).await.unwrap();
}

#[tokio::test]
async fn the_host_configuration_turns_the_sandbox_on_and_code_wins() {
    init_tracing();
    let data = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    let port = outside.port().to_string();
    let write = data.path().display().to_string();
    let env = || {
        Environment::from_pairs([
            ("PLUGIN_SANDBOX", "on"),
            ("PLUGIN_SANDBOX_WRITE_PATHS", write.as_str()),
            ("PLUGIN_SANDBOX_TCP_CONNECT", port.as_str()),
            ("PLUGIN_SANDBOX_SECCOMP", "false"),
        ])
    };
    let mut plugin = start(probe_plugin().environment(env())).await;
    let sandbox = plugin.sandbox().expect("PLUGIN_SANDBOX=on confines it");
    assert!(!sandbox.seccomp, "PLUGIN_SANDBOX_SECCOMP=false");
    let mut kv = KvClient::new(plugin.channel());
    still_serves(&mut plugin, &mut kv, data.path()).await;
    let reach = reach_out(&mut kv, &outside).await;
    assert!(denied(&reach.read) && denied(&reach.write) && denied(&reach.exec));
    assert!(reach.connect.is_ok(), "the configured port: {reach:?}");
    within(CALL, "stop", plugin.stop()).await.unwrap();

    let plugin = start(probe_plugin().environment(env()).sandbox(None)).await;
    assert!(
        plugin.sandbox().is_none(),
        ".sandbox(None) wins over PLUGIN_SANDBOX"
    );
    within(CALL, "stop", plugin.stop()).await.unwrap();
}

#[tokio::test]
async fn the_hosts_sigterm_still_reaches_a_confined_plugin() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    init_tracing();
    let mut plugin = start(probe_plugin().sandbox(Sandbox::new())).await;
    let dir = match plugin.endpoint() {
        rpcplugin::Endpoint::Unix(path) => path.parent().unwrap().to_owned(),
        other => panic!("expected a Unix socket, got {other}"),
    };
    kill(Pid::from_raw(plugin.pid() as i32), Signal::SIGTERM).unwrap();
    let status = within(CALL, "the plugin exits on SIGTERM", plugin.wait())
        .await
        .unwrap();
    assert!(status.success(), "a graceful exit: {status:?}");
    within(CALL, "stop", plugin.stop()).await.unwrap();
    assert!(!dir.exists(), "no stale socket directory");
}

/// The host's helper for the broker tests: adds, and counts the plugin's calls.
mod broker {
    use rpcplugin::proto::examples::counter::add_helper_server::AddHelper;
    use rpcplugin::proto::examples::counter::{SumRequest, SumResponse, TicksRequest};
    use rpcplugin::tonic::{self, Request, Response, Status};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone, Default)]
    pub(crate) struct HostAdder {
        pub(crate) calls: Arc<AtomicUsize>,
    }

    impl HostAdder {
        pub(crate) fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[tonic::async_trait]
    impl AddHelper for HostAdder {
        async fn sum(&self, request: Request<SumRequest>) -> Result<Response<SumResponse>, Status> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let SumRequest { a, b } = request.into_inner();
            Ok(Response::new(SumResponse { r: a + b }))
        }

        type TicksStream = tokio_stream::Empty<Result<SumResponse, Status>>;

        async fn ticks(
            &self,
            _: Request<TicksRequest>,
        ) -> Result<Response<Self::TicksStream>, Status> {
            Err(Status::unimplemented("not needed here"))
        }
    }
}

async fn broker_both_ways_confined(tcp: bool) {
    use rpcplugin::proto::examples::counter::add_helper_client::AddHelperClient;
    use rpcplugin::proto::examples::counter::add_helper_server::AddHelperServer;
    use rpcplugin::proto::examples::counter::counter_client::CounterClient;
    use rpcplugin::proto::examples::counter::{Empty, GetRequest, PutRequest, SumRequest};
    use rpcplugin::tonic::service::Routes;

    init_tracing();
    let mut builder = rpcplugin::plugin_client(example("bidirectional"))
        .arg("plugin")
        .handshake("BASIC_PLUGIN", "hello")
        .sandbox(Sandbox::new());
    if tcp {
        builder = builder.env("PLUGIN_SERVER_TRANSPORTS", "tcp");
    }
    let plugin = start(builder).await;
    assert!(plugin.is_tls());
    assert!(
        plugin
            .sandbox()
            .is_some_and(|s| s.network && s.tcp_connect.is_empty())
    );
    let broker = plugin.broker();
    let adder = broker::HostAdder::default();
    let mut counter = CounterClient::new(plugin.channel());
    for value in [5, 7] {
        let id = broker.next_id();
        let server = within(
            CALL,
            "accept_and_serve",
            broker.accept_and_serve(id, Routes::new(AddHelperServer::new(adder.clone()))),
        )
        .await
        .expect("the host serves its helper");
        // No TCP rule could name a port the host picks later: the host brokers in
        // the plugin's socket directory, which the plugin may reach.
        assert!(
            matches!(server.endpoint(), rpcplugin::Endpoint::Unix(_)),
            "{}",
            server.endpoint()
        );
        within(
            CALL,
            "Put (the plugin calls the host back)",
            counter.put(PutRequest {
                add_server: id,
                key: "k".into(),
                value,
            }),
        )
        .await
        .expect("the confined plugin calls back into the host");
        within(CALL, "stop the brokered server", server.stop()).await;
    }
    let got = counter
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner()
        .value;
    assert_eq!(got, 12);
    assert_eq!(adder.calls(), 2);

    // Host -> plugin: the plugin binds a brokered listener of its own.
    let id = counter
        .serve_helper(Empty {})
        .await
        .expect("the confined plugin serves a helper")
        .into_inner()
        .broker_id;
    let channel = within(CALL, "dial", broker.dial(id)).await.unwrap();
    let r = AddHelperClient::new(channel)
        .sum(SumRequest { a: 40, b: 2 })
        .await
        .unwrap()
        .into_inner()
        .r;
    assert_eq!(r, 42);
    let stopped = within(CALL, "stop", plugin.stop()).await.unwrap();
    assert!(stopped.status.success());
}

#[tokio::test]
async fn the_broker_works_both_ways_with_a_confined_plugin_over_unix() {
    broker_both_ways_confined(false).await;
}

#[tokio::test]
async fn the_broker_works_both_ways_with_a_confined_plugin_over_tcp() {
    broker_both_ways_confined(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_plugin_is_confined_the_same_way() {
    let Some(go) = common::go_peers() else { return };
    init_tracing();
    let data = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    for sandboxed in [true, false] {
        let policy = sandboxed.then(|| Sandbox::new().write_path(data.path()));
        let mut plugin = start(
            rpcplugin::plugin_client(go.join("probe-plugin"))
                .handshake("BASIC_PLUGIN", "hello")
                .sandbox(policy),
        )
        .await;
        let mut kv = KvClient::new(plugin.channel());
        still_serves(&mut plugin, &mut kv, data.path()).await;
        let reach = reach_out(&mut kv, &outside).await;
        println!("Go plugin, sandbox {sandboxed}:\n{reach:?}");
        if sandboxed {
            assert!(reach.all_denied(), "{reach:?}");
            assert!(
                reach.read.as_ref().unwrap_err().message().contains("open "),
                "Go's own message: {reach:?}"
            );
        } else {
            assert!(reach.all_allowed(), "{reach:?}");
        }
        still_serves(&mut plugin, &mut kv, data.path()).await;
        within(CALL, "stop", plugin.stop()).await.unwrap();
    }
}

#[tokio::test]
async fn a_missing_policy_path_fails_the_start_before_anything_runs() {
    init_tracing();
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("not-there");
    let err = probe_plugin()
        .environment(Environment::from_pairs([(
            "PLUGIN_UNIX_SOCKET_DIR",
            parent.path().to_str().unwrap(),
        )]))
        .sandbox(Sandbox::new().read_path(&missing))
        .start()
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("a policy path that does not exist");
    assert_eq!(err.code(), Code::SecuritySandboxPath);
    assert!(err.to_string().contains("not-there"), "{err}");
    assert!(common::hint(&err).contains("must exist"));
    let left: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
    assert!(left.is_empty(), "no socket directory is left: {left:?}");
}

#[tokio::test]
async fn a_script_plugin_needs_its_interpreter_in_the_exec_paths() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("plugin.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '1|1|unix|/nowhere|grpc|'\nsleep 5\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = rpcplugin::plugin_client(&script)
        .handshake("BASIC_PLUGIN", "hello")
        .sandbox(Sandbox::new())
        .start()
        .await
        .map(|_| ())
        .map_err(show)
        .expect_err("/bin/sh may not run");
    assert_eq!(err.code(), Code::ProcessSpawn);
    assert!(common::hint(&err).contains("PLUGIN_SANDBOX_EXEC_PATHS"));
}

/// Launch to healthy, with and without a sandbox, alternating so that a noisy
/// machine hits all alike; prints the medians and their ratios. The third way
/// has go-plugin's port range (PLUGIN_MIN_PORT=10000, PLUGIN_MAX_PORT=25000):
/// 15001 TCP bind rules, Landlock having no port ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_time_with_and_without_a_sandbox() {
    const ROUNDS: usize = 15;
    init_tracing();
    let policy = Sandbox::new().if_unsupported(IfUnsupported::Refuse);
    let go_plugin_range =
        || Environment::from_pairs([("PLUGIN_MIN_PORT", "10000"), ("PLUGIN_MAX_PORT", "25000")]);
    let mut times: [Vec<Duration>; 3] = Default::default();
    for round in 0..ROUNDS * 3 {
        let way = round % 3;
        let builder = match way {
            0 => probe_plugin().sandbox(None),
            1 => probe_plugin().sandbox(policy.clone()),
            _ => probe_plugin()
                .environment(go_plugin_range())
                .sandbox(policy.clone()),
        };
        let started = Instant::now();
        let plugin = start(builder).await;
        let took = started.elapsed();
        if way == 2 {
            assert_eq!(plugin.sandbox().unwrap().tcp_bind, Some(10000..=25000));
        }
        within(CALL, "stop", plugin.stop()).await.unwrap();
        times[way].push(took);
    }
    let [plain, confined, ranged] = times.map(|mut v| {
        v.sort();
        v[v.len() / 2]
    });
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "launch to healthy, median of {ROUNDS}: unconfined {:.2} ms, sandboxed {:.2} ms \
         (ratio {:.2}), sandboxed with 15001 bind ports {:.2} ms (ratio {:.2})",
        ms(plain),
        ms(confined),
        ms(confined) / ms(plain),
        ms(ranged),
        ms(ranged) / ms(plain),
    );
    // A user would notice a sandbox that made every launch much slower.
    for (what, took) in [("sandboxed", confined), ("with a port range", ranged)] {
        assert!(
            took < plain * 2 + Duration::from_millis(20),
            "{what}, the sandbox costs too much at launch: {took:?} against {plain:?}"
        );
    }
}
