//! The files rolecall publishes in the output directory, and the task that
//! keeps them current.
//!
//! `credentials` is the standard shared-credentials file (one section per
//! file-mode profile with a live session); `config` holds a section per
//! profile with its region (and, in process mode, its `credential_process`).
//! Endpoint-only profiles (`credentials: endpoint`) get their `config`
//! section and nothing else: no keys in `credentials` or
//! `credential-process.json`, so no static copy can shadow the endpoint.
//! Both are rendered from [`Shared`](crate::state::Shared) state and replaced atomically, only when
//! their bytes change; expired sessions are dropped from the rendering, and a
//! failed refresh never removes a live one.
//!
//! The module is split by concern: [`render`] (state to file contents),
//! [`adopt`] (sessions left by an earlier run), [`Writer`] (writing, and
//! the task that keeps the files current), [`Helper`] (the process-mode
//! helper binary), [`Sets`] (one writer per output set, kept current by
//! one task) and [`atomic`] (replacing one file).

mod adopt;
pub mod atomic;
mod helper;
mod render;
mod sets;
mod writer;

use std::collections::BTreeMap;
use std::time::Duration;

pub use adopt::adopt;
pub use helper::Helper;
pub use render::{Rendered, ini_safe, render, render_set, render_with_source};
pub use sets::Sets;
pub use writer::{WRITE_DEBOUNCE, WriteError, Writer};

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
    /// helper prints `credentials`. Absent in files written before it
    /// existed, whose `Expiration` was the real expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_expiration: Option<String>,
    /// While the session is healthy, the latest `Expiration` the helper
    /// may print (`ProfileState::slide_cap`): the helper prints
    /// `schedule::sliding_expiry` from it and the clock when it runs.
    /// Absent when the real expiry is to be printed, and in files written
    /// before the sliding report; a helper of that age ignores it and
    /// prints `credentials.Expiration`, the fixed
    /// `schedule::planned_expiry` (16 minutes after the planned refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide_until: Option<String>,
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
    /// The output set this directory is (only when the configuration
    /// declares sets; absent for the one default set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    pub profiles: Vec<ProfileStatus>,
    /// The first problems of the configuration file the last reload
    /// refused (the running configuration was kept); absent once a reload
    /// succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_config: Vec<String>,
    /// `pod-identity` under `identity: pod-identity` (absent under
    /// web-identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The source of every session under pod-identity: the agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceStatus>,
}

/// The Pod Identity agent's session in [`STATUS_FILE`], published or not.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceStatus {
    /// The base profile's name.
    pub name: String,
    pub published: bool,
    pub expiration: Option<String>,
    pub last_error: Option<String>,
    /// The agent's URL.
    pub agent: String,
}

impl SourceStatus {
    /// The entry for `source`.
    pub fn of(source: &crate::state::Source) -> SourceStatus {
        SourceStatus {
            name: source.name.clone(),
            published: source.published,
            expiration: source.expiration.map(crate::session::format_time),
            last_error: source.last_error.clone(),
            agent: source.agent.clone(),
        }
    }
}

/// How often the writer re-checks its files even without a state change,
/// so that outputs removed or damaged from outside (a recreated volume) are
/// restored. A check of unchanged files only reads them.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The most rolecall reads of one of its own outputs (`credentials`,
/// `credential-process.json`, `status.json`): far above what any
/// configuration produces (a profile takes about 2 KiB).
pub const MAX_OUTPUT_BYTES: u64 = 16 << 20;

#[cfg(test)]
mod tests;
