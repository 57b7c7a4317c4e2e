//! Checks of single values: each takes the text (trimmed) and gives the
//! value or the message that says what is wrong with it.

use std::net::SocketAddr;
use std::path::Path;

use super::{Env, MAX_CHAINED_DURATION, MAX_POLICY_CHARS, MIN_DURATION};
use crate::text::printable;

pub(super) fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "\"{}\" is not a boolean: use true or false",
            printable(v)
        )),
    }
}

pub(super) fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse().map_err(|_| {
        format!(
            "\"{}\" is not an address such as 0.0.0.0:9911",
            printable(v)
        )
    })
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`
pub fn check_role_arn(v: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "\"{}\" is not an IAM role ARN such as arn:aws:iam::111122223333:role/NAME",
            printable(v)
        )
    };
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts[..] else {
        return Err(bad());
    };
    let role = resource.strip_prefix("role/").ok_or_else(bad)?;
    let name = role.rsplit('/').next().unwrap_or_default();
    let ok = arn == "arn"
        && partition.starts_with("aws")
        && partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-')
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && (1..=64).contains(&name.len())
        && role.len() <= 512
        && role.chars().all(|c| is_name_char(c) || c == '/');
    if ok { Ok(v.to_owned()) } else { Err(bad()) }
}

pub(super) fn check_policy_arn(v: &str) -> Result<String, String> {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = matches!(parts[..], ["arn", p, "iam", "", acct, res]
        if p.starts_with("aws")
        && (acct == "aws" || (acct.len() == 12 && acct.chars().all(|c| c.is_ascii_digit())))
        && res.starts_with("policy/")
        && res.chars().all(|c| is_name_char(c) || c == '/'));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "\"{}\" is not an IAM policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess",
            printable(v)
        ))
    }
}

pub(super) fn check_region(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && v.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "\"{}\" is not an AWS region such as eu-west-1",
            printable(v)
        ))
    }
}

pub(super) fn check_endpoint(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty() && !r.starts_with('/') && r.chars().all(|c| c.is_ascii_graphic())
    });
    if ok {
        Ok(v.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "\"{}\" is not an http(s) URL such as https://sts.eu-west-1.amazonaws.com",
            printable(v)
        ))
    }
}

pub(super) fn check_duration(v: &str, max: u32) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(d) if (MIN_DURATION..=max).contains(&d) => Ok(d),
        _ if max == MAX_CHAINED_DURATION => Err(format!(
            "duration \"{}\" must be whole seconds from {MIN_DURATION} to {max} (AWS caps role-chained sessions at one hour)",
            printable(v)
        )),
        _ => Err(format!(
            "duration \"{}\" must be whole seconds from {MIN_DURATION} to {max}",
            printable(v)
        )),
    }
}

pub(super) fn check_session_name(v: &str) -> Result<String, String> {
    if (2..=64).contains(&v.len()) && v.chars().all(is_name_char) {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "role session name \"{}\" must be 2-64 characters of A-Z a-z 0-9 and +=,.@_-",
            printable(v)
        ))
    }
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
        Ok(serde_json::Value::Object(_)) => {
            // Re-serialised compactly: no newline can reach an STS form or a log line.
            Ok(serde_json::to_string(
                &serde_json::from_str::<serde_json::Value>(v).expect("parsed"),
            )
            .expect("serialisable"))
        }
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
    if ok {
        Ok(())
    } else {
        Err(format!(
            "profile name \"{}\" must be 1-64 characters of A-Z a-z 0-9 _ . -",
            printable(v)
        ))
    }
}
