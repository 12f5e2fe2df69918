//! Faults a host meets, with real processes and real signals: plugins killed in the
//! middle of calls and streams, a stopped (hung) plugin, a stderr flood, many
//! plugins at once, a thousand start/stop cycles with nothing leaked, resource
//! limits, and cleaning up every plugin at once. Every wait is bounded. (A host
//! killed with SIGKILL is in no_orphans.rs.)

mod common;

use rpcplugin::Code;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{COOKIE, example, kv_plugin, pid_alive, within};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rpcplugin::client::{PluginClient, ResourceLimits};
use rpcplugin::proto::examples::bench::bench_client::BenchClient;
use rpcplugin::proto::examples::bench::{DownloadRequest, Payload};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest};

const LIMIT: Duration = Duration::from_secs(30);

async fn start(builder: rpcplugin::client::Builder) -> PluginClient {
    within(LIMIT, "start", builder.start()).await.unwrap()
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).unwrap();
}

#[tokio::test]
async fn a_plugin_killed_during_calls_fails_them_without_hanging() {
    let plugin = start(kv_plugin()).await;
    let pid = plugin.pid();
    let mut calls = Vec::new();
    for _ in 0..16 {
        let mut bench = BenchClient::new(plugin.channel());
        calls.push(tokio::spawn(async move {
            let payload = Payload {
                data: vec![1; 256 * 1024].into(),
            };
            // Keep calls in flight until one fails.
            for _ in 0..100_000 {
                if let Err(status) = bench.echo(payload.clone()).await {
                    return status;
                }
            }
            panic!("calls kept succeeding after the plugin was killed");
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(pid, Signal::SIGKILL);
    let killed = Instant::now();
    for call in calls {
        let status = within(Duration::from_secs(10), "a failing call", call)
            .await
            .unwrap();
        assert!(
            matches!(
                status.code(),
                rpcplugin::tonic::Code::Unavailable
                    | rpcplugin::tonic::Code::Unknown
                    | rpcplugin::tonic::Code::Internal
                    | rpcplugin::tonic::Code::Cancelled
            ),
            "{status}"
        );
    }
    println!(
        "16 in-flight callers failed {:?} after SIGKILL",
        killed.elapsed()
    );
    // The kernel closes a killed process's sockets before it can be reaped (its
    // leader is a zombie only once every thread has gone), so the calls can fail a
    // moment before the exit is visible to the host.
    let reapable = || {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        !pid_alive(pid) && threads <= 1
    };
    assert!(common::wait_until(LIMIT, reapable).await);
    let stopped = within(LIMIT, "stop", plugin.stop()).await.unwrap();
    assert_eq!(stopped.method, rpcplugin::client::StopMethod::AlreadyExited);
}

#[tokio::test]
async fn a_plugin_killed_mid_stream_ends_the_stream_with_an_error() {
    let plugin = start(kv_plugin()).await;
    let mut stream = BenchClient::new(plugin.channel())
        .download(DownloadRequest {
            chunk_size: 64 * 1024,
            count: 1_000_000,
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..10 {
        assert!(stream.message().await.unwrap().is_some());
    }
    signal(plugin.pid(), Signal::SIGKILL);
    let ended = within(Duration::from_secs(10), "the stream's end", async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue, // what was already in flight
                Ok(None) => panic!("the stream ended cleanly although the plugin died"),
                Err(status) => return status,
            }
        }
    })
    .await;
    println!("stream ended with: {ended}");
    within(LIMIT, "stop", plugin.stop()).await.unwrap();
}

#[tokio::test]
async fn a_stopped_plugin_times_out_calls_and_is_still_stopped_in_bounded_time() {
    let plugin = start(kv_plugin().shutdown_grace(Duration::from_millis(300))).await;
    let pid = plugin.pid();
    signal(pid, Signal::SIGSTOP);
    // A group stop takes effect once one of the plugin's threads runs to take the
    // signal; under load another thread can still answer a call meanwhile.
    let is_stopped = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')')?.1.trim_start().chars().next())
            == Some('T')
    };
    assert!(
        common::wait_until(Duration::from_secs(5), is_stopped).await,
        "the plugin never reached the stopped state"
    );
    let mut kv = KvClient::new(plugin.channel());
    let mut request = rpcplugin::tonic::Request::new(GetRequest { key: "k".into() });
    request.set_timeout(Duration::from_millis(300));
    let status = within(
        Duration::from_secs(5),
        "a call to a stopped plugin",
        kv.get(request),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), rpcplugin::tonic::Code::Cancelled, "{status}");

    let started = Instant::now();
    let stopped = within(Duration::from_secs(10), "stop", plugin.stop())
        .await
        .unwrap();
    println!(
        "stopped a SIGSTOPped plugin in {:?}: {stopped:?}",
        started.elapsed()
    );
    assert_eq!(stopped.method, rpcplugin::client::StopMethod::Killed);
    assert!(!pid_alive(pid));
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_gibibyte_of_stderr_keeps_host_memory_bounded() {
    let before = rss_kb();
    // 1 GiB of stderr with no newline at all, then a working plugin.
    let script = r#"head -c 1073741824 /dev/zero >&2; exec "$0""#;
    let started = Instant::now();
    let builder = rpcplugin::plugin_client("sh")
        .args(["-c", script])
        .arg(example("kv_plugin"))
        .name("flood")
        .handshake(COOKIE.0, COOKIE.1)
        .handshake_timeout(Duration::from_secs(60));
    let plugin = within(
        Duration::from_secs(90),
        "start after the flood",
        builder.start(),
    )
    .await
    .unwrap();
    let after = rss_kb();
    println!(
        "1 GiB of stderr read in {:?}; host RSS {before} kB -> {after} kB",
        started.elapsed()
    );
    assert!(
        after < before + 64 * 1024,
        "host RSS grew from {before} kB to {after} kB"
    );
    let mut kv = KvClient::new(plugin.channel());
    kv.put(PutRequest {
        key: "k".into(),
        value: b"v".to_vec(),
    })
    .await
    .unwrap();
    plugin.stop().await.unwrap();
}

