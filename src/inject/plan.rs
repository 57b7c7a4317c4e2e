//! Who gets what: the containers served, each one's profiles, default
//! profile and mode, from the annotations read and the pod's containers.

use super::keys::Request;
use super::value::get_map;
use super::{Mode, PREFIX, render};

/// The pod's container names, as the plan needs them.
pub(super) struct Names {
    pub init: Vec<String>,
    pub regular: Vec<String>,
}

impl Names {
    fn has(&self, name: &str) -> bool {
        self.init.iter().chain(&self.regular).any(|c| c == name)
    }

    fn listed(&self) -> String {
        let mut s = format!("its containers: {}", self.regular.join(", "));
        if !self.init.is_empty() {
            s.push_str(&format!("; init containers: {}", self.init.join(", ")));
        }
        s
    }
}

/// One container rolecall serves.
#[derive(Clone, Debug)]
pub(super) struct Served {
    pub name: String,
    pub profiles: Vec<String>,
    pub default: String,
    pub mode: Mode,
    /// The default profile's region (endpoint mode's `AWS_REGION`).
    pub region: Option<String>,
    /// Whether its set holds a process-mode profile, and so the helper
    /// binary (its volume's size).
    pub helper: bool,
}

/// Where rolecall's configuration comes from.
#[derive(Clone, Debug)]
pub(super) enum Source {
    /// Rendered by the injector (the `rolecall.dev/rendered-config` text).
    Rendered(String),
    /// A ConfigMap's `rolecall.yaml`.
    ConfigMap(String),
}

/// Everything injection adds, decided.
#[derive(Debug)]
pub(super) struct Plan {
    pub served: Vec<Served>,
    /// Regular containers that get nothing.
    pub unserved: Vec<String>,
    pub source: Source,
    pub endpoint: bool,
    pub request: Request,
    /// The image unless `rolecall.dev/image` names one.
    pub image: String,
}

