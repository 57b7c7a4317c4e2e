//! [`ConfigDir`]: a configuration file the way operators change it: a
//! kubelet ConfigMap volume (AtomicWriter's `..data` swap) or a plain file
//! edited in place, renamed over, or deleted and recreated.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The file's name in the directory, as a ConfigMap key would name it.
const NAME: &str = "rolecall.yaml";

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// A temporary directory holding `rolecall.yaml`, either as a plain file
/// ([`ConfigDir::plain`]) or kubelet-style ([`ConfigDir::configmap`]):
///
/// ```text
/// DIR/..gen_N/rolecall.yaml             the data
/// DIR/..data -> ..gen_N
/// DIR/rolecall.yaml -> ..data/rolecall.yaml
/// ```
pub struct ConfigDir {
    tmp: tempfile::TempDir,
}

impl ConfigDir {
    /// A plain file holding `yaml`.
    pub fn plain(yaml: &str) -> ConfigDir {
        let this = ConfigDir::empty();
        this.edit_in_place(yaml);
        this
    }

    /// A ConfigMap volume whose key holds `yaml`.
    pub fn configmap(yaml: &str) -> ConfigDir {
        let this = ConfigDir::empty();
        this.swap(yaml);
        symlink(Path::new("..data").join(NAME), this.path()).expect("ConfigDir: symlink key");
        this
    }

    fn empty() -> ConfigDir {
        let tmp = tempfile::Builder::new()
            .prefix("rolecall-config-")
            .tempdir()
            .expect("ConfigDir: create temp dir");
        ConfigDir { tmp }
    }

    /// `DIR/rolecall.yaml`, the path given to `--config`.
    pub fn path(&self) -> PathBuf {
        self.tmp.path().join(NAME)
    }

    /// Publishes `yaml` like kubelet's AtomicWriter: a new data directory,
    /// `..data_tmp -> it`, `rename(..data_tmp, ..data)`, the old one removed.
    pub fn swap(&self, yaml: &str) {
        let dir = self.tmp.path();
        let old = std::fs::read_link(dir.join("..data")).ok();
        let name = format!("..gen_{}", GENERATION.fetch_add(1, Ordering::Relaxed));
        std::fs::create_dir(dir.join(&name)).expect("ConfigDir: data dir");
        std::fs::write(dir.join(&name).join(NAME), yaml).expect("ConfigDir: write data");
        let tmp_link = dir.join("..data_tmp");
        symlink(&name, &tmp_link).expect("ConfigDir: symlink ..data_tmp");
        std::fs::rename(&tmp_link, dir.join("..data")).expect("ConfigDir: rename ..data");
        if let Some(old) = old {
            std::fs::remove_dir_all(dir.join(old)).expect("ConfigDir: remove old data dir");
        }
    }

    /// Rewrites the file in place (truncate and write, as an editor may).
    pub fn edit_in_place(&self, yaml: &str) {
        std::fs::write(self.path(), yaml).expect("ConfigDir: write");
    }

    /// Writes `yaml` to a temporary file and renames it over the file.
    pub fn rename_over(&self, yaml: &str) {
        let tmp = self.tmp.path().join(".rolecall.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("ConfigDir: write temporary");
        std::fs::rename(&tmp, self.path()).expect("ConfigDir: rename over");
    }

    /// Deletes the file.
    pub fn remove(&self) {
        std::fs::remove_file(self.path()).expect("ConfigDir: remove");
    }
}
