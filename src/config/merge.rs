//! Stage 2, merge: the precedence rule, in one place. Sources are given
//! from the lowest precedence to the highest (file, environment, flags) and
//! a later one wins: for an option its whole value, for a profile its role
//! ARN (the file's per-profile settings are kept). A name twice in one
//! source is an error.

use std::collections::{BTreeMap, BTreeSet};

use super::sources::{Problems, RawProfile, Source, Src, Values, printable};

/// The merged sources.
#[derive(Debug, Default)]
pub(super) struct Merged {
    pub values: Values,
    /// By name, with the source of the name.
    pub profiles: BTreeMap<String, (Src, RawProfile)>,
    pub problems: Problems,
}

/// Merges `sources`, lowest precedence first.
pub(super) fn merge<'a>(sources: impl IntoIterator<Item = &'a Source>) -> Merged {
    let mut out = Merged::default();
    let mut fallback = None;
    for source in sources {
        out.values
            .extend(source.values.iter().map(|(k, v)| (*k, v.clone())));
        let mut seen = BTreeSet::new();
        for (name, raw) in &source.profiles {
            if !seen.insert(&name.value) {
                out.problems.at(
                    name,
                    format!("duplicate profile \"{}\"", printable(&name.value)),
                );
                continue;
            }
            match out.profiles.get_mut(&name.value) {
                Some((_, existing)) => match raw.get(super::options::ROLE_ARN) {
                    Some(arn) => {
                        existing.keys.insert(super::options::ROLE_ARN, arn.clone());
                    }
                    None => {
                        existing.keys.remove(super::options::ROLE_ARN);
                    }
                },
                None => {
                    out.profiles
                        .insert(name.value.clone(), (name.clone(), raw.clone()));
                }
            }
        }
        fallback = fallback.or(source.fallback.as_ref());
    }
    if out.profiles.is_empty()
        && let Some((name, raw)) = fallback
    {
        out.profiles
            .insert(name.value.clone(), (name.clone(), raw.clone()));
    }
    out
}
