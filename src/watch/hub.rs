//! One notify watcher per process, shared by every watched file: one
//! inotify instance and one thread, however many files rolecall watches
//! (the token, the configuration). The node's per-user limit of inotify
//! instances (`fs.inotify.max_user_instances`, 128 by default, shared by
//! every container of that user on the node) then counts each sidecar once.
//!
//! Each [`FileEvents`](super::FileEvents) subscribes with its [`Filter`];
//! an event wakes the subscribers whose filter it concerns. The list of
//! subscribers has its own lock, never held while notify is called: notify's
//! `watch` waits for its event thread, which may be delivering an event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{Filter, Wake};

/// One watched file's interest: its filter and where to send wake-ups.
struct Sub {
    id: u64,
    filter: Filter,
    tx: mpsc::Sender<()>,
    lost: Arc<AtomicBool>,
}

/// Watchers whose event thread could not start, given up (see
/// [`Hub::start`]) before the hub stops trying: each keeps one descriptor.
const MAX_THREADLESS_WATCHERS: usize = 4;

/// Why the watcher is not running.
#[derive(Debug)]
pub(super) enum StartError {
    /// inotify's own error (the instance limit, or the process's open files).
    Notify(notify::Error),
    /// Its event thread could not be started (the pod's pids limit): this
    /// attempt met the limit.
    NoThread,
    /// Earlier watchers' threads could not start; the hub stopped trying
    /// ([`MAX_THREADLESS_WATCHERS`]).
    GivenUp,
}

#[derive(Default)]
struct Watching {
    watcher: Option<notify::RecommendedWatcher>,
    /// Watchers given up because their thread did not start.
    threadless: usize,
    /// How many subscribers watch each directory.
    dirs: HashMap<PathBuf, usize>,
}

pub(super) struct Hub {
    watching: Mutex<Watching>,
    subs: Arc<RwLock<Vec<Sub>>>,
    next_id: AtomicU64,
}

/// The process's hub.
pub(super) static HUB: LazyLock<Hub> = LazyLock::new(|| Hub {
    watching: Mutex::default(),
    subs: Arc::default(),
    next_id: AtomicU64::new(1),
});

impl Hub {
    /// Registers a watched file; its wake-ups go to `tx` (and `lost` is
    /// set when its directory's watch died). Returns its id.
    pub(super) fn subscribe(
        &self,
        filter: Filter,
        tx: mpsc::Sender<()>,
        lost: Arc<AtomicBool>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        subs.push(Sub {
            id,
            filter,
            tx,
            lost,
        });
        id
    }

    pub(super) fn unsubscribe(&self, id: u64) {
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.id != id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watching> {
        self.watching.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the process's watcher if it is not running; the error is
    /// inotify's (the instance limit, or the process's open files), or
    /// that its thread could not start.
    pub(super) fn start(&self) -> Result<(), StartError> {
        let mut w = self.lock();
        if w.watcher.is_some() {
            return Ok(());
        }
        if w.threadless >= MAX_THREADLESS_WATCHERS {
            return Err(StartError::GivenUp);
        }
        let subs = self.subs.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let subs = subs.read().unwrap_or_else(|e| e.into_inner());
            for s in subs.iter() {
                let wake = match &res {
                    Ok(event) => s.filter.wakes(event),
                    // The watch may be broken (the queue failed, a
                    // directory vanished under it): set it up again.
                    Err(_) => Wake::Lost,
                };
                if wake == Wake::No {
                    continue;
                }
                if wake == Wake::Lost {
                    s.lost.store(true, Ordering::SeqCst);
                }
                // Full channel: a wake-up is already pending, enough.
                let _ = s.tx.try_send(());
            }
        };
        let mut watcher = notify::recommended_watcher(handler).map_err(StartError::Notify)?;
        // notify ignores a failure to start its event thread (at the pod's
        // pids limit); then every call of the watcher panics, and so does
        // its drop, but for `configure`, a no-op for inotify that returns
        // the error instead. Such a watcher is leaked (its wake-up
        // descriptor), at most MAX_THREADLESS_WATCHERS times.
        if watcher.configure(notify::Config::default()).is_err() {
            std::mem::forget(watcher);
            w.threadless += 1;
            return Err(StartError::NoThread);
        }
        w.watcher = Some(watcher);
        Ok(())
    }

    /// Watches `dir` for one more subscriber. Asks notify every time, so
    /// that a watch the kernel dropped (its directory deleted) is set up
    /// again even while another subscriber counts it.
    pub(super) fn watch(&self, dir: &Path) -> Result<(), notify::Error> {
        let mut w = self.lock();
        let Some(watcher) = w.watcher.as_mut() else {
            return Err(notify::Error::generic("the file watcher is not running"));
        };
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        *w.dirs.entry(dir.to_owned()).or_default() += 1;
        Ok(())
    }

    /// One subscriber less watches `dir`; the last one removes the watch.
    pub(super) fn unwatch(&self, dir: &Path) {
        let mut w = self.lock();
        let left = match w.dirs.get_mut(dir) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => return,
        };
        if left == 0 {
            w.dirs.remove(dir);
            if let Some(watcher) = w.watcher.as_mut() {
                let _ = watcher.unwatch(dir);
            }
        }
    }
}
