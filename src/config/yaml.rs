//! The configuration file's YAML, read into a [`Source`]: refused when too
//! large, too deep or holding too many values (aliases expanded) before
//! serde_yaml_ng loads it, then every key checked against the option table
//! ([`options::top_keys`], [`options::profile_keys`]).

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::options::{self, POLICY_ARNS, PROFILES_KEY, TAGS, TRANSITIVE_TAG_KEYS, Yaml};
use super::outputs;
use super::sources::{Problems, RawProfile, Source, Src, join, printable};
use super::{MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES};
use crate::sys::yaml::Event;

/// A value read from the file at `origin`.
fn file_src(value: String, origin: &str) -> Src {
    Src {
        value,
        origin: origin.to_owned(),
        in_file: true,
    }
}

pub(super) fn too_large() -> String {
    format!(
        "the file is larger than {} KiB (a rolecall configuration is a few KiB); it is refused before parsing",
        MAX_CONFIG_BYTES / 1024
    )
}

/// Parses the file's bytes into `out`; every problem is the file's.
pub(super) fn parse(text: &[u8], file: &Path, out: &mut Source) {
    let mut problems = Problems::default();
    if let Some(map) = root(text, file, &mut problems) {
        top_level(&map, &file.display().to_string(), out, &mut problems);
    }
    for p in problems.into_vec() {
        out.problems.in_file(p.origin, p.message);
    }
}

/// The top-level mapping, if the file is within limits and holds one.
fn root(text: &[u8], file: &Path, problems: &mut Problems) -> Option<Mapping> {
    let prefix = file.display().to_string();
    if text.len() as u64 > MAX_CONFIG_BYTES {
        problems.push(prefix, too_large());
        return None;
    }
    match measure(text) {
        Some(Shape::Fits) => {}
        Some(Shape::TooDeep) => {
            problems.push(
                prefix,
                format!(
                    "the file nests deeper than {MAX_CONFIG_DEPTH} levels (a rolecall configuration needs 4); it is refused before it is loaded"
                ),
            );
            return None;
        }
        Some(Shape::TooMany) => {
            problems.push(
                prefix,
                format!(
                    "the file holds more than {MAX_CONFIG_NODES} values, counting what its aliases (*name) repeat (a rolecall configuration holds a few hundred); it is refused before it is loaded"
                ),
            );
            return None;
        }
        None => {
            problems.push(prefix, "the YAML parser could not start (out of memory)");
            return None;
        }
    }
    match serde_yaml_ng::from_slice(text) {
        Ok(Value::Mapping(m)) => Some(m),
        Ok(Value::Null) => None,
        Ok(_) => {
            problems.push(prefix, "the file must hold a mapping of options");
            None
        }
        Err(e) => {
            problems.push(prefix, format!("not valid YAML: {e}"));
            None
        }
    }
}

fn top_level(map: &Mapping, prefix: &str, out: &mut Source, problems: &mut Problems) {
    for (k, v) in map {
        let Some(key) = key_name(k, prefix, problems) else {
            continue;
        };
        let origin = format!("{prefix}: {}", printable(&key));
        if key == PROFILES_KEY {
            out.profiles = parse_profiles(v, &origin, problems);
            continue;
        }
        if key == outputs::OUTPUTS_KEY {
            out.outputs = outputs::parse(v, &origin, problems);
            continue;
        }
        let Some(opt) = options::option(&key) else {
            problems.push(
                origin,
                format!(
                    "unknown key `{}` (known keys: {})",
                    printable(&key),
                    options::top_keys().join(", ")
                ),
            );
            continue;
        };
        let text = match (opt.yaml, v) {
            (Yaml::Mode, Value::Number(n)) => n.as_u64().map(|m| format!("{m:o}")).or_else(|| {
                problems.push(&origin, "expected an octal mode such as \"0640\"");
                None
            }),
            (Yaml::Bool, Value::Bool(b)) => Some(b.to_string()),
            _ => scalar(v, &origin, problems),
        };
        match text {
            Some(t) => out.values.insert(opt.key, file_src(t, &origin)),
            None => out.values.remove(opt.key),
        };
    }
}

/// A YAML list of scalars (`what` names them in the error), each with its
/// path (`key[i]`); null is an empty list.
fn scalar_list(v: &Value, origin: &str, what: &str, problems: &mut Problems) -> Vec<Src> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let o = format!("{origin}[{i}]");
                scalar(item, &o, problems).map(|s| file_src(s, &o))
            })
            .collect(),
        Value::Null => Vec::new(),
        _ => {
            problems.push(origin, format!("expected a list of {what}"));
            Vec::new()
        }
    }
}

