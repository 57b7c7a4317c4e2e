//! Output sets (`outputs:` in the file, YAML only): each set is a directory
//! with its own list of profiles, for one application container. Read from
//! the YAML into [`RawSet`]s, then checked and completed here: without
//! `outputs`, one set named `default` holds every profile in `output_dir`,
//! so the runtime has one code path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde_yaml_ng::Value;

use super::OutputSet;
use super::sources::{Problems, Src, Values, join, printable};

/// The top-level YAML key.
pub(super) const OUTPUTS_KEY: &str = "outputs";
/// The name of the one set a configuration without `outputs` has.
pub const DEFAULT_SET: &str = "default";
/// The keys a set may have.
const SET_KEYS: &[&str] = &["dir", "profiles", "app_dir", "endpoint_token_file"];
/// The longest set name (a container-name-like label).
const MAX_SET_NAME: usize = 63;

/// One set as the file gives it.
#[derive(Clone, Debug, Default)]
pub(super) struct RawSet {
    pub name: Src,
    pub dir: Option<Src>,
    pub app_dir: Option<Src>,
    pub endpoint_token_file: Option<Src>,
    /// `None` when the key is missing.
    pub profiles: Option<Vec<Src>>,
}

/// What the file's `outputs` key held.
#[derive(Clone, Debug)]
pub(super) struct RawOutputs {
    pub origin: String,
    pub sets: Vec<RawSet>,
}

fn file_src(value: String, origin: &str) -> Src {
    Src {
        value,
        origin: origin.to_owned(),
        in_file: true,
    }
}

/// Reads the `outputs` mapping; every problem is the file's.
pub(super) fn parse(v: &Value, origin: &str, problems: &mut Problems) -> Option<RawOutputs> {
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
        let mut set = RawSet {
            name: file_src(name.clone(), &sorigin),
            ..RawSet::default()
        };
        let Value::Mapping(m) = v else {
            problems.push(
                &sorigin,
                "expected a mapping with dir and profiles, e.g. { dir: /aws/app, profiles: [reader] }",
            );
            sets.push(set);
            continue;
        };
        for (k, v) in m {
            let Value::String(key) = k else {
                problems.push(&sorigin, "keys must be strings");
                continue;
            };
            let korigin = join(&sorigin, &printable(key));
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
                        SET_KEYS.join(", ")
                    ),
                ),
            }
        }
        sets.push(set);
    }
    Some(RawOutputs {
        origin: origin.to_owned(),
        sets,
    })
}

/// Whether `name` is a valid set name (a container-name-like label).
pub fn valid_set_name(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= MAX_SET_NAME
        && name.chars().all(|c| ok(c) || c == '-')
        && name.starts_with(ok)
        && name.ends_with(ok)
}

/// What the sets are checked against.
pub(super) struct Context<'a> {
    /// The merged option values (to refuse `output_dir` beside `outputs`).
    pub values: &'a Values,
    /// Every configured profile name, with where it was named.
    pub profiles: &'a BTreeMap<String, Src>,
    /// Whether the endpoint is enabled (a per-set token file needs it).
    pub endpoint_set: bool,
    /// The global defaults (for the default set).
    pub output_dir: &'a Path,
    pub app_output_dir: &'a Path,
    pub endpoint_token_file: Option<&'a Path>,
}

