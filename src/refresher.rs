//! One task per profile: assume the role, publish the session, and refresh
//! it at half its lifetime; back off on failure; retry at once when the
//! token changes or a reload was applied (if the profile needs it), on
//! SIGUSR1, or when a chained profile's source session changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Profile;
use crate::pacer::{Change, Gate, Paced, Permit};
use crate::schedule::{self, Jitter};
use crate::session::{Session, format_time};
use crate::state::{SessionWatch, Shared};
use crate::sts::{Assumed, ErrorClass, Sts, StsError, codes};
use crate::token::{self, Claims};
use crate::trust;

mod error;
mod failures;
mod manual;

pub use error::RefreshError;
use error::{sts_is_down, usable};
use failures::{Failures, Line};
use manual::next_manual;
pub use manual::{Manual, ManualOutcome};

/// Everything a refresher needs besides its profile.
#[derive(Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    pub sts: Sts,
    pub token_file: PathBuf,
    pub jitter: Jitter,
    /// Spreads the first refresh of a session obtained off the schedule.
    pub spread: Jitter,
    /// Bumped by the token watcher when the token's content changes.
    pub token_changed: watch::Receiver<u64>,
    /// Bumped on SIGUSR1: every profile refreshes now.
    pub refresh_all: watch::Receiver<u64>,
    /// Bumped when a reload was applied: a profile that needs it retries
    /// now, as on a token change.
    pub config_reloaded: watch::Receiver<u64>,
    /// Wall time: token validity, session lifetimes and expiry.
    pub clock: Clock,
}

/// A throttled profile, or one that found STS down, retries as soon as the
/// sidecar's pacer lets it, and not sooner than this.
const THROTTLED_RETRY: Duration = Duration::from_millis(10);

/// `tracing::error!` when the first argument is true, else `tracing::warn!`.
macro_rules! error_or_warn {
    ($error:expr, $($rest:tt)*) => {
        if $error {
            tracing::error!($($rest)*)
        } else {
            tracing::warn!($($rest)*)
        }
    };
}

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
    /// When the session this refresher last published was received.
    published: Option<SystemTime>,
    /// Set by [`Refresher::run`]: refreshes are planned, so the state gets
    /// a [`RefreshPlan`] (a one-shot run plans none: nothing newer comes).
    planning: bool,
    /// Refreshes asked of this profile alone, with where to say what came
    /// of them ([`Refresher::manual`]).
    manual: Option<mpsc::Receiver<oneshot::Sender<ManualOutcome>>>,
}

