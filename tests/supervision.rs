//! Supervised plugins, as an application sees them: a crash or a hang is followed by
//! a restart, the caller's channel works again without new stubs, and crash loops
//! end. Real plugin processes, killed and stopped with real signals.

mod common;

use std::time::Duration;

use common::{kv_plugin, pid_alive};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rpcplugin::client::{RestartPolicy, Supervisor, SupervisorEvent, SupervisorOptions};
use rpcplugin::proto::examples::kv::kv_client::KvClient;
use rpcplugin::proto::examples::kv::{GetRequest, PutRequest};
use rpcplugin::proto::plugin::grpc_controller_client::GrpcControllerClient;
use rpcplugin::tonic::Code;
use rpcplugin::tonic::transport::Channel;
use tokio::sync::broadcast;

const LIMIT: Duration = Duration::from_secs(20);

fn fast(policy: RestartPolicy) -> SupervisorOptions {
    SupervisorOptions::new(policy)
        .backoff(Duration::from_millis(300), Duration::from_secs(1))
        .without_health_checks()
}

async fn start(options: SupervisorOptions) -> Supervisor {
    common::within(
        LIMIT,
        "supervised start",
        Supervisor::start(kv_plugin(), options),
    )
    .await
    .unwrap()
}

/// The next event matching `want`, skipping others; fails the test after LIMIT.
async fn next_event(
    events: &mut broadcast::Receiver<SupervisorEvent>,
    what: &str,
    want: impl Fn(&SupervisorEvent) -> bool,
) -> SupervisorEvent {
    common::within(LIMIT, what, async {
        loop {
            let event = events.recv().await.expect("the supervisor is alive");
            println!("event: {event:?}");
            if want(&event) {
                return event;
            }
        }
    })
    .await
}

async fn put_get(channel: Channel, value: &[u8]) -> Result<Vec<u8>, rpcplugin::tonic::Status> {
    let mut kv = KvClient::new(channel);
    kv.put(PutRequest {
        key: "k".into(),
        value: value.to_vec(),
    })
    .await?;
    Ok(kv
        .get(GetRequest { key: "k".into() })
        .await?
        .into_inner()
        .value)
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).unwrap();
}

#[tokio::test]
async fn a_crashed_plugin_comes_back_and_the_same_channel_works_again() {
    common::init_tracing();
    let supervisor = start(fast(RestartPolicy::OnFailure)).await;
    let mut events = supervisor.subscribe();
    let channel = supervisor.channel();
    assert_eq!(put_get(channel.clone(), b"one").await.unwrap(), b"one");
    let first = supervisor.pid().unwrap();

    signal(first, Signal::SIGKILL);
    let exited = next_event(&mut events, "exit", |e| {
        matches!(e, SupervisorEvent::Exited { .. })
    })
    .await;
    assert!(
        matches!(&exited, SupervisorEvent::Exited { pid, failure: true, status } if *pid == first && status.contains("9")),
        "{exited:?}"
    );
    // Down: calls fail fast with Unavailable instead of hanging.
    let down = common::within(LIMIT, "call while down", put_get(channel.clone(), b"x")).await;
    assert_eq!(down.unwrap_err().code(), Code::Unavailable);

    let started = next_event(&mut events, "restart", |e| {
        matches!(e, SupervisorEvent::Started { .. })
    })
    .await;
    let SupervisorEvent::Started {
        pid: second,
        restarts,
    } = started
    else {
        unreachable!()
    };
    assert_eq!(restarts, 1);
    assert_ne!(second, first);
    assert_eq!(supervisor.pid(), Some(second));

    // The stubs built on the first channel work with the new instance.
    assert_eq!(put_get(channel.clone(), b"two").await.unwrap(), b"two");

    supervisor.stop().await.unwrap();
    assert!(common::wait_until(Duration::from_secs(3), || !pid_alive(second)).await);
}

