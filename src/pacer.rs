//! Sidecar-wide pacing of STS calls, for a fleet that shares one rate limit.
//!
//! STS limits calls per account, and every pod's sidecar draws on the same
//! limit. One sidecar cannot see the others; all it learns is that STS
//! answered `Throttling`. What it does with that decides how many calls the
//! fleet wastes: profiles that each back off on their own keep offering the
//! sidecar's whole load, and a fleet of them offers many times the limit for
//! as long as the rollout lasts (docs/SCALE.md has the measurements).
//!
//! So every STS call of the process passes through one [`Pacer`]:
//!
//! - **Slow start.** One call in flight at first; each accepted call doubles
//!   that, up to [`MAX_IN_FLIGHT`]. A lone pod with three profiles makes one
//!   call, then two; a thousand pods starting together offer a thousand
//!   calls, not three thousand.
//! - **Throttled.** A `Throttling` answer raises the sidecar's level by one:
//!   one call in flight, and none before a pause drawn by
//!   [`schedule::throttle_pause`] (equal jitter under a ceiling that doubles
//!   with the level, from [`schedule::THROTTLE_BASE`] to
//!   [`schedule::THROTTLE_CAP`]). The profile that was throttled, and every
//!   other profile with a call to make, waits for it.
//! - **Recovering.** Each answered call halves the level; while it is still
//!   raised, the next call waits [`schedule::recovery_pace`] (a full jitter
//!   under the lowered ceiling): the bucket that just let one call through
//!   is nearly empty, and the sidecar's next call would only be throttled
//!   again. At level 0 slow start resumes. A sidecar whose calls have not
//!   been throttled nor held for [`schedule::THROTTLE_CAP`] starts again
//!   from level 0.
//!
//! Failures other than throttling (5xx, timeouts, refused connections) do
//! not change the pace: they say nothing about the account's rate, and each
//! profile backs off from them on its own ([`schedule::backoff`]).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::schedule::{self, Jitter};

/// The most STS calls one sidecar has in flight when it is not throttled.
pub const MAX_IN_FLIGHT: usize = 16;
/// The highest level: its ceiling is [`schedule::THROTTLE_CAP`].
pub const MAX_LEVEL: u32 = 6;

/// How an STS call paced by a [`Pacer`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paced {
    /// STS answered: a session, or a refusal (AccessDenied, an invalid
    /// token...).
    Answered,
    /// STS answered `Throttling` (or another throttling code).
    Throttled,
    /// The call failed in a way that says nothing about the rate: no
    /// answer, a timeout, a server error, or the attempt was dropped.
    Failed,
}

#[derive(Debug)]
struct PaceState {
    /// 0 when STS has not throttled this sidecar lately; raised by each
    /// throttled call, lowered by each answered one.
    level: u32,
    /// No call starts before this.
    hold_until: Option<Instant>,
    /// When STS last throttled this sidecar.
    throttled_at: Option<Instant>,
    in_flight: usize,
    /// How many calls may be in flight.
    window: usize,
}

impl Default for PaceState {
    fn default() -> Self {
        PaceState {
            level: 0,
            hold_until: None,
            throttled_at: None,
            in_flight: 0,
            window: 1,
        }
    }
}

/// What a throttling answer or the end of one did to the pace, for the log
/// line and the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing worth saying.
    None,
    /// STS throttled this sidecar: calls now go one at a time, after `pause`.
    Throttled { level: u32, pause: Duration },
    /// The level went back to 0: calls are no longer held.
    Recovered,
}

/// The pace of one sidecar's STS calls. See the module documentation.
#[derive(Debug, Default)]
pub struct Pacer {
    state: Mutex<PaceState>,
    /// Wakes callers waiting for a free slot.
    freed: Notify,
}

/// One paced call in flight; [`Permit::finish`] says how it ended. Dropped
/// unfinished (the attempt was cancelled), it counts as [`Paced::Failed`].
#[must_use]
pub struct Permit<'a> {
    pacer: &'a Pacer,
    finished: bool,
}

impl Pacer {
    fn lock(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until this sidecar may start an STS call.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let hold = {
                let mut s = self.lock();
                s.forget_old_throttling(Instant::now());
                match s.hold_until {
                    Some(t) if t > Instant::now() => Some(t),
                    _ if s.in_flight < s.window => {
                        s.in_flight += 1;
                        return Permit {
                            pacer: self,
                            finished: false,
                        };
                    }
                    _ => None,
                }
            };
            match hold {
                Some(t) => tokio::time::sleep_until(t).await,
                None => freed.await,
            }
        }
    }

    /// The current level (0: not throttled).
    pub fn level(&self) -> u32 {
        self.lock().level
    }

    /// How long until a call may start (zero when none is held).
    pub fn held_for(&self) -> Duration {
        self.lock().hold_until.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        })
    }

    fn release(&self, how: Paced, jitter: Jitter) -> Change {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        let now = Instant::now();
        let change = match how {
            Paced::Throttled => {
                s.level = (s.level + 1).min(MAX_LEVEL);
                s.window = 1;
                s.throttled_at = Some(now);
                let pause = schedule::throttle_pause(s.level, jitter());
                let until = now + pause;
                s.hold_until = Some(s.hold_until.map_or(until, |h| h.max(until)));
                Change::Throttled {
                    level: s.level,
                    pause,
                }
            }
            Paced::Answered if s.level > 0 => {
                s.level /= 2;
                if s.level > 0 {
                    let until = now + schedule::recovery_pace(s.level, jitter());
                    s.hold_until = Some(s.hold_until.map_or(until, |h| h.max(until)));
                    Change::None
                } else {
                    s.window = 2;
                    Change::Recovered
                }
            }
            Paced::Answered => {
                s.window = (s.window * 2).min(MAX_IN_FLIGHT);
                Change::None
            }
            Paced::Failed => Change::None,
        };
        drop(s);
        self.freed.notify_waiters();
        change
    }
}

impl PaceState {
    /// Back to level 0 when no call of this sidecar has been throttled or
    /// held for [`schedule::THROTTLE_CAP`]: the next call is a refresh half
    /// an hour later, say, and the throttling it saw is long over.
    fn forget_old_throttling(&mut self, now: Instant) {
        let last = match (self.throttled_at, self.hold_until) {
            (Some(t), Some(h)) => t.max(h),
            (t, h) => t.or(h).unwrap_or(now),
        };
        if self.level > 0 && now.saturating_duration_since(last) > schedule::THROTTLE_CAP {
            self.level = 0;
            self.window = self.window.max(2);
        }
    }
}

impl Permit<'_> {
    /// Ends the call: `how` it ended sets the pace of the next ones;
    /// `jitter` draws the pause. Returns what changed.
    pub fn finish(mut self, how: Paced, jitter: Jitter) -> Change {
        self.finished = true;
        self.pacer.release(how, jitter)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.pacer.release(Paced::Failed, schedule::random_jitter);
        }
    }
}

#[cfg(test)]
mod tests;
