//! Pure refresh and backoff arithmetic.
//!
//! Nothing here touches a clock, a file or the network: every function takes
//! the instants and the random draw it needs, so the schedule can be tested
//! exhaustively without a runtime (and with paused time where it is used).

use std::time::{Duration, SystemTime};

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

/// The largest window in which an AWS SDK refreshes credentials before the
/// `Expiration` it was given: botocore's advisory refresh (its mandatory one
/// is 10 minutes, JS v3's 5 minutes, Java v2's about 15 s, the Rust SDK's
/// about 10 s; Go v2's `credential_process` provider has none).
pub const CLIENT_REFRESH_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long after its planned refresh rolecall expects to hold the new
/// session: far more than one attempt takes ([`crate::sts::ATTEMPT_TIMEOUT`]),
/// and a failed attempt makes [`reported_expiry`] report the real expiry.
pub const REFRESH_GRACE: Duration = Duration::from_secs(60);
/// [`reported_expiry`] reports at most this long after the planned refresh
/// (while it keeps the real expiry minus [`EXPIRY_MARGIN`] too): just over
/// the largest client window, so no client is inside its window before
/// newer keys exist, and every client re-fetches by then.
pub const REPORT_AFTER_REFRESH: Duration =
    Duration::from_secs(CLIENT_REFRESH_WINDOW.as_secs() + REFRESH_GRACE.as_secs());
/// The reported expiry is at least this long before the real one...
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// ...or this fraction of the session's lifetime, when that is less (short
/// sessions: 90 s for a 15-minute session).
pub const EXPIRY_MARGIN_FRACTION: f64 = 0.1;

/// The `Expiration` that process mode and the endpoint report for a session
/// whose real expiry is `expiration`, received at `received`, with the next
/// refresh planned at `next_refresh` (`None` when nothing newer is due: the
/// last refresh failed, as in an STS outage, or no refresh is planned yet).
///
/// - Nothing newer due: the real expiry, so that clients keep the last good
///   keys as long as they are valid.
/// - Otherwise `next_refresh + REPORT_AFTER_REFRESH` (16 minutes after the
///   refresh), but never later than `expiration - margin`, where the margin
///   is [`EXPIRY_MARGIN`] or [`EXPIRY_MARGIN_FRACTION`] of the lifetime,
///   whichever is less. Rounded down to a whole second (what the SDKs
///   parse). A client without a refresh window (Go v2) then re-fetches
///   after rolecall's refresh and well before the real expiry; a client with
///   a window of up to 15 minutes is never inside it before the refresh
///   while the session is long enough for the window to fit before the
///   margin (sessions of about 42 minutes or more; see the README).
/// - A planned refresh too late for that (after `expiration - margin`, or
///   less than a second before it): the real expiry.
///
/// Depends only on its arguments, not on the clock: the writer re-renders
/// every [`crate::output::RECHECK_INTERVAL`] and rewrites only changed bytes.
pub fn reported_expiry(
    expiration: SystemTime,
    received: SystemTime,
    next_refresh: Option<SystemTime>,
) -> SystemTime {
    let Some(next) = next_refresh else {
        return expiration;
    };
    let lifetime = expiration.duration_since(received).unwrap_or_default();
    let margin = EXPIRY_MARGIN.min(lifetime.mul_f64(EXPIRY_MARGIN_FRACTION));
    let Some(cap) = expiration.checked_sub(margin) else {
        return expiration;
    };
    let Some(early) = next.checked_add(REPORT_AFTER_REFRESH) else {
        return expiration;
    };
    let reported = whole_second(early.min(cap));
    if reported <= next {
        return expiration;
    }
    reported
}

