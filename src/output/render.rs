//! Rendering the state into the contents of the output files.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use super::{ProcessCredentials, ProcessEntry, ProcessFile, ProfileStatus, SourceStatus, Status};
use crate::config::CredentialsMode;
use crate::session::{Session, format_time};
use crate::state::ProfileState;

pub(super) const HEADER: &str =
    "# Written by rolecall; do not edit: it is replaced as sessions refresh.\n";

/// True for text that can stand as an INI value: printable ASCII, no
/// spaces. Sessions are checked with it when STS returns them, when they are
/// rendered and when they are adopted at a restart.
pub fn ini_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The session the files of an output set hold for the profile of `state`
/// when rendered at `now`: its live session, in `credentials` (file mode,
/// when every value can stand in the file) or `credential-process.json`
/// (process mode); `None` for an endpoint-only profile, whose keys no file
/// holds. What [`render_set`] writes, and what the writer records as
/// written ([`crate::state::Shared::record_write`]).
pub fn served(state: &ProfileState, now: SystemTime) -> Option<&Session> {
    let s = state.live_session(now)?;
    match state.profile.credentials {
        CredentialsMode::File => [
            s.access_key_id.expose(),
            s.secret_access_key.expose(),
            s.session_token.expose(),
        ]
        .iter()
        .all(|v| ini_safe(v))
        .then_some(s),
        CredentialsMode::Process => Some(s),
        CredentialsMode::Endpoint => None,
    }
}

/// The rendered contents of both files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// Contains secrets: never logged.
    pub credentials: String,
    pub config: String,
    /// [`STATUS_FILE`](super::STATUS_FILE) as JSON.
    pub status: String,
    /// [`PROCESS_FILE`](super::PROCESS_FILE) as JSON (secrets), when a profile uses process mode.
    pub process: Option<String>,
}

/// Renders the outputs for the profiles in `states` at `now`;
/// `rejected_config` is the refused configuration's first problems, for
/// `status.json`.
pub fn render(
    states: &[&ProfileState],
    rejected_config: &[String],
    output_dir: &Path,
    now: SystemTime,
) -> Rendered {
    render_set(states, rejected_config, output_dir, None, now)
}

/// [`render`] for the output set `set` (named in `status.json` when given:
/// only when the configuration declares sets).
pub fn render_set(
    states: &[&ProfileState],
    rejected_config: &[String],
    output_dir: &Path,
    set: Option<&str>,
    now: SystemTime,
) -> Rendered {
    render_with_source(states, rejected_config, output_dir, set, None, now)
}

/// [`render_set`], with the Pod Identity agent's session in `status.json`
/// under `identity: pod-identity`.
pub fn render_with_source(
    states: &[&ProfileState],
    rejected_config: &[String],
    output_dir: &Path,
    set: Option<&str>,
    source: Option<SourceStatus>,
    now: SystemTime,
) -> Rendered {
    let mut credentials = String::from(HEADER);
    let mut config = String::from(HEADER);
    let mut status = Status {
        version: 1,
        set: set.map(str::to_owned),
        profiles: Vec::new(),
        rejected_config: rejected_config.to_vec(),
        identity: source.is_some().then(|| "pod-identity".to_owned()),
        source,
    };
    let mut process: Option<ProcessFile> = None;
    for state in states {
        let p = &state.profile;
        status.profiles.push(profile_status(state));
        // Profile names, regions and paths are validated at load; sessions
        // are checked by `ini_safe` when they arrive. Checked again here so
        // that no future code path can inject a line.
        if p.credentials == CredentialsMode::File
            && let Some(s) = served(state, now)
        {
            let _ = write!(
                credentials,
                "\n# {} expires {}\n[{}]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
                state.session_role(),
                format_time(s.expiration),
                p.name,
                s.access_key_id.expose(),
                s.secret_access_key.expose(),
                s.session_token.expose(),
            );
        }
        config_section(&mut config, state, output_dir);
        if p.credentials == CredentialsMode::Process {
            let file = process.get_or_insert_with(ProcessFile::default);
            if let Some(s) = served(state, now) {
                file.profiles
                    .insert(p.name.clone(), process_entry(state, s, now));
            }
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

/// The profile's entry in `status.json`.
fn profile_status(state: &ProfileState) -> ProfileStatus {
    let p = &state.profile;
    ProfileStatus {
        name: p.name.clone(),
        // The base profile of identity: pod-identity has no role ARN (the
        // agent's answer names none): agent::ROLE_SHOWN.
        role_arn: if p.pod_identity {
            "(Pod Identity association)".into()
        } else {
            p.role_arn.clone()
        },
        credentials: p.credentials.as_str().into(),
        region: p.region.clone(),
        expiration: state.session.as_ref().map(|s| format_time(s.expiration)),
        last_refresh: state.last_refresh().map(format_time),
        last_error: state.last_error.clone(),
    }
}

/// The profile's section of the `config` file: its region, and the helper
/// for a process-mode profile.
fn config_section(config: &mut String, state: &ProfileState, output_dir: &Path) {
    let p = &state.profile;
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

/// The session `s` of a process-mode profile, as the helper prints it.
fn process_entry(state: &ProfileState, s: &Session, now: SystemTime) -> ProcessEntry {
    ProcessEntry {
        role_arn: state.session_role().to_owned(),
        real_expiration: Some(format_time(s.expiration)),
        slide_until: state.slide_cap(s).map(format_time),
        credentials: ProcessCredentials {
            version: 1,
            access_key_id: s.access_key_id.expose().to_owned(),
            secret_access_key: s.secret_access_key.expose().to_owned(),
            session_token: s.session_token.expose().to_owned(),
            expiration: format_time(state.planned_expiry(s, now)),
        },
    }
}
