//! Output sets (`outputs:` in the file, YAML only): each set is a directory
//! with its own list of profiles, for one application container. Read from
//! the YAML into [`RawSet`]s (yaml.rs), then checked and completed here: without
//! `outputs`, one set named `default` holds every profile in `output_dir`,
//! so the runtime has one code path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use super::OutputSet;
use super::options::Layer;
use super::sources::RawProfiles;
use super::validate::Globals;
use super::values::{Problems, Sourced};
use crate::fsread;
use crate::text::printable;

/// The name of the one set a configuration without `outputs` has.
pub const DEFAULT_SET: &str = "default";
/// The keys a set may have.
pub(super) const SET_KEYS: &[&str] = &["dir", "profiles", "app_dir", "endpoint_token_file"];
/// The longest set name (a container-name-like label).
const MAX_SET_NAME: usize = 63;

/// One set as the file gives it.
#[derive(Clone, Debug, Default)]
pub(super) struct RawSet {
    pub name: Sourced,
    pub dir: Option<Sourced>,
    pub app_dir: Option<Sourced>,
    pub endpoint_token_file: Option<Sourced>,
    /// `None` when the key is missing.
    pub profiles: Option<Vec<Sourced>>,
}

/// What the file's `outputs` key held.
#[derive(Clone, Debug)]
pub(super) struct RawOutputs {
    pub origin: String,
    pub sets: Vec<RawSet>,
}

/// Whether `name` is a valid set name (a container-name-like label).
pub fn valid_set_name(name: &str) -> bool {
    crate::text::is_dns1123(name, MAX_SET_NAME, false)
}

/// What the sets checked so far hold, that a next one must not repeat.
#[derive(Default)]
struct Taken {
    dirs: Vec<(PathBuf, String)>,
    tokens: BTreeMap<PathBuf, String>,
    profiles: BTreeSet<String>,
}

