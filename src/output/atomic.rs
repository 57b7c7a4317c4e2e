//! Atomic file replacement inside the output directory.
//!
//! A temporary file is created next to the target (same filesystem), written,
//! fsynced, renamed over the target, and the directory is fsynced, so a
//! reader sees the old file or the new one, never a mix, and a crash leaves
//! at most a temporary file that [`remove_stale_temporaries`] cleans at the
//! next start. `rename` replaces a symlink planted at the target instead of
//! following it; the temporary file is created with `O_EXCL`, which never
//! follows one either.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Marker in the names of temporary files, for the clean-up at start.
const TMP_MARKER: &str = ".rolecall-tmp-";

/// Writes `contents` to `dir/name` with `mode`, atomically. Returns `false`
/// without touching the disk when the file already holds exactly these bytes
/// with this mode (and is a regular file, not a symlink).
pub fn replace(dir: &Path, name: &str, contents: &[u8], mode: u32) -> io::Result<bool> {
    let target = dir.join(name);
    if is_current(&target, contents, mode) {
        return Ok(false);
    }
    let tmp = temp_path(dir, name);
    let result = write_new(&tmp, contents, mode).and_then(|()| fs::rename(&tmp, &target));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)?;
    Ok(true)
}

/// [`replace`], also returning the identity (`fstat`) of the file that is
/// now `dir/name` as rolecall wrote or checked it, taken from the open file
/// and never by path: the temporary file before the rename (its `ctime`,
/// which the rename itself may change, from the same descriptor after it,
/// when nothing else moved), or the current file through the descriptor
/// its contents were compared on. Whatever replaces or modifies the path
/// after that differs from the identity returned.
pub fn replace_tracked(
    dir: &Path,
    name: &str,
    contents: &[u8],
    mode: u32,
) -> io::Result<(bool, fs::Metadata)> {
    let target = dir.join(name);
    if let Some(meta) = current_file(&target, contents, mode) {
        return Ok((false, meta));
    }
    let tmp = temp_path(dir, name);
    let written = create_new(&tmp, contents, mode).and_then(|f| {
        let before = f.metadata()?;
        fs::rename(&tmp, &target)?;
        Ok((f, before))
    });
    let (file, before) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    sync_dir(dir)?;
    let after = file.metadata()?;
    let unchanged = (after.dev(), after.ino(), after.size(), after.mode())
        == (before.dev(), before.ino(), before.size(), before.mode())
        && (after.mtime(), after.mtime_nsec()) == (before.mtime(), before.mtime_nsec());
    Ok((true, if unchanged { after } else { before }))
}

/// The metadata of `target` when it is a regular file of ours with exactly
/// `contents` and `mode`, read and checked through one descriptor (opened
/// without following a symlink or blocking on a FIFO).
fn current_file(target: &Path, contents: &[u8], mode: u32) -> Option<fs::Metadata> {
    use std::io::Read as _;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(target)
        .ok()?;
    let meta = f.metadata().ok()?;
    let fits = meta.file_type().is_file()
        && own_uid().is_none_or(|uid| meta.uid() == uid)
        && meta.permissions().mode() & 0o7777 == mode
        && meta.len() == contents.len() as u64;
    if !fits {
        return None;
    }
    let mut read = Vec::with_capacity(contents.len());
    (&f).take(contents.len() as u64 + 1)
        .read_to_end(&mut read)
        .ok()?;
    (read == contents).then_some(meta)
}

/// Removes `dir/name` if it exists (a planted symlink is removed, not followed).
pub fn remove(dir: &Path, name: &str) -> io::Result<bool> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_current(target: &Path, contents: &[u8], mode: u32) -> bool {
    let Ok(meta) = fs::symlink_metadata(target) else {
        return false;
    };
    meta.file_type().is_file()
        && own_uid().is_none_or(|uid| meta.uid() == uid)
        && meta.permissions().mode() & 0o7777 == mode
        && meta.len() == contents.len() as u64
        && crate::fsread::read(target, contents.len() as u64, crate::fsread::Follow::No)
            .is_ok_and(|old| old == contents)
}

/// This process's effective uid (the owner of `/proc/self`): a file owned by
/// anyone else is replaced even when its content is right.
fn own_uid() -> Option<u32> {
    static UID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UID.get_or_init(|| fs::metadata("/proc/self").ok().map(|m| m.uid()))
}

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(
        ".{name}{TMP_MARKER}{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ))
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    create_new(path, contents, mode).map(drop)
}

