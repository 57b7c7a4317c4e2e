//! One STS endpoint's gate: closed by the first call that finds STS down,
//! probed one call at a time with a growing pause, opened by any answer
//! (see the [`super`] module documentation).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{PaceState, Paced};
use crate::schedule::{self, Jitter};

/// What a call did to its STS endpoint's gate, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Nothing.
    None,
    /// The call found STS down: the gate closed (`level` 1) or its probe
    /// failed (`level` > 1); the next probe waits `pause`.
    Down { level: u32, pause: Duration },
    /// The endpoint answered after `calls` calls that found it down over
    /// `down_for`: the gate opened.
    Up { calls: u32, down_for: Duration },
}

/// The closed gate of one STS endpoint.
#[derive(Debug)]
pub(super) struct Outage {
    pub(super) endpoint: Arc<str>,
    /// Calls that found it down: 1 for the call that closed the gate, one
    /// more per failed probe.
    pub(super) level: u32,
    /// No probe starts before this.
    pub(super) hold_until: Instant,
    /// A probe is in flight.
    pub(super) probing: bool,
    /// When the gate closed.
    pub(super) since: Instant,
}

impl PaceState {
    /// What a call to `endpoint` that ended `how` does to its gate: the
    /// first call that finds STS down closes it, a probe that finds it
    /// still down holds the next probe longer, and any answer opens it.
    pub(super) fn gate(
        &mut self,
        endpoint: &Arc<str>,
        how: Paced,
        probe: bool,
        now: Instant,
        jitter: Jitter,
    ) -> Gate {
        let at = self.outages.iter().position(|o| o.endpoint == *endpoint);
        match (how, at) {
            (Paced::Down, None) => {
                let pause = schedule::outage_pause(1, jitter());
                self.outages.push(Outage {
                    endpoint: endpoint.clone(),
                    level: 1,
                    hold_until: now + pause,
                    probing: false,
                    since: now,
                });
                // When it answers again, the calls go in slow start.
                self.window = 1;
                Gate::Down { level: 1, pause }
            }
            (Paced::Down, Some(i)) if probe => {
                let o = &mut self.outages[i];
                o.level = o.level.saturating_add(1);
                o.probing = false;
                let pause = schedule::outage_pause(o.level, jitter());
                o.hold_until = now + pause;
                Gate::Down {
                    level: o.level,
                    pause,
                }
            }
            (Paced::Answered | Paced::Throttled, Some(i)) => {
                let o = self.outages.swap_remove(i);
                Gate::Up {
                    calls: o.level,
                    down_for: now.saturating_duration_since(o.since),
                }
            }
            (Paced::Failed, Some(i)) if probe => {
                // The probe learnt nothing: the next one may go at once.
                self.outages[i].probing = false;
                Gate::None
            }
            // A call that started before the gate closed, or an endpoint
            // that is up.
            _ => Gate::None,
        }
    }
}
