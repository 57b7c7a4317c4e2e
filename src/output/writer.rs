//! The writer: renders the state and replaces the files whose bytes changed,
//! and the task that keeps them current.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::render::served;
use super::{
    CONFIG_FILE, CREDENTIALS_FILE, Helper, PROCESS_FILE, STATUS_FILE, SourceStatus, atomic,
    render_with_source,
};
use crate::clock::Clock;
use crate::config::{Config, OutputSet};
use crate::metrics::Metrics;
use crate::schedule;
use crate::state::{ProfileState, Shared, WritePass};

/// Writes the outputs of one output set: only its members' profiles
/// ([`Shared::snapshot_of`]).
#[derive(Clone, Debug)]
pub struct Writer {
    /// The output set written (its members are kept in [`Shared`]).
    pub set: String,
    pub dir: PathBuf,
    /// The output dir as the application sees it.
    pub app_dir: PathBuf,
    pub mode: u32,
    /// The jitter of the backoff after a failed write (injected, as the
    /// refreshers' is).
    pub jitter: schedule::Jitter,
    /// Wall time of the writes (injected, as the refreshers' is).
    pub clock: Clock,
    /// Counts failed writes.
    pub metrics: Metrics,
}

/// A failed write, naming the file; the previous file is left whole.
#[derive(Debug, thiserror::Error)]
#[error("could not write {path}: {source} (the previous file is kept)")]
pub struct WriteError {
    pub file: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl Writer {
    /// A writer for `dir` (the app sees the same path) with the default
    /// mode, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_dir(dir: &std::path::Path) -> Writer {
        Writer {
            set: crate::config::DEFAULT_SET.into(),
            dir: dir.to_owned(),
            app_dir: dir.to_owned(),
            mode: crate::config::DEFAULT_FILE_MODE,
            jitter: schedule::random_jitter,
            clock: Clock::system(),
            metrics: Metrics::new(),
        }
    }

    /// The writer of the configuration's first output set (the only one
    /// without declared sets).
    pub fn new(config: &Config) -> Writer {
        Writer::for_set(config, &config.outputs[0])
    }

    /// The writer of output set `set` of `config`.
    pub fn for_set(config: &Config, set: &OutputSet) -> Writer {
        Writer {
            set: set.name.clone(),
            dir: set.dir.clone(),
            app_dir: set.app_dir.clone(),
            mode: config.file_mode,
            jitter: schedule::random_jitter,
            clock: Clock::system(),
            metrics: Metrics::new(),
        }
    }

    /// The same writer with `jitter` for its backoff.
    pub fn with_jitter(self, jitter: schedule::Jitter) -> Writer {
        Writer { jitter, ..self }
    }

    /// The mode of an output dir rolecall creates: searchable by whoever
    /// may read the files (0640 gives 0750, 0600 gives 0700).
    pub fn dir_mode(&self) -> u32 {
        let read = self.mode & 0o044;
        0o700 | read | (read >> 2)
    }

