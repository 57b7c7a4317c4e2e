//! What the user wrote: the `rolecall.dev/` label and annotations of a pod
//! template, each value checked on its own (the profiles are checked later,
//! by the configuration's own code).

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::value::get_map;
use super::{MAX_CONFIG_DEPTH, MAX_CONFIG_NODES, Mode, PREFIX};

/// The opt-in label.
pub(super) const INJECT_LABEL: &str = "rolecall.dev/inject";
/// What the injector records, and the configuration it rendered.
pub(super) const STATUS: &str = "rolecall.dev/status";
pub(super) const RENDERED: &str = "rolecall.dev/rendered-config";

const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
const DEFAULT_EXPIRATION: u64 = 86_400;
/// Kubernetes refuses a projected token that lives shorter.
const MIN_EXPIRATION: u64 = 600;
pub(super) const DEFAULT_HEALTH_PORT: u16 = 9911;

/// The annotations, for the message of an unknown one.
const KNOWN: &str = "role.<profile>, config, config-map, region, profiles.<container>, mode, mode.<container>, default-profile, default-profile.<container>, image, token-audience, token-expiration, health-port, cpu-request, memory-request, memory-limit";

/// Keys of `rolecall.dev/config` that are the injector's own plumbing.
pub(super) const PLUMBING: &[&str] = &[
    "outputs",
    "token_file",
    "output_dir",
    "app_output_dir",
    "control_socket",
    "health_addr",
    "endpoint_addr",
    "endpoint_token_file",
    "ca_bundle",
];

/// The pod template's `rolecall.dev/` annotations, read.
#[derive(Debug, Default)]
pub(super) struct Request {
    /// `role.<profile>`, in annotation order.
    pub roles: Vec<(String, String)>,
    pub config: Option<Mapping>,
    pub config_map: Option<String>,
    pub region: Option<String>,
    /// `profiles.<container>`, in annotation order.
    pub profiles: Vec<(String, Vec<String>)>,
    pub modes: BTreeMap<String, Mode>,
    pub mode_all: Option<Mode>,
    pub defaults: BTreeMap<String, String>,
    pub default_all: Option<String>,
    pub image: Option<String>,
    pub audience: String,
    pub expiration: u64,
    pub health_port: u16,
    pub cpu_request: String,
    pub memory_request: String,
    pub memory_limit: String,
}

/// Whether the label opts in: `Ok(true)` for "true", `Ok(false)` for
/// "false" or none, else the problem.
pub(super) fn opted_in(metadata: &Mapping) -> Result<bool, Vec<String>> {
    let mut problems = Vec::new();
    let mut on = false;
    for (k, v) in get_map(metadata, "labels").into_iter().flatten() {
        let Some(k) = k.as_str().filter(|k| k.starts_with(PREFIX)) else {
            continue;
        };
        if k != INJECT_LABEL {
            problems.push(format!(
                "label {k}: unknown; the one rolecall.dev label is {INJECT_LABEL} (the rest are annotations)"
            ));
            continue;
        }
        match v.as_str() {
            Some("true") => on = true,
            Some("false") => {}
            Some(other) => problems.push(format!(
                "label {INJECT_LABEL}: must be \"true\" or \"false\", not {other:?}"
            )),
            None => problems.push(format!(
                "label {INJECT_LABEL}: must be the string \"true\" or \"false\" (quoted), not {}",
                shown(v)
            )),
        }
    }
    if problems.is_empty() {
        Ok(on)
    } else {
        Err(problems)
    }
}

