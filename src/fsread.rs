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
//!
//! It is also the one way rolecall notices that a file changed: [`Tracker`]
//! follows an input (the token, the configuration file, a supplied endpoint
//! token) read after read, and [`FileId`] names one version of a file
//! without reading it. A file *changed* when its bytes differ from the
//! last bytes read; see [`Tracker`] for why the same bytes, however they
//! got there, are no change.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
    read_with_id(path, cap, follow).map(|(bytes, _)| bytes)
}

/// [`read`], also returning the identity of the file read, taken from the
/// opened descriptor before reading: a write during the read changes the
/// file's identity after the one returned, so it is not missed.
fn read_with_id(path: &Path, cap: u64, follow: Follow) -> Result<(Vec<u8>, FileId), ReadError> {
    let file = open(path, follow)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    let mut bytes = Vec::with_capacity(meta.len().min(cap).saturating_add(1).min(1 << 20) as usize);
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::from_io(e, follow))?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok((bytes, FileId::from(&meta)))
}

/// A digest of a file's bytes: equal bytes, equal digests. Only compared
/// within one process (and never logged: it may be a secret's).
pub fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// What identifies one version of a file without reading it: a rename over
/// it (kubelet's `..data` swap) changes the inode, a write the size and
/// times, a `chmod` the mode and ctime. A cheap "has it moved?" before a
/// read, never the proof of a change: a write of the same size within one
/// tick of the filesystem's clock leaves the identity as it was, and a
/// rewrite of the same bytes changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
}

impl FileId {
    /// The identity of the file at `path` (of the link itself with
    /// [`Follow::No`]); `None` if there is nothing to stat.
    pub fn of(path: &Path, follow: Follow) -> Option<FileId> {
        match follow {
            Follow::Yes => std::fs::metadata(path),
            Follow::No => std::fs::symlink_metadata(path),
        }
        .ok()
        .map(|m| FileId::from(&m))
    }
}

impl From<&std::fs::Metadata> for FileId {
    fn from(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
        }
    }
}

/// What a look at a tracked file found.
pub enum Change {
    /// Nothing new: the bytes last read, or the failure last reported.
    None,
    /// Bytes other than the last bytes read (the first read's too).
    Content(Vec<u8>),
    /// Readable again after a failure, with the bytes last read: no change.
    Restored,
    /// It cannot be read, for another reason than last time (or for the
    /// first time): the bytes last read still stand.
    Unreadable(ReadError),
}

impl std::fmt::Debug for Change {
    /// Never the bytes: they may be a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::None => f.write_str("None"),
            Change::Content(b) => write!(f, "Content({} bytes)", b.len()),
            Change::Restored => f.write_str("Restored"),
            Change::Unreadable(e) => write!(f, "Unreadable({e})"),
        }
    }
}

/// Follows one input file (the token, the configuration file, a supplied
/// endpoint token), read after read, and says when it changed: when its
/// bytes differ from the last bytes read ([`digest`]).
///
/// The same bytes are no change, however they got there: a kubelet
/// `..data` swap that republishes the volume for another file, a rewrite,
/// a delete and recreate. A file that cannot be read is reported once per
/// reason; it changed only if it comes back with other bytes. This is what
/// the poll fallback sees anyway (a 60 s poll misses a short gap), so the
/// outcome does not depend on which events arrived. The file is read
/// following a final symlink (kubelet mounts inputs as links into
/// `..data`), a regular file only, at most `cap` bytes.
pub struct Tracker {
    path: PathBuf,
    cap: u64,
    /// The digest of the bytes last read; `None` before any.
    content: Option<u64>,
    /// The identity of the file last looked at (read or failed to read).
    id: Option<FileId>,
    /// The failure last reported; `None` while the file reads.
    failing: Option<String>,
}

impl std::fmt::Debug for Tracker {
    /// Not the digest: it may be a secret's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("path", &self.path)
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// Tracks `path`, nothing read yet: the first read is a change.
    pub fn new(path: &Path, cap: u64) -> Tracker {
        Tracker {
            path: path.to_owned(),
            cap,
            content: None,
            id: None,
            failing: None,
        }
    }

    /// Tracks `path` from bytes already read elsewhere, by their
    /// [`digest`] (the configuration as loaded): a first read finding the
    /// same bytes is no change.
    pub fn starting_from(path: &Path, cap: u64, digest: Option<u64>) -> Tracker {
        Tracker {
            content: digest,
            ..Tracker::new(path, cap)
        }
    }

    /// The tracked file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file and says what changed since the last look.
    pub fn check(&mut self) -> Change {
        match read_with_id(&self.path, self.cap, Follow::Yes) {
            Ok((bytes, id)) => {
                self.id = Some(id);
                let failed = self.failing.take().is_some();
                let d = digest(&bytes);
                if self.content == Some(d) {
                    return if failed {
                        Change::Restored
                    } else {
                        Change::None
                    };
                }
                self.content = Some(d);
                Change::Content(bytes)
            }
            Err(e) => {
                self.id = FileId::of(&self.path, Follow::Yes);
                let reason = e.to_string();
                if self.failing.as_ref() == Some(&reason) {
                    return Change::None;
                }
                self.failing = Some(reason);
                Change::Unreadable(e)
            }
        }
    }

    /// [`Tracker::check`], unless the file's identity is the one last
    /// looked at: one `stat` where a read is too dear (every request).
    /// Misses a write of the same size within one tick of the
    /// filesystem's clock until the next [`Tracker::check`].
    pub fn check_if_moved(&mut self) -> Change {
        if self.id.is_some() && FileId::of(&self.path, Follow::Yes) == self.id {
            return Change::None;
        }
        self.check()
    }
}

/// `path` with the symlinks of its longest existing ancestor resolved
/// (the rest, not created yet, appended as written): where the set's files
/// will really be.
pub fn resolved(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

/// The host name the kernel gives (`/proc/sys/kernel/hostname`), if it
/// can be read.
pub fn hostname() -> Option<String> {
    // A host name is at most 64 bytes.
    let bytes = read(Path::new("/proc/sys/kernel/hostname"), 256, Follow::No).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests;
