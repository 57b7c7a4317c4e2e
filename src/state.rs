//! What the sidecar knows about each profile, shared by the refreshers, the
//! writer and the health server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::config::Profile;
use crate::metrics::Metrics;
use crate::schedule;
use crate::session::Session;

/// One profile's current state.
#[derive(Clone, Debug)]
pub struct ProfileState {
    pub profile: Arc<Profile>,
    /// The last good session; kept through failures until it expires.
    pub session: Option<Session>,
    pub last_refresh: Option<SystemTime>,
    /// `CODE: message` of the last failure, cleared by a success.
    pub last_error: Option<String>,
    /// When `session` was received and its refresh is planned, set with it
    /// by the refresher; `None` for a session adopted from an earlier run
    /// until the first refresh.
    pub plan: Option<RefreshPlan>,
}

/// The refresher's plan for the session it published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPlan {
    pub received: SystemTime,
    pub next_refresh: SystemTime,
}

impl ProfileState {
    pub fn new(profile: Arc<Profile>) -> ProfileState {
        ProfileState {
            profile,
            session: None,
            last_refresh: None,
            last_error: None,
            plan: None,
        }
    }

    /// The `Expiration` that process mode and the endpoint report for
    /// `session` (this profile's session) at `now`:
    /// [`schedule::reported_expiry`] from its real expiry and the refresh
    /// plan while newer keys are due; the real expiry once a refresh failed
    /// (nothing newer can come until one succeeds), without a plan (adopted
    /// at a restart), or once the reported expiry has passed without the
    /// refresh (a wall-clock step, a stuck refresher), so that no client is
    /// handed valid keys with an expiry in the past. Depends on `now` only
    /// through that last case, so the writer's periodic re-render does not
    /// rewrite an unchanged file.
    pub fn reported_expiry(&self, session: &Session, now: SystemTime) -> SystemTime {
        let Some(plan) = self.plan.filter(|_| self.last_error.is_none()) else {
            return session.expiration;
        };
        let reported =
            schedule::reported_expiry(session.expiration, plan.received, Some(plan.next_refresh));
        if reported <= now {
            return session.expiration;
        }
        reported
    }

    /// The session if it is still valid at `now`.
    pub fn live_session(&self, now: SystemTime) -> Option<&Session> {
        self.session.as_ref().filter(|s| !s.is_expired(now))
    }
}

/// State shared between tasks. The lock is only held for short, synchronous
/// sections (never across an await).
#[derive(Debug, Default)]
pub struct Shared {
    profiles: Mutex<BTreeMap<String, ProfileState>>,
    /// Wakes the writer: state changed and the outputs should be rendered.
    pub changed: Notify,
    /// Set by the writer: whether the last write of the outputs succeeded.
    pub outputs_ok: std::sync::atomic::AtomicBool,
    pub metrics: Metrics,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    pub fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ProfileState>> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters (each update is a single assignment).
        self.profiles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Profiles that are not ready at `now`, with the reason; empty when ready.
    pub fn not_ready(&self, now: SystemTime) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .lock()
            .values()
            .filter(|s| s.live_session(now).is_none())
            .map(|s| {
                let why = match (&s.session, &s.last_error) {
                    (_, Some(e)) => e.clone(),
                    (Some(_), None) => "credentials expired".into(),
                    (None, None) => "no credentials yet".into(),
                };
                (s.profile.name.clone(), why)
            })
            .collect();
        if !self.outputs_ok.load(std::sync::atomic::Ordering::Acquire) {
            out.push(("outputs".into(), "the output files are not written".into()));
        }
        out
    }

    /// Asks the writer to render and write the outputs.
    pub fn request_write(&self) {
        self.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Secret;
    use std::time::Duration;

    fn state(error: Option<&str>, plan: Option<RefreshPlan>) -> (ProfileState, Session) {
        let received = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let session = Session {
            access_key_id: Secret::new("ASIAX"),
            secret_access_key: Secret::new("s"),
            session_token: Secret::new("t"),
            expiration: received + Duration::from_secs(3600),
            assumed_role_arn: None,
        };
        let mut s = ProfileState::new(Arc::new(Profile::new(
            "p",
            "arn:aws:iam::111122223333:role/p",
        )));
        s.session = Some(session.clone());
        s.last_error = error.map(str::to_owned);
        s.plan = plan;
        (s, session)
    }

    #[test]
    fn reports_the_rule_while_healthy_and_the_real_expiry_otherwise() {
        let received = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let plan = RefreshPlan {
            received,
            next_refresh: received + Duration::from_secs(1800),
        };
        let min = |m: u64| received + Duration::from_secs(m * 60);
        // Healthy: 16 minutes after the planned refresh, whenever rendered
        // before then.
        let (s, session) = state(None, Some(plan));
        for now in [received, min(30), min(45)] {
            assert_eq!(s.reported_expiry(&session, now), min(46));
        }
        // The last refresh failed (an STS outage): the real expiry.
        let (s, session) = state(Some("InternalFailure: down"), Some(plan));
        assert_eq!(s.reported_expiry(&session, received), min(60));
        // Adopted at a restart, no refresh planned yet: the real expiry.
        let (s, session) = state(None, None);
        assert_eq!(s.reported_expiry(&session, received), min(60));
        // The reported expiry passed without the refresh (a wall-clock step,
        // a stuck refresher): the real expiry, never one in the past.
        let (s, session) = state(None, Some(plan));
        assert_eq!(s.reported_expiry(&session, min(46)), min(60));
        assert_eq!(s.reported_expiry(&session, min(59)), min(60));
    }
}
