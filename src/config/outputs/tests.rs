//! The output sets' checks: set names, layout changes, and every problem
//! of a configuration's `outputs`, through [`Config::load_text`].

use std::path::Path;

use super::*;
use crate::config::{Config, ConfigError, Env, Flags};

#[test]
fn set_names_are_container_name_like_labels() {
    for ok in ["app", "a", "log-shipper", "a1", &"a".repeat(63)] {
        assert!(valid_set_name(ok), "{ok}");
    }
    for bad in ["", "App", "-a", "a-", "a_b", "a.b", "é", &"a".repeat(64)] {
        assert!(!valid_set_name(bad), "{bad}");
    }
}

#[test]
fn a_layout_change_is_names_dirs_app_dirs_or_tokens_but_not_membership() {
    let set = |name: &str, dir: &str, profiles: &[&str]| OutputSet {
        name: name.into(),
        dir: dir.into(),
        app_dir: dir.into(),
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        endpoint_token_file: None,
    };
    let old = [set("a", "/a", &["x"]), set("b", "/b", &["y"])];
    assert!(!layout_changed(
        &old,
        &[set("a", "/a", &["y"]), set("b", "/b", &["x", "y"])]
    ));
    assert!(layout_changed(&old, &[set("a", "/a", &["x"])]));
    assert!(layout_changed(
        &old,
        &[set("a", "/a", &["x"]), set("b", "/c", &["y"])]
    ));
    let mut token = old.clone();
    token[1].endpoint_token_file = Some("/t".into());
    assert!(layout_changed(&old, &token));
}

const PROFILES: &str = "region: eu-west-1
profiles:
  reader: arn:aws:iam::111122223333:role/reader
  writer: arn:aws:iam::111122223333:role/writer
  logs: arn:aws:iam::111122223333:role/logs
";

fn load(yaml: &str) -> Result<Config, ConfigError> {
    load_with(&Flags::default(), yaml)
}

fn load_with(flags: &Flags, yaml: &str) -> Result<Config, ConfigError> {
    Config::load_text(flags, &Env::new(), Path::new("/c.yaml"), yaml.as_bytes())
}

fn lines(e: ConfigError) -> Vec<String> {
    e.problems
        .iter()
        .map(|p| format!("{}: {}", p.origin, p.message))
        .collect()
}

#[test]
fn without_outputs_one_default_set_holds_every_profile_in_the_output_dir() {
    let c = load(&format!("output_dir: /out\n{PROFILES}")).unwrap();
    assert!(!c.declared_sets());
    assert_eq!(c.outputs.len(), 1);
    let s = &c.outputs[0];
    assert_eq!(s.name, super::DEFAULT_SET);
    assert_eq!(
        (s.dir.to_str(), s.app_dir.to_str()),
        (Some("/out"), Some("/out"))
    );
    assert_eq!(s.profiles, ["logs", "reader", "writer"]);
    assert_eq!(s.endpoint_token_file, None);
}

#[test]
fn declared_sets_are_sorted_with_sorted_profiles_and_app_dir_defaulting_to_dir() {
    let c = load(&format!(
        "{PROFILES}outputs:
  shipper: {{ dir: /aws/shipper/, profiles: [logs], app_dir: /aws }}
  app: {{ dir: /aws/app, profiles: [writer, reader] }}
"
    ))
    .unwrap();
    assert!(c.declared_sets());
    let names: Vec<_> = c.outputs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app", "shipper"]);
    assert_eq!(c.outputs[0].profiles, ["reader", "writer"]);
    assert_eq!(c.outputs[0].app_dir, Path::new("/aws/app"));
    assert_eq!(c.outputs[1].dir, Path::new("/aws/shipper"));
    assert_eq!(c.outputs[1].app_dir, Path::new("/aws"));
    assert!(
        c.output_set("app")
            .unwrap()
            .profiles
            .contains(&"writer".into())
    );
}

#[test]
fn a_profile_may_be_in_several_sets() {
    let c = load(&format!(
        "{PROFILES}outputs:
  a: {{ dir: /a, profiles: [reader, logs] }}
  b: {{ dir: /b, profiles: [writer, logs] }}
"
    ))
    .unwrap();
    assert!(
        c.outputs
            .iter()
            .all(|s| s.profiles.contains(&"logs".into()))
    );
}

