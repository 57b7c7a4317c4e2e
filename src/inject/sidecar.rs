//! What injection adds that is rolecall's own: its container (a native
//! sidecar, hardened and probed as in the examples) and its volumes.

use serde_yaml_ng::Value;

use super::keys::RENDERED;
use super::plan::{Plan, Source};
use super::value::{key, map, s};
use super::{APP_DIR, CONTAINER, ENDPOINT_PORT, TOKEN_FILE};

const TOKEN_DIR: &str = "/var/run/secrets/rolecall/serviceaccount";
const CONFIG_DIR: &str = "/etc/rolecall";
const RUN_DIR: &str = "/run/rolecall";
const PORT_NAME: &str = "rolecall-health";
/// rolecall's user and group in its image: the pod's `fsGroup` when it sets
/// none, so that the app reads the 0640 files.
pub(super) const FS_GROUP: u64 = 65532;

/// The volumes the plan adds, in order.
pub(super) fn volume_names(plan: &Plan) -> Vec<String> {
    let mut v: Vec<String> = ["rolecall-token", "rolecall-config", "rolecall-run"]
        .map(String::from)
        .into();
    match plan.source {
        Source::ConfigMap(_) => v.push("rolecall-aws".into()),
        Source::Rendered(_) => v.extend(plan.served.iter().map(|c| set_volume(&c.name))),
    }
    v
}

pub(super) fn set_volume(container: &str) -> String {
    format!("rolecall-{container}")
}

/// The volumes added.
pub(super) fn volumes(plan: &Plan) -> Vec<Value> {
    let r = &plan.request;
    let memory = |size| map([("medium", s("Memory")), ("sizeLimit", s(size))]);
    let token = map([(
        "serviceAccountToken",
        map([
            ("audience", s(&r.audience)),
            ("expirationSeconds", Value::Number(r.expiration.into())),
            ("path", s("token")),
        ]),
    )]);
    let config = match &plan.source {
        Source::ConfigMap(name) => ("configMap", map([("name", s(name))])),
        Source::Rendered(_) => {
            let field = format!("metadata.annotations['{RENDERED}']");
            let item = map([
                ("path", s("rolecall.yaml")),
                ("fieldRef", map([("fieldPath", s(&field))])),
            ]);
            ("downwardAPI", map([("items", Value::Sequence(vec![item]))]))
        }
    };
    let mut v = vec![
        map([
            ("name", s("rolecall-token")),
            (
                "projected",
                map([("sources", Value::Sequence(vec![token]))]),
            ),
        ]),
        map([("name", s("rolecall-config")), config]),
        map([("name", s("rolecall-run")), ("emptyDir", memory("1Mi"))]),
    ];
    for name in volume_names(plan).into_iter().skip(3) {
        let dir = memory(output_size(plan, &name));
        v.push(map([("name", s(&name)), ("emptyDir", dir)]));
    }
    v
}

/// The room an output volume needs: 16Mi where rolecall copies the helper
/// binary (about 5.7 MB) into it (a set holding a process-mode profile, as
/// the rendered configuration says, whatever the container's own mode),
/// else 1Mi for the small files. A ConfigMap's configuration is not read
/// here: its profiles may use the default, process mode.
fn output_size(plan: &Plan, volume: &str) -> &'static str {
    let process = match plan.source {
        Source::ConfigMap(_) => true,
        Source::Rendered(_) => plan
            .served
            .iter()
            .any(|c| set_volume(&c.name) == volume && c.helper),
    };
    if process { "16Mi" } else { "1Mi" }
}

/// The rolecall container: a native sidecar (first init container,
/// `restartPolicy: Always`) hardened and probed as in the examples.
pub(super) fn rolecall(plan: &Plan) -> Value {
    let r = &plan.request;
    let mut args = vec![
        s("run"),
        s(&format!("--config={CONFIG_DIR}/rolecall.yaml")),
        s(&format!("--token-file={TOKEN_FILE}")),
        s(&format!("--health-addr=0.0.0.0:{}", r.health_port)),
    ];
    if plan.endpoint && matches!(plan.source, Source::ConfigMap(_)) {
        args.push(s(&format!("--endpoint-addr=127.0.0.1:{ENDPOINT_PORT}")));
    }
    let probe = |path: &str, period: u64, failures: u64| {
        map([
            ("httpGet", map([("path", s(path)), ("port", s(PORT_NAME))])),
            ("periodSeconds", Value::Number(period.into())),
            ("failureThreshold", Value::Number(failures.into())),
        ])
    };
    let mount = |name: &str, path: &str, ro: bool| {
        let mut m = map([("name", s(name)), ("mountPath", s(path))]);
        if ro && let Value::Mapping(m) = &mut m {
            m.insert(key("readOnly"), Value::Bool(true));
        }
        m
    };
    let mut mounts = Vec::new();
    for name in volume_names(plan).iter().skip(3) {
        let dir = match plan.source {
            Source::ConfigMap(_) => APP_DIR.to_owned(),
            Source::Rendered(_) => format!("{APP_DIR}/{}", name.trim_start_matches("rolecall-")),
        };
        mounts.push(mount(name, &dir, false));
    }
    mounts.push(mount("rolecall-config", CONFIG_DIR, true));
    mounts.push(mount("rolecall-token", TOKEN_DIR, true));
    mounts.push(mount("rolecall-run", RUN_DIR, false));
    let image = r.image.clone().unwrap_or_else(|| plan.image.clone());
    map([
        ("name", s(CONTAINER)),
        ("image", s(&image)),
        ("restartPolicy", s("Always")),
        ("args", Value::Sequence(args)),
        (
            "ports",
            Value::Sequence(vec![map([
                ("name", s(PORT_NAME)),
                ("containerPort", Value::Number(r.health_port.into())),
                ("protocol", s("TCP")),
            ])]),
        ),
        ("startupProbe", probe("/readyz", 1, 300)),
        ("livenessProbe", probe("/livez", 10, 3)),
        ("readinessProbe", probe("/readyz", 10, 3)),
        (
            "resources",
            map([
                (
                    "requests",
                    map([("cpu", s(&r.cpu_request)), ("memory", s(&r.memory_request))]),
                ),
                ("limits", map([("memory", s(&r.memory_limit))])),
            ]),
        ),
        ("securityContext", hardened()),
        ("volumeMounts", Value::Sequence(mounts)),
    ])
}

fn hardened() -> Value {
    map([
        ("runAsNonRoot", Value::Bool(true)),
        ("runAsUser", Value::Number(FS_GROUP.into())),
        ("runAsGroup", Value::Number(FS_GROUP.into())),
        ("readOnlyRootFilesystem", Value::Bool(true)),
        ("allowPrivilegeEscalation", Value::Bool(false)),
        (
            "capabilities",
            map([("drop", Value::Sequence(vec![s("ALL")]))]),
        ),
        ("seccompProfile", map([("type", s("RuntimeDefault"))])),
    ])
}
