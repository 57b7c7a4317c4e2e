//! Injection: the rolecall sidecar added to a workload from a label and a
//! few `rolecall.dev/` annotations on its pod template (docs/INJECTION.md).
//!
//! The core is pure: [`inject`] and [`uninject`] take one object's value
//! (a Pod, a workload with a pod template, a CronJob, a `List` of them, or
//! any other kind, passed through) and return the new value and a report
//! line per object, or every problem found. Objects are edited as
//! `serde_yaml_ng::Value`s, never as typed structs, so every field this
//! version does not know survives with its order. The command line's
//! reading and writing of files is [`io`]; an admission webhook or a
//! Helm/kustomize wrapper calls the same two functions.
//!
//! - `keys` reads the annotations, each value on its own;
//! - `plan` decides who gets what; `render` writes rolecall's
//!   configuration and validates it with [`crate::config`]'s loader;
//! - `pod` makes the edits and records them in `rolecall.dev/status`;
//!   `undo` removes exactly what that records.

pub mod io;
mod keys;
mod plan;
mod pod;
mod render;
mod sidecar;
mod undo;
mod value;

use serde_yaml_ng::{Mapping, Value};

use value::{get_map, get_seq, get_str, name_of};

/// The prefix of every label and annotation the injector reads.
pub const PREFIX: &str = "rolecall.dev/";
/// The image when neither `rolecall.dev/image` nor `--image` names one:
/// what `images/build-local.sh` builds.
pub const DEFAULT_IMAGE: &str = "localhost/rolecall:dev";
/// The container injection adds.
const CONTAINER: &str = "rolecall";
/// Where each served container reads its credentials.
const APP_DIR: &str = "/aws";
/// rolecall's own token path, apart from the EKS webhook's.
const TOKEN_FILE: &str = "/var/run/secrets/rolecall/serviceaccount/token";
/// The loopback credentials endpoint's port.
const ENDPOINT_PORT: u16 = 9912;
/// Bounds of `rolecall.dev/config`, as the configuration file's.
const MAX_CONFIG_DEPTH: usize = crate::config::MAX_CONFIG_DEPTH;
const MAX_CONFIG_NODES: u64 = crate::config::MAX_CONFIG_NODES;

/// How a served container gets its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Process,
    File,
    Endpoint,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Process => "process",
            Mode::File => "file",
            Mode::Endpoint => "endpoint",
        }
    }
}

/// Choices of whoever runs the injector (not of the object's author).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The image unless the object's `rolecall.dev/image` names one;
    /// `None` for [`DEFAULT_IMAGE`].
    pub image: Option<String>,
}

/// One object after injection or uninjection.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub value: Value,
    /// One line per object (a `List`'s items each), e.g.
    /// `deployment/shop (shop): injected rolecall; app: reader (process)`.
    pub report: Vec<String>,
}

/// Injects rolecall into `obj` (replacing an earlier injection), or says
/// every problem, each naming the object and the annotation.
pub fn inject(obj: &Value, opts: &Options) -> Result<Outcome, Vec<String>> {
    let image = opts.image.as_deref().unwrap_or(DEFAULT_IMAGE);
    each(obj, &|tpl| inject_template(tpl, image))
}

/// Removes what an injection added to `obj`, as its status records.
pub fn uninject(obj: &Value) -> Result<Outcome, Vec<String>> {
    each(obj, &|tpl| {
        let (meta, spec) = parts(tpl);
        let Some(meta) = meta else {
            return Ok("not injected".into());
        };
        match undo::status(meta).map_err(|e| vec![e])? {
            Some(st) => {
                let mut empty = Mapping::new();
                undo::remove(meta, spec.unwrap_or(&mut empty), &st);
                Ok("removed rolecall".into())
            }
            None => Ok("not injected".into()),
        }
    })
}

type Edit<'a> = dyn Fn(&mut Mapping) -> Result<String, Vec<String>> + 'a;

/// Applies `edit` to the pod template of `obj` (of each item of a List).
fn each(obj: &Value, edit: &Edit) -> Result<Outcome, Vec<String>> {
    let mut value = obj.clone();
    let mut report = Vec::new();
    let mut problems = Vec::new();
    object(&mut value, edit, &mut report, &mut problems, 0);
    if problems.is_empty() {
        Ok(Outcome { value, report })
    } else {
        Err(problems)
    }
}

fn object(
    v: &mut Value,
    edit: &Edit,
    report: &mut Vec<String>,
    problems: &mut Vec<String>,
    depth: usize,
) {
    let Some(m) = v.as_mapping_mut() else {
        problems.push("not a Kubernetes object (a mapping with apiVersion and kind)".into());
        return;
    };
    let who = Who::of(m);
    let kind = get_str(m, "kind").unwrap_or("").to_owned();
    let group = get_str(m, "apiVersion").map_or("", |a| a.rsplit_once('/').map_or("", |g| g.0));
    if kind.ends_with("List") && depth == 0 && matches!(m.get("items"), Some(Value::Sequence(_))) {
        if let Some(Value::Sequence(items)) = m.get_mut("items") {
            for item in items {
                object(item, edit, report, problems, depth + 1);
            }
        }
        return;
    }
    let Some(path) = template_path(&kind, group) else {
        let kind = if kind.is_empty() { "no kind" } else { &kind };
        report.push(format!("{}: passed through ({kind})", who.report()));
        return;
    };
    let mut tpl = Some(m);
    for step in path {
        tpl = tpl
            .and_then(|t| t.get_mut(*step))
            .and_then(Value::as_mapping_mut);
    }
    let Some(tpl) = tpl else {
        report.push(format!("{}: skipped (no pod template)", who.report()));
        return;
    };
    match edit(tpl) {
        Ok(what) => report.push(format!("{}: {what}", who.report())),
        Err(ps) => problems.extend(ps.into_iter().map(|p| format!("{}: {p}", who.error()))),
    }
}

