//! The configuration rolecall gets: the annotations' profiles and options
//! merged into one YAML mapping, with the output sets of the containers
//! served, validated by the sidecar's own loader (never a second parser).

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::keys::Request;
use super::plan::Served;
use super::value::{key, map, map_mut, s};
use super::{APP_DIR, Mode, PREFIX, TOKEN_FILE};
use crate::config::{Config, CredentialsMode, Env, Flags, valid_set_name};

/// What the loader's messages name the rendered text.
const ORIGIN: &str = "rolecall.dev";

/// The rendered configuration's text and the containers served, each with
/// its default profile's region; or every problem.
pub(super) fn render(
    r: &Request,
    mut served: Vec<Served>,
    endpoint: bool,
) -> Result<(String, Vec<Served>), Vec<String>> {
    let mut problems = one_mode_per_profile(&served);
    let user = r.config.clone().unwrap_or_default();
    // The injector's keys first, then the user's in their order.
    let mut m = Mapping::new();
    if let Some(region) = &r.region {
        if user.contains_key("region") {
            problems.push(format!(
                "annotation {PREFIX}region: {PREFIX}config sets region too; set it one way"
            ));
        }
        m.insert(key("region"), s(region));
    }
    // Process mode is the sidecar's default too, but the pod may run an
    // older image (`--image`, rolecall.dev/image) whose default is file.
    if !user.contains_key("credentials") {
        m.insert(key("credentials"), s("process"));
    }
    if endpoint || says_endpoint(&user) {
        m.insert(
            key("endpoint_addr"),
            s(&format!("127.0.0.1:{}", super::ENDPOINT_PORT)),
        );
    }
    m.extend(user);
    profiles(&mut m, r, &served);
    let mut outputs = Mapping::new();
    for c in &served {
        if !valid_set_name(&c.name) {
            problems.push(format!(
                "container {}: its name cannot name an output set",
                c.name
            ));
        }
        let list = c.profiles.iter().map(|p| s(p)).collect();
        let set = map([
            ("dir", s(&format!("{APP_DIR}/{}", c.name))),
            ("app_dir", s(APP_DIR)),
            ("profiles", Value::Sequence(list)),
        ]);
        outputs.insert(key(&c.name), set);
    }
    m.insert(key("outputs"), Value::Mapping(outputs));
    if !problems.is_empty() {
        return Err(problems);
    }
    let text = serde_yaml_ng::to_string(&Value::Mapping(m))
        .map_err(|e| vec![format!("cannot render the configuration: {e}")])?;
    let config = validate(r, &text)?;
    for c in &mut served {
        let p = config.profile(&c.default);
        c.region = p.and_then(|p| p.region.clone());
        c.helper = any_in(&config, &c.profiles, CredentialsMode::Process);
        for name in &c.profiles {
            let endpoint_only = config
                .profile(name)
                .is_some_and(|p| p.credentials == CredentialsMode::Endpoint);
            if endpoint_only && c.mode != Mode::Endpoint {
                problems.push(format!(
                    "container {}: profile {name} is endpoint-only (credentials: endpoint), but the container reads files (mode {}); set {PREFIX}mode.{}: endpoint",
                    c.name,
                    c.mode.as_str(),
                    c.name
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok((text, served))
    } else {
        Err(problems)
    }
}

/// Whether any of `profiles` is published in `mode` (process mode: its
/// set's dir holds the helper binary).
fn any_in(config: &Config, profiles: &[String], mode: CredentialsMode) -> bool {
    let is = |name: &String| config.profile(name).is_some_and(|p| p.credentials == mode);
    profiles.iter().any(is)
}

/// A profile read from files by a `file` and a `process` container at once.
fn one_mode_per_profile(served: &[Served]) -> Vec<String> {
    let mut by: BTreeMap<&str, (Mode, &str)> = BTreeMap::new();
    let mut problems = Vec::new();
    for c in served.iter().filter(|c| c.mode != Mode::Endpoint) {
        for p in &c.profiles {
            match by.get(p.as_str()) {
                Some((mode, other)) if *mode != c.mode => problems.push(format!(
                    "profile {p} is served to {other} ({}) and to {} ({}): one mode per profile; give both containers the same {PREFIX}mode",
                    mode.as_str(),
                    c.name,
                    c.mode.as_str()
                )),
                Some(_) => {}
                None => {
                    by.insert(p, (c.mode, &c.name));
                }
            }
        }
    }
    problems
}

/// Whether the configuration asks for the endpoint (`credentials:
/// endpoint` at the top or in a profile).
fn says_endpoint(m: &Mapping) -> bool {
    let is = |m: &Mapping| m.get("credentials").and_then(Value::as_str) == Some("endpoint");
    let profiles = m.get("profiles").and_then(Value::as_mapping);
    is(m) || profiles.is_some_and(|ps| ps.values().filter_map(Value::as_mapping).any(is))
}

/// The `role.*` profiles added to the configuration's, and `credentials:
/// file` on the profiles of `file` containers that do not choose.
fn profiles(m: &mut Mapping, r: &Request, served: &[Served]) {
    let mut created = false;
    if !r.roles.is_empty() && !matches!(m.get("profiles"), None | Some(Value::Mapping(_))) {
        return; // the loader says what is wrong with it
    }
    let ps = map_mut(m, "profiles", &mut created);
    for (name, arn) in &r.roles {
        ps.insert(key(name), s(arn));
    }
    for c in served.iter().filter(|c| c.mode == Mode::File) {
        for p in &c.profiles {
            match ps.get_mut(p.as_str()) {
                Some(Value::Mapping(pm)) if !pm.contains_key("credentials") => {
                    pm.insert(key("credentials"), s("file"));
                }
                Some(v @ Value::String(_)) => {
                    let arn = v.clone();
                    *v = map([("role_arn", arn), ("credentials", s("file"))]);
                }
                _ => {}
            }
        }
    }
}

/// The rendered text, loaded as the sidecar will load it, with an empty
/// environment (never the shell's of whoever runs the injector).
fn validate(r: &Request, text: &str) -> Result<Config, Vec<String>> {
    let flags = Flags {
        token_file: Some(TOKEN_FILE.into()),
        health_addr: Some(format!("0.0.0.0:{}", r.health_port)),
        ..Flags::default()
    };
    let e = match Config::load_text(&flags, &Env::new(), Path::new(ORIGIN), text.as_bytes()) {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    let from_role = |origin: &str| {
        let path = origin.strip_prefix("profiles.")?;
        let name = path.strip_suffix(".role_arn").unwrap_or(path);
        r.roles
            .iter()
            .find(|(n, _)| n == name)
            .map(|(n, _)| n.clone())
    };
    let problems = e.problems.into_iter().map(|p| {
        let origin = p
            .origin
            .strip_prefix(ORIGIN)
            .map_or(p.origin.as_str(), |o| {
                o.trim_start_matches(':').trim_start()
            });
        if p.message.starts_with("no AWS region") {
            return format!(
                "no AWS region: set {PREFIX}region (or region in {PREFIX}config, per profile too)"
            );
        }
        match from_role(origin) {
            Some(name) => format!("annotation {PREFIX}role.{name}: {}", p.message),
            None => format!(
                "in the configuration from its {ORIGIN} annotations: {origin}: {}",
                p.message
            ),
        }
    });
    Err(problems.collect())
}
