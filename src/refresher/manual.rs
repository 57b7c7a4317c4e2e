//! Refreshes asked by hand, one path for all: SIGUSR1 (every profile,
//! nobody waits) and the control socket's `refresh` (every profile or one,
//! answered) both send an [`Asked`] through each target's [`Manual`]. Both
//! are spaced: at most one attempt per profile every
//! [`schedule::MANUAL_REFRESH_INTERVAL`], and never one that shortens a
//! backoff.

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Outcome, Refresher, Wake};
use crate::schedule;

/// What a refresh asked of one profile (`rolecall refresh`) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManualOutcome {
    /// An attempt ran (the state holds its session or its error).
    Attempted(Outcome),
    /// None ran, and why: refreshed less than 5 s ago, or backing off.
    Skipped(String),
}

/// One refresh asked of a refresher: where to say what came of it, or
/// `None` when nobody waits (SIGUSR1). Unanswered, a profile refreshed
/// less than 5 s ago refreshes when the 5 s are up; answered, it is
/// skipped now and the answer says why.
pub type Asked = Option<oneshot::Sender<ManualOutcome>>;

/// Asks one refresher to refresh now. Its slot holds one request: a
/// request that finds one waiting there is not taken (it adds nothing the
/// waiting one does not do), so a burst of requests never queues and
/// never waits.
#[derive(Clone, Debug)]
pub struct Manual(mpsc::Sender<Asked>);

impl Manual {
    /// Asks for a refresh; `false` when a request already waits in the
    /// refresher's slot (or the refresher stopped), and `asked` was
    /// dropped.
    pub fn ask(&self, asked: Asked) -> bool {
        self.0.try_send(asked).is_ok()
    }
}

/// A [`Manual`] and the refresher's end of it.
pub(crate) fn channel() -> (Manual, mpsc::Receiver<Asked>) {
    let (tx, rx) = mpsc::channel(1);
    (Manual(tx), rx)
}

/// The next refresh asked of this profile; never without a channel (or
/// once it closed).
pub(super) async fn next_manual(rx: &mut Option<mpsc::Receiver<Asked>>) -> Asked {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(asked) => asked,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

impl Refresher {
    /// The same refresher, also refreshing when asked through the returned
    /// [`Manual`] (SIGUSR1, the control socket's `refresh`).
    pub fn manual(mut self) -> (Refresher, Manual) {
        let (tx, rx) = channel();
        self.manual = Some(rx);
        (self, tx)
    }

    /// A refresh asked by hand, with the next attempt at `next`: now; or,
    /// nobody waiting, once the manual interval ends (a burst costs one
    /// call); or not during a backoff. One that is answered and does not
    /// run now is answered at once with why not.
    pub(super) fn on_manual(&self, next: Instant, asked: Asked) -> Wake {
        let at = self.manual_refresh_at(next);
        match (at, asked) {
            (Some(at), asked) if at <= Instant::now() => {
                if asked.is_some() {
                    tracing::info!(profile = %self.profile.name, "refresh asked through the control socket");
                } else {
                    tracing::debug!(profile = %self.profile.name, "refresh requested");
                }
                Wake::Now(asked)
            }
            (_, Some(reply)) => {
                let _ = reply.send(ManualOutcome::Skipped(self.skipped_because(next)));
                Wake::Not
            }
            // Coalesced: one refresh when the interval ends.
            (Some(at), None) => Wake::At(at),
            (None, None) => {
                tracing::debug!(profile = %self.profile.name, "refresh requested during a backoff; the backoff stands");
                Wake::Not
            }
        }
    }

    /// When a manual refresh requested now should run, given the attempt
    /// already scheduled at `next`: at once, or at the end of
    /// [`schedule::MANUAL_REFRESH_INTERVAL`] after the last attempt, or
    /// `None` while a backoff after a transient, token or clock failure
    /// runs (the request never shortens it).
    fn manual_refresh_at(&self, next: Instant) -> Option<Instant> {
        if self.backing_off {
            return None;
        }
        let earliest = self
            .last_attempt
            .map_or_else(Instant::now, |t| t + schedule::MANUAL_REFRESH_INTERVAL);
        Some(earliest.min(next))
    }

    /// Why a refresh asked now (with the next attempt at `next`) does not
    /// run: [`Refresher::manual_refresh_at`] said later or never.
    fn skipped_because(&self, next: Instant) -> String {
        let now = Instant::now();
        if self.backing_off {
            return format!(
                "backing off after a failure; the next attempt is in {} s (see rolecall status)",
                next.saturating_duration_since(now).as_secs_f64().ceil() as u64
            );
        }
        let ago = self
            .last_attempt
            .map_or(0, |t| now.saturating_duration_since(t).as_secs());
        format!(
            "refreshed {ago} s ago (at most once per profile every {} s)",
            schedule::MANUAL_REFRESH_INTERVAL.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refreshers_slot_holds_one_request_whoever_asks() {
        let (manual, mut rx) = channel();
        assert!(manual.ask(None), "the first request is taken");
        for _ in 0..10_000 {
            assert!(!manual.ask(None), "a storm queues nothing more");
        }
        let (tx, mut answer) = oneshot::channel();
        assert!(
            !manual.ask(Some(tx)),
            "an answered request finds the same slot taken"
        );
        assert!(
            matches!(answer.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
            "and is dropped, not kept"
        );
        assert!(matches!(rx.try_recv(), Ok(None)), "the one waiting");
        assert!(rx.try_recv().is_err(), "nothing else was queued");
        let (tx, _answer) = oneshot::channel();
        assert!(manual.ask(Some(tx)), "taken once the slot is free");
    }
}
