//! The configuration file's YAML, read into a [`Source`]: refused before
//! parsing when too large or too deep, then every key checked against the
//! option table ([`options::top_keys`], [`options::profile_keys`]).

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::options::{self, POLICY_ARNS, PROFILES_KEY, TAGS, TRANSITIVE_TAG_KEYS, Yaml};
use super::outputs;
use super::sources::{Problems, RawProfile, Source, Src, join, printable};
use super::{MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH};

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
    let depth = nesting_depth(text);
    if depth > MAX_CONFIG_DEPTH {
        problems.push(
            prefix,
            format!(
                "the file nests deeper than {MAX_CONFIG_DEPTH} levels (a rolecall configuration needs 4); it is refused before parsing"
            ),
        );
        return None;
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

/// How deeply `text` nests, as YAML would read it, without parsing it: the
/// deepest of flow nesting (`[` and `{` outside quotes and comments) and
/// block nesting (indentation levels, plus `- ` and `? ` entries that open
/// a level on the same line). Block scalars (`|`, `>`) are skipped. It may
/// overestimate odd layouts, never underestimate: a file it passes cannot
/// make the parser nest deeper than it says (plus one).
pub(super) fn nesting_depth(text: &[u8]) -> usize {
    let text = String::from_utf8_lossy(text);
    let mut max = 0usize;
    let mut flow = 0usize;
    // Indentations of the open block levels.
    let mut indents: Vec<usize> = Vec::new();
    // Inside a block scalar: lines indented more than this belong to it.
    let mut scalar_parent: Option<usize> = None;
    let mut quote: Option<char> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let body = &line[indent..];
        if let Some(parent) = scalar_parent {
            if body.trim().is_empty() || indent > parent {
                continue;
            }
            scalar_parent = None;
        }
        if quote.is_none() && flow == 0 {
            if body.trim().is_empty() || body.starts_with('#') {
                continue;
            }
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&i| i < indent) {
                indents.push(indent);
            }
            // "- - - x" and "? ? x" open a level per indicator.
            let mut rest = body;
            let mut inline = 0;
            while let Some(r) = rest
                .strip_prefix("- ")
                .or_else(|| rest.strip_prefix("? "))
                .or_else(|| rest.strip_prefix(": "))
            {
                inline += 1;
                rest = r.trim_start_matches(' ');
            }
            max = max.max(indents.len() + inline);
        }
        let mut prev = ' ';
        let mut chars = body.chars().peekable();
        let mut last_significant = ' ';
        while let Some(c) = chars.next() {
            match quote {
                Some('\'') if c == '\'' => {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some('"') if c == '"' => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if prev == ' ' || prev == '\t' => break,
                    '\'' | '"' if matches!(prev, ' ' | '\t' | '[' | '{' | ',' | ':') => {
                        quote = Some(c)
                    }
                    '[' | '{' => {
                        flow += 1;
                        max = max.max(indents.len() + flow);
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            if !c.is_whitespace() {
                last_significant = c;
            }
            prev = c;
        }
        // `key: |`, `- >-`, `key: |2+`: the following, more indented lines
        // are text.
        if quote.is_none() && flow == 0 {
            let t = body.split(" #").next().unwrap_or_default().trim_end();
            let indicator = t
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
                .ends_with(['|', '>']);
            if indicator && matches!(last_significant, '|' | '>' | '-' | '+' | '0'..='9') {
                scalar_parent = Some(indent);
            }
        }
    }
    max
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
