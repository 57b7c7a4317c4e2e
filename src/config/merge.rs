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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::options::ROLE_ARN;
    use crate::config::sources::src;

    fn source(values: &[(&'static str, &str, &str)], profiles: &[(&str, &str, &str)]) -> Source {
        Source {
            values: values.iter().map(|(k, v, o)| (*k, src(*v, *o))).collect(),
            profiles: profiles
                .iter()
                .map(|(n, arn, o)| (src(*n, *o), RawProfile::role(src(*arn, *o))))
                .collect(),
            ..Source::default()
        }
    }

    #[test]
    fn a_later_source_wins_each_value() {
        let file = source(
            &[("region", "r-file", "f"), ("log_format", "json", "f")],
            &[],
        );
        let env = source(&[("region", "r-env", "e"), ("output_dir", "/e", "e")], &[]);
        let flags = source(&[("output_dir", "/f", "--output-dir")], &[]);
        let m = merge([&file, &env, &flags]);
        let got: Vec<_> = m
            .values
            .iter()
            .map(|(k, v)| format!("{k}={}", v.value))
            .collect();
        assert_eq!(got, ["log_format=json", "output_dir=/f", "region=r-env"]);
    }

    #[test]
    fn a_later_source_replaces_a_profile_s_role_and_keeps_its_settings() {
        let mut file = source(&[], &[("a", "arn-file", "f.a"), ("b", "arn-b", "f.b")]);
        file.profiles[0]
            .1
            .keys
            .insert("region", src("us-east-1", "f.a.region"));
        let flags = source(&[], &[("a", "arn-flag", "--profile a=arn-flag")]);
        let m = merge([&file, &Source::default(), &flags]);
        let (name, a) = &m.profiles["a"];
        assert_eq!(name.origin, "f.a");
        assert_eq!(a.get(ROLE_ARN).unwrap().value, "arn-flag");
        assert_eq!(a.get("region").unwrap().value, "us-east-1");
        assert_eq!(m.profiles.len(), 2);
        assert!(m.problems.into_vec().is_empty());
    }

    #[test]
    fn a_name_twice_in_one_source_is_a_problem_but_not_across_sources() {
        let env = source(
            &[],
            &[("a", "x", "env"), ("a", "y", "env"), ("a", "z", "env")],
        );
        let flags = source(&[], &[("a", "w", "--profile a=w")]);
        let m = merge([&Source::default(), &env, &flags]);
        assert_eq!(m.profiles["a"].1.get(ROLE_ARN).unwrap().value, "w");
        let p = m.problems.into_vec();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            (p[0].origin.as_str(), p[0].message.as_str()),
            ("env", "duplicate profile \"a\"")
        );
    }

    #[test]
    fn the_fallback_profile_only_stands_in_for_none() {
        let mut env = source(&[], &[]);
        env.fallback = Some((src("default", "env"), RawProfile::role(src("arn", "env"))));
        let m = merge([&env]);
        assert_eq!(m.profiles.keys().collect::<Vec<_>>(), ["default"]);
        let file = source(&[], &[("a", "x", "f")]);
        let m = merge([&file, &env]);
        assert_eq!(m.profiles.keys().collect::<Vec<_>>(), ["a"]);
    }
}
