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
//! - **STS down.** A call that says STS itself is failing ([`Paced::Down`]:
//!   a 5xx, no answer within the attempt timeout, a refused or reset
//!   connection, a failed DNS lookup, an unreadable answer) closes a gate
//!   for that STS endpoint: from then on one call at a time goes to it, a
//!   *probe* for whichever profile is due first, and none before a pause
//!   drawn by [`schedule::outage_pause`] (within a second after the first
//!   failure, as a blip deserves; then equal jitter under a ceiling that
//!   doubles from 10 s to [`schedule::BACKOFF_CAP`]). The other profiles
//!   with a call to make wait for the probe's outcome and make no call of
//!   their own. The first answer from that endpoint (a session, a refusal,
//!   even `Throttling`) opens the gate, and the waiting profiles go at the
//!   pace above, from slow start. So a sidecar's load on a failing STS is
//!   one retry stream, whatever its number of profiles, and its recovery
//!   waits at most one pause (60 s at the most, as each profile's own
//!   backoff did before). Throttling says nothing about STS being down, and
//!   an outage nothing about the account's rate: neither changes the other.
//!
//! Failures that say nothing about STS as a whole (`IDPCommunicationError`:
//! the identity provider; the process's or the node's limits on files and
//! ports; a token that cannot be read) neither pace nor gate: each profile
//! backs off from them on its own ([`schedule::backoff`]). Refusals
//! (AccessDenied...) are answers.

use std::sync::{Arc, Mutex};
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
    /// STS itself is failing: a server error, no answer within the
    /// attempt timeout, a refused or reset connection, an unreadable
    /// answer. Closes the endpoint's gate (see the module documentation).
    Down,
    /// The call failed in a way that says nothing about STS: a limit of the
    /// process or the node, the identity provider, or the attempt was
    /// dropped.
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
    /// The STS endpoints found down (usually none; at most one per
    /// endpoint the profiles use).
    outages: Vec<Outage>,
}

impl Default for PaceState {
    fn default() -> Self {
        PaceState {
            level: 0,
            hold_until: None,
            throttled_at: None,
            in_flight: 0,
            window: 1,
            outages: Vec::new(),
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
    /// The STS endpoint called.
    endpoint: Arc<str>,
    /// Whether this call is the probe of the endpoint's closed gate.
    probe: bool,
}

/// Why [`Pacer::acquire`] cannot start a call yet.
enum Wait {
    Until(Instant),
    Freed,
}

impl Pacer {
    fn lock(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until this sidecar may start an STS call to `endpoint` (the
    /// URL the call goes to: profiles with the same one share its gate).
    pub async fn acquire(&self, endpoint: &Arc<str>) -> Permit<'_> {
        self.acquire_as(endpoint, true).await
    }

    /// [`Pacer::acquire`] for a profile's first call (at start, or after a
    /// reload): it waits for the pace, not for a closed gate's probe. A
    /// start during an outage then fails each profile once, at once, as
    /// before (the start-up pass and `rolecall once` wait for every
    /// profile's first attempt), and only their retries share the probe.
    pub async fn acquire_first(&self, endpoint: &Arc<str>) -> Permit<'_> {
        self.acquire_as(endpoint, false).await
    }

    async fn acquire_as(&self, endpoint: &Arc<str>, gated: bool) -> Permit<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                s.forget_old_throttling(now);
                match s.admit(endpoint, gated, now) {
                    Ok(probe) => {
                        return Permit {
                            pacer: self,
                            finished: false,
                            endpoint: endpoint.clone(),
                            probe,
                        };
                    }
                    Err(wait) => wait,
                }
            };
            match wait {
                // A release may open the gate before its probe was due (a
                // profile's first call got an answer).
                Wait::Until(t) => tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = freed => {}
                },
                Wait::Freed => freed.await,
            }
        }
    }

    /// The current level (0: not throttled).
    pub fn level(&self) -> u32 {
        self.lock().level
    }

    /// How long until a call to `endpoint` may start (zero when none is
    /// held): the sidecar's throttling pause, or the endpoint's next probe.
    pub fn held_for(&self, endpoint: &str) -> Duration {
        let s = self.lock();
        let probe = s
            .outages
            .iter()
            .find(|o| &*o.endpoint == endpoint)
            .map(|o| o.hold_until);
        [s.hold_until, probe]
            .into_iter()
            .flatten()
            .max()
            .map_or(Duration::ZERO, |t| {
                t.saturating_duration_since(Instant::now())
            })
    }

    /// Whether `endpoint`'s gate is closed: a call found STS down, and none
    /// has been answered since.
    pub fn is_down(&self, endpoint: &str) -> bool {
        self.lock().outages.iter().any(|o| &*o.endpoint == endpoint)
    }

    fn release(&self, how: Paced, permit: &Permit<'_>, jitter: Jitter) -> (Change, Gate) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        let now = Instant::now();
        let gate = s.gate(&permit.endpoint, how, permit.probe, now, jitter);
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
            Paced::Down | Paced::Failed => Change::None,
        };
        drop(s);
        self.freed.notify_waiters();
        (change, gate)
    }
}

impl PaceState {
    /// Takes a slot for a call to `endpoint` if one may start now: `Ok`,
    /// with whether it is the probe of the endpoint's closed gate (a call
    /// that is not `gated` ignores the gate, and is no probe).
    fn admit(&mut self, endpoint: &str, gated: bool, now: Instant) -> Result<bool, Wait> {
        if let Some(t) = self.hold_until
            && t > now
        {
            return Err(Wait::Until(t));
        }
        let gate = self
            .outages
            .iter_mut()
            .find(|o| gated && &*o.endpoint == endpoint);
        let probe = match &gate {
            Some(o) if o.probing => return Err(Wait::Freed),
            Some(o) if o.hold_until > now => return Err(Wait::Until(o.hold_until)),
            Some(_) => true,
            None => false,
        };
        if self.in_flight >= self.window {
            return Err(Wait::Freed);
        }
        self.in_flight += 1;
        if let Some(o) = gate {
            o.probing = true;
        }
        Ok(probe)
    }

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
    /// `jitter` draws the pause. Returns what changed in the pace, and what
    /// the call did to its endpoint's gate.
    pub fn finish(mut self, how: Paced, jitter: Jitter) -> (Change, Gate) {
        self.finished = true;
        self.pacer.release(how, &self, jitter)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.pacer
                .release(Paced::Failed, self, schedule::random_jitter);
        }
    }
}

mod gate;

pub use gate::Gate;
use gate::Outage;

#[cfg(test)]
mod tests;
