//! The files rolecall publishes in the output directory, and the task that
//! keeps them current.
//!
//! `credentials` is the standard shared-credentials file (one section per
//! file-mode profile with a live session); `config` holds a section per
//! profile with its region (and, in process mode, its `credential_process`).
//! Endpoint-only profiles (`credentials: endpoint`) get their `config`
//! section and nothing else: no keys in `credentials` or
//! `credential-process.json`, so no static copy can shadow the endpoint.
//! Both are rendered from [`Shared`] state and replaced atomically, only when
//! their bytes change; expired sessions are dropped from the rendering, and a
//! failed refresh never removes a live one.

pub mod atomic;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use std::collections::BTreeMap;

use crate::config::{Config, CredentialsMode, Profile};
use crate::schedule;
use crate::session::{Secret, Session, format_time, parse_time};
use crate::state::{ProfileState, Shared};
use crate::sts::ini_safe;

pub const CREDENTIALS_FILE: &str = "credentials";
pub const CONFIG_FILE: &str = "config";
/// What `rolecall credential-process` reads: the live sessions of the
/// process-mode profiles. Written only when some profile uses process mode.
pub const PROCESS_FILE: &str = "credential-process.json";
/// The helper binary installed for process mode.
pub const HELPER_FILE: &str = "rolecall";

/// One session in [`PROCESS_FILE`], in the `credential_process` format.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessCredentials {
    pub version: u32,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: String,
}

impl std::fmt::Debug for ProcessCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCredentials")
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// One profile in [`PROCESS_FILE`]: the role the keys belong to (so that a
/// restart adopts them only for the same role) and what the helper prints.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessEntry {
    pub role_arn: String,
    /// The keys' real expiry (RFC 3339), which a restart adopts; the
    /// helper prints `credentials`, whose `Expiration` is the reported one
    /// ([`crate::schedule::reported_expiry`]). Absent in files written
    /// before it existed, whose `Expiration` was the real expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_expiration: Option<String>,
    pub credentials: ProcessCredentials,
}

/// The whole of [`PROCESS_FILE`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessFile {
    pub profiles: BTreeMap<String, ProcessEntry>,
}

/// What `rolecall status` reads: per profile, role, expiry, last refresh and
/// last error. Holds no secret.
pub const STATUS_FILE: &str = "status.json";

/// One profile in [`STATUS_FILE`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProfileStatus {
    pub name: String,
    pub role_arn: String,
    pub credentials: String,
    pub region: Option<String>,
    /// RFC 3339 expiry of the session rolecall last obtained.
    pub expiration: Option<String>,
    pub last_refresh: Option<String>,
    pub last_error: Option<String>,
}

/// The whole of [`STATUS_FILE`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub version: u32,
    pub profiles: Vec<ProfileStatus>,
}

/// How often the writer re-checks its files even without a state change,
/// so that outputs removed or damaged from outside (a recreated volume) are
/// restored. A check of unchanged files only reads them.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(30);

const HEADER: &str = "# Written by rolecall; do not edit: it is replaced as sessions refresh.\n";

/// The rendered contents of both files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// Contains secrets: never logged.
    pub credentials: String,
    pub config: String,
    /// [`STATUS_FILE`] as JSON.
    pub status: String,
    /// [`PROCESS_FILE`] as JSON (secrets), when a profile uses process mode.
    pub process: Option<String>,
}

