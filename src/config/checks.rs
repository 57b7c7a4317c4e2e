//! Checks of single values that are rolecall's own (AWS's are in
//! `crate::aws`): each takes the text (trimmed) and gives the value or the
//! message that says what is wrong with it.

use std::net::SocketAddr;

use super::Env;
use crate::aws::is_name_char;
use crate::text::{judged, quoted};

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

/// `rolecall-<HOSTNAME>`, cleaned to the characters STS accepts and cut to 64.
pub fn default_session_name(env: &Env) -> String {
    let host = env
        .get("HOSTNAME")
        .cloned()
        .or_else(crate::fsread::hostname)
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
