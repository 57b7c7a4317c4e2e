//! The endpoint's token: kept across restarts in `<dir>/endpoint-token`, or
//! supplied by the operator and re-read when it changes.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::fsread::{self, Change, Follow, Tracker};
use crate::output::{WriteError, Writer, atomic};
use crate::session::Secret;
use crate::supplied::{
    MAX_TOKEN_BYTES, check_supplied, check_token, read_supplied_token, unreadable,
};

pub const TOKEN_FILE: &str = "endpoint-token";
/// How often a supplied token file is checked for a change (a request also
/// checks it), and the copy in the output dir restored if it was changed.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(5);

/// The token a previous run left in `<dir>/endpoint-token`, if it is a
/// regular file (not a link) owned by this user and well formed.
fn previous_token(dir: &Path) -> Option<Secret> {
    let path = dir.join(TOKEN_FILE);
    let file = match fsread::open(&path, Follow::No) {
        Ok(f) => f,
        Err(e) if e.is_missing() => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "{TOKEN_FILE} {e}: a new token is made");
            return None;
        }
    };
    let me = crate::sys::effective_uid();
    if file.metadata().map(|m| m.uid()).ok() != Some(me) {
        tracing::warn!(path = %path.display(), "{TOKEN_FILE} is not owned by rolecall's user: a new token is made");
        return None;
    }
    let mut bytes = Vec::new();
    if file
        .take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .is_err()
        || bytes.len() as u64 > MAX_TOKEN_BYTES
    {
        tracing::warn!(path = %path.display(), "{TOKEN_FILE} could not be read: a new token is made");
        return None;
    }
    match check_token(&bytes) {
        Ok(t) => Some(Secret::new(t)),
        Err(e) => {
            tracing::warn!(path = %path.display(), "{TOKEN_FILE}: {e}; a new token is made");
            None
        }
    }
}

/// The token a previous run left in `dir`, or a new random one.
fn previous_or_random(dir: &Path) -> Result<Secret, WriteError> {
    if let Some(t) = previous_token(dir) {
        tracing::info!("kept the endpoint token of the previous run");
        return Ok(t);
    }
    random_token().map_err(|source| WriteError {
        file: TOKEN_FILE,
        path: dir.join(TOKEN_FILE),
        source,
    })
}

/// A fresh random token (64 hex characters) from the kernel's CSPRNG.
fn random_token() -> std::io::Result<Secret> {
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut raw))?;
    Ok(Secret::new(
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// Why the endpoint token could not be set up at start (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    Supplied(String),
}

/// The token the endpoint accepts, and its copy in `<dir>/endpoint-token`.
///
/// Without a supplied file, the token a previous run left is kept (so apps
/// that copied it into `AWS_CONTAINER_AUTHORIZATION_TOKEN` survive a
/// sidecar restart), or a random one is made. With a supplied file, its
/// content is used and copied, and re-read whenever the file changes.
pub struct EndpointToken {
    writer: Writer,
    /// The supplied file, followed ([`Tracker`]: other bytes than the last
    /// read are a change, whatever happened to the file meanwhile).
    supplied: Option<Mutex<Tracker>>,
    current: Mutex<Secret>,
}

impl std::fmt::Debug for EndpointToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointToken")
            .field("set", &self.writer.set)
            .field("supplied", &self.supplied)
            .finish_non_exhaustive()
    }
}

impl EndpointToken {
    /// Sets the token up and writes its copy (see the type's docs).
    pub fn start(
        writer: &Writer,
        supplied: Option<&Path>,
    ) -> Result<Arc<EndpointToken>, TokenError> {
        let (token, supplied) = match supplied {
            Some(path) => {
                let mut tracker = Tracker::new(path, MAX_TOKEN_BYTES);
                let token = match tracker.check() {
                    Change::Content(bytes) => check_supplied(path, &bytes),
                    Change::Unreadable(e) => Err(unreadable(path, &e)),
                    // A first look finds bytes or a failure.
                    Change::None | Change::Restored => read_supplied_token(path),
                };
                (
                    token.map_err(TokenError::Supplied)?,
                    Some(Mutex::new(tracker)),
                )
            }
            None => (previous_or_random(&writer.dir)?, None),
        };
        let this = Arc::new(EndpointToken {
            writer: writer.clone(),
            supplied,
            current: Mutex::new(token),
        });
        this.write_copy()?;
        Ok(this)
    }

