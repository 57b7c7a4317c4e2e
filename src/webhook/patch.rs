//! The JSON Patch (RFC 6902) that turns the pod the API server sent into
//! the injected one: objects compared key by key, arrays replaced whole
//! where they differ, keys escaped as RFC 6901 says (`~` → `~0`, `/` →
//! `~1`: annotation keys hold `/`).
//!
//! An `add` appends its key to an object, so a patch applied to the input
//! keeps the injected object's key order (what `rolecall inject` writes)
//! only where the injected object's keys are the input's, in the same
//! order, followed by the added ones. Where they are not (a re-injection
//! that removed and re-added a key), the object is replaced whole: the API
//! server does not care about key order, but the three ways in give the
//! same bytes.

use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

/// One operation of a JSON Patch.
#[derive(Debug, PartialEq, Serialize)]
pub struct Op {
    pub op: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// The operations that turn `old` into `new`; empty when they are equal.
pub fn diff(old: &Value, new: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    walk(old, new, "", &mut ops, true);
    ops
}

/// A key as a JSON Pointer reference token (RFC 6901).
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn walk(old: &Value, new: &Value, path: &str, ops: &mut Vec<Op>, root: bool) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Mapping(a), Value::Mapping(b))
            if string_keys(a) && string_keys(b) && (root || keeps_order(a, b)) =>
        {
            objects(a, b, path, ops);
        }
        _ => ops.push(Op {
            op: "replace",
            path: path.to_owned(),
            value: Some(new.clone()),
        }),
    }
}

fn objects(a: &Mapping, b: &Mapping, path: &str, ops: &mut Vec<Op>) {
    let at = |k: &Value| format!("{path}/{}", escape(k.as_str().unwrap_or_default()));
    for (k, _) in a.iter().filter(|(k, _)| !b.contains_key(*k)) {
        ops.push(Op {
            op: "remove",
            path: at(k),
            value: None,
        });
    }
    for (k, va) in a {
        if let Some(vb) = b.get(k) {
            walk(va, vb, &at(k), ops, false);
        }
    }
    for (k, vb) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
        ops.push(Op {
            op: "add",
            path: at(k),
            value: Some(vb.clone()),
        });
    }
}

fn string_keys(m: &Mapping) -> bool {
    m.keys().all(Value::is_string)
}

/// Whether `b`'s keys are `a`'s keys that `b` kept, in `a`'s order, then
/// the keys `b` added: what removes and appending adds give.
fn keeps_order(a: &Mapping, b: &Mapping) -> bool {
    let kept = a.keys().filter(|k| b.contains_key(*k));
    let mut bk = b.keys();
    for k in kept {
        if bk.next() != Some(k) {
            return false;
        }
    }
    bk.all(|k| !a.contains_key(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn json(ops: &[Op]) -> String {
        serde_json::to_string(ops).unwrap()
    }

    #[test]
    fn equal_values_give_no_operation() {
        let v = yaml("{a: 1, b: [1, {c: d}]}");
        assert!(diff(&v, &v).is_empty());
    }

    #[test]
    fn keys_with_slash_and_tilde_are_escaped() {
        assert_eq!(escape("rolecall.dev/status"), "rolecall.dev~1status");
        assert_eq!(escape("a~/b"), "a~0~1b");
        assert_eq!(escape("~1"), "~01");
        let old = yaml("{metadata: {annotations: {x: y}}}");
        let new = yaml("{metadata: {annotations: {x: y, rolecall.dev/a~b: v}}}");
        assert_eq!(
            json(&diff(&old, &new)),
            r#"[{"op":"add","path":"/metadata/annotations/rolecall.dev~1a~0b","value":"v"}]"#
        );
    }

    #[test]
    fn added_removed_and_changed_keys() {
        let old = yaml("{a: 1, b: 2, c: {d: 3}}");
        let new = yaml("{a: 1, c: {d: 4}, e: {f: [1]}}");
        assert_eq!(
            json(&diff(&old, &new)),
            r#"[{"op":"remove","path":"/b"},{"op":"replace","path":"/c/d","value":4},{"op":"add","path":"/e","value":{"f":[1]}}]"#
        );
    }

    #[test]
    fn arrays_that_differ_are_replaced_whole() {
        let old = yaml("{spec: {containers: [{name: a}], volumes: [{name: v}]}}");
        let new = yaml("{spec: {containers: [{name: a}], volumes: [{name: v}, {name: w}]}}");
        assert_eq!(
            json(&diff(&old, &new)),
            r#"[{"op":"replace","path":"/spec/volumes","value":[{"name":"v"},{"name":"w"}]}]"#
        );
    }

    #[test]
    fn a_type_change_is_a_replace() {
        let old = yaml("{a: {b: 1}, c: null}");
        let new = yaml("{a: [1], c: {}}");
        assert_eq!(
            json(&diff(&old, &new)),
            r#"[{"op":"replace","path":"/a","value":[1]},{"op":"replace","path":"/c","value":{}}]"#
        );
    }

    #[test]
    fn an_object_whose_keys_moved_is_replaced_whole_but_never_the_root() {
        let old = yaml("{m: {a: 1, b: 2, c: 3}}");
        let new = yaml("{m: {b: 2, c: 3, a: 9}}");
        assert_eq!(
            json(&diff(&old, &new)),
            r#"[{"op":"replace","path":"/m","value":{"b":2,"c":3,"a":9}}]"#
        );
        let old = yaml("{a: 1, b: 2}");
        let new = yaml("{b: 2, a: 3}");
        assert_eq!(
            json(&diff(&old, &new)),
            r#"[{"op":"replace","path":"/a","value":3}]"#
        );
    }

    #[test]
    fn order_is_kept_when_keys_are_removed_and_appended() {
        let a = yaml("{a: 1, b: 2, c: 3}");
        let Value::Mapping(a) = a else { panic!() };
        let Value::Mapping(b) = yaml("{a: 1, c: 3, d: 4, e: 5}") else {
            panic!()
        };
        assert!(keeps_order(&a, &b));
        let Value::Mapping(b) = yaml("{a: 1, d: 4, c: 3}") else {
            panic!()
        };
        assert!(!keeps_order(&a, &b), "an added key before a kept one");
    }
}