/// A YAML scalar as text. `file_mode` and `allow_world_readable` are
/// special-cased by the caller: YAML reads `0o640` as a number and `0640`
/// as a string.
fn scalar(v: &Value, origin: &str, problems: &mut Problems) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        Value::Bool(_) => {
            problems.push(origin, "expected a string or number, found a boolean");
            None
        }
        Value::Sequence(_) => {
            problems.push(origin, "expected a single value, found a list");
            None
        }
        Value::Mapping(_) => {
            problems.push(origin, "expected a single value, found a mapping");
            None
        }
        Value::Tagged(_) => {
            problems.push(origin, "YAML tags are not supported here");
            None
        }
    }
}

fn key_name(k: &Value, parent: &str, problems: &mut Problems) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        _ => {
            problems.push(parent, "keys must be strings");
            None
        }
    }
}

fn parse_profiles(v: &Value, origin: &str, problems: &mut Problems) -> Vec<(Src, RawProfile)> {
    let map = match v {
        Value::Mapping(m) => m,
        Value::Null => return Vec::new(),
        _ => {
            problems.push(origin, "expected a mapping of profile name to settings");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let Some(name) = key_name(k, origin, problems) else {
            continue;
        };
        let porigin = join(origin, &printable(&name));
        let mut p = RawProfile::default();
        match v {
            Value::Mapping(m) => profile(m, &porigin, &mut p, problems),
            Value::String(arn) => p = RawProfile::role(file_src(arn.clone(), &porigin)),
            _ => problems.push(
                &porigin,
                "expected a mapping with role_arn (or the role ARN as a string)",
            ),
        }
        out.push((file_src(name, &porigin), p));
    }
    out
}

fn profile(m: &Mapping, porigin: &str, p: &mut RawProfile, problems: &mut Problems) {
    let known = options::profile_keys();
    for (k, v) in m {
        let Some(key) = key_name(k, porigin, problems) else {
            continue;
        };
        let korigin = join(porigin, &printable(&key));
        let Some(&key) = known.iter().find(|k| **k == key) else {
            problems.push(
                korigin,
                format!(
                    "unknown key `{}` (known profile keys: {})",
                    printable(&key),
                    known.join(", ")
                ),
            );
            continue;
        };
        if key == TAGS {
            match v {
                Value::Mapping(m) => {
                    for (k, val) in m {
                        let Some(tag) = key_name(k, &korigin, problems) else {
                            continue;
                        };
                        let o = join(&korigin, &printable(&tag));
                        // A tag value may be empty; a YAML null is one.
                        let value = match val {
                            Value::Null => Some(String::new()),
                            Value::Bool(b) => Some(b.to_string()),
                            other => scalar(other, &o, problems),
                        };
                        if let Some(value) = value {
                            p.tags.push((file_src(tag, &o), file_src(value, &o)));
                        }
                    }
                }
                Value::Null => {}
                _ => problems.push(&korigin, "expected a map of tag keys to values"),
            }
            continue;
        }
        if key == TRANSITIVE_TAG_KEYS {
            p.transitive_tag_keys = scalar_list(v, &korigin, "tag keys", problems);
            continue;
        }
        if key == POLICY_ARNS {
            p.policy_arns = scalar_list(v, &korigin, "policy ARNs", problems);
            continue;
        }
        let bool_key = options::option(key).is_some_and(|o| o.yaml == Yaml::Bool)
            || options::OWN_BOOL_KEYS.contains(&key);
        let text = match v {
            Value::Bool(b) if bool_key => Some(b.to_string()),
            _ => scalar(v, &korigin, problems),
        };
        match text {
            Some(s) => p.keys.insert(key, file_src(s, &korigin)),
            None => p.keys.remove(key),
        };
    }
}

/// What [`measure`] found a file to build, as the YAML loader would build
/// it: aliases expanded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// Within both limits (or the parser stopped at a syntax error first:
    /// serde_yaml_ng reports it).
    Fits,
    /// Nests deeper than [`MAX_CONFIG_DEPTH`].
    TooDeep,
    /// Builds more than [`MAX_CONFIG_NODES`] values.
    TooMany,
}

