//! The edits injection makes to a pod template (its `metadata` and
//! `spec`), each recorded in the status annotation so that `uninject`
//! removes exactly them; and the conflicts that refuse it.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::keys::{RENDERED, STATUS};
use super::plan::{Plan, Served, Source};
use super::value::{get_map, get_seq, get_str, key, map, map_mut, name_of, s, seq_mut};
use super::{APP_DIR, CONTAINER, ENDPOINT_PORT, Mode};

use super::sidecar::{FS_GROUP, rolecall, set_volume, volume_names, volumes};
/// The EKS pod-identity webhook leaves these containers alone.
pub(super) const EKS_SKIP: &str = "eks.amazonaws.com/skip-containers";
const EKS_TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";

/// Variables a served container must not set: each would win over, or
/// fight, the credentials rolecall gives it.
const CONFLICTING_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// What an injection added: the `rolecall.dev/status` annotation (compact
/// JSON). `created` names the keys that did not exist before
/// (`initContainers`, `volumes`, `securityContext`, `annotations`,
/// `env:<container>`, `volumeMounts:<container>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Status {
    pub version: String,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub env: BTreeMap<String, Vec<String>>,
    pub mounts: BTreeMap<String, Vec<String>>,
    pub fs_group: bool,
    pub skip_containers: bool,
    pub created: Vec<String>,
}

/// Every container of the spec, init containers first.
fn all_containers(spec: &Mapping) -> impl Iterator<Item = &Mapping> {
    let init = get_seq(spec, "initContainers").iter();
    init.chain(get_seq(spec, "containers"))
        .filter_map(Value::as_mapping)
}

/// What refuses the injection.
pub(super) fn conflicts(meta: &Mapping, spec: &Mapping, plan: &Plan) -> Vec<String> {
    let mut p = Vec::new();
    if all_containers(spec).any(|c| get_str(c, "name") == Some(CONTAINER)) {
        p.push(format!(
            "the pod already has a container named {CONTAINER} that this injector did not add (no rolecall.dev/status): remove it or rename it"
        ));
    }
    let ours = volume_names(plan);
    for v in get_seq(spec, "volumes").iter().filter_map(name_of) {
        if ours.iter().any(|o| o == v) {
            p.push(format!(
                "the pod already has a volume named {v}, a name the injector adds: rename it"
            ));
        }
    }
    for name in &ours {
        if name.len() > 63 {
            p.push(format!(
                "volume {name} (for container {}) is longer than 63 characters: shorten the container's name",
                name.trim_start_matches("rolecall-")
            ));
        }
    }
    p.extend(port_conflicts(spec, plan));
    let aws_tokens = token_volumes(spec, &plan.request.audience);
    for c in all_containers(spec) {
        let name = get_str(c, "name").unwrap_or("?");
        let served = plan.served.iter().any(|s| s.name == name);
        p.extend(container_conflicts(c, name, served, &aws_tokens));
    }
    if let Some(v) = get_map(meta, "annotations").and_then(|a| a.get(EKS_SKIP)) {
        let listed: Vec<&str> = v.as_str().unwrap_or("").split(',').map(str::trim).collect();
        let want = skip_list(plan);
        let missing: Vec<&String> = want
            .iter()
            .filter(|w| !listed.contains(&w.as_str()))
            .collect();
        if !missing.is_empty() {
            let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            p.push(format!(
                "annotation {EKS_SKIP}: it misses {}: the EKS pod-identity webhook would give its own token and AWS_ROLE_ARN to what it does not skip; add them (or remove the annotation: the injector writes it)",
                missing.join(", ")
            ));
        }
    }
    p
}

