//! What an attempt's result does: a session published with its refresh
//! plan, or a failure recorded, logged and its retry planned.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Outcome, RefreshError, Refresher, THROTTLED_RETRY, failures::Line};
use crate::schedule;
use crate::session::format_time;
use crate::state::RefreshPlan;
use crate::sts::{Assumed, ErrorClass, codes};
use crate::token::Claims;
use crate::trust;

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

impl Refresher {
    /// Records what [`Refresher::obtain`] got (an STS call of `took`).
    pub(super) fn record(
        &mut self,
        result: Result<Assumed, RefreshError>,
        claims: Option<&Claims>,
        took: Duration,
    ) -> Outcome {
        // (The agent times its own calls.)
        if !self.profile.pod_identity
            && result
                .as_ref()
                .map_or_else(RefreshError::called_sts, |_| true)
        {
            self.ctx.metrics.record_sts_call(took);
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
            role = crate::agent::role_shown(&p),
            expires = %format_time(assumed.session.expiration),
            session_s = lifetime.as_secs(),
            next_refresh_in_s = next.as_secs(),
            sts_ms = took.as_millis() as u64,
            request_id = assumed.request_id.as_deref().unwrap_or("-"),
            "refreshed",
        );
        let plan = RefreshPlan {
            received: now,
            next_refresh: (!self.ctx.once).then_some(now + next),
        };
        self.published = Some(assumed.session.expiration);
        self.ctx
            .shared
            .record_success(&self.profile, assumed.session, plan);
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
                self.ctx.pacer.held_for(&self.endpoint).max(THROTTLED_RETRY)
            }
            ErrorClass::Transient | ErrorClass::Token | ErrorClass::Clock => {
                let d = schedule::backoff(self.failures, (self.ctx.jitter)());
                self.failures = self.failures.saturating_add(1);
                d
            }
        };
        if let Some(limit) = e.limit() {
            self.ctx.metrics.count_limit_reached(limit, "token");
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
        self.log_failure(e, claims, error, next, still_valid.as_deref());
        Outcome::Failed { class, next }
    }

    /// The hint for a failure with `code`: the Pod Identity agent's for
    /// the base profile, else (and for the codes the agent has none for)
    /// the trust policy's.
    fn hint(&self, code: &str, claims: Option<&Claims>) -> Option<String> {
        let p = &self.profile;
        match &self.ctx.agent {
            Some(agent) if p.pod_identity => crate::agent::hint(code, agent.url(), claims),
            _ => None,
        }
        .or_else(|| trust::hint(code, p, claims))
    }

    /// Logs a failure as [`Refresher::failed`] says: in full, summarised,
    /// or quietly; at ERROR when `error`, else WARN.
    fn log_failure(
        &mut self,
        e: &RefreshError,
        claims: Option<&Claims>,
        error: bool,
        next: Duration,
        still_valid: Option<&str>,
    ) {
        let p = &self.profile;
        let class = e.class();
        let retry_in_s = next.as_secs_f64().ceil() as u64;
        let kept_until = still_valid.unwrap_or("-");
        let request_id = e.request_id().unwrap_or("-");
        match self.failing.record(class, e.code(), Instant::now()) {
            Line::Full => {
                let hint = self.hint(e.code(), claims);
                error_or_warn!(
                    error,
                    profile = %p.name,
                    role = crate::agent::role_shown(p),
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
                role = crate::agent::role_shown(p),
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
    }
}
