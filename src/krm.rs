//! `rolecall krm`: injection as a KRM function (the KRM Functions
//! Specification, kubernetes-sigs/kustomize
//! cmd/config/docs/api-conventions/functions-spec.md), for kustomize's
//! `transformers:` and kpt: a `ResourceList` on stdin, the same
//! `ResourceList` on stdout with every item injected by [`crate::inject`]
//! and a `results` entry per object (`info`) or per problem (`error`).
//!
//! The input is read with the cap of `rolecall inject`'s inputs and
//! measured ([`crate::sys::yaml::measure`]) before it is parsed. Items are
//! edited as values, so the orchestrator's `config.kubernetes.io/*` and
//! `internal.config.kubernetes.io/*` annotations stay as they came. On any
//! problem the items are written back unchanged with the `error` results,
//! each problem is also said on stderr, and the exit is 64 (the spec asks
//! for a non-zero exit on failure). Input that is not a `ResourceList`
//! gets nothing on stdout.

use serde_yaml_ng::{Mapping, Value};

use crate::inject::io::{Run, documents, read_stdin};
use crate::inject::{self, Options};
/// The ResourceList versions of the specification.
const API_VERSIONS: [&str; 2] = ["config.kubernetes.io/v1", "config.kubernetes.io/v1beta1"];
/// The orchestrator's annotations naming an item's file and its index.
const PATH_ANNOTATION: &str = "internal.config.kubernetes.io/path";
const INDEX_ANNOTATION: &str = "internal.config.kubernetes.io/index";

/// Exit codes: as `rolecall inject`'s.
pub const EXIT_OK: u8 = inject::io::EXIT_OK;
pub const EXIT_INVALID: u8 = inject::io::EXIT_INVALID;
pub const EXIT_UNREADABLE: u8 = inject::io::EXIT_UNREADABLE;

/// Reads stdin (with `rolecall inject`'s cap) and runs the function on it.
pub fn run_stdin() -> Run {
    match read_stdin() {
        Ok(bytes) => run(&bytes),
        Err(why) => refused(EXIT_UNREADABLE, why),
    }
}

/// The function over the bytes of a `ResourceList`.
pub fn run(bytes: &[u8]) -> Run {
    let mut list = match resource_list(bytes) {
        Ok(list) => list,
        Err(why) => return refused(EXIT_INVALID, format!("stdin: {why}")),
    };
    let items = match list.get("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items.clone(),
        Some(_) => return refused(EXIT_INVALID, "stdin: `items` is not a list".into()),
    };
    let (opts, mut problems) = options(list.get("functionConfig"));
    let mut results = Vec::new();
    let mut injected = Vec::with_capacity(items.len());
    for item in &items {
        match inject::inject(item, &opts) {
            Ok(done) => {
                results.extend(done.report.iter().map(|r| result("info", r, item)));
                injected.push(done.value);
            }
            Err(ps) => problems.extend(ps.into_iter().map(|p| (p, Some(item.clone())))),
        }
    }
    let failed = !problems.is_empty();
    if failed {
        results = problems
            .iter()
            .map(|(p, item)| result("error", p, item.as_ref().unwrap_or(&Value::Null)))
            .collect();
        injected = items;
    }
    list.insert("items".into(), Value::Sequence(injected));
    list.insert("results".into(), Value::Sequence(results));
    let stdout = match serde_yaml_ng::to_string(&Value::Mapping(list)) {
        Ok(text) => text,
        Err(e) => return refused(EXIT_INVALID, format!("cannot write YAML: {e}")),
    };
    let code = if failed { EXIT_INVALID } else { EXIT_OK };
    let stderr = problems.into_iter().map(|(p, _)| p).collect();
    Run {
        stdout,
        stderr,
        code,
    }
}

fn refused(code: u8, why: String) -> Run {
    Run {
        stdout: String::new(),
        stderr: vec![why],
        code,
    }
}

/// The one document of the input, a `ResourceList` mapping.
fn resource_list(bytes: &[u8]) -> Result<Mapping, String> {
    let docs = documents(bytes)?;
    let [Value::Mapping(list)] = <[Value; 1]>::try_from(docs).map_err(|docs| {
        format!(
            "a KRM function reads one ResourceList; found {} documents",
            docs.len()
        )
    })?
    else {
        return Err("a KRM function reads one ResourceList; found no mapping".into());
    };
    let api = list.get("apiVersion").and_then(Value::as_str);
    let kind = list.get("kind").and_then(Value::as_str);
    if kind != Some("ResourceList") || !api.is_some_and(|a| API_VERSIONS.contains(&a)) {
        return Err(format!(
            "not a ResourceList (apiVersion {}, kind ResourceList): apiVersion {:?}, kind {:?}",
            API_VERSIONS[0],
            api.unwrap_or(""),
            kind.unwrap_or("")
        ));
    }
    Ok(list)
}

/// The options in the function configuration's `data` (a ConfigMap's
/// shape, whatever its kind): `image`. Any other key is a problem.
fn options(config: Option<&Value>) -> (Options, Vec<(String, Option<Value>)>) {
    let mut opts = Options::default();
    let mut problems = Vec::new();
    let data = config.and_then(|c| c.get("data"));
    let Some(data) = data.filter(|d| !d.is_null()) else {
        return (opts, problems);
    };
    let mut problem =
        |why: String| problems.push((format!("functionConfig: {why}"), config.cloned()));
    let Some(data) = data.as_mapping() else {
        problem("`data` is not a mapping".into());
        return (opts, problems);
    };
    for (key, value) in data {
        match (key.as_str(), value.as_str()) {
            (Some("image"), Some(image)) if !image.trim().is_empty() => {
                opts.image = Some(image.to_owned());
            }
            (Some("image"), _) => problem("data.image: must be a non-empty string".into()),
            (Some(key), _) => problem(format!(
                "data.{}: unknown option (known: image)",
                crate::text::printable(key)
            )),
            (None, _) => problem("data: a key that is not a string".into()),
        }
    }
    (opts, problems)
}

