//! Noticing configuration changes: the configuration file is watched like
//! the token ([`FileEvents`]: its directory, kubelet's `..data` swap of a
//! ConfigMap volume, the poll fallback), and each change of its bytes
//! ([`Tracker`]: the same bytes are no change, even after the file was
//! gone) asks the supervisor for a reload, as `SIGHUP` does.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::FileEvents;
use crate::config::MAX_CONFIG_BYTES;
use crate::fsread::{Change, Tracker};

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
    pub metrics: crate::metrics::Metrics,
}

impl<C> ConfigWatcher<C> {
    pub async fn run(self, shutdown: CancellationToken) {
        // Armed before the first read: a change after it is an event, a
        // change since the configuration was loaded is seen by the read.
        let mut events = FileEvents::new(&self.config_file, "configuration", self.metrics.clone());
        let mut tracker = Tracker::starting_from(&self.config_file, MAX_CONFIG_BYTES, self.loaded);
        self.act(tracker.check()).await;
        while events.next(self.poll_interval, &shutdown).await {
            self.act(tracker.check()).await;
        }
    }

    /// Asks for a reload of new content, as `Config::load` would read it;
    /// keeps the running configuration while the file cannot be read.
    async fn act(&self, change: Change) {
        match change {
            Change::None => {}
            Change::Unreadable(e) => {
                tracing::warn!(path = %self.config_file.display(), error = %e, "the configuration file cannot be read; keeping the running configuration until it is back");
            }
            Change::Restored => {
                tracing::info!(path = %self.config_file.display(), "the configuration file can be read again and is unchanged; nothing to reload");
            }
            Change::Content(_) => {
                tracing::info!(path = %self.config_file.display(), "configuration file changed; reloading");
                let _ = self.changed.send((self.reload)()).await;
            }
        }
    }
}