    /// The output set this token is for.
    pub fn set(&self) -> &str {
        &self.writer.set
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Secret> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token now. Contains a secret: never logged.
    pub fn current(&self) -> Secret {
        self.lock().clone()
    }

    /// Writes `<dir>/endpoint-token` (only when its bytes or mode differ).
    fn write_copy(&self) -> Result<bool, WriteError> {
        let token = self.current();
        atomic::replace(
            &self.writer.dir,
            TOKEN_FILE,
            token.expose().as_bytes(),
            self.writer.mode,
        )
        .map_err(|source| WriteError {
            file: TOKEN_FILE,
            path: self.writer.dir.join(TOKEN_FILE),
            source,
        })
    }

    /// Re-reads a supplied file whose identity changed (one `stat` when it
    /// did not: every request asks). A bad new content is logged (without
    /// the token) and the current token kept.
    pub fn reload_if_changed(&self) {
        self.reload(Tracker::check_if_moved);
    }

    /// Takes the supplied file's new bytes, as `look` finds them.
    fn reload(&self, look: fn(&mut Tracker) -> Change) {
        let Some(tracker) = &self.supplied else {
            return;
        };
        // Held while the file is read: one look at a time, so each
        // version is reported once.
        let mut tracker = tracker.lock().unwrap_or_else(|e| e.into_inner());
        let path = tracker.path().to_owned();
        let token = match look(&mut tracker) {
            Change::None => return,
            Change::Restored => {
                tracing::info!(path = %path.display(), "endpoint token file readable again and unchanged");
                return;
            }
            Change::Unreadable(e) => Err(unreadable(&path, &e)),
            Change::Content(bytes) => check_supplied(&path, &bytes),
        };
        match token {
            Ok(t) => {
                let changed = {
                    let mut cur = self.lock();
                    let changed = cur.expose() != t.expose();
                    *cur = t;
                    changed
                };
                if changed {
                    tracing::info!(path = %path.display(), "endpoint token file changed; the new token is accepted from now on");
                    if let Err(e) = self.write_copy() {
                        tracing::error!(error = %e, "cannot update the copy of the endpoint token");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "endpoint token file changed but is not usable; the previous token is kept");
            }
        }
    }

    /// Every [`TOKEN_RECHECK`] until `shutdown`: reloads a changed supplied
    /// file and restores the copy in the output dir if it was changed or
    /// removed from outside.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TOKEN_RECHECK) => {}
                _ = shutdown.cancelled() => return,
            }
            // A read, not only a stat: a write of the same size within
            // one tick of the filesystem's clock keeps the identity.
            self.reload(Tracker::check);
            match self.write_copy() {
                Ok(true) => {
                    tracing::warn!("{TOKEN_FILE} was changed or removed from outside; rewrote it")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot write the endpoint token"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path) -> Writer {
        Writer::for_dir(dir)
    }

    #[test]
    fn a_new_token_is_random_hex_without_newline_and_a_restart_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = EndpointToken::start(&writer(dir.path()), None)
            .unwrap()
            .current();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        let copy = dir.path().join(TOKEN_FILE);
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), a.expose());
        let b = EndpointToken::start(&writer(dir.path()), None)
            .unwrap()
            .current();
        assert_eq!(a.expose(), b.expose(), "a restart keeps the token");

