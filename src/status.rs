//! `rolecall status`: the profiles in an output directory, from the
//! `status.json` the sidecar keeps there (no secrets, no STS call).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::fsread::{self, Follow, ReadError};
use crate::output::{MAX_OUTPUT_BYTES, ProfileStatus, STATUS_FILE, SourceStatus, Status};
use crate::session::parse_time;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no {STATUS_FILE} in {dir}: is rolecall running with --output-dir {dir}?")]
    Missing { dir: String },
    #[error("{path} {source}: it is not a status file rolecall wrote")]
    Unreadable {
        path: String,
        #[source]
        source: ReadError,
    },
    #[error("{path} is not a rolecall status file: {reason}")]
    Invalid { path: String, reason: String },
}

/// Reads the status file in `dir` (not following a symlink, regular files
/// only, non-blocking, at most [`MAX_OUTPUT_BYTES`]).
pub fn read(dir: &Path) -> Result<Status, StatusError> {
    let path = dir.join(STATUS_FILE);
    let text = fsread::read(&path, MAX_OUTPUT_BYTES, Follow::No).map_err(|source| {
        if source.is_missing() {
            StatusError::Missing {
                dir: escape_controls(&dir.display().to_string()),
            }
        } else {
            StatusError::Unreadable {
                path: escape_controls(&path.display().to_string()),
                source,
            }
        }
    })?;
    serde_json::from_slice(&text).map_err(|e| StatusError::Invalid {
        path: escape_controls(&path.display().to_string()),
        reason: e.to_string(),
    })
}

