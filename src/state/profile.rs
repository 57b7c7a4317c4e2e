//! One profile's state, as [`super::Shared`] keeps it, and what the
//! endpoint can learn of it.

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Profile;
use crate::schedule;
use crate::session::Session;

/// One profile's current state.
#[derive(Clone, Debug)]
pub struct ProfileState {
    pub profile: Arc<Profile>,
    /// The last good session; kept through failures until it expires.
    pub session: Option<Session>,
    /// `CODE: message` of the last failure, cleared by a success.
    pub last_error: Option<String>,
    /// When `session` was received and its refresh is planned, set with it
    /// by the refresher; `None` for a session adopted from an earlier run
    /// (or kept through a reload) until the first refresh.
    pub plan: Option<RefreshPlan>,
    /// The profile's previous configuration, when a reload changed its
    /// identity (another role, source or permissions) and `session` still
    /// belongs to that one: the old session is served until the first
    /// attempt for the new identity ends (so a ConfigMap change leaves no
    /// gap in any file), replaced by its success, dropped by its failure.
    pub superseded: Option<Arc<Profile>>,
}

/// The refresher's plan for the session it published: when it was
/// received (the one record of that time) and when its refresh is planned
/// (`None` in a one-shot run: nothing newer will come).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPlan {
    pub received: SystemTime,
    pub next_refresh: Option<SystemTime>,
}

impl ProfileState {
    pub fn new(profile: Arc<Profile>) -> ProfileState {
        ProfileState {
            profile,
            session: None,
            last_error: None,
            plan: None,
            superseded: None,
        }
    }

    /// When the last session was received from STS; `None` before the
    /// first refresh (an adopted or kept session).
    pub fn last_refresh(&self) -> Option<SystemTime> {
        self.plan.map(|p| p.received)
    }

    /// The plan of `session`'s refresh while it is healthy: the last
    /// refresh succeeded and a next one is planned.
    fn healthy_plan(&self) -> Option<(SystemTime, SystemTime)> {
        let plan = self.plan.filter(|_| self.last_error.is_none())?;
        Some((plan.received, plan.next_refresh?))
    }

    /// The role `session` was assumed for: the profile's, or the previous
    /// configuration's while its session is still served (written beside
    /// the keys, so a restart never adopts them for the new role).
    pub fn session_role(&self) -> &str {
        self.superseded
            .as_ref()
            .map_or(&self.profile.role_arn, |old| &old.role_arn)
    }

    /// The configuration `session` was assumed for: the previous one
    /// while it is [`ProfileState::superseded`], else the profile's.
    pub fn identity(&self) -> &Arc<Profile> {
        self.superseded.as_ref().unwrap_or(&self.profile)
    }

    /// The latest `Expiration` the helper and the endpoint may report for
    /// `session` (this profile's session) while it is healthy: its
    /// [`schedule::report_cap`] while the last refresh succeeded and the
    /// next is planned; `None` once a refresh failed (nothing newer can
    /// come until one succeeds: clients keep the last good keys until they
    /// really expire) or without a plan (adopted at a restart, `--once`),
    /// when the real expiry is reported. Written into
    /// `credential-process.json` (`slide_until`) for the helper, so the
    /// file changes with the session's state, not with the clock.
    pub fn slide_cap(&self, session: &Session) -> Option<SystemTime> {
        let (received, _) = self.healthy_plan()?;
        schedule::report_cap(session.expiration, received)
    }

    /// The `Expiration` that process mode and the endpoint report for
    /// `session` at `now`: [`schedule::sliding_expiry`] (`now` plus
    /// [`schedule::REPORT_SLIDE`], under the cap) while healthy
    /// ([`Self::slide_cap`]), the real expiry otherwise. The endpoint
    /// computes it per request; the helper computes the same from the file.
    pub fn reported_expiry(&self, session: &Session, now: SystemTime) -> SystemTime {
        match self.slide_cap(session) {
            Some(cap) => schedule::sliding_expiry(session.expiration, cap, now),
            None => session.expiration,
        }
    }

    /// The fixed `Expiration` written into `credential-process.json` for a
    /// helper from before the sliding report (one copied into an app
    /// image), which prints it: [`schedule::planned_expiry`] while healthy,
    /// the real expiry otherwise or once it has passed. Depends on `now`
    /// only through that last case, so the writer's periodic re-render
    /// does not rewrite an unchanged file.
    pub fn planned_expiry(&self, session: &Session, now: SystemTime) -> SystemTime {
        let Some((received, next_refresh)) = self.healthy_plan() else {
            return session.expiration;
        };
        let reported = schedule::planned_expiry(session.expiration, received, Some(next_refresh));
        if reported <= now {
            return session.expiration;
        }
        reported
    }

    /// The session if it is still valid at `now`.
    pub fn live_session(&self, now: SystemTime) -> Option<&Session> {
        self.session.as_ref().filter(|s| !s.is_expired(now))
    }

    /// Why this profile is not ready at `now`, or `None` when it is.
    pub(super) fn not_ready(&self, now: SystemTime) -> Option<String> {
        if self.live_session(now).is_some() {
            return None;
        }
        let why = match (&self.session, &self.last_error) {
            (_, Some(e)) => e.clone(),
            (Some(_), None) => "credentials expired".into(),
            (None, None) => "no credentials yet".into(),
        };
        Some(if self.profile.pod_identity {
            format!("the Pod Identity agent's session: {why}")
        } else {
            why
        })
    }
}

/// What the credentials endpoint can answer for a profile name.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No such profile is configured.
    Unknown,
    /// Configured, but without a valid session; the last error if any.
    NotReady { last_error: Option<String> },
    /// The live session and the `Expiration` to report for it
    /// ([`ProfileState::reported_expiry`]).
    Live {
        session: Session,
        expiration: SystemTime,
    },
}
