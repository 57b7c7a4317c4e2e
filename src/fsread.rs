//! The one way rolecall reads a file.
//!
//! Every file rolecall reads (the token, the configuration file, its own
//! outputs at start, `status.json` for `rolecall status`, and
//! `credential-process.json` for the helper) goes through [`read`], which:
//!
//! - opens with `O_NONBLOCK | O_CLOEXEC`, so a FIFO planted at the path
//!   cannot block the open or the read;
//! - with [`Follow::No`] (files in rolecall's own output dir) also with
//!   `O_NOFOLLOW`, so a planted symlink is refused, never followed; inputs
//!   that kubelet mounts as symlinks (the token, a ConfigMap file) use
//!   [`Follow::Yes`];
//! - checks the path before opening (nothing but a regular file is opened,
//!   so no device is ever opened) and the opened descriptor again with
//!   `fstat`, so a path swapped between the two checks is still refused;
//! - reads at most `cap + 1` bytes, so a huge file (or a link to
//!   `/dev/zero`) costs at most `cap` bytes of memory.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Whether the last component of the path may be a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Follow it (the token, the configuration file): the target must still
    /// be a regular file.
    Yes,
    /// Refuse it (files in rolecall's own output dir).
    No,
}

/// Why a file was not read. Messages are sentence tails: the caller names
/// the file ("token file /x is a directory, not a file").
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("does not exist")]
    Missing,
    #[error("is a directory, not a file")]
    IsDirectory,
    #[error("is a symbolic link, which rolecall does not follow here")]
    Symlink,
    #[error("is not a regular file (a FIFO, socket or device?)")]
    NotRegular,
    #[error("is larger than {cap} bytes")]
    TooLarge { cap: u64 },
    #[error("could not be read: {0}")]
    Io(#[source] io::Error),
}

impl ReadError {
    fn from_io(e: io::Error, follow: Follow) -> ReadError {
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => ReadError::Missing,
            Some(libc::EISDIR) => ReadError::IsDirectory,
            // O_NOFOLLOW on a symlink.
            Some(libc::ELOOP) if follow == Follow::No => ReadError::Symlink,
            // Opening a Unix socket.
            Some(libc::ENXIO) | Some(libc::EOPNOTSUPP) => ReadError::NotRegular,
            _ => ReadError::Io(e),
        }
    }

    /// Whether the file is simply not there (as opposed to hostile or broken).
    pub fn is_missing(&self) -> bool {
        matches!(self, ReadError::Missing)
    }
}

fn refuse_non_regular(ft: std::fs::FileType) -> Result<(), ReadError> {
    if ft.is_file() {
        Ok(())
    } else if ft.is_dir() {
        Err(ReadError::IsDirectory)
    } else if ft.is_symlink() {
        Err(ReadError::Symlink)
    } else {
        Err(ReadError::NotRegular)
    }
}

/// Opens `path` as described in the module documentation: a regular file,
/// non-blocking, not following a final symlink unless `follow` says so.
pub fn open(path: &Path, follow: Follow) -> Result<File, ReadError> {
    // Checked before opening, so that no device or FIFO is ever opened in
    // the usual case; the fstat below closes the race.
    let meta = match follow {
        Follow::Yes => std::fs::metadata(path),
        Follow::No => std::fs::symlink_metadata(path),
    }
    .map_err(|e| ReadError::from_io(e, follow))?;
    refuse_non_regular(meta.file_type())?;
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if follow == Follow::No {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| ReadError::from_io(e, follow))?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    refuse_non_regular(meta.file_type())?;
    Ok(file)
}

/// Reads the whole of `path`, at most `cap` bytes (see the module docs).
pub fn read(path: &Path, cap: u64, follow: Follow) -> Result<Vec<u8>, ReadError> {
    let file = open(path, follow)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(len.min(cap).saturating_add(1).min(1 << 20) as usize);
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::from_io(e, follow))?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(p: &Path) {
        crate::sys::mkfifo(p, 0o600).expect("mkfifo");
    }

    #[test]
    fn reads_a_regular_file_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read(&p, 5, Follow::No).unwrap(), b"hello");
        assert!(matches!(
            read(&p, 4, Follow::No),
            Err(ReadError::TooLarge { cap: 4 })
        ));
        assert!(
            read(&dir.path().join("nope"), 5, Follow::No)
                .unwrap_err()
                .is_missing()
        );
        assert!(matches!(
            read(dir.path(), 5, Follow::Yes),
            Err(ReadError::IsDirectory)
        ));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        mkfifo(&p);
        for follow in [Follow::Yes, Follow::No] {
            assert!(matches!(read(&p, 1024, follow), Err(ReadError::NotRegular)));
        }
        // A symlink to it, followed, is refused the same way.
        let l = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(matches!(
            read(&l, 1024, Follow::Yes),
            Err(ReadError::NotRegular)
        ));
    }

    #[test]
    fn a_symlink_is_followed_only_when_asked_and_never_to_a_device() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"data").unwrap();
        let l = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &l).unwrap();
        assert!(matches!(
            read(&l, 1024, Follow::No),
            Err(ReadError::Symlink)
        ));
        assert_eq!(read(&l, 1024, Follow::Yes).unwrap(), b"data");
        let z = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &z).unwrap();
        assert!(matches!(
            read(&z, 1024, Follow::No),
            Err(ReadError::Symlink)
        ));
        assert!(matches!(
            read(&z, 1024, Follow::Yes),
            Err(ReadError::NotRegular)
        ));
        assert!(matches!(
            read(Path::new("/dev/zero"), 1024, Follow::Yes),
            Err(ReadError::NotRegular)
        ));
    }

    #[test]
    fn a_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&p).unwrap();
        assert!(matches!(
            read(&p, 1024, Follow::No),
            Err(ReadError::NotRegular)
        ));
    }
}
