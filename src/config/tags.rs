//! Session tags and source identity of a chained profile: `tags`,
//! `transitive_tag_keys`, `source_identity` and `kubernetes_tags`, checked
//! against STS's rules before any call, every problem reported.
//!
//! `AssumeRoleWithWebIdentity` takes no tags and no source identity as
//! parameters (only from the token's claims, which rolecall does not
//! write), so these keys apply to chained profiles (`source_profile`, an
//! `AssumeRole` call) only.

use std::collections::BTreeSet;

use super::Profile;
use super::checks::parse_bool;
use super::sources::RawProfile;
use super::validate::validate;
use super::values::Problems;
use crate::aws::{
    KUBERNETES_TAG_KEYS, MAX_TAGS, check_source_identity, check_tag_key, check_tag_value,
};
use crate::text::{printable, quoted};

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

/// Checks `raw`'s tag settings (`origin` names the profile): a profile
/// holding only them; `chained`: whether it has a source profile, the only
/// kind they apply to.
pub(super) fn resolve(raw: &RawProfile, origin: &str, chained: bool, p: &mut Problems) -> Profile {
    let kubernetes = validate(&raw.kubernetes_tags, p, parse_bool).unwrap_or(false);
    let source_identity = validate(&raw.source_identity, p, check_source_identity);
    if !chained {
        unchained(raw, kubernetes, p);
        return Profile::default();
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
            format!("{origin}.tags"),
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
    Profile {
        tags,
        transitive_tag_keys: transitive(raw, &seen, kubernetes, p),
        source_identity,
        kubernetes_tags: kubernetes,
        ..Profile::default()
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
