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
/// A session obtained off the schedule (the first of a profile, or the end
/// of a run of failures) is refreshed up to this fraction of its lifetime
/// earlier still ([`spread_refresh_in`]): pods started together, or that all
/// recovered when STS came back, would otherwise refresh together for as
/// long as they live.
pub const SPREAD_FRACTION: f64 = 0.25;
/// After a `Throttling` answer, the sidecar's next STS call waits at least
/// half of this ceiling, which doubles with each further throttled call
/// ([`throttle_pause`], [`crate::pacer`])...
pub const THROTTLE_BASE: Duration = Duration::from_secs(5);
/// ...up to this: twice [`BACKOFF_CAP`], because a fleet that STS throttles
/// needs each sidecar to wait about (sidecars waiting) / (account rate)
/// between calls, minutes for a thousand pods at five calls a second.
pub const THROTTLE_CAP: Duration = Duration::from_secs(120);
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
/// session: far more than one attempt takes ([`crate::sts::ATTEMPT_TIMEOUT`]).
pub const REFRESH_GRACE: Duration = Duration::from_secs(60);
/// [`planned_expiry`] reports at most this long after the planned refresh:
/// just over the largest client window. What process mode wrote as
/// `Expiration` before the sliding report ([`sliding_expiry`]), and still
/// writes into `credential-process.json` for a helper of that age.
pub const REPORT_AFTER_REFRESH: Duration =
    Duration::from_secs(CLIENT_REFRESH_WINDOW.as_secs() + REFRESH_GRACE.as_secs());
/// While a session is healthy, process mode and the endpoint report an
/// `Expiration` this long after the moment they answer ([`sliding_expiry`]):
/// two minutes more than the largest client window ([`CLIENT_REFRESH_WINDOW`],
/// botocore's advisory one), so every client asks again at most this long
/// after it last asked (botocore about every 2 minutes, JS v3 every 12, Go
/// v2 and the Rust SDK about every 17), each time a local read, and a
/// forced refresh reaches every client within this bound.
pub const REPORT_SLIDE: Duration = Duration::from_secs(CLIENT_REFRESH_WINDOW.as_secs() + 2 * 60);
/// The reported expiry is at least this long before the real one...
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// ...or this fraction of the session's lifetime, when that is less (short
/// sessions: 90 s for a 15-minute session).
pub const EXPIRY_MARGIN_FRACTION: f64 = 0.1;

/// The latest `Expiration` rolecall reports for a session whose real expiry
/// is `expiration`, received at `received`: the real expiry minus the
/// margin ([`EXPIRY_MARGIN`], or [`EXPIRY_MARGIN_FRACTION`] of the
/// lifetime when that is less), rounded down to a whole second. A client
/// that keeps keys until the `Expiration` it was given (Go v2's
/// `credential_process` provider) then never signs with keys in their last
/// minutes. `None` for a degenerate session (expired before it arrived).
pub fn report_cap(expiration: SystemTime, received: SystemTime) -> Option<SystemTime> {
    let lifetime = expiration.duration_since(received).unwrap_or_default();
    let margin = EXPIRY_MARGIN.min(lifetime.mul_f64(EXPIRY_MARGIN_FRACTION));
    let cap = whole_second(expiration.checked_sub(margin)?);
    (cap < expiration).then_some(cap)
}

/// The `Expiration` process mode and the endpoint report at `now` for a
/// healthy session (its last refresh succeeded and the next is planned)
/// whose real expiry is `expiration` and whose [`report_cap`] is `cap`:
/// `now + REPORT_SLIDE`, never later than `cap`, rounded down to a whole
/// second; the real expiry once that is not after `now` (the cap passed
/// without a refresh: a stopped refresher, a clock step), so valid keys
/// never come with an expiry in the past.
///
/// Computed when a client asks (the helper when it runs, the endpoint per
/// request), so nothing is rewritten for it. A client re-asks at most
/// [`REPORT_SLIDE`] after it last asked, minus its own window, which bounds
/// how long it keeps keys after a forced refresh; no client with a window
/// under [`REPORT_SLIDE`] re-asks on every call while the cap is farther
/// than its window, since each answer is [`REPORT_SLIDE`] away.
pub fn sliding_expiry(expiration: SystemTime, cap: SystemTime, now: SystemTime) -> SystemTime {
    let Some(slid) = now.checked_add(REPORT_SLIDE) else {
        return expiration;
    };
    let reported = whole_second(slid.min(cap));
    if reported <= now || reported > expiration {
        return expiration;
    }
    reported
}