/// Walks the parser's events of `text` and stops at the first level or
/// value beyond the limits: what serde_yaml_ng would build, each alias
/// counted as the copy of its anchor's values and levels that the loader
/// makes of it. The walk holds one count per anchor, never a value; it
/// stops before the parser goes deeper than the limit, so a file of deep
/// flow brackets (whose parse takes time growing with the square of the
/// depth) costs as little as a shallow one. Neither library bounds this on
/// its own: libyaml has no depth limit, and serde_yaml_ng's (128 levels,
/// and a cap on alias jumps, not on the values they copy) applies only
/// after the parser has read the whole document.
pub(super) fn measure(text: &[u8]) -> Option<Shape> {
    /// An open sequence or mapping: its anchor, the value count when it
    /// opened, and the deepest level below it so far.
    struct Open {
        anchor: Option<Vec<u8>>,
        nodes_before: u64,
        below: usize,
    }
    let mut nodes: u64 = 0;
    let mut open: Vec<Open> = Vec::new();
    // Per anchor: the values it stands for, and its own depth.
    let mut anchors: std::collections::HashMap<Vec<u8>, (u64, usize)> = Default::default();
    // A value of `size` values and `height` levels at the current place.
    fn add(open: &mut [Open], nodes: &mut u64, size: u64, height: usize) -> Option<Shape> {
        *nodes = nodes.saturating_add(size);
        if *nodes > MAX_CONFIG_NODES {
            return Some(Shape::TooMany);
        }
        if open.len() + height > MAX_CONFIG_DEPTH {
            return Some(Shape::TooDeep);
        }
        if let Some(parent) = open.last_mut() {
            parent.below = parent.below.max(height);
        }
        None
    }
    for event in crate::sys::yaml::Events::new(text)? {
        let Ok(event) = event else {
            return Some(Shape::Fits);
        };
        let refused = match event {
            Event::Scalar { anchor } => {
                if let Some(a) = anchor {
                    anchors.insert(a, (1, 0));
                }
                add(&mut open, &mut nodes, 1, 0)
            }
            Event::Alias(a) => {
                let (size, height) = anchors.get(&a).copied().unwrap_or((1, 0));
                add(&mut open, &mut nodes, size, height)
            }
            Event::Open { anchor } => {
                let refused = add(&mut open, &mut nodes, 1, 1);
                open.push(Open {
                    anchor,
                    nodes_before: nodes - 1,
                    below: 0,
                });
                refused
            }
            Event::Close => {
                let Some(done) = open.pop() else {
                    continue;
                };
                let height = done.below + 1;
                if let Some(parent) = open.last_mut() {
                    parent.below = parent.below.max(height);
                }
                if let Some(a) = done.anchor {
                    anchors.insert(a, (nodes - done.nodes_before, height));
                }
                None
            }
        };
        if refused.is_some() {
            return refused;
        }
    }
    Some(Shape::Fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Source {
        let mut out = Source::default();
        parse(text.as_bytes(), Path::new("/c.yaml"), &mut out);
        out
    }

    #[test]
    fn values_keep_their_key_path_and_are_marked_as_the_file_s() {
        let s = read(
            "region: eu-west-1\nduration_seconds: 900\nfile_mode: 0o640\nallow_world_readable: true\n",
        );
        let r = &s.values["region"];
        assert_eq!(
            (r.value.as_str(), r.origin.as_str()),
            ("eu-west-1", "/c.yaml: region")
        );
        assert!(r.in_file);
        assert_eq!(s.values["duration_seconds"].value, "900");
        assert_eq!(
            s.values["file_mode"].value, "640",
            "a YAML number is the mode"
        );
        assert_eq!(s.values["allow_world_readable"].value, "true");
        assert!(s.problems.into_vec().is_empty());
    }

    #[test]
    fn a_later_key_or_a_null_replaces_an_earlier_one() {
        let s = read("region: a\nregion: ~\n");
        assert!(!s.values.contains_key("region"), "{:?}", s.values);
    }

    #[test]
    fn profiles_are_read_as_mappings_or_a_role_arn() {
        let s = read(
            "profiles:\n  a: arn-a\n  b:\n    role_arn: arn-b\n    source_profile: a\n    policy_arns: [p1, p2]\n",
        );
        let names: Vec<_> = s.profiles.iter().map(|(n, _)| n.origin.as_str()).collect();
        assert_eq!(names, ["/c.yaml: profiles.a", "/c.yaml: profiles.b"]);
        let b = &s.profiles[1].1;
        assert_eq!(b.get("source_profile").unwrap().value, "a");
        assert_eq!(
            b.policy_arns[1].origin,
            "/c.yaml: profiles.b.policy_arns[1]"
        );
        assert_eq!(s.profiles[0].1.get("role_arn").unwrap().value, "arn-a");
    }

    #[test]
    fn every_problem_is_the_file_s() {
        let s = read("regoin: x\nfile_mode: -1\nprofiles:\n  a: {bogus: 1}\n  b: [1]\n");
        assert!(s.problems.touch_file());
        let p = s.problems.into_vec();
        let listed: Vec<_> = p.iter().map(|p| p.origin.as_str()).collect();
        assert_eq!(
            listed,
            [
                "/c.yaml: regoin",
                "/c.yaml: file_mode",
                "/c.yaml: profiles.a.bogus",
                "/c.yaml: profiles.b"
            ]
        );
        assert!(p[0].message.contains("known keys: token_file, output_dir"));
        assert!(
            p[2].message
                .contains("known profile keys: role_arn, region")
        );
        for bad in ["- a list\n", "a: [\n"] {
            let s = read(bad);
            assert!(s.problems.touch_file(), "{bad}");
        }
        assert!(read("").problems.into_vec().is_empty());
    }
}
