//! `rolecall status`: the profiles in an output directory, from the
//! `status.json` the sidecar keeps there (no secrets, no STS call).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::output::{STATUS_FILE, Status};
use crate::session::parse_time;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no {STATUS_FILE} in {dir}: is rolecall running with --output-dir {dir}? ({source})")]
    Missing {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a rolecall status file: {reason}")]
    Invalid { path: String, reason: String },
}

/// Reads the status file in `dir`.
pub fn read(dir: &Path) -> Result<Status, StatusError> {
    let path = dir.join(STATUS_FILE);
    let text = std::fs::read(&path).map_err(|source| StatusError::Missing {
        dir: dir.display().to_string(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|e| StatusError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
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
    let rows: Vec<[String; 6]> = status
        .profiles
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.role_arn.clone(),
                p.expiration.clone().unwrap_or_else(|| "-".into()),
                human_left(p.expiration.as_deref(), now),
                p.last_refresh.clone().unwrap_or_else(|| "-".into()),
                p.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "PROFILE",
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::ProfileStatus;

    #[test]
    fn prints_time_left_and_errors() {
        let now = parse_time("2026-11-29T01:00:00Z").unwrap();
        let status = Status {
            version: 1,
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
        };
        let t = table(&status, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("PROFILE  ROLE"));
        assert!(lines[1].contains("1h02m"), "{t}");
        assert!(lines[2].contains("expired 3m00s ago"), "{t}");
        assert!(lines[2].ends_with("AccessDenied: Not authorized"), "{t}");
    }
}
