//! [`Backoff`]: the waits between attempts, shared by start-up retries and the
//! [`Supervisor`](crate::Supervisor)'s restarts.

use std::time::Duration;

use tower::util::rng::{HasherRng, Rng as _};

/// Exponential backoff with jitter: attempt `n` (from 1) waits
/// `initial × multiplier^(n-1)`, at most `max`, then spread by ±`spread` (a
/// fraction) and increased by up to `jitter`, so that plugins that failed together
/// do not retry in lockstep.
///
/// ```
/// use rpcplugin_client::Backoff;
/// use std::time::Duration;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert!(backoff.delay(1) <= Duration::from_millis(120));
/// assert!(backoff.delay(10) >= Duration::from_millis(800)); // capped at 1 s, ±20 %
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// Each wait is the last times this (at least 1).
    pub multiplier: f64,
    /// The longest wait before jitter.
    pub max: Duration,
    /// A random fraction of the wait, up to this, is added or taken away (0 to 1).
    pub spread: f64,
    /// A random duration up to this is added.
    pub jitter: Duration,
}

impl Backoff {
    /// Doubling from `initial` up to `max`, ±20 %: the supervisor's defaults.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            multiplier: 2.0,
            max: max.max(initial),
            spread: 0.2,
            jitter: Duration::ZERO,
        }
    }

    /// The wait before attempt `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let mut rng = HasherRng::new();
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let factor = self.multiplier.max(1.0).powi(exponent);
        let base = Duration::try_from_secs_f64(self.initial.as_secs_f64() * factor)
            .unwrap_or(self.max)
            .min(self.max);
        let spread = self.spread.clamp(0.0, 1.0);
        let spread = base.mul_f64(1.0 - spread + 2.0 * spread * rng.next_f64());
        spread + self.jitter.mul_f64(rng.next_f64())
    }
}
