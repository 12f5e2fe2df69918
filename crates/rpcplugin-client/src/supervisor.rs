//! Keeping a plugin running: [`Supervisor`] and its options and events.

use rpcplugin_core::Code;
use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rpcplugin_core::{Error, Result};
use rpcplugin_proto::health::v1::HealthCheckRequest;
use rpcplugin_proto::health::v1::health_check_response::ServingStatus;
use rpcplugin_proto::health::v1::health_client::HealthClient;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::{Builder, PluginClient, Target};

/// When to start a plugin again after it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Never: once the plugin is gone, the supervisor reports it and stops.
    Never,
    /// After a failure: an exit with a non-zero status or a signal, a failed
    /// liveness check, or a failed start. A clean exit (status 0) ends supervision.
    OnFailure,
    /// Whenever the plugin stops, however it stopped.
    Always,
}

/// How a [`Supervisor`] restarts and checks its plugin.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SupervisorOptions {
    /// When to restart.
    pub policy: RestartPolicy,
    /// The first backoff (default 100 ms); each restart doubles it.
    pub initial_backoff: Duration,
    /// The largest backoff (default 10 s).
    pub max_backoff: Duration,
    /// At most this many restarts within [`SupervisorOptions::crash_loop_window`]
    /// (default 5); one more and the supervisor gives up.
    pub max_restarts: u32,
    /// The window of the crash-loop limit (default 60 s).
    pub crash_loop_window: Duration,
    /// How often to check the plugin's health (`grpc.health.v1`, service `"plugin"`);
    /// `None` turns liveness checks off (default 5 s).
    pub health_interval: Option<Duration>,
    /// How long one health check may take (default 2 s).
    pub health_timeout: Duration,
    /// Consecutive failed checks that make the plugin count as hung (default 2). It
    /// is then killed (SIGKILL: a stopped or deadlocked process answers nothing
    /// else) and restarted as a failure.
    pub health_failures: u32,
}

impl SupervisorOptions {
    /// The defaults, with `policy`.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_restarts: 5,
            crash_loop_window: Duration::from_secs(60),
            health_interval: Some(Duration::from_secs(5)),
            health_timeout: Duration::from_secs(2),
            health_failures: 2,
        }
    }

    /// Sets the backoff range.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets the crash-loop limit: at most `max_restarts` within `window`.
    pub fn crash_loop_limit(mut self, max_restarts: u32, window: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.crash_loop_window = window;
        self
    }

    /// Sets the liveness checks: every `interval`, each within `timeout`, and the
    /// plugin counts as hung after `failures` failures in a row.
    pub fn health_checks(mut self, interval: Duration, timeout: Duration, failures: u32) -> Self {
        self.health_interval = Some(interval);
        self.health_timeout = timeout;
        self.health_failures = failures.max(1);
        self
    }

    /// Turns liveness checks off.
    pub fn without_health_checks(mut self) -> Self {
        self.health_interval = None;
        self
    }
}

/// What happened to a supervised plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// An instance started and is healthy.
    Started {
        /// Its process id.
        pid: u32,
        /// How many restarts preceded it (0 for the first start).
        restarts: u32,
    },
    /// The instance exited on its own.
    Exited {
        /// Its process id.
        pid: u32,
        /// Its exit status, as shown by the OS (`exit status: 1`, `signal: 9`).
        status: String,
        /// Whether it counts as a failure.
        failure: bool,
    },
    /// The instance failed its liveness checks and was killed.
    Unresponsive {
        /// Its process id.
        pid: u32,
    },
    /// A start failed.
    StartFailed {
        /// The error, rendered with its hints.
        error: String,
    },
    /// The next start comes after `delay`.
    Restarting {
        /// The restart's number since the supervisor started.
        attempt: u32,
        /// The backoff before it.
        delay: Duration,
    },
    /// The supervisor stopped restarting.
    GaveUp {
        /// Why: the policy said no, or the crash-loop limit.
        reason: String,
    },
    /// [`Supervisor::stop`] stopped the plugin.
    Stopped,
}