/// A container port rolecall's listeners would need: the pod's containers
/// share one network namespace.
fn port_conflicts(spec: &Mapping, plan: &Plan) -> Vec<String> {
    let mut ours = vec![(
        plan.request.health_port,
        "rolecall's health port (the pod's containers share one network): set another with rolecall.dev/health-port",
    )];
    if plan.endpoint {
        ours.push((
            ENDPOINT_PORT,
            "rolecall's credentials endpoint (the pod's containers share one network): move the container's port, the endpoint's is fixed",
        ));
    }
    let mut p = Vec::new();
    for c in all_containers(spec) {
        let ports = get_seq(c, "ports").iter().filter_map(Value::as_mapping);
        for port in ports.filter_map(|m| m.get("containerPort").and_then(Value::as_u64)) {
            if let Some((_, fix)) = ours.iter().find(|(n, _)| u64::from(*n) == port) {
                p.push(format!(
                    "container {} uses port {port}, {fix}",
                    get_str(c, "name").unwrap_or("?")
                ));
            }
        }
    }
    p
}

/// The pod's volumes that project a service-account token for AWS: the
/// audience rolecall's token has, or STS's.
fn token_volumes(spec: &Mapping, audience: &str) -> Vec<String> {
    let is_aws = |src: &Value| {
        let t = src
            .as_mapping()
            .and_then(|m| get_map(m, "serviceAccountToken"));
        t.is_some_and(|t| {
            let a = get_str(t, "audience");
            a == Some(audience) || a == Some("sts.amazonaws.com")
        })
    };
    let vols = get_seq(spec, "volumes")
        .iter()
        .filter_map(Value::as_mapping);
    vols.filter(|v| {
        let sources = get_map(v, "projected").map(|p| get_seq(p, "sources"));
        sources.is_some_and(|s| s.iter().any(is_aws))
    })
    .filter_map(|v| get_str(v, "name").map(String::from))
    .collect()
}

fn container_conflicts(c: &Mapping, name: &str, served: bool, tokens: &[String]) -> Vec<String> {
    let mut p = Vec::new();
    for m in get_seq(c, "volumeMounts")
        .iter()
        .filter_map(Value::as_mapping)
    {
        let vol = get_str(m, "name").unwrap_or("?");
        let path = get_str(m, "mountPath").unwrap_or("");
        if tokens.iter().any(|t| t == vol) || path.starts_with(EKS_TOKEN_DIR) {
            p.push(format!(
                "container {name} mounts volume {vol} at {path}, a service-account token for AWS: with rolecall only rolecall holds the token; remove the mount (and the volume)"
            ));
        }
        if served && (path == APP_DIR || path.starts_with(&format!("{APP_DIR}/"))) {
            p.push(format!(
                "container {name} already mounts volume {vol} at {path}: rolecall mounts its credentials at {APP_DIR}; move that mount"
            ));
        }
    }
    if served {
        for e in get_seq(c, "env").iter().filter_map(name_of) {
            if CONFLICTING_ENV.contains(&e) {
                p.push(format!(
                    "container {name} sets {e}, which would override or fight the credentials rolecall gives it: remove it (rolecall sets what the container needs)"
                ));
            }
        }
    }
    p
}

/// The containers the EKS webhook must skip: rolecall and every one served.
fn skip_list(plan: &Plan) -> Vec<String> {
    let served = plan.served.iter().map(|c| c.name.clone());
    std::iter::once(CONTAINER.to_owned())
        .chain(served)
        .collect()
}

