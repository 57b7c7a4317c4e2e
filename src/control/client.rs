//! The client side: `rolecall reload` and `rolecall refresh` connect to the
//! sidecar's control socket, send one request, and read its answer.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Answer, RefreshResult, Request};

/// How long the client waits for the whole answer (a refresh waits up to
/// 30 s for STS).
pub const TIMEOUT: Duration = Duration::from_secs(40);
/// The largest answer read: a refresh of many profiles is a few KiB.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no rolecall sidecar answers at {path}: is this the rolecall container, and is {dir} an emptyDir mounted in it? ({source})"
    )]
    NoSidecar {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot connect to {path}: permission denied; run this as the sidecar's user (kubectl exec runs as the container's user)"
    )]
    Denied { path: PathBuf },
    #[error("the sidecar at {path} did not answer within {} s; see its logs", TIMEOUT.as_secs())]
    Timeout { path: PathBuf },
    #[error("talking to the sidecar at {path} failed: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the sidecar at {path} answered something that is not an answer: {detail}")]
    BadAnswer { path: PathBuf, detail: String },
}

/// Sends `req` to the sidecar at `path`; its answer, and the answer's line
/// as received (for `--json`).
pub fn call(path: &Path, req: &Request) -> Result<(Answer, String), ClientError> {
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
            path: path.to_owned(),
        },
        _ => ClientError::Io {
            path: path.to_owned(),
            source,
        },
    };
    let mut s = UnixStream::connect(path).map_err(|source| match source.kind() {
        io::ErrorKind::PermissionDenied => ClientError::Denied {
            path: path.to_owned(),
        },
        _ => ClientError::NoSidecar {
            path: path.to_owned(),
            dir: path.parent().unwrap_or(Path::new("/")).to_owned(),
            source,
        },
    })?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    // A sidecar with no room answers `busy` at once and closes, perhaps
    // before the request is written: the answer is read even then.
    let sent = s.write_all(req.to_line().as_bytes());
    let raw = read_answer(&mut s);
    let line = match (raw, sent) {
        (Ok(line), _) => line,
        (Err(e), Ok(())) | (_, Err(e)) => return Err(io_err(e)),
    };
    let answer = serde_json::from_str(&line).map_err(|e| ClientError::BadAnswer {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    Ok((answer, line))
}

/// The answer's first line. An error after a whole line (a reset that
/// follows the answer when the sidecar closed with part of the request
/// unread) does not lose it.
fn read_answer(s: &mut UnixStream) -> io::Result<String> {
    let mut raw = Vec::new();
    let mut capped = s.take(MAX_ANSWER_BYTES);
    let mut chunk = [0u8; 4096];
    loop {
        match capped.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) if raw.contains(&b'\n') => break,
            Err(e) => return Err(e),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The exit code for `answer`: 0 ok, 64 when the request was wrong (an
/// unknown profile), 1 otherwise (a refused reload, a failed refresh); a
/// refresh is 0 only when every profile asked for was refreshed (one
/// skipped — refreshed less than 5 s ago, backing off — or still pending
/// is 1).
pub fn exit_code(answer: &Answer) -> u8 {
    let all_refreshed = answer.profiles.as_ref().is_none_or(|ps| {
        ps.iter()
            .all(|p| matches!(p.result, RefreshResult::Refreshed))
    });
    match (answer.ok, answer.usage) {
        (true, _) if all_refreshed => 0,
        (true, _) => 1,
        (false, true) => 64,
        (false, false) => 1,
    }
}

/// The output sets' dirs, as the sidecar at `socket` names them; `None`
/// when there is no socket (status then reads the output dir); why not,
/// when a socket is there but gave no sets (no process answers on it, or
/// the sidecar is busy).
pub fn set_dirs(socket: &Path) -> Result<Option<Vec<PathBuf>>, String> {
    if !socket.exists() {
        return Ok(None);
    }
    let (answer, _) = call(socket, &Request::Sets).map_err(|e| e.to_string())?;
    match answer.sets {
        Some(sets) if answer.ok && !sets.is_empty() => {
            Ok(Some(sets.into_iter().map(|s| s.dir.into()).collect()))
        }
        _ if answer.busy => Err(format!(
            "the sidecar at {} is busy and did not name its output sets ({})",
            socket.display(),
            answer.problems.join("; ")
        )),
        _ => Err(format!(
            "the sidecar at {} did not name its output sets ({})",
            socket.display(),
            answer.problems.join("; ")
        )),
    }
}

/// `rolecall reload` and `rolecall refresh`: sends `req` to the sidecar at
/// `path` and prints its answer (`json`: as it came); the exit code is 0
/// when it succeeded, 1 when it failed or no sidecar answered, 64 when the
/// request was wrong (an unknown profile).
pub fn request(path: &Path, req: &Request, json: bool) -> u8 {
    match call(path, req) {
        Ok((answer, line)) => {
            let code = exit_code(&answer);
            let text = if json {
                format!("{line}\n")
            } else {
                summary(req, &answer)
            };
            if code == 0 || json {
                print!("{text}");
            } else {
                eprint!("{text}");
            }
            code
        }
        Err(e) => {
            eprintln!("rolecall: {e}");
            1
        }
    }
}

/// The answer for a person: what changed, or what each profile did.
pub fn summary(req: &Request, answer: &Answer) -> String {
    let mut out = String::new();
    if answer.busy {
        for p in &answer.problems {
            out.push_str(&format!("{p}\n"));
        }
        return out;
    }
    let list = |v: &Option<Vec<String>>| match v.as_deref() {
        None | Some([]) => "-".to_owned(),
        Some(v) => v.join(", "),
    };
    if let Some(profiles) = &answer.profiles {
        for p in profiles {
            let what = match p.result {
                RefreshResult::Refreshed => "refreshed",
                RefreshResult::Skipped => "skipped",
                RefreshResult::Failed => "FAILED",
                RefreshResult::Pending => "pending",
            };
            out.push_str(&format!("{}: {what}", p.profile));
            if let Some(e) = &p.expiration {
                out.push_str(&format!(", expires {e}"));
            }
            if let Some(d) = &p.detail {
                out.push_str(&format!(": {d}"));
            }
            out.push('\n');
        }
    } else if answer.ok && *req == Request::Reload {
        out.push_str(&format!(
            "configuration reloaded: added {}; changed {}; removed {}\n",
            list(&answer.added),
            list(&answer.changed),
            list(&answer.removed)
        ));
        if answer
            .restart_needed
            .as_ref()
            .is_some_and(|r| !r.is_empty())
        {
            out.push_str(&format!(
                "these options only take effect after a restart (the running values are kept): {}\n",
                list(&answer.restart_needed)
            ));
        }
    }
    if !answer.problems.is_empty() {
        if *req == Request::Reload && !answer.usage {
            out.push_str("reload refused; the running configuration is kept:\n");
        }
        for p in &answer.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ProfileResult;

    #[test]
    fn a_missing_socket_says_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let e = call(&path, &Request::Reload).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("no rolecall sidecar answers at "),
            "{text}"
        );
        assert!(text.contains("is this the rolecall container"), "{text}");
        assert!(
            text.contains(&format!("is {} an emptyDir", dir.path().display())),
            "{text}"
        );
    }

    #[test]
    fn exit_codes_follow_the_answer() {
        assert_eq!(
            exit_code(&Answer {
                ok: true,
                ..Answer::default()
            }),
            0
        );
        assert_eq!(exit_code(&Answer::refused(vec!["x".into()])), 1);
        assert_eq!(exit_code(&Answer::bad_request("x".into())), 64);
        let refresh = |results: &[RefreshResult]| Answer {
            ok: true,
            profiles: Some(
                results
                    .iter()
                    .map(|r| ProfileResult {
                        profile: "p".into(),
                        result: *r,
                        expiration: None,
                        detail: None,
                        class: None,
                    })
                    .collect(),
            ),
            ..Answer::default()
        };
        assert_eq!(exit_code(&refresh(&[RefreshResult::Refreshed])), 0);
        for not in [RefreshResult::Skipped, RefreshResult::Pending] {
            assert_eq!(
                exit_code(&refresh(&[RefreshResult::Refreshed, not])),
                1,
                "{not:?}"
            );
        }
    }

    #[test]
    fn summaries_name_what_changed_and_each_profile() {
        let reload = Answer {
            ok: true,
            added: Some(vec!["c".into()]),
            changed: Some(vec![]),
            removed: Some(vec!["a".into(), "b".into()]),
            restart_needed: Some(vec!["log_format".into()]),
            ..Answer::default()
        };
        assert_eq!(
            summary(&Request::Reload, &reload),
            "configuration reloaded: added c; changed -; removed a, b\n\
             these options only take effect after a restart (the running values are kept): log_format\n"
        );
        let refused = Answer::refused(vec!["f.yaml: region: bad".into()]);
        assert_eq!(
            summary(&Request::Reload, &refused),
            "reload refused; the running configuration is kept:\n  - f.yaml: region: bad\n"
        );
        let refresh = Answer {
            ok: false,
            profiles: Some(vec![
                ProfileResult {
                    profile: "a".into(),
                    result: RefreshResult::Refreshed,
                    expiration: Some("2026-01-01T00:00:00Z".into()),
                    detail: None,
                    class: None,
                },
                ProfileResult {
                    profile: "b".into(),
                    result: RefreshResult::Failed,
                    expiration: None,
                    detail: Some("AccessDenied: no".into()),
                    class: Some("config_error".into()),
                },
            ]),
            ..Answer::default()
        };
        assert_eq!(
            summary(&Request::Refresh { profile: None }, &refresh),
            "a: refreshed, expires 2026-01-01T00:00:00Z\nb: FAILED: AccessDenied: no\n"
        );
    }
}
