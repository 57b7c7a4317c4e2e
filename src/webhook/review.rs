//! One `AdmissionReview` (v1) in, its answer out: pure, no I/O.
//!
//! The body is parsed by serde_json into a `serde_yaml_ng::Value` (a value,
//! never a typed struct, and one whose mappings keep the pod's key order),
//! the pod handed to [`crate::inject::inject`] as `rolecall inject` hands
//! it, and the answer is the JSON Patch from the pod to the injected pod.
//! Only a Pod's CREATE is mutated; anything else the webhook is sent is
//! allowed unchanged. A pod whose `rolecall.dev/` annotations are invalid
//! is refused (`allowed: false`, code 400, every problem): it opted in with
//! the label, and would otherwise start without its credentials.

use base64::Engine;
use serde_json::json;
use serde_yaml_ng::{Mapping, Value};

use super::patch;
use crate::inject;

/// The only `apiVersion` answered.
pub const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// What became of one request (the `outcome` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed, with a patch.
    Injected,
    /// Allowed, nothing to change (not opted in, not a Pod CREATE).
    Unchanged,
    /// Not allowed: the pod's annotations are invalid.
    Refused,
    /// Not an AdmissionReview this webhook answers: an HTTP error.
    Invalid,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Unchanged => "unchanged",
            Outcome::Refused => "refused",
            Outcome::Invalid => "invalid",
        }
    }
}

/// The answer to one request, and what its log line says.
#[derive(Debug)]
pub struct Answer {
    /// 200, or 400 for an invalid request.
    pub status: u16,
    /// JSON (an AdmissionReview) for 200; a text message otherwise.
    pub body: Vec<u8>,
    pub outcome: Outcome,
    /// Why it was refused or invalid (the `reason` label).
    pub reason: Option<&'static str>,
    pub uid: String,
    pub namespace: String,
    /// The pod's name, or its generateName followed by `*`.
    pub pod: String,
    /// The injector's report, or the problems.
    pub message: String,
}

impl Answer {
    fn invalid(reason: &'static str, message: String) -> Answer {
        Answer {
            status: 400,
            body: format!("{message}\n").into_bytes(),
            outcome: Outcome::Invalid,
            reason: Some(reason),
            uid: String::new(),
            namespace: String::new(),
            pod: String::new(),
            message,
        }
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_mapping()?.get(*k))
}

fn get_str<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

/// Answers the AdmissionReview in `body`.
pub fn review(body: &[u8], opts: &inject::Options) -> Answer {
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Mapping(_)) => v,
        Ok(_) => {
            return Answer::invalid("malformed", "the body is not a JSON object".into());
        }
        Err(e) => return Answer::invalid("malformed", format!("the body is not JSON: {e}")),
    };
    let (version, kind) = (get_str(&doc, &["apiVersion"]), get_str(&doc, &["kind"]));
    if version != API_VERSION || kind != KIND {
        return Answer::invalid(
            "version",
            format!(
                "expected apiVersion {API_VERSION} and kind {KIND}, got {:?} and {:?}",
                truncate(version),
                truncate(kind)
            ),
        );
    }
    let Some(uid) = get(&doc, &["request", "uid"]).and_then(Value::as_str) else {
        return Answer::invalid("malformed", "request.uid is missing".into());
    };
    let mut answer = Answer {
        status: 200,
        body: Vec::new(),
        outcome: Outcome::Unchanged,
        reason: None,
        uid: uid.to_owned(),
        namespace: get_str(&doc, &["request", "namespace"]).to_owned(),
        pod: String::new(),
        message: String::new(),
    };
    let pod_create = get_str(&doc, &["request", "kind", "group"]).is_empty()
        && get_str(&doc, &["request", "kind", "kind"]) == "Pod"
        && get_str(&doc, &["request", "operation"]) == "CREATE"
        && get_str(&doc, &["request", "subResource"]).is_empty();
    let response = if !pod_create {
        answer.message = "not a Pod CREATE".into();
        json!({"uid": uid, "allowed": true})
    } else {
        let Some(pod) = get(&doc, &["request", "object"]).filter(|p| p.is_mapping()) else {
            return Answer::invalid("malformed", "request.object is not a Pod".into());
        };
        answer.pod = pod_name(pod);
        let namespace = answer.namespace.clone();
        mutate(pod, &namespace, opts, &mut answer)
    };
    let response = with_uid(response, uid);
    answer.body = json!({"apiVersion": API_VERSION, "kind": KIND, "response": response})
        .to_string()
        .into_bytes();
    answer
}

fn with_uid(mut response: serde_json::Value, uid: &str) -> serde_json::Value {
    response["uid"] = json!(uid);
    response
}

/// The response to a Pod CREATE; sets the answer's outcome and message.
fn mutate(
    pod: &Value,
    namespace: &str,
    opts: &inject::Options,
    answer: &mut Answer,
) -> serde_json::Value {
    let named = in_namespace(pod, namespace);
    match inject::inject(&named, opts) {
        Ok(done) => {
            answer.message = done.report.join("; ");
            let ops = patch::diff(&named, &done.value);
            if ops.is_empty() {
                return json!({"allowed": true});
            }
            answer.outcome = Outcome::Injected;
            let bytes = serde_json::to_vec(&ops).expect("a patch of JSON values is JSON");
            let patch = base64::engine::general_purpose::STANDARD.encode(bytes);
            json!({"allowed": true, "patchType": "JSONPatch", "patch": patch})
        }
        Err(problems) => {
            answer.outcome = Outcome::Refused;
            answer.reason = Some("annotations");
            answer.message = problems.join("; ");
            json!({
                "allowed": false,
                "status": {"code": 400, "reason": "BadRequest", "message": answer.message},
            })
        }
    }
}

/// The pod with `metadata.namespace` set from the request when it has
/// none (a CREATE's object often has none), so that messages name it.
/// The diff is taken from this value: the namespace is never patched.
fn in_namespace(pod: &Value, namespace: &str) -> Value {
    let mut pod = pod.clone();
    if namespace.is_empty() {
        return pod;
    }
    if let Some(Value::Mapping(meta)) = pod.as_mapping_mut().and_then(|p| p.get_mut("metadata"))
        && !meta.contains_key("namespace")
    {
        meta.insert("namespace".into(), Value::String(namespace.to_owned()));
    }
    pod
}

fn pod_name(pod: &Value) -> String {
    let meta = get(pod, &["metadata"]).and_then(Value::as_mapping);
    let s = |m: &Mapping, k: &str| m.get(k).and_then(Value::as_str).map(String::from);
    match meta {
        Some(m) => s(m, "name")
            .or_else(|| s(m, "generateName").map(|g| format!("{g}*")))
            .unwrap_or_default(),
        None => String::new(),
    }
}

/// At most 64 characters of a value quoted back in a message.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests;
