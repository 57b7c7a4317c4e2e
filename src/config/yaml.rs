//! The configuration file's YAML, read into a [`Source`]: refused when too
//! large, too deep or holding too many values (aliases expanded) before
//! serde_yaml_ng loads it, then every key checked against the option table
//! ([`options::top_keys`], [`options::profile_keys`]).

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::options::{self, OUTPUTS_KEY, PROFILES_KEY, Yaml};
use super::outputs;
use super::sources::{RawProfile, Source};
use super::values::{Problems, Sourced, join};
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

/// The configuration file: `text` is its bytes, or why they could not be read.
pub(super) fn source(path: &Path, text: Result<Vec<u8>, String>) -> Source {
    let mut out = Source::default();
    match text {
        Ok(text) => parse(&text, path, &mut out),
        Err(message) => out.problems.in_file(path.display().to_string(), message),
    }
    out
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
    match measure(text, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES) {
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
        } else if key == OUTPUTS_KEY {
            out.outputs = outputs(v, &origin, problems);
        } else if let Some((slot, yaml)) = out.values.slot(&key, false) {
            let text = match (yaml, v) {
                (Yaml::Mode, Value::Number(n)) => {
                    n.as_u64().map(|m| format!("{m:o}")).or_else(|| {
                        problems.push(&origin, "expected an octal mode such as \"0640\"");
                        None
                    })
                }
                (Yaml::Bool, Value::Bool(b)) => Some(b.to_string()),
                _ => scalar(v, &origin, problems),
            };
            *slot = text.map(|t| file_src(t, &origin));
        } else {
            let known = options::top_keys().join(", ");
            let message = format!("unknown key `{}` (known keys: {known})", printable(&key));
            problems.push(origin, message);
        }
    }
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

fn parse_profiles(v: &Value, origin: &str, problems: &mut Problems) -> Vec<(Sourced, RawProfile)> {
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
    for (k, v) in m {
        let Some(key) = key_name(k, porigin, problems) else {
            continue;
        };
        let korigin = join(porigin, &printable(&key));
        match key.as_str() {
            "tags" => p.tags.extend(tags(v, &korigin, problems)),
            "transitive_tag_keys" => {
                p.transitive_tag_keys = scalar_list(v, &korigin, "tag keys", problems);
            }
            "policy_arns" => p.policy_arns = scalar_list(v, &korigin, "policy ARNs", problems),
            _ => match p.slot(&key) {
                Some((slot, yaml)) => {
                    let text = match v {
                        Value::Bool(b) if yaml == Yaml::Bool => Some(b.to_string()),
                        _ => scalar(v, &korigin, problems),
                    };
                    *slot = text.map(|t| file_src(t, &korigin));
                }
                None => {
                    let known = options::profile_keys().join(", ");
                    let message = format!(
                        "unknown key `{}` (known profile keys: {known})",
                        printable(&key)
                    );
                    problems.push(korigin, message);
                }
            },
        }
    }
}

/// A profile's `tags`: a map of tag keys to values (a YAML null is an
/// empty value).
fn tags(v: &Value, korigin: &str, problems: &mut Problems) -> Vec<(Sourced, Sourced)> {
    let mut out = Vec::new();
    match v {
        Value::Mapping(m) => {
            for (k, val) in m {
                let Some(tag) = key_name(k, korigin, problems) else {
                    continue;
                };
                let o = join(korigin, &printable(&tag));
                let value = match val {
                    Value::Null => Some(String::new()),
                    Value::Bool(b) => Some(b.to_string()),
                    other => scalar(other, &o, problems),
                };
                if let Some(value) = value {
                    out.push((file_src(tag, &o), file_src(value, &o)));
                }
            }
        }
        Value::Null => {}
        _ => problems.push(korigin, "expected a map of tag keys to values"),
    }
    out
}

/// Reads the `outputs` mapping; every problem is the file's.
fn outputs(v: &Value, origin: &str, problems: &mut Problems) -> Option<outputs::RawOutputs> {
    let map = match v {
        Value::Null => return None,
        Value::Mapping(m) => m,
        _ => {
            problems.push(
                origin,
                "expected a mapping of set name to { dir, profiles }",
            );
            return None;
        }
    };
    let mut sets = Vec::new();
    for (k, v) in map {
        let Value::String(name) = k else {
            problems.push(origin, "keys must be strings");
            continue;
        };
        let sorigin = join(origin, &printable(name));
        let mut set = outputs::RawSet {
            name: file_src(name.clone(), &sorigin),
            ..Default::default()
        };
        let Value::Mapping(m) = v else {
            problems.push(
                &sorigin,
                "expected a mapping with dir and profiles, e.g. { dir: /aws/app, profiles: [reader] }",
            );
            sets.push(set);
            continue;
        };
        set_keys(m, &sorigin, &mut set, problems);
        sets.push(set);
    }
    Some(outputs::RawOutputs {
        origin: origin.to_owned(),
        sets,
    })
}

/// One output set's keys, read into `set`.
fn set_keys(m: &Mapping, sorigin: &str, set: &mut outputs::RawSet, problems: &mut Problems) {
    for (k, v) in m {
        let Value::String(key) = k else {
            problems.push(sorigin, "keys must be strings");
            continue;
        };
        let korigin = join(sorigin, &printable(key));
        let text = |v: &Value, problems: &mut Problems| match v {
            Value::String(s) => Some(file_src(s.clone(), &korigin)),
            Value::Null => None,
            _ => {
                problems.push(&korigin, "expected a path");
                None
            }
        };
        match key.as_str() {
            "dir" => set.dir = text(v, problems),
            "app_dir" => set.app_dir = text(v, problems),
            "endpoint_token_file" => set.endpoint_token_file = text(v, problems),
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
            _ => problems.push(
                korigin,
                format!(
                    "unknown key `{}` (known output set keys: {})",
                    printable(key),
                    outputs::SET_KEYS.join(", ")
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
