//! What the sidecar knows about each profile, shared by the refreshers, the
//! writer, the endpoint and the health server.
//!
//! [`Shared`] keeps its map private (as mini-redis's `Db` does) and offers
//! the operations the tasks mean: a refresher records a success or a
//! failure, the writer takes a snapshot to render, a reload upserts or
//! removes a profile. It holds the profile table (each profile's session,
//! last error and refresh plan, the output sets' members and what their
//! files hold), the per-source session channels role chaining listens to,
//! and the notice that wakes the writer; nothing else. Readiness is
//! computed from the table where it is asked for ([`Shared::not_ready`]):
//! `/readyz` and the `rolecall_ready` gauge read the same function.
//! Metrics are the components' own ([`Metrics`]); the table keeps only its
//! per-profile series in step with itself (a removed profile's go with it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};

use crate::config::Profile;
use crate::metrics::{Metrics, RefreshResult};
use crate::session::Session;

mod profile;
mod ready;

pub use profile::{Lookup, ProfileState, RefreshPlan};
pub use ready::WritePass;

/// A flag one task sets and others read: liveness (the supervisor runs).
/// Cloning shares the flag, as linkerd's admin `Readiness`. (Readiness
/// itself is computed when asked: [`Shared::not_ready`].)
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new(value: bool) -> Readiness {
        Readiness(Arc::new(AtomicBool::new(value)))
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub fn set(&self, value: bool) {
        self.0.store(value, Ordering::Release);
    }
}

/// Asks the writer to render and write the outputs: one wake-up however
/// many requests arrive before the writer takes it.
#[derive(Debug, Default)]
pub struct WriteNotice(Notify);

impl WriteNotice {
    /// Asks for a write.
    pub fn request(&self) {
        self.0.notify_one();
    }

    /// Completes when a write was requested since the last one was taken.
    pub fn requested(&self) -> Notified<'_> {
        self.0.notified()
    }
}

/// A profile's current session, as role chaining sees it: `None` while it
/// has none. Changes with every new session (two sessions issued in the
/// same second have the same expiry, so the expiry alone would not do).
pub type SessionWatch = watch::Receiver<Option<Session>>;

#[derive(Debug, Default)]
struct State {
    profiles: BTreeMap<String, ProfileState>,
    /// Per profile, the expiry of its session, for the profiles chained to
    /// it ([`Shared::subscribe`]). Kept while subscribed across a removal,
    /// so that a reload that replaces a source keeps its subscribers.
    sessions: BTreeMap<String, watch::Sender<Option<Session>>>,
    /// The profiles of each output set ([`Shared::set_members`]).
    members: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// Per output set, what its last successful write holds
    /// ([`Shared::record_write`]): readiness is computed from it.
    written: BTreeMap<String, BTreeMap<String, ready::Written>>,
    /// Whether the last write of the outputs succeeded.
    outputs_written: bool,
    /// The Pod Identity agent's URL under `identity: pod-identity`
    /// ([`Shared::set_source`]).
    agent: Option<String>,
}

impl State {
    /// Publishes `name`'s session to its subscribers when it changed.
    fn announce(&mut self, name: &str) {
        let Some(tx) = self.sessions.get(name) else {
            return;
        };
        let session = self.profiles.get(name).and_then(|s| s.session.as_ref());
        tx.send_if_modified(|v| {
            if v.as_ref() == session {
                return false;
            }
            *v = session.cloned();
            true
        });
    }

    /// The entry of `profile` when `profile` is its current configuration
    /// (the very one registered or upserted, compared by pointer): an
    /// attempt made for a configuration a reload has since replaced (a
    /// refresher cancelled while its STS call was in flight) gets `None`,
    /// so that its answer is never published: it may be for a role the
    /// configuration no longer names.
    fn current(&mut self, profile: &Arc<Profile>) -> Option<&mut ProfileState> {
        let entry = self.profiles.get_mut(&profile.name)?;
        if Arc::ptr_eq(&entry.profile, profile) {
            return Some(entry);
        }
        tracing::debug!(
            profile = %profile.name,
            "an answer for a configuration a reload replaced is dropped"
        );
        None
    }
}

/// State shared between tasks. The lock is only held for short, synchronous
/// sections (never across an await), and never outside this module.
#[derive(Debug, Default)]
pub struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: state changed and the outputs should be rendered.
    writes: WriteNotice,
    /// The per-profile series, kept in step with the table.
    metrics: Metrics,
}

impl Shared {
    /// An empty table, with metric series of its own (unit tests).
    #[cfg(test)]
    pub(crate) fn new() -> Arc<Shared> {
        Shared::with_metrics(Metrics::new())
    }