/// Renders the outputs for the profiles in `states` at `now`.
pub fn render(states: &[&ProfileState], output_dir: &Path, now: SystemTime) -> Rendered {
    let mut credentials = String::from(HEADER);
    let mut config = String::from(HEADER);
    let mut status = Status {
        version: 1,
        profiles: Vec::new(),
    };
    let mut process: Option<ProcessFile> = None;
    for state in states {
        let p = &state.profile;
        status.profiles.push(ProfileStatus {
            name: p.name.clone(),
            role_arn: p.role_arn.clone(),
            credentials: p.credentials.as_str().into(),
            region: p.region.clone(),
            expiration: state.session.as_ref().map(|s| format_time(s.expiration)),
            last_refresh: state.last_refresh.map(format_time),
            last_error: state.last_error.clone(),
        });
        // Profile names, regions and paths are validated at load; sessions
        // are checked by `ini_safe` when they arrive. Checked again here so
        // that no future code path can inject a line.
        if p.credentials == CredentialsMode::File
            && let Some(s) = state.live_session(now)
            && [
                s.access_key_id.expose(),
                s.secret_access_key.expose(),
                s.session_token.expose(),
            ]
            .iter()
            .all(|v| ini_safe(v))
        {
            let _ = write!(
                credentials,
                "\n# {} expires {}\n[{}]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
                p.role_arn,
                format_time(s.expiration),
                p.name,
                s.access_key_id.expose(),
                s.secret_access_key.expose(),
                s.session_token.expose(),
            );
        }
        if p.name == "default" {
            config.push_str("\n[default]\n");
        } else {
            let _ = write!(config, "\n[profile {}]\n", p.name);
        }
        if let Some(region) = &p.region {
            let _ = writeln!(config, "region = {region}");
        }
        if p.credentials == CredentialsMode::Process {
            let file = process.get_or_insert_with(ProcessFile::default);
            if let Some(s) = state.live_session(now) {
                file.profiles.insert(
                    p.name.clone(),
                    ProcessEntry {
                        role_arn: p.role_arn.clone(),
                        real_expiration: Some(format_time(s.expiration)),
                        credentials: ProcessCredentials {
                            version: 1,
                            access_key_id: s.access_key_id.expose().to_owned(),
                            secret_access_key: s.secret_access_key.expose().to_owned(),
                            session_token: s.session_token.expose().to_owned(),
                            expiration: format_time(state.reported_expiry(s, now)),
                        },
                    },
                );
            }
            let _ = writeln!(
                config,
                "credential_process = {} credential-process --profile {}",
                output_dir.join("rolecall").display(),
                p.name
            );
        }
    }
    let mut status = serde_json::to_string_pretty(&status).expect("serialisable");
    status.push('\n');
    Rendered {
        credentials,
        config,
        status,
        process: process.map(|p| serde_json::to_string(&p).expect("serialisable") + "\n"),
    }
}

/// Sessions that an earlier rolecall left in `dir` and that are still valid
/// for these profiles (same name, same role, same credentials mode, more than
/// a minute left). Seeding the state with them means a restart during an STS
/// outage does not take valid credentials away from the application.
/// Endpoint-only profiles are in neither file and are not adopted: they are
/// assumed again at start, and the endpoint answers 503 until then.
///
/// Keys, role and expiry are always taken from one and the same file
/// (`credentials` with its `# ROLE expires TIME` comment, or
/// `credential-process.json`), each replaced atomically: a write that failed
/// for one file can never pair one file's keys with another's expiry.
///
/// Both are read with `read_output`: a symlink, FIFO, device or huge file
/// planted there is logged and ignored (the writer then replaces it).
pub fn adopt(dir: &Path, profiles: &[Arc<Profile>], now: SystemTime) -> BTreeMap<String, Session> {
    let credentials = read_output(dir, CREDENTIALS_FILE)
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let sections = parse_credentials(&credentials);
    let process: ProcessFile = read_output(dir, PROCESS_FILE)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for p in profiles {
        let found = match p.credentials {
            CredentialsMode::File => sections.get(p.name.as_str()).and_then(|s| {
                let get = |k: &str| s.keys.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
                Some((
                    s.role_arn?,
                    s.expires?,
                    get("aws_access_key_id")?,
                    get("aws_secret_access_key")?,
                    get("aws_session_token")?,
                ))
            }),
            CredentialsMode::Process => process.profiles.get(&p.name).map(|e| {
                let c = &e.credentials;
                (
                    e.role_arn.as_str(),
                    e.real_expiration.as_deref().unwrap_or(&c.expiration),
                    c.access_key_id.as_str(),
                    c.secret_access_key.as_str(),
                    c.session_token.as_str(),
                )
            }),
            // In no file: fetched again at start.
            CredentialsMode::Endpoint => None,
        };
        let Some((role_arn, expires, id, secret, token)) = found else {
            continue;
        };
        let Some(expiration) = parse_time(expires) else {
            continue;
        };
        if role_arn != p.role_arn
            || expiration <= now + Duration::from_secs(60)
            || ![id, secret, token].iter().all(|v| ini_safe(v))
        {
            continue;
        }
        out.insert(
            p.name.clone(),
            Session {
                access_key_id: Secret::new(id),
                secret_access_key: Secret::new(secret),
                session_token: Secret::new(token),
                expiration,
                assumed_role_arn: None,
            },
        );
    }
    out
}

