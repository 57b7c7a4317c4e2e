use super::checks::check_session_name;
use super::yaml::nesting_depth;
use super::*;

const ARN_A: &str = "arn:aws:iam::111122223333:role/reader";
const ARN_B: &str = "arn:aws:iam::111122223333:role/writer";

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn flags(profiles: &[&str]) -> Flags {
    Flags {
        profiles: profiles.iter().map(|s| s.to_string()).collect(),
        region: Some("eu-west-1".into()),
        ..Flags::default()
    }
}

fn yaml(text: &str) -> (tempfile::NamedTempFile, Flags) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    let flags = Flags {
        config: Some(f.path().to_owned()),
        ..Flags::default()
    };
    (f, flags)
}

fn problems(r: Result<Config, ConfigError>) -> Vec<Problem> {
    r.expect_err("expected a configuration error").problems
}

fn has(problems: &[Problem], origin: &str, needle: &str) -> bool {
    problems
        .iter()
        .any(|p| p.origin.contains(origin) && p.message.contains(needle))
}

#[test]
fn defaults_match_the_spec() {
    let c = Config::load(
        &flags(&[&format!("reader={ARN_A}")]),
        &env(&[("HOSTNAME", "web-7f9c")]),
    )
    .unwrap();
    assert_eq!(c.token_file, PathBuf::from(DEFAULT_TOKEN_FILE));
    assert_eq!(c.output_dir, PathBuf::from("/aws"));
    assert_eq!(c.file_mode, 0o640);
    assert_eq!(c.health_addr, Some("0.0.0.0:9911".parse().unwrap()));
    assert_eq!(c.endpoint_addr, None);
    assert_eq!(c.log_format, LogFormat::Text);
    let p = &c.profiles[0];
    assert_eq!(p.name, "reader");
    assert_eq!(p.duration, Duration::from_secs(3600));
    assert_eq!(p.session_name, "rolecall-web-7f9c");
    assert_eq!(p.credentials, CredentialsMode::File);
    assert_eq!(p.region.as_deref(), Some("eu-west-1"));
}

#[test]
fn the_eks_webhook_variables_give_a_default_profile() {
    let c = Config::load(
        &Flags::default(),
        &env(&[
            ("AWS_ROLE_ARN", ARN_A),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/tok/token"),
            ("AWS_REGION", "us-west-2"),
        ]),
    )
    .unwrap();
    assert_eq!(c.profiles.len(), 1);
    assert_eq!(c.profiles[0].name, "default");
    assert_eq!(c.profiles[0].role_arn, ARN_A);
    assert_eq!(c.token_file, PathBuf::from("/tok/token"));
    assert_eq!(c.profiles[0].region.as_deref(), Some("us-west-2"));
}

#[test]
fn flag_beats_environment_beats_file() {
    let (_f, mut fl) = yaml(&format!(
        "region: ap-south-1\noutput_dir: /from-file\nlog_format: json\nprofiles:\n  reader:\n    role_arn: {ARN_A}\n"
    ));
    let e = env(&[
        ("AWS_REGION", "us-east-2"),
        ("ROLECALL_OUTPUT_DIR", "/from-env"),
    ]);
    let c = Config::load(&fl, &e).unwrap();
    assert_eq!(c.output_dir, PathBuf::from("/from-env"));
    assert_eq!(c.profiles[0].region.as_deref(), Some("us-east-2"));
    assert_eq!(c.log_format, LogFormat::Json);
    fl.region = Some("eu-central-1".into());
    fl.output_dir = Some("/from-flag".into());
    let c = Config::load(&fl, &e).unwrap();
    assert_eq!(c.output_dir, PathBuf::from("/from-flag"));
    assert_eq!(c.profiles[0].region.as_deref(), Some("eu-central-1"));
}

