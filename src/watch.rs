//! Noticing token rotations.
//!
//! kubelet publishes a projected token by writing a new timestamped directory
//! and swapping the `..data` symlink, so a watch on the token file itself dies
//! at the first rotation. rolecall watches the token's *directory* with
//! notify and, as a fallback for filesystems without events, polls every
//! [`POLL_INTERVAL`]. Events are only a hint: each one (bridged into tokio
//! through a bounded `try_send`, so a burst collapses into one wake-up) makes
//! the watcher re-read the file and compare a hash of its content; only a
//! real change bumps the generation that refreshers watch.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::state::Shared;
use crate::token;

/// How often the token is re-read even without a file event.
pub const POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Watches `token_file` until `shutdown`, bumping `changed` whenever its
/// content differs from what was last seen.
pub struct TokenWatcher {
    pub token_file: PathBuf,
    pub poll_interval: Duration,
    pub changed: Arc<watch::Sender<u64>>,
    pub shared: Arc<Shared>,
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
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let dir = watch_dir(&self.token_file);
        let mut watcher = start_notify(&dir, tx.clone());
        let mut seen = Seen::Nothing;
        self.check(&mut seen, false);
        let mut poll = tokio::time::interval_at(
            tokio::time::Instant::now() + self.poll_interval,
            self.poll_interval,
        );
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(()) = rx.recv() => {}
                _ = poll.tick() => {
                    // The directory may have appeared since the last try.
                    if watcher.is_none() {
                        watcher = start_notify(&dir, tx.clone());
                    }
                }
                _ = shutdown.cancelled() => return,
            }
            self.check(&mut seen, true);
        }
    }

    fn check(&self, seen: &mut Seen, announce: bool) {
        let now = SystemTime::now();
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
                    self.shared.metrics.token_expiry.set(exp as i64);
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

fn watch_dir(token_file: &Path) -> PathBuf {
    match token_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Starts a notify watcher on `dir`, or returns `None` (polling continues)
/// if the directory cannot be watched yet.
fn start_notify(dir: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            // Full channel: a wake-up is already pending, which is enough.
            let _ = tx.try_send(());
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a file watcher; polling only");
            return None;
        }
    };
    match w.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => {
            tracing::debug!(dir = %dir.display(), "watching the token directory");
            Some(w)
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the token directory yet; polling");
            None
        }
    }
}
