//! Noticing token rotations (and, through the same [`FileEvents`], changes
//! of the configuration file: [`ConfigWatcher`]). One notify watcher (one
//! inotify instance) serves every watched file of the process (`hub`).
//!
//! kubelet publishes a projected token by writing a new timestamped directory
//! and swapping the `..data` symlink, so a watch on the token file itself dies
//! at the first rotation. rolecall watches the token's *directory* with
//! notify and, as a fallback for filesystems without events, polls every
//! [`POLL_INTERVAL`]. Events are only a hint: each one (bridged into tokio
//! through a bounded `try_send`, so a burst collapses into one wake-up) makes
//! the watcher re-read the file ([`Tracker`]); only other bytes than the
//! last bytes read bump the generation that refreshers watch. A token that
//! cannot be read is logged once and wakes nobody: the refreshers' own
//! reads fail with the reason, and their backoff retries (at most a
//! minute apart, as the poll) take the token when it is back.
//!
//! Only events that can change what the token path reads wake the watcher
//! (`wakes`): a change to the token's own name or to kubelet's `..data`,
//! the directory itself going away, and rescans. notify's inotify backend
//! also reports opens and read-only closes, and every read of a plain token
//! file (by the watcher itself, a refresher or the application) raises them
//! in the watched directory: reacting to those made the watcher re-read the
//! token forever. Other files in the directory are ignored too.
//!
//! Some layouts raise no event at all (a file bind-mounted alone, a symlink
//! to a file in another directory): the poll notices their changes. When the
//! watched directory is deleted or moved away its watch is dead; the watcher
//! then re-establishes it every [`REWATCH_INTERVAL`] until the directory is
//! back, and re-reads the token each time.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::fsread::{Change, Tracker};
use crate::metrics::Metrics;
use crate::token;
use directory::Watch;

/// How often the token is re-read even without a file event.
pub const POLL_INTERVAL: Duration = Duration::from_secs(60);
/// How often a lost directory watch is re-tried (and the token re-read)
/// while the directory is missing; at most the poll interval.
pub const REWATCH_INTERVAL: Duration = Duration::from_secs(1);
/// The name kubelet's AtomicWriter swaps to publish a new token.
const KUBELET_DATA: &str = "..data";

/// Watches `token_file` until `shutdown`, bumping `changed` whenever its
/// bytes differ from the last bytes read ([`Tracker`]: the same bytes are
/// no change, even after the file was gone for a while).
pub struct TokenWatcher {
    pub token_file: PathBuf,
    pub poll_interval: Duration,
    pub changed: Arc<watch::Sender<u64>>,
    pub metrics: Metrics,
    /// Wall time: whether the token has expired.
    pub clock: Clock,
}

