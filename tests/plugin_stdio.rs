//! `plugin.GRPCStdio` across real processes: what `examples/stdio_plugin` writes on
//! stdout after the handshake (println!, write(2), a child process) reaches the host
//! over gRPC, never the host's stdout pipe; stderr stays the log channel unless the
//! plugin captures it; plugins without the service and hosts that never open it
//! work as before; stray stdout before the handshake is reported, quoted.
//!
//! The Go peers are built by `tests/interop/go/build.sh` into `target/interop/go`;
//! without Go, and no way to install it, the Go tests print SKIP.

mod common;

use common::events::{Seen, events_of};
use common::{COOKIE, example, go_peers, hint, within};
use rpcplugin::Code;
use rpcplugin::client::{StdioChannel, StopMethod};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest};
use rpcplugin::proto::plugin::grpc_stdio_client::GrpcStdioClient;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Level;

const LIMIT: Duration = Duration::from_secs(30);

type Chunk = (StdioChannel, Vec<u8>);

/// What a custom sink received, chunk by chunk.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Chunk>>>);

impl Received {
    fn sink(&self) -> impl Fn(StdioChannel, &[u8]) + Send + Sync + 'static {
        let chunks = self.0.clone();
        move |channel, data| chunks.lock().unwrap().push((channel, data.to_vec()))
    }

    /// Everything received on one channel, in order.
    fn text(&self, channel: StdioChannel) -> String {
        let chunks = self.0.lock().unwrap();
        let bytes: Vec<u8> = chunks
            .iter()
            .filter(|(c, _)| *c == channel)
            .flat_map(|(_, data)| data.iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    async fn wait_for(&self, channel: StdioChannel, text: &str) {
        let found = common::wait_until(LIMIT, || self.text(channel).contains(text)).await;
        assert!(
            found,
            "{text:?} did not arrive on {channel:?}; stdout {:?}, stderr {:?}",
            self.text(StdioChannel::Stdout),
            self.text(StdioChannel::Stderr)
        );
    }
}

async fn logged(pid: u32, target: &str, message: &str) -> Seen {
    let find = || {
        events_of(pid)
            .into_iter()
            .find(|s| s.target == target && s.message == message)
    };
    let found = common::wait_until(LIMIT, || find().is_some()).await;
    assert!(
        found,
        "no {message:?} with target {target} from pid {pid}; got {:#?}",
        events_of(pid)
    );
    find().unwrap()
}

fn stdio_plugin() -> rpcplugin::client::Builder {
    rpcplugin::plugin_client(example("stdio_plugin")).handshake(COOKIE.0, COOKIE.1)
}

async fn put(plugin: &rpcplugin::client::PluginClient, key: &str, value: &str) {
    KvClient::new(plugin.channel())
        .put(PutRequest {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        })
        .await
        .unwrap_or_else(|status| panic!("put {key}: {status}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn println_write_and_a_child_after_the_handshake_reach_the_host_through_grpc_stdio() {
    common::events::record();
    let received = Received::default();
    let plugin = within(
        LIMIT,
        "start stdio_plugin",
        stdio_plugin().stdio_sink(received.sink()).start(),
    )
    .await
    .expect("stdio_plugin starts");
    let pid = plugin.pid();

    put(&plugin, "println", "hello from println!").await;
    put(&plugin, "fd", "hello from write(2)\n").await;
    put(&plugin, "child", "hello from a child process").await;
    put(&plugin, "eprintln", "hello on stderr").await;
    received
        .wait_for(StdioChannel::Stdout, "hello from a child process\n")
        .await;
    assert_eq!(
        received.text(StdioChannel::Stdout),
        "hello from println!\nhello from write(2)\nhello from a child process\n"
    );

    // stderr is not captured by default: it stays the log channel.
    let stderr_line = logged(pid, "rpcplugin_client::output", "hello on stderr").await;
    assert_eq!(stderr_line.level, Level::DEBUG);
    assert_eq!(received.text(StdioChannel::Stderr), "");

    let started = Instant::now();
    let stopped = plugin.stop().await.expect("stop");
    let took = started.elapsed();
    // An open StreamStdio must not hold up the plugin's graceful stop (its drain
    // timeout is 2 s).
    assert_eq!(stopped.method, StopMethod::Graceful);
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(took < Duration::from_secs(1), "stop took {took:?}");

    // Nothing but the handshake reached the host's stdout pipe.
    let leaked: Vec<_> = events_of(pid)
        .into_iter()
        .filter(|s| s.message == "plugin wrote to stdout after the handshake")
        .collect();
    assert!(leaked.is_empty(), "{leaked:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_stdout_lines_become_info_events_tagged_with_the_plugin() {
    common::events::record();
    let plugin = within(LIMIT, "start stdio_plugin", stdio_plugin().start())
        .await
        .expect("stdio_plugin starts");
    let pid = plugin.pid();
    put(&plugin, "println", "a line for the host's log").await;
    let line = logged(pid, "rpcplugin_client::stdio", "a line for the host's log").await;
    plugin.stop().await.expect("stop");
    assert_eq!(line.level, Level::INFO);
    assert_eq!(line.fields.get("plugin").unwrap(), "stdio_plugin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_a_reading_host_whole_and_a_stream_that_is_not_read_blocks_nothing() {
    common::events::record();
    let fast = Arc::new(AtomicUsize::new(0));
    let counter = fast.clone();
    let plugin = within(
        LIMIT,
        "start stdio_plugin",
        stdio_plugin()
            .stdio_sink(move |_: StdioChannel, data: &[u8]| {
                counter.fetch_add(data.len(), Ordering::Relaxed);
            })
            .start(),
    )
    .await
    .expect("stdio_plugin starts");
    let pid = plugin.pid();
    // Half a megabyte printed at once from an async handler fits in what the
    // plugin holds (1 MiB) while the handler keeps the runtime busy.
    let half = "h".repeat(512 * 1024);
    put(&plugin, "println", &half).await;
    let complete =
        common::wait_until(LIMIT, || fast.load(Ordering::Relaxed) == half.len() + 1).await;
    assert!(
        complete,
        "{} of {} bytes",
        fast.load(Ordering::Relaxed),
        half.len() + 1
    );
    fast.store(0, Ordering::Relaxed);

    // A second stream, not read while the plugin writes 8 MiB: more than HTTP/2
    // flow control lets through, so the plugin's side of it stops taking output.
    // The plugin waits for it once (half a second), then leaves it behind.
    let mut slow = GrpcStdioClient::new(plugin.channel())
        .stream_stdio(())
        .await
        .expect("StreamStdio opens")
        .into_inner();
    let payload = format!("{}END", "x".repeat(8 * 1024 * 1024 - 3));
    within(
        LIMIT,
        "a put that prints 8 MiB from a blocking thread",
        put(&plugin, "thread", &payload),
    )
    .await;
    // The host's own stream gets all 8 MiB, eight times what the plugin holds:
    // the plugin's writes waited for the reader.
    let all = payload.len() + 1;
    let complete = common::wait_until(LIMIT, || fast.load(Ordering::Relaxed) == all).await;
    assert!(complete, "{} of {all} bytes", fast.load(Ordering::Relaxed));

    // The slow stream gets what was in flight, then the newest output held.
    let mut received = Vec::new();
    while !received.ends_with(b"END\n") {
        let message = within(LIMIT, "the slow stream", slow.message())
            .await
            .expect("the slow stream stays healthy")
            .expect("the slow stream does not end before the plugin stops");
        received.extend(message.data);
    }
    assert!(
        received.len() < all - 1024 * 1024,
        "the slow stream lost old output: got {} of {all} bytes",
        received.len()
    );
    let warning = logged(
        pid,
        "rpcplugin_client::output",
        "the host reads GRPCStdio more slowly than the plugin writes; older output was dropped",
    )
    .await;
    assert_eq!(warning.level, Level::WARN);
    plugin.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_still_buffered_when_the_plugin_stops_reaches_the_host() {
    let received = Received::default();
    let plugin = within(
        LIMIT,
        "start stdio_plugin",
        stdio_plugin().stdio_sink(received.sink()).start(),
    )
    .await
    .expect("stdio_plugin starts");
    // print! without a newline stays in Rust's stdout buffer until a flush.
    put(&plugin, "print", "no newline yet").await;
    let stopped = plugin.stop().await.expect("stop");
    assert_eq!(stopped.method, StopMethod::Graceful);
    assert_eq!(received.text(StdioChannel::Stdout), "no newline yet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_stderr_arrives_on_its_channel_and_the_plugins_logs_stay_on_the_pipe() {
    common::events::record();
    let received = Received::default();
    let plugin = within(
        LIMIT,
        "start stdio_plugin",
        stdio_plugin()
            .env("STDIO_PLUGIN_CAPTURE_STDERR", "1")
            .env("RUST_LOG", "info")
            .stdio_sink(received.sink())
            .start(),
    )
    .await
    .expect("stdio_plugin starts");
    let pid = plugin.pid();
    put(&plugin, "eprintln", "captured eprintln").await;
    put(&plugin, "log", "a log line").await;
    put(&plugin, "println", "and stdout").await;
    received
        .wait_for(StdioChannel::Stderr, "captured eprintln\n")
        .await;
    received
        .wait_for(StdioChannel::Stdout, "and stdout\n")
        .await;

    // The hclog line went to the original stderr, where the host parses it.
    let log = logged(pid, "rpcplugin_client::output", "a log line").await;
    assert_eq!(log.level, Level::INFO);
    plugin.stop().await.expect("stop");
    assert_eq!(received.text(StdioChannel::Stderr), "captured eprintln\n");
    assert!(
        !events_of(pid)
            .iter()
            .any(|s| s.message == "captured eprintln"),
        "eprintln! did not also go to the stderr pipe"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_stdout_before_the_handshake_is_reported_quoted() {
    let err = stdio_plugin()
        .env(
            "STDIO_PLUGIN_EARLY",
            "loading configuration from ./plugin.toml",
        )
        .start()
        .await
        .expect_err("a line before the handshake is refused");
    let err = common::show(err);
    assert_eq!(err.code(), Code::HandshakeUnrecognizedLine);
    // go-plugin's wording, with the line quoted.
    let rendered = rpcplugin::render(&err);
    assert!(
        rendered.contains(
            "unrecognized remote plugin message: \"loading configuration from ./plugin.toml\""
        ),
        "{rendered}"
    );
    assert!(
        hint(&err).contains("\"loading configuration from ./plugin.toml\""),
        "{}",
        hint(&err)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_without_grpc_stdio_starts_works_and_stops() {
    let Some(go) = go_peers() else { return };
    common::events::record();
    let received = Received::default();
    let plugin = within(
        LIMIT,
        "start the Go plugin",
        rpcplugin::plugin_client(go.join("kv-plugin"))
            .handshake(COOKIE.0, COOKIE.1)
            .stdio_sink(received.sink())
            .start(),
    )
    .await
    .expect("go-plugin 1.0.1's kv-plugin starts");
    let pid = plugin.pid();
    put(&plugin, "hello", "world").await;
    let value = KvClient::new(plugin.channel())
        .get(GetRequest {
            key: "hello".into(),
        })
        .await
        .expect("get")
        .into_inner()
        .value;
    assert_eq!(value, b"world");
    // go-plugin 1.0.1 has no GRPCStdio: the host notes it at debug and moves on.
    let note = logged(
        pid,
        "rpcplugin_client::stdio",
        "the plugin does not serve plugin.GRPCStdio; its stdout is not forwarded",
    )
    .await;
    assert_eq!(note.level, Level::DEBUG);
    let stopped = within(LIMIT, "stop the Go plugin", plugin.stop())
        .await
        .expect("stop");
    assert_eq!(stopped.method, StopMethod::Graceful);
    assert!(received.0.lock().unwrap().is_empty());
}

#[test]
fn a_go_plugin_host_that_never_opens_grpc_stdio_runs_a_printing_plugin() {
    let Some(go) = go_peers() else { return };
    // kv-host puts hello=world, which stdio_plugin also prints on stdout: into the
    // capture, which this host never reads. --strict-shutdown fails unless the
    // plugin exits by itself after Shutdown, so the capture must not hold it up.
    let output = Command::new(go.join("kv-host"))
        .args(["--strict-shutdown", "--"])
        .arg(example("stdio_plugin"))
        .output()
        .expect("kv-host runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kv-host failed:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "world");
}
