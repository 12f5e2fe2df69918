//! Tower layers that rpcplugin hosts and plugins share: a token-bucket
//! [`RateLimitLayer`], a [`ConcurrencyLimitLayer`], and [`CallStats`], the call
//! counters behind a plugin's status snapshot and a host's. Both fail a call over their
//! limit at once, with gRPC status `RESOURCE_EXHAUSTED` and a message naming the
//! limit, instead of queueing it: a plugin under more load than it is configured for
//! says so, and the caller decides whether to retry.
//!
//! They wrap any HTTP service whose responses are gRPC responses: a plugin's
//! services (`rpcplugin::server::Builder::rate_limit`) or a host's channel
//! (`ServiceBuilder::new().layer(rate_limit.layer()).service(plugin.channel())`).
//! The per-call cost is an atomic operation or two; nothing locks.
//!
//! ```
//! use rpcplugin_layers::RateLimit;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // 10 calls per second, 2 at once at most.
//! let limit = RateLimit::new(10.0, 2).unwrap();
//! let mut service = ServiceBuilder::new()
//!     .layer(limit.layer())
//!     .service_fn(|_: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
//!     });
//! let status = |r: &http::Response<_>| tonic::Status::from_header_map(r.headers()).map(|s| s.code());
//! for expected in [None, None, Some(tonic::Code::ResourceExhausted)] {
//!     let reply = service.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//!     assert_eq!(status(&reply), expected);
//! }
//! # }
//! ```

mod concurrency;
#[cfg(feature = "otel")]
mod metrics;
mod rate;
mod stats;

#[cfg(feature = "otel")]
pub use metrics::{RpcMetrics, RpcMetricsLayer, RpcMetricsService};

pub use concurrency::{ConcurrencyLimitLayer, ConcurrencyLimitService};
pub use rate::{RateLimit, RateLimitLayer, RateLimitService};
pub use stats::{CallCounts, CallStats, CallStatsLayer, CallStatsService};

/// A gRPC response carrying only `status` (what tonic sends for an error before
/// any message): what a limit answers instead of calling the service.
fn rejected<B: Default>(status: tonic::Status) -> http::Response<B> {
    status.into_http()
}
