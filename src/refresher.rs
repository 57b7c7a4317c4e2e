//! One task per profile: assume the role, publish the session, and refresh
//! it at half its lifetime; back off on failure; retry at once when the
//! token changes or a reload was applied (if the profile needs it), when
//! asked by hand ([`Manual`]: SIGUSR1, `rolecall refresh`), or when a
//! chained profile's source session changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Profile;
use crate::metrics::Metrics;
use crate::pacer::Pacer;
use crate::schedule::{self, Jitter};
use crate::session::Session;
use crate::state::{SessionWatch, Shared};
use crate::sts::{ErrorClass, Sts};

#[cfg(test)]
mod agent_tests;
mod error;
mod failures;
mod manual;
mod obtain;
mod record;

pub use error::RefreshError;
use error::{sts_is_down, usable_from};
use failures::Failures;
#[cfg(test)]
pub(crate) use manual::channel as manual_channel;
use manual::next_manual;
pub use manual::{Asked, Manual, ManualOutcome};

/// Everything a refresher needs besides its profile.
#[derive(Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    /// The refreshers' STS metrics.
    pub metrics: Metrics,
    /// The pace of this sidecar's STS calls: every call waits for a permit
    /// (its [`crate::pacer::MAX_IN_FLIGHT`] is the one cap on concurrent
    /// calls).
    pub pacer: Arc<Pacer>,
    pub sts: Sts,
    /// The Pod Identity agent (`identity: pod-identity`): the base
    /// profile's session comes from it, not from STS.
    pub agent: Option<Arc<crate::agent::Agent>>,
    pub token_file: PathBuf,
    pub jitter: Jitter,
    /// Spreads the first refresh of a session obtained off the schedule.
    pub spread: Jitter,
    /// Bumped by the token watcher when the token's content changes.
    pub token_changed: watch::Receiver<u64>,
    /// Bumped when a reload was applied: a profile that needs it retries
    /// now, as on a token change.
    pub config_reloaded: watch::Receiver<u64>,
    /// Wall time: token validity, session lifetimes and expiry.
    pub clock: Clock,
    /// A one-shot run (`rolecall once`): no refresh follows the first
    /// attempt, so its session is published without a planned refresh.
    pub once: bool,
}

/// A throttled profile, or one that found STS down, retries as soon as the
/// sidecar's pacer lets it, and not sooner than this.
const THROTTLED_RETRY: Duration = Duration::from_millis(10);

/// The result of one attempt: when to try next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Refreshed { next: Duration },
    Failed { class: ErrorClass, next: Duration },
}

impl Outcome {
    pub fn next(self) -> Duration {
        match self {
            Outcome::Refreshed { next } | Outcome::Failed { next, .. } => next,
        }
    }

    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Refreshed { .. })
    }
}

