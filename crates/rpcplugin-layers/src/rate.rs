//! [`RateLimit`]: a token bucket shared by every clone of the service it limits.
//!
//! tower's own `RateLimit` is not used: it makes an over-limit call wait instead of
//! failing, and its state lives in each service value, while tonic's router clones
//! the service for every call, so each call would see a full window.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::{Either, Ready, ready};
use rpcplugin_core::{Code, Error, Result};
use tower_layer::Layer;
use tower_service::Service;

/// A token-bucket rate limit: `burst` calls at once, refilled at `requests_per_second`.
/// Cheap to clone; clones share one bucket, so one value limits every service and
/// connection it is given to.
///
/// It is kept as GCRA (the "generic cell rate algorithm", the token bucket written
/// as one timestamp): the time at which the bucket will be full again, advanced by
/// one interval per call, and a call is refused when that time is more than `burst`
/// intervals ahead. One atomic compare-and-swap per call, no lock, no timer task.
#[derive(Clone)]
pub struct RateLimit {
    bucket: Arc<Bucket>,
}

struct Bucket {
    requests_per_second: f64,
    burst: u32,
    epoch: Instant,
    /// Nanoseconds between two tokens.
    interval: u64,
    /// How far ahead of now the bucket may be emptied: `burst` intervals.
    capacity: u64,
    /// When (nanoseconds after `epoch`) the bucket would be full again.
    full_at: AtomicU64,
    /// What a refused call is told.
    message: String,
}

impl RateLimit {
    /// `requests_per_second` (a positive number; fractions are fine) with bursts of
    /// up to `burst` calls (at least 1).
    ///
    /// # Errors
    ///
    /// `config.invalid_value` when the rate is not a positive finite number or the
    /// burst is 0.
    pub fn new(requests_per_second: f64, burst: u32) -> Result<Self> {
        if !(requests_per_second.is_finite() && requests_per_second > 0.0) || burst == 0 {
            return Err(Error::new(
                Code::ConfigInvalidValue,
                format!(
                    "invalid rate limit: {requests_per_second} requests per second, burst {burst}"
                ),
            )
            .with_hint("PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND must be above 0 and PLUGIN_RATE_LIMIT_BURST_CAPACITY at least 1"));
        }
        // At least a nanosecond, so that an absurd rate still limits something.
        let interval = Duration::from_secs_f64(1.0 / requests_per_second)
            .as_nanos()
            .clamp(1, u128::from(u64::MAX / 2 / u64::from(burst))) as u64;
        Ok(Self {
            bucket: Arc::new(Bucket {
                requests_per_second,
                burst,
                epoch: Instant::now(),
                interval,
                capacity: interval * u64::from(burst),
                full_at: AtomicU64::new(0),
                message: format!(
                    "rate limit exceeded: {requests_per_second} requests per second with bursts of {burst} (PLUGIN_RATE_LIMIT_REQUESTS_PER_SECOND, PLUGIN_RATE_LIMIT_BURST_CAPACITY); retry later"
                ),
            }),
        })
    }

    /// The sustained rate, in calls per second.
    pub fn requests_per_second(&self) -> f64 {
        self.bucket.requests_per_second
    }

    /// How many calls may arrive at once after a quiet period.
    pub fn burst(&self) -> u32 {
        self.bucket.burst
    }

    /// A tower layer applying this limit (sharing this bucket).
    pub fn layer(&self) -> RateLimitLayer {
        RateLimitLayer {
            limit: self.clone(),
        }
    }

    /// Takes a token if there is one.
    pub fn try_acquire(&self) -> bool {
        let bucket = &*self.bucket;
        let now = u64::try_from(bucket.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX / 2);
        bucket
            .full_at
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |full_at| {
                let next = full_at.max(now) + bucket.interval;
                (next - now <= bucket.capacity).then_some(next)
            })
            .is_ok()
    }
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("requests_per_second", &self.bucket.requests_per_second)
            .field("burst", &self.bucket.burst)
            .finish()
    }
}

/// Applies a [`RateLimit`] to a service: see [`RateLimit::layer`].
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limit: RateLimit,
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limit: self.limit.clone(),
        }
    }
}

/// A service behind a [`RateLimit`]: a call without a token is answered with
/// `RESOURCE_EXHAUSTED` at once and never reaches the inner service.
#[derive(Debug, Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limit: RateLimit,
}

impl<S, Req, ResBody> Service<http::Request<Req>> for RateLimitService<S>
where
    S: Service<http::Request<Req>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Req>) -> Self::Future {
        if self.limit.try_acquire() {
            Either::Right(self.inner.call(request))
        } else {
            let status = tonic::Status::resource_exhausted(self.limit.bucket.message.clone());
            Either::Left(ready(Ok(crate::rejected(status))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_calls_are_refused_until_tokens_come_back() {
        let limit = RateLimit::new(20.0, 3).unwrap();
        let passed = (0..10).filter(|_| limit.try_acquire()).count();
        assert_eq!(passed, 3, "the burst, and nothing more at once");
        // 20 per second: one token every 50 ms.
        std::thread::sleep(Duration::from_millis(120));
        let passed = (0..10).filter(|_| limit.try_acquire()).count();
        assert!((2..=3).contains(&passed), "{passed} tokens after 120 ms");
    }

    #[test]
    fn clones_share_one_bucket() {
        let limit = RateLimit::new(1.0, 2).unwrap();
        let clone = limit.clone();
        assert!(limit.try_acquire());
        assert!(clone.try_acquire());
        assert!(!limit.try_acquire());
    }

    #[test]
    fn nonsense_rates_are_refused_with_the_variable_names() {
        for (rate, burst) in [(0.0, 1), (-1.0, 1), (f64::NAN, 1), (1.0, 0)] {
            let err = RateLimit::new(rate, burst).unwrap_err();
            assert_eq!(err.code(), Code::ConfigInvalidValue);
            assert!(err.hint().unwrap().contains("PLUGIN_RATE_LIMIT"), "{err}");
        }
    }
}
