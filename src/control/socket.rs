//! Creating the control socket safely, and removing it.
//!
//! The directory is private to the rolecall container (an emptyDir only it
//! mounts). It is created 0700 when missing; an existing one must be a real
//! directory owned by this user or by root, and is made 0700 when it is
//! ours. Kubernetes' emptyDir is root-owned and 0777: that is accepted,
//! because the socket itself is 0600 (bound under a temporary name, made
//! 0600, then renamed into place) and every connection's peer is checked
//! (`SO_PEERCRED`, see `super::admit_peer`).
//!
//! A socket left by a killed run is replaced, unless a process still
//! answers on it; anything else at the path is left alone and reported.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

use crate::config::MAX_SOCKET_PATH_BYTES;

/// Why the socket could not be set up: the sidecar runs on without it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error(
        "cannot create the control socket's directory {dir}: {source}; mount an emptyDir at {dir}, or set control_socket: \"\" to silence this"
    )]
    Unwritable {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the control socket's directory {dir} {why}; it is left alone: mount an emptyDir there (only in the rolecall container), or set control_socket to another path"
    )]
    BadDir { dir: PathBuf, why: String },
    #[error(
        "{path} exists and is not a socket ({kind}); it is left alone: remove it, or set control_socket to another path"
    )]
    NotASocket { path: PathBuf, kind: &'static str },
    #[error(
        "another process answers on the control socket {path} (a second rolecall in this container?); this one runs without it"
    )]
    InUse { path: PathBuf },
    #[error(
        "cannot create the control socket {path}: {source}; mount an emptyDir at its directory, or set control_socket: \"\" to silence this"
    )]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The socket this process bound, to remove it (and only it) at shutdown.
#[derive(Debug)]
pub(crate) struct Bound {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Bound {
    /// Removes the socket if it is still the one this process bound.
    pub fn remove(&self) {
        if let Ok(m) = fs::symlink_metadata(&self.path)
            && m.file_type().is_socket()
            && m.dev() == self.dev
            && m.ino() == self.ino
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Sets up the directory and binds the socket at `path` (0600).
pub(crate) async fn bind(path: &Path) -> Result<(UnixListener, Bound), SetupError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    prepare_dir(dir, crate::sys::effective_uid())?;
    clear_stale(path).await?;
    let bind_err = |source| SetupError::Bind {
        path: path.to_owned(),
        source,
    };
    let tmp = dir.join(format!(".rolecall-{}.sock", std::process::id()));
    let listener = if tmp.as_os_str().len() <= MAX_SOCKET_PATH_BYTES {
        let _ = fs::remove_file(&tmp);
        let l = UnixListener::bind(&tmp).map_err(bind_err)?;
        let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(bind_err(e));
        }
        l
    } else {
        // No room for a temporary name: bound in place, then made 0600;
        // a connection in between is still checked by its peer's uid.
        let l = UnixListener::bind(path).map_err(bind_err)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
        l
    };
    let m = fs::symlink_metadata(path).map_err(bind_err)?;
    Ok((
        listener,
        Bound {
            path: path.to_owned(),
            dev: m.dev(),
            ino: m.ino(),
        },
    ))
}

/// Creates `dir` (0700) when missing; otherwise checks it is a directory
/// (not a link) owned by `uid` or root, and makes it 0700 when it is ours.
fn prepare_dir(dir: &Path, uid: u32) -> Result<(), SetupError> {
    let bad = |why: String| SetupError::BadDir {
        dir: dir.to_owned(),
        why,
    };
    let m = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| SetupError::Unwritable {
                    dir: dir.to_owned(),
                    source,
                });
        }
        Err(source) => {
            return Err(SetupError::Unwritable {
                dir: dir.to_owned(),
                source,
            });
        }
    };
    if m.file_type().is_symlink() {
        return Err(bad("is a symbolic link".into()));
    }
    if !m.is_dir() {
        return Err(bad("is not a directory".into()));
    }
    if m.uid() != uid && m.uid() != 0 {
        return Err(bad(format!(
            "belongs to uid {}, neither this user ({uid}) nor root",
            m.uid()
        )));
    }
    if m.uid() == uid && m.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            SetupError::Unwritable {
                dir: dir.to_owned(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Removes a socket a killed run left at `path`; refuses to touch anything
/// else, or a socket some process still answers on.
async fn clear_stale(path: &Path) -> Result<(), SetupError> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let t = m.file_type();
    if !t.is_socket() {
        let kind = if t.is_symlink() {
            "a symbolic link"
        } else if t.is_dir() {
            "a directory"
        } else if t.is_file() {
            "a regular file"
        } else {
            "a special file"
        };
        return Err(SetupError::NotASocket {
            path: path.to_owned(),
            kind,
        });
    }
    let answered = tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(path)).await;
    if matches!(answered, Ok(Ok(_))) {
        return Err(SetupError::InUse {
            path: path.to_owned(),
        });
    }
    fs::remove_file(path).map_err(|source| SetupError::Bind {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o777
    }

    #[tokio::test]
    async fn a_missing_directory_is_created_private_and_the_socket_is_0600() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("run/rolecall/control.sock");
        let (_l, bound) = bind(&path).await.unwrap();
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        bound.remove();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_open_directory_of_ours_is_made_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let (_l, _b) = bind(&dir.join("c.sock")).await.unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn a_link_a_file_or_a_strangers_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = prepare_dir(&link, crate::sys::effective_uid()).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let file = root.path().join("file");
        fs::write(&file, b"").unwrap();
        let e = prepare_dir(&file, crate::sys::effective_uid()).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        // Owned by us, seen by another uid: neither theirs nor root's.
        let owner = crate::sys::effective_uid();
        if owner != 0 {
            let e = prepare_dir(&real, owner + 1).unwrap_err();
            assert!(e.to_string().contains("belongs to uid"), "{e}");
        }
        // Root's directory is accepted by any user, and left as it is.
        let m = fs::metadata("/").unwrap();
        assert_eq!(m.uid(), 0);
        prepare_dir(Path::new("/"), 12345).unwrap();
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_a_live_one_and_other_files_are_not() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("c.sock");
        // A stale socket: bound, then its listener gone.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (live, _b) = bind(&path).await.unwrap();
        let e = bind(&path).await.unwrap_err();
        assert!(matches!(e, SetupError::InUse { .. }), "{e}");
        drop(live);
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"keep me").unwrap();
        let e = bind(&path).await.unwrap_err();
        assert!(e.to_string().contains("a regular file"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"keep me");
    }

    #[tokio::test]
    async fn shutdown_removes_only_the_socket_it_bound() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("c.sock");
        let (l, bound) = bind(&path).await.unwrap();
        drop(l);
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"another").unwrap();
        bound.remove();
        assert_eq!(fs::read(&path).unwrap(), b"another");
    }
}