/// The fixed `Expiration` reported before the sliding report existed, and
/// still written as `Expiration` into `credential-process.json` for a
/// helper of that age (one copied into an app image), which prints it:
/// for a session whose real expiry is `expiration`, received at
/// `received`, with the next refresh planned at `next_refresh` (`None`
/// when nothing newer is due: the last refresh failed, as in an STS outage,
/// or no refresh is planned yet).
///
/// - Nothing newer due: the real expiry, so that clients keep the last good
///   keys as long as they are valid.
/// - Otherwise `next_refresh + REPORT_AFTER_REFRESH` (16 minutes after the
///   refresh), but never later than [`report_cap`]. A client without a
///   refresh window (Go v2) then re-fetches after rolecall's refresh and
///   well before the real expiry.
/// - A planned refresh too late for that (after the cap, or less than a
///   second before it): the real expiry.
///
/// Depends only on its arguments, not on the clock: the writer re-renders
/// every [`crate::output::RECHECK_INTERVAL`] and rewrites only changed bytes.
pub fn planned_expiry(
    expiration: SystemTime,
    received: SystemTime,
    next_refresh: Option<SystemTime>,
) -> SystemTime {
    let Some(next) = next_refresh else {
        return expiration;
    };
    let Some(cap) = report_cap(expiration, received) else {
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

/// [`refresh_in`] for a session obtained off the schedule: moved earlier by
/// up to a further [`SPREAD_FRACTION`] of the lifetime, by the draw
/// `spread` in `[0, 1)`. Between 20 % and 50 % of the lifetime: never later
/// than [`refresh_in`], so never later than half the lifetime.
pub fn spread_refresh_in(lifetime: Duration, jitter: f64, spread: f64) -> Duration {
    let early = lifetime.mul_f64(SPREAD_FRACTION * spread.clamp(0.0, 1.0));
    refresh_in(lifetime, jitter)
        .saturating_sub(early)
        .max(MIN_REFRESH)
}

/// The ceiling of the pause at throttling level `level` (1 after the first
/// throttled call): [`THROTTLE_BASE`] doubled per level, capped at
/// [`THROTTLE_CAP`].
pub fn throttle_ceiling(level: u32) -> Duration {
    THROTTLE_BASE
        .saturating_mul(2u32.saturating_pow(level.saturating_sub(1).min(16)))
        .min(THROTTLE_CAP)
}

/// The pause before a sidecar's next STS call after a `Throttling` answer
/// raised its level to `level`: equal jitter, between half the ceiling and
/// the ceiling. Unlike [`backoff`]'s full jitter it never draws a pause
/// near zero: a throttled fleet that retries at once only offers more calls
/// to a bucket it already emptied. Measured against full jitter in
/// docs/SCALE.md.
pub fn throttle_pause(level: u32, jitter: f64) -> Duration {
    throttle_ceiling(level).mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// The pause before the next call after an accepted one while the level is
/// still `level` (> 0): full jitter under that level's ceiling.
pub fn recovery_pace(level: u32, jitter: f64) -> Duration {
    throttle_ceiling(level).mul_f64(jitter.clamp(0.0, 1.0))
}

/// The pause before the next call to an STS endpoint that `level` calls in
/// a row found down (5xx, timeouts, refused connections; [`crate::pacer`]):
/// after the first, [`backoff`]'s first retry (full jitter under
/// [`BACKOFF_BASE`]: a single failed call is usually a blip); after more,
/// equal jitter under a ceiling of 10 s doubling per level up to
/// [`BACKOFF_CAP`] (5-10 s, 10-20 s, 20-40 s, then 30-60 s). One such
/// stream serves all of a sidecar's profiles, so unlike [`backoff`]'s full
/// jitter it never draws a pause near zero: a sidecar that found STS down
/// twice has no reason to ask again within a second.
pub fn outage_pause(level: u32, jitter: f64) -> Duration {
    if level <= 1 {
        return backoff(0, jitter);
    }
    throttle_ceiling(level)
        .min(BACKOFF_CAP)
        .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
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

/// No jitter: refreshes at exactly half the lifetime, backoff at its floor;
/// as the spread of [`spread_refresh_in`], no spread.
#[cfg(test)]
pub fn no_jitter() -> f64 {
    0.0
}

#[cfg(test)]
mod tests;