/// A result of the specification: `message`, `severity`, the object's
/// `resourceRef`, and its `file` when the orchestrator named one.
fn result(severity: &str, message: &str, item: &Value) -> Value {
    let mut r = Mapping::new();
    r.insert("message".into(), message.into());
    r.insert("severity".into(), severity.into());
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let meta = item.get("metadata").unwrap_or(&Value::Null);
    let mut reference = Mapping::new();
    for (key, value) in [
        ("apiVersion", field(item, "apiVersion")),
        ("kind", field(item, "kind")),
        ("name", field(meta, "name")),
        ("namespace", field(meta, "namespace")),
    ] {
        if let Some(value) = value {
            reference.insert(key.into(), value.into());
        }
    }
    if reference.contains_key("kind") && reference.contains_key("name") {
        r.insert("resourceRef".into(), Value::Mapping(reference));
    }
    let annotations = meta.get("annotations").unwrap_or(&Value::Null);
    if let Some(path) = field(annotations, PATH_ANNOTATION) {
        let mut file = Mapping::new();
        file.insert("path".into(), path.into());
        let index = field(annotations, INDEX_ANNOTATION).and_then(|i| i.parse::<u64>().ok());
        if let Some(index) = index {
            file.insert("index".into(), index.into());
        }
        r.insert("file".into(), Value::Mapping(file));
    }
    Value::Mapping(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {rolecall.dev/inject: 'true'}\n  annotations:\n    internal.config.kubernetes.io/path: pod.yaml\n    internal.config.kubernetes.io/index: '0'\n    rolecall.dev/region: eu-west-1\n    rolecall.dev/role.reader: arn:aws:iam::111122223333:role/reader\nspec:\n  containers: [{name: app, image: app}]\n";

    fn list(items: &str, config: &str) -> String {
        format!("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\n{config}items:\n{items}")
    }

    fn indented(doc: &str) -> String {
        let mut out = String::new();
        for (i, line) in doc.lines().enumerate() {
            out += if i == 0 { "- " } else { "  " };
            out += line;
            out += "\n";
        }
        out
    }

    #[test]
    fn items_are_injected_with_an_info_result_each() {
        let run = run(list(&indented(POD), "").as_bytes());
        assert_eq!(run.code, EXIT_OK, "{:?}", run.stderr);
        let out: Value = serde_yaml_ng::from_str(&run.stdout).unwrap();
        let pod = &out["items"][0];
        assert_eq!(pod["spec"]["initContainers"][0]["name"], "rolecall");
        assert_eq!(
            pod["metadata"]["annotations"][PATH_ANNOTATION].as_str(),
            Some("pod.yaml")
        );
        assert_eq!(out["results"][0]["severity"], "info");
        assert_eq!(out["results"][0]["file"]["path"], "pod.yaml");
    }

    #[test]
    fn the_function_config_s_image_is_used_and_unknown_keys_refused() {
        let config = "functionConfig:\n  kind: ConfigMap\n  data: {image: r.example/rolecall:1}\n";
        let run1 = run(list(&indented(POD), config).as_bytes());
        assert_eq!(run1.code, EXIT_OK, "{:?}", run1.stderr);
        assert!(run1.stdout.contains("image: r.example/rolecall:1"));
        let config = "functionConfig:\n  kind: ConfigMap\n  data: {imag: x}\n";
        let run2 = run(list(&indented(POD), config).as_bytes());
        assert_eq!(run2.code, EXIT_INVALID);
        assert_eq!(
            run2.stderr,
            ["functionConfig: data.imag: unknown option (known: image)"]
        );
    }

    #[test]
    fn a_problem_keeps_the_items_and_gives_an_error_result() {
        let bad = POD.replace("rolecall.dev/region", "rolecall.dev/regoin");
        let run = run(list(&indented(&bad), "").as_bytes());
        assert_eq!(run.code, EXIT_INVALID);
        let out: Value = serde_yaml_ng::from_str(&run.stdout).unwrap();
        assert!(out["items"][0]["spec"].get("initContainers").is_none());
        let r = &out["results"][0];
        assert_eq!(r["severity"], "error");
        assert_eq!(r["resourceRef"]["kind"], "Pod");
        assert_eq!(r["resourceRef"]["name"], "p");
        assert!(
            r["message"]
                .as_str()
                .unwrap()
                .contains("rolecall.dev/regoin")
        );
        assert_eq!(run.stderr.len(), 1);
    }

    #[test]
    fn input_that_is_not_one_resource_list_gets_nothing_on_stdout() {
        for input in [
            "kind: List\napiVersion: v1\nitems: []\n",
            "a: [",
            "---\nkind: ResourceList\n---\nkind: ResourceList\n",
        ] {
            let run = run(input.as_bytes());
            assert_eq!(run.code, EXIT_INVALID, "{input}");
            assert!(run.stdout.is_empty(), "{input}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(run(deep.as_bytes()).stderr[0].contains("refused before parsing"));
    }
}
