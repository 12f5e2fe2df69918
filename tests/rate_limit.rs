//! The built-in rate limit, configured as pyvider-rpcplugin's variables: calls over
//! it fail at once with RESOURCE_EXHAUSTED, and the host's lifecycle (health,
//! shutdown) keeps working under the load. On the host, tower layers around the
//! channel (rate limit, timeout, concurrency) and a retry with a budget around a
//! generated client's call.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tower::ServiceExt as _;
use tower::retry::Policy;
use tower::retry::backoff::{
    Backoff as _, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff as _,
};
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::util::rng::HasherRng;

use common::{init_tracing, kv_plugin, within};
use rpcplugin::client::new_client;
use rpcplugin::proto::examples::bench::Payload;
use rpcplugin::proto::examples::bench::bench_client::BenchClient;
use rpcplugin::proto::health::v1::HealthCheckRequest;
use rpcplugin::proto::health::v1::health_check_response::ServingStatus;
use rpcplugin::proto::health::v1::health_client::HealthClient;
use rpcplugin::tonic;

const RATE: f64 = 20.0;
const BURST: u64 = 5;

#[tokio::test]
async fn calls_over_the_rate_limit_fail_fast_and_health_is_not_limited() {
    init_tracing();
    // The plugin's settings, in the plugin's environment.
    let plugin = kv_plugin()
        .env("PLUGIN_RATE_LIMIT_ENABLED", "true")
        .env("PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND", "20")
        .env("PLUGIN_RATE_LIMIT_BURST_CAPACITY", "5")
        .start()
        .await
        .expect("kv_plugin starts with a rate limit");
    let bench = new_client!(BenchClient, plugin);
    let started = Instant::now();
    let calls = (0..200).map(|_| {
        let mut bench = bench.clone();
        async move {
            bench
                .echo(Payload {
                    data: vec![1; 16].into(),
                })
                .await
        }
    });
    let results = within(
        Duration::from_secs(10),
        "200 calls",
        futures_util::future::join_all(calls),
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let passed = results.iter().filter(|r| r.is_ok()).count() as u64;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    // The burst, plus what refills while the calls run.
    let most = BURST + (RATE * elapsed).ceil() as u64 + 1;
    assert!(
        (BURST..=most).contains(&passed),
        "{passed} calls passed in {elapsed:.3}s; expected {BURST}..={most}"
    );
    for status in &refused {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
        assert!(
            status
                .message()
                .contains("PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND"),
            "{status}"
        );
    }

    // Health is outside the limit: many checks in a row all answer.
    let mut health = HealthClient::new(plugin.channel());
    for _ in 0..50 {
        let reply = within(
            Duration::from_secs(5),
            "a health check",
            health.check(HealthCheckRequest {
                service: "plugin".into(),
            }),
        )
        .await
        .expect("health is not rate limited");
        assert_eq!(reply.get_ref().status, ServingStatus::Serving as i32);
    }
    let stopped = plugin.stop().await.expect("stop succeeds under the limit");
    assert!(stopped.status.success(), "{}", stopped.status);
}

#[tokio::test]
async fn a_host_wraps_its_channel_in_tower_layers_and_the_same_rate_limit() {
    init_tracing();
    let plugin = kv_plugin().start().await.expect("kv_plugin starts");
    // One call per second, bursts of 2, a 5 s timeout, 4 calls in flight at most:
    // generated clients take any tower service over the channel.
    let limit = rpcplugin::client::RateLimit::new(1.0, 2).expect("a valid limit");
    let channel = tower::ServiceBuilder::new()
        .layer(limit.layer())
        .timeout(Duration::from_secs(5))
        .concurrency_limit(4)
        .service(plugin.channel());
    let mut bench = BenchClient::new(channel);
    let echo = || Payload {
        data: vec![1; 16].into(),
    };
    for _ in 0..2 {
        within(Duration::from_secs(5), "Echo", bench.echo(echo()))
            .await
            .expect("the burst passes");
    }
    let status = within(Duration::from_secs(5), "Echo", bench.echo(echo()))
        .await
        .expect_err("the third call at once is over the host's limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    plugin.stop().await.expect("stop succeeds");
}

/// Retries the calls a plugin refused for load (RESOURCE_EXHAUSTED) or could not
/// take (UNAVAILABLE) after a short exponential backoff, as long as the budget
/// allows: what a host would write around a generated client's call.
#[derive(Clone)]
struct RetryOverload {
    /// Shared by every call: retries are a share of all calls, plus a small reserve.
    budget: Arc<TpsBudget>,
    /// This call's backoff (each call gets a fresh copy of the policy).
    backoff: ExponentialBackoff,
    /// Whether this call's first result is still to come.
    first: bool,
}

impl RetryOverload {
    fn new(budget: TpsBudget) -> Self {
        let backoff = ExponentialBackoffMaker::new(
            Duration::from_millis(10),
            Duration::from_millis(200),
            0.5,
            HasherRng::default(),
        )
        .expect("a valid backoff")
        .make_backoff();
        Self {
            budget: Arc::new(budget),
            backoff,
            first: true,
        }
    }
}

impl<Req: Clone, Res> Policy<Req, Res, tonic::Status> for RetryOverload {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _: &mut Req,
        result: &mut Result<Res, tonic::Status>,
    ) -> Option<Self::Future> {
        if std::mem::take(&mut self.first) {
            // One deposit per call (not per attempt): the budget's unit.
            self.budget.deposit();
        }
        match result {
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                ) =>
            {
                // Out of budget: the failure goes to the caller as it is.
                self.budget.withdraw().then(|| self.backoff.next_backoff())
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// `count` Echo calls at once through `policy` against a plugin limited to 20 calls
/// per second with bursts of 5; returns the results, how many calls reached the
/// plugin (attempts), and how long it took.
async fn echo_burst_with_retry(
    count: usize,
    policy: RetryOverload,
) -> (Vec<Result<Payload, tonic::Status>>, usize, Duration) {
    let plugin = kv_plugin()
        .env("PLUGIN_RATE_LIMIT_ENABLED", "true")
        .env("PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND", "20")
        .env("PLUGIN_RATE_LIMIT_BURST_CAPACITY", "5")
        .start()
        .await
        .expect("kv_plugin starts with a rate limit");
    let bench = new_client!(BenchClient, plugin);
    let attempts = Arc::new(AtomicUsize::new(0));
    // The retry wraps the generated client's call, not the channel: a retry must
    // send the request again, and the request *message* is Clone while the
    // channel's request (an HTTP body, possibly a stream) is not.
    let echo = {
        let attempts = attempts.clone();
        tower::service_fn(move |payload: Payload| {
            attempts.fetch_add(1, Ordering::Relaxed);
            let mut bench = bench.clone();
            async move { bench.echo(payload).await.map(tonic::Response::into_inner) }
        })
    };
    let echo = tower::ServiceBuilder::new().retry(policy).service(echo);
    let started = Instant::now();
    let calls = (0..count).map(|_| {
        echo.clone().oneshot(Payload {
            data: vec![1; 16].into(),
        })
    });
    let results = within(
        Duration::from_secs(20),
        "the burst with retries",
        futures_util::future::join_all(calls),
    )
    .await;
    let elapsed = started.elapsed();
    plugin.stop().await.expect("stop succeeds");
    (results, attempts.load(Ordering::Relaxed), elapsed)
}

#[tokio::test]
async fn a_host_retries_refused_calls_within_a_budget_until_they_pass() {
    init_tracing();
    // Up to 100 retries a second besides 10 % of calls: more than this burst needs.
    let policy = RetryOverload::new(TpsBudget::new(Duration::from_secs(10), 100, 0.1));
    let (results, attempts, elapsed) = echo_burst_with_retry(30, policy).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    println!("30 calls, {attempts} attempts, {elapsed:?}");
    assert!(
        failed.is_empty(),
        "every call passes eventually: {failed:?}"
    );
    // 30 calls at 20 per second after a burst of 5 need at least 1.25 s.
    assert!(
        elapsed >= Duration::from_millis(1100),
        "the limit held: {elapsed:?}"
    );
    assert!(
        attempts > 30,
        "some calls were retried ({attempts} attempts)"
    );
}

#[tokio::test]
async fn a_tiny_retry_budget_gives_up_with_resource_exhausted_instead_of_retrying_forever() {
    init_tracing();
    // One retry a second, nothing earned by calls.
    let policy = RetryOverload::new(TpsBudget::new(Duration::from_secs(1), 1, 0.0));
    let (results, attempts, elapsed) = echo_burst_with_retry(30, policy).await;
    let passed = results.iter().filter(|r| r.is_ok()).count();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    println!("30 calls, {passed} passed, {attempts} attempts, {elapsed:?}");
    assert!(
        (5..=10).contains(&passed),
        "the burst and the few retries the budget allows pass: {passed}"
    );
    for status in &failed {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    }
    assert!(
        attempts <= 30 + 5,
        "the budget stopped the retries: {attempts} attempts for 30 calls"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "gave up fast: {elapsed:?}"
    );
}
