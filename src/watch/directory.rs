//! The watch on a watched file's directory, through the process's one
//! notify watcher ([`hub`](super::hub)): set up again when the directory
//! comes back, and given up for the poll at the node's inotify limits
//! (said once per process).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::{Filter, hub};
use crate::metrics::Metrics;

/// The watch on the file's directory, through the process's one notify
/// watcher ([`hub`]); only the watch is set up again when the directory
/// comes back.
pub(super) struct Watch {
    dir: PathBuf,
    /// The watched file, for log lines ("token", "configuration").
    pub(super) what: &'static str,
    /// This file's subscription to the hub (0: none yet).
    sub: u64,
    watching: bool,
    /// Whether the last failure to watch was logged (log transitions only:
    /// a missing directory is re-tried every second).
    warned: bool,
    /// No watcher could be started, or the watch limit was reached: the
    /// node's inotify limits; the file is polled.
    limited: bool,
    /// Where a watcher thread that could not start is counted.
    metrics: Metrics,
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
    pub(super) fn new(dir: PathBuf, what: &'static str, metrics: Metrics) -> Watch {
        Watch {
            dir,
            what,
            sub: 0,
            watching: false,
            warned: false,
            limited: false,
            metrics,
        }
    }

    pub(super) fn is_watching(&self) -> bool {
        self.watching
    }

    pub(super) fn limited(&self) -> bool {
        self.limited
    }

    /// Forgets a dead watch. A directory moved away is still watched by
    /// inode under its old path: remove that too (after `DELETE_SELF` the
    /// watch is already gone and this fails harmlessly).
    pub(super) fn drop_watch(&mut self) {
        if self.watching {
            hub::HUB.unwatch(&self.dir);
        }
        self.watching = false;
    }

    /// Watches the directory, starting the notify watcher first if needed;
    /// if the directory cannot be watched yet, the poll continues.
    pub(super) fn establish(
        &mut self,
        tx: &mpsc::Sender<()>,
        lost: &Arc<AtomicBool>,
        filter: &Filter,
    ) {
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
            Err(e @ (hub::StartError::NoThread | hub::StartError::GivenUp)) => {
                if matches!(e, hub::StartError::NoThread) {
                    self.metrics
                        .count_limit_reached(crate::sys::limits::Limit::Threads, "watch");
                }
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