/// The plan, or every problem found.
pub(super) fn plan(r: Request, names: &Names, image: &str) -> Result<Plan, Vec<String>> {
    let mut problems = containers_exist(&r, names);
    if r.config_map.is_some() {
        problems.extend(config_map_conflicts(&r));
    }
    let known = known_profiles(&r, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let (served, unserved) = assign(&r, names, &known, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let endpoint = served.iter().any(|s| s.mode == Mode::Endpoint);
    let (source, served) = match &r.config_map {
        Some(name) => (Source::ConfigMap(name.clone()), served),
        None => {
            let (text, served) = render::render(&r, served, endpoint)?;
            (Source::Rendered(text), served)
        }
    };
    if endpoint && r.health_port == super::ENDPOINT_PORT {
        return Err(vec![format!(
            "annotation {PREFIX}health-port: {} is the credentials endpoint's port; choose another",
            super::ENDPOINT_PORT
        )]);
    }
    Ok(Plan {
        served,
        unserved,
        source,
        endpoint,
        request: r,
        image: image.to_owned(),
    })
}

/// Every container a per-container annotation names exists (and is not
/// rolecall itself).
fn containers_exist(r: &Request, names: &Names) -> Vec<String> {
    let per = r.profiles.iter().map(|(c, _)| ("profiles", c));
    let per = per.chain(r.modes.keys().map(|c| ("mode", c)));
    let per = per.chain(r.defaults.keys().map(|c| ("default-profile", c)));
    per.filter(|(_, c)| !names.has(c) || c.as_str() == super::CONTAINER)
        .map(|(kind, c)| {
            format!(
                "annotation {PREFIX}{kind}.{c}: the pod has no container {c:?} ({})",
                names.listed()
            )
        })
        .collect()
}

fn config_map_conflicts(r: &Request) -> Vec<String> {
    let mut p = Vec::new();
    let at = format!("annotation {PREFIX}config-map");
    if !r.roles.is_empty() || r.config.is_some() || r.region.is_some() {
        p.push(format!(
            "{at}: cannot be combined with {PREFIX}role.*, {PREFIX}config or {PREFIX}region: the configuration is the ConfigMap's; put the profiles and region there"
        ));
    }
    for (c, _) in &r.profiles {
        p.push(format!(
            "annotation {PREFIX}profiles.{c}: not with {PREFIX}config-map: the injector cannot see the ConfigMap's profiles, so every container shares one output volume with all of them; name the container's AWS_PROFILE with {PREFIX}default-profile.{c} instead"
        ));
    }
    p
}

/// The profiles configured by annotations: `role.*` then the config's
/// `profiles` (none with a ConfigMap: it is not seen).
fn known_profiles(r: &Request, problems: &mut Vec<String>) -> Vec<String> {
    let mut known: Vec<String> = Vec::new();
    if let Some(config) = &r.config {
        for k in get_map(config, "profiles")
            .into_iter()
            .flat_map(|m| m.keys())
        {
            if let Some(k) = k.as_str() {
                known.push(k.to_owned());
            }
        }
    }
    for (name, _) in &r.roles {
        if known.contains(name) {
            problems.push(format!(
                "annotation {PREFIX}role.{name}: profile {name} is also in {PREFIX}config's profiles; name it one way"
            ));
        } else {
            known.push(name.clone());
        }
    }
    if r.config_map.is_none() && known.is_empty() && problems.is_empty() {
        problems.push(format!(
            "no profiles: add {PREFIX}role.<profile>: <role ARN> (or profiles in {PREFIX}config, or {PREFIX}config-map: <ConfigMap name>)"
        ));
    }
    known
}

/// Each container's profiles, default profile and mode.
fn assign(
    r: &Request,
    names: &Names,
    known: &[String],
    problems: &mut Vec<String>,
) -> (Vec<Served>, Vec<String>) {
    let explicit = !r.profiles.is_empty();
    let mut served = Vec::new();
    let mut unserved = Vec::new();
    let all = names.init.iter().map(|c| (c, true));
    for (name, init) in all.chain(names.regular.iter().map(|c| (c, false))) {
        let listed = r.profiles.iter().find(|(c, _)| c == name).map(|(_, l)| l);
        let profiles = match listed {
            Some(list) => list.clone(),
            None if !explicit && !init => {
                let mut all = known.to_vec();
                all.sort();
                all
            }
            None => {
                if !init {
                    unserved.push(name.clone());
                }
                for kind in ["mode", "default-profile"] {
                    let named = if kind == "mode" {
                        r.modes.contains_key(name)
                    } else {
                        r.defaults.contains_key(name)
                    };
                    if named {
                        problems.push(format!(
                            "annotation {PREFIX}{kind}.{name}: container {name} gets no profiles (no {PREFIX}profiles.{name})"
                        ));
                    }
                }
                continue;
            }
        };
        if r.config_map.is_none() {
            for p in profiles.iter().filter(|p| !known.contains(p)) {
                problems.push(format!(
                    "annotation {PREFIX}profiles.{name}: profile {p} is not configured (add {PREFIX}role.{p}, or {p} to {PREFIX}config's profiles)"
                ));
            }
        }
        if let Some(default) = default_profile(r, name, &profiles, listed.is_some(), problems) {
            let mode = r.modes.get(name).or(r.mode_all.as_ref());
            served.push(Served {
                name: name.clone(),
                profiles,
                default,
                mode: mode.copied().unwrap_or(Mode::Process),
                region: None,
                helper: false,
            });
        }
    }
    if explicit {
        let gets = |p: &String| served.iter().any(|c: &Served| c.profiles.contains(p));
        for p in known.iter().filter(|p| !gets(p)) {
            problems.push(format!(
                "profile {p}: no container gets it (no {PREFIX}profiles.<container> lists it, and rolecall serves only what a container reads): add it to one, or remove it"
            ));
        }
    }
    (served, unserved)
}

/// The container's default profile: `default-profile.<c>`, else
/// `default-profile`, else the first it lists, else its only profile.
fn default_profile(
    r: &Request,
    name: &str,
    profiles: &[String],
    listed: bool,
    problems: &mut Vec<String>,
) -> Option<String> {
    let (chosen, at) = match (r.defaults.get(name), &r.default_all) {
        (Some(d), _) => (d.clone(), format!("{PREFIX}default-profile.{name}")),
        (None, Some(d)) => (d.clone(), format!("{PREFIX}default-profile")),
        (None, None) if listed || profiles.len() == 1 => return profiles.first().cloned(),
        (None, None) if r.config_map.is_some() => {
            problems.push(format!(
                "container {name}: with {PREFIX}config-map, name its AWS_PROFILE with {PREFIX}default-profile.{name} (or {PREFIX}default-profile for every container)"
            ));
            return None;
        }
        (None, None) => {
            problems.push(format!(
                "container {name} gets {} profiles ({}): name its default AWS_PROFILE with {PREFIX}default-profile.{name} (or {PREFIX}default-profile for every container), or list its profiles, default first, with {PREFIX}profiles.{name}",
                profiles.len(),
                profiles.join(", ")
            ));
            return None;
        }
    };
    if r.config_map.is_none() && !profiles.contains(&chosen) {
        problems.push(format!(
            "annotation {at}: container {name} does not get profile {chosen} (it gets {})",
            profiles.join(", ")
        ));
        return None;
    }
    Some(chosen)
}
