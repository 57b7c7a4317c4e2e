//! Noticing configuration changes: the configuration file is watched like
//! the token ([`FileEvents`]: its directory, kubelet's `..data` swap of a
//! ConfigMap volume, the poll fallback), and each real change of its content
//! asks the supervisor for a reload, as `SIGHUP` does.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::FileEvents;
use crate::config::{MAX_CONFIG_BYTES, digest};
use crate::fsread::{self, Follow};

/// Watches `config_file` until `shutdown`, sending `reload()` on `changed`
/// whenever its content differs from what was last read.
pub struct ConfigWatcher<C> {
    pub config_file: PathBuf,
    pub poll_interval: Duration,
    /// The supervisor's commands; a full channel is waited on (the reload
    /// reads the file when it runs).
    pub changed: mpsc::Sender<C>,
    /// The command that asks for a reload.
    pub reload: fn() -> C,
    /// The digest of the content the running configuration was built from
    /// ([`crate::config::Config::file_digest`]); `None` if it was unreadable.
    pub loaded: Option<u64>,
    /// Where the watcher's own metrics go (polling instead of inotify).
    pub shared: std::sync::Arc<crate::state::Shared>,
}

/// What the watcher last saw of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// The hash of its content.
    Content(u64),
    /// It could not be read (missing during a delete-and-recreate, a
    /// directory, too large): the running configuration is kept.
    Unreadable,
}

impl<C> ConfigWatcher<C> {
    pub async fn run(self, shutdown: CancellationToken) {
        // Armed before the first read: a change after it is an event, a
        // change since the configuration was loaded is seen by the read.
        let mut events = FileEvents::new(&self.config_file, "configuration", self.shared.clone());
        let mut tracker = Tracker::new(self.loaded.map_or(Seen::Unreadable, Seen::Content));
        self.act(tracker.observe(self.read())).await;
        while events.next(self.poll_interval, &shutdown).await {
            self.act(tracker.observe(self.read())).await;
        }
    }

    async fn act(&self, change: Change) {
        match change {
            Change::None => {}
            Change::Unreadable => {
                tracing::warn!(path = %self.config_file.display(), "the configuration file cannot be read; keeping the running configuration until it is back");
            }
            Change::Reload => {
                tracing::info!(path = %self.config_file.display(), "configuration file changed; reloading");
                let _ = self.changed.send((self.reload)()).await;
            }
        }
    }

    /// Reads the file as `Config::load` does (followed if a symlink, a
    /// regular file only, capped) and hashes it.
    fn read(&self) -> Seen {
        match fsread::read(&self.config_file, MAX_CONFIG_BYTES, Follow::Yes) {
            Ok(bytes) => Seen::Content(digest(&bytes)),
            Err(_) => Seen::Unreadable,
        }
    }
}

/// What a read of the file means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Nothing new (the same content, or still unreadable).
    None,
    /// The file just became unreadable: say so once; nothing is reloaded.
    Unreadable,
    /// New content: reload.
    Reload,
}

/// Decides, read after read, when the file asks for a reload: only content
/// that differs from the last content read (a file deleted and recreated
/// with the same content reloads nothing).
#[derive(Debug)]
struct Tracker {
    last: Seen,
    content: Option<u64>,
}

impl Tracker {
    fn new(first: Seen) -> Tracker {
        let content = match first {
            Seen::Content(h) => Some(h),
            Seen::Unreadable => None,
        };
        Tracker {
            last: first,
            content,
        }
    }

    fn observe(&mut self, now: Seen) -> Change {
        if now == self.last {
            return Change::None;
        }
        self.last = now;
        match now {
            Seen::Unreadable => Change::Unreadable,
            Seen::Content(h) if self.content != Some(h) => {
                self.content = Some(h);
                Change::Reload
            }
            Seen::Content(_) => Change::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_content_asks_for_a_reload() {
        let (a, b) = (Seen::Content(digest(b"a")), Seen::Content(digest(b"b")));
        let mut t = Tracker::new(a);
        assert_eq!(t.observe(a), Change::None, "an event without a change");
        assert_eq!(t.observe(b), Change::Reload);
        assert_eq!(t.observe(b), Change::None);
        // Deleted: said once, nothing reloaded; back as it was: nothing.
        assert_eq!(t.observe(Seen::Unreadable), Change::Unreadable);
        assert_eq!(t.observe(Seen::Unreadable), Change::None);
        assert_eq!(t.observe(b), Change::None);
        // Deleted and recreated with other content: reloaded.
        assert_eq!(t.observe(Seen::Unreadable), Change::Unreadable);
        assert_eq!(t.observe(a), Change::Reload);
    }

    #[test]
    fn a_change_since_the_configuration_was_loaded_asks_for_a_reload() {
        let loaded = Seen::Content(digest(b"loaded"));
        assert_eq!(Tracker::new(loaded).observe(loaded), Change::None);
        let changed = Seen::Content(digest(b"changed while starting"));
        assert_eq!(Tracker::new(loaded).observe(changed), Change::Reload);
    }

    #[test]
    fn a_file_unreadable_at_start_is_reloaded_when_it_appears() {
        let mut t = Tracker::new(Seen::Unreadable);
        assert_eq!(t.observe(Seen::Unreadable), Change::None);
        assert_eq!(t.observe(Seen::Content(digest(b"a"))), Change::Reload);
    }
}