#[tokio::test]
async fn a_hung_plugin_is_detected_killed_and_restarted() {
    let options = fast(RestartPolicy::OnFailure).health_checks(
        Duration::from_millis(200),
        Duration::from_millis(300),
        2,
    );
    let supervisor = start(options).await;
    let mut events = supervisor.subscribe();
    let first = supervisor.pid().unwrap();

    signal(first, Signal::SIGSTOP);
    let event = next_event(&mut events, "unresponsive", |e| {
        matches!(e, SupervisorEvent::Unresponsive { .. })
    })
    .await;
    assert_eq!(event, SupervisorEvent::Unresponsive { pid: first });
    assert!(
        common::wait_until(Duration::from_secs(3), || !pid_alive(first)).await,
        "the stopped plugin {first} was killed"
    );
    let started = next_event(&mut events, "restart", |e| {
        matches!(e, SupervisorEvent::Started { .. })
    })
    .await;
    let SupervisorEvent::Started { pid: second, .. } = started else {
        unreachable!()
    };
    assert_ne!(second, first);
    assert_eq!(put_get(supervisor.channel(), b"v").await.unwrap(), b"v");
    supervisor.stop().await.unwrap();
}

#[tokio::test]
async fn a_crash_loop_ends_with_gave_up() {
    let options = fast(RestartPolicy::Always)
        .backoff(Duration::from_millis(20), Duration::from_millis(50))
        .crash_loop_limit(2, Duration::from_secs(60));
    let supervisor = start(options).await;
    let mut events = supervisor.subscribe();
    for _ in 0..2 {
        let pid = supervisor.pid().expect("running");
        signal(pid, Signal::SIGKILL);
        next_event(&mut events, "exit", |e| {
            matches!(e, SupervisorEvent::Exited { .. })
        })
        .await;
        next_event(&mut events, "restart", |e| {
            matches!(e, SupervisorEvent::Started { .. })
        })
        .await;
    }
    signal(supervisor.pid().unwrap(), Signal::SIGKILL);
    let gave_up = next_event(&mut events, "give up", |e| {
        matches!(e, SupervisorEvent::GaveUp { .. })
    })
    .await;
    let SupervisorEvent::GaveUp { reason } = gave_up else {
        unreachable!()
    };
    assert!(reason.contains("crash loop: 2 restarts"), "{reason}");
    assert_eq!(supervisor.pid(), None);
    let call = common::within(
        LIMIT,
        "call after giving up",
        put_get(supervisor.channel(), b"x"),
    )
    .await;
    assert_eq!(call.unwrap_err().code(), Code::Unavailable);
    supervisor.stop().await.unwrap();
}

#[tokio::test]
async fn a_clean_exit_is_not_a_failure() {
    let supervisor = start(fast(RestartPolicy::OnFailure)).await;
    let mut events = supervisor.subscribe();
    let pid = supervisor.pid().unwrap();
    // The plugin stops itself cleanly (exit 0) when its host asks.
    let _ = GrpcControllerClient::new(supervisor.channel())
        .shutdown(rpcplugin::proto::plugin::Empty {})
        .await;
    let exited = next_event(&mut events, "exit", |e| {
        matches!(e, SupervisorEvent::Exited { .. })
    })
    .await;
    assert!(
        matches!(&exited, SupervisorEvent::Exited { pid: p, failure: false, .. } if *p == pid),
        "{exited:?}"
    );
    let gave_up = next_event(&mut events, "end", |e| {
        matches!(e, SupervisorEvent::GaveUp { .. })
    })
    .await;
    assert!(format!("{gave_up:?}").contains("clean exit"), "{gave_up:?}");
    supervisor.stop().await.unwrap();
}

#[tokio::test]
async fn stopping_the_supervisor_stops_the_plugin_for_good() {
    let supervisor = start(fast(RestartPolicy::Always)).await;
    let mut events = supervisor.subscribe();
    let pid = supervisor.pid().unwrap();
    let channel = supervisor.channel();
    common::within(LIMIT, "stop", supervisor.stop())
        .await
        .unwrap();
    assert!(common::wait_until(Duration::from_secs(3), || !pid_alive(pid)).await);
    let stopped = next_event(&mut events, "stopped", |e| {
        matches!(e, SupervisorEvent::Stopped)
    })
    .await;
    assert_eq!(stopped, SupervisorEvent::Stopped);
    let call = common::within(LIMIT, "call after stop", put_get(channel, b"x")).await;
    assert!(call.is_err());
}

#[tokio::test]
async fn a_bad_first_start_is_reported_not_retried() {
    let builder = rpcplugin::plugin_client("/nonexistent/plugin").handshake("K", "V");
    let err = Supervisor::start(builder, fast(RestartPolicy::Always))
        .await
        .unwrap_err();
    assert_eq!(err.code(), rpcplugin::Code::ProcessSpawn);
}
