//! Loading from the configuration file: YAML shapes, limits, hostile input.

use super::*;
use crate::config::yaml::nesting_depth;

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

fn depth(text: &str) -> usize {
    nesting_depth(text.as_bytes())
}

#[test]
fn the_nesting_prescan_counts_flow_block_and_entry_levels() {
    assert_eq!(depth(""), 0);
    assert_eq!(depth("a: 1\n"), 1);
    assert_eq!(depth("profiles:\n  reader:\n    role_arn: x\n"), 3);
    assert_eq!(depth("profiles: {a: {b: [1, 2]}}\n"), 4);
    assert_eq!(depth("a:\n  - - - x\n"), 5);
    // Brackets in quotes and comments are text.
    assert_eq!(depth("a: '[[[[' # {{{{\nb: \"{{\\\"[[\"\n"), 1);
    // A block scalar's lines are text, however they are indented.
    let policy = "p:\n  policy: |\n    {\n      \"a\": [\n        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n    ]}\nq: 1\n";
    assert_eq!(depth(policy), 2);
    // Flow that spans lines keeps counting.
    assert_eq!(depth("a: [\n [\n  [1]]]\n"), 4);
    let deep_flow = format!("a: {}{}", "[".repeat(100), "]".repeat(100));
    assert_eq!(depth(&deep_flow), 101);
    let deep_block: String = (0..40).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    assert_eq!(depth(&deep_block), 40);
}

#[test]
fn a_deep_or_huge_file_is_refused_before_parsing_and_the_spec_example_is_not() {
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
    // Just inside both limits, it parses.
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
