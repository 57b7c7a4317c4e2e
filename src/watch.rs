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
//! the watcher re-read the file and compare a hash of its content; only a
//! real change bumps the generation that refreshers watch.
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
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::token;

/// How often the token is re-read even without a file event.
pub const POLL_INTERVAL: Duration = Duration::from_secs(60);
/// How often a lost directory watch is re-tried (and the token re-read)
/// while the directory is missing; at most the poll interval.
pub const REWATCH_INTERVAL: Duration = Duration::from_secs(1);
/// The name kubelet's AtomicWriter swaps to publish a new token.
const KUBELET_DATA: &str = "..data";

/// Watches `token_file` until `shutdown`, bumping `changed` whenever its
/// content differs from what was last seen.
pub struct TokenWatcher {
    pub token_file: PathBuf,
    pub poll_interval: Duration,
    pub changed: Arc<watch::Sender<u64>>,
    pub metrics: Metrics,
    /// Wall time: whether the token has expired.
    pub clock: Clock,
}

/// What the watcher last saw, to report transitions once, not every poll.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Nothing,
    Content(u64),
    Error(String),
}

impl TokenWatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut events = FileEvents::new(&self.token_file, "token", self.metrics.clone());
        let mut seen = Seen::Nothing;
        self.check(&mut seen, false);
        while events.next(self.poll_interval, &shutdown).await {
            self.metrics.count_token_check();
            self.check(&mut seen, true);
        }
    }

    fn check(&self, seen: &mut Seen, announce: bool) {
        let now = self.clock.now();
        let current = match token::read_capped(&self.token_file) {
            Ok(bytes) => {
                let mut h = DefaultHasher::new();
                bytes.hash(&mut h);
                Seen::Content(h.finish())
            }
            Err(e) => Seen::Error(e.to_string()),
        };
        if current == *seen {
            return;
        }
        match &current {
            Seen::Content(_) => match token::read(&self.token_file, now) {
                Ok(t) => {
                    let exp = t.claims.exp.unwrap_or(0);
                    self.metrics.record_token_expiry(exp);
                    if announce {
                        tracing::info!(path = %self.token_file.display(), exp, "token changed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "token changed but cannot be used"),
            },
            Seen::Error(e) => tracing::warn!(error = %e, "token unavailable"),
            Seen::Nothing => {}
        }
        *seen = current;
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
        let mut watch = Watch::new(filter.dir.clone(), what);
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

/// The watch on the file's directory, through the process's one notify
/// watcher ([`hub`]); only the watch is set up again when the directory
/// comes back.
struct Watch {
    dir: PathBuf,
    /// The watched file, for log lines ("token", "configuration").
    what: &'static str,
    /// This file's subscription to the hub (0: none yet).
    sub: u64,
    watching: bool,
    /// Whether the last failure to watch was logged (log transitions only:
    /// a missing directory is re-tried every second).
    warned: bool,
    /// No watcher could be started, or the watch limit was reached: the
    /// node's inotify limits; the file is polled.
    limited: bool,
}

/// Whether the inotify limits were logged: once per process (the token and
/// the configuration watchers meet the same limit).
static LIMIT_LOGGED: AtomicBool = AtomicBool::new(false);
/// Whether the watcher's thread failing to start was logged.
static THREAD_LOGGED: AtomicBool = AtomicBool::new(false);

/// A kernel inotify limit as the node has it (`/proc/sys/fs/inotify/NAME`).
fn inotify_limit(name: &str) -> String {
    crate::fsread::read(
        &Path::new("/proc/sys/fs/inotify").join(name),
        64,
        crate::fsread::Follow::No,
    )
    .ok()
    .and_then(|b| String::from_utf8(b).ok())
    .map(|s| s.trim().to_owned())
    .unwrap_or_else(|| "?".into())
}

/// Logs, once per process, that the node's inotify limits were met.
fn log_limit(what: &'static str, e: &notify::Error, watches: bool) {
    if LIMIT_LOGGED.swap(true, Ordering::SeqCst) {
        return;
    }
    let (sysctl, meaning) = if watches {
        ("max_user_watches", "inotify watches")
    } else {
        (
            "max_user_instances",
            "inotify instances (or this process's open files)",
        )
    };
    let limit = inotify_limit(sysctl);
    tracing::warn!(
        file = what,
        error = %e,
        sysctl = %format!("fs.inotify.{sysctl}"),
        limit = %limit,
        "the node's {meaning} are exhausted: every container running as this user on the node shares fs.inotify.{sysctl} ({limit} here), and each rolecall uses one instance; the token and configuration are polled every 60 s instead, and credentials keep being refreshed. Raise it on the node: sysctl -w fs.inotify.{sysctl}=8192 (docs/OPERATIONS.md, Node limits)"
    );
}

impl Watch {
    fn new(dir: PathBuf, what: &'static str) -> Watch {
        Watch {
            dir,
            what,
            sub: 0,
            watching: false,
            warned: false,
            limited: false,
        }
    }

    fn is_watching(&self) -> bool {
        self.watching
    }

    fn limited(&self) -> bool {
        self.limited
    }

    /// Forgets a dead watch. A directory moved away is still watched by
    /// inode under its old path: remove that too (after `DELETE_SELF` the
    /// watch is already gone and this fails harmlessly).
    fn drop_watch(&mut self) {
        if self.watching {
            hub::HUB.unwatch(&self.dir);
        }
        self.watching = false;
    }

    /// Watches the directory, starting the notify watcher first if needed;
    /// if the directory cannot be watched yet, the poll continues.
    fn establish(&mut self, tx: &mpsc::Sender<()>, lost: &Arc<AtomicBool>, filter: &Filter) {
        if self.sub == 0 {
            self.sub = hub::HUB.subscribe(filter.clone(), tx.clone(), lost.clone());
        }
        match hub::HUB.start() {
            Ok(()) => {}
            Err(hub::StartError::Notify(e)) => {
                // inotify_init fails with EMFILE at the user's instance
                // limit (or the process's file limit).
                self.limited = true;
                log_limit(self.what, &e, false);
                return;
            }
            Err(hub::StartError::NoThread) => {
                self.limited = true;
                if !THREAD_LOGGED.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        file = self.what,
                        hint = %crate::sys::limits::Limit::Threads.hint(),
                        "cannot start the file watcher's thread; the token and configuration are polled every 60 s instead, and credentials keep being refreshed"
                    );
                }
                return;
            }
        }
        self.limited = false;
        match hub::HUB.watch(&self.dir) {
            Ok(()) => {
                tracing::debug!(dir = %self.dir.display(), "watching the {} directory", self.what);
                self.watching = true;
                self.warned = false;
                self.limited = false;
            }
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                self.limited = true;
                log_limit(self.what, &e, true);
            }
            Err(e) => {
                if !self.warned {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the {} directory yet; polling", self.what);
                    self.warned = true;
                }
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.drop_watch();
        if self.sub != 0 {
            hub::HUB.unsubscribe(self.sub);
        }
    }
}

fn watch_dir(token_file: &Path) -> PathBuf {
    match token_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

mod config;
mod hub;
pub use config::ConfigWatcher;

#[cfg(test)]
mod tests;