/// Keeping a plugin running: restarts with backoff, a crash-loop limit, liveness
/// checks, and one channel that outlives every restart.
///
/// go-plugin leaves a crashed plugin dead; its users restart by hand and rebuild their
/// stubs. A [`Supervisor`] does it for them:
///
/// - it starts the plugin, and after an exit (or a failed liveness check) starts it
///   again according to its [`RestartPolicy`], waiting an exponential backoff with
///   jitter between attempts, and gives up after too many restarts in a window;
/// - [`Supervisor::channel`] is one tonic channel for the supervisor's whole life:
///   calls fail with `Unavailable` while the plugin is down and work again once it is
///   back, without rebuilding the stubs;
/// - [`Supervisor::subscribe`] reports what happens ([`SupervisorEvent`]).
///
/// ```no_run
/// use rpcplugin_client::{PluginClient, RestartPolicy, Supervisor, SupervisorOptions};
///
/// # async fn example() -> rpcplugin_client::Result<()> {
/// let builder = PluginClient::builder("./kv_plugin").handshake("BASIC_PLUGIN", "hello");
/// let supervisor = Supervisor::start(
///     builder,
///     SupervisorOptions::new(RestartPolicy::OnFailure),
/// )
/// .await?;
/// let channel = supervisor.channel(); // give this to your generated clients
/// let mut events = supervisor.subscribe();
/// tokio::spawn(async move {
///     while let Ok(event) = events.recv().await {
///         eprintln!("plugin: {event:?}");
///     }
/// });
/// # let _ = channel;
/// supervisor.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Supervisor {
    channel: Channel,
    events: broadcast::Sender<SupervisorEvent>,
    pid: watch::Receiver<Option<u32>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts the plugin and supervises it. The first start's error is returned as
    /// it is (a configuration mistake should not be retried in a loop); later ones
    /// are retried per the policy.
    pub async fn start(builder: Builder, options: SupervisorOptions) -> Result<Self> {
        let (events, _) = broadcast::channel(64);
        let target: Arc<RwLock<Option<Target>>> = Arc::new(RwLock::new(None));
        let first = builder.clone().start().await?;
        let (pid_tx, pid_rx) = watch::channel(Some(first.pid()));
        *target.write().unwrap_or_else(|e| e.into_inner()) = Some(first.target.clone());
        let _ = events.send(SupervisorEvent::Started {
            pid: first.pid(),
            restarts: 0,
        });
        let connection = first.target.connection;
        let channel = supervised_channel(target.clone(), connection);
        let (stop_tx, stop_rx) = oneshot::channel();
        let run = Run {
            builder,
            options,
            target,
            events: events.clone(),
            pid: pid_tx,
        };
        let task = tokio::spawn(run.supervise(first, stop_rx));
        Ok(Self {
            channel,
            events,
            pid: pid_rx,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// One channel for the supervisor's life: `Unavailable` while the plugin is down,
    /// working again after a restart. Cheap to clone.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Events from now on. A receiver that falls 64 events behind loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.events.subscribe()
    }

    /// The running instance's process id, `None` while it is down.
    pub fn pid(&self) -> Option<u32> {
        *self.pid.borrow()
    }

    /// Stops supervising and stops the plugin (the client's stop sequence).
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.map_err(|e| {
                Error::new(Code::ProcessSupervisor, "the supervisor task failed").with_source(e)
            })?;
        }
        Ok(())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Aborting drops the running PluginClient, whose own Drop kills the plugin.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A lazily connecting channel that dials whichever instance is current.
fn supervised_channel(
    target: Arc<RwLock<Option<Target>>>,
    connection: crate::Connection,
) -> Channel {
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let current = target.read().unwrap_or_else(|e| e.into_inner()).clone();
        async move {
            match current {
                Some(target) => target.connect().await,
                None => Err(Error::new(
                    Code::TransportPluginDown,
                    "the supervised plugin is not running",
                )
                .with_hint("it is being restarted, or its supervisor gave up; watch the supervisor's events")),
            }
        }
    });
    connection.endpoint().connect_with_connector_lazy(connector)
}

struct Run {
    builder: Builder,
    options: SupervisorOptions,
    target: Arc<RwLock<Option<Target>>>,
    events: broadcast::Sender<SupervisorEvent>,
    pid: watch::Sender<Option<u32>>,
}

/// How one instance ended.
enum Ended {
    Exited { failure: bool },
    Unresponsive,
    StopRequested(Box<PluginClient>),
}