/// Applies the plan to the template (`meta`: its metadata, `spec`: its
/// spec): the edits, then the status annotation recording them.
pub(super) fn apply(meta: &mut Mapping, spec: &mut Mapping, plan: &Plan) {
    let mut st = Status {
        version: env!("CARGO_PKG_VERSION").into(),
        containers: plan.served.iter().map(|c| c.name.clone()).collect(),
        volumes: volume_names(plan),
        ..Status::default()
    };
    let mut created = false;
    seq_mut(spec, "initContainers", &mut created).insert(0, rolecall(plan));
    note(&mut st, created, "initContainers");
    let mut created = false;
    let vols = seq_mut(spec, "volumes", &mut created);
    vols.extend(volumes(plan));
    note(&mut st, created, "volumes");
    for c in &plan.served {
        serve(spec, c, plan, &mut st);
    }
    let mut created = false;
    let sc = map_mut(spec, "securityContext", &mut created);
    note(&mut st, created, "securityContext");
    if !sc.contains_key("fsGroup") {
        sc.insert(key("fsGroup"), Value::Number(FS_GROUP.into()));
        st.fs_group = true;
    }
    let mut created = false;
    let ann = map_mut(meta, "annotations", &mut created);
    note(&mut st, created, "annotations");
    if !ann.contains_key(EKS_SKIP) {
        ann.insert(key(EKS_SKIP), s(&skip_list(plan).join(",")));
        st.skip_containers = true;
    }
    if let Source::Rendered(text) = &plan.source {
        ann.insert(key(RENDERED), s(text));
    }
    let json = serde_json::to_string(&st).unwrap_or_default();
    ann.insert(key(STATUS), s(&json));
}

fn note(st: &mut Status, created: bool, what: &str) {
    if created {
        st.created.push(what.to_owned());
    }
}

/// The env and mounts of one served container.
fn serve(spec: &mut Mapping, c: &Served, plan: &Plan, st: &mut Status) {
    let Some(target) = container_mut(spec, &c.name) else {
        return;
    };
    let volume = match plan.source {
        Source::ConfigMap(_) => "rolecall-aws".to_owned(),
        Source::Rendered(_) => set_volume(&c.name),
    };
    let has_region = get_seq(target, "env")
        .iter()
        .filter_map(name_of)
        .any(|n| n == "AWS_REGION" || n == "AWS_DEFAULT_REGION");
    let env: Vec<(&str, String)> = match c.mode {
        Mode::Process | Mode::File => vec![
            ("AWS_CONFIG_FILE", format!("{APP_DIR}/config")),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                format!("{APP_DIR}/credentials"),
            ),
            ("AWS_PROFILE", c.default.clone()),
        ],
        Mode::Endpoint => {
            let mut e = vec![
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    format!(
                        "http://127.0.0.1:{ENDPOINT_PORT}/v1/credentials/{}",
                        c.default
                    ),
                ),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    format!("{APP_DIR}/endpoint-token"),
                ),
            ];
            // Both names: botocore (the AWS CLI v1, boto3) reads only
            // AWS_DEFAULT_REGION, the other SDKs AWS_REGION first.
            if let Some(region) = c.region.as_ref().filter(|_| !has_region) {
                e.push(("AWS_REGION", region.clone()));
                e.push(("AWS_DEFAULT_REGION", region.clone()));
            }
            e
        }
    };
    let mut created = false;
    let list = seq_mut(target, "env", &mut created);
    for (name, value) in &env {
        list.push(map([("name", s(name)), ("value", s(value))]));
    }
    note(st, created, &format!("env:{}", c.name));
    let names = env.iter().map(|(n, _)| (*n).to_owned()).collect();
    st.env.insert(c.name.clone(), names);
    let mut created = false;
    seq_mut(target, "volumeMounts", &mut created).push(map([
        ("name", s(&volume)),
        ("mountPath", s(APP_DIR)),
        ("readOnly", Value::Bool(true)),
    ]));
    note(st, created, &format!("volumeMounts:{}", c.name));
    st.mounts.insert(c.name.clone(), vec![volume]);
}

/// The container named `name`, an init or a regular one.
pub(super) fn container_mut<'a>(spec: &'a mut Mapping, name: &str) -> Option<&'a mut Mapping> {
    spec.iter_mut()
        .filter(|(k, _)| matches!(k.as_str(), Some("initContainers" | "containers")))
        .filter_map(|(_, v)| v.as_sequence_mut())
        .flat_map(|seq| seq.iter_mut())
        .filter_map(Value::as_mapping_mut)
        .find(|c| get_str(c, "name") == Some(name))
}
