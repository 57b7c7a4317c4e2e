//! What the sidecar knows about each profile, shared by the refreshers, the
//! writer and the health server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::config::Profile;
use crate::metrics::Metrics;
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
}

impl ProfileState {
    pub fn new(profile: Arc<Profile>) -> ProfileState {
        ProfileState {
            profile,
            session: None,
            last_refresh: None,
            last_error: None,
        }
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
