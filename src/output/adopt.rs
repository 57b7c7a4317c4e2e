//! Adopting the sessions an earlier rolecall left in the output directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{CREDENTIALS_FILE, MAX_OUTPUT_BYTES, PROCESS_FILE, ProcessFile, ini_safe};
use crate::config::{CredentialsMode, Profile};
use crate::session::{Secret, Session, parse_time};

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
