//! `rolecall inject` and `rolecall uninject`, run as a user runs them.
//!
//! Golden cases: each directory of tests/inject/golden holds `in.yaml`,
//! and either `out.yaml` + `report.txt` (exit 0: stdout and stderr
//! exactly) or `error.txt` (exit 64, nothing on stdout, stderr exactly).
//! An `args` file, if any, holds extra arguments, one a line. With
//! `ROLECALL_BLESS=1` the expected files are rewritten from what the
//! binary printed (review the diff).
#![cfg(feature = "inject")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn rolecall(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolecall"));
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run rolecall");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inject/golden")
}

fn text(o: &[u8]) -> String {
    String::from_utf8(o.to_vec()).unwrap()
}

/// Compares `got` with the file `want`, or rewrites it when blessing;
/// returns a failure line.
fn compare(want: &Path, got: &str) -> Option<String> {
    if std::env::var_os("ROLECALL_BLESS").is_some() {
        std::fs::write(want, got).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(want).unwrap_or_default();
    (expected != got).then(|| {
        format!(
            "{} differs:\n--- want\n{expected}\n--- got\n{got}",
            want.display()
        )
    })
}

fn run_case(dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["inject".into()];
    if let Ok(extra) = std::fs::read_to_string(dir.join("args")) {
        args = extra.lines().map(String::from).collect();
    }
    args.push("-f".into());
    args.push(dir.join("in.yaml").display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = rolecall(&args, None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let stderr = stderr.replace(&format!("{}/", dir.display()), "");
    let mut failures = Vec::new();
    if dir.join("error.txt").exists() {
        if out.status.code() != Some(64) || !stdout.is_empty() {
            failures.push(format!(
                "{}: want exit 64 and no stdout, got {:?} and {} bytes",
                dir.display(),
                out.status.code(),
                stdout.len()
            ));
        }
        failures.extend(compare(&dir.join("error.txt"), &stderr));
    } else {
        if out.status.code() != Some(0) {
            failures.push(format!(
                "{}: exit {:?}: {stderr}",
                dir.display(),
                out.status.code()
            ));
        }
        failures.extend(compare(&dir.join("out.yaml"), &stdout));
        failures.extend(compare(&dir.join("report.txt"), &stderr));
    }
    failures
}

#[test]
fn golden_cases() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("in.yaml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "golden cases: {dirs:?}");
    let failures: Vec<String> = dirs.iter().flat_map(|d| run_case(d)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every injected golden output is a fixed point: injecting it again
/// changes nothing, and uninjecting it gives the input back (as it was
/// before any injection).
#[test]
fn golden_outputs_are_fixed_points_and_uninject_restores_inputs() {
    for e in std::fs::read_dir(golden_dir()).unwrap() {
        let dir = e.unwrap().path();
        let Ok(injected) = std::fs::read(dir.join("out.yaml")) else {
            continue;
        };
        if dir.join("args").exists() {
            continue;
        }
        let again = rolecall(&["inject"], Some(&injected));
        assert_eq!(again.status.code(), Some(0), "{}", dir.display());
        assert_eq!(text(&again.stdout), text(&injected), "{}", dir.display());
        let undone = rolecall(&["uninject", "-f", "-"], Some(&injected));
        assert_eq!(undone.status.code(), Some(0), "{}", dir.display());
        // The input, itself uninjected (the already-injected case).
        let original = rolecall(
            &["uninject", "-f", "-"],
            Some(&std::fs::read(dir.join("in.yaml")).unwrap()),
        )
        .stdout;
        let parse = |b: &[u8]| -> Vec<serde_yaml_ng::Value> {
            use serde::Deserialize;
            serde_yaml_ng::Deserializer::from_slice(b)
                .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
                .filter(|v| !v.is_null())
                .collect()
        };
        assert_eq!(
            parse(&undone.stdout),
            parse(&original),
            "uninject of {}",
            dir.display()
        );
    }
}

#[test]
fn an_unreadable_file_exits_66_with_nothing_on_stdout() {
    let out = rolecall(&["inject", "-f", "/nonexistent/x.yaml"], None);
    assert_eq!(out.status.code(), Some(66));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "rolecall: input file /nonexistent/x.yaml does not exist\n"
    );
}

#[test]
fn a_directory_is_read_sorted_and_only_its_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let pod = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    std::fs::write(dir.path().join("b.yaml"), pod("b")).unwrap();
    std::fs::write(dir.path().join("a.yml"), pod("a")).unwrap();
    std::fs::write(
        dir.path().join("c.json"),
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"c"}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let out = rolecall(&["inject", "-f", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "configmap/a: passed through (ConfigMap)\nconfigmap/b: passed through (ConfigMap)\nsecret/c: passed through (Secret)\n"
    );
    assert_eq!(text(&out.stdout).matches("---\n").count(), 2);
}

#[test]
fn stdin_is_the_default_and_empty_documents_are_dropped() {
    let input = b"---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n---\n";
    let out = rolecall(&["inject"], Some(input));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
    );
}

#[test]
fn a_stream_of_aliases_is_refused_before_it_is_built() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        bomb.push_str(&format!(
            "{}: &{} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
            (b'a' + i) as char,
            (b'a' + i) as char,
            p = (b'a' + i - 1) as char
        ));
    }
    let out = rolecall(&["inject"], Some(bomb.as_bytes()));
    assert_eq!(out.status.code(), Some(64));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("refused before parsing"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn json_input_indented_with_tabs_is_read_in_key_order() {
    let json = b"{\n\t\"kind\": \"ConfigMap\",\n\t\"apiVersion\": \"v1\",\n\t\"metadata\": {\"name\": \"x\"}\n}\n{\"kind\": \"Secret\", \"apiVersion\": \"v1\", \"metadata\": {\"name\": \"y\"}}";
    let out = rolecall(&["inject"], Some(json));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: x\n---\nkind: Secret\napiVersion: v1\nmetadata:\n  name: y\n"
    );
}
