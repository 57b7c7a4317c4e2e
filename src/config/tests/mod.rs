use std::time::Duration;

use super::*;
use crate::aws::check_session_name;

mod aliases;
mod endpoints;
mod file;
mod listeners;
mod network;
mod pod_identity;

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
    assert_eq!(p.credentials, CredentialsMode::Process);
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
fn the_error_lists_each_problem_on_its_own_line_and_counts_them() {
    let problem = |origin: &str| Problem {
        origin: origin.into(),
        message: "bad".into(),
    };
    let one = ConfigError {
        problems: vec![problem("--region")],
    };
    assert_eq!(
        one.to_string(),
        "invalid configuration (1 problem):\n  - --region: bad"
    );
    let two = ConfigError {
        problems: vec![problem("a"), problem("b")],
    };
    assert_eq!(
        two.to_string(),
        "invalid configuration (2 problems):\n  - a: bad\n  - b: bad"
    );
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
fn duplicate_profiles_in_flags_are_errors() {
    let p = problems(Config::load(
        &flags(&[&format!("a={ARN_A}"), &format!("a={ARN_B}")]),
        &Env::new(),
    ));
    assert!(has(&p, "--profile a=", "duplicate profile"), "{p:#?}");
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

#[test]
fn the_same_identity_is_the_same_role_reached_the_same_way_with_the_same_permissions() {
    let a = Profile::new("a", ARN_A);
    let renamed = Profile {
        name: "b".into(),
        region: Some("us-east-1".into()),
        duration: Duration::from_secs(900),
        session_name: "other".into(),
        credentials: CredentialsMode::Process,
        ..a.clone()
    };
    assert!(
        a.same_identity(&renamed),
        "name, region, duration, mode: same identity"
    );
    let differ: [fn(&mut Profile); 5] = [
        |p| p.role_arn = ARN_B.into(),
        |p| p.source_profile = Some("src".into()),
        |p| p.external_id = Some("ext".into()),
        |p| p.policy = Some("{}".into()),
        |p| p.policy_arns = vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
    ];
    for change in differ {
        let mut b = a.clone();
        change(&mut b);
        assert!(!a.same_identity(&b) && !b.same_identity(&a), "{b:?}");
    }
}

#[test]
fn a_loaded_configuration_orders_its_profiles_sources_first() {
    let (_f, fl) = yaml(&format!(
        "region: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}', source_profile: c}}\n  b: '{ARN_B}'\n  c: {{role_arn: '{ARN_B}', source_profile: d}}\n  d: '{ARN_A}'\n"
    ));
    let c = Config::load(&fl, &Env::new()).unwrap();
    let names = |ps: Vec<&Profile>| ps.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(c.profiles.iter().collect()), ["a", "b", "c", "d"]);
    assert_eq!(names(c.order()), ["b", "d", "c", "a"]);
    let waves: Vec<_> = c.waves().into_iter().map(names).collect();
    assert_eq!(waves, [vec!["b", "d"], vec!["c"], vec!["a"]]);
    let old = c.clone();
    let mut new = c;
    new.output_dir = "/elsewhere".into();
    assert_eq!(Config::restart_needed(&old, &new), ["output_dir"]);
}
