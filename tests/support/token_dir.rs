//! [`TokenDir`]: a kubelet-style projected service-account token volume.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::lock;
use super::utc::civil_parts;

static DATA_DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary directory laid out like kubelet's AtomicWriter output:
///
/// ```text
/// DIR/..2026_11_29_01_02_03.123456789/token   the data (mode 0644)
/// DIR/..data  -> ..2026_11_29_01_02_03.123456789
/// DIR/token   -> ..data/token                 what apps are given
/// ```
pub struct TokenDir {
    tmp: tempfile::TempDir,
    lock: Mutex<()>,
}

impl std::fmt::Debug for TokenDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenDir")
            .field("dir", &self.tmp.path())
            .finish()
    }
}

impl TokenDir {
    /// Creates the directory holding `initial_token`.
    pub fn new(initial_token: &str) -> TokenDir {
        let tmp = tempfile::Builder::new()
            .prefix("rolecall-token-")
            .tempdir()
            .expect("TokenDir: create temp dir");
        let this = TokenDir {
            tmp,
            lock: Mutex::new(()),
        };
        let dir = this.dir();
        let data = this.write_data_dir(initial_token);
        symlink(&data, dir.join("..data")).expect("TokenDir: symlink ..data");
        this.ensure_user_visible();
        this
    }

    /// `DIR/token`, the path an app (or rolecall) is given.
    pub fn path(&self) -> PathBuf {
        self.dir().join("token")
    }

    /// `DIR`, the directory rolecall should watch.
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().to_path_buf()
    }

    /// The timestamped directory `..data` currently points at.
    pub fn data_dir(&self) -> PathBuf {
        let target = std::fs::read_link(self.dir().join("..data")).expect("TokenDir: ..data");
        self.dir().join(target)
    }

    /// The token currently visible through [`path`](Self::path).
    pub fn read(&self) -> String {
        std::fs::read_to_string(self.path()).expect("TokenDir: read token")
    }

    /// Replaces the token exactly like AtomicWriter: new timestamped dir,
    /// `..data_tmp -> new`, `rename(..data_tmp, ..data)`, remove the old dir.
    pub fn rotate(&self, new_token: &str) {
        let _guard = lock(&self.lock);
        let dir = self.dir();
        let old = std::fs::read_link(dir.join("..data")).ok();
        let new = self.write_data_dir(new_token);
        let tmp_link = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp_link);
        symlink(&new, &tmp_link).expect("TokenDir: symlink ..data_tmp");
        std::fs::rename(&tmp_link, dir.join("..data")).expect("TokenDir: rename ..data_tmp");
        self.ensure_user_visible();
        if let Some(old) = old.filter(|old| *old != new) {
            std::fs::remove_dir_all(dir.join(old)).expect("TokenDir: remove old data dir");
        }
    }

    /// Removes the token file inside the current data dir, so `DIR/token`
    /// dangles (reads fail with `NotFound`). A later [`rotate`](Self::rotate)
    /// brings it back.
    pub fn remove_token(&self) {
        let _guard = lock(&self.lock);
        let file = self.data_dir().join("token");
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("TokenDir: remove {}: {e}", file.display()),
        }
    }

    /// Writes `..<UTC timestamp>.<unique digits>/token`; returns the
    /// directory's name (relative to `DIR`).
    fn write_data_dir(&self, token: &str) -> PathBuf {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let (y, mo, d, h, mi, s) = civil_parts(now.as_secs());
        let mut suffix = u64::from(now.subsec_nanos());
        loop {
            // The counter keeps names unique even within one nanosecond.
            let unique =
                (suffix + DATA_DIR_COUNTER.fetch_add(1, Ordering::Relaxed)) % 1_000_000_000;
            let name = format!("..{y:04}_{mo:02}_{d:02}_{h:02}_{mi:02}_{s:02}.{unique:09}");
            let path = self.dir().join(&name);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .expect("TokenDir: chmod data dir");
                    let file = path.join("token");
                    std::fs::write(&file, token).expect("TokenDir: write token");
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                        .expect("TokenDir: chmod token");
                    return PathBuf::from(name);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => suffix += 1,
                Err(e) => panic!("TokenDir: create {}: {e}", path.display()),
            }
        }
    }

    /// `DIR/token -> ..data/token`, created once like kubelet does.
    fn ensure_user_visible(&self) {
        let link = self.path();
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join("token"), &link).expect("TokenDir: symlink token");
        }
    }
}