#[test]
fn aws_region_wins_over_aws_default_region_and_sts_endpoint_variables_are_read() {
    let e = env(&[
        ("AWS_DEFAULT_REGION", "us-west-1"),
        ("AWS_REGION", "us-west-2"),
        ("AWS_ENDPOINT_URL", "http://generic:1"),
        ("AWS_ENDPOINT_URL_STS", "http://sts-only:2/"),
        ("ROLECALL_PROFILES", &format!("a={ARN_A},b={ARN_B}")),
    ]);
    let c = Config::load(&Flags::default(), &e).unwrap();
    assert_eq!(c.profiles.len(), 2);
    assert_eq!(c.profiles[0].region.as_deref(), Some("us-west-2"));
    assert_eq!(
        c.profiles[0].sts_endpoint.as_deref(),
        Some("http://sts-only:2")
    );
}

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
fn every_problem_is_reported_at_once_with_where_it_came_from() {
    let fl = Flags {
        profiles: vec!["bad name=notanarn".into(), "noequals".into()],
        duration: Some("5".into()),
        file_mode: Some("999".into()),
        health_addr: Some("nowhere".into()),
        log_format: Some("xml".into()),
        credentials: Some("magic".into()),
        session_name: Some("x".into()),
        ..Flags::default()
    };
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(has(&p, "--profile bad name", "profile name"), "{p:#?}");
    assert!(
        has(&p, "--profile bad name", "not an IAM role ARN"),
        "{p:#?}"
    );
    assert!(has(&p, "--profile noequals", "NAME=ROLE_ARN"), "{p:#?}");
    assert!(has(&p, "--duration", "900 to 43200"), "{p:#?}");
    assert!(has(&p, "--file-mode", "octal"), "{p:#?}");
    assert!(has(&p, "--health-addr", "address"), "{p:#?}");
    assert!(has(&p, "--log-format", "text or json"), "{p:#?}");
    assert!(
        has(&p, "--credentials", "file, process or endpoint"),
        "{p:#?}"
    );
    assert!(has(&p, "--session-name", "2-64"), "{p:#?}");
    assert!(has(&p, "region", "no AWS region"), "{p:#?}");
    let text = ConfigError {
        problems: p.clone(),
    }
    .to_string();
    assert!(text.starts_with(&format!("invalid configuration ({} problems):", p.len())));
}

#[test]
fn a_problem_with_a_shared_default_is_reported_once() {
    let fl = Flags {
        profiles: vec![format!("a={ARN_A}"), format!("b={ARN_B}")],
        region: Some("Not A Region".into()),
        ..Flags::default()
    };
    let p = problems(Config::load(&fl, &Env::new()));
    assert_eq!(
        p.iter().filter(|p| p.origin == "--region").count(),
        1,
        "{p:#?}"
    );
}