/// Creates `path` (never following a symlink) with `contents` and `mode`,
/// synced; returns the open file.
fn create_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<File> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        // `create_new` already refuses to follow a symlink; belt and braces.
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // The umask may have narrowed the mode given to open(2).
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(f)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes temporary files a killed rolecall left in `dir`. Returns how many.
///
/// rolecall only ever creates regular files under these names: anything
/// else named like one (a directory, which `remove_file` cannot remove) is
/// not its own, and is skipped with a warning naming it. A temporary that
/// cannot be removed is also only a warning: it is harmless, and start-up
/// must not fail for it.
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.contains(TMP_MARKER)) {
            continue;
        }
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            tracing::warn!(
                path = %path.display(),
                "a directory is named like a rolecall temporary file; rolecall did not create it and leaves it alone (remove it if it is not needed)"
            );
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot remove a temporary file left by an earlier run; it is left in place"
            ),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn writes_with_the_requested_mode_and_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        assert!(replace(dir.path(), "f", b"one", 0o640).unwrap());
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"one");
        assert_eq!(mode_of(&dir.path().join("f")), 0o640);
        assert!(!replace(dir.path(), "f", b"one", 0o640).unwrap());
        assert!(replace(dir.path(), "f", b"one", 0o600).unwrap());
        assert_eq!(mode_of(&dir.path().join("f")), 0o600);
        assert!(replace(dir.path(), "f", b"two", 0o600).unwrap());
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"two");
    }

    #[test]
    fn a_file_owned_by_someone_else_is_replaced_even_with_the_right_content() {
        let dir = tempfile::tempdir().unwrap();
        assert!(replace(dir.path(), "f", b"x", 0o640).unwrap());
        let path = dir.path().join("f");
        let me = fs::metadata(&path).unwrap().uid();
        std::os::unix::fs::chown(&path, Some(me + 1), None).unwrap();
        assert!(replace(dir.path(), "f", b"x", 0o640).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().uid(), me);
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("credentials")).unwrap();
        assert!(replace(dir.path(), "credentials", b"new", 0o640).unwrap());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let meta = fs::symlink_metadata(dir.path().join("credentials")).unwrap();
        assert!(meta.file_type().is_file());
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        assert!(replace(dir.path(), "f", b"old", 0o640).unwrap());
        // A directory at the target makes the rename fail.
        fs::create_dir(dir.path().join("g")).unwrap();
        assert!(replace(dir.path(), "g", b"new", 0o640).is_err());
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".credentials.rolecall-tmp-12-abc"), b"x").unwrap();
        fs::write(dir.path().join(".config.rolecall-tmp-99-def"), b"x").unwrap();
        fs::write(dir.path().join("credentials"), b"keep").unwrap();
        fs::write(dir.path().join(".hidden"), b"keep").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 2);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec![".hidden", "credentials"]);
    }

    #[test]
    fn a_directory_named_like_a_temporary_is_skipped_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let planted = dir.path().join(".credentials.rolecall-tmp-1-abc");
        fs::create_dir(&planted).unwrap();
        fs::write(dir.path().join(".config.rolecall-tmp-2-def"), b"x").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(planted.is_dir());
    }

    #[test]
    fn the_identity_returned_is_the_written_file_s_own() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let (wrote, meta) = replace_tracked(dir.path(), "h", b"helper", 0o750).unwrap();
        assert!(wrote);
        let on_disk = fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            (meta.ino(), meta.size(), meta.mode() & 0o7777),
            (on_disk.ino(), 6, 0o750)
        );
        assert_eq!(
            (meta.ctime(), meta.ctime_nsec()),
            (on_disk.ctime(), on_disk.ctime_nsec()),
            "taken after the rename, when nothing else touched the file"
        );
        // Unchanged: the identity of the file whose contents were compared.
        let (wrote, again) = replace_tracked(dir.path(), "h", b"helper", 0o750).unwrap();
        assert!(!wrote);
        assert_eq!(again.ino(), on_disk.ino());
        // Another file at the path with the same bytes: a new inode, and
        // the identity returned is of the file checked, not of the one
        // installed before.
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"helper").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
        let (wrote, other) = replace_tracked(dir.path(), "h", b"helper", 0o750).unwrap();
        assert!(!wrote);
        assert_eq!(other.ino(), fs::symlink_metadata(&path).unwrap().ino());
        // A symlink or a FIFO is never "current": replaced, without blocking.
        fs::remove_file(&path).unwrap();
        crate::sys::mkfifo(&path, 0o750).unwrap();
        let (wrote, meta) = replace_tracked(dir.path(), "h", b"helper", 0o750).unwrap();
        assert!(wrote && meta.file_type().is_file());
    }

    #[test]
    fn a_fifo_at_the_target_is_replaced_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("credentials");
        crate::sys::mkfifo(&target, 0o640).unwrap();
        assert!(replace(dir.path(), "credentials", b"new", 0o640).unwrap());
        assert_eq!(fs::read(&target).unwrap(), b"new");
    }
}
