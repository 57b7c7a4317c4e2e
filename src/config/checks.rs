//! Checks of single values: each takes the text (trimmed) and gives the
//! value or the message that says what is wrong with it.

use std::net::SocketAddr;
use std::path::Path;

use super::{Env, MAX_CHAINED_DURATION, MAX_POLICY_CHARS, MIN_DURATION};
use crate::text::printable;

/// The message `before"v" after`, `v` made printable.
pub(super) fn quoted(v: &str, before: &str, after: &str) -> String {
    format!("{before}\"{}\" {after}", printable(v))
}

/// `v` itself when `ok`, else the message `before"v" after`.
pub(super) fn judged(ok: bool, v: &str, before: &str, after: &str) -> Result<String, String> {
    if ok {
        Ok(v.to_owned())
    } else {
        Err(quoted(v, before, after))
    }
}

/// One of `words`' values, by its word; `after` says what else to use.
pub(super) fn word<T: Copy>(v: &str, words: &[(&str, T)], after: &str) -> Result<T, String> {
    let found = words.iter().find(|(w, _)| *w == v).map(|(_, t)| *t);
    found.ok_or_else(|| quoted(v, "", after))
}

pub(super) fn parse_bool(v: &str) -> Result<bool, String> {
    word(
        v,
        &[("true", true), ("false", false)],
        "is not a boolean: use true or false",
    )
}

pub(super) fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| quoted(v, "", "is not an address such as 0.0.0.0:9911"))
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`
pub fn check_role_arn(v: &str) -> Result<String, String> {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = matches!(parts[..], ["arn", partition, "iam", "", account, resource]
    if partition.starts_with("aws")
    && partition.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    && account.len() == 12
    && account.chars().all(|c| c.is_ascii_digit())
    && resource.strip_prefix("role/").is_some_and(|role| {
        let name = role.rsplit('/').next().unwrap_or_default();
        (1..=64).contains(&name.len())
            && role.len() <= 512
            && role.chars().all(|c| is_name_char(c) || c == '/')
    }));
    let example = "is not an IAM role ARN such as arn:aws:iam::111122223333:role/NAME";
    judged(ok, v, "", example)
}

pub(super) fn check_policy_arn(v: &str) -> Result<String, String> {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = matches!(parts[..], ["arn", p, "iam", "", acct, res]
        if p.starts_with("aws")
        && (acct == "aws" || (acct.len() == 12 && acct.chars().all(|c| c.is_ascii_digit())))
        && res.starts_with("policy/")
        && res.chars().all(|c| is_name_char(c) || c == '/'));
    let example = "is not an IAM policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess";
    judged(ok, v, "", example)
}

pub(super) fn check_region(v: &str) -> Result<String, String> {
    let ok = v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && v.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    judged(ok, v, "", "is not an AWS region such as eu-west-1")
}

pub(super) fn check_endpoint(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty() && !r.starts_with('/') && r.chars().all(|c| c.is_ascii_graphic())
    });
    let example = "is not an http(s) URL such as https://sts.eu-west-1.amazonaws.com";
    let trimmed = v.trim_end_matches('/');
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(quoted(v, "", example))
    }
}

pub(super) fn check_duration(v: &str, max: u32) -> Result<u32, String> {
    let chained = if max == MAX_CHAINED_DURATION {
        " (AWS caps role-chained sessions at one hour)"
    } else {
        ""
    };
    let rule = format!("must be whole seconds from {MIN_DURATION} to {max}{chained}");
    let d = v.parse().ok().filter(|d| (MIN_DURATION..=max).contains(d));
    d.ok_or_else(|| quoted(v, "duration ", &rule))
}

pub(super) fn check_session_name(v: &str) -> Result<String, String> {
    let ok = (2..=64).contains(&v.len()) && v.chars().all(is_name_char);
    let rule = "must be 2-64 characters of A-Z a-z 0-9 and +=,.@_-";
    judged(ok, v, "role session name ", rule)
}

pub(super) fn check_external_id(v: &str) -> Result<String, String> {
    if (2..=1224).contains(&v.len()) && v.chars().all(|c| is_name_char(c) || ":/".contains(c)) {
        Ok(v.to_owned())
    } else {
        Err("external_id must be 2-1224 characters of A-Z a-z 0-9 and +=,.@:/_-".into())
    }
}

pub(super) fn check_policy(v: &str) -> Result<String, String> {
    if v.chars().count() > MAX_POLICY_CHARS {
        return Err(format!(
            "the session policy is longer than {MAX_POLICY_CHARS} characters"
        ));
    }
    match serde_json::from_str::<serde_json::Value>(v) {
        // Re-serialised compactly: no newline can reach an STS form or a log line.
        Ok(serde_json::Value::Object(o)) => Ok(serde_json::to_string(&o).expect("serialisable")),
        Ok(_) => Err("the session policy must be a JSON object".into()),
        Err(e) => Err(format!("the session policy is not valid JSON: {e}")),
    }
}

/// `rolecall-<HOSTNAME>`, cleaned to the characters STS accepts and cut to 64.
pub fn default_session_name(env: &Env) -> String {
    let host = env
        .get("HOSTNAME")
        .cloned()
        .or_else(|| {
            // A host name is at most 64 bytes.
            crate::fsread::read(
                Path::new("/proc/sys/kernel/hostname"),
                256,
                crate::fsread::Follow::No,
            )
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_default();
    let mut name: String = format!("rolecall-{}", host.trim())
        .chars()
        .map(|c| if is_name_char(c) { c } else { '-' })
        .collect();
    name.truncate(64);
    name
}

/// A profile name (checked untrimmed: it was trimmed where it was read).
pub(super) fn check_profile_name(v: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    let rule = "must be 1-64 characters of A-Z a-z 0-9 _ . -";
    judged(ok, v, "profile name ", rule).map(drop)
}
