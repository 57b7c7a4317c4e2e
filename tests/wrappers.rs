//! The Helm and kustomize wrappers, run the way each tool runs them; the
//! injected manifests equal `rolecall inject -f` of the same input, byte for
//! byte.
//!
//! - Helm 3 (pkg/postrender/exec.go): `exec.Command(path, args...)` with the
//!   parent's environment, the rendered manifests written to stdin, stdout
//!   read whole; a non-zero exit fails the release with stderr in the error.
//! - Helm 4 (internal/plugin/runtime_subprocess.go, subprocess_commands.go):
//!   the plugin's `platformCommand` for this OS/arch, `command` split on
//!   spaces, `${VAR}` expanded with the environment plus `HELM_PLUGIN_NAME`
//!   and `HELM_PLUGIN_DIR`, then its `args`, then the `--post-renderer-args`;
//!   stdin and stdout as Helm 3.
#![cfg(feature = "inject")]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_yaml_ng::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn chart_output() -> Vec<u8> {
    std::fs::read(repo("tests/inject/golden/helm-chart/in.yaml")).expect("the chart output")
}

/// The chart output with one more object whose annotations have typos.
fn invalid_chart_output() -> Vec<u8> {
    let mut out = chart_output();
    out.extend_from_slice(b"\n---\n");
    out.extend(std::fs::read(repo("tests/inject/golden/error-typo/in.yaml")).expect("typos"));
    out
}

/// `PATH` with this build's `rolecall` first, as an installed binary is.
fn path_with_rolecall() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_rolecall"))
        .parent()
        .expect("the binary's dir")
        .to_owned();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `cmd` with `input` on stdin (written by another thread, as Helm's
/// goroutine does) and stdout/stderr read whole.
fn feed(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("the stdin writer");
    out
}

/// `rolecall inject -f FILE [extra]`: the reference output.
fn inject_file(input: &[u8], extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("in.yaml");
    std::fs::write(&file, input).expect("write the input");
    Command::new(env!("CARGO_BIN_EXE_rolecall"))
        .args(["inject", "-f"])
        .arg(&file)
        .args(extra)
        .output()
        .expect("rolecall inject -f")
}

fn assert_same_stdout(got: &Output, want: &Output) {
    assert!(
        want.status.success(),
        "reference: {}",
        String::from_utf8_lossy(&want.stderr)
    );
    assert!(
        got.status.success(),
        "wrapper: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(!got.stdout.is_empty(), "the wrapper printed nothing");
    assert!(
        got.stdout == want.stdout,
        "stdout differs from `rolecall inject -f`:\n--- wrapper ---\n{}\n--- inject -f ---\n{}",
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&want.stdout)
    );
}

fn assert_refused(got: &Output) {
    assert_eq!(got.status.code(), Some(64), "{got:?}");
    assert!(
        got.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&got.stdout)
    );
    let stderr = String::from_utf8_lossy(&got.stderr);
    assert!(
        stderr.contains("rolecall.dev/default-profle") && stderr.contains("deployment/web"),
        "stderr names the object and the annotation: {stderr}"
    );
}

// ------------------------------------------------------------------ Helm 3

/// Helm 3 `--post-renderer rolecall --post-renderer-args inject [more]`.
fn helm3_exec(binary: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = Command::new(binary);
    cmd.args(args).env("PATH", path_with_rolecall());
    feed(cmd, input)
}

#[test]
fn helm3_post_renderer_args_inject_equals_inject_file() {
    let rolecall = Path::new(env!("CARGO_BIN_EXE_rolecall"));
    let got = helm3_exec(rolecall, &["inject"], &chart_output());
    assert_same_stdout(&got, &inject_file(&chart_output(), &[]));
    let image = ["inject", "--image", "registry.example/rolecall:1.2.3"];
    let got = helm3_exec(rolecall, &image, &chart_output());
    assert_same_stdout(&got, &inject_file(&chart_output(), &image[1..]));
}

#[test]
fn helm3_post_renderer_script_equals_inject_file() {
    let script = repo("examples/helm/post-renderer.sh");
    let got = helm3_exec(&script, &[], &chart_output());
    assert_same_stdout(&got, &inject_file(&chart_output(), &[]));
}