#[test]
fn no_profiles_is_an_error_that_says_how_to_add_one() {
    let p = problems(Config::load(&flags(&[]), &Env::new()));
    assert!(has(&p, "profiles", "--profile NAME=ROLE_ARN"), "{p:#?}");
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
fn duplicate_profiles_in_flags_are_errors() {
    let p = problems(Config::load(
        &flags(&[&format!("a={ARN_A}"), &format!("a={ARN_B}")]),
        &Env::new(),
    ));
    assert!(has(&p, "--profile a=", "duplicate profile"), "{p:#?}");
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
fn values_that_could_inject_ini_lines_are_rejected() {
    let fl = Flags {
        profiles: vec![
            format!("ok\n[evil]={ARN_A}"),
            format!("b={ARN_A}\naws_access_key_id=x"),
        ],
        region: Some("eu-west-1\nregion = evil".into()),
        ..Flags::default()
    };
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(
        p.iter().any(|p| p.message.contains("profile name")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|p| p.message.contains("not an IAM role ARN")),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|p| p.message.contains("not an AWS region")),
        "{p:#?}"
    );
    for p in &p {
        assert!(
            !p.message.contains('\n'),
            "problem text must be one line: {p:?}"
        );
    }
}

#[test]
fn role_arns_are_checked_strictly() {
    for ok in [
        ARN_A,
        "arn:aws:iam::111122223333:role/path/to/Name+=,.@-_",
        "arn:aws-cn:iam::111122223333:role/r",
        "arn:aws-us-gov:iam::111122223333:role/r",
    ] {
        assert!(check_role_arn(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "arn:aws:iam::11112222333:role/r",
        "arn:aws:iam::111122223333:user/r",
        "arn:aws:sts::111122223333:role/r",
        "arn:aws:iam:eu-west-1:111122223333:role/r",
        "arn:aws:iam::111122223333:role/",
        "arn:aws:iam::111122223333:role/a b",
    ] {
        assert!(check_role_arn(bad).is_err(), "{bad}");
    }
}

#[test]
fn durations_policies_and_session_names_are_checked_before_any_call() {
    let (_f, fl) = yaml(&format!(
        r#"region: eu-west-1
profiles:
  a:
    role_arn: {ARN_A}
    duration_seconds: 43201
    policy: "not json"
  b:
    role_arn: {ARN_B}
    policy: '{{"x":"{long}"}}'
    role_session_name: "has space"
  c:
    role_arn: {ARN_B}
    source_profile: a
    duration_seconds: 7200
    policy_arns: [arn:aws:iam::aws:policy/ReadOnlyAccess, "arn:aws:s3:::bucket"]
"#,
        long = "y".repeat(2100)
    ));
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(has(&p, "profiles.a.duration_seconds", "43200"), "{p:#?}");
    assert!(has(&p, "profiles.a.policy", "not valid JSON"), "{p:#?}");
    assert!(has(&p, "profiles.b.policy", "2048"), "{p:#?}");
    assert!(has(&p, "profiles.b.role_session_name", "2-64"), "{p:#?}");
    assert!(has(&p, "profiles.c.duration_seconds", "one hour"), "{p:#?}");
    assert!(has(&p, "profiles.c.policy_arns[1]", "policy ARN"), "{p:#?}");
}

#[test]
fn source_profile_cycles_and_unknown_sources_are_errors() {
    let (_f, fl) = yaml(&format!(
        "region: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}', source_profile: b}}\n  b: {{role_arn: '{ARN_B}', source_profile: a}}\n  c: {{role_arn: '{ARN_B}', source_profile: nope}}\n"
    ));
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(
        p.iter().any(|p| p.message.contains("cycle: a -> b -> a")),
        "{p:#?}"
    );
    assert!(
        has(&p, "profiles.c.source_profile", "unknown source_profile"),
        "{p:#?}"
    );
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

#[test]
fn an_empty_health_address_disables_the_listener_and_the_endpoint_must_be_loopback() {
    let e = env(&[("ROLECALL_HEALTH_ADDR", "")]);
    let c = Config::load(&flags(&[&format!("a={ARN_A}")]), &e).unwrap();
    assert_eq!(c.health_addr, None);
    let mut fl = flags(&[&format!("a={ARN_A}")]);
    fl.endpoint_addr = Some("0.0.0.0:9912".into());
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(has(&p, "--endpoint-addr", "loopback"), "{p:#?}");
    fl.endpoint_addr = Some("127.0.0.1:9912".into());
    assert!(Config::load(&fl, &Env::new()).is_ok());
}

#[test]
fn the_default_session_name_is_cleaned_and_bounded() {
    assert_eq!(
        default_session_name(&env(&[("HOSTNAME", "pod:with/odd chars")])),
        "rolecall-pod-with/odd-chars".replace('/', "-")
    );
    let long = "h".repeat(100);
    let n = default_session_name(&env(&[("HOSTNAME", &long)]));
    assert_eq!(n.len(), 64);
    assert!(check_session_name(&n).is_ok());
}

#[test]
fn chained_profiles_cap_an_inherited_duration_at_one_hour() {
    let (_f, fl) = yaml(&format!(
        "region: eu-west-1\nduration_seconds: 7200\nprofiles:\n  a: {{role_arn: '{ARN_A}'}}\n  c: {{role_arn: '{ARN_B}', source_profile: a}}\n"
    ));
    let c = Config::load(&fl, &Env::new()).unwrap();
    assert_eq!(c.profile("a").unwrap().duration, Duration::from_secs(7200));
    assert_eq!(c.profile("c").unwrap().duration, Duration::from_secs(3600));
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
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fl = Flags {
        config: Some(p.clone()),
        ..flags(&[&format!("a={ARN_A}")])
    };
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(has(&p, "rolecall.yaml", "not a regular file"), "{p:#?}");
}

#[test]
fn world_readable_modes_need_the_explicit_option_and_writable_ones_are_refused() {
    let load = |mode: &str, allow: Option<&str>, e: &[(&str, &str)]| {
        let fl = Flags {
            file_mode: Some(mode.into()),
            allow_world_readable: allow.map(Into::into),
            ..flags(&[&format!("a={ARN_A}")])
        };
        Config::load(&fl, &env(e))
    };
    for ok in ["0640", "0600", "0440", "0400", "0750"] {
        assert!(load(ok, None, &[]).is_ok(), "{ok}");
    }
    let p = problems(load("0644", None, &[]));
    assert!(has(&p, "--file-mode", "readable by every user"), "{p:#?}");
    assert!(has(&p, "--file-mode", "--allow-world-readable"), "{p:#?}");
    let c = load("0644", Some("true"), &[]).unwrap();
    assert!(c.allow_world_readable);
    assert_eq!(c.file_mode, 0o644);
    assert!(load("0644", None, &[("ROLECALL_ALLOW_WORLD_READABLE", "true")]).is_ok());
    // flag > env
    assert!(
        load(
            "0644",
            Some("false"),
            &[("ROLECALL_ALLOW_WORLD_READABLE", "true")]
        )
        .is_err()
    );
    for bad in ["0660", "0620", "0602", "0666", "0777"] {
        let p = problems(load(bad, Some("true"), &[]));
        assert!(has(&p, "--file-mode", "writable by"), "{bad}: {p:#?}");
    }
    let p = problems(load("0640", Some("yes"), &[]));
    assert!(has(&p, "--allow-world-readable", "true or false"), "{p:#?}");
    let p = problems(load(
        "0640",
        None,
        &[("ROLECALL_ALLOW_WORLD_READABLE", "1")],
    ));
    assert!(
        has(
            &p,
            "environment ROLECALL_ALLOW_WORLD_READABLE",
            "true or false"
        ),
        "{p:#?}"
    );
    // YAML: a boolean or the same words; the mode's origin is the file's key.
    let (_f, fl) = yaml(&format!(
        "region: r1\nfile_mode: \"0644\"\nallow_world_readable: true\nprofiles: {{a: '{ARN_A}'}}\n"
    ));
    assert!(Config::load(&fl, &Env::new()).unwrap().allow_world_readable);
    let (_f, fl) = yaml(&format!(
        "region: r1\nfile_mode: \"0644\"\nprofiles: {{a: '{ARN_A}'}}\n"
    ));
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(has(&p, ": file_mode", "readable by every user"), "{p:#?}");
    let (_f, fl) = yaml(&format!(
        "region: r1\nallow_world_readable: 2\nprofiles: {{a: '{ARN_A}'}}\n"
    ));
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(has(&p, ": allow_world_readable", "true or false"), "{p:#?}");
}

#[test]
fn endpoint_only_profiles_need_the_endpoint() {
    let mut f = flags(&[&format!("reader={ARN_A}")]);
    f.credentials = Some("endpoint".into());
    let p = problems(Config::load(&f, &Env::new()));
    assert!(
        has(
            &p,
            "--credentials",
            "profile \"reader\" uses credentials: endpoint"
        ) && has(&p, "--credentials", "set endpoint_addr"),
        "{p:?}"
    );
    f.endpoint_addr = Some("127.0.0.1:9912".into());
    let c = Config::load(&f, &Env::new()).unwrap();
    assert_eq!(c.profiles[0].credentials, CredentialsMode::Endpoint);

    let (_file, flags) = yaml(&format!(
        "region: eu-west-1\nprofiles:\n  reader:\n    role_arn: {ARN_A}\n    credentials: endpoint\n  writer:\n    role_arn: {ARN_B}\n"
    ));
    let p = problems(Config::load(&flags, &Env::new()));
    assert!(
        has(&p, "profiles.reader.credentials", "profile \"reader\""),
        "{p:?}"
    );
    assert_eq!(p.len(), 1, "the file-mode profile is fine: {p:?}");
    let mut bad = flags.clone();
    bad.credentials = Some("endpont".into());
    let p = problems(Config::load(&bad, &Env::new()));
    assert!(
        has(&p, "--credentials", "use file, process or endpoint"),
        "{p:?}"
    );
}

#[test]
fn a_supplied_endpoint_token_is_validated_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let good = "g".repeat(40);
    let load = |content: &str, via: &str| {
        std::fs::write(&path, content).unwrap();
        let mut f = flags(&[&format!("reader={ARN_A}")]);
        f.endpoint_addr = Some("127.0.0.1:9912".into());
        let mut e = Env::new();
        match via {
            "flag" => f.endpoint_token_file = Some(path.display().to_string()),
            _ => {
                e.insert(
                    "ROLECALL_ENDPOINT_TOKEN_FILE".into(),
                    path.display().to_string(),
                );
            }
        }
        Config::load(&f, &e)
    };
    let c = load(&format!("{good}\n"), "env").unwrap();
    assert_eq!(c.endpoint_token_file.as_deref(), Some(path.as_path()));
    for (content, via, origin, why) in [
        (
            "short-secret-value",
            "flag",
            "--endpoint-token-file",
            "18 characters long",
        ),
        (
            "first-half-of-the-secret-value\nsecond-half",
            "env",
            "environment ROLECALL_ENDPOINT_TOKEN_FILE",
            "newline inside",
        ),
        (
            "secret-value-with-a-bell-\u{7}-inside-it",
            "flag",
            "--endpoint-token-file",
            "not visible ASCII",
        ),
    ] {
        let p = problems(load(content, via));
        assert!(has(&p, origin, why), "{content:?}: {p:?}");
        let text = ConfigError { problems: p }.to_string();
        assert!(!text.contains("secret"), "the token is never shown: {text}");
    }
    std::fs::remove_file(&path).unwrap();
    let p = problems(load_missing(&path));
    assert!(has(&p, "--endpoint-token-file", "does not exist"), "{p:?}");

    // Only meaningful with the endpoint.
    let mut f = flags(&[&format!("reader={ARN_A}")]);
    f.endpoint_token_file = Some(path.display().to_string());
    let p = problems(Config::load(&f, &Env::new()));
    assert!(
        has(&p, "--endpoint-token-file", "set endpoint_addr"),
        "{p:?}"
    );
    // From the file, with the key path.
    let (_file, flags) = yaml(&format!(
        "region: eu-west-1\nendpoint_token_file: \"\"\nprofiles:\n  reader: {{role_arn: {ARN_A}}}\n"
    ));
    let p = problems(Config::load(&flags, &Env::new()));
    assert!(has(&p, "endpoint_token_file", "non-empty path"), "{p:?}");
}

fn load_missing(path: &Path) -> Result<Config, ConfigError> {
    let mut f = flags(&[&format!("reader={ARN_A}")]);
    f.endpoint_addr = Some("127.0.0.1:9912".into());
    f.endpoint_token_file = Some(path.display().to_string());
    Config::load(&f, &Env::new())
}