impl Run {
    async fn supervise(self, first: PluginClient, mut stop: oneshot::Receiver<()>) {
        let mut restarts = 0u32;
        let mut recent: VecDeque<Instant> = VecDeque::new();
        let mut current = Some(first);
        loop {
            let failure = match current.take() {
                Some(client) => match self.watch(client, &mut stop).await {
                    Ended::StopRequested(client) => {
                        self.set_target(None);
                        if let Err(err) = client.stop().await {
                            tracing::warn!(error = %err, "cannot stop the supervised plugin cleanly");
                        }
                        let _ = self.events.send(SupervisorEvent::Stopped);
                        return;
                    }
                    Ended::Exited { failure } => failure,
                    Ended::Unresponsive => true,
                },
                // A failed start.
                None => true,
            };
            if let Err(reason) = self.may_restart(failure, &mut recent, Instant::now()) {
                self.give_up(reason);
                return;
            }
            restarts += 1;
            let delay = self.backoff(restarts);
            let _ = self.events.send(SupervisorEvent::Restarting {
                attempt: restarts,
                delay,
            });
            tracing::info!(attempt = restarts, ?delay, "restarting the plugin");
            self.builder.metrics.restart(&self.builder.display_name());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut stop => {
                    let _ = self.events.send(SupervisorEvent::Stopped);
                    return;
                }
            }
            match self.builder.clone().start().await {
                Ok(client) => {
                    self.set_target(Some(client.target.clone()));
                    let _ = self.pid.send(Some(client.pid()));
                    let _ = self.events.send(SupervisorEvent::Started {
                        pid: client.pid(),
                        restarts,
                    });
                    current = Some(client);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the plugin failed to restart");
                    let _ = self.events.send(SupervisorEvent::StartFailed {
                        error: rpcplugin_core::render(&err),
                    });
                }
            }
        }
    }

    /// Runs until the instance exits, stops answering, or a stop is requested.
    async fn watch(&self, mut client: PluginClient, stop: &mut oneshot::Receiver<()>) -> Ended {
        let pid = client.pid();
        let channel = client.channel();
        let mut failed_checks = 0u32;
        let mut ticker = self.options.health_interval.map(|interval| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = client.wait() => {
                    self.set_target(None);
                    let _ = self.pid.send(None);
                    let (status, failure) = match status {
                        Ok(status) => (status.to_string(), !clean(status)),
                        Err(err) => (err.to_string(), true),
                    };
                    tracing::warn!(pid, %status, "the supervised plugin exited");
                    client
                        .metrics
                        .exit(client.name(), if failure { "failed" } else { "exited" });
                    let _ = self.events.send(SupervisorEvent::Exited { pid, status, failure });
                    // Reap and clean up what is left (socket directory, readers).
                    drop(client);
                    return Ended::Exited { failure };
                }
                _ = &mut *stop => return Ended::StopRequested(Box::new(client)),
                () = tick => {
                    if healthy(&channel, self.options.health_timeout).await {
                        failed_checks = 0;
                        continue;
                    }
                    failed_checks += 1;
                    tracing::warn!(pid, failed_checks, "the supervised plugin failed a health check");
                    if failed_checks >= self.options.health_failures {
                        self.set_target(None);
                        let _ = self.pid.send(None);
                        let _ = self.events.send(SupervisorEvent::Unresponsive { pid });
                        if let Err(err) = client.kill().await {
                            tracing::warn!(pid, error = %err, "cannot kill the unresponsive plugin");
                        }
                        return Ended::Unresponsive;
                    }
                }
            }
        }
    }

    fn set_target(&self, target: Option<Target>) {
        *self.target.write().unwrap_or_else(|e| e.into_inner()) = target;
    }

    /// Whether the policy and the crash-loop limit allow another restart at `now`
    /// (recorded in `recent`), or why not.
    fn may_restart(
        &self,
        failure: bool,
        recent: &mut VecDeque<Instant>,
        now: Instant,
    ) -> std::result::Result<(), String> {
        let restart = match self.options.policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failure,
            RestartPolicy::Always => true,
        };
        if !restart {
            return Err(format!(
                "restart policy {:?} does not restart after {}",
                self.options.policy,
                if failure { "a failure" } else { "a clean exit" }
            ));
        }
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.options.crash_loop_window)
        {
            recent.pop_front();
        }
        if recent.len() >= self.options.max_restarts as usize {
            return Err(format!(
                "crash loop: {} restarts within {:?}",
                recent.len(),
                self.options.crash_loop_window
            ));
        }
        recent.push_back(now);
        Ok(())
    }

    fn give_up(&self, reason: String) {
        tracing::warn!(%reason, "no more restarts of the plugin");
        let _ = self.pid.send(None);
        let _ = self.events.send(SupervisorEvent::GaveUp { reason });
    }

    /// Exponential backoff with ±20 % jitter ([`Backoff`](crate::Backoff), which
    /// start-up retries share), so that plugins that crashed together do not
    /// restart in lockstep.
    ///
    /// Not tower's `ExponentialBackoff` (tower 0.5, `retry::backoff`), for two
    /// reasons read in its source: its jitter is capped at `max - base`, so once the
    /// backoff reaches its maximum (a long crash loop, where lockstep matters most)
    /// every plugin waits exactly the maximum; and it hands out a `Sleep`, not the
    /// `Duration` that [`SupervisorEvent::Restarting`] reports.
    fn backoff(&self, attempt: u32) -> Duration {
        crate::Backoff::new(self.options.initial_backoff, self.options.max_backoff).delay(attempt)
    }
}

