//! The control socket's protocol: a request is one line of JSON, the answer
//! JSON lines (one today), then the sidecar closes the connection.
//!
//! ```text
//! {"op":"reload"}
//! {"op":"refresh","profile":null}      every profile
//! {"op":"refresh","profile":"reader"}  one
//! {"op":"sets"}                        the output sets and their dirs
//! ```
//!
//! Answers never hold a key, a session token or the pod's token: only
//! names, expiry times and the error texts that `status.json` shows.

use serde::{Deserialize, Serialize};

/// The longest request line, newline included.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Re-read the configuration, as SIGHUP does, and say what changed.
    /// (Other fields are ignored; a misspelt `refresh` field is refused, so
    /// that a typo never refreshes every profile.)
    Reload,
    /// Refresh every profile (`None`) or one, now, at most once per
    /// profile every 5 s.
    Refresh {
        #[serde(default)]
        profile: Option<String>,
    },
    /// The output sets and their directories (what `rolecall status` reads).
    Sets,
}

impl Request {
    /// The request in `line` (one line of JSON, without its newline), or
    /// what is wrong with it.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let text = std::str::from_utf8(line).map_err(|_| "the request is not UTF-8".to_owned())?;
        let bad = |e: String| {
            format!(
                "the request is not one of {{\"op\":\"reload\"}}, {{\"op\":\"refresh\",\"profile\":null|\"NAME\"}} or {{\"op\":\"sets\"}}: {e}"
            )
        };
        // An object only (serde would also take a tagged enum as a list).
        match serde_json::from_str(text.trim()).map_err(|e| bad(e.to_string()))? {
            v @ serde_json::Value::Object(_) => {
                serde_json::from_value(v).map_err(|e| bad(e.to_string()))
            }
            _ => Err(bad("not a JSON object".into())),
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("a request serialises");
        s.push('\n');
        s
    }
}

/// The sidecar's answer. `ok` says whether the request succeeded; the other
/// fields appear as the request makes them meaningful.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    /// The request itself was wrong (an unknown profile, a bad line): the
    /// client exits 64.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage: bool,
    /// The sidecar had no room for the request (every connection a request
    /// being carried out): nothing was done; try again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub busy: bool,
    /// A reload: the profiles it added, changed and removed, and the
    /// process-wide options that only a restart applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_needed: Option<Vec<String>>,
    /// A refresh: one entry per profile asked for, in name order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<ProfileResult>>,
    /// `sets`: each output set's name and directory, by name (one set,
    /// `default`, without declared sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sets: Option<Vec<SetDir>>,
    /// Why the request failed (`origin: message` for a refused reload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Answer {
    /// A refusal: `ok` false with `problems`.
    pub fn refused(problems: Vec<String>) -> Answer {
        Answer {
            problems,
            ..Answer::default()
        }
    }

    /// No room for the request: `connections` requests are being carried
    /// out. Nothing was done.
    pub fn busy(connections: usize) -> Answer {
        Answer {
            busy: true,
            ..Answer::refused(vec![format!(
                "the sidecar is busy: {connections} requests are being carried out; nothing was done, try again in a few seconds"
            )])
        }
    }

    /// A refusal of the request itself (the client's usage error).
    pub fn bad_request(problem: String) -> Answer {
        Answer {
            usage: true,
            ..Answer::refused(vec![problem])
        }
    }

    /// The answer as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("an answer serialises");
        s.push('\n');
        s
    }
}

/// One output set, as the `sets` answer names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetDir {
    pub name: String,
    pub dir: String,
}

/// What a refresh did for one profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileResult {
    pub profile: String,
    pub result: RefreshResult,
    /// `refreshed`: the new session's expiry (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// `failed`: the error as `status.json` shows it (`CODE: message`);
    /// `skipped` and `pending`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `failed`: its class as logs and metrics name it (`config_error`,
    /// `transient_error`, `token_error`, `clock_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// The outcome of one profile's refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefreshResult {
    /// STS answered and the new session is published.
    Refreshed,
    /// Not attempted: refreshed less than 5 s ago, or backing off.
    Skipped,
    /// The attempt failed; the last good session is kept while valid.
    Failed,
    /// Still running when the answer was due (see `rolecall status`).
    Pending,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_one_json_line() {
        assert_eq!(Request::parse(br#"{"op":"reload"}"#), Ok(Request::Reload));
        assert_eq!(
            Request::parse(b" {\"op\":\"refresh\"} \r"),
            Ok(Request::Refresh { profile: None })
        );
        assert_eq!(
            Request::parse(br#"{"op":"refresh","profile":null}"#),
            Ok(Request::Refresh { profile: None })
        );
        assert_eq!(
            Request::parse(br#"{"op":"refresh","profile":"reader"}"#),
            Ok(Request::Refresh {
                profile: Some("reader".into())
            })
        );
        assert_eq!(Request::parse(br#"{"op":"sets"}"#), Ok(Request::Sets));
        for r in [
            Request::Reload,
            Request::Refresh { profile: None },
            Request::Sets,
        ] {
            let line = r.to_line();
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(Request::parse(line.trim_end().as_bytes()), Ok(r));
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_requests_it_could_be() {
        for bad in [
            &b""[..],
            b"reload",
            br#"{"op":"status"}"#,
            br#"{"op":"refresh","profil":"a"}"#,
            br#"{"op":"refresh","profile":7}"#,
            br#"["reload"]"#,
            b"\xff\xfe",
        ] {
            let e = Request::parse(bad).unwrap_err();
            assert!(
                e.contains("not UTF-8") || e.contains(r#"{"op":"reload"}"#),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn answers_show_only_the_fields_that_mean_something() {
        let a = Answer::bad_request("no profile x; configured: a, b".into());
        assert_eq!(
            a.to_line(),
            "{\"ok\":false,\"usage\":true,\"problems\":[\"no profile x; configured: a, b\"]}\n"
        );
        let a = Answer {
            ok: true,
            added: Some(vec!["c".into()]),
            changed: Some(vec![]),
            removed: Some(vec![]),
            restart_needed: Some(vec![]),
            ..Answer::default()
        };
        let line = a.to_line();
        assert_eq!(
            line,
            "{\"ok\":true,\"added\":[\"c\"],\"changed\":[],\"removed\":[],\"restart_needed\":[]}\n"
        );
        assert_eq!(serde_json::from_str::<Answer>(&line).unwrap(), a);
        let r = ProfileResult {
            profile: "a".into(),
            result: RefreshResult::Skipped,
            expiration: None,
            detail: Some("refreshed 2 s ago".into()),
            class: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"profile":"a","result":"skipped","detail":"refreshed 2 s ago"}"#
        );
    }
}