#[test]
fn helm3_post_renderer_with_an_invalid_annotation_fails_with_nothing_on_stdout() {
    let rolecall = Path::new(env!("CARGO_BIN_EXE_rolecall"));
    assert_refused(&helm3_exec(rolecall, &["inject"], &invalid_chart_output()));
    let script = repo("examples/helm/post-renderer.sh");
    assert_refused(&helm3_exec(&script, &[], &invalid_chart_output()));
}

// ------------------------------------------------------------------ Helm 4

/// Go's `os.Expand`: `${NAME}` and `$NAME` replaced by `env[NAME]` (empty
/// when unset).
fn go_expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("a closed ${");
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Go's GOOS/GOARCH for this machine.
fn go_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (std::env::consts::OS, arch)
}

/// Helm 4's getPlatformCommand: exact OS+arch match first, then OS with no
/// arch, then the first entry with neither.
fn platform_command(cmds: &[Value]) -> (Vec<String>, Vec<String>) {
    let (os, arch) = go_platform();
    let field = |c: &Value, k: &str| c[k].as_str().unwrap_or("").to_owned();
    let parts = |c: &Value| {
        let command = field(c, "command");
        let args = c["args"]
            .as_sequence()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().expect("arg").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        (command.split(' ').map(str::to_owned).collect(), args)
    };
    let mut chosen = None;
    let mut found_os = false;
    for c in cmds {
        let (c_os, c_arch) = (field(c, "os"), field(c, "arch"));
        if c_os.eq_ignore_ascii_case(os) && c_arch.eq_ignore_ascii_case(arch) {
            return parts(c);
        }
        if (!c_os.is_empty() && !c_os.eq_ignore_ascii_case(os)) || !c_arch.is_empty() {
            continue;
        }
        if !found_os && !c_os.is_empty() {
            chosen = Some(parts(c));
            found_os = true;
        } else if chosen.is_none() {
            chosen = Some(parts(c));
        }
    }
    chosen.expect("no plugin command is applicable")
}

/// The plugin at `dir` invoked as Helm 4's subprocess runtime invokes a
/// postrenderer/v1 plugin, with `extra_args` from `--post-renderer-args`.
fn helm4_plugin(dir: &Path, extra_args: &[&str], input: &[u8]) -> Output {
    let text = std::fs::read_to_string(dir.join("plugin.yaml")).expect("plugin.yaml");
    let meta: Value = serde_yaml_ng::from_str(&text).expect("plugin.yaml parses");
    assert_eq!(meta["apiVersion"].as_str(), Some("v1"));
    assert_eq!(meta["type"].as_str(), Some("postrenderer/v1"));
    assert_eq!(meta["runtime"].as_str(), Some("subprocess"));
    let name = meta["name"].as_str().expect("name").to_owned();
    assert!(meta["version"].as_str().is_some(), "version");

    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.insert("PATH".into(), path_with_rolecall());
    env.insert("HELM_PLUGIN_NAME".into(), name);
    env.insert("HELM_PLUGIN_DIR".into(), dir.display().to_string());
    let cmds = meta["runtimeConfig"]["platformCommand"]
        .as_sequence()
        .expect("runtimeConfig.platformCommand");
    let (command, args) = platform_command(cmds);
    let main = go_expand(&command[0], &env);
    let mut argv: Vec<String> = command[1..].iter().map(|p| go_expand(p, &env)).collect();
    argv.extend(args.iter().map(|a| go_expand(a, &env)));
    argv.extend(extra_args.iter().map(|a| (*a).to_owned()));

    // exec.Command looks a bare name up in PATH (Helm's own PATH).
    let program = if main.contains('/') {
        PathBuf::from(&main)
    } else {
        env["PATH"]
            .split(':')
            .map(|d| Path::new(d).join(&main))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{main} is not on PATH"))
    };
    let mut cmd = Command::new(program);
    cmd.args(&argv).env_clear().envs(&env);
    feed(cmd, input)
}

#[test]
fn helm4_postrenderer_plugin_equals_inject_file() {
    let plugin = repo("examples/helm/rolecall-plugin");
    let got = helm4_plugin(&plugin, &[], &chart_output());
    assert_same_stdout(&got, &inject_file(&chart_output(), &[]));
    let image = "--image=registry.example/rolecall:1.2.3";
    let got = helm4_plugin(&plugin, &[image], &chart_output());
    assert_same_stdout(&got, &inject_file(&chart_output(), &[image]));
}

