//! The configuration file's YAML, read into a [`Source`]: refused when too
//! large, too deep or holding too many values (aliases expanded) before
//! serde_yaml_ng loads it, then every key checked against the option table
//! ([`options::top_keys`], [`options::profile_keys`]).

use std::path::Path;
use std::sync::LazyLock;

use serde_yaml_ng::{Mapping, Value};

use super::options::{self, OUTPUTS_KEY, PROFILES_KEY, Yaml};
use super::outputs;
use super::sources::{RawProfile, Source};
use super::values::{Problems, Sourced};
use super::{MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES};
use crate::sys::yaml::{Shape, measure};
use crate::text::printable;

/// A value read from the file at `origin`.
pub(super) fn file_src(value: String, origin: &str) -> Sourced {
    Sourced {
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

/// The configuration file: `text` is its bytes, or why they could not be
/// read; every problem is the file's.
pub(super) fn source(path: &Path, text: Result<Vec<u8>, String>) -> Source {
    let (mut out, mut problems) = (Source::default(), Problems::default());
    let file = path.display().to_string();
    match text.map(|text| root(&text, &file, &mut problems)) {
        Ok(Some(map)) => top_level(&map, &file, &mut out, &mut problems),
        Ok(None) => {}
        Err(message) => problems.push(file, message),
    }
    for p in problems.into_vec() {
        out.problems.in_file(p.origin, p.message);
    }
    out
}

/// Why the file is refused before serde_yaml_ng loads it, if it is.
fn refused(text: &[u8]) -> Option<String> {
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Some(too_large());
    }
    match measure(text, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES) {
        Some(Shape::Fits) => None,
        Some(Shape::TooDeep) => Some(format!(
            "the file nests deeper than {MAX_CONFIG_DEPTH} levels (a rolecall configuration needs 4); it is refused before it is loaded"
        )),
        Some(Shape::TooMany) => Some(format!(
            "the file holds more than {MAX_CONFIG_NODES} values, counting what its aliases (*name) repeat (a rolecall configuration holds a few hundred); it is refused before it is loaded"
        )),
        None => Some("the YAML parser could not start (out of memory)".into()),
    }
}

/// The top-level mapping, if the file is within limits and holds one.
fn root(text: &[u8], file: &str, problems: &mut Problems) -> Option<Mapping> {
    let message = match refused(text) {
        Some(message) => message,
        None => match serde_yaml_ng::from_slice(text) {
            Ok(Value::Mapping(m)) => return Some(m),
            Ok(Value::Null) => return None,
            Ok(_) => "the file must hold a mapping of options".into(),
            Err(e) => format!("not valid YAML: {e}"),
        },
    };
    problems.push(file, message);
    None
}

/// `v`'s entries: none for null, none and a problem (`expected`) for
/// anything but a mapping.
fn mapping<'a>(v: &'a Value, origin: &str, expected: &str, problems: &mut Problems) -> &'a Mapping {
    static NONE: LazyLock<Mapping> = LazyLock::new(Mapping::new);
    match v {
        Value::Mapping(m) => m,
        Value::Null => &NONE,
        _ => {
            problems.push(origin, expected);
            &NONE
        }
    }
}

/// Calls `f` with each key of `m`, its path (`parent`, `sep`, the key) and
/// its value, in order; a key that is not a string is `parent`'s problem.
fn each(
    m: &Mapping,
    parent: &str,
    sep: &str,
    problems: &mut Problems,
    mut f: impl FnMut(String, String, &Value, &mut Problems),
) {
    for (k, v) in m {
        match k {
            Value::String(key) => {
                let origin = format!("{parent}{sep}{}", printable(key));
                f(key.clone(), origin, v, problems);
            }
            _ => problems.push(parent, "keys must be strings"),
        }
    }
}

/// The message of a key the table does not know (`kind`: whose keys).
fn unknown(key: &str, kind: &str, known: &[&str]) -> String {
    let known = known.join(", ");
    format!(
        "unknown key `{}` (known {kind}keys: {known})",
        printable(key)
    )
}

fn top_level(map: &Mapping, prefix: &str, out: &mut Source, problems: &mut Problems) {
    each(map, prefix, ": ", problems, |key, origin, v, problems| {
        if key == PROFILES_KEY {
            out.profiles = parse_profiles(v, &origin, problems);
        } else if key == OUTPUTS_KEY {
            out.outputs = outputs(v, &origin, problems);
        } else if let Some((slot, yaml)) = out.values.slot(&key, false) {
            *slot = option(v, yaml, &origin, problems);
            both_names(map, &key, &origin, problems);
        } else {
            problems.push(&origin, unknown(&key, "", &options::top_keys()));
        }
    });
}

/// An AWS config name (`key`, at `origin`) given beside rolecall's own.
fn both_names(m: &Mapping, key: &str, origin: &str, problems: &mut Problems) {
    if let Some(own) = options::own_key(key).filter(|own| m.contains_key(*own)) {
        let message = format!("`{key}` and `{own}` are the same option: give one of them");
        problems.push(origin, message);
    }
}

