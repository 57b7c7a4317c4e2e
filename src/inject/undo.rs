//! `uninject`: removes exactly what the status annotation records, leaving
//! the template as it was before injection.

use serde_yaml_ng::{Mapping, Value};

use super::CONTAINER;
use super::keys::{RENDERED, STATUS};
use super::pod::{EKS_SKIP, Status, container_mut};
use super::value::{drop_if_empty, get_map, get_map_mut, name_of};

/// The status recorded on the template, if it was injected; an error when
/// the annotation is there but is not one.
pub(super) fn status(meta: &Mapping) -> Result<Option<Status>, String> {
    let Some(v) = get_map(meta, "annotations").and_then(|a| a.get(STATUS)) else {
        return Ok(None);
    };
    let parsed = v
        .as_str()
        .and_then(|t| serde_json::from_str::<Status>(t).ok());
    match parsed {
        Some(st) => Ok(Some(st)),
        None => Err(format!(
            "annotation {STATUS} is not the injector's record: remove the injection by hand, then the annotation"
        )),
    }
}

/// Removes what `st` records from the template.
pub(super) fn remove(meta: &mut Mapping, spec: &mut Mapping, st: &Status) {
    let created = |what: &str| st.created.iter().any(|c| c == what);
    if let Some(Value::Sequence(init)) = spec.get_mut("initContainers") {
        init.retain(|c| name_of(c) != Some(CONTAINER));
    }
    if created("initContainers") {
        drop_if_empty(spec, "initContainers");
    }
    if let Some(Value::Sequence(vols)) = spec.get_mut("volumes") {
        vols.retain(|v| !name_of(v).is_some_and(|n| st.volumes.iter().any(|o| o == n)));
    }
    if created("volumes") {
        drop_if_empty(spec, "volumes");
    }
    for name in &st.containers {
        let Some(c) = container_mut(spec, name) else {
            continue;
        };
        let env = st.env.get(name).map_or(&[][..], Vec::as_slice);
        retain(c, "env", |e| {
            !name_of(e).is_some_and(|n| env.iter().any(|x| x == n))
        });
        if created(&format!("env:{name}")) {
            drop_if_empty(c, "env");
        }
        let mounts = st.mounts.get(name).map_or(&[][..], Vec::as_slice);
        retain(c, "volumeMounts", |m| {
            !name_of(m).is_some_and(|n| mounts.iter().any(|x| x == n))
        });
        if created(&format!("volumeMounts:{name}")) {
            drop_if_empty(c, "volumeMounts");
        }
    }
    if st.fs_group
        && let Some(sc) = get_map_mut(spec, "securityContext")
    {
        sc.remove("fsGroup");
    }
    if created("securityContext") {
        drop_if_empty(spec, "securityContext");
    }
    if let Some(ann) = get_map_mut(meta, "annotations") {
        if st.skip_containers {
            ann.remove(EKS_SKIP);
        }
        ann.remove(RENDERED);
        ann.remove(STATUS);
    }
    if created("annotations") {
        drop_if_empty(meta, "annotations");
    }
}

fn retain(c: &mut Mapping, list: &str, keep: impl Fn(&Value) -> bool) {
    if let Some(Value::Sequence(seq)) = c.get_mut(list) {
        seq.retain(keep);
    }
}
