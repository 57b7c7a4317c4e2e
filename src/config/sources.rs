//! Stage 1, sources: the flags, the environment and the file, each read on
//! its own into the same shape ([`Source`]): option values keyed by YAML
//! key, profiles, and the problems found reading them. Every value keeps
//! where it came from, for error messages.

use std::collections::BTreeMap;
use std::path::Path;

use super::options::{self, OPTIONS, ROLE_ARN};
use super::{Env, Flags, Problem};

/// A raw value with the place it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Src {
    pub value: String,
    /// The flag, variable or file key path, as error messages name it.
    pub origin: String,
    /// Whether the value came from the configuration file.
    pub in_file: bool,
}

pub(super) fn src(value: impl Into<String>, origin: impl Into<String>) -> Src {
    Src {
        value: value.into(),
        origin: origin.into(),
        in_file: false,
    }
}

/// Option values of one source (or merged), keyed by the option's YAML key.
pub(super) type Values = BTreeMap<&'static str, Src>;

/// One profile's settings as a source gives them (keyed by profile key).
#[derive(Clone, Debug, Default)]
pub(super) struct RawProfile {
    pub keys: BTreeMap<&'static str, Src>,
    pub policy_arns: Vec<Src>,
    /// `tags`: each key and value with where they came from.
    pub tags: Vec<(Src, Src)>,
    pub transitive_tag_keys: Vec<Src>,
}

impl RawProfile {
    pub fn get(&self, key: &str) -> Option<&Src> {
        self.keys.get(key)
    }

    /// A profile given as `NAME=ROLE_ARN`: only its role.
    pub fn role(arn: Src) -> RawProfile {
        RawProfile {
            keys: BTreeMap::from([(ROLE_ARN, arn)]),
            ..RawProfile::default()
        }
    }
}

/// What one source says.
#[derive(Debug, Default)]
pub(super) struct Source {
    pub values: Values,
    /// In the order given, a name possibly twice (merge reports that).
    pub profiles: Vec<(Src, RawProfile)>,
    /// The profile to use when no source names one (`AWS_ROLE_ARN`).
    pub fallback: Option<(Src, RawProfile)>,
    /// The output sets (only the file declares them).
    pub outputs: Option<super::outputs::RawOutputs>,
    pub problems: Problems,
}

/// The problems found so far, in the order found.
#[derive(Debug, Default)]
pub(super) struct Problems {
    list: Vec<Problem>,
    file: bool,
}

impl Problems {
    /// Records a problem. The same problem twice (the same bad value given
    /// twice in one source, e.g. in `ROLECALL_PROFILES`) is listed once.
    pub fn push(&mut self, origin: impl Into<String>, message: impl Into<String>) {
        let p = Problem {
            origin: origin.into(),
            message: message.into(),
        };
        if !self.list.contains(&p) {
            self.list.push(p);
        }
    }

    /// A problem with a sourced value.
    pub fn at(&mut self, s: &Src, message: impl Into<String>) {
        self.file |= s.in_file;
        self.push(&s.origin, message);
    }

    /// A problem with the configuration file itself.
    pub fn in_file(&mut self, origin: impl Into<String>, message: impl Into<String>) {
        self.file = true;
        self.push(origin, message);
    }

    /// Whether any problem is the file's (then its profiles are not "missing").
    pub fn touch_file(&self) -> bool {
        self.file
    }

    pub fn append(&mut self, other: Problems) {
        self.file |= other.file;
        for p in other.list {
            self.push(p.origin, p.message);
        }
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }

    /// Each problem as `origin: message`, as the error shows it.
    #[cfg(test)]
    pub fn lines(&self) -> Vec<String> {
        self.list
            .iter()
            .map(|p| format!("{}: {}", p.origin, p.message))
            .collect()
    }
}

/// Shortens and escapes a user value for an error message.
pub(crate) fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// A key path: `parent.key`.
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The command line: each option's flag, and `--profile NAME=ROLE_ARN`.
pub(super) fn from_flags(flags: &Flags) -> Source {
    let mut out = Source::default();
    for o in OPTIONS {
        if let Some(v) = (o.flag_value)(flags) {
            out.values
                .insert(o.key, src(v.clone(), format!("--{}", o.flag)));
        }
    }
    out.profiles = parse_pairs(
        flags
            .profiles
            .iter()
            .map(|i| (i.as_str(), format!("--profile {}", printable(i)))),
        &mut out.problems,
    );
    out
}

/// The first of `names` set to a non-empty value.
fn env_src(env: &Env, names: &[&str]) -> Option<Src> {
    names.iter().find_map(|n| {
        env.get(*n)
            .filter(|v| !v.is_empty())
            .map(|v| src(v.clone(), format!("environment {n}")))
    })
}

