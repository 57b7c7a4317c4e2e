//! Small helpers over `serde_yaml_ng::Value`: the injector reads and edits
//! objects as values, never as typed structs, so that every field it does
//! not know survives with its order.

use serde_yaml_ng::{Mapping, Value};

pub(super) fn key(k: &str) -> Value {
    Value::String(k.to_owned())
}

pub(super) fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

pub(super) fn get_str<'a>(m: &'a Mapping, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

pub(super) fn get_map<'a>(m: &'a Mapping, k: &str) -> Option<&'a Mapping> {
    m.get(k).and_then(Value::as_mapping)
}

pub(super) fn get_map_mut<'a>(m: &'a mut Mapping, k: &str) -> Option<&'a mut Mapping> {
    m.get_mut(k).and_then(Value::as_mapping_mut)
}

pub(super) fn get_seq<'a>(m: &'a Mapping, k: &str) -> &'a [Value] {
    m.get(k)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

/// The sequence at `k`, created (and `created` set) when absent or null.
pub(super) fn seq_mut<'a>(m: &'a mut Mapping, k: &str, created: &mut bool) -> &'a mut Vec<Value> {
    if !matches!(m.get(k), Some(Value::Sequence(_))) {
        *created = true;
        m.insert(key(k), Value::Sequence(Vec::new()));
    }
    match m.get_mut(k) {
        Some(Value::Sequence(seq)) => seq,
        _ => unreachable!("inserted above"),
    }
}

/// The mapping at `k`, created (and `created` set) when absent or null.
pub(super) fn map_mut<'a>(m: &'a mut Mapping, k: &str, created: &mut bool) -> &'a mut Mapping {
    if !matches!(m.get(k), Some(Value::Mapping(_))) {
        *created = true;
        m.insert(key(k), Value::Mapping(Mapping::new()));
    }
    match m.get_mut(k) {
        Some(Value::Mapping(map)) => map,
        _ => unreachable!("inserted above"),
    }
}

/// Removes `k` when it holds an empty sequence or mapping.
pub(super) fn drop_if_empty(m: &mut Mapping, k: &str) {
    let empty = match m.get(k) {
        Some(Value::Sequence(s)) => s.is_empty(),
        Some(Value::Mapping(x)) => x.is_empty(),
        _ => false,
    };
    if empty {
        m.remove(k);
    }
}

/// A mapping built from `(key, value)` pairs, in order.
pub(super) fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (key(k), v)).collect())
}

/// The `name` of a list entry (a container, a volume, an env variable).
pub(super) fn name_of(v: &Value) -> Option<&str> {
    v.as_mapping().and_then(|m| get_str(m, "name"))
}