#[test]
fn every_problem_of_the_sets_is_listed_at_once_with_its_path() {
    let e = load(&format!(
        "{PROFILES}outputs:
  App: {{ dir: /x, profiles: [reader] }}
  a: {{ dir: relative, profiles: [reader, nope, reader] }}
  b: {{ dir: /aws, profiles: [] }}
  c: {{ dir: /aws/c, profiles: [reader], colour: blue }}
  d: {{ dir: /aws, profiles: [reader] }}
  e: {{ profiles: [reader] }}
  f: {{ dir: /f }}
"
    ))
    .unwrap_err();
    let l = lines(e);
    let has = |origin: &str, text: &str| {
        assert!(
            l.iter().any(|x| x.starts_with(origin) && x.contains(text)),
            "{origin} / {text}: {l:#?}"
        )
    };
    has("/c.yaml: outputs.App:", "not a valid set name");
    has("/c.yaml: outputs.a.dir:", "absolute path");
    has(
        "/c.yaml: outputs.a.profiles[1]:",
        "unknown profile \"nope\"",
    );
    has("/c.yaml: outputs.a.profiles[2]:", "listed twice");
    has("/c.yaml: outputs.b.profiles:", "is empty");
    has("/c.yaml: outputs.c.colour:", "unknown key `colour`");
    has("/c.yaml: outputs.c.dir:", "inside set b's dir /aws");
    has("/c.yaml: outputs.d.dir:", "set b has the same dir");
    has("/c.yaml: outputs.e:", "has no dir");
    has("/c.yaml: outputs.f:", "has no profiles");
    has("/c.yaml: profiles.writer:", "in no output set");
    has("/c.yaml: profiles.logs:", "in no output set");
}

#[test]
fn an_empty_outputs_map_is_an_error() {
    let l = lines(load(&format!("{PROFILES}outputs: {{}}\n")).unwrap_err());
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with("/c.yaml: outputs: declares no output set"),
        "{l:?}"
    );
}

#[test]
fn outputs_with_an_explicit_output_dir_app_dir_or_token_file_is_an_error() {
    let sets = "outputs:\n  a: { dir: /a, profiles: [reader, writer, logs] }\n";
    let l = lines(
            load(&format!(
                "output_dir: /aws\napp_output_dir: /app\nendpoint_addr: 127.0.0.1:9912\n{PROFILES}{sets}"
            ))
            .unwrap_err(),
        );
    assert!(
        l.iter()
            .any(|x| x.starts_with("/c.yaml: output_dir:") && x.contains("remove output_dir")),
        "{l:?}"
    );
    assert!(
        l.iter().any(|x| x.starts_with("/c.yaml: app_output_dir:")),
        "{l:?}"
    );
    let flags = Flags {
        output_dir: Some("/flag".into()),
        ..Flags::default()
    };
    let l = lines(load_with(&flags, &format!("{PROFILES}{sets}")).unwrap_err());
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("--output-dir"), "{l:?}");
}

#[test]
fn per_set_token_files_are_checked_like_the_global_one_and_must_differ() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "t".repeat(40)).unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "tiny").unwrap();
    let yaml = format!(
        "endpoint_addr: 127.0.0.1:9912\n{PROFILES}outputs:
  a: {{ dir: /a, profiles: [reader], endpoint_token_file: {g} }}
  b: {{ dir: /b, profiles: [writer], endpoint_token_file: {g} }}
  c: {{ dir: /c, profiles: [logs], endpoint_token_file: {s} }}
",
        g = good.display(),
        s = short.display()
    );
    let l = lines(load(&yaml).unwrap_err());
    assert_eq!(l.len(), 2, "{l:#?}");
    assert!(
        l[0].starts_with("/c.yaml: outputs.b.endpoint_token_file:")
            && l[0].contains("same token file")
    );
    assert!(
        l[1].starts_with("/c.yaml: outputs.c.endpoint_token_file:")
            && l[1].contains("4 characters long")
    );
    let no_endpoint = yaml.replace("endpoint_addr: 127.0.0.1:9912\n", "");
    let l = lines(load(&no_endpoint).unwrap_err());
    assert!(
        l.iter()
            .all(|x| !x.contains("same token") || x.contains("set a")),
        "{l:?}"
    );
    assert!(l.iter().any(|x| x.contains("set endpoint_addr")), "{l:?}");
}

#[test]
fn a_layout_change_needs_a_restart_but_membership_does_not() {
    let base = format!(
        "{PROFILES}outputs:\n  a: {{ dir: /a, profiles: [reader, writer] }}\n  b: {{ dir: /b, profiles: [logs] }}\n"
    );
    let old = load(&base).unwrap();
    let moved = load(
        &base
            .replace("[reader, writer]", "[reader]")
            .replace("[logs]", "[logs, writer]"),
    )
    .unwrap();
    assert!(Config::restart_needed(&old, &moved).is_empty());
    let redir = load(&base.replace("dir: /b", "dir: /c")).unwrap();
    assert_eq!(Config::restart_needed(&old, &redir), ["outputs"]);
    let plain = load(&format!("output_dir: /elsewhere\n{PROFILES}")).unwrap();
    let plain2 = load(&format!("output_dir: /x\n{PROFILES}")).unwrap();
    assert_eq!(
        Config::restart_needed(&plain, &plain2),
        ["output_dir"],
        "the default set is output_dir"
    );
}
