//! The output sets at run time: one [`Writer`] per set (each its own
//! directory, for one application container), kept current by one task.
//! A set's files hold only its members' profiles; membership lives in
//! [`Shared`] (a reload changes it). One set's failed write is logged with
//! its set and retried with backoff; it never stops the others' writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::writer::{settle, state_changed};
use super::{Helper, RECHECK_INTERVAL, WriteError, Writer};
use crate::clock::Clock;
use crate::config::{Config, CredentialsMode, Profile};
use crate::metrics::Metrics;
use crate::schedule;
use crate::session::Session;
use crate::state::{Shared, WritePass};

/// How many problems of a refused configuration `status.json` keeps (the
/// log line has them all).
pub const REJECTED_PROBLEMS: usize = 5;

/// The writers of every output set, each with its process-mode helper.
/// Clones share the refused configuration's problems, which every set's
/// `status.json` shows until a reload succeeds ([`Sets::show_rejected`]).
#[derive(Clone, Debug)]
pub struct Sets {
    writers: Vec<(Writer, Arc<Helper>)>,
    /// Whether the configuration declared these sets (otherwise they are
    /// the one default set): fixed at start, as the layout is. Read
    /// through [`Sets::declared`].
    declared: bool,
    rejected: Arc<watch::Sender<Vec<String>>>,
}

impl Sets {
    /// A writer per output set of `config`, with `jitter` for the backoff,
    /// `clock` for wall time and `metrics` counting failed writes.
    pub fn new(config: &Config, jitter: schedule::Jitter, clock: Clock, metrics: &Metrics) -> Sets {
        let writers = Sets::from_writers(
            config
                .outputs
                .iter()
                .map(|s| {
                    let w = Writer {
                        clock,
                        metrics: metrics.clone(),
                        ..Writer::for_set(config, s).with_jitter(jitter)
                    };
                    (w, Arc::new(Helper::default()))
                })
                .collect(),
        );
        Sets {
            declared: config.declared_sets(),
            ..writers
        }
    }

    /// These writers' sets, not declared (as the default set is).
    pub fn from_writers(writers: Vec<(Writer, Arc<Helper>)>) -> Sets {
        Sets {
            writers,
            declared: false,
            rejected: Arc::new(watch::Sender::new(Vec::new())),
        }
    }

    /// Whether the output sets are declared (`outputs`), not the one
    /// default set: then `status.json` names its set and the endpoint
    /// refuses a profile outside the token's set. The one owner of this
    /// fact for the process: a change of it needs a restart
    /// ([`Config::restart_needed`]).
    pub fn declared(&self) -> bool {
        self.declared
    }

    /// Records the outcome of a reload for `status.json`: the `problems`
    /// of a refused configuration (the first [`REJECTED_PROBLEMS`] are
    /// kept), or none once a reload succeeds. Asks `shared`'s writer for a
    /// write when that changes what the files show. (A refused reload keeps
    /// the running configuration: readiness does not change.)
    pub fn show_rejected(&self, shared: &Shared, mut problems: Vec<String>) {
        problems.truncate(REJECTED_PROBLEMS);
        let changed = self.rejected.send_if_modified(|shown| {
            let changed = *shown != problems;
            *shown = problems;
            changed
        });
        if changed {
            shared.writes().request();
        }
    }

    /// The writers, in set-name order.
    pub fn writers(&self) -> impl Iterator<Item = &Writer> {
        self.writers.iter().map(|(w, _)| w)
    }

    /// Prepares every set's directory ([`Writer::prepare`]).
    pub fn prepare(&self) -> Result<(), WriteError> {
        self.writers.iter().try_for_each(|(w, _)| w.prepare())
    }

    /// Publishes each running set's members from `config` into `shared`.
    /// A running set `config` no longer names (dropped or renamed) gets no
    /// members: it serves nothing (its files hold no profile, its endpoint
    /// token is refused every profile) until a restart removes it. Returns,
    /// for the log, the sets `config` names that are not running and the
    /// running ones it does not name (the layout changes only at a restart:
    /// volumes are in the pod spec).
    pub fn publish_members(&self, shared: &Shared, config: &Config) -> (Vec<String>, Vec<String>) {
        for (w, _) in &self.writers {
            match config.output_set(&w.set) {
                Some(set) => shared.set_members(&w.set, set.profiles.iter().cloned()),
                None => shared.set_members(&w.set, []),
            }
        }
        let running = |name: &str| self.writers().any(|w| w.set == name);
        let new = config
            .outputs
            .iter()
            .filter(|s| !running(&s.name))
            .map(|s| s.name.clone())
            .collect();
        let gone = self
            .writers()
            .filter(|w| config.output_set(&w.set).is_none())
            .map(|w| w.set.clone())
            .collect();
        (new, gone)
    }