/// The most rolecall reads of one of its own outputs (`credentials`,
/// `credential-process.json`, `status.json`): far above what any
/// configuration produces (a profile takes about 2 KiB).
pub const MAX_OUTPUT_BYTES: u64 = 16 << 20;

/// Reads `dir/name`, one of rolecall's own outputs, with
/// [`crate::fsread`]: not following a symlink, regular files only,
/// non-blocking, at most [`MAX_OUTPUT_BYTES`]. `None` when it is missing or
/// refused; a refusal is logged, since something else put it there.
fn read_output(dir: &Path, name: &str) -> Option<Vec<u8>> {
    let path = dir.join(name);
    match crate::fsread::read(&path, MAX_OUTPUT_BYTES, crate::fsread::Follow::No) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.is_missing() => None,
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                "{} {e}: not read at start; it will be replaced",
                name
            );
            None
        }
    }
}

/// One section of a credentials file as rolecall writes it.
#[derive(Default)]
struct Section<'a> {
    /// From the `# ROLE expires TIME` comment just above the section.
    role_arn: Option<&'a str>,
    expires: Option<&'a str>,
    keys: Vec<(&'a str, &'a str)>,
}

fn parse_credentials(text: &str) -> BTreeMap<&str, Section<'_>> {
    let mut out: BTreeMap<&str, Section<'_>> = BTreeMap::new();
    let mut current = None;
    let mut comment: Option<(&str, &str)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("# ") {
            comment = c.split_once(" expires ");
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name);
            let (role_arn, expires) = comment.take().unzip();
            out.insert(
                name,
                Section {
                    role_arn,
                    expires,
                    keys: Vec::new(),
                },
            );
        } else if let (Some(section), Some((k, v))) = (current, line.split_once('=')) {
            out.entry(section)
                .or_default()
                .keys
                .push((k.trim(), v.trim()));
        }
    }
    out
}

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
    id: Option<FileId>,
}

/// What changes when a file is replaced, modified or re-moded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
}

impl FileId {
    /// The identity of the file at `path` itself (a symlink is not followed).
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
        })
    }
}

/// Writes the outputs of one configuration.
#[derive(Clone, Debug)]
pub struct Writer {
    pub dir: PathBuf,
    /// The output dir as the application sees it.
    pub app_dir: PathBuf,
    pub mode: u32,
}

/// A failed write, naming the file; the previous file is left whole.
#[derive(Debug, thiserror::Error)]
#[error("could not write {path}: {source} (the previous file is kept)")]
pub struct WriteError {
    pub file: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl Writer {
    /// A writer for `dir` (the app sees the same path) with the default
    /// mode, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_dir(dir: &Path) -> Writer {
        Writer {
            dir: dir.to_owned(),
            app_dir: dir.to_owned(),
            mode: crate::config::DEFAULT_FILE_MODE,
        }
    }

    pub fn new(config: &Config) -> Writer {
        Writer {
            dir: config.output_dir.clone(),
            app_dir: config.app_output_dir.clone(),
            mode: config.file_mode,
        }
    }

    /// Installs `binary` (rolecall itself) as the process-mode helper,
    /// atomically and only when it differs. Executable by whoever may read
    /// the outputs (0640 gives 0750).
    pub fn install_helper(&self, binary: &Path) -> Result<bool, WriteError> {
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
        let installed = atomic::replace(&self.dir, HELPER_FILE, &bytes, mode).map_err(err)?;
        if installed {
            tracing::info!(path = %self.dir.join(HELPER_FILE).display(), "installed the credential_process helper");
        }
        Ok(installed)
    }

