//! Noticing configuration changes: the configuration file is watched like
//! the token ([`FileEvents`]: its directory, kubelet's `..data` swap of a
//! ConfigMap volume, the poll fallback), and each real change of its content
//! asks the supervisor for a reload, as `SIGHUP` does.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::FileEvents;
use crate::config::MAX_CONFIG_BYTES;
use crate::fsread::{self, Follow};

/// Watches `config_file` until `shutdown`, sending on `changed` whenever its
/// content differs from what was last read.
pub struct ConfigWatcher {
    pub config_file: PathBuf,
    pub poll_interval: Duration,
    /// The supervisor's reload requests: a full channel already holds one,
    /// which is enough (the reload reads the file when it runs).
    pub changed: mpsc::Sender<()>,
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

impl ConfigWatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut events = FileEvents::new(&self.config_file, "configuration");
        let mut last = self.read();
        let mut content = match last {
            Seen::Content(h) => Some(h),
            Seen::Unreadable => None,
        };
        while events.next(self.poll_interval, &shutdown).await {
            let now = self.read();
            if now == last {
                continue;
            }
            last = now;
            match now {
                Seen::Unreadable => {
                    tracing::warn!(path = %self.config_file.display(), "the configuration file cannot be read; keeping the running configuration until it is back");
                }
                Seen::Content(h) if content != Some(h) => {
                    content = Some(h);
                    tracing::info!(path = %self.config_file.display(), "configuration file changed; reloading");
                    let _ = self.changed.try_send(());
                }
                Seen::Content(_) => {}
            }
        }
    }

    /// Reads the file as `Config::load` does (followed if a symlink, a
    /// regular file only, capped) and hashes it.
    fn read(&self) -> Seen {
        match fsread::read(&self.config_file, MAX_CONFIG_BYTES, Follow::Yes) {
            Ok(bytes) => Seen::Content(hash(&bytes)),
            Err(_) => Seen::Unreadable,
        }
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}
