//! Properties of injection over generated pods and workloads (a fixed list
//! of seeds, 500 cases): inject∘inject = inject; uninject∘inject =
//! identity, key order included (compared as YAML text: a mapping's
//! equality ignores order); unknown fields survive in place; no container
//! but rolecall mounts the token.
#![cfg(feature = "inject")]

use rolecall::inject::{Options, inject, uninject};
use serde_yaml_ng::{Mapping, Value};

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
}

/// A made-up value a future Kubernetes might carry.
fn future(rng: &mut fastrand::Rng, depth: u32) -> Value {
    match rng.u8(0..5) {
        0 => Value::Number(rng.i64(-1000..1000).into()),
        1 => s(&format!("v{}", rng.u32(..))),
        2 => Value::Bool(rng.bool()),
        3 if depth < 3 => Value::Sequence(
            (0..rng.usize(0..3))
                .map(|_| future(rng, depth + 1))
                .collect(),
        ),
        _ if depth < 3 => {
            let m: Mapping = (0..rng.usize(0..3))
                .map(|i| (s(&format!("k{i}")), future(rng, depth + 1)))
                .collect();
            Value::Mapping(m)
        }
        _ => Value::Null,
    }
}

fn container(rng: &mut fastrand::Rng, name: &str, sidecar: bool) -> Value {
    let mut pairs = vec![("name", s(name))];
    if rng.bool() {
        pairs.push(("futureField", future(rng, 0)));
    }
    pairs.push(("image", s("registry.example/x:1")));
    if sidecar {
        pairs.push(("restartPolicy", s("Always")));
    }
    if rng.bool() {
        let env = (0..rng.usize(0..3))
            .map(|i| map(vec![("name", s(&format!("VAR_{i}"))), ("value", s("x"))]))
            .collect();
        pairs.push(("env", Value::Sequence(env)));
    }
    if rng.bool() {
        let m = map(vec![("name", s("data")), ("mountPath", s("/data"))]);
        pairs.push(("volumeMounts", Value::Sequence(vec![m])));
    }
    if rng.bool() {
        let p = map(vec![
            ("resourceName", s("cpu")),
            ("restartPolicy", s("NotRequired")),
        ]);
        pairs.push(("resizePolicy", Value::Sequence(vec![p])));
    }
    map(pairs)
}

/// A pod template (metadata and spec) and the names of its regular
/// containers.
fn template(rng: &mut fastrand::Rng) -> Value {
    let regular: Vec<String> = (0..rng.usize(1..4)).map(|i| format!("c{i}")).collect();
    let init: Vec<String> = (0..rng.usize(0..3)).map(|i| format!("i{i}")).collect();
    let mut labels = vec![("app", s("x"))];
    match rng.u8(0..6) {
        0 => {}
        1 => labels.push(("rolecall.dev/inject", s("false"))),
        _ => labels.push(("rolecall.dev/inject", s("true"))),
    }
    let mut ann = vec![("rolecall.dev/region", s("eu-west-1"))];
    if rng.bool() {
        ann.insert(0, ("checksum/config", s("abc")));
    }
    let profiles = ["reader", "writer", "logs"];
    let per_container = rng.bool();
    let n = if per_container {
        rng.usize(1..=regular.len().min(3))
    } else {
        rng.usize(1..4)
    };
    let roles: Vec<String> = profiles[..n]
        .iter()
        .map(|p| format!("rolecall.dev/role.{p}"))
        .collect();
    for (i, r) in roles.iter().enumerate() {
        ann.push((
            r,
            s(&format!("arn:aws:iam::111122223333:role/{}", profiles[i])),
        ));
    }
    let per: Vec<String> = regular
        .iter()
        .map(|c| format!("rolecall.dev/profiles.{c}"))
        .collect();
    let modes: Vec<String> = regular
        .iter()
        .map(|c| format!("rolecall.dev/mode.{c}"))
        .collect();
    if per_container {
        // Each container its own profile (no profile shared by two modes).
        for (i, key) in per.iter().enumerate().take(n) {
            ann.push((key, s(profiles[i])));
            if rng.bool() {
                ann.push((
                    &modes[i],
                    s(["process", "file", "endpoint"][rng.usize(0..3)]),
                ));
            }
        }
    } else {
        if n > 1 {
            ann.push(("rolecall.dev/default-profile", s(profiles[rng.usize(0..n)])));
        }
        if rng.bool() {
            ann.push((
                "rolecall.dev/mode",
                s(["process", "file", "endpoint"][rng.usize(0..3)]),
            ));
        }
    }
    let ann: Vec<(&str, Value)> = ann.into_iter().collect();
    let mut spec = vec![];
    if rng.bool() {
        spec.push((
            "futureField",
            map(vec![("a", Value::Sequence(vec![1.into(), 2.into()]))]),
        ));
    }
    if !init.is_empty() {
        let list = init
            .iter()
            .map(|c| {
                let sidecar = rng.bool();
                container(rng, c, sidecar)
            })
            .collect();
        spec.push(("initContainers", Value::Sequence(list)));
    }
    let list = regular.iter().map(|c| container(rng, c, false)).collect();
    spec.push(("containers", Value::Sequence(list)));
    if rng.bool() {
        let v = map(vec![("name", s("data")), ("emptyDir", map(vec![]))]);
        spec.push(("volumes", Value::Sequence(vec![v])));
    }
    match rng.u8(0..3) {
        0 => {}
        1 => spec.push((
            "securityContext",
            map(vec![("runAsNonRoot", Value::Bool(true))]),
        )),
        _ => spec.push(("securityContext", map(vec![("fsGroup", 2000.into())]))),
    }
    map(vec![
        (
            "metadata",
            map(vec![("labels", map(labels)), ("annotations", map(ann))]),
        ),
        ("spec", map(spec)),
    ])
}