/// What a value that should be a string is, for a message: never the
/// value itself (an annotation may hold a proxy's password).
pub(super) fn shown(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Reads every `rolecall.dev/` annotation; each problem is a message
/// naming the annotation.
pub(super) fn read(metadata: &Mapping) -> (Request, Vec<String>) {
    let mut r = Request {
        audience: DEFAULT_AUDIENCE.into(),
        expiration: DEFAULT_EXPIRATION,
        health_port: DEFAULT_HEALTH_PORT,
        cpu_request: "5m".into(),
        memory_request: "16Mi".into(),
        memory_limit: "32Mi".into(),
        ..Request::default()
    };
    let mut problems = Vec::new();
    for (k, v) in get_map(metadata, "annotations").into_iter().flatten() {
        let Some(name) = k.as_str().and_then(|k| k.strip_prefix(PREFIX)) else {
            continue;
        };
        if name == "status" || name == "rendered-config" {
            continue;
        }
        let at = format!("annotation {PREFIX}{name}");
        let Some(text) = v.as_str() else {
            problems.push(format!(
                "{at}: must be a string (quote it, or write a block with |), not {}",
                shown(v)
            ));
            continue;
        };
        if let Err(why) = one(&mut r, name, text) {
            problems.push(format!("{at}: {why}"));
        }
    }
    (r, problems)
}

/// One annotation `name` (without the prefix) with value `text`.
fn one(r: &mut Request, name: &str, text: &str) -> Result<(), String> {
    if let Some((kind, suffix)) = name.split_once('.') {
        if suffix.is_empty() {
            return Err(format!("names no {}", kind_of(kind)));
        }
        let suffix = suffix.to_owned();
        match kind {
            "role" => r.roles.push((suffix, text.trim().to_owned())),
            "profiles" => r.profiles.push((suffix, list(text)?)),
            "mode" => {
                r.modes.insert(suffix, mode(text)?);
            }
            "default-profile" => {
                r.defaults.insert(suffix, word(text)?);
            }
            _ => return Err(unknown(name)),
        }
        return Ok(());
    }
    match name {
        "config" => r.config = Some(config(text)?),
        "config-map" => r.config_map = Some(config_map(text)?),
        "region" => r.region = Some(word(text)?),
        "mode" => r.mode_all = Some(mode(text)?),
        "default-profile" => r.default_all = Some(word(text)?),
        "image" => r.image = Some(word(text)?),
        "token-audience" => r.audience = word(text)?,
        "token-expiration" => r.expiration = expiration(text)?,
        "health-port" => r.health_port = port(text)?,
        "cpu-request" => r.cpu_request = quantity(text)?,
        "memory-request" => r.memory_request = quantity(text)?,
        "memory-limit" => r.memory_limit = quantity(text)?,
        _ => return Err(unknown(name)),
    }
    Ok(())
}

/// An unknown annotation's message, with the nearest known name.
fn unknown(name: &str) -> String {
    const NAMES: &[&str] = &[
        "config",
        "config-map",
        "region",
        "mode",
        "default-profile",
        "image",
        "token-audience",
        "token-expiration",
        "health-port",
        "cpu-request",
        "memory-request",
        "memory-limit",
    ];
    const KINDS: &[&str] = &["role", "profiles", "mode", "default-profile"];
    let (head, tail) = match name.split_once('.') {
        Some((h, t)) => (h, Some(t)),
        None => (name, None),
    };
    let pool = if tail.is_some() { KINDS } else { NAMES };
    let near = pool
        .iter()
        .map(|k| (distance(head, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min();
    let hint = match (near, tail) {
        (Some((_, k)), Some(t)) => format!("did you mean {PREFIX}{k}.{t}? "),
        (Some((_, k)), None) => format!("did you mean {PREFIX}{k}? "),
        (None, _) => String::new(),
    };
    format!("unknown; {hint}the annotations are {PREFIX}{{{KNOWN}}}")
}

/// The edit distance of two short names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn kind_of(kind: &str) -> &'static str {
    match kind {
        "role" => "profile (rolecall.dev/role.<profile>)",
        "profiles" | "mode" | "default-profile" => "container (…<container>)",
        _ => "name",
    }
}

/// One word: not empty, printable, no space.
fn word(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{text:?} must be one word, not empty"));
    }
    Ok(t.to_owned())
}

/// `"reader, writer"`: names, at least one, none twice.
fn list(text: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for part in text.split(',') {
        let name = word(part).map_err(|_| {
            format!("{text:?} must be profile names separated by commas, e.g. \"reader, writer\"")
        })?;
        if names.contains(&name) {
            return Err(format!("names profile {name} twice"));
        }
        names.push(name);
    }
    Ok(names)
}

fn mode(text: &str) -> Result<Mode, String> {
    match text.trim() {
        "process" => Ok(Mode::Process),
        "file" => Ok(Mode::File),
        "endpoint" => Ok(Mode::Endpoint),
        _ => Err(format!("{text:?} is not a mode: process, file or endpoint")),
    }
}

fn expiration(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if (MIN_EXPIRATION..=u64::from(u32::MAX)).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} must be a number of seconds, at least {MIN_EXPIRATION} (Kubernetes' minimum)"
        )),
    }
}

fn port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} must be a port number, 1-65535")),
    }
}

/// A Kubernetes quantity as resources take it: `5m`, `16Mi`, `0.5`, `1G`.
fn quantity(text: &str) -> Result<String, String> {
    let t = text.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &t[digits.len()..];
    let number = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && !digits.starts_with('.')
        && !digits.ends_with('.');
    const SUFFIXES: &[&str] = &[
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    if number && SUFFIXES.contains(&suffix) {
        Ok(t.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a Kubernetes quantity (e.g. 5m, 16Mi, 0.5)"
        ))
    }
}

/// A ConfigMap's name: a DNS subdomain.
fn config_map(text: &str) -> Result<String, String> {
    let t = text.trim();
    if crate::text::is_dns1123(t, 253, true) {
        Ok(t.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a ConfigMap name (lower-case letters, digits, '-' and '.')"
        ))
    }
}

/// `rolecall.dev/config`: a YAML mapping, bounded as the configuration
/// file is, without the injector's plumbing keys.
fn config(text: &str) -> Result<Mapping, String> {
    use crate::sys::yaml::{Shape, measure};
    match measure(text.as_bytes(), MAX_CONFIG_DEPTH, MAX_CONFIG_NODES) {
        Some(Shape::Fits) => {}
        Some(_) => return Err("nests too deep or holds too many values".into()),
        None => return Err("the YAML parser could not start (out of memory)".into()),
    }
    let map = match serde_yaml_ng::from_str::<Value>(text) {
        Ok(Value::Mapping(m)) => m,
        Ok(Value::Null) => Mapping::new(),
        Ok(_) => return Err("must be a YAML mapping of rolecall options".into()),
        Err(e) => return Err(format!("not valid YAML: {e}")),
    };
    let plumbing: Vec<&str> = map
        .keys()
        .filter_map(Value::as_str)
        .filter(|k| PLUMBING.contains(k))
        .collect();
    if !plumbing.is_empty() {
        return Err(format!(
            "sets {}: the injector sets these itself (the volumes and listeners it adds); remove them",
            plumbing.join(", ")
        ));
    }
    Ok(map)
}
