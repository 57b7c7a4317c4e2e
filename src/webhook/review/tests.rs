use base64::Engine;
use serde_yaml_ng::Value;

use super::*;

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod",
 "metadata":{"generateName":"shop-","labels":{"rolecall.dev/inject":"true"},
  "annotations":{"rolecall.dev/region":"eu-west-1",
   "rolecall.dev/role.reader":"arn:aws:iam::111122223333:role/reader"}},
 "spec":{"containers":[{"name":"app","image":"app:1","env":[{"name":"SECRET_ISH","value":"hunter2"}]}]}}"#;

fn request(operation: &str, kind: &str, object: &str) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
        "request":{{"uid":"u-1","kind":{{"group":"","version":"v1","kind":"{kind}"}},
        "namespace":"shop","operation":"{operation}","object":{object}}}}}"#
    )
    .into_bytes()
}

fn answer(body: &[u8]) -> Answer {
    review(body, &inject::Options::default())
}

fn response(a: &Answer) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["apiVersion"], API_VERSION);
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "u-1");
    v["response"].clone()
}

#[test]
fn an_opted_in_pod_create_gets_a_patch_to_the_injected_pod() {
    let a = answer(&request("CREATE", "Pod", POD));
    assert_eq!(
        (a.status, a.outcome, a.reason),
        (200, Outcome::Injected, None)
    );
    assert_eq!(
        (a.uid.as_str(), a.namespace.as_str(), a.pod.as_str()),
        ("u-1", "shop", "shop-*")
    );
    assert!(
        a.message.contains("pod/shop-* (shop): injected rolecall"),
        "{}",
        a.message
    );
    let r = response(&a);
    assert_eq!(
        (r["allowed"].clone(), r["patchType"].clone()),
        (true.into(), "JSONPatch".into())
    );
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().unwrap())
        .unwrap();
    let ops: serde_json::Value = serde_json::from_slice(&patch).unwrap();
    let paths: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/metadata/annotations/rolecall.dev~1status"),
        "{paths:?}"
    );
    assert!(paths.contains(&"/spec/initContainers"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("namespace")), "{paths:?}");
    assert!(!a.message.contains("hunter2"));
}

#[test]
fn a_pod_without_the_label_and_other_requests_pass_unchanged() {
    let plain = POD.replace(r#""rolecall.dev/inject":"true""#, r#""app":"x""#);
    for body in [
        request("CREATE", "Pod", &plain),
        request("UPDATE", "Pod", POD),
        request("DELETE", "Pod", "null"),
        request("CREATE", "ConfigMap", r#"{"kind":"ConfigMap"}"#),
    ] {
        let a = answer(&body);
        assert_eq!((a.status, a.outcome), (200, Outcome::Unchanged));
        let r = response(&a);
        assert_eq!(r["allowed"], true);
        assert!(r.get("patch").is_none() && r.get("patchType").is_none());
    }
}

#[test]
fn invalid_annotations_refuse_the_pod_with_every_problem() {
    let bad = POD
        .replace("rolecall.dev/region", "rolecall.dev/regoin")
        .replace("role/reader", "");
    let a = answer(&request("CREATE", "Pod", &bad));
    assert_eq!(
        (a.status, a.outcome, a.reason),
        (200, Outcome::Refused, Some("annotations"))
    );
    let r = response(&a);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 400);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.contains("pod/shop-* (namespace shop)"), "{message}");
    assert!(message.contains("rolecall.dev/regoin"), "{message}");
    assert_eq!(message, a.message);
}

#[test]
fn requests_that_are_not_admission_reviews_v1_are_invalid() {
    let wrong = String::from_utf8(request("CREATE", "Pod", POD))
        .unwrap()
        .replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
    let no_uid = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#;
    let cases: [(&[u8], &str, &str); 5] = [
        (b"{", "malformed", "not JSON"),
        (b"[1]", "malformed", "not a JSON object"),
        (wrong.as_bytes(), "version", "admission.k8s.io/v1beta1"),
        (no_uid.as_bytes(), "malformed", "request.uid"),
        (
            &request("CREATE", "Pod", "7"),
            "malformed",
            "request.object",
        ),
    ];
    for (body, reason, says) in cases {
        let a = answer(body);
        assert_eq!(
            (a.status, a.outcome, a.reason),
            (400, Outcome::Invalid, Some(reason))
        );
        assert!(a.message.contains(says), "{}", a.message);
    }
}

#[test]
fn the_pod_keeps_its_key_order_through_the_review() {
    let doc: Value = serde_json::from_slice(POD.as_bytes()).unwrap();
    let keys: Vec<&str> = doc
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
}

#[test]
fn an_injected_pod_in_another_key_order_gets_no_patch() {
    // The API server writes a pod's keys in its own order; a reinvocation
    // sends back the injected pod so: same values, nothing to patch.
    let pod: Value = serde_json::from_str(POD).unwrap();
    let injected = inject::inject(&pod, &inject::Options::default())
        .unwrap()
        .value;
    let sorted = serde_json::to_string(&serde_json::to_value(&injected).unwrap()).unwrap();
    assert_ne!(
        sorted,
        serde_json::to_string(&injected).unwrap(),
        "the order differs"
    );
    let a = answer(&request("CREATE", "Pod", &sorted));
    assert_eq!(
        (a.status, a.outcome),
        (200, Outcome::Unchanged),
        "{}",
        a.message
    );
    assert!(a.message.contains("re-injected rolecall"), "{}", a.message);
    assert!(response(&a).get("patch").is_none());
}
