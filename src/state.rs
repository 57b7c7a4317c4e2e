//! What the sidecar knows about each profile, shared by the refreshers, the
//! writer, the endpoint and the health server.
//!
//! [`Shared`] keeps its map private (as mini-redis's `Db` does) and offers
//! the operations the tasks mean: a refresher records a success or a
//! failure, the writer takes a snapshot to render, a reload upserts or
//! removes a profile. Each fact has one writer here: a profile's session
//! and last error, the per-source session channels role chaining listens
//! to, whether the outputs are written, and readiness (recomputed whenever a
//! fact that feeds it changes, and when a probe asks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::config::{CredentialsMode, Profile};
use crate::metrics::{Metrics, RefreshResult};
use crate::pacer::Pacer;
use crate::schedule;
use crate::session::{Session, unix_seconds};

mod profile;

pub use profile::{Lookup, ProfileState, RefreshPlan};

/// A flag one task sets and others read: liveness (the supervisor runs)
/// or readiness (every profile has credentials and the outputs are
/// written). Cloning shares the flag, as linkerd's admin `Readiness`.
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
    /// The first problems of the last configuration a reload refused;
    /// empty once a reload succeeds.
    rejected_config: Vec<String>,
    /// The profiles of each output set ([`Shared::set_members`]).
    members: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// Per output set, what its last successful write holds
    /// ([`Shared::record_set_written`]): readiness is computed from it.
    written: BTreeMap<String, BTreeMap<String, Written>>,
}

/// A session an output set's files hold for one profile, as recorded when
/// they were written: the configuration it was assumed for and its expiry
/// (never the keys themselves).
#[derive(Debug)]
struct Written {
    identity: Arc<Profile>,
    expiration: SystemTime,
}

impl State {
    /// Why the files that serve `entry`'s profile do not hold a valid
    /// session of its current identity at `now`, or `None` when they all
    /// do. An endpoint-only profile is served from memory alone; a file or
    /// process-mode one by every output set that holds it (a set without
    /// members, the lone writer of unit tests, holds every profile once it
    /// wrote).
    fn unwritten(&self, entry: &ProfileState, now: SystemTime) -> Option<String> {
        if entry.profile.credentials == CredentialsMode::Endpoint {
            return None;
        }
        let name = &entry.profile.name;
        let identity = entry.identity();
        let serving = self
            .members
            .iter()
            .filter(|(_, m)| m.contains(name))
            .map(|(set, _)| set)
            .chain(
                self.written
                    .keys()
                    .filter(|set| !self.members.contains_key(*set)),
            );
        for set in serving {
            // A set that never wrote: the last write did not succeed, which
            // readiness reports once for all ("outputs").
            let Some(written) = self.written.get(set) else {
                continue;
            };
            let valid = written.get(name).is_some_and(|w| {
                w.expiration > now
                    && (Arc::ptr_eq(&w.identity, identity) || w.identity.same_identity(identity))
            });
            if !valid {
                return Some(if set == crate::config::DEFAULT_SET {
                    "its session is not in the output files yet".into()
                } else {
                    format!("its session is not in output set {set}'s files yet")
                });
            }
        }
        None
    }
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
}

/// State shared between tasks. The lock is only held for short, synchronous
/// sections (never across an await), and never outside this module.
#[derive(Debug, Default)]
pub struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: state changed and the outputs should be rendered.
    changed: Notify,
    /// Whether the last write of the outputs succeeded.
    outputs_ok: AtomicBool,
    /// Every profile holds unexpired credentials and the outputs are
    /// written; kept with the `rolecall_ready` gauge by
    /// [`Shared::update_readiness`] only.
    ready: Readiness,
    metrics: Metrics,
    /// The pace of this sidecar's STS calls.
    pacer: Pacer,
    /// Wall time for the tasks that read the state (health, endpoint,
    /// watcher).
    clock: Clock,
}

impl Shared {
    /// Shared state on the system clock.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    /// Shared state whose readers take wall time from `clock`.
    pub fn with_clock(clock: Clock) -> Arc<Shared> {
        Arc::new(Shared {
            clock,
            ..Shared::default()
        })
    }

    /// The current wall time, by the injected clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters (each update is a single assignment).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- the supervisor: profiles come and go -------------------------

    /// Registers `profile` at start, with the still-valid session an
    /// earlier run left in the output dir, if any.
    pub fn register(&self, profile: Arc<Profile>, adopted: Option<Session>, now: SystemTime) {
        let mut state = self.lock();
        let name = profile.name.clone();
        let mut entry = ProfileState::new(profile);
        entry.session = adopted;
        state.profiles.insert(name.clone(), entry);
        state.announce(&name);
        self.update_readiness(&state, now);
    }

    /// Installs `profile` (new or changed at a reload) with a fresh state.
    /// The session it holds is kept: as its own when `same_identity` (the
    /// same role and permissions), otherwise as the previous identity's,
    /// served until the first attempt for the new one ends
    /// ([`ProfileState::superseded`]).
    pub fn upsert(&self, profile: Arc<Profile>, same_identity: bool, now: SystemTime) {
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
        self.update_readiness(&state, now);
    }

