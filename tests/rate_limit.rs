//! The built-in rate limit, configured as pyvider-rpcplugin's variables: calls over
//! it fail at once with RESOURCE_EXHAUSTED, and the host's lifecycle (health,
//! shutdown) keeps working under the load.

mod common;

use std::time::{Duration, Instant};

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
