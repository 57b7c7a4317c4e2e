//! Loading from the configuration file: YAML shapes, limits, hostile input.

use std::time::Duration;

use super::*;
use crate::sys::yaml::{Shape, measure};

#[test]
fn the_yaml_example_from_the_spec_loads_with_per_profile_overrides() {
    let (_f, fl) = yaml(
        r#"
token_file: /var/run/secrets/eks.amazonaws.com/serviceaccount/token
output_dir: /aws
region: eu-west-1
duration_seconds: 3600
profiles:
  reader:
    role_arn: arn:aws:iam::111122223333:role/reader
  writer:
    role_arn: arn:aws:iam::111122223333:role/writer
    duration_seconds: 900
    region: us-east-1
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}'
    policy_arns: [arn:aws:iam::aws:policy/ReadOnlyAccess]
  audit:
    role_arn: arn:aws:iam::444455556666:role/audit
    source_profile: reader
    external_id: example
"#,
    );
    let c = Config::load(&fl, &Env::new()).unwrap();
    let names: Vec<_> = c.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["audit", "reader", "writer"]);
    let w = c.profile("writer").unwrap();
    assert_eq!(w.duration, Duration::from_secs(900));
    assert_eq!(w.region.as_deref(), Some("us-east-1"));
    assert_eq!(w.policy_arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
    assert!(w.policy.as_deref().unwrap().starts_with("{\"Statement\""));
    let a = c.profile("audit").unwrap();
    assert_eq!(a.source_profile.as_deref(), Some("reader"));
    assert_eq!(a.external_id.as_deref(), Some("example"));
    assert_eq!(a.account(), "444455556666");
    assert_eq!(
        c.profile("reader").unwrap().region.as_deref(),
        Some("eu-west-1")
    );
}

#[test]
fn yaml_unknown_keys_wrong_types_and_duplicates_are_errors_with_paths() {
    let (f, fl) = yaml(&format!(
        "region: eu-west-1\nregoin: typo\nhealth_addr: [1, 2]\nprofiles:\n  reader:\n    role_arn: {ARN_A}\n    durations: 900\n    policy_arns: nope\n"
    ));
    let p = problems(Config::load(&fl, &Env::new()));
    let file = f.path().display().to_string();
    assert!(
        has(&p, &format!("{file}: regoin"), "unknown key `regoin`"),
        "{p:#?}"
    );
    assert!(
        has(&p, &format!("{file}: health_addr"), "found a list"),
        "{p:#?}"
    );
    assert!(
        has(&p, "profiles.reader.durations", "unknown key"),
        "{p:#?}"
    );
    assert!(
        has(&p, "profiles.reader.policy_arns", "list of policy ARNs"),
        "{p:#?}"
    );

    let (_f, fl) = yaml(&format!(
        "profiles:\n  a:\n    role_arn: {ARN_A}\n  a:\n    role_arn: {ARN_B}\n"
    ));
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(p.iter().any(|p| p.message.contains("duplicate")), "{p:#?}");
}

#[test]
fn hostile_yaml_is_an_error_not_a_panic() {
    for text in [
        &b"a: \xff\xfe"[..],
        "a: [".repeat(500).as_bytes(),
        b"- just\n- a list\n",
        b"profiles: {reader: {role_arn: !!binary aGVsbG8=}}\n",
        b"\0\0\0",
    ] {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        let fl = Flags {
            config: Some(f.path().to_owned()),
            ..Flags::default()
        };
        assert!(Config::load(&fl, &Env::new()).is_err());
    }
    let fl = Flags {
        config: Some("/does/not/exist.yaml".into()),
        ..Flags::default()
    };
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(has(&p, "/does/not/exist.yaml", "cannot read"), "{p:#?}");
}

#[test]
fn file_mode_accepts_octal_text_and_yaml_octal_numbers() {
    let (_f, fl) = yaml(&format!(
        "region: r1\nfile_mode: \"0600\"\nprofiles: {{a: '{ARN_A}'}}\n"
    ));
    assert_eq!(Config::load(&fl, &Env::new()).unwrap().file_mode, 0o600);
    let (_f, fl) = yaml(&format!(
        "region: r1\nfile_mode: 0o440\nprofiles: {{a: '{ARN_A}'}}\n"
    ));
    assert_eq!(Config::load(&fl, &Env::new()).unwrap().file_mode, 0o440);
    let (_f, fl) = yaml(&format!(
        "region: r1\nfile_mode: 640\nprofiles: {{a: '{ARN_A}'}}\n"
    ));
    assert!(
        Config::load(&fl, &Env::new()).is_err(),
        "decimal 640 is not a mode"
    );
}

fn shape(text: &str) -> Shape {
    measure(text.as_bytes(), MAX_CONFIG_DEPTH, MAX_CONFIG_NODES).expect("the parser starts")
}