        // A malformed or linked file is replaced by a new random token.
        std::fs::write(&copy, "short").unwrap();
        let c = EndpointToken::start(&writer(dir.path()), None)
            .unwrap()
            .current();
        assert_ne!(c.expose(), "short");
        assert_eq!(c.expose().len(), 64);
        let other = dir.path().join("elsewhere");
        std::fs::write(&other, "x".repeat(40)).unwrap();
        std::fs::remove_file(&copy).unwrap();
        std::os::unix::fs::symlink(&other, &copy).unwrap();
        let d = EndpointToken::start(&writer(dir.path()), None)
            .unwrap()
            .current();
        assert_ne!(d.expose(), "x".repeat(40), "a planted link is not adopted");
        assert!(!std::fs::symlink_metadata(&copy).unwrap().is_symlink());
    }

    #[test]
    fn tokens_are_checked_without_echoing_them() {
        let good = "A".repeat(32);
        assert_eq!(check_token(good.as_bytes()).unwrap(), good);
        assert_eq!(check_token(format!("{good}\n").as_bytes()).unwrap(), good);
        for (bad, why) in [
            ("Secret-but-short".to_owned(), "16 characters long"),
            (format!("{good}\n\n"), "newline inside"),
            (format!("{good}\nmore"), "newline inside"),
            (format!("{good} tail"), "not visible ASCII"),
            (format!("{good}\u{7}"), "not visible ASCII"),
            (format!("{good}é"), "not visible ASCII"),
            (String::new(), "0 characters long"),
        ] {
            let e = check_token(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(bad.is_empty() || !e.contains(bad.trim()), "{e}");
            assert!(!e.contains("AAAA"), "{e}");
        }
    }

    /// The token `t` serves, and the copy in `dir`.
    fn served(t: &EndpointToken, dir: &Path) -> (String, String) {
        let copy = std::fs::read_to_string(dir.join(TOKEN_FILE)).unwrap();
        (t.current().expose().to_owned(), copy)
    }

    fn both(token: &str) -> (String, String) {
        (token.to_owned(), token.to_owned())
    }

    #[test]
    fn a_supplied_token_is_copied_and_reloaded_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let path = src.path().join("token");
        let first = "f".repeat(40);
        std::fs::write(&path, format!("{first}\n")).unwrap();
        let t = EndpointToken::start(&writer(dir.path()), Some(&path)).unwrap();
        assert_eq!(served(&t, dir.path()), both(&first));
        t.reload_if_changed();
        assert_eq!(served(&t, dir.path()), both(&first), "nothing changed");

        // Replaced by rename, as kubelet swaps `..data`.
        let second = "s".repeat(48);
        std::fs::write(src.path().join("new"), &second).unwrap();
        std::fs::rename(src.path().join("new"), &path).unwrap();
        t.reload_if_changed();
        assert_eq!(served(&t, dir.path()), both(&second));

        // A bad version is refused and the current token kept.
        std::fs::write(src.path().join("new"), "tiny").unwrap();
        std::fs::rename(src.path().join("new"), &path).unwrap();
        t.reload_if_changed();
        assert_eq!(served(&t, dir.path()), both(&second));
    }

    #[test]
    fn a_supplied_token_gone_for_a_while_keeps_serving_and_same_bytes_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let path = src.path().join("token");
        let first = "f".repeat(40);
        std::fs::write(&path, &first).unwrap();
        let t = EndpointToken::start(&writer(dir.path()), Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        t.reload_if_changed();
        assert_eq!(served(&t, dir.path()), both(&first), "the file is gone");
        // Back with the same bytes: the same token, the copy untouched
        // (removed here, so that a rewrite would show).
        std::fs::remove_file(dir.path().join(TOKEN_FILE)).unwrap();
        std::fs::write(&path, &first).unwrap();
        t.reload_if_changed();
        assert_eq!(t.current().expose(), first);
        assert!(
            !dir.path().join(TOKEN_FILE).exists(),
            "nothing was rewritten"
        );
        // The same bytes written in place: no change either.
        std::fs::write(&path, &first).unwrap();
        t.reload_if_changed();
        assert!(
            !dir.path().join(TOKEN_FILE).exists(),
            "nothing was rewritten"
        );
    }

    #[test]
    fn the_periodic_recheck_reads_the_file_whatever_its_identity_says() {
        // A write of the same size may keep the file's identity (within one
        // tick of the filesystem's clock): the recheck reads the bytes.
        let dir = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let path = src.path().join("token");
        std::fs::write(&path, "a".repeat(40)).unwrap();
        let t = EndpointToken::start(&writer(dir.path()), Some(&path)).unwrap();
        let second = "b".repeat(40);
        std::fs::write(&path, &second).unwrap();
        t.reload(Tracker::check);
        assert_eq!(served(&t, dir.path()), both(&second));
    }

    #[test]
    fn a_bad_supplied_token_fails_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("supplied");
        std::fs::write(&path, "tiny-token").unwrap();
        let e = EndpointToken::start(&writer(dir.path()), Some(&path)).unwrap_err();
        assert!(e.to_string().contains("10 characters long"), "{e}");
        assert!(!e.to_string().contains("tiny-token"), "{e}");
    }
}