#[test]
fn helm4_postrenderer_plugin_with_an_invalid_annotation_fails_with_nothing_on_stdout() {
    let plugin = repo("examples/helm/rolecall-plugin");
    assert_refused(&helm4_plugin(&plugin, &[], &invalid_chart_output()));
}

#[test]
fn go_expand_is_os_expand() {
    let env = BTreeMap::from([("HELM_PLUGIN_DIR".to_owned(), "/p".to_owned())]);
    assert_eq!(go_expand("${HELM_PLUGIN_DIR}/x", &env), "/p/x");
    assert_eq!(go_expand("$HELM_PLUGIN_DIR/x $UNSET.", &env), "/p/x .");
}

// ------------------------------------------------------------------ kustomize

/// The orchestrator's annotations kustomize puts on every item it sends
/// (kyaml's FunctionFilter: the ids; its ByteReader: path and index).
const ORCHESTRATOR: [&str; 6] = [
    "config.kubernetes.io/index",
    "config.kubernetes.io/path",
    "internal.config.kubernetes.io/index",
    "internal.config.kubernetes.io/path",
    "internal.config.kubernetes.io/id",
    "config.k8s.io/id",
];

/// A `config.kubernetes.io/v1` ResourceList as kustomize writes it: the
/// objects of `manifests` with the orchestrator's annotations, and the
/// function configuration.
fn resource_list(manifests: &[u8], function_config: &Value) -> Value {
    let mut items = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_slice(manifests).enumerate() {
        let mut item = <Value as serde::Deserialize>::deserialize(doc).expect("a manifest");
        if item.is_null() {
            continue;
        }
        let meta = item["metadata"].as_mapping_mut().expect("metadata");
        let annotations = meta
            .entry("annotations".into())
            .or_insert_with(|| Value::Mapping(Default::default()))
            .as_mapping_mut()
            .expect("annotations");
        for (key, value) in ORCHESTRATOR.iter().zip([
            i.to_string(),
            "chart.yaml".into(),
            i.to_string(),
            "chart.yaml".into(),
            (i + 1).to_string(),
            (i + 1).to_string(),
        ]) {
            annotations.insert((*key).into(), value.into());
        }
        items.push(item);
    }
    let mut list = serde_yaml_ng::Mapping::new();
    list.insert("apiVersion".into(), "config.kubernetes.io/v1".into());
    list.insert("kind".into(), "ResourceList".into());
    list.insert("items".into(), Value::Sequence(items));
    list.insert("functionConfig".into(), function_config.clone());
    Value::Mapping(list)
}

