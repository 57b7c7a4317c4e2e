//! Refreshes asked by hand: SIGUSR1 for every profile, the control
//! socket's `refresh` for every profile or one. Both are spaced: at most
//! one attempt per profile every [`schedule::MANUAL_REFRESH_INTERVAL`], and
//! never one that shortens a backoff.

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Outcome, Refresher};
use crate::schedule;

/// What a refresh asked of one profile (`rolecall refresh`) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManualOutcome {
    /// An attempt ran (the state holds its session or its error).
    Attempted(Outcome),
    /// None ran, and why: refreshed less than 5 s ago, or backing off.
    Skipped(String),
}

/// Asks one refresher to refresh now; it answers on the oneshot sender.
pub type Manual = mpsc::Sender<oneshot::Sender<ManualOutcome>>;

/// The next refresh asked of this profile; never without a channel (or
/// once it closed).
pub(super) async fn next_manual(
    rx: &mut Option<mpsc::Receiver<oneshot::Sender<ManualOutcome>>>,
) -> oneshot::Sender<ManualOutcome> {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(reply) => reply,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

impl Refresher {
    /// The same refresher, also refreshing when asked through the returned
    /// sender (the control socket's `refresh`), under the same spacing as
    /// SIGUSR1; each request is answered with what came of it.
    pub fn manual(mut self) -> (Refresher, Manual) {
        let (tx, rx) = mpsc::channel(1);
        self.manual = Some(rx);
        (self, tx)
    }

    /// When a manual refresh (SIGUSR1) requested now should run, given the
    /// attempt already scheduled at `next`: at once, or at the end of
    /// [`schedule::MANUAL_REFRESH_INTERVAL`] after the last attempt (so a
    /// burst of signals costs one call), or `None` while a backoff after a
    /// transient, token or clock failure runs (the request never shortens it).
    pub(super) fn manual_refresh_at(&self, next: Instant) -> Option<Instant> {
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
    pub(super) fn skipped_because(&self, next: Instant) -> String {
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