/// Completes with the source's session when it changes; never for a
/// profile without a source (`None`), or once the channel closed.
async fn next_source_session(source: &mut Option<SessionWatch>) -> Option<Option<Session>> {
    match source {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// One profile's refresher.
pub struct Refresher {
    pub profile: Arc<Profile>,
    ctx: Context,
    /// The URL of the profile's STS endpoint: the key of its gate in the
    /// sidecar's [`crate::pacer`].
    endpoint: Arc<str>,
    /// Consecutive transient failures, for the backoff.
    failures: u32,
    /// The current run of failures, for the log.
    failing: Failures,
    /// The source session this profile was last assumed with.
    source_used: Option<Session>,
    /// When the last attempt started, to space out manual refreshes.
    last_attempt: Option<Instant>,
    /// When the last attempt ended: what its [`Outcome::next`] counts
    /// from.
    last_outcome: Option<Instant>,
    /// Whether the wait for the next attempt is a backoff after a
    /// transient, token or clock failure (which SIGUSR1 must not shorten).
    backing_off: bool,
    /// The expiry of the session this refresher last published (its
    /// receive time and plan are the state's: [`crate::state::RefreshPlan`]).
    published: Option<SystemTime>,
    /// Refreshes asked by hand, each with where to say what came of it, if
    /// anyone waits ([`Refresher::manual`]).
    manual: Option<mpsc::Receiver<Asked>>,
}

impl Refresher {
    pub fn new(profile: Arc<Profile>, ctx: Context) -> Refresher {
        // The base profile under pod-identity calls the agent, never STS:
        // its own gate, so that the agent's failures and 429s hold only it.
        let endpoint = match &ctx.agent {
            Some(agent) if profile.pod_identity => agent.url().into(),
            _ => crate::config::endpoint_for(&profile)
                .unwrap_or_default()
                .into(),
        };
        Refresher {
            profile,
            ctx,
            endpoint,
            failures: 0,
            failing: Failures::default(),
            source_used: None,
            last_attempt: None,
            last_outcome: None,
            backing_off: false,
            published: None,
            manual: None,
        }
    }

    /// One refresh attempt: obtain a session, then record the result in the
    /// shared state. Returns when to try next.
    pub async fn attempt(&mut self) -> Outcome {
        let first = self.last_attempt.is_none();
        self.last_attempt = Some(Instant::now());
        let (result, claims, took) = self.obtain(first).await;
        let outcome = self.record(result, claims.as_ref(), took);
        self.last_outcome = Some(Instant::now());
        outcome
    }

    /// Whether a token change should make this profile retry now: it has no
    /// live session of its own, its last attempt failed, or its session is
    /// close to expiry. Decided from this refresher's own state.
    fn wants_token_retry(&self) -> bool {
        let now = self.ctx.clock.now();
        let Some(left) = self.published.and_then(|e| e.duration_since(now).ok()) else {
            return true;
        };
        left.is_zero()
            || self.failures > 0
            || self.failing.is_failing()
            || left < schedule::NEAR_EXPIRY
    }

    /// Whether the source's session `current` is live and not the one this
    /// profile was last assumed with.
    fn source_changed(&self, current: Option<&Session>) -> bool {
        let now = self.ctx.clock.now();
        current.is_some_and(|s| !s.is_expired(now) && Some(s) != self.source_used.as_ref())
    }

    /// Runs until `shutdown`, first attempting `first` after the end of its
    /// last attempt (the start-up pass's), or after now if it made none. A
    /// profile that failed early in a long start-up pass (throttled while
    /// the others waited their turn) retries when its pause ends, not that
    /// long again after the pass.
    pub async fn run(mut self, first: Duration, shutdown: CancellationToken) {
        let mut manual = self.manual.take();
        let mut token_changed = self.ctx.token_changed.clone();
        let mut reloaded = self.ctx.config_reloaded.clone();
        // Role chaining: only this profile's source wakes it.
        let mut source = self
            .profile
            .source_profile
            .as_deref()
            .map(|s| self.ctx.shared.subscribe(s));
        let chained = source.is_some();
        let mut next = self.last_outcome.unwrap_or_else(Instant::now) + first;
        loop {
            // Each wake-up says whether to attempt now, with the refresh
            // asked by hand that the attempt answers, if anyone waits.
            let wake = tokio::select! {
                _ = tokio::time::sleep_until(next) => Wake::Now(None),
                Ok(()) = token_changed.changed() => self.on_token_changed(chained),
                asked = next_manual(&mut manual) => self.on_manual(next, asked),
                Some(current) = next_source_session(&mut source) => self.on_source(current.as_ref()),
                Ok(()) = reloaded.changed() => self.on_config_reloaded(chained),
                _ = shutdown.cancelled() => return,
            };
            let asked = match wake {
                Wake::Now(asked) => asked,
                Wake::At(at) => {
                    next = at;
                    continue;
                }
                Wake::Not => continue,
            };
            // Boxed: the STS call's future is large, and a task holds its
            // whole future for its lifetime; boxed, an idle profile costs
            // only its small loop state.
            // Biased: a refresher cancelled (a reload replaced or removed
            // its profile) stops even when its answer is ready in the same
            // poll; `Shared` also drops an answer for a replaced
            // configuration.
            let outcome = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                o = Box::pin(self.attempt()) => o,
            };
            if let Some(reply) = asked {
                let _ = reply.send(ManualOutcome::Attempted(outcome));
            }
            next = Instant::now() + outcome.next();
        }
    }

    /// The token changed: retry now if this profile needs it (a chained
    /// profile signs with its source's session, not the token).
    fn on_token_changed(&self, chained: bool) -> Wake {
        if chained || !self.wants_token_retry() {
            return Wake::Not;
        }
        tracing::info!(profile = %self.profile.name, "token changed; retrying now");
        Wake::Now(None)
    }

    /// A reload was applied: a profile that needs it retries now, as on a
    /// token change, and says why.
    fn on_config_reloaded(&self, chained: bool) -> Wake {
        if chained || !self.wants_token_retry() {
            return Wake::Not;
        }
        tracing::info!(profile = %self.profile.name, "configuration reloaded; retrying now");
        Wake::Now(None)
    }

    /// The source's session changed: refresh with the new one.
    fn on_source(&self, current: Option<&Session>) -> Wake {
        if !self.source_changed(current) {
            return Wake::Not;
        }
        tracing::info!(profile = %self.profile.name, "source session changed; refreshing");
        Wake::Now(None)
    }
}

/// What a wake-up of [`Refresher::run`] decided.
enum Wake {
    /// Attempt now; answer the refresh asked by hand, if anyone waits.
    Now(Asked),
    /// Attempt at this instant instead of the planned one.
    At(Instant),
    /// Keep waiting for the planned attempt.
    Not,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context with no token, no STS behind it and nothing to wake it.
    fn context() -> Context {
        Context {
            shared: Shared::new(),
            metrics: Metrics::new(),
            pacer: Arc::default(),
            sts: Sts::new(Duration::from_secs(1)),
            agent: None,
            token_file: "/nonexistent".into(),
            jitter: crate::schedule::no_jitter,
            spread: crate::schedule::no_jitter,
            token_changed: watch::channel(0).1,
            config_reloaded: watch::channel(0).1,
            clock: Clock::system(),
            once: false,
        }
    }

    #[test]
    fn an_idle_refresher_task_is_small() {
        let profile = Arc::new(Profile::new("p", "arn:aws:iam::111122223333:role/p"));
        let ctx = context();
        let run = Refresher::new(profile, ctx).run(Duration::ZERO, CancellationToken::new());
        let size = std::mem::size_of_val(&run);
        assert!(size < 2048, "a refresher task's future is {size} bytes");
    }

    #[test]
    fn a_token_change_retries_without_a_session_after_a_failure_or_near_expiry() {
        let profile = Arc::new(Profile::new("p", "arn:aws:iam::111122223333:role/p"));
        let clock = Clock::system();
        let ctx = context();
        let mut r = Refresher::new(profile, ctx);
        assert!(r.wants_token_retry(), "no session of its own");
        r.published = Some(clock.now() + Duration::from_secs(3600));
        assert!(!r.wants_token_retry(), "healthy");
        r.failures = 1;
        assert!(r.wants_token_retry(), "failing");
        r.failures = 0;
        r.published = Some(clock.now() + schedule::NEAR_EXPIRY - Duration::from_secs(1));
        assert!(r.wants_token_retry(), "close to expiry");
        r.published = Some(clock.now() - Duration::from_secs(1));
        assert!(r.wants_token_retry(), "expired");
    }
}