/// Whether printing `c` to a terminal could do more than show a character:
/// C0 and C1 controls (escape sequences, newlines, carriage returns) and the
/// invisible bidirectional overrides that reorder what is shown.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character written as a Rust escape (`\u{1b}`),
/// for text from files or arguments printed to a terminal; ordinary text is
/// unchanged.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `status --json`: pretty JSON in which no character can drive a terminal.
/// serde_json escapes U+0000-U+001F; DEL, the C1 controls and the bidi
/// overrides are escaped here too (`\u009b`), which is still the same JSON
/// value.
pub fn to_json(status: &Status) -> String {
    let text = serde_json::to_string_pretty(status).expect("serialisable");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe_char(c) && c != '\n' {
            // Outside strings the JSON text holds only ASCII whitespace
            // (newlines, spaces), so every other such character is inside a
            // string, where \uXXXX is valid.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Why profile `p` is not ready at `now`: no session yet (never fetched,
/// or never published), or its session expired; `None` when it holds a
/// valid session (ready, even if its last refresh failed: the table and
/// the JSON show that error).
pub fn not_ready(p: &ProfileStatus, now: SystemTime) -> Option<&'static str> {
    match p.expiration.as_deref().and_then(parse_time) {
        None => Some("no session"),
        Some(t) if t <= now => Some("expired"),
        Some(_) => None,
    }
}

/// The profiles of `status` that are not ready at `now`, each with why
/// (`writer (expired)`), escaped for a terminal; a status with no profile
/// is not ready either.
pub fn unready(status: &Status, now: SystemTime) -> Vec<String> {
    if status.profiles.is_empty() {
        return vec!["no profile".into()];
    }
    status
        .profiles
        .iter()
        .filter_map(|p| {
            not_ready(p, now).map(|why| format!("{} ({why})", escape_controls(&p.name)))
        })
        .collect()
}

/// The header line of a sidecar under `identity: pod-identity`: where
/// every session comes from, the agent's session, its last error.
fn source_line(source: &SourceStatus, now: SystemTime) -> String {
    let session = match &source.expiration {
        Some(t) => format!(
            "session until {} ({})",
            escape_controls(t),
            human_left(Some(t), now)
        ),
        None => "no session yet".to_owned(),
    };
    let error = source
        .last_error
        .as_deref()
        .map(|e| format!(" (last error {})", escape_controls(e)))
        .unwrap_or_default();
    format!(
        "source: Pod Identity agent {}, {session}{error}\n",
        escape_controls(&source.agent)
    )
}

/// `1h02m`, `14m05s`, `expired 3m ago`.
pub fn human_left(expiration: Option<&str>, now: SystemTime) -> String {
    let Some(t) = expiration.and_then(parse_time) else {
        return "-".into();
    };
    match t.duration_since(now) {
        Ok(left) => human(left),
        Err(e) => format!("expired {} ago", human(e.duration())),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The table `rolecall status` prints.
pub fn table(status: &Status, now: SystemTime) -> String {
    let rows: Vec<[String; 7]> = status
        .profiles
        .iter()
        .map(|p| {
            // Every cell comes from the file: escaped, so that a tampered
            // status.json cannot drive the terminal or forge rows.
            [
                p.name.clone(),
                p.credentials.clone(),
                p.role_arn.clone(),
                p.expiration.clone().unwrap_or_else(|| "-".into()),
                human_left(p.expiration.as_deref(), now),
                p.last_refresh.clone().unwrap_or_else(|| "-".into()),
                p.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
            .map(|c| escape_controls(&c))
        })
        .collect();
    let header = [
        "PROFILE",
        "MODE",
        "ROLE",
        "EXPIRES",
        "LEFT",
        "LAST REFRESH",
        "LAST ERROR",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    if let Some(set) = &status.set {
        let _ = writeln!(out, "output set {}", escape_controls(set));
    }
    if let Some(source) = &status.source {
        out.push_str(&source_line(source, now));
    }
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    if !status.rejected_config.is_empty() {
        out.push_str(
            "\nthe last configuration change was refused; the running configuration is kept:\n",
        );
        for p in &status.rejected_config {
            let _ = writeln!(out, "  - {}", escape_controls(p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_time_left_and_errors() {
        let now = parse_time("2026-11-29T01:00:00Z").unwrap();
        let status = Status {
            version: 1,
            set: None,
            profiles: vec![
                ProfileStatus {
                    name: "reader".into(),
                    role_arn: "arn:aws:iam::111122223333:role/reader".into(),
                    credentials: "file".into(),
                    region: None,
                    expiration: Some("2026-11-29T02:02:00Z".into()),
                    last_refresh: Some("2026-11-29T00:32:00Z".into()),
                    last_error: None,
                },
                ProfileStatus {
                    name: "writer".into(),
                    role_arn: "arn:aws:iam::111122223333:role/writer".into(),
                    credentials: "file".into(),
                    region: None,
                    expiration: Some("2026-11-29T00:57:00Z".into()),
                    last_refresh: None,
                    last_error: Some("AccessDenied: Not authorized".into()),
                },
            ],
            rejected_config: vec![],
            identity: None,
            source: None,
        };
        let t = table(&status, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("PROFILE  MODE  ROLE"), "{t}");
        assert!(lines[1].starts_with("reader   file  arn:"), "{t}");
        assert!(lines[1].contains("1h02m"), "{t}");
        assert!(lines[2].contains("expired 3m00s ago"), "{t}");
        assert!(lines[2].ends_with("AccessDenied: Not authorized"), "{t}");
        assert_eq!(lines.len(), 3, "no refused configuration, no note: {t}");
        assert_eq!(unready(&status, now), ["writer (expired)"]);
        let mut fresh = status.clone();
        fresh.profiles[1].expiration = None;
        assert_eq!(unready(&fresh, now), ["writer (no session)"]);
        fresh.profiles.remove(1);
        assert!(
            unready(&fresh, now).is_empty(),
            "a last error alone is ready"
        );
        fresh.profiles.clear();
        assert_eq!(unready(&fresh, now), ["no profile"]);
    }

    #[test]
    fn control_characters_are_escaped_and_ordinary_text_is_kept() {
        assert_eq!(escape_controls("reader-1 é ✓"), "reader-1 é ✓");
        assert_eq!(
            escape_controls("a\u{1b}[2Jb\nc\u{9b}d\u{202e}e"),
            "a\\u{1b}[2Jb\\u{a}c\\u{9b}d\\u{202e}e"
        );
        let status = Status {
            version: 1,
            set: None,
            profiles: vec![ProfileStatus {
                name: "x\u{1b}]0;t\u{7}".into(),
                role_arn: "r".into(),
                credentials: "file".into(),
                region: None,
                expiration: None,
                last_refresh: None,
                last_error: Some("one\ntwo\u{9b}".into()),
            }],
            rejected_config: vec!["profiles.x\u{1b}[2J: bad\nline".into()],
            identity: None,
            source: None,
        };
        let t = table(&status, SystemTime::now());
        assert_eq!(t.lines().count(), 5, "{t}");
        assert!(t.contains("configuration change was refused"), "{t}");
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        let j = to_json(&status);
        assert!(!j.chars().any(|c| c.is_control() && c != '\n'), "{j:?}");
        assert_eq!(serde_json::from_str::<Status>(&j).unwrap(), status);
    }

    #[test]
    fn a_set_is_named_above_its_table_and_absent_without_sets() {
        let mut status = Status {
            version: 1,
            set: Some("shipper".into()),
            profiles: Vec::new(),
            rejected_config: Vec::new(),
            identity: None,
            source: None,
        };
        let t = table(&status, SystemTime::now());
        assert_eq!(t.lines().next(), Some("output set shipper"), "{t}");
        assert!(to_json(&status).contains("\"set\": \"shipper\""));
        status.set = None;
        assert!(table(&status, SystemTime::now()).starts_with("PROFILE"));
        assert!(
            !to_json(&status).contains("\"set\""),
            "old readers see no new field"
        );
    }

    #[test]
    fn under_pod_identity_one_line_names_the_agent_and_its_session() {
        let now = parse_time("2026-11-29T01:00:00Z").unwrap();
        let json = r#"{"version":1,"profiles":[],"identity":"pod-identity",
            "source":{"name":"pod-identity","published":false,"expiration":"2026-11-29T04:00:00Z",
            "last_error":null,"agent":"http://169.254.170.23/v1/credentials"}}"#;
        let mut status: Status = serde_json::from_str(json).unwrap();
        let t = table(&status, now);
        assert_eq!(
            t.lines().next(),
            Some(
                "source: Pod Identity agent http://169.254.170.23/v1/credentials, session until 2026-11-29T04:00:00Z (3h00m)"
            ),
            "{t}"
        );
        let source = status.source.as_mut().unwrap();
        source.expiration = None;
        source.last_error = Some("ConnectionError: refused\u{1b}[2J".into());
        let t = table(&status, now);
        assert!(t.starts_with("source: Pod Identity agent http://169.254.170.23/v1/credentials, no session yet (last error ConnectionError: refused\\u{1b}[2J)\n"), "{t}");
        assert!(to_json(&status).contains("\"identity\": \"pod-identity\""));
        status.identity = None;
        status.source = None;
        assert!(
            !to_json(&status).contains("source"),
            "absent under web-identity"
        );
    }
}
