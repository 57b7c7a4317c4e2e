//! Stages 1 and 2, sources and merge: the flags, the environment and the
//! file, each read on its own into the same typed shape ([`Source`]: a
//! [`Layer`] of option values, the profiles, the problems found reading
//! them), then merged by the precedence rule, in one place. Every value
//! keeps where it came from, for error messages.

use std::collections::{BTreeMap, BTreeSet};

use super::Env;
use super::options::{self, Flags, Layer, Yaml};
use super::values::{Problems, Sourced, src};
use crate::text::printable;

/// One profile's settings as a source gives them.
#[derive(Clone, Debug, Default)]
pub(super) struct RawProfile {
    pub role_arn: Option<Sourced>,
    /// Its own values of the inherited options.
    pub own: Layer,
    pub policy: Option<Sourced>,
    pub source_profile: Option<Sourced>,
    pub external_id: Option<Sourced>,
    pub source_identity: Option<Sourced>,
    pub kubernetes_tags: Option<Sourced>,
    pub policy_arns: Vec<Sourced>,
    /// `tags`: each key and value with where they came from.
    pub tags: Vec<(Sourced, Sourced)>,
    pub transitive_tag_keys: Vec<Sourced>,
}

impl RawProfile {
    /// A profile given as `NAME=ROLE_ARN`: only its role.
    pub fn role(arn: Sourced) -> RawProfile {
        RawProfile {
            role_arn: Some(arn),
            ..RawProfile::default()
        }
    }

    /// The field of a single-valued profile key, and how its YAML reads.
    pub fn slot(&mut self, key: &str) -> Option<(&mut Option<Sourced>, Yaml)> {
        let text = |f| Some((f, Yaml::Text));
        match key {
            options::ROLE_ARN => text(&mut self.role_arn),
            "policy" => text(&mut self.policy),
            "source_profile" => text(&mut self.source_profile),
            "external_id" => text(&mut self.external_id),
            "source_identity" => text(&mut self.source_identity),
            "kubernetes_tags" => Some((&mut self.kubernetes_tags, Yaml::Bool)),
            _ => self.own.slot(key, true),
        }
    }
}

/// What one source says.
#[derive(Debug, Default)]
pub(super) struct Source {
    pub values: Layer,
    /// In the order given, a name possibly twice (merge reports that).
    pub profiles: Vec<(Sourced, RawProfile)>,
    /// The profile to use when no source names one (`AWS_ROLE_ARN`).
    pub fallback: Option<(Sourced, RawProfile)>,
    /// The output sets (only the file declares them).
    pub outputs: Option<super::outputs::RawOutputs>,
    pub problems: Problems,
}

/// The command line: each option's flag, and `--profile NAME=ROLE_ARN`.
pub(super) fn from_flags(flags: &Flags) -> Source {
    let mut out = Source {
        values: Layer::from_flags(flags),
        ..Source::default()
    };
    let items = flags.profiles.iter();
    let items = items.map(|i| (i.as_str(), format!("--profile {}", printable(i))));
    out.profiles = parse_pairs(items, &mut out.problems);
    out
}

/// The environment: each option's variables, `ROLECALL_PROFILES` and the
/// `AWS_ROLE_ARN` fallback.
pub(super) fn from_env(env: &Env) -> Source {
    let mut out = Source {
        values: Layer::from_env(env),
        ..Source::default()
    };
    if let Some(v) = env.get(options::PROFILES_ENV) {
        let origin = format!("environment {}", options::PROFILES_ENV);
        out.profiles = parse_pairs(v.split(',').map(|i| (i, origin.clone())), &mut out.problems);
    }
    let name = options::ROLE_ARN_ENV;
    out.fallback = env.get(name).filter(|v| !v.is_empty()).map(|arn| {
        let origin = format!("environment {name}");
        let role = RawProfile::role(src(arn.clone(), &origin));
        (src("default", origin), role)
    });
    out
}

/// Parses `NAME=ARN` pairs from `--profile` flags or `ROLECALL_PROFILES`.
fn parse_pairs<'a>(
    items: impl Iterator<Item = (&'a str, String)>,
    problems: &mut Problems,
) -> Vec<(Sourced, RawProfile)> {
    let mut out = Vec::new();
    for (item, origin) in items {
        let item = item.trim();
        match item.split_once('=') {
            _ if item.is_empty() => {}
            Some((name, arn)) => {
                let p = RawProfile::role(src(arn.trim(), &origin));
                out.push((src(name.trim(), origin), p));
            }
            None => problems.push(
                origin,
                format!("expected NAME=ROLE_ARN, got \"{}\"", printable(item)),
            ),
        }
    }
    out
}

/// The merged profiles, by name, each with the source of its name.
pub(super) type RawProfiles = BTreeMap<String, (Sourced, RawProfile)>;

/// The merged sources.
#[derive(Debug, Default)]
pub(super) struct Merged {
    pub values: Layer,
    pub profiles: RawProfiles,
    /// Where the `AWS_ROLE_ARN` fallback came from, if it gave the one
    /// profile (pod-identity drops it: it is the IRSA role).
    pub fallback: Option<String>,
    pub problems: Problems,
}

/// Merges `sources`, lowest precedence first: a later one wins, for an
/// option its whole value, for a profile its role ARN (the file's
/// per-profile settings are kept). A name twice in one source is an error.
pub(super) fn merge<'a>(sources: impl IntoIterator<Item = &'a Source>) -> Merged {
    let mut out = Merged::default();
    let mut fallback = None;
    for source in sources {
        out.values = std::mem::take(&mut out.values).under(source.values.clone());
        let mut seen = BTreeSet::new();
        for (name, raw) in &source.profiles {
            if !seen.insert(&name.value) {
                let message = format!("duplicate profile \"{}\"", printable(&name.value));
                out.problems.at(name, message);
            } else if let Some((_, existing)) = out.profiles.get_mut(&name.value) {
                existing.role_arn = raw.role_arn.clone();
            } else {
                let entry = (name.clone(), raw.clone());
                out.profiles.insert(name.value.clone(), entry);
            }
        }
        fallback = fallback.or(source.fallback.as_ref());
    }
    if let Some((name, raw)) = fallback.filter(|_| out.profiles.is_empty()) {
        let entry = (name.clone(), raw.clone());
        out.profiles.insert(name.value.clone(), entry);
        out.fallback = Some(name.origin.clone());
    }
    out
}

#[cfg(test)]
mod tests;
