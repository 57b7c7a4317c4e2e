//! The files rolecall publishes in the output directory, and the task that
//! keeps them current.
//!
//! `credentials` is the standard shared-credentials file (one section per
//! file-mode profile with a live session); `config` holds a section per
//! profile with its region (and, in process mode, its `credential_process`).
//! Both are rendered from [`Shared`] state and replaced atomically, only when
//! their bytes change; expired sessions are dropped from the rendering, and a
//! failed refresh never removes a live one.

pub mod atomic;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use std::collections::BTreeMap;

use crate::config::{Config, CredentialsMode, Profile};
use crate::metrics::FileLabel;
use crate::schedule;
use crate::session::{Secret, Session, format_time, parse_time};
use crate::state::{ProfileState, Shared};
use crate::sts::ini_safe;

pub const CREDENTIALS_FILE: &str = "credentials";
pub const CONFIG_FILE: &str = "config";
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

const HEADER: &str = "# Written by rolecall; do not edit: it is replaced as sessions refresh.\n";

/// The rendered contents of both files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// Contains secrets: never logged.
    pub credentials: String,
    pub config: String,
    /// [`STATUS_FILE`] as JSON.
    pub status: String,
}

/// Renders the outputs for the profiles in `states` at `now`.
pub fn render(states: &[&ProfileState], output_dir: &Path, now: SystemTime) -> Rendered {
    let mut credentials = String::from(HEADER);
    let mut config = String::from(HEADER);
    let mut status = Status {
        version: 1,
        profiles: Vec::new(),
    };
    for state in states {
        let p = &state.profile;
        status.profiles.push(ProfileStatus {
            name: p.name.clone(),
            role_arn: p.role_arn.clone(),
            credentials: match p.credentials {
                CredentialsMode::File => "file".into(),
                CredentialsMode::Process => "process".into(),
            },
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
    }
}

/// Sessions that an earlier rolecall left in `dir` and that are still valid
/// for these profiles (same name, same role, same credentials mode, more than
/// a minute left). Seeding the state with them means a restart during an STS
/// outage does not take valid credentials away from the application.
pub fn adopt(dir: &Path, profiles: &[Arc<Profile>], now: SystemTime) -> BTreeMap<String, Session> {
    let mut out = BTreeMap::new();
    let Ok(status) = crate::status::read(dir) else {
        return out;
    };
    let Ok(credentials) = std::fs::read_to_string(dir.join(CREDENTIALS_FILE)) else {
        return out;
    };
    let sections = parse_credentials(&credentials);
    for p in profiles
        .iter()
        .filter(|p| p.credentials == CredentialsMode::File)
    {
        let Some(st) = status
            .profiles
            .iter()
            .find(|s| s.name == p.name && s.role_arn == p.role_arn)
        else {
            continue;
        };
        let Some(expiration) = st.expiration.as_deref().and_then(parse_time) else {
            continue;
        };
        if expiration <= now + Duration::from_secs(60) {
            continue;
        }
        let Some(keys) = sections.get(p.name.as_str()) else {
            continue;
        };
        let get = |k: &str| {
            keys.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| *v)
                .filter(|v| ini_safe(v))
        };
        if let (Some(id), Some(secret), Some(token)) = (
            get("aws_access_key_id"),
            get("aws_secret_access_key"),
            get("aws_session_token"),
        ) {
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
    }
    out
}

/// The sections of a credentials file as rolecall writes it.
fn parse_credentials(text: &str) -> BTreeMap<&str, Vec<(&str, &str)>> {
    let mut out: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name);
            out.entry(name).or_default();
        } else if let (Some(section), Some((k, v))) = (current, line.split_once('=')) {
            out.entry(section).or_default().push((k.trim(), v.trim()));
        }
    }
    out
}

/// Writes the outputs of one configuration.
#[derive(Clone, Debug)]
pub struct Writer {
    pub dir: PathBuf,
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
    pub fn new(config: &Config) -> Writer {
        Writer {
            dir: config.output_dir.clone(),
            mode: config.file_mode,
        }
    }

    /// Creates the directory if needed and removes temporaries left by a
    /// killed process.
    pub fn prepare(&self) -> Result<(), WriteError> {
        let err = |source| WriteError {
            file: "output_dir",
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
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
            let map = shared.lock();
            let states: Vec<&ProfileState> = map.values().collect();
            render(&states, &self.dir, now)
        };
        let mut first_error = None;
        for (file, contents) in [
            (CREDENTIALS_FILE, rendered.credentials.as_bytes()),
            (CONFIG_FILE, rendered.config.as_bytes()),
            (STATUS_FILE, rendered.status.as_bytes()),
        ] {
            match atomic::replace(&self.dir, file, contents, self.mode) {
                Ok(true) => tracing::debug!(file, "output written"),
                Ok(false) => {}
                Err(source) => {
                    shared
                        .metrics
                        .write_errors
                        .get_or_create(&FileLabel { file: file.into() })
                        .inc();
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
        let ok = first_error.is_none();
        shared.outputs_ok.store(ok, Ordering::Release);
        first_error.map_or(Ok(()), Err)
    }

    /// Keeps the outputs current until `shutdown`: rewrites on every state
    /// change, when a session expires (to remove it), and after a failed
    /// write with the refresh backoff.
    pub async fn run(self, shared: Arc<Shared>, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let now = SystemTime::now();
            let wait = match self.write(&shared, now) {
                Ok(()) => {
                    failures = 0;
                    next_expiry(&shared, now)
                }
                Err(_) => {
                    let d = schedule::backoff(failures, schedule::random_jitter());
                    failures = failures.saturating_add(1);
                    Some(d)
                }
            };
            crate::health::update_ready(&shared, SystemTime::now());
            let sleep = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shared.changed.notified() => {}
                _ = sleep => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Time until the next live session expires (so it can be removed).
fn next_expiry(shared: &Shared, now: SystemTime) -> Option<Duration> {
    shared
        .lock()
        .values()
        .filter_map(|s| s.live_session(now))
        .filter_map(|s| s.expiration.duration_since(now).ok())
        .min()
        // Wake just after the expiry so the session is seen as expired.
        .map(|d| d + Duration::from_millis(5))
}

#[cfg(test)]
mod tests;