#[test]
fn the_measure_counts_levels_as_the_parser_reads_them() {
    let nest = |n: usize| format!("a: {}{}\n", "[".repeat(n - 1), "]".repeat(n - 1));
    assert_eq!(shape(""), Shape::Fits);
    assert_eq!(shape(&nest(MAX_CONFIG_DEPTH)), Shape::Fits);
    assert_eq!(shape(&nest(MAX_CONFIG_DEPTH + 1)), Shape::TooDeep);
    let block: String = (0..MAX_CONFIG_DEPTH + 1)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    assert_eq!(shape(&block), Shape::TooDeep);
    assert_eq!(
        shape(&format!("a:\n  {}x\n", "- ".repeat(40))),
        Shape::TooDeep
    );
    // Brackets in quotes, comments and block scalars are text: the parser
    // says so, not a guess.
    let text = format!(
        "a: '{b}' # {b}\nb: \"{b}\"\np: |\n  {b}\nq: a:'b\nr: x{b}\n",
        b = "[".repeat(100)
    );
    assert_eq!(shape(&text), Shape::Fits);
    // An apostrophe inside a plain scalar opens no quote (issue 20): the
    // brackets after it nest, and the walk stops at the limit, however
    // many follow.
    let after_apostrophe = |n: usize| format!("x: a:'b\ny: {}{}\n", "[".repeat(n), "]".repeat(n));
    assert_eq!(shape(&after_apostrophe(100)), Shape::TooDeep);
    // 120,000 levels: serde_yaml_ng alone parses them in minutes.
    assert_eq!(shape(&after_apostrophe(120_000)), Shape::TooDeep);
    // An alias nests what it names where it stands.
    let anchored = format!("a: &x {}{}\n", "[".repeat(20), "]".repeat(20));
    assert_eq!(shape(&format!("{anchored}b: [[[[*x]]]]\n")), Shape::Fits);
    assert_eq!(
        shape(&format!(
            "{anchored}b: {}*x{}\n",
            "[".repeat(12),
            "]".repeat(12)
        )),
        Shape::TooDeep
    );
}

#[test]
fn the_measure_counts_every_value_an_alias_repeats() {
    assert_eq!(shape("a: &x [1, 2, 3]\nb: [*x, *x]\n"), Shape::Fits);
    // Issue 20's bomb: 40,000 aliases to one 60,000-element anchor, 243 KiB.
    let bomb = format!(
        "a: &a [{}]\nb: [{}]\n",
        vec!["1"; 60_000].join(","),
        vec!["*a"; 40_000].join(",")
    );
    assert!(bomb.len() as u64 <= MAX_CONFIG_BYTES, "{}", bomb.len());
    assert_eq!(shape(&bomb), Shape::TooMany);
    // Aliases of aliases: 9 levels of 9 (387M values).
    let mut nested = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        nested += &format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(", ")
        );
    }
    assert_eq!(shape(&nested), Shape::TooMany);
    // Without aliases, as many values as the limit allows.
    let many = format!(
        "a: [{}]\n",
        vec!["1"; MAX_CONFIG_NODES as usize - 3].join(",")
    );
    assert_eq!(shape(&many), Shape::Fits);
    let more = format!("a: [{}]\n", vec!["1"; MAX_CONFIG_NODES as usize].join(","));
    assert_eq!(shape(&more), Shape::TooMany);
    // A syntax error is serde_yaml_ng's to report.
    assert_eq!(shape("a: [1,\n"), Shape::Fits);
}

#[test]
fn a_deep_huge_or_expanding_file_is_refused_before_loading_and_the_spec_example_is_not() {
    let name = Path::new("/etc/rolecall.yaml");
    let deep = format!(
        "region: r1\nprofiles: {{a: '{ARN_A}', b: {}{}}}\n",
        "[".repeat(MAX_CONFIG_DEPTH),
        "]".repeat(MAX_CONFIG_DEPTH)
    );
    let p = problems(Config::load_text(
        &Flags::default(),
        &Env::new(),
        name,
        deep.as_bytes(),
    ));
    assert!(
        has(&p, "/etc/rolecall.yaml", "nests deeper than 32"),
        "{p:#?}"
    );
    let huge = format!(
        "{}region: r1\nprofiles: {{a: '{ARN_A}'}}\n",
        "#\n".repeat(MAX_CONFIG_BYTES as usize / 2)
    );
    let p = problems(Config::load_text(
        &Flags::default(),
        &Env::new(),
        name,
        huge.as_bytes(),
    ));
    assert!(
        has(&p, "/etc/rolecall.yaml", "larger than 256 KiB"),
        "{p:#?}"
    );
    let bomb = format!(
        "region: r1\nprofiles: {{a: '{ARN_A}'}}\nx: &a [{}]\ny: [{}]\n",
        vec!["1"; 60_000].join(","),
        vec!["*a"; 40_000].join(",")
    );
    let p = problems(Config::load_text(
        &Flags::default(),
        &Env::new(),
        name,
        bomb.as_bytes(),
    ));
    assert!(
        has(&p, "/etc/rolecall.yaml", "holds more than 100000 values"),
        "{p:#?}"
    );
    // Just inside the limits, it parses.
    let ok = format!(
        "region: r1\nprofiles: {{a: '{ARN_A}'}}\n# {}\n",
        "[".repeat(10_000)
    );
    assert!(Config::load_text(&Flags::default(), &Env::new(), name, ok.as_bytes()).is_ok());
}

#[test]
fn a_fifo_at_the_config_path_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rolecall.yaml");
    crate::sys::mkfifo(&p, 0o600).unwrap();
    let fl = Flags {
        config: Some(p.clone()),
        ..flags(&[&format!("a={ARN_A}")])
    };
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(has(&p, "rolecall.yaml", "not a regular file"), "{p:#?}");
}