/// Also what each running plugin costs the host in memory (issue 7: under 2 MB):
/// one plugin started and stopped first, so that what every host pays once (the
/// runtime's threads, the launcher, TLS's tables) is not counted per plugin.
#[tokio::test]
async fn thirty_two_plugins_start_at_once() {
    let warm = kv_plugin().start().await.unwrap();
    warm.stop().await.unwrap();
    let before = rss_kb();
    let started = Instant::now();
    let starts = (0..32).map(|_| kv_plugin().start());
    let plugins: Vec<PluginClient> = within(
        Duration::from_secs(60),
        "32 starts",
        futures_util::future::join_all(starts),
    )
    .await
    .into_iter()
    .collect::<Result<_, _>>()
    .unwrap();
    println!("32 plugins up in {:?}", started.elapsed());
    let mut pids: Vec<u32> = plugins.iter().map(PluginClient::pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 32);
    for plugin in &plugins {
        let reply = KvClient::new(plugin.channel())
            .get(GetRequest { key: "k".into() })
            .await
            .unwrap();
        assert!(reply.into_inner().value.is_empty());
    }
    // 32 connections with AutoMTLS (the default), their tasks, buffers and output
    // readers.
    let per_plugin = rss_kb().saturating_sub(before) / 32;
    println!("host memory per running plugin: {per_plugin} kB");
    assert!(
        per_plugin < 2048,
        "each plugin costs the host {per_plugin} kB"
    );
    let stops = plugins.into_iter().map(PluginClient::stop);
    for stopped in within(LIMIT, "32 stops", futures_util::future::join_all(stops)).await {
        assert_eq!(
            stopped.unwrap().method,
            rpcplugin::client::StopMethod::Graceful
        );
    }
    for pid in pids {
        assert!(!pid_alive(pid), "plugin {pid} still running");
    }
}

/// What a leak would show: this process's open descriptors, its zombie children,
/// and rpcplugin socket directories in the temp dir.
#[derive(Debug, PartialEq, Eq)]
struct Leaks {
    fds: usize,
    zombies: usize,
    socket_dirs: usize,
}

