//! Unit tests of the pieces; the whole is tested from the command line
//! (tests/inject.rs, golden files) and by properties
//! (tests/inject_properties.rs).

use serde_yaml_ng::Value;

use super::*;

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn kinds_are_matched_with_their_api_group() {
    assert_eq!(template_path("Pod", ""), Some(&[][..]));
    assert_eq!(
        template_path("Deployment", "apps"),
        Some(&["spec", "template"][..])
    );
    assert_eq!(
        template_path("Job", "batch"),
        Some(&["spec", "template"][..])
    );
    // A custom resource named like a workload is not one.
    assert_eq!(template_path("Job", "batch.volcano.sh"), None);
    assert_eq!(template_path("Deployment", "apps.example.com"), None);
    assert_eq!(template_path("ConfigMap", ""), None);
}

#[test]
fn nearest_names_are_suggested_for_typos() {
    let (_, p) = keys::read(
        yaml("annotations: {rolecall.dev/regoin: eu-west-1, rolecall.dev/profile.app: a}")
            .as_mapping()
            .unwrap(),
    );
    assert!(p[0].contains("did you mean rolecall.dev/region?"), "{p:?}");
    assert!(
        p[1].contains("did you mean rolecall.dev/profiles.app?"),
        "{p:?}"
    );
}

#[test]
fn a_non_string_annotation_is_named_by_its_type_never_its_value() {
    let meta = yaml("annotations: {rolecall.dev/config: {proxy: 'http://u:hunter2@p:3128'}}");
    let (_, p) = keys::read(meta.as_mapping().unwrap());
    assert_eq!(
        p,
        [
            "annotation rolecall.dev/config: must be a string (quote it, or write a block with |), not a mapping"
        ]
    );
}

#[test]
fn quantities_and_numbers_are_checked() {
    let read = |k: &str, v: &str| {
        let meta = yaml(&format!("annotations: {{rolecall.dev/{k}: '{v}'}}"));
        keys::read(meta.as_mapping().unwrap()).1
    };
    for ok in ["5m", "0.5", "16Mi", "1G", "2"] {
        assert!(read("cpu-request", ok).is_empty(), "{ok}");
    }
    for bad in ["", "5mb", ".5", "1..2", "Mi", "-1"] {
        assert_eq!(read("memory-limit", bad).len(), 1, "{bad}");
    }
    assert!(read("token-expiration", "600").is_empty());
    assert_eq!(read("token-expiration", "599").len(), 1);
    assert_eq!(read("health-port", "0").len(), 1);
}

#[test]
fn an_object_that_is_not_a_mapping_is_refused_and_other_kinds_pass() {
    assert!(inject(&yaml("[1, 2]"), &Options::default()).is_err());
    let cm = yaml("{apiVersion: v1, kind: ConfigMap, metadata: {name: x}}");
    let out = inject(&cm, &Options::default()).unwrap();
    assert_eq!(out.value, cm);
    assert_eq!(out.report, ["configmap/x: passed through (ConfigMap)"]);
}

#[test]
fn a_rendered_configuration_without_a_status_is_refused() {
    let pod = yaml(
        "{apiVersion: v1, kind: Pod, metadata: {name: p, labels: {rolecall.dev/inject: 'true'}, annotations: {rolecall.dev/rendered-config: 'x'}}, spec: {containers: [{name: app}]}}",
    );
    let e = inject(&pod, &Options::default()).unwrap_err();
    assert!(e[0].contains("is the injector's own"), "{e:?}");
}