/// The environment: each option's variables, `ROLECALL_PROFILES` and the
/// `AWS_ROLE_ARN` fallback.
pub(super) fn from_env(env: &Env) -> Source {
    let mut out = Source::default();
    for o in OPTIONS {
        let value = match o.env {
            [name] if o.env_empty_counts => env
                .get(*name)
                .map(|v| src(v.clone(), format!("environment {name}"))),
            names => env_src(env, names),
        };
        if let Some(v) = value {
            out.values.insert(o.key, v);
        }
    }
    if let Some(v) = env.get(options::PROFILES_ENV) {
        let origin = format!("environment {}", options::PROFILES_ENV);
        out.profiles = parse_pairs(v.split(',').map(|i| (i, origin.clone())), &mut out.problems);
    }
    out.fallback = env_src(env, &[options::ROLE_ARN_ENV]).map(|arn| {
        let origin = format!("environment {}", options::ROLE_ARN_ENV);
        (src("default", origin), RawProfile::role(arn))
    });
    out
}

/// The configuration file: `text` is its bytes, or why they could not be read.
pub(super) fn from_file(path: &Path, text: Result<Vec<u8>, String>) -> Source {
    let mut out = Source::default();
    match text {
        Ok(text) => super::yaml::parse(&text, path, &mut out),
        Err(message) => out.problems.in_file(path.display().to_string(), message),
    }
    out
}

/// Parses `NAME=ARN` pairs from `--profile` flags or `ROLECALL_PROFILES`.
fn parse_pairs<'a>(
    items: impl Iterator<Item = (&'a str, String)>,
    problems: &mut Problems,
) -> Vec<(Src, RawProfile)> {
    let mut out = Vec::new();
    for (item, origin) in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.split_once('=') {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_are_read_with_their_flag_as_origin() {
        let s = from_flags(&Flags {
            region: Some("eu-west-1".into()),
            duration: Some("900".into()),
            profiles: vec!["a=arn".into(), " b = arn2 ".into(), "".into()],
            ..Flags::default()
        });
        assert_eq!(s.values["region"], src("eu-west-1", "--region"));
        assert_eq!(s.values["duration_seconds"], src("900", "--duration"));
        assert_eq!(s.values.len(), 2);
        let names: Vec<_> = s.profiles.iter().map(|(n, _)| n.value.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.profiles[1].0.origin, "--profile  b = arn2 ");
        assert_eq!(s.profiles[1].1.get(ROLE_ARN).unwrap().value, "arn2");
        assert!(s.problems.into_vec().is_empty() && s.fallback.is_none());
    }

    #[test]
    fn the_environment_skips_empty_values_but_an_empty_health_address_counts() {
        let s = from_env(&env(&[
            ("AWS_REGION", ""),
            ("AWS_DEFAULT_REGION", "us-west-1"),
            ("ROLECALL_OUTPUT_DIR", ""),
            ("ROLECALL_HEALTH_ADDR", ""),
            ("AWS_ROLE_ARN", "arn"),
        ]));
        assert_eq!(
            s.values["region"],
            src("us-west-1", "environment AWS_DEFAULT_REGION")
        );
        assert!(!s.values.contains_key("output_dir"));
        assert_eq!(
            s.values["health_addr"],
            src("", "environment ROLECALL_HEALTH_ADDR")
        );
        let (name, raw) = s.fallback.unwrap();
        assert_eq!(name, src("default", "environment AWS_ROLE_ARN"));
        assert_eq!(
            raw.get(ROLE_ARN),
            Some(&src("arn", "environment AWS_ROLE_ARN"))
        );
    }

    #[test]
    fn a_malformed_profile_list_is_one_problem_per_bad_item() {
        let s = from_env(&env(&[("ROLECALL_PROFILES", "a=x,,oops,oops,b=y")]));
        assert_eq!(s.profiles.len(), 2);
        let p = s.problems.into_vec();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].origin, "environment ROLECALL_PROFILES");
        assert_eq!(p[0].message, "expected NAME=ROLE_ARN, got \"oops\"");
    }

    #[test]
    fn problems_keep_their_order_list_each_once_and_know_the_file_s() {
        let mut p = Problems::default();
        p.push("b", "two");
        p.push("a", "one");
        p.push("b", "two");
        assert!(!p.touch_file());
        let mut q = Problems::default();
        q.at(
            &Src {
                in_file: true,
                ..src("x", "/c.yaml: region")
            },
            "bad",
        );
        q.push("a", "one");
        p.append(q);
        assert!(p.touch_file());
        assert_eq!(p.lines(), ["b: two", "a: one", "/c.yaml: region: bad"]);
    }

    #[test]
    fn printable_escapes_and_shortens() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(100)), format!("{}…", "x".repeat(80)));
        assert_eq!(join("", "k"), "k");
        assert_eq!(join("p", "k"), "p.k");
    }
}