fn count_leaks() -> Leaks {
    let me = std::process::id().to_string();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    return false;
                };
                let mut fields = rest.split_whitespace();
                let state = fields.next();
                let ppid = fields.next();
                state == Some("Z") && ppid == Some(me.as_str())
            })
        })
        .count();
    let prefix = format!("rpcplugin-{me}-");
    let socket_dirs = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .count();
    Leaks {
        fds,
        zombies,
        socket_dirs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_start_stop_cycles_leak_nothing() {
    const CYCLES: usize = 1000;
    const PARALLEL: usize = 4;
    // One cycle first, so lazily created process-wide things (the launcher thread,
    // the runtime's signal driver) are counted in the baseline.
    kv_plugin().start().await.unwrap().stop().await.unwrap();
    let before = count_leaks();
    let started = Instant::now();
    let workers = (0..PARALLEL).map(|_| {
        tokio::spawn(async {
            for _ in 0..CYCLES / PARALLEL {
                let plugin = kv_plugin().start().await.unwrap();
                let stopped = plugin.stop().await.unwrap();
                assert_eq!(stopped.method, rpcplugin::client::StopMethod::Graceful);
            }
        })
    });
    within(
        Duration::from_secs(240),
        "1000 cycles",
        futures_util::future::try_join_all(workers),
    )
    .await
    .unwrap();
    let after = count_leaks();
    println!(
        "{CYCLES} start/stop cycles in {:?}; before {before:?}, after {after:?}",
        started.elapsed()
    );
    assert_eq!(after, before);
}

#[tokio::test]
async fn resource_limits_apply_to_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let limits_file = dir.path().join("limits");
    let script = r#"cat /proc/self/limits > "$LIMITS_FILE"; exec "$0""#;
    let builder = rpcplugin::plugin_client("sh")
        .args(["-c", script])
        .arg(example("kv_plugin"))
        .name("limited")
        .handshake(COOKIE.0, COOKIE.1)
        .env("LIMITS_FILE", &limits_file)
        .resource_limits(
            ResourceLimits::new()
                .address_space(4 << 30)
                .cpu_time(Duration::from_secs(600))
                .open_files(256),
        );
    let plugin = start(builder).await;
    let limits = std::fs::read_to_string(&limits_file).unwrap();
    let line = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {limits}"))
            .split_whitespace()
            .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
            .collect::<Vec<_>>()
    };
    assert_eq!(line("Max address space"), ["4294967296", "4294967296"]);
    assert_eq!(line("Max cpu time"), ["600", "601"]);
    assert_eq!(line("Max open files"), ["256", "256"]);
    // Within its limits the plugin works as usual.
    KvClient::new(plugin.channel())
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap();
    plugin.stop().await.unwrap();
}

#[tokio::test]
async fn a_cpu_limit_ends_a_runaway_plugin() {
    let builder = rpcplugin::plugin_client("sh")
        .args(["-c", "while :; do :; done"])
        .name("spinner")
        .handshake(COOKIE.0, COOKIE.1)
        .handshake_timeout(Duration::from_secs(20))
        .resource_limits(ResourceLimits::new().cpu_time(Duration::from_secs(1)));
    let started = Instant::now();
    let err = within(LIMIT, "start", builder.start()).await.unwrap_err();
    println!("{}", rpcplugin::render(&err));
    assert_eq!(err.code(), Code::HandshakePluginExited);
    // SIGXCPU is signal 24 on Linux.
    assert!(err.to_string().contains("killed by signal 24"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn cleanup_plugins_stops_every_running_plugin() {
    let plugins = [
        start(kv_plugin()).await,
        start(kv_plugin()).await,
        start(kv_plugin()).await,
    ];
    let pids: Vec<u32> = plugins.iter().map(PluginClient::pid).collect();
    let running: Vec<u32> = rpcplugin::client::running_plugins()
        .into_iter()
        .map(|(pid, _)| pid)
        .collect();
    for pid in &pids {
        assert!(running.contains(pid), "{pid} registered in {running:?}");
    }
    let count = within(
        LIMIT,
        "cleanup",
        rpcplugin::client::cleanup_plugins(Duration::from_secs(2)),
    )
    .await;
    assert!(count >= 3);
    for pid in &pids {
        assert!(
            common::wait_until(Duration::from_secs(2), || !pid_alive(*pid)).await,
            "plugin {pid} stopped by the cleanup"
        );
    }
    // The owners' stop() finds them gone and still reaps and cleans up.
    for plugin in plugins {
        let socket = common::socket_path(plugin.endpoint());
        let stopped = plugin.stop().await.unwrap();
        assert_eq!(stopped.method, rpcplugin::client::StopMethod::AlreadyExited);
        assert!(!Path::new(&socket).exists());
    }
}