/// The checked sets: the declared ones sorted by name, or the default set.
/// The bool says whether sets were declared.
pub(super) fn resolve(
    raw: Option<RawOutputs>,
    cx: &Context<'_>,
    problems: &mut Problems,
) -> (Vec<OutputSet>, bool) {
    let Some(raw) = raw else {
        let set = OutputSet {
            name: DEFAULT_SET.into(),
            dir: cx.output_dir.to_owned(),
            app_dir: cx.app_output_dir.to_owned(),
            profiles: cx.profiles.keys().cloned().collect(),
            endpoint_token_file: cx.endpoint_token_file.map(Path::to_owned),
        };
        return (vec![set], false);
    };
    for key in ["output_dir", "app_output_dir", "endpoint_token_file"] {
        if let Some(s) = cx.values.get(key) {
            problems.at(
                s,
                format!(
                    "`outputs` is set: each output set names its own dir (app_dir, endpoint_token_file); remove {key}"
                ),
            );
        }
    }
    if raw.sets.is_empty() {
        problems.in_file(
            &raw.origin,
            "declares no output set: add a set such as `app: { dir: /aws/app, profiles: [NAME] }`, or remove `outputs` to write every profile to output_dir",
        );
        return (Vec::new(), true);
    }
    let mut sets = Vec::new();
    let mut in_a_set = BTreeSet::new();
    let mut dirs: Vec<(PathBuf, String)> = Vec::new();
    let mut tokens: BTreeMap<PathBuf, String> = BTreeMap::new();
    for r in &raw.sets {
        let name = &r.name.value;
        if !valid_set_name(name) {
            problems.at(
                &r.name,
                format!(
                    "\"{}\" is not a valid set name: use at most {MAX_SET_NAME} lowercase letters, digits and '-', starting and ending with a letter or digit (like a container name)",
                    printable(name)
                ),
            );
        }
        let dir = match &r.dir {
            None => {
                problems.in_file(
                    &r.name.origin,
                    "has no dir: give the directory this set is written to (its own volume), e.g. dir: /aws/app",
                );
                None
            }
            Some(s) => absolute_dir(s, problems),
        };
        if let Some(dir) = &dir {
            for (other, other_name) in &dirs {
                let same_or_nested = |a: &Path, b: &Path| {
                    if a == b {
                        Some(true)
                    } else if a.starts_with(b) || b.starts_with(a) {
                        Some(false)
                    } else {
                        None
                    }
                };
                // The paths as written, then as resolved: two sets must not
                // meet through a symlink either.
                let meet = same_or_nested(other, dir)
                    .or_else(|| same_or_nested(&resolved(other), &resolved(dir)));
                if meet == Some(true) {
                    problems.at(
                        r.dir.as_ref().expect("has a dir"),
                        format!("set {other_name} has the same dir: each set needs its own directory (its own volume)"),
                    );
                } else if meet == Some(false) {
                    problems.at(
                        r.dir.as_ref().expect("has a dir"),
                        format!(
                            "is inside set {other_name}'s dir {} or contains it: a container mounting one would see the other's roles; give each set its own volume",
                            other.display()
                        ),
                    );
                }
            }
            dirs.push((dir.clone(), name.clone()));
        }
        let app_dir = match &r.app_dir {
            Some(s) => {
                let d = absolute_dir(s, problems);
                if s.value.chars().any(char::is_whitespace) {
                    problems.at(
                        s,
                        "must not contain spaces (it is written into credential_process lines)",
                    );
                }
                d
            }
            None => dir.clone(),
        };
        let token = r.endpoint_token_file.as_ref().map(|s| {
            let path = PathBuf::from(&s.value);
            if s.value.is_empty() || s.value.chars().any(char::is_control) {
                problems.at(s, "must be a non-empty path without control characters");
            } else if !cx.endpoint_set {
                problems.at(
                    s,
                    "the token is only used by the credentials endpoint: set endpoint_addr (--endpoint-addr 127.0.0.1:PORT) too, or remove this key",
                );
            } else if let Err(e) = crate::endpoint::read_supplied_token(&path) {
                problems.at(s, e);
            }
            if let Some(other) = tokens.insert(path.clone(), name.clone()) {
                problems.at(
                    s,
                    format!("set {other} uses the same token file: each set needs its own token (the token picks the set)"),
                );
            }
            path
        });
        let mut profiles = BTreeSet::new();
        match &r.profiles {
            None => problems.in_file(
                &r.name.origin,
                "has no profiles: list the profiles this set's container gets, e.g. profiles: [reader]",
            ),
            Some(list) if list.is_empty() => problems.in_file(
                join(&r.name.origin, "profiles"),
                "is empty: list the profiles this set's container gets (remove the set if it gets none)",
            ),
            Some(list) => {
                for p in list {
                    if !cx.profiles.contains_key(&p.value) {
                        problems.at(
                            p,
                            format!(
                                "unknown profile \"{}\": add it under profiles, or remove it from this set",
                                printable(&p.value)
                            ),
                        );
                    } else if !profiles.insert(p.value.clone()) {
                        problems.at(
                            p,
                            format!("profile \"{}\" is listed twice", printable(&p.value)),
                        );
                    }
                }
            }
        }
        in_a_set.extend(profiles.iter().cloned());
        sets.push(OutputSet {
            name: name.clone(),
            app_dir: app_dir.unwrap_or_default(),
            dir: dir.unwrap_or_default(),
            profiles: profiles.into_iter().collect(),
            endpoint_token_file: token,
        });
    }
    for (name, s) in cx.profiles {
        if !in_a_set.contains(name) {
            problems.at(
                s,
                format!(
                    "profile \"{}\" is in no output set: add it to the profiles of the set (container) that needs it, or remove it",
                    printable(name)
                ),
            );
        }
    }
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    (sets, true)
}

/// An absolute directory without `..` or control characters.
fn absolute_dir(s: &Src, problems: &mut Problems) -> Option<PathBuf> {
    let path = PathBuf::from(&s.value);
    if s.value.is_empty() || s.value.chars().any(char::is_control) {
        problems.at(s, "must be a non-empty path without control characters");
        return None;
    }
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        problems.at(
            s,
            "must be an absolute path without `..` (the set's volume mount path)",
        );
        return None;
    }
    Some(path.components().collect())
}

/// `path` with the symlinks of its longest existing ancestor resolved
/// (the rest, not created yet, appended as written): where the set's files
/// will really be.
fn resolved(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

/// Whether the running sets' layout (names, dirs, app dirs, token files)
/// differs: only a restart applies that (volumes are in the pod spec).
pub(super) fn layout_changed(old: &[OutputSet], new: &[OutputSet]) -> bool {
    let layout = |s: &[OutputSet]| {
        s.iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.dir.clone(),
                    s.app_dir.clone(),
                    s.endpoint_token_file.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    layout(old) != layout(new)
}

#[cfg(test)]
mod tests;
