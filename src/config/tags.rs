//! Session tags and source identity of a chained profile: `tags`,
//! `transitive_tag_keys`, `source_identity` and `kubernetes_tags`, checked
//! against STS's rules before any call, every problem reported.
//!
//! `AssumeRoleWithWebIdentity` takes no tags and no source identity as
//! parameters (only from the token's claims, which rolecall does not
//! write), so these keys apply to chained profiles (`source_profile`, an
//! `AssumeRole` call) only.

use std::collections::BTreeSet;

use super::KUBERNETES_TAG_KEYS;
use super::checks::{judged, parse_bool, quoted};
use super::sources::RawProfile;
use super::validate::validate;
use super::values::{Problems, join};
use crate::text::printable;

/// STS's limits: at most 50 session tags, keys of 1-128 and values of
/// 0-256 characters.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;

/// A tag's characters: letters, digits, spaces and `_ . : / = + - @`.
fn tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}

pub(super) fn check_tag_key(v: &str) -> Result<String, String> {
    let n = v.chars().count();
    if !(1..=MAX_TAG_KEY).contains(&n) || !v.chars().all(tag_char) {
        let rule = format!("must be 1-{MAX_TAG_KEY} letters, digits, spaces and _ . : / = + - @");
        return Err(quoted(v, "tag key ", &rule));
    }
    if v.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!(
            "tag key \"{}\": the aws: prefix is reserved by AWS",
            printable(v)
        ));
    }
    Ok(v.to_owned())
}

pub(super) fn check_tag_value(v: &str) -> Result<String, String> {
    let ok = v.chars().count() <= MAX_TAG_VALUE && v.chars().all(tag_char);
    let rule =
        format!("must be at most {MAX_TAG_VALUE} letters, digits, spaces and _ . : / = + - @");
    judged(ok, v, "tag value ", &rule)
}

/// 2-64 characters of `[\w+=,.@-]`, not starting with `aws:`.
pub(super) fn check_source_identity(v: &str) -> Result<String, String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    let ok = (2..=64).contains(&v.len()) && v.chars().all(ok_char);
    judged(
        ok,
        v,
        "source_identity ",
        "must be 2-64 characters of A-Z a-z 0-9 and _+=,.@-",
    )
}

/// Refuses tag settings on a profile without a source (the first given).
fn unchained(raw: &RawProfile, kubernetes: bool, p: &mut Problems) {
    let first = (raw.tags.iter().map(|(k, _)| k))
        .chain(&raw.transitive_tag_keys)
        .chain(&raw.source_identity)
        .chain(raw.kubernetes_tags.as_ref().filter(|_| kubernetes))
        .next();
    if let Some(s) = first {
        p.at(
            s,
            "session tags and source_identity apply to chained profiles only (with source_profile): AssumeRoleWithWebIdentity takes them only from the token's claims",
        );
    }
}

/// A profile's checked tag settings.
#[derive(Debug, Default)]
pub(super) struct Tags {
    pub tags: Vec<(String, String)>,
    pub transitive: Vec<String>,
    pub source_identity: Option<String>,
    pub kubernetes: bool,
}

/// Checks `raw`'s tag settings (`origin` names the profile); `chained`:
/// whether it has a source profile, the only kind they apply to.
pub(super) fn resolve(raw: &RawProfile, origin: &str, chained: bool, p: &mut Problems) -> Tags {
    let kubernetes = raw
        .kubernetes_tags
        .as_ref()
        .and_then(|s| validate(s, p, parse_bool))
        .unwrap_or(false);
    let source_identity = raw
        .source_identity
        .as_ref()
        .and_then(|s| validate(s, p, check_source_identity));
    if !chained {
        unchained(raw, kubernetes, p);
        return Tags::default();
    }
    let mut tags = Vec::new();
    let mut seen = BTreeSet::new();
    if kubernetes {
        seen.extend(KUBERNETES_TAG_KEYS.map(str::to_ascii_lowercase));
    }
    for (k, v) in &raw.tags {
        let value = validate(v, p, check_tag_value);
        let Some(key) = validate(k, p, check_tag_key) else {
            continue;
        };
        // STS compares keys without case.
        if !seen.insert(key.to_ascii_lowercase()) {
            let own = KUBERNETES_TAG_KEYS
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&key));
            let why = if kubernetes && own {
                "is one kubernetes_tags sets: remove it, or kubernetes_tags"
            } else {
                "is given twice (keys are compared without case)"
            };
            p.at(k, quoted(&key, "tag key ", why));
            continue;
        }
        if let Some(value) = value {
            tags.push((key, value));
        }
    }
    tags.sort();
    let count = raw.tags.len() + usize::from(kubernetes) * KUBERNETES_TAG_KEYS.len();
    if count > MAX_TAGS {
        p.push(
            join(origin, "tags"),
            format!(
                "{count} session tags{}: STS allows at most {MAX_TAGS}",
                if kubernetes {
                    " with kubernetes_tags' 4"
                } else {
                    ""
                }
            ),
        );
    }
    let transitive = transitive(raw, &seen, kubernetes, p);
    Tags {
        tags,
        transitive,
        source_identity,
        kubernetes,
    }
}

/// The transitive keys: each a tag key of the profile (`seen`, lowercase),
/// then the Kubernetes tags' keys.
fn transitive(
    raw: &RawProfile,
    seen: &BTreeSet<String>,
    kubernetes: bool,
    p: &mut Problems,
) -> Vec<String> {
    let mut transitive = Vec::new();
    for s in &raw.transitive_tag_keys {
        if seen.contains(&s.value.to_ascii_lowercase()) {
            transitive.push(s.value.clone());
        } else {
            p.at(
                s,
                format!(
                    "\"{}\" is not one of the profile's tag keys: a transitive key must be a session tag",
                    printable(&s.value)
                ),
            );
        }
    }
    if kubernetes {
        for k in KUBERNETES_TAG_KEYS {
            if !transitive.iter().any(|t| t.eq_ignore_ascii_case(k)) {
                transitive.push(k.to_owned());
            }
        }
    }
    transitive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_source_identities_follow_stss_rules() {
        for ok in ["team", "cost-center", "a:b/c=d+e-f@g_h.i", "Équipe 1"] {
            assert!(check_tag_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", &"k".repeat(129), "a,b", "a\tb", "aws:team", "AWS:x"] {
            assert!(check_tag_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_tag_key(&"k".repeat(128)).is_ok());
        assert!(check_tag_value("").is_ok(), "a value may be empty");
        assert!(check_tag_value(&"v".repeat(256)).is_ok());
        assert!(check_tag_value(&"v".repeat(257)).is_err());
        assert!(check_tag_value("a;b").is_err());
        for ok in ["ab", "alice@example.com", &"s".repeat(64)] {
            assert!(check_source_identity(ok).is_ok(), "{ok}");
        }
        for bad in ["a", &"s".repeat(65), "a b", "a/b"] {
            assert!(check_source_identity(bad).is_err(), "{bad:?}");
        }
    }
}