fn clean(status: ExitStatus) -> bool {
    status.success()
}

async fn healthy(channel: &Channel, timeout: Duration) -> bool {
    let mut health = HealthClient::new(channel.clone());
    let request = HealthCheckRequest {
        service: "plugin".to_owned(),
    };
    match tokio::time::timeout(timeout, health.check(request)).await {
        Ok(Ok(reply)) => reply.get_ref().status == ServingStatus::Serving as i32,
        // A plugin without a health service is alive if it answers at all.
        Ok(Err(status)) => status.code() == tonic::Code::Unimplemented,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(options: SupervisorOptions) -> Run {
        let (events, _) = broadcast::channel(4);
        let (pid, _) = watch::channel(None);
        Run {
            builder: PluginClient::builder("unused"),
            options,
            target: Arc::new(RwLock::new(None)),
            events,
            pid,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_bounded_jitter() {
        let r = run(SupervisorOptions::new(RestartPolicy::Always)
            .backoff(Duration::from_millis(100), Duration::from_secs(1)));
        for (attempt, base_ms) in [
            (1, 100.0),
            (2, 200.0),
            (3, 400.0),
            (4, 800.0),
            (5, 1000.0),
            (30, 1000.0),
        ] {
            let ms = r.backoff(attempt).as_secs_f64() * 1e3;
            assert!(
                (base_ms * 0.8..=base_ms * 1.2).contains(&ms),
                "attempt {attempt}: {ms} ms, base {base_ms}"
            );
        }
        // At the maximum the delays still differ: plugins that crash together spread
        // out. 20 draws from a ±20 % range of 1 s are all equal with a chance of
        // about 0 (they would have to agree to the nanosecond).
        let at_max: std::collections::HashSet<Duration> = (0..20).map(|_| r.backoff(30)).collect();
        assert!(at_max.len() > 1, "{at_max:?}");
    }

    #[test]
    fn options_keep_sane_bounds() {
        let o = SupervisorOptions::new(RestartPolicy::OnFailure)
            .backoff(Duration::from_secs(2), Duration::from_secs(1))
            .health_checks(Duration::from_secs(1), Duration::from_millis(100), 0);
        assert_eq!(o.max_backoff, Duration::from_secs(2));
        assert_eq!(o.health_failures, 1);
        assert!(
            SupervisorOptions::new(RestartPolicy::Never)
                .without_health_checks()
                .health_interval
                .is_none()
        );
    }

    #[test]
    fn the_policy_and_the_crash_loop_limit_decide_a_restart() {
        let never = run(SupervisorOptions::new(RestartPolicy::Never));
        let mut recent = VecDeque::new();
        let now = Instant::now();
        let why = never.may_restart(true, &mut recent, now).unwrap_err();
        assert!(why.contains("Never"), "{why}");
        let on_failure = run(SupervisorOptions::new(RestartPolicy::OnFailure));
        assert!(on_failure.may_restart(false, &mut recent, now).is_err());
        assert!(on_failure.may_restart(true, &mut recent, now).is_ok());

        let limited = run(SupervisorOptions::new(RestartPolicy::Always)
            .crash_loop_limit(2, Duration::from_secs(10)));
        let mut recent = VecDeque::new();
        assert!(limited.may_restart(false, &mut recent, now).is_ok());
        assert!(limited.may_restart(true, &mut recent, now).is_ok());
        let why = limited.may_restart(true, &mut recent, now).unwrap_err();
        assert!(why.starts_with("crash loop: 2 restarts"), "{why}");
        // Outside the window the old restarts no longer count.
        let later = now + Duration::from_secs(11);
        assert!(limited.may_restart(true, &mut recent, later).is_ok());
    }
}