impl Refresher {
    pub fn new(profile: Arc<Profile>, ctx: Context) -> Refresher {
        let endpoint = crate::sts::endpoint_for(&profile)
            .unwrap_or_default()
            .into();
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
            planning: false,
            manual: None,
        }
    }

    /// The same refresher, recording a [`crate::state::RefreshPlan`] with
    /// every session it publishes from the first (the supervisor's initial
    /// pass of a running sidecar): the first write of the outputs then
    /// already reports the planned expiry.
    pub fn planning_refreshes(mut self) -> Refresher {
        self.planning = true;
        self
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

    /// Reads the token (or takes the source session), calls STS when the
    /// sidecar's [`crate::pacer`] allows, and checks that the answer can be
    /// used. Also returns the token's claims, for the hint of a failure,
    /// and how long the STS call took. The `first` call of this refresher
    /// does not wait for a closed gate's probe ([`crate::pacer::Pacer::acquire_first`]).
    async fn obtain(
        &mut self,
        first: bool,
    ) -> (Result<Assumed, RefreshError>, Option<Claims>, Duration) {
        let permit = if first {
            self.ctx.shared.pacer().acquire_first(&self.endpoint).await
        } else {
            // (A profile whose own last call failed is marked already.)
            if self.failures == 0 && self.ctx.shared.pacer().is_down(&self.endpoint) {
                self.waits_for_probe();
            }
            self.ctx.shared.pacer().acquire(&self.endpoint).await
        };
        let started = Instant::now();
        let p = self.profile.clone();
        let mut claims = None;
        let result = match &p.source_profile {
            Some(source) => match self.ctx.shared.session_for(source, self.ctx.clock.now()) {
                Some(s) => {
                    // kubernetes_tags: the pod's claims tag the session; a
                    // token that cannot be read fails the attempt (nothing
                    // is sent untagged).
                    let kubernetes = if p.kubernetes_tags {
                        match token::read_unchecked(&self.ctx.token_file) {
                            Ok(t) => Some(t.claims.kubernetes),
                            Err(e) => return (Err(e.into()), None, Duration::ZERO),
                        }
                    } else {
                        None
                    };
                    self.source_used = Some(s.clone());
                    self.ctx
                        .sts
                        .assume_with_session(&p, &s, kubernetes.as_ref())
                        .await
                }
                None => {
                    let source_profile = source.clone();
                    return (
                        Err(RefreshError::SourceUnavailable { source_profile }),
                        None,
                        Duration::ZERO,
                    );
                }
            },
            None => match token::read(&self.ctx.token_file, self.ctx.clock.now()) {
                Ok(t) => {
                    claims = Some(t.claims.clone());
                    self.ctx.sts.assume_with_token(&p, t.expose()).await
                }
                Err(e) => return (Err(e.into()), None, Duration::ZERO),
            },
        };
        let took = started.elapsed();
        self.pace(permit, &result);
        let skew = self.ctx.sts.clock_skew();
        if let Some(skew) = skew {
            self.ctx.shared.record_clock_skew(skew);
        }
        let result = result.and_then(|a| usable(a, self.ctx.clock.now(), skew));
        (result.map_err(RefreshError::from), claims, took)
    }

    /// Records that this profile's refresh waits for the probe of an STS
    /// that is down: in `status.json` and `/readyz` (for when its session
    /// expires) the profile is failing, with [`codes::STS_DOWN`]; process
    /// mode and the endpoint report its real expiry, as after a failed
    /// refresh (nothing newer can come before STS answers); and its next
    /// session's first refresh is spread, as after any run of failures.
    /// No line is logged: the sidecar's `STS is not answering` says it.
    fn waits_for_probe(&mut self) {
        self.failures = self.failures.saturating_add(1);
        self.ctx.shared.record_failure(
            &self.profile,
            ErrorClass::Transient.result(),
            format!(
                "{}: STS is not answering; this profile waits for the sidecar's next call to it",
                codes::STS_DOWN
            ),
            self.ctx.clock.now(),
        );
    }

    /// Ends a paced STS call: a throttled one slows the whole sidecar down,
    /// an answered one speeds it up again. Logs when the sidecar starts
    /// being throttled and when that ends.
    fn pace(&self, permit: Permit<'_>, result: &Result<Assumed, StsError>) {
        let how = match result {
            Ok(_) => Paced::Answered,
            Err(e) if codes::is_throttling(&e.code) => Paced::Throttled,
            Err(e) if sts_is_down(e) => Paced::Down,
            Err(e) if e.class == ErrorClass::Transient => Paced::Failed,
            Err(_) => Paced::Answered,
        };
        if how == Paced::Throttled {
            self.ctx.shared.record_throttled();
        }
        let (change, gate) = permit.finish(how, self.ctx.jitter);
        match gate {
            // One failed call is usually a blip: the first probe follows
            // within a second. Two in a row, and STS is down.
            Gate::Down { level: 2, pause } => tracing::warn!(
                endpoint = %self.endpoint,
                code = result.as_ref().err().map_or("-", |e| e.code.as_str()),
                next_probe_in_s = pause.as_secs_f64().ceil() as u64,
                "STS is not answering: this sidecar now sends it one call at a time for all its profiles (a probe), with a growing pause between probes, until it answers; the other profiles wait and keep their credentials",
            ),
            Gate::Down { level, pause } => tracing::debug!(
                endpoint = %self.endpoint,
                level,
                next_probe_in_s = pause.as_secs_f64().ceil() as u64,
                "STS still not answering",
            ),
            Gate::Up { calls, down_for } if calls >= 2 => tracing::info!(
                endpoint = %self.endpoint,
                failed_calls = calls,
                down_for_s = down_for.as_secs(),
                "STS answers again: the profiles that waited refresh now",
            ),
            Gate::Up { .. } | Gate::None => {}
        }
        match change {
            Change::Throttled { level: 1, pause } => tracing::warn!(
                profile = %self.profile.name,
                pause_s = pause.as_secs_f64().ceil() as u64,
                "STS is throttling this account: this sidecar now makes one STS call at a time, with a pause between calls (rolecall_sts_throttled_total counts the throttled calls)",
            ),
            Change::Throttled { level, pause } => tracing::debug!(
                profile = %self.profile.name,
                level,
                pause_s = pause.as_secs_f64().ceil() as u64,
                "throttled again",
            ),
            Change::Recovered => tracing::info!("STS calls are no longer throttled"),
            Change::None => {}
        }
    }

    /// Records what [`Refresher::obtain`] got (an STS call of `took`).
    fn record(
        &mut self,
        result: Result<Assumed, RefreshError>,
        claims: Option<&Claims>,
        took: Duration,
    ) -> Outcome {
        if result
            .as_ref()
            .map_or_else(RefreshError::called_sts, |_| true)
        {
            self.ctx.shared.record_sts_call(took);
        }
        let now = self.ctx.clock.now();
        match result {
            Ok(assumed) => self.refreshed(assumed, took, now),
            Err(e) => self.failed(&e, claims, now),
        }
    }

    /// Logs and publishes a new session; plans its refresh at half its
    /// lifetime.
    fn refreshed(&mut self, assumed: Assumed, took: Duration, now: SystemTime) -> Outcome {
        // The first session of this refresher, or the end of a run of
        // failures: other pods may have got theirs at the same moment.
        let off_schedule = self.published.is_none() || self.failures > 0;
        if let Some(run) = self.failing.ended(Instant::now()) {
            tracing::info!(
                profile = %self.profile.name,
                class = run.class.as_str(),
                failures = run.failures,
                failing_for_s = run.failing_for.as_secs(),
                "refresh recovered",
            );
        }
        self.failures = 0;
        self.backing_off = false;
        let p = self.profile.clone();
        let lifetime = assumed
            .session
            .expiration
            .duration_since(now)
            .unwrap_or_default();
        let jitter = (self.ctx.jitter)();
        let next = if off_schedule {
            schedule::spread_refresh_in(lifetime, jitter, (self.ctx.spread)())
        } else {
            schedule::refresh_in(lifetime, jitter)
        };
        tracing::info!(
            profile = %p.name,
            role = %p.role_arn,
            expires = %format_time(assumed.session.expiration),
            session_s = lifetime.as_secs(),
            next_refresh_in_s = next.as_secs(),
            sts_ms = took.as_millis() as u64,
            request_id = assumed.request_id.as_deref().unwrap_or("-"),
            "refreshed",
        );
        self.publish(assumed.session, now, now + next);
        Outcome::Refreshed { next }
    }

    /// Records, counts and logs a failure (the last good session stays);
    /// plans the retry by its class.
    ///
    /// The log: a failure that needs a human (configuration, clock) is an
    /// ERROR every time. A run of the same other failure is logged once in
    /// full, then summarised once a minute ([`failures`]): a WARN while the
    /// profile still holds a valid session (throttling always), an ERROR
    /// when it holds none or the token is refused or unreadable.
    fn failed(&mut self, e: &RefreshError, claims: Option<&Claims>, now: SystemTime) -> Outcome {
        let p = self.profile.clone();
        let class = e.class();
        let throttled = codes::is_throttling(e.code());
        self.backing_off = class != ErrorClass::Configuration;
        let next = match class {
            ErrorClass::Configuration => schedule::CONFIG_RETRY,
            // The sidecar's pacer holds every call for the pause it drew,
            // or the STS endpoint's gate until its next probe.
            ErrorClass::Transient if throttled || e.says_sts_is_down() => {
                self.failures = self.failures.saturating_add(1);
                self.ctx
                    .shared
                    .pacer()
                    .held_for(&self.endpoint)
                    .max(THROTTLED_RETRY)
            }
            ErrorClass::Transient | ErrorClass::Token | ErrorClass::Clock => {
                let d = schedule::backoff(self.failures, (self.ctx.jitter)());
                self.failures = self.failures.saturating_add(1);
                d
            }
        };
        if let Some(limit) = e.limit() {
            crate::metrics::count_limit_reached(limit, "token");
        }
        // status.json reports the error.
        let still_valid = self
            .ctx
            .shared
            .record_failure(&p, e.result(), format!("{}: {e}", e.code()), now)
            .map(format_time);
        let error = match class {
            ErrorClass::Configuration | ErrorClass::Clock | ErrorClass::Token => true,
            ErrorClass::Transient => !throttled && still_valid.is_none(),
        };
        let retry_in_s = next.as_secs_f64().ceil() as u64;
        let kept_until = still_valid.as_deref().unwrap_or("-");
        let request_id = e.request_id().unwrap_or("-");
        match self.failing.record(class, e.code(), Instant::now()) {
            Line::Full => {
                let hint = trust::hint(e.code(), &p, claims);
                error_or_warn!(
                    error,
                    profile = %p.name,
                    role = %p.role_arn,
                    class = class.as_str(),
                    code = %e.code(),
                    error = %e,
                    hint = hint.as_deref().unwrap_or("-"),
                    retry_in_s,
                    kept_until,
                    request_id,
                    "refresh failed",
                );
            }
            Line::Summary {
                failures,
                left_out,
                failing_for,
            } => error_or_warn!(
                error,
                profile = %p.name,
                role = %p.role_arn,
                class = class.as_str(),
                code = %e.code(),
                error = %e,
                failures,
                left_out,
                failing_for_s = failing_for.as_secs(),
                retry_in_s,
                kept_until,
                request_id,
                "refresh still failing",
            ),
            Line::Quiet => tracing::debug!(
                profile = %p.name,
                code = %e.code(),
                retry_in_s,
                "refresh failed again",
            ),
        }
        Outcome::Failed { class, next }
    }

    /// Publishes `session`, received at `now`, to be refreshed at
    /// `next_refresh` (recorded as its [`crate::state::RefreshPlan`] when refreshes are
    /// planned, see [`Refresher::plan`]).
    fn publish(&mut self, session: Session, now: SystemTime, next_refresh: SystemTime) {
        self.ctx.shared.record_success(
            &self.profile,
            session,
            now,
            self.planning.then_some(next_refresh),
        );
        self.published = Some(now);
    }

    /// Records that the session this refresher published (in the initial
    /// pass, before [`Refresher::run`] plans refreshes) is to be refreshed
    /// at `next_refresh`, if it is still the profile's, and has the outputs
    /// re-rendered: process mode and the endpoint compute the reported
    /// expiry from it ([`crate::state::ProfileState::reported_expiry`]).
    /// A one-shot run (`--once`) plans nothing: no newer keys will come.
    fn plan(&self, next_refresh: SystemTime) {
        let Some(received) = self.published else {
            return;
        };
        self.ctx
            .shared
            .plan_refresh(&self.profile.name, received, next_refresh);
    }

    /// Whether a token change should make this profile retry now: it has no
    /// live session, its last attempt failed, or it is close to expiry.
    fn wants_token_retry(&self) -> bool {
        self.ctx
            .shared
            .wants_token_retry(&self.profile.name, self.ctx.clock.now())
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
        // The refresh asked of this profile that the next attempt answers.
        let mut asked: Option<oneshot::Sender<ManualOutcome>> = None;
        let mut token_changed = self.ctx.token_changed.clone();
        let mut refresh_all = self.ctx.refresh_all.clone();
        let mut reloaded = self.ctx.config_reloaded.clone();
        // Role chaining: only this profile's source wakes it.
        let mut source = self
            .profile
            .source_profile
            .as_deref()
            .map(|s| self.ctx.shared.subscribe(s));
        let chained = source.is_some();
        let mut next = self.last_outcome.unwrap_or_else(Instant::now) + first;
        if !self.planning {
            self.planning = true;
            // A session published before refreshes were planned, if any.
            self.plan(self.ctx.clock.now() + first);
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                Ok(()) = token_changed.changed() => {
                    if chained || !self.wants_token_retry() {
                        continue;
                    }
                    tracing::info!(profile = %self.profile.name, "token changed; retrying now");
                }
                Ok(()) = reloaded.changed() => {
                    if chained || !self.wants_token_retry() {
                        continue;
                    }
                    tracing::info!(profile = %self.profile.name, "configuration reloaded; retrying now");
                }
                Ok(()) = refresh_all.changed() => {
                    match self.manual_refresh_at(next) {
                        Some(at) if at <= Instant::now() => {
                            tracing::debug!(profile = %self.profile.name, "refresh requested");
                        }
                        Some(at) => {
                            // Coalesced: one refresh when the interval ends.
                            next = at;
                            continue;
                        }
                        None => {
                            tracing::debug!(profile = %self.profile.name, "refresh requested during a backoff; the backoff stands");
                            continue;
                        }
                    }
                }
                reply = next_manual(&mut manual) => {
                    match self.manual_refresh_at(next) {
                        Some(at) if at <= Instant::now() => {
                            tracing::info!(profile = %self.profile.name, "refresh asked through the control socket");
                            asked = Some(reply);
                        }
                        _ => {
                            let _ = reply.send(ManualOutcome::Skipped(self.skipped_because(next)));
                            continue;
                        }
                    }
                }
                Some(current) = next_source_session(&mut source) => {
                    if !self.source_changed(current.as_ref()) {
                        continue;
                    }
                    tracing::info!(profile = %self.profile.name, "source session changed; refreshing");
                }
                _ = shutdown.cancelled() => return,
            }
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
            if let Some(reply) = asked.take() {
                let _ = reply.send(ManualOutcome::Attempted(outcome));
            }
            next = Instant::now() + outcome.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_refresher_task_is_small() {
        let profile = Arc::new(Profile::new("p", "arn:aws:iam::111122223333:role/p"));
        let ctx = Context {
            shared: Shared::new(),
            sts: Sts::new(Duration::from_secs(1)),
            token_file: "/nonexistent".into(),
            jitter: crate::schedule::no_jitter,
            spread: crate::schedule::no_jitter,
            token_changed: watch::channel(0).1,
            refresh_all: watch::channel(0).1,
            config_reloaded: watch::channel(0).1,
            clock: Clock::system(),
        };
        let run = Refresher::new(profile, ctx).run(Duration::ZERO, CancellationToken::new());
        let size = std::mem::size_of_val(&run);
        assert!(size < 2048, "a refresher task's future is {size} bytes");
    }
}
