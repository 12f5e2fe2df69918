//! The start-up cost of randomness, measured where it is paid: the process's first
//! key generation, which is also aws-lc's first random byte.
//!
//! aws-lc seeds its random generator from CPU jitter entropy as well as the
//! kernel's by default, and sampling the jitter costs about 60 ms per process.
//! Only the application's build can turn it off (`AWS_LC_SYS_NO_JITTER_ENTROPY=1`,
//! read when aws-lc is compiled), so a library can only tell its user: this
//! module measures the first generation and words the advice once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A first key generation at least this slow paid for aws-lc's jitter sampling:
/// one without it takes a few milliseconds, even in a debug build.
pub const SLOW_ENTROPY_START: Duration = Duration::from_millis(30);

/// How long this process's first key generation took.
static FIRST: OnceLock<Duration> = OnceLock::new();

/// Whether the advice was given already.
static ADVISED: AtomicBool = AtomicBool::new(false);

/// Runs `generate`, recording its time if it is the process's first.
pub(crate) fn timed<T>(generate: impl FnOnce() -> T) -> T {
    if FIRST.get().is_some() {
        return generate();
    }
    let started = Instant::now();
    let generated = generate();
    let _ = FIRST.set(started.elapsed());
    generated
}

/// The advice for a slow start, once per process: `Some` the first time it is
/// asked after a first key generation slower than [`SLOW_ENTROPY_START`]. Hosts
/// and plugins log it, so that whoever builds them learns the remedy where they
/// look.
pub fn slow_entropy_start_advice() -> Option<String> {
    let advice = advice(*FIRST.get()?)?;
    (!ADVISED.swap(true, Ordering::SeqCst)).then_some(advice)
}

fn advice(first_generation: Duration) -> Option<String> {
    (first_generation >= SLOW_ENTROPY_START).then(|| {
        format!(
            "the first key generation took {} ms, most of it aws-lc sampling CPU jitter \
             entropy; set AWS_LC_SYS_NO_JITTER_ENTROPY = \"1\" under [env] in the \
             application's .cargo/config.toml and rebuild for a start about 60 ms faster \
             per process, with the kernel's getrandom as the entropy source (rpcplugin's \
             docs/security.md, \"Start-up cost of randomness\")",
            first_generation.as_millis()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_first_generation_gets_the_remedy_and_a_fast_one_nothing() {
        let slow = advice(Duration::from_millis(62)).expect("advice for 62 ms");
        assert!(slow.contains("62 ms"), "{slow}");
        assert!(slow.contains("AWS_LC_SYS_NO_JITTER_ENTROPY"), "{slow}");
        assert!(slow.contains(".cargo/config.toml"), "{slow}");
        assert_eq!(advice(Duration::from_millis(3)), None);
    }

    #[test]
    fn the_first_generation_is_timed_and_the_advice_given_at_most_once() {
        let _ = crate::Identity::self_signed(crate::KeyAlgorithm::default(), crate::Role::Client);
        assert!(FIRST.get().is_some(), "the first generation was timed");
        let first = slow_entropy_start_advice();
        assert_eq!(slow_entropy_start_advice(), None, "once per process");
        // This workspace builds aws-lc without jitter entropy (.cargo/config.toml).
        if option_env!("AWS_LC_SYS_NO_JITTER_ENTROPY") == Some("1") {
            assert_eq!(first, None, "a fast start needs no advice");
        }
    }
}