/// Where a kind keeps its pod template (`metadata` and `spec`): the
/// object itself for a Pod. Other kinds, and these names in other API
/// groups (a custom resource's `Job`), pass through.
fn template_path(kind: &str, group: &str) -> Option<&'static [&'static str]> {
    const TEMPLATE: &[&str] = &["spec", "template"];
    match (kind, group) {
        ("Pod", "") => Some(&[]),
        ("ReplicationController", "") => Some(TEMPLATE),
        ("Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet", "apps" | "extensions") => {
            Some(TEMPLATE)
        }
        ("Job", "batch") => Some(TEMPLATE),
        ("CronJob", "batch") => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// An object as messages name it.
struct Who {
    name: String,
    namespace: Option<String>,
}

impl Who {
    fn of(m: &Mapping) -> Who {
        let meta = get_map(m, "metadata");
        let name = meta.and_then(|md| get_str(md, "name").map(String::from));
        let name = name
            .or_else(|| meta.and_then(|md| get_str(md, "generateName").map(|g| format!("{g}*"))));
        let kind = get_str(m, "kind").unwrap_or("object").to_lowercase();
        Who {
            name: format!("{kind}/{}", name.as_deref().unwrap_or("(unnamed)")),
            namespace: meta.and_then(|md| get_str(md, "namespace").map(String::from)),
        }
    }

    fn report(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} ({ns})", self.name),
            None => self.name.clone(),
        }
    }

    fn error(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} (namespace {ns})", self.name),
            None => self.name.clone(),
        }
    }
}

/// The template's metadata and spec, both mutable.
fn parts(tpl: &mut Mapping) -> (Option<&mut Mapping>, Option<&mut Mapping>) {
    let (mut meta, mut spec) = (None, None);
    for (k, v) in tpl.iter_mut() {
        match k.as_str() {
            Some("metadata") => meta = v.as_mapping_mut(),
            Some("spec") => spec = v.as_mapping_mut(),
            _ => {}
        }
    }
    (meta, spec)
}

/// Injection into one pod template: an earlier injection removed first,
/// then (if opted in) the annotations read, the plan made and applied.
fn inject_template(tpl: &mut Mapping, image: &str) -> Result<String, Vec<String>> {
    let (meta, spec) = parts(tpl);
    let Some(meta) = meta else {
        return Ok(format!(
            "skipped (no {}: \"true\" label)",
            keys::INJECT_LABEL
        ));
    };
    let on = keys::opted_in(meta);
    let earlier = undo::status(meta).map_err(|e| vec![e])?;
    let mut empty = Mapping::new();
    let spec = match spec {
        Some(spec) => spec,
        None if on == Ok(true) => return Err(vec!["the pod template has no spec".into()]),
        None => &mut empty,
    };
    if let Some(st) = &earlier {
        undo::remove(meta, spec, st);
    }
    if !on? {
        return Ok(match earlier {
            Some(_) => format!(
                "removed rolecall (no {}: \"true\" label)",
                keys::INJECT_LABEL
            ),
            None => format!("skipped (no {}: \"true\" label)", keys::INJECT_LABEL),
        });
    }
    if get_map(meta, "annotations").is_some_and(|a| a.contains_key(keys::RENDERED)) {
        return Err(vec![format!(
            "annotation {} is the injector's own, and no {} says it added it: remove it",
            keys::RENDERED,
            keys::STATUS
        )]);
    }
    let (request, problems) = keys::read(meta);
    if !problems.is_empty() {
        return Err(problems);
    }
    let names = |list: &str| -> Vec<String> {
        get_seq(spec, list)
            .iter()
            .filter_map(name_of)
            .map(String::from)
            .collect()
    };
    let names = plan::Names {
        init: names("initContainers"),
        regular: names("containers"),
    };
    let plan = plan::plan(request, &names, image)?;
    let conflicts = pod::conflicts(meta, spec, &plan);
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    pod::apply(meta, spec, &plan);
    Ok(report(&plan, earlier.is_some()))
}

/// `injected rolecall; app: reader, writer (process); worker: nothing`.
fn report(plan: &plan::Plan, again: bool) -> String {
    let mut parts = vec![if again {
        "re-injected rolecall".to_owned()
    } else {
        "injected rolecall".to_owned()
    }];
    for c in &plan.served {
        let what = match &plan.source {
            plan::Source::ConfigMap(name) => format!("{} from ConfigMap {name}", c.default),
            plan::Source::Rendered(_) => c.profiles.join(", "),
        };
        parts.push(format!("{}: {what} ({})", c.name, c.mode.as_str()));
    }
    for c in &plan.unserved {
        parts.push(format!("{c}: nothing (no {PREFIX}profiles.{c})"));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests;
