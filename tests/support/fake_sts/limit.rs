//! The account-wide rate limit of [`FakeSts`](super::FakeSts): a token
//! bucket, and the log of every `AssumeRole*` call with its outcome.

use std::time::Instant;

/// A token bucket: `burst` tokens to start with, refilled at `rate` per
/// second up to `burst`; each accepted call takes one. Pure: the caller
/// passes the instants, so it is tested without a clock.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. `rate` must be positive and `burst` at least 1.
    pub fn new(rate_per_s: f64, burst: u32, now: Instant) -> TokenBucket {
        assert!(
            rate_per_s > 0.0 && rate_per_s.is_finite(),
            "TokenBucket: rate must be positive"
        );
        assert!(burst >= 1, "TokenBucket: burst must be at least 1");
        TokenBucket {
            rate: rate_per_s,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes a token at `now` if there is one (refilling first); `false`
    /// means the call is over the limit. An instant before the last one
    /// refills nothing.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if now > self.last {
            let dt = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn burst(&self) -> u32 {
        self.burst as u32
    }
}

/// What [`FakeSts`](super::FakeSts) answered to one `AssumeRole*` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// A success (fresh or stale credentials).
    Accepted,
    /// Refused by the rate limit (400 `Throttling`).
    Throttled,
    /// Any other scripted answer (an error, an outage, garbage, a hang...).
    Other,
}

/// One `AssumeRole*` call in [`FakeSts::call_log`](super::FakeSts::call_log):
/// small, so a log of tens of thousands of calls stays cheap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// When the request was received (wall-clock monotonic, also for a
    /// server on a paused runtime).
    pub at: Instant,
    pub role_arn: String,
    pub outcome: CallOutcome,
}