    /// [`Writer::install_helper`], remembering the installed file in
    /// `helper` so that [`Writer::check_helper`] can tell when it changes.
    pub fn install_tracked_helper(
        &self,
        binary: &Path,
        helper: &Helper,
    ) -> Result<bool, WriteError> {
        let installed = self.install_helper(binary)?;
        *helper.lock() = Some(Installed {
            binary: binary.to_owned(),
            id: FileId::of(&self.dir.join(HELPER_FILE)),
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
        let Some((binary, id)) = helper
            .lock()
            .as_ref()
            .map(|i| (i.binary.clone(), i.id.clone()))
        else {
            return Ok(false);
        };
        let path = self.dir.join(HELPER_FILE);
        if id.is_some() && FileId::of(&path) == id {
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

    /// The mode of an output dir rolecall creates: searchable by whoever
    /// may read the files (0640 gives 0750, 0600 gives 0700).
    pub fn dir_mode(&self) -> u32 {
        let read = self.mode & 0o044;
        0o700 | read | (read >> 2)
    }

    /// Creates the directory if needed and removes temporaries left by a
    /// killed process. A directory rolecall creates gets [`Writer::dir_mode`]
    /// whatever the umask; an existing one (a mounted emptyDir) is left as
    /// it is.
    pub fn prepare(&self) -> Result<(), WriteError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let err = |source| WriteError {
            file: "output_dir",
            path: self.dir.clone(),
            source,
        };
        if std::fs::symlink_metadata(&self.dir).is_err() {
            let mode = self.dir_mode();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&self.dir)
                .map_err(err)?;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(mode))
                .map_err(err)?;
        }
        let removed = atomic::remove_stale_temporaries(&self.dir).map_err(err)?;
        if removed > 0 {
            tracing::info!(removed, dir = %self.dir.display(), "removed temporary files left by an earlier run");
        }
        Ok(())
    }

    /// Renders the current state and writes every file whose content
    /// changed. Tries every file even when one fails.
    pub fn write(&self, shared: &Shared, now: SystemTime) -> Result<(), WriteError> {
        let rendered = {
            let states = shared.snapshot();
            let states: Vec<&ProfileState> = states.iter().collect();
            render(&states, &self.app_dir, now)
        };
        let mut first_error = None;
        for (file, contents) in [
            (CREDENTIALS_FILE, Some(rendered.credentials.as_bytes())),
            (CONFIG_FILE, Some(rendered.config.as_bytes())),
            (STATUS_FILE, Some(rendered.status.as_bytes())),
            (
                PROCESS_FILE,
                rendered.process.as_ref().map(|p| p.as_bytes()),
            ),
        ] {
            let result = match contents {
                Some(c) => atomic::replace(&self.dir, file, c, self.mode),
                None => atomic::remove(&self.dir, file),
            };
            match result {
                Ok(true) => tracing::debug!(file, "output written"),
                Ok(false) => {}
                Err(source) => {
                    shared.count_write_error(file);
                    let e = WriteError {
                        file,
                        path: self.dir.join(file),
                        source,
                    };
                    tracing::error!(file, error = %e, "write failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        shared.record_outputs_written(first_error.is_none(), now);
        first_error.map_or(Ok(()), Err)
    }

    /// Keeps the outputs current until `shutdown`: rewrites on every state
    /// change, when a session expires (to remove it), and after a failed
    /// write with the refresh backoff.
    ///
    /// Every pass also checks the process-mode helper ([`Writer::check_helper`]),
    /// so a helper replaced from outside is restored within
    /// [`RECHECK_INTERVAL`].
    pub async fn run(self, shared: Arc<Shared>, helper: Arc<Helper>, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let now = SystemTime::now();
            if let Err(e) = self.check_helper(&helper) {
                tracing::error!(error = %e, "cannot reinstall the credential_process helper");
            }
            let wait = match self.write(&shared, now) {
                Ok(()) => {
                    failures = 0;
                    shared
                        .next_expiry(now)
                        .map_or(RECHECK_INTERVAL, |d| d.min(RECHECK_INTERVAL))
                }
                Err(_) => {
                    let d = schedule::backoff(failures, schedule::random_jitter());
                    failures = failures.saturating_add(1);
                    d
                }
            };
            tokio::select! {
                _ = shared.write_requested() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests;