    /// Installs `binary` as the process-mode helper in each set that holds
    /// a process-mode profile of `config` (and stops checking it in the
    /// others). Tries every set; returns the first error.
    pub fn install_helpers(
        &self,
        shared: &Shared,
        config: &Config,
        binary: &Path,
    ) -> Result<(), WriteError> {
        let mut first = None;
        for (w, helper) in &self.writers {
            let needs = config.profiles.iter().any(|p| {
                p.credentials == CredentialsMode::Process && shared.in_set(&w.set, &p.name)
            });
            if !needs {
                helper.forget();
            } else if let Err(e) = w.install_tracked_helper(binary, helper) {
                tracing::error!(set = %w.set, error = %e, "cannot install the credential_process helper");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The still-valid sessions an earlier run left in the sets' dirs, each
    /// adopted only for a profile of the set it was found in ([`super::adopt`]);
    /// the latest-expiring one when several sets hold one.
    pub fn adopt(
        &self,
        shared: &Shared,
        profiles: &[Arc<Profile>],
        now: SystemTime,
    ) -> BTreeMap<String, Session> {
        let mut out: BTreeMap<String, Session> = BTreeMap::new();
        for w in self.writers() {
            let members: Vec<Arc<Profile>> = profiles
                .iter()
                .filter(|p| shared.in_set(&w.set, &p.name))
                .cloned()
                .collect();
            for (name, s) in super::adopt(&w.dir, &members, now) {
                if out.get(&name).is_none_or(|o| o.expiration < s.expiration) {
                    out.insert(name, s);
                }
            }
        }
        out
    }

    /// Writes every set ([`Writer::write_files`]), even when one fails;
    /// records whether all succeeded. Returns how many files were replaced
    /// or removed, or the first error.
    pub fn write(&self, shared: &Shared, now: SystemTime) -> Result<usize, WriteError> {
        self.write_pass(shared, now).map(|(files, _)| files)
    }

    /// [`Sets::write`], returning also the time from `now` until just after
    /// the first live session the files show expires (so that the writer
    /// removes it then).
    fn write_pass(
        &self,
        shared: &Shared,
        now: SystemTime,
    ) -> Result<(usize, Option<Duration>), WriteError> {
        let mut first = None;
        let mut written = 0;
        let mut expires: Option<SystemTime> = None;
        let mut pass = WritePass::default();
        let rejected = self.rejected.borrow().clone();
        for (w, _) in &self.writers {
            match w.write_files(shared, &rejected, self.declared, now, &mut pass) {
                Ok((n, e)) => {
                    written += n;
                    expires = expires.into_iter().chain(e).min();
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        shared.record_write(pass, first.is_none());
        if let Some(e) = first {
            return Err(e);
        }
        // Wake just after the expiry so the session is seen as expired.
        let wait = expires.and_then(|e| e.duration_since(now).ok());
        Ok((written, wait.map(|d| d + Duration::from_millis(5))))
    }

    /// Keeps every set's outputs current until `shutdown` (see
    /// [`Writer::run`]).
    pub async fn run(self, shared: Arc<Shared>, shutdown: CancellationToken) {
        self.keep_current(shared, shutdown, &AtomicUsize::new(0))
            .await
    }

    /// [`Sets::run`], adding the number of files each pass replaced or
    /// removed to `written`.
    pub(crate) async fn keep_current(
        self,
        shared: Arc<Shared>,
        shutdown: CancellationToken,
        written: &AtomicUsize,
    ) {
        let jitter = self
            .writers
            .first()
            .map_or(schedule::random_jitter as schedule::Jitter, |(w, _)| {
                w.jitter
            });
        let clock = self
            .writers
            .first()
            .map_or_else(Clock::system, |(w, _)| w.clock);
        let mut failures: u32 = 0;
        loop {
            let now = clock.now();
            for (w, helper) in &self.writers {
                if let Err(e) = w.check_helper(helper) {
                    tracing::error!(set = %w.set, error = %e, "cannot reinstall the credential_process helper");
                }
            }
            let wait = match self.write_pass(&shared, now) {
                Ok((files, expiry)) => {
                    written.fetch_add(files, Ordering::Relaxed);
                    failures = 0;
                    expiry.map_or(RECHECK_INTERVAL, |d| d.min(RECHECK_INTERVAL))
                }
                Err(_) => {
                    let d = schedule::backoff(failures, jitter());
                    failures = failures.saturating_add(1);
                    d
                }
            };
            tokio::select! {
                _ = state_changed(&shared) => settle(&shared, &shutdown).await,
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Env, Flags};

    /// Two sets, in file mode (the tests plant `credentials` files).
    fn config(root: &Path) -> Config {
        let yaml = format!(
            "region: eu-west-1\ncredentials: file\nprofiles:\n  a: arn:aws:iam::111122223333:role/a\n  b: arn:aws:iam::111122223333:role/b\noutputs:\n  one: {{ dir: {}, profiles: [a] }}\n  two: {{ dir: {}, profiles: [b] }}\n",
            root.join("one").display(),
            root.join("two").display()
        );
        Config::load_text(
            &Flags::default(),
            &Env::new(),
            Path::new("c.yaml"),
            yaml.as_bytes(),
        )
        .unwrap()
    }

    /// Two sets under `root`, prepared, with their members published.
    fn prepared(root: &Path) -> (Config, Arc<Shared>, Sets) {
        let c = config(root);
        let shared = Shared::new();
        let sets = Sets::new(
            &c,
            schedule::random_jitter,
            Clock::system(),
            &Metrics::new(),
        );
        sets.prepare().unwrap();
        sets.publish_members(&shared, &c);
        (c, shared, sets)
    }

    /// A credentials file as rolecall writes it, with a session for each of
    /// `names` expiring at `exp`.
    fn credentials(names: &[&str], exp: SystemTime) -> String {
        let mut s = String::new();
        for n in names {
            s += &format!(
                "# arn:aws:iam::111122223333:role/{n} expires {}\n[{n}]\naws_access_key_id = ASIA{n}\naws_secret_access_key = secret{n}\naws_session_token = token{n}\n",
                crate::session::format_time(exp)
            );
        }
        s
    }

    #[test]
    fn a_refused_reload_is_shown_in_every_set_until_a_success() {
        let root = tempfile::tempdir().unwrap();
        let (_, shared, sets) = prepared(root.path());
        let status =
            |set: &str| std::fs::read_to_string(root.path().join(set).join("status.json")).unwrap();
        let take_pending_change =
            |shared: &Shared| std::pin::pin!(shared.writes().requested()).enable();
        // Taken: the members already requested a write.
        let _ = take_pending_change(&shared);
        let problems: Vec<String> = (0..8).map(|i| format!("problem {i}")).collect();
        sets.show_rejected(&shared, problems.clone());
        assert!(take_pending_change(&shared), "a change wakes the writer");
        sets.show_rejected(&shared, problems);
        assert!(!take_pending_change(&shared), "the same problems do not");
        // A clone (the writer task's) shows what the supervisor recorded.
        sets.clone().write(&shared, SystemTime::now()).unwrap();
        for set in ["one", "two"] {
            let s = status(set);
            assert!(s.contains("problem 4") && !s.contains("problem 5"), "{s}");
        }
        sets.show_rejected(&shared, Vec::new());
        sets.write(&shared, SystemTime::now()).unwrap();
        assert!(!status("one").contains("problem"));
    }

    #[test]
    fn a_session_left_in_a_set_s_dir_is_adopted_only_for_that_set_s_profiles() {
        let root = tempfile::tempdir().unwrap();
        let (c, shared, sets) = prepared(root.path());
        let now = SystemTime::now();
        let exp = now + Duration::from_secs(3000);
        // Set one's dir holds a session for b too (b was moved to set two
        // since): it is not adopted from there.
        std::fs::write(
            root.path().join("one/credentials"),
            credentials(&["a", "b"], exp),
        )
        .unwrap();
        let profiles: Vec<Arc<Profile>> = c.profiles.iter().cloned().map(Arc::new).collect();
        let adopted = sets.adopt(&shared, &profiles, now);
        assert_eq!(adopted.keys().collect::<Vec<_>>(), ["a"]);
        std::fs::write(
            root.path().join("two/credentials"),
            credentials(&["b"], exp),
        )
        .unwrap();
        let adopted = sets.adopt(&shared, &profiles, now);
        assert_eq!(adopted.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn one_set_s_failed_write_does_not_stop_the_other_s() {
        let root = tempfile::tempdir().unwrap();
        let (_, shared, sets) = prepared(root.path());
        // Set one's dir replaced by a file: its writes fail.
        std::fs::remove_dir(root.path().join("one")).unwrap();
        std::fs::write(root.path().join("one"), "not a dir").unwrap();
        assert!(sets.write(&shared, SystemTime::now()).is_err());
        assert!(!shared.outputs_written());
        assert!(root.path().join("two/status.json").is_file());
    }
}
