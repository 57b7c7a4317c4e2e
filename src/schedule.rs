//! Pure refresh and backoff arithmetic.
//!
//! Nothing here touches a clock, a file or the network: every function takes
//! the instants and the random draw it needs, so the schedule can be tested
//! exhaustively without a runtime (and with paused time where it is used).

use std::time::Duration;

/// Transient failures back off from here...
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// ...up to here (exponential with full jitter).
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Configuration-type failures (AccessDenied, IDPRejectedClaim, ...) cannot be
/// fixed by hammering STS; they are retried at this fixed interval, and at once
/// when the token changes or the configuration is reloaded.
pub const CONFIG_RETRY: Duration = Duration::from_secs(300);
/// A refresh happens at half the session lifetime, moved earlier by up to
/// this fraction of the lifetime so that many pods started together spread out.
pub const JITTER_FRACTION: f64 = 0.05;
/// Never schedule a refresh sooner than this after a success, whatever STS
/// returned: a session that is (nearly) expired on arrival must not turn the
/// refresher into a hot loop.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// An STS answer whose credentials have less than this left by the local
/// clock is refused ([`crate::sts::ErrorClass::Clock`]) instead of replacing
/// the session held (or less than half of what STS granted, when that is
/// shorter, as only test endpoints grant). Real sessions last at least 15 minutes, and the
/// AWS SDKs refresh credentials that have under 5 minutes left, so such an
/// answer is of no use to an application: the local clock is far ahead, or
/// an old answer was replayed.
pub const MIN_USEFUL_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// SIGUSR1 refreshes a profile at most once per this interval; requests in
/// between are coalesced into one refresh at the end of it.
pub const MANUAL_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Credentials with less than this left count as "close to expiry": a token
/// change makes such a profile refresh at once. Fifteen minutes is the window
/// in which the AWS SDKs start refreshing on their own.
pub const NEAR_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// How long after receiving a session to refresh it.
///
/// `lifetime` is the time from receipt to expiry; `jitter` is a draw in
/// `[0, 1)`, moving the refresh up to [`JITTER_FRACTION`] of the lifetime
/// earlier. The result is never later than half the lifetime, so applications
/// always hold credentials with at least half their life left.
pub fn refresh_in(lifetime: Duration, jitter: f64) -> Duration {
    let half = lifetime / 2;
    let jitter = jitter.clamp(0.0, 1.0);
    let early = lifetime.mul_f64(JITTER_FRACTION * jitter);
    half.saturating_sub(early).max(MIN_REFRESH)
}

/// Delay before retry number `attempt` (0 for the first retry) after a
/// transient failure: exponential from [`BACKOFF_BASE`] capped at
/// [`BACKOFF_CAP`], with full jitter (`jitter` in `[0, 1)` scales the whole
/// delay), never below a few milliseconds so a failure cannot spin.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(BACKOFF_CAP);
    ceiling
        .mul_f64(jitter.clamp(0.0, 1.0))
        .max(Duration::from_millis(10))
}

/// The ceiling that [`backoff`] draws under for `attempt`, without jitter.
pub fn backoff_ceiling(attempt: u32) -> Duration {
    backoff(attempt, 1.0)
}

/// A source of jitter draws in `[0, 1)`. Production uses [`random_jitter`];
/// tests pass a constant so schedules are exact.
pub type Jitter = fn() -> f64;

/// Uniform draw in `[0, 1)`.
pub fn random_jitter() -> f64 {
    fastrand::f64()
}

/// No jitter: refreshes at exactly half the lifetime, backoff at its ceiling.
pub fn no_jitter() -> f64 {
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_at_half_the_lifetime_without_jitter() {
        assert_eq!(
            refresh_in(Duration::from_secs(3600), 0.0),
            Duration::from_secs(1800)
        );
        assert_eq!(
            refresh_in(Duration::from_secs(900), 0.0),
            Duration::from_secs(450)
        );
    }

    #[test]
    fn jitter_only_moves_the_refresh_earlier_and_by_a_bounded_amount() {
        let lifetime = Duration::from_secs(3600);
        for i in 0..1000 {
            let j = i as f64 / 1000.0;
            let r = refresh_in(lifetime, j);
            assert!(r <= lifetime / 2, "{r:?} later than half");
            assert!(
                r >= lifetime.mul_f64(0.5 - JITTER_FRACTION),
                "{r:?} too early"
            );
        }
    }

    #[test]
    fn an_almost_expired_session_does_not_cause_a_hot_loop() {
        assert_eq!(refresh_in(Duration::ZERO, 0.5), MIN_REFRESH);
        assert_eq!(refresh_in(Duration::from_millis(10), 0.0), MIN_REFRESH);
    }

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_sixty() {
        let ceilings: Vec<u64> = (0..10).map(|a| backoff_ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(backoff_ceiling(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn backoff_is_full_jitter_under_the_ceiling() {
        for attempt in 0..20 {
            for i in 0..100 {
                let j = i as f64 / 100.0;
                let d = backoff(attempt, j);
                assert!(d <= backoff_ceiling(attempt));
                assert!(d >= Duration::from_millis(10));
            }
        }
        assert_eq!(backoff(3, 0.5), Duration::from_secs(4));
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        assert_eq!(
            refresh_in(Duration::from_secs(100), -3.0),
            Duration::from_secs(50)
        );
        assert_eq!(backoff(0, 7.0), Duration::from_secs(1));
    }
}