/// An option's value, read as the table says (`yaml`).
fn option(v: &Value, yaml: Yaml, origin: &str, problems: &mut Problems) -> Option<Sourced> {
    let text = match (yaml, v) {
        (Yaml::Mode, Value::Number(n)) => n.as_u64().map(|m| format!("{m:o}")).or_else(|| {
            problems.push(origin, "expected an octal mode such as \"0640\"");
            None
        }),
        (Yaml::Bool, Value::Bool(b)) => Some(b.to_string()),
        _ => scalar(v, origin, problems),
    };
    text.map(|t| file_src(t, origin))
}

/// A YAML list of scalars (`what` names them in the error), each with its
/// path (`key[i]`); null is an empty list.
fn scalar_list(v: &Value, origin: &str, what: &str, problems: &mut Problems) -> Vec<Sourced> {
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

/// A YAML scalar as text. `file_mode` and the booleans are special-cased
/// by [`option`]: YAML reads `0o640` as a number and `0640` as a string.
fn scalar(v: &Value, origin: &str, problems: &mut Problems) -> Option<String> {
    let wrong = match v {
        Value::String(s) => return Some(s.clone()),
        Value::Number(n) => return Some(n.to_string()),
        Value::Null => return None,
        Value::Bool(_) => "expected a string or number, found a boolean",
        Value::Sequence(_) => "expected a single value, found a list",
        Value::Mapping(_) => "expected a single value, found a mapping",
        Value::Tagged(_) => "YAML tags are not supported here",
    };
    problems.push(origin, wrong);
    None
}

fn parse_profiles(v: &Value, origin: &str, problems: &mut Problems) -> Vec<(Sourced, RawProfile)> {
    let mut out = Vec::new();
    let expected = "expected a mapping of profile name to settings";
    let map = mapping(v, origin, expected, problems);
    each(map, origin, ".", problems, |name, porigin, v, problems| {
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
    });
    out
}

fn profile(m: &Mapping, porigin: &str, p: &mut RawProfile, problems: &mut Problems) {
    each(
        m,
        porigin,
        ".",
        problems,
        |key, korigin, v, problems| match key.as_str() {
            "tags" => p.tags.extend(tags(v, &korigin, problems)),
            "transitive_tag_keys" => {
                p.transitive_tag_keys = scalar_list(v, &korigin, "tag keys", problems);
            }
            "policy_arns" => p.policy_arns = scalar_list(v, &korigin, "policy ARNs", problems),
            _ => match p.slot(&key) {
                Some((slot, yaml)) => {
                    *slot = option(v, yaml, &korigin, problems);
                    both_names(m, &key, &korigin, problems);
                }
                None => problems.push(
                    &korigin,
                    unknown(&key, "profile ", &options::profile_keys()),
                ),
            },
        },
    );
}

/// A profile's `tags`: a map of tag keys to values (a YAML null is an
/// empty value).
fn tags(v: &Value, korigin: &str, problems: &mut Problems) -> Vec<(Sourced, Sourced)> {
    let mut out = Vec::new();
    let expected = "expected a map of tag keys to values";
    let m = mapping(v, korigin, expected, problems);
    each(m, korigin, ".", problems, |tag, o, val, problems| {
        let value = match val {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            other => scalar(other, &o, problems),
        };
        if let Some(value) = value {
            out.push((file_src(tag, &o), file_src(value, &o)));
        }
    });
    out
}

/// Reads the `outputs` mapping; every problem is the file's.
fn outputs(v: &Value, origin: &str, problems: &mut Problems) -> Option<outputs::RawOutputs> {
    let expected = "expected a mapping of set name to { dir, profiles }";
    let map = mapping(v, origin, expected, problems);
    let mut sets = Vec::new();
    each(map, origin, ".", problems, |name, sorigin, v, problems| {
        let mut set = outputs::RawSet {
            name: file_src(name, &sorigin),
            ..Default::default()
        };
        match v {
            Value::Mapping(m) => set_keys(m, &sorigin, &mut set, problems),
            _ => problems.push(
                &sorigin,
                "expected a mapping with dir and profiles, e.g. { dir: /aws/app, profiles: [reader] }",
            ),
        }
        sets.push(set);
    });
    let origin = origin.to_owned();
    v.is_mapping()
        .then_some(outputs::RawOutputs { origin, sets })
}

/// One output set's keys, read into `set`.
fn set_keys(m: &Mapping, sorigin: &str, set: &mut outputs::RawSet, problems: &mut Problems) {
    each(m, sorigin, ".", problems, |key, korigin, v, problems| {
        let path = |problems: &mut Problems| match v {
            Value::String(s) => Some(file_src(s.clone(), &korigin)),
            Value::Null => None,
            _ => {
                problems.push(&korigin, "expected a path");
                None
            }
        };
        match key.as_str() {
            "dir" => set.dir = path(problems),
            "app_dir" => set.app_dir = path(problems),
            "endpoint_token_file" => set.endpoint_token_file = path(problems),
            "profiles" => match v {
                Value::Sequence(items) => {
                    let mut list = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let o = format!("{korigin}[{i}]");
                        match item {
                            Value::String(s) => list.push(file_src(s.clone(), &o)),
                            _ => problems.push(o, "expected a profile name"),
                        }
                    }
                    set.profiles = Some(list);
                }
                Value::Null => set.profiles = Some(Vec::new()),
                _ => problems.push(&korigin, "expected a list of profile names"),
            },
            _ => problems.push(&korigin, unknown(&key, "output set ", outputs::SET_KEYS)),
        }
    });
}

#[cfg(test)]
mod tests;