/// Runs the function as kustomize's exec runtime does: the
/// `config.kubernetes.io/function` annotation's `exec.path` (a bare name is
/// looked up in PATH) with its `args` and `envs`, in the kustomization's
/// directory, the ResourceList on stdin.
fn kustomize_exec(dir: &Path, function_config: &Value, list: &Value) -> Output {
    let spec = function_config["metadata"]["annotations"]["config.kubernetes.io/function"]
        .as_str()
        .expect("the config.kubernetes.io/function annotation");
    let spec: Value = serde_yaml_ng::from_str(spec).expect("the function spec parses");
    let path = spec["exec"]["path"].as_str().expect("exec.path");
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .map(|s| {
                s.iter()
                    .map(|a| a.as_str().expect("a string").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let program = if path.contains('/') {
        dir.join(path)
    } else {
        path_with_rolecall()
            .split(':')
            .map(|d| Path::new(d).join(path))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{path} is not on PATH"))
    };
    let mut cmd = Command::new(program);
    cmd.args(strings(&spec["exec"]["args"]))
        .env("PATH", path_with_rolecall())
        .current_dir(dir);
    for pair in strings(&spec["exec"]["envs"]) {
        let (k, v) = pair.split_once('=').expect("KEY=VALUE");
        cmd.env(k, v);
    }
    feed(
        cmd,
        serde_yaml_ng::to_string(list).expect("yaml").as_bytes(),
    )
}

fn kustomize_example() -> (PathBuf, Value) {
    let dir = repo("examples/kustomize");
    let text = std::fs::read_to_string(dir.join("rolecall.yaml")).expect("rolecall.yaml");
    let kustomization =
        std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization.yaml");
    assert!(
        kustomization.contains("transformers:\n  - rolecall.yaml"),
        "the kustomization names the function config"
    );
    (
        dir,
        serde_yaml_ng::from_str(&text).expect("rolecall.yaml parses"),
    )
}

/// `item` without the orchestrator's annotations (and without an
/// annotations map they alone made).
fn without_orchestrator(item: &Value, had_annotations: bool) -> Value {
    let mut item = item.clone();
    let meta = item["metadata"].as_mapping_mut().expect("metadata");
    let annotations = meta
        .get_mut("annotations")
        .and_then(Value::as_mapping_mut)
        .expect("annotations");
    for key in ORCHESTRATOR {
        annotations.remove(key);
    }
    if annotations.is_empty() && !had_annotations {
        meta.remove("annotations");
    }
    item
}

#[test]
fn kustomize_krm_function_items_equal_inject_output() {
    let (dir, config) = kustomize_example();
    for manifests in [
        chart_output(),
        std::fs::read(dir.join("deployment.yaml")).unwrap(),
    ] {
        let list = resource_list(&manifests, &config);
        let got = kustomize_exec(&dir, &config, &list);
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert!(
            got.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        let out: Value = serde_yaml_ng::from_slice(&got.stdout).expect("a ResourceList");
        assert_eq!(out["kind"], "ResourceList");
        assert_eq!(out["functionConfig"], config);

        let image = config["data"]["image"].as_str().expect("data.image");
        let want = inject_file(&manifests, &["--image", image]);
        assert!(want.status.success());
        let want: Vec<Value> = serde_yaml_ng::Deserializer::from_slice(&want.stdout)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
            .collect();
        let originals: Vec<Value> = serde_yaml_ng::Deserializer::from_slice(&manifests)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect();
        let items = out["items"].as_sequence().expect("items");
        assert_eq!(items.len(), want.len());
        for ((item, want), sent) in items
            .iter()
            .zip(&want)
            .zip(list["items"].as_sequence().unwrap())
        {
            // The orchestrator's annotations come back untouched.
            for key in ORCHESTRATOR {
                assert_eq!(
                    item["metadata"]["annotations"][key],
                    sent["metadata"]["annotations"][key]
                );
            }
            let had = originals.iter().any(|o| {
                o["metadata"]["name"] == item["metadata"]["name"]
                    && o["kind"] == item["kind"]
                    && o["metadata"].get("annotations").is_some()
            });
            assert_eq!(
                &without_orchestrator(item, had),
                want,
                "{:?}",
                item["metadata"]["name"]
            );
        }
        let results = out["results"].as_sequence().expect("results");
        assert_eq!(results.len(), want.len(), "one info result per object");
        assert!(results.iter().all(|r| r["severity"] == "info"));
    }
}

#[test]
fn kustomize_krm_function_with_an_invalid_annotation_gives_results_and_exit_64() {
    let (dir, config) = kustomize_example();
    let list = resource_list(&invalid_chart_output(), &config);
    let got = kustomize_exec(&dir, &config, &list);
    assert_eq!(got.status.code(), Some(64), "{got:?}");
    let stderr = String::from_utf8_lossy(&got.stderr);
    assert!(stderr.contains("rolecall.dev/default-profle"), "{stderr}");
    let out: Value = serde_yaml_ng::from_slice(&got.stdout).expect("a ResourceList");
    assert_eq!(out["items"], list["items"], "the items come back unchanged");
    let results = out["results"].as_sequence().expect("results");
    assert!(!results.is_empty());
    for r in results {
        assert_eq!(r["severity"], "error");
        assert_eq!(r["resourceRef"]["kind"], "Deployment");
        assert_eq!(r["resourceRef"]["name"], "web");
        assert_eq!(r["resourceRef"]["namespace"], "shop");
        assert_eq!(r["file"]["path"], "chart.yaml");
        assert!(r["message"].as_str().unwrap().contains("deployment/web"));
    }
}