fn object(rng: &mut fastrand::Rng) -> Value {
    let tpl = template(rng);
    if rng.bool() {
        let Value::Mapping(t) = tpl else {
            unreachable!()
        };
        let mut pod = vec![("apiVersion", s("v1")), ("kind", s("Pod"))];
        let mut meta = t["metadata"].as_mapping().unwrap().clone();
        meta.insert(s("name"), s("p"));
        pod.push(("metadata", Value::Mapping(meta)));
        pod.push(("spec", t["spec"].clone()));
        return map(pod);
    }
    map(vec![
        ("apiVersion", s("apps/v1")),
        ("kind", s("Deployment")),
        (
            "metadata",
            map(vec![("name", s("d")), ("namespace", s("ns"))]),
        ),
        ("spec", map(vec![("replicas", 1.into()), ("template", tpl)])),
    ])
}

fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap()
}

/// The pod spec of an object made by [`object`].
fn pod_spec(v: &Value) -> &Mapping {
    let spec = v["spec"].as_mapping().unwrap();
    match spec.get("template") {
        Some(t) => t["spec"].as_mapping().unwrap(),
        None => spec,
    }
}

#[test]
fn injection_properties_over_generated_objects() {
    let opts = Options::default();
    for seed in 0..500u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let input = object(&mut rng);
        let once = inject(&input, &opts)
            .unwrap_or_else(|e| panic!("seed {seed}: {e:?}\n{}", yaml(&input)))
            .value;
        let twice = inject(&once, &opts).unwrap().value;
        assert_eq!(yaml(&twice), yaml(&once), "seed {seed}: inject∘inject");
        let undone = uninject(&once).unwrap().value;
        assert_eq!(yaml(&undone), yaml(&input), "seed {seed}: uninject∘inject");
        let (before, after) = (pod_spec(&input), pod_spec(&once));
        assert_eq!(
            before.get("futureField"),
            after.get("futureField"),
            "seed {seed}"
        );
        let containers = |spec: &Mapping| -> Vec<Value> {
            ["initContainers", "containers"]
                .iter()
                .flat_map(|l| {
                    spec.get(*l)
                        .and_then(Value::as_sequence)
                        .cloned()
                        .unwrap_or_default()
                })
                .collect()
        };
        for c in containers(before) {
            let name = &c["name"];
            let now = containers(after)
                .into_iter()
                .find(|a| &a["name"] == name)
                .unwrap();
            for k in ["futureField", "resizePolicy", "restartPolicy", "image"] {
                assert_eq!(c.get(k), now.get(k), "seed {seed}: {k} of {name:?}");
            }
        }
        for c in containers(after) {
            let mounts = c
                .get("volumeMounts")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            let token = mounts.iter().any(|m| m["name"] == s("rolecall-token"));
            assert!(
                !token || c["name"] == s("rolecall"),
                "seed {seed}: {:?} mounts the token",
                c["name"]
            );
        }
    }
}
