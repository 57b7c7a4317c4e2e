//! The process-mode helper binary: installing it and keeping it installed.

use std::path::{Path, PathBuf};

use super::{HELPER_FILE, WriteError, Writer, atomic};
use crate::fsread::{FileId, Follow};

/// The most rolecall reads of its own binary to install it as the helper.
const MAX_HELPER_BYTES: u64 = 1 << 30;

/// The process-mode helper as installed, shared by the code that installs
/// it (start, reload) and the writer's re-check.
#[derive(Debug, Default)]
pub struct Helper(std::sync::Mutex<Option<Installed>>);

impl Helper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Installed>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops checking (no profile uses process mode any more).
    pub fn forget(&self) {
        *self.lock() = None;
    }
}

#[derive(Debug)]
struct Installed {
    /// What it was installed from.
    binary: PathBuf,
    /// The installed file's identity (replaced, modified or re-moded: it
    /// changes), looked at without following a link.
    id: Option<FileId>,
}

impl Writer {
    /// Installs `binary` (rolecall itself) as the process-mode helper,
    /// atomically and only when it differs. Executable by whoever may read
    /// the outputs (0640 gives 0750).
    pub fn install_helper(&self, binary: &Path) -> Result<bool, WriteError> {
        self.install(binary).map(|(installed, _)| installed)
    }

    /// [`Writer::install_helper`], also returning the identity of the file
    /// installed (or found current), taken from the file itself before it
    /// was renamed into place ([`atomic::replace_tracked`]): a change made
    /// between the rename and the record cannot go unnoticed.
    fn install(&self, binary: &Path) -> Result<(bool, FileId), WriteError> {
        let err = |source| WriteError {
            file: HELPER_FILE,
            path: self.dir.join(HELPER_FILE),
            source,
        };
        // `/proc/self/exe` is a link to the running binary: followed.
        let bytes = crate::fsread::read(binary, MAX_HELPER_BYTES, crate::fsread::Follow::Yes)
            .map_err(|e| match e {
                crate::fsread::ReadError::Io(e) => err(e),
                e => err(std::io::Error::other(format!("{} {e}", binary.display()))),
            })?;
        let mode = self.mode | ((self.mode & 0o444) >> 2);
        let (installed, meta) =
            atomic::replace_tracked(&self.dir, HELPER_FILE, &bytes, mode).map_err(err)?;
        if installed {
            tracing::info!(path = %self.dir.join(HELPER_FILE).display(), "installed the credential_process helper");
        }
        Ok((installed, FileId::from(&meta)))
    }

    /// [`Writer::install_helper`], remembering the installed file in
    /// `helper` so that [`Writer::check_helper`] can tell when it changes.
    pub fn install_tracked_helper(
        &self,
        binary: &Path,
        helper: &Helper,
    ) -> Result<bool, WriteError> {
        let (installed, id) = self.install(binary)?;
        *helper.lock() = Some(Installed {
            binary: binary.to_owned(),
            id: Some(id),
        });
        Ok(installed)
    }

    /// Reinstalls the helper if the file at `<dir>/rolecall` is no longer
    /// the one installed (replaced, removed, modified or re-moded). Cheap
    /// when nothing changed: one `lstat`, compared with the identity
    /// remembered at install (device, inode, size, times, mode); the
    /// contents are compared with the running binary only when that
    /// differs. Returns whether it was reinstalled.
    pub fn check_helper(&self, helper: &Helper) -> Result<bool, WriteError> {
        let Some((binary, id)) = helper.lock().as_ref().map(|i| (i.binary.clone(), i.id)) else {
            return Ok(false);
        };
        let path = self.dir.join(HELPER_FILE);
        if id.is_some() && FileId::of(&path, Follow::No) == id {
            return Ok(false);
        }
        let reinstalled = self.install_tracked_helper(&binary, helper)?;
        if reinstalled {
            tracing::warn!(
                path = %path.display(),
                "the credential_process helper was changed or removed from outside; reinstalled it"
            );
        }
        Ok(reinstalled)
    }
}