    /// An empty table that keeps its per-profile series in `metrics`.
    pub fn with_metrics(metrics: Metrics) -> Arc<Shared> {
        Arc::new(Shared {
            metrics,
            ..Shared::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters (each update is a single assignment).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- the supervisor: profiles come and go -------------------------

    /// Registers `profile` at start, with the still-valid session an
    /// earlier run left in the output dir, if any.
    pub fn register(&self, profile: Arc<Profile>, adopted: Option<Session>) {
        let mut state = self.lock();
        let name = profile.name.clone();
        let mut entry = ProfileState::new(profile);
        entry.session = adopted;
        state.profiles.insert(name.clone(), entry);
        state.announce(&name);
    }

    /// Installs `profile` (new or changed at a reload) with a fresh state.
    /// The session it holds is kept: as its own when `same_identity` (the
    /// same role and permissions), otherwise as the previous identity's,
    /// served until the first attempt for the new one ends
    /// ([`ProfileState::superseded`]).
    pub fn upsert(&self, profile: Arc<Profile>, same_identity: bool) {
        let mut state = self.lock();
        let name = profile.name.clone();
        let previous = state.profiles.get(&name);
        let kept = previous.and_then(|s| s.session.clone());
        // A session already superseded stays the older identity's.
        let superseded = match previous {
            Some(prev) if kept.is_some() && same_identity => prev.superseded.clone(),
            Some(prev) if kept.is_some() => Some(
                prev.superseded
                    .clone()
                    .unwrap_or_else(|| prev.profile.clone()),
            ),
            _ => None,
        };
        let mut entry = ProfileState::new(profile);
        entry.session = kept;
        entry.superseded = superseded;
        state.profiles.insert(name.clone(), entry);
        state.announce(&name);
    }

    /// Forgets a profile that is no longer configured, with its metric
    /// series.
    pub fn remove(&self, name: &str) {
        let mut state = self.lock();
        state.profiles.remove(name);
        self.metrics.forget_profile(name);
        if state
            .sessions
            .get(name)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            state.sessions.remove(name);
        } else {
            state.announce(name);
        }
    }

    // ---- refreshers ----------------------------------------------------

    /// Publishes a new `session` for `profile` with its refresher's `plan`
    /// (when it was received, when it is to be refreshed). Clears the last
    /// error, updates the profile's series, tells the profiles chained to
    /// it and wakes the writer. Ignored (`false`) unless `profile` is the
    /// profile's current configuration (the attempt's, compared by
    /// pointer; see [`Shared::upsert`]).
    pub fn record_success(
        &self,
        profile: &Arc<Profile>,
        session: Session,
        plan: RefreshPlan,
    ) -> bool {
        let name = profile.name.as_str();
        let mut state = self.lock();
        let Some(entry) = state.current(profile) else {
            return false;
        };
        self.metrics
            .set_credentials_expiry(name, session.expiration);
        self.metrics.count_refresh(name, RefreshResult::Success);
        entry.session = Some(session);
        entry.superseded = None;
        entry.last_error = None;
        entry.plan = Some(plan);
        state.announce(name);
        drop(state);
        self.writes.request();
        true
    }

    /// Records a failed refresh of `profile` (`error` is `CODE: message`)
    /// and wakes the writer (`status.json` reports it). The last good
    /// session is kept; returns its expiry while it is live at `now`.
    /// Ignored (`None`) unless `profile` is the profile's current
    /// configuration, as [`Shared::record_success`].
    pub fn record_failure(
        &self,
        profile: &Arc<Profile>,
        result: RefreshResult,
        error: String,
        now: SystemTime,
    ) -> Option<SystemTime> {
        let name = profile.name.as_str();
        let mut state = self.lock();
        let entry = state.current(profile)?;
        self.metrics.count_refresh(name, result);
        entry.last_error = Some(error);
        // A previous identity's session is not kept through a failure of
        // the new one: the configuration no longer names that role.
        if entry.superseded.take().is_some() {
            entry.session = None;
            state.announce(name);
        }
        let kept = state
            .profiles
            .get(name)?
            .live_session(now)
            .map(|s| s.expiration);
        drop(state);
        self.writes.request();
        kept
    }

    /// `source`'s session, now and whenever it changes (a refresh, a
    /// reload), for a profile chained to it.
    pub fn subscribe(&self, source: &str) -> SessionWatch {
        let mut state = self.lock();
        if !state.sessions.contains_key(source) {
            state
                .sessions
                .insert(source.to_owned(), watch::channel(None).0);
            state.announce(source);
        }
        state.sessions[source].subscribe()
    }

    // ---- the writer, the endpoint, the control socket ------------------

    /// One profile's state, copied.
    pub fn get(&self, name: &str) -> Option<ProfileState> {
        self.lock().profiles.get(name).cloned()
    }

    /// The notice that wakes the writer: the table wakes it on every change
    /// the outputs show; a reload or a test may ask for a write too.
    pub fn writes(&self) -> &WriteNotice {
        &self.writes
    }

    /// What the credentials endpoint answers for `name` at `now` (and
    /// what a profile chained to `name` signs its call with).
    pub fn credentials_for(&self, name: &str, now: SystemTime) -> Lookup {
        let state = self.lock();
        let Some(entry) = state.profiles.get(name) else {
            return Lookup::Unknown;
        };
        match entry.live_session(now) {
            Some(s) => Lookup::Live {
                session: s.clone(),
                expiration: entry.reported_expiry(s, now),
            },
            None => Lookup::NotReady {
                last_error: entry.last_error.clone(),
            },
        }
    }
}

mod sets;
mod source;
pub use source::Source;

#[cfg(test)]
mod tests;

/// The configuration `name` is registered with (what its refresher's
/// attempts carry), or a new one for a name never registered: for tests
/// that record outcomes by name.
#[cfg(test)]
pub(crate) fn current_profile(shared: &Shared, name: &str) -> Arc<Profile> {
    shared.get(name).map_or_else(
        || {
            Arc::new(Profile::new(
                name,
                format!("arn:aws:iam::111122223333:role/{name}"),
            ))
        },
        |s| s.profile,
    )
}