    /// Creates the directory if needed and removes temporaries left by a
    /// killed process. A directory rolecall creates gets [`Writer::dir_mode`]
    /// whatever the umask; an existing one (a mounted emptyDir) is left as
    /// it is.
    pub fn prepare(&self) -> Result<(), WriteError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let err = |source| WriteError {
            file: "output_dir",
            path: self.dir.clone(),
            source,
        };
        if std::fs::symlink_metadata(&self.dir).is_err() {
            let mode = self.dir_mode();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&self.dir)
                .map_err(err)?;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(mode))
                .map_err(err)?;
        }
        let removed = atomic::remove_stale_temporaries(&self.dir).map_err(err)?;
        if removed > 0 {
            tracing::info!(removed, dir = %self.dir.display(), "removed temporary files left by an earlier run");
        }
        Ok(())
    }

    /// Renders the current state and writes every file whose content
    /// changed (naming no set: a writer alone is the default set's). Tries every file even when one fails. Returns how many files
    /// it replaced or removed.
    pub fn write(&self, shared: &Shared, now: SystemTime) -> Result<usize, WriteError> {
        let mut pass = WritePass::default();
        let result = self.write_files(shared, &[], false, now, &mut pass);
        shared.record_write(pass, result.is_ok());
        result.map(|(files, _)| files)
    }

    /// [`Writer::write`] with `rejected`, the refused configuration's first
    /// problems for `status.json`, which names the set if `named` (the sets
    /// are declared: [`super::Sets::declared`]), noting what the files hold in `pass`
    /// (the caller records the outcome of every set's write). Returns how
    /// many files it replaced or removed, and when the first live session
    /// it rendered expires (the files change then).
    pub(crate) fn write_files(
        &self,
        shared: &Shared,
        rejected: &[String],
        named: bool,
        now: SystemTime,
        pass: &mut WritePass,
    ) -> Result<(usize, Option<SystemTime>), WriteError> {
        let states = shared.snapshot_of(&self.set);
        let rendered = {
            let states: Vec<&ProfileState> = states.iter().collect();
            let set = named.then_some(self.set.as_str());
            let source = shared.source().as_ref().map(SourceStatus::of);
            render_with_source(&states, rejected, &self.app_dir, set, source, now)
        };
        let mut first_error = None;
        let mut written = 0;
        for (file, contents) in [
            (CREDENTIALS_FILE, Some(rendered.credentials.as_bytes())),
            (CONFIG_FILE, Some(rendered.config.as_bytes())),
            (STATUS_FILE, Some(rendered.status.as_bytes())),
            (
                PROCESS_FILE,
                rendered.process.as_ref().map(|p| p.as_bytes()),
            ),
        ] {
            let result = match contents {
                Some(c) => atomic::replace(&self.dir, file, c, self.mode),
                None => atomic::remove(&self.dir, file),
            };
            match result {
                Ok(true) => {
                    written += 1;
                    tracing::debug!(file, "output written");
                }
                Ok(false) => {}
                Err(source) => {
                    self.metrics.count_write_error(file);
                    let e = WriteError {
                        file,
                        path: self.dir.join(file),
                        source,
                    };
                    let limit = crate::sys::limits::Limit::of(&e.source);
                    if let Some(limit) = limit {
                        self.metrics.count_limit_reached(limit, "output");
                    }
                    let hint = limit.map(|l| l.hint());
                    tracing::error!(file, set = %self.set, error = %e, hint = hint.as_deref(), "write failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // Every file of the set now holds what was rendered: readiness
        // counts these sessions (and only these) as served by this set.
        pass.wrote(
            &self.set,
            states
                .iter()
                .filter_map(|st| served(st, now).map(|s| (st, s)))
                .map(|(st, s)| (st.profile.name.clone(), st.identity().clone(), s.expiration)),
        );
        let expires = states
            .iter()
            .filter_map(|s| s.live_session(now))
            .map(|s| s.expiration)
            .min();
        Ok((written, expires))
    }

    /// Keeps the outputs current until `shutdown`: rewrites on every state
    /// change, when a session expires (to remove it), and after a failed
    /// write with the refresh backoff.
    ///
    /// A state change is written after [`WRITE_DEBOUNCE`], so that the
    /// sessions of one round (profiles refreshed together) are written in
    /// one pass; the first pass, on start, is not delayed.
    ///
    /// Every pass also checks the process-mode helper ([`Writer::check_helper`]),
    /// so a helper replaced from outside is restored within
    /// [`RECHECK_INTERVAL`](super::RECHECK_INTERVAL).
    pub async fn run(self, shared: Arc<Shared>, helper: Arc<Helper>, shutdown: CancellationToken) {
        self.keep_current(shared, helper, shutdown, &AtomicUsize::new(0))
            .await
    }

    /// [`Writer::run`], adding the number of files each pass replaced or
    /// removed to `written` (what the tests count).
    pub(crate) async fn keep_current(
        self,
        shared: Arc<Shared>,
        helper: Arc<Helper>,
        shutdown: CancellationToken,
        written: &AtomicUsize,
    ) {
        super::Sets::from_writers(vec![(self, helper)])
            .keep_current(shared, shutdown, written)
            .await
    }
}

/// How long the writer waits after a state change before it renders, so
/// that one round (a token change, `SIGUSR1`, a reload, a source and its
/// chained profiles: profiles whose STS answers arrive together) is written
/// once instead of once per profile, each pass replacing `credentials` and
/// `status.json` with an fsync each. Short beside any refresh schedule
/// (minutes before expiry) and the SDKs' re-reads; measured on tokio's
/// clock, so paused-time tests see it.
pub const WRITE_DEBOUNCE: Duration = Duration::from_millis(50);

/// Lets the rest of a round arrive: waits [`WRITE_DEBOUNCE`] (cut short by
/// `shutdown`, so that a change just before stopping is still written),
/// then takes the wake-ups that arrived meanwhile, since the render that
/// follows includes them. A change after that render wakes the writer again:
/// none is lost.
pub(super) async fn settle(shared: &Shared, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(WRITE_DEBOUNCE) => {}
        _ = shutdown.cancelled() => {}
    }
    take_pending_change(shared);
}

/// Resolves when the state changed since the last render.
pub(super) async fn state_changed(shared: &Shared) {
    shared.writes().requested().await
}

/// Consumes a pending "state changed" wake-up without waiting. Returns
/// whether there was one.
fn take_pending_change(shared: &Shared) -> bool {
    std::pin::pin!(shared.writes().requested()).enable()
}

#[cfg(test)]
mod tests;