    /// Forgets a profile that is no longer configured, with its metric
    /// series.
    pub fn remove(&self, name: &str, now: SystemTime) {
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
        self.update_readiness(&state, now);
    }

    // ---- refreshers ----------------------------------------------------

    /// The entry of `profile` when `profile` is its current configuration
    /// (the very one registered or upserted, compared by pointer): an
    /// attempt made for a configuration a reload has since replaced (a
    /// refresher cancelled while its STS call was in flight) gets `None`,
    /// so that its answer is never published: it may be for a role the
    /// configuration no longer names.
    fn current<'a>(state: &'a mut State, profile: &Arc<Profile>) -> Option<&'a mut ProfileState> {
        let entry = state.profiles.get_mut(&profile.name)?;
        if Arc::ptr_eq(&entry.profile, profile) {
            return Some(entry);
        }
        tracing::debug!(
            profile = %profile.name,
            "an answer for a configuration a reload replaced is dropped"
        );
        None
    }

    /// Publishes a new `session` for `profile`, received at `received`,
    /// with its refresh planned at `next_refresh` (`None` when nothing newer
    /// will come: a one-shot run). Clears the last error, updates the
    /// metrics, tells the profiles chained to it and wakes the writer.
    /// Ignored unless `profile` is the profile's current configuration
    /// (the attempt's, compared by pointer; see [`Shared::upsert`]).
    pub fn record_success(
        &self,
        profile: &Arc<Profile>,
        session: Session,
        received: SystemTime,
        next_refresh: Option<SystemTime>,
    ) {
        let name = profile.name.as_str();
        let mut state = self.lock();
        let Some(entry) = Self::current(&mut state, profile) else {
            return;
        };
        self.metrics
            .set_credentials_expiry(name, unix_seconds(session.expiration));
        self.metrics.count_refresh(name, RefreshResult::Success);
        entry.session = Some(session);
        entry.superseded = None;
        entry.last_refresh = Some(received);
        entry.last_error = None;
        entry.plan = next_refresh.map(|next_refresh| RefreshPlan {
            received,
            next_refresh,
        });
        state.announce(name);
        self.update_readiness(&state, received);
        drop(state);
        self.request_write();
    }

    /// Records that the session `name` received at `received` is to be
    /// refreshed at `next_refresh`, if it is still the profile's, and wakes
    /// the writer (the reported expiry depends on it).
    pub fn plan_refresh(&self, name: &str, received: SystemTime, next_refresh: SystemTime) {
        if let Some(entry) = self.lock().profiles.get_mut(name)
            && entry.last_refresh == Some(received)
        {
            entry.plan = Some(RefreshPlan {
                received,
                next_refresh,
            });
        }
        self.request_write();
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
        let entry = Self::current(&mut state, profile)?;
        self.metrics.count_refresh(name, result);
        entry.last_error = Some(error);
        // A previous identity's session is not kept through a failure of
        // the new one: the configuration no longer names that role.
        if entry.superseded.take().is_some() {
            entry.session = None;
            state.announce(name);
        }
        let entry = state.profiles.get(name)?;
        let kept = entry.live_session(now).map(|s| s.expiration);
        self.update_readiness(&state, now);
        drop(state);
        self.request_write();
        kept
    }

    /// The pace of this sidecar's STS calls: every call waits for a permit.
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Counts an STS call answered with a throttling code.
    pub fn record_throttled(&self) {
        self.metrics.sts_throttled.inc();
    }

    /// Records the duration of one STS call.
    pub fn record_sts_call(&self, took: Duration) {
        self.metrics.sts_latency.observe(took.as_secs_f64());
    }

    /// Records STS's clock minus the local clock, in seconds.
    pub fn record_clock_skew(&self, skew_s: i64) {
        self.metrics.sts_clock_skew.set(skew_s);
    }

    /// The session of `source` if it is live at `now`: what a profile
    /// chained to it signs its call with.
    pub fn session_for(&self, source: &str, now: SystemTime) -> Option<Session> {
        self.lock()
            .profiles
            .get(source)
            .and_then(|s| s.live_session(now).cloned())
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

    /// Whether a token change should make `name` retry now: it has no live
    /// session, its last attempt failed, or it is close to expiry.
    pub fn wants_token_retry(&self, name: &str, now: SystemTime) -> bool {
        let state = self.lock();
        let Some(entry) = state.profiles.get(name) else {
            return false;
        };
        match entry.live_session(now) {
            None => true,
            Some(s) => {
                entry.last_error.is_some()
                    || s.expiration.duration_since(now).unwrap_or_default() < schedule::NEAR_EXPIRY
            }
        }
    }

    // ---- the writer ----------------------------------------------------

    /// A copy of every profile's state, in name order, to render.
    pub fn snapshot(&self) -> Vec<ProfileState> {
        self.lock().profiles.values().cloned().collect()
    }

    /// One profile's state, copied.
    pub fn get(&self, name: &str) -> Option<ProfileState> {
        self.lock().profiles.get(name).cloned()
    }

    /// Time from `now` until just after the next live session expires (so
    /// the writer removes it then).
    pub fn next_expiry(&self, now: SystemTime) -> Option<Duration> {
        self.lock()
            .profiles
            .values()
            .filter_map(|s| s.live_session(now))
            .filter_map(|s| s.expiration.duration_since(now).ok())
            .min()
            // Wake just after the expiry so the session is seen as expired.
            .map(|d| d + Duration::from_millis(5))
    }

    /// Records what output set `set`'s files hold after a successful write:
    /// for each profile whose keys they hold, the identity (configuration)
    /// its session was assumed for and its expiry; `now` is when they were
    /// rendered. Replaces what the set's
    /// previous write recorded; readiness follows.
    pub fn record_set_written(
        &self,
        set: &str,
        sessions: impl IntoIterator<Item = (String, Arc<Profile>, SystemTime)>,
        now: SystemTime,
    ) {
        let held = sessions
            .into_iter()
            .map(|(name, identity, expiration)| {
                (
                    name,
                    Written {
                        identity,
                        expiration,
                    },
                )
            })
            .collect();
        let mut state = self.lock();
        state.written.insert(set.to_owned(), held);
        self.update_readiness(&state, now);
    }

    /// Records whether the last write of the outputs succeeded.
    pub fn record_outputs_written(&self, ok: bool, now: SystemTime) {
        self.outputs_ok.store(ok, Ordering::Release);
        let state = self.lock();
        self.update_readiness(&state, now);
    }

    /// Whether the last write of the outputs succeeded.
    pub fn outputs_written(&self) -> bool {
        self.outputs_ok.load(Ordering::Acquire)
    }

    /// Counts a failed write of the output `file`.
    pub fn count_write_error(&self, file: &'static str) {
        self.metrics.count_write_error(file);
    }

    /// Asks the writer to render and write the outputs.
    pub fn request_write(&self) {
        self.changed.notify_one();
    }

    /// Completes when a write was requested since the last one was taken.
    pub fn write_requested(&self) -> Notified<'_> {
        self.changed.notified()
    }

    // ---- the endpoint and the watcher ----------------------------------

    /// What the credentials endpoint answers for `name` at `now`.
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

    /// Counts a request the endpoint refused (see
    /// [`Metrics::count_endpoint_rejection`]).
    pub fn count_endpoint_rejection(&self, reason: &'static str) {
        self.metrics.count_endpoint_rejection(reason);
    }

    /// Records whether the watched `file` is only polled (no inotify).
    pub fn record_watch_polling(&self, file: &'static str, polling: bool) {
        self.metrics
            .watch_polling
            .get_or_create(&crate::metrics::WatchLabel { file })
            .set(i64::from(polling));
    }

    /// Counts one re-read of the token by the watcher.
    pub fn count_token_check(&self) {
        self.metrics.token_checks.inc();
    }

    /// Records the `exp` of the token last read.
    pub fn record_token_expiry(&self, exp: u64) {
        self.metrics.token_expiry.set(exp as i64);
    }

    // ---- health --------------------------------------------------------

    /// Profiles that are not ready at `now`, with the reason; empty when
    /// ready. Also brings the stored readiness up to date.
    pub fn not_ready(&self, now: SystemTime) -> Vec<(String, String)> {
        let state = self.lock();
        self.update_readiness(&state, now)
    }

    /// Readiness as last computed.
    pub fn is_ready(&self) -> bool {
        self.ready.get()
    }

    /// The Prometheus text exposition, with readiness as of `now`.
    pub fn encode_metrics(&self, now: SystemTime) -> String {
        self.not_ready(now);
        self.metrics.encode()
    }

    /// The metrics, to read (tests, benchmarks); they are changed only
    /// through the operations above.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The one writer of readiness and its gauge; returns why not ready.
    fn update_readiness(&self, state: &State, now: SystemTime) -> Vec<(String, String)> {
        // A profile is ready when it holds a valid session (what the
        // endpoint serves, and what the next write renders) and every file
        // that serves it holds a valid session of the same identity (what
        // the application reads there now).
        let mut out: Vec<(String, String)> = state
            .profiles
            .values()
            .filter_map(|s| {
                s.not_ready(now)
                    .or_else(|| state.unwritten(s, now))
                    .map(|why| (s.profile.name.clone(), why))
            })
            .collect();
        if !self.outputs_ok.load(Ordering::Acquire) {
            out.push(("outputs".into(), "the output files are not written".into()));
        }
        let ready = out.is_empty();
        self.ready.set(ready);
        self.metrics.ready.set(i64::from(ready));
        out
    }
}

mod control;
mod reloads;
mod sets;

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
