//! The AWS config names accepted beside rolecall's own (issue 23 item 8):
//! one row of the table each, the same value, messages naming the
//! spelling the user wrote, and both names in one source refused.

use clap::{Args, FromArgMatches};

use super::*;

fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
    let cmd = Flags::augment_args(clap::Command::new("rolecall"));
    let m = cmd.try_get_matches_from(std::iter::once("rolecall").chain(args.iter().copied()))?;
    Flags::from_arg_matches(&m)
}

#[test]
fn the_aws_flag_names_set_the_same_options() {
    let f = parse(&[
        "--profile=a=arn:aws:iam::111122223333:role/reader",
        "--region=eu-west-1",
        "--web-identity-token-file=/t",
        "--endpoint-url=http://localhost:4566",
        "--duration-seconds=900",
        "--role-session-name=me",
    ])
    .unwrap();
    let c = Config::load(&f, &Env::new()).unwrap();
    assert_eq!(c.token_file, PathBuf::from("/t"));
    let p = &c.profiles[0];
    assert_eq!(p.sts_endpoint.as_deref(), Some("http://localhost:4566"));
    assert_eq!(p.duration, Duration::from_secs(900));
    assert_eq!(p.session_name, "me");
    // A flag still beats the environment under its AWS name.
    let e = env(&[("AWS_ROLE_SESSION_NAME", "from-env")]);
    assert_eq!(Config::load(&f, &e).unwrap().profiles[0].session_name, "me");
}

#[test]
fn a_bad_value_is_reported_under_the_name_the_user_wrote() {
    let f = parse(&[
        "--profile=a=arn:aws:iam::111122223333:role/reader",
        "--region=eu-west-1",
    ]);
    let f = Flags {
        duration_seconds: Some("12".into()),
        role_session_name: Some("bad name".into()),
        ..f.unwrap()
    };
    let p = problems(Config::load(&f, &Env::new()));
    assert!(has(&p, "--duration-seconds", "900"), "{p:?}");
    assert!(has(&p, "--role-session-name", "bad name"), "{p:?}");
    assert!(
        !p.iter()
            .any(|p| p.origin == "--duration" || p.origin == "--session-name")
    );
    let (_f, flags) = yaml(
        "endpoint_url: ftp://x\nweb_identity_token_file: ''\nprofiles:\n  a:\n    role_arn: arn:aws:iam::111122223333:role/reader\n    endpoint_url: https://\n",
    );
    let p = problems(Config::load(&flags, &Env::new()));
    assert!(
        has(&p, ": web_identity_token_file", "non-empty path"),
        "{p:?}"
    );
    assert!(has(&p, "profiles.a.endpoint_url", ""), "{p:?}");
    assert!(
        !p.iter().any(|p| p.origin.ends_with("sts_endpoint")),
        "{p:?}"
    );
}

#[test]
fn the_aws_yaml_names_work_at_the_top_and_in_a_profile() {
    let (_f, flags) = yaml(
        "region: eu-west-1\nweb_identity_token_file: /t\nendpoint_url: http://localhost:4566\nprofiles:\n  a:\n    role_arn: arn:aws:iam::111122223333:role/reader\n  b:\n    role_arn: arn:aws:iam::111122223333:role/writer\n    endpoint_url: http://localhost:4567\n",
    );
    let c = Config::load(&flags, &Env::new()).unwrap();
    assert_eq!(c.token_file, PathBuf::from("/t"));
    let urls: Vec<_> = c
        .profiles
        .iter()
        .map(|p| p.sts_endpoint.as_deref())
        .collect();
    assert_eq!(
        urls,
        [Some("http://localhost:4566"), Some("http://localhost:4567")]
    );
    // Only where the option is a profile's: the token is the process's.
    let (_f, flags) = yaml(
        "region: eu-west-1\nprofiles:\n  a:\n    role_arn: arn:aws:iam::111122223333:role/reader\n    web_identity_token_file: /t\n",
    );
    let p = problems(Config::load(&flags, &Env::new()));
    assert!(
        has(&p, "profiles.a.web_identity_token_file", "unknown key"),
        "{p:?}"
    );
}

#[test]
fn both_names_in_one_source_are_refused_naming_both() {
    let (_f, flags) = yaml(
        "region: eu-west-1\ntoken_file: /a\nweb_identity_token_file: /b\nprofiles:\n  a:\n    role_arn: arn:aws:iam::111122223333:role/reader\n    endpoint_url: http://localhost:1\n    sts_endpoint: http://localhost:2\n",
    );
    let p = problems(Config::load(&flags, &Env::new()));
    let msg = "`web_identity_token_file` and `token_file` are the same option: give one of them";
    assert!(has(&p, ": web_identity_token_file", msg), "{p:?}");
    let msg = "`endpoint_url` and `sts_endpoint` are the same option: give one of them";
    assert!(has(&p, "profiles.a.endpoint_url", msg), "{p:?}");
    assert_eq!(p.len(), 2, "{p:?}");
    // On the command line, clap refuses the pair (exit 64), naming both.
    for (own, aws) in [
        ("--token-file", "--web-identity-token-file"),
        ("--sts-endpoint", "--endpoint-url"),
        ("--duration", "--duration-seconds"),
        ("--session-name", "--role-session-name"),
    ] {
        let e = parse(&[&format!("{own}=1"), &format!("{aws}=2")]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let text = e.to_string();
        assert!(text.contains(own) && text.contains(aws), "{text}");
    }
    // In different sources the usual precedence holds: the flag wins.
    let (_f, flags) = yaml(
        "region: eu-west-1\nsts_endpoint: http://localhost:1\nprofiles:\n  a: arn:aws:iam::111122223333:role/reader\n",
    );
    let f = Flags {
        endpoint_url: Some("http://localhost:9".into()),
        ..flags
    };
    let c = Config::load(&f, &Env::new()).unwrap();
    assert_eq!(
        c.profiles[0].sts_endpoint.as_deref(),
        Some("http://localhost:9")
    );
}

#[test]
fn help_shows_each_aws_name_as_an_alias_of_its_flag() {
    let cmd = Flags::augment_args(clap::Command::new("rolecall"));
    for (own, aws) in [
        ("token-file", "web-identity-token-file"),
        ("sts-endpoint", "endpoint-url"),
        ("duration", "duration-seconds"),
        ("session-name", "role-session-name"),
    ] {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(own))
            .unwrap();
        let help = arg.get_help().unwrap().to_string();
        assert!(help.ends_with(&format!(" [alias: --{aws}]")), "{help}");
        let hidden = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(aws))
            .unwrap();
        assert!(hidden.is_hide_set(), "--{aws} is listed once, as the alias");
    }
    let help = cmd.get_arguments().find(|a| a.get_long() == Some("region"));
    assert!(
        !help
            .unwrap()
            .get_help()
            .unwrap()
            .to_string()
            .contains("alias")
    );
}

#[test]
fn a_misspelled_flag_is_refused_with_the_flag_meant() {
    let e = parse(&["--regoin=eu-west-1"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
    let text = e.to_string();
    assert!(
        text.contains("similar argument exists: '--region'"),
        "{text}"
    );
}