/// `t` rounded down to a whole second since the Unix epoch.
fn whole_second(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

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
#[cfg(test)]
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
#[cfg(test)]
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

    // --- reported_expiry -------------------------------------------------

    const MIN: u64 = 60;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000)
    }

    /// (real expiry, planned refresh, reported) for a session of
    /// `lifetime_s` received at `t0()` and scheduled with `jitter`.
    fn plan(lifetime_s: u64, jitter: f64) -> (SystemTime, SystemTime, SystemTime) {
        let lifetime = Duration::from_secs(lifetime_s);
        let real = t0() + lifetime;
        let next = t0() + refresh_in(lifetime, jitter);
        (real, next, reported_expiry(real, t0(), Some(next)))
    }

    fn secs_after_t0(t: SystemTime) -> u64 {
        t.duration_since(t0()).unwrap().as_secs()
    }

    /// Each SDK's refresh window: botocore advisory and mandatory, JS v3,
    /// Java v2, the Rust SDK, Go v2's credential_process provider (none).
    const SDK_WINDOWS: [(&str, u64); 6] = [
        ("botocore advisory", 15 * 60),
        ("botocore mandatory", 10 * 60),
        ("JS v3", 5 * 60),
        ("Java v2", 15),
        ("Rust", 10),
        ("Go v2 process", 0),
    ];

    #[test]
    fn reported_expiry_arithmetic_for_the_usual_sessions() {
        // (lifetime, jitter, planned refresh, reported), seconds after receipt.
        let cases = [
            // One hour: refresh at 30 min (27 with the most jitter), report
            // 16 min later; the real expiry minus 5 min (55 min) is not reached.
            (60 * MIN, 0.0, 30 * MIN, 46 * MIN),
            (60 * MIN, 1.0, 27 * MIN, 43 * MIN),
            // Twelve hours: refresh at 6 h (5 h 24 min), report 16 min later.
            (720 * MIN, 0.0, 360 * MIN, 376 * MIN),
            (720 * MIN, 1.0, 324 * MIN, 340 * MIN),
            // Fifteen minutes: refresh at 7.5 min (6.75); 16 min later is past
            // the real expiry, so the cap applies: 15 min - 90 s (a tenth).
            (15 * MIN, 0.0, 450, 810),
            (15 * MIN, 1.0, 405, 810),
            // Thirty minutes: refresh at 15 min, cap 30 - 3 = 27 min.
            (30 * MIN, 0.0, 15 * MIN, 27 * MIN),
            // Two hours: the margin is 5 min, not a tenth (12 min).
            (120 * MIN, 0.0, 60 * MIN, 76 * MIN),
        ];
        for (lifetime, jitter, next_s, reported_s) in cases {
            let (_, next, reported) = plan(lifetime, jitter);
            assert_eq!(secs_after_t0(next), next_s, "{lifetime} s, jitter {jitter}");
            assert_eq!(
                secs_after_t0(reported),
                reported_s,
                "{lifetime} s, jitter {jitter}"
            );
        }
    }

    #[test]
    fn nothing_newer_due_reports_the_real_expiry() {
        for lifetime in [15 * MIN, 60 * MIN, 720 * MIN, 10, 0] {
            let real = t0() + Duration::from_secs(lifetime);
            assert_eq!(reported_expiry(real, t0(), None), real);
        }
    }

    #[test]
    fn reported_expiry_is_after_the_refresh_and_before_the_real_expiry_minus_the_margin() {
        // Every lifetime STS grants (15 min to 12 h, by minutes), jitter 0 to max.
        for lifetime in (15 * MIN..=720 * MIN).step_by(60) {
            for j in 0..=10 {
                let jitter = j as f64 / 10.0;
                let (real, next, reported) = plan(lifetime, jitter);
                let margin = EXPIRY_MARGIN.min(Duration::from_secs(lifetime).mul_f64(0.1));
                let ctx = format!("{lifetime} s, jitter {jitter}");
                assert!(reported > next, "{ctx}: not after the refresh");
                assert!(reported + margin <= real, "{ctx}: inside the margin");
                assert!(
                    reported <= next + REPORT_AFTER_REFRESH,
                    "{ctx}: later than needed"
                );
                // Go v2 (no window) re-fetches at `reported`: newer keys exist
                // by then (the refresh plus a grace), unless the cap is closer.
                assert!(
                    reported >= (next + REFRESH_GRACE).min(real - margin - Duration::from_secs(1)),
                    "{ctx}: too soon after the refresh"
                );
                assert_eq!(
                    reported
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .subsec_nanos(),
                    0,
                    "{ctx}: not a whole second"
                );
            }
        }
    }

    /// At the planned refresh (the latest moment a healthy rolecall lets a
    /// client hold the old keys) no client is inside its window through the
    /// reported expiry unless it would be through the real one: no client
    /// re-fetches the same keys in a loop because of the rule.
    #[test]
    fn no_client_is_pushed_into_its_refresh_window_before_the_refresh() {
        for lifetime in [15 * MIN, 60 * MIN, 720 * MIN] {
            for jitter in [0.0, 1.0] {
                let (real, next, reported) = plan(lifetime, jitter);
                for (sdk, window) in SDK_WINDOWS {
                    let window = Duration::from_secs(window);
                    let reported_left = reported.duration_since(next).unwrap();
                    let real_left = real.duration_since(next).unwrap();
                    assert!(
                        reported_left > window || real_left < window,
                        "{sdk}, {lifetime} s session, jitter {jitter}: {reported_left:?} left at the refresh, real {real_left:?}"
                    );
                }
            }
        }
        // A 15-minute session is inside botocore's windows by its real expiry
        // already; JS v3, Java, Rust and Go are outside theirs.
        let (real, next, reported) = plan(15 * MIN, 0.0);
        assert!(real.duration_since(next).unwrap() < Duration::from_secs(10 * MIN));
        assert!(reported.duration_since(next).unwrap() > Duration::from_secs(5 * MIN));
    }

    #[test]
    fn sessions_of_42_minutes_or_more_stay_outside_every_window_until_the_refresh() {
        for lifetime in (42 * MIN..=720 * MIN).step_by(60) {
            for j in 0..=10 {
                let (_, next, reported) = plan(lifetime, j as f64 / 10.0);
                assert!(
                    reported.duration_since(next).unwrap() > CLIENT_REFRESH_WINDOW,
                    "{lifetime} s, jitter {j}/10"
                );
            }
        }
        // Below that the margin wins, and botocore's advisory window (15 min)
        // opens before the refresh for at most the margin plus the grace
        // longer than it would with the real expiry.
        for lifetime in (15 * MIN..42 * MIN).step_by(10) {
            for j in 0..=10 {
                let (real, next, reported) = plan(lifetime, j as f64 / 10.0);
                let margin = EXPIRY_MARGIN.min(Duration::from_secs(lifetime).mul_f64(0.1));
                for (sdk, window) in SDK_WINDOWS {
                    let window = Duration::from_secs(window);
                    if reported.duration_since(next).unwrap() < window {
                        assert!(
                            real.duration_since(next).unwrap() < window + margin + REFRESH_GRACE,
                            "{sdk}, {lifetime} s, jitter {j}/10"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn reported_expiry_does_not_move_with_the_receipt_time_fraction() {
        // Received at a fraction of a second: still whole seconds, the same
        // rule (the writer rewrites only changed bytes).
        let real = t0() + Duration::from_secs(3600);
        let received = t0() + Duration::from_millis(300);
        let next = received + refresh_in(real.duration_since(received).unwrap(), 0.0);
        let reported = reported_expiry(real, received, Some(next));
        assert_eq!(reported, t0() + Duration::from_secs(46 * MIN));
        assert_eq!(reported_expiry(real, received, Some(next)), reported);
    }

    #[test]
    fn a_refresh_planned_too_late_or_a_degenerate_session_reports_the_real_expiry() {
        let real = t0() + Duration::from_secs(3600);
        // Planned after the cap (55 min): nothing newer before it.
        assert_eq!(
            reported_expiry(real, t0(), Some(t0() + Duration::from_secs(56 * MIN))),
            real
        );
        assert_eq!(reported_expiry(real, t0(), Some(real)), real);
        // A one-second session refreshed after MIN_REFRESH.
        let tiny = t0() + Duration::from_secs(1);
        assert_eq!(
            reported_expiry(
                tiny,
                t0(),
                Some(t0() + refresh_in(Duration::from_secs(1), 0.0))
            ),
            tiny
        );
        // Received after its expiry (a clock step): the real expiry.
        assert_eq!(reported_expiry(t0(), real, Some(real)), t0());
        // Test-sized sessions keep the rule: 20 s, refresh at 10, cap 18.
        let short = t0() + Duration::from_secs(20);
        let next = t0() + refresh_in(Duration::from_secs(20), 0.0);
        assert_eq!(
            reported_expiry(short, t0(), Some(next)),
            t0() + Duration::from_secs(18)
        );
    }
}