/// The checked sets: the declared ones sorted by name, or the default set.
/// The bool says whether sets were declared.
/// `values`: the merged options (to refuse `output_dir` beside `outputs`);
/// `names`: every configured profile; `base`: the published base
/// (pod-identity), which a set may list and the default set holds; `g`: the checked globals (the default set's dirs, the endpoint, the
/// token files as the load read them).
pub(super) fn resolve(
    raw: Option<RawOutputs>,
    v: &Layer,
    names: &RawProfiles,
    base: Option<&str>,
    g: &Globals,
    problems: &mut Problems,
) -> (Vec<OutputSet>, bool) {
    let Some(raw) = raw else {
        let c = &g.config;
        let mut profiles: Vec<String> = names.keys().cloned().chain(base.map(Into::into)).collect();
        profiles.sort();
        profiles.dedup();
        let set = OutputSet {
            name: DEFAULT_SET.into(),
            dir: c.output_dir.clone(),
            app_dir: c.app_output_dir.clone(),
            profiles,
            endpoint_token_file: c.endpoint_token_file.clone(),
        };
        return (vec![set], false);
    };
    let globals = [&v.output_dir, &v.app_output_dir, &v.endpoint_token_file];
    for (s, key) in globals
        .into_iter()
        .zip(["output_dir", "app_output_dir", "endpoint_token_file"])
    {
        if let Some(s) = s {
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
    let mut taken = Taken::default();
    let mut sets: Vec<OutputSet> = raw
        .sets
        .iter()
        .map(|r| set(r, (names, base), g, &mut taken, problems))
        .collect();
    for (name, (s, _)) in names {
        if !taken.profiles.contains(name) {
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
    socket_outside_sets(&g.config, &v.control_socket, &sets, problems);
    (sets, true)
}

/// One declared set, checked against the sets before it.
fn set(
    r: &RawSet,
    names: (&RawProfiles, Option<&str>),
    g: &Globals,
    taken: &mut Taken,
    problems: &mut Problems,
) -> OutputSet {
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
    if let (Some(dir), Some(s)) = (&dir, &r.dir) {
        apart(dir, s, &taken.dirs, problems);
        taken.dirs.push((dir.clone(), name.clone()));
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
    let token = r.endpoint_token_file.as_ref();
    let token = token.map(|s| token_file(s, name, g, taken, problems));
    let profiles = set_profiles(r, names, problems);
    taken.profiles.extend(profiles.iter().cloned());
    OutputSet {
        name: name.clone(),
        app_dir: app_dir.unwrap_or_default(),
        dir: dir.unwrap_or_default(),
        profiles: profiles.into_iter().collect(),
        endpoint_token_file: token,
    }
}

/// Refuses a set `dir` (given at `s`) that is, or nests with, another's.
fn apart(dir: &Path, s: &Sourced, dirs: &[(PathBuf, String)], problems: &mut Problems) {
    // Some(true): the same dir; Some(false): one inside the other.
    let same_or_nested =
        |a: &Path, b: &Path| (a.starts_with(b) || b.starts_with(a)).then_some(a == b);
    for (other, other_name) in dirs {
        // The paths as written, then as resolved: two sets must not
        // meet through a symlink either.
        let meet = same_or_nested(other, dir)
            .or_else(|| same_or_nested(&fsread::resolved(other), &fsread::resolved(dir)));
        if meet == Some(true) {
            problems.at(
                s,
                format!("set {other_name} has the same dir: each set needs its own directory (its own volume)"),
            );
        } else if meet == Some(false) {
            problems.at(
                s,
                format!(
                    "is inside set {other_name}'s dir {} or contains it: a container mounting one would see the other's roles; give each set its own volume",
                    other.display()
                ),
            );
        }
    }
}

/// A set's own endpoint token file (`s`), as the load read it.
fn token_file(
    s: &Sourced,
    set: &str,
    g: &Globals,
    taken: &mut Taken,
    problems: &mut Problems,
) -> PathBuf {
    let path = PathBuf::from(&s.value);
    if s.value.is_empty() || s.value.chars().any(char::is_control) {
        problems.at(s, "must be a non-empty path without control characters");
    } else if !g.endpoint_set {
        problems.at(
            s,
            "the token is only used by the credentials endpoint: set endpoint_addr (--endpoint-addr 127.0.0.1:PORT) too, or remove this key",
        );
    } else if let Err(e) = g.files.token(&path) {
        problems.at(s, e);
    }
    if let Some(other) = taken.tokens.insert(path.clone(), set.to_owned()) {
        problems.at(
            s,
            format!("set {other} uses the same token file: each set needs its own token (the token picks the set)"),
        );
    }
    path
}

/// A set's profiles, each configured and listed once.
/// `names`: the configured profiles and the published base (pod-identity).
fn set_profiles(
    r: &RawSet,
    (names, base): (&RawProfiles, Option<&str>),
    problems: &mut Problems,
) -> BTreeSet<String> {
    let mut profiles = BTreeSet::new();
    match &r.profiles {
        None => problems.in_file(
            &r.name.origin,
            "has no profiles: list the profiles this set's container gets, e.g. profiles: [reader]",
        ),
        Some(list) if list.is_empty() => problems.in_file(
            format!("{}.profiles", r.name.origin),
            "is empty: list the profiles this set's container gets (remove the set if it gets none)",
        ),
        Some(list) => {
            for p in list {
                if !names.contains_key(&p.value) && base != Some(p.value.as_str()) {
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
    profiles
}

/// An absolute directory without `..` or control characters.
fn absolute_dir(s: &Sourced, problems: &mut Problems) -> Option<PathBuf> {
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

/// The apps mount the declared sets' dirs: none may hold the control
/// socket (`at`: where it was set, if not the default).
fn socket_outside_sets(
    c: &super::Config,
    at: &Option<Sourced>,
    sets: &[OutputSet],
    problems: &mut Problems,
) {
    let Some(sock) = &c.control_socket else {
        return;
    };
    let at = at
        .as_ref()
        .map_or("control_socket (default)", |s| &s.origin);
    for set in sets.iter().filter(|set| sock.starts_with(&set.dir)) {
        problems.push(
            at,
            format!(
                "{} is inside output set {}'s dir, which an application container mounts: it must never reach the control socket; use a directory only this container mounts, such as /run/rolecall/control.sock",
                sock.display(),
                set.name
            ),
        );
    }
}

/// Whether the running sets' layout (names, dirs, app dirs, token files)
/// differs: only a restart applies that (volumes are in the pod spec).
pub(super) fn layout_changed(old: &[OutputSet], new: &[OutputSet]) -> bool {
    type Layout<'a> = (&'a String, &'a PathBuf, &'a PathBuf, &'a Option<PathBuf>);
    fn layout(s: &OutputSet) -> Layout<'_> {
        (&s.name, &s.dir, &s.app_dir, &s.endpoint_token_file)
    }
    !old.iter().map(layout).eq(new.iter().map(layout))
}

#[cfg(test)]
mod tests;