impl TokenWatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut events = FileEvents::new(&self.token_file, "token", self.metrics.clone());
        let mut tracker = Tracker::new(&self.token_file, token::MAX_TOKEN_BYTES);
        self.act(tracker.check(), false);
        while events.next(self.poll_interval, &shutdown).await {
            self.metrics.count_token_check();
            self.act(tracker.check(), true);
        }
    }

    /// Decodes new bytes (the ones read, not a second read) and, after the
    /// first read, announces them; a token that cannot be read is said
    /// once and wakes nobody.
    fn act(&self, change: Change, announce: bool) {
        let bytes = match change {
            Change::None => return,
            Change::Restored => {
                tracing::info!(path = %self.token_file.display(), "token readable again and unchanged");
                return;
            }
            Change::Unreadable(e) => {
                let e = token::TokenError::unreadable(&self.token_file, e);
                tracing::warn!(error = %e, "token unavailable");
                return;
            }
            Change::Content(bytes) => bytes,
        };
        let now = self.clock.now();
        match token::decode(&self.token_file, &bytes, now) {
            Ok(t) => {
                let exp = t.claims.exp.unwrap_or(0);
                self.metrics.record_token_expiry(exp);
                if announce {
                    tracing::info!(path = %self.token_file.display(), exp, "token changed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "token changed but cannot be used"),
        }
        if announce {
            self.changed.send_modify(|g| *g = g.wrapping_add(1));
        }
    }
}

/// The wake-ups of a watched file: a notify event that can change what its
/// path reads (see [`Filter`]), or the poll. Shared by the token and the
/// configuration watchers; `what` names the file in log lines.
pub(crate) struct FileEvents {
    rx: mpsc::Receiver<()>,
    tx: mpsc::Sender<()>,
    lost: Arc<AtomicBool>,
    filter: Filter,
    watch: Watch,
    metrics: Metrics,
}

impl FileEvents {
    pub(crate) fn new(file: &Path, what: &'static str, metrics: Metrics) -> FileEvents {
        let (tx, rx) = mpsc::channel::<()>(1);
        let lost = Arc::new(AtomicBool::new(false));
        let filter = Filter::new(file);
        let mut watch = Watch::new(filter.dir.clone(), what, metrics.clone());
        watch.establish(&tx, &lost, &filter);
        metrics.record_watch_polling(what, watch.limited());
        FileEvents {
            rx,
            tx,
            lost,
            filter,
            watch,
            metrics,
        }
    }

    /// Waits for the next event or poll; false once `shutdown` is cancelled.
    pub(crate) async fn next(&mut self, poll: Duration, shutdown: &CancellationToken) -> bool {
        // While the directory is not watched, try again soon: it may come
        // back (a recreated directory raises no event we can see). Without
        // a watcher at all (the node's inotify limits), the poll is all
        // there is: retrying every second would not free an instance.
        let wait = if self.watch.is_watching() || self.watch.limited() {
            poll
        } else {
            poll.min(REWATCH_INTERVAL)
        };
        tokio::select! {
            Some(()) = self.rx.recv() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return false,
        }
        if self.lost.swap(false, Ordering::SeqCst) {
            tracing::info!(dir = %self.filter.dir.display(), "the {} directory went away; watching it again when it is back", self.watch.what);
            self.watch.drop_watch();
        }
        if !self.watch.is_watching() {
            let was = self.watch.limited();
            self.watch.establish(&self.tx, &self.lost, &self.filter);
            if was != self.watch.limited() {
                self.metrics
                    .record_watch_polling(self.watch.what, self.watch.limited());
                if !self.watch.limited() {
                    tracing::info!(
                        file = self.watch.what,
                        "inotify is available again: watching instead of polling"
                    );
                }
            }
        }
        true
    }
}

/// Which notify events can change what the token path reads.
#[derive(Clone, Debug)]
struct Filter {
    /// The watched directory (the token's parent).
    dir: PathBuf,
    /// The token's own name in it.
    name: Option<std::ffi::OsString>,
}

/// What one notify event means for the watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// Nothing the token path reads can have changed.
    No,
    /// Re-read the token.
    Check,
    /// The watched directory was deleted or moved: its watch is dead.
    Lost,
}

impl Filter {
    fn new(token_file: &Path) -> Filter {
        let dir = watch_dir(token_file);
        // notify reports paths under the absolute form of the watched one.
        let dir = match std::env::current_dir() {
            Ok(cwd) if dir.is_relative() => cwd.join(dir),
            _ => dir,
        };
        Filter {
            dir,
            name: token_file.file_name().map(OsStr::to_owned),
        }
    }

    /// Sorts one event. Opens, reads and read-only closes never change a
    /// file: they come from readers (rolecall's own reads among them).
    fn wakes(&self, event: &notify::Event) -> Wake {
        if event.need_rescan() || event.paths.is_empty() {
            return Wake::Check;
        }
        if let EventKind::Access(kind) = event.kind
            && kind != AccessKind::Close(AccessMode::Write)
        {
            return Wake::No;
        }
        let mut wake = Wake::No;
        for path in &event.paths {
            if *path == self.dir {
                // The directory itself: deleted (`DELETE_SELF`) or moved
                // away (`MOVE_SELF`) ends the watch; anything else (a
                // permission change) may change what can be read.
                if matches!(
                    event.kind,
                    EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                ) {
                    return Wake::Lost;
                }
                wake = Wake::Check;
            } else if path.parent() == Some(self.dir.as_path())
                && let Some(name) = path.file_name()
                && (Some(name) == self.name.as_deref() || name == KUBELET_DATA)
            {
                wake = Wake::Check;
            }
        }
        wake
    }
}

fn watch_dir(token_file: &Path) -> PathBuf {
    match token_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

mod config;
mod directory;
mod hub;
pub use config::ConfigWatcher;

#[cfg(test)]
mod tests;
