//! The options about who may read the outputs and reach the listeners:
//! file modes, the health listener and the credentials endpoint.

use super::*;

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

#[test]
fn the_control_socket_comes_from_flag_env_or_file_and_empty_disables_it() {
    let base = || flags(&[&format!("reader={ARN_A}")]);
    let c = Config::load(&base(), &Env::new()).unwrap();
    assert_eq!(
        c.control_socket,
        Some(PathBuf::from("/run/rolecall/control.sock"))
    );
    let e = env(&[("ROLECALL_CONTROL_SOCKET", "/run/x/env.sock")]);
    let c = Config::load(&base(), &e).unwrap();
    assert_eq!(c.control_socket, Some(PathBuf::from("/run/x/env.sock")));
    // flag > env
    let mut f = base();
    f.control_socket = Some("/run/x/flag.sock".into());
    let c = Config::load(&f, &e).unwrap();
    assert_eq!(c.control_socket, Some(PathBuf::from("/run/x/flag.sock")));
    // An empty variable disables it (it is a value, not "unset").
    let c = Config::load(&base(), &env(&[("ROLECALL_CONTROL_SOCKET", "")])).unwrap();
    assert_eq!(c.control_socket, None);
    let (_f, fl) = yaml(&format!(
        "region: r1\ncontrol_socket: /run/y/file.sock\nprofiles: {{a: '{ARN_A}'}}\n"
    ));
    let c = Config::load(&fl, &Env::new()).unwrap();
    assert_eq!(c.control_socket, Some(PathBuf::from("/run/y/file.sock")));
    // env > file
    let c = Config::load(&fl, &e).unwrap();
    assert_eq!(c.control_socket, Some(PathBuf::from("/run/x/env.sock")));
    let (_f, fl) = yaml(&format!(
        "region: r1\ncontrol_socket: \"\"\nprofiles: {{a: '{ARN_A}'}}\n"
    ));
    assert_eq!(Config::load(&fl, &Env::new()).unwrap().control_socket, None);
}

#[test]
fn a_control_socket_must_be_absolute_short_and_outside_the_output_dir() {
    let load = |sock: &str, out: &str| {
        let mut f = flags(&[&format!("reader={ARN_A}")]);
        f.control_socket = Some(sock.into());
        f.output_dir = Some(out.into());
        Config::load(&f, &Env::new())
    };
    assert!(load("/run/rolecall/control.sock", "/aws").is_ok());
    let long = format!("/run/{}", "s".repeat(103));
    assert_eq!(long.len(), 108);
    for (sock, out, why) in [
        ("run/control.sock", "/aws", "absolute path"),
        ("/run/../aws/control.sock", "/aws", "absolute path"),
        ("/control.sock", "/aws", "directory of its own"),
        (long.as_str(), "/aws", "at most 107"),
        ("/aws/control.sock", "/aws", "inside the output dir"),
        ("/aws/sub/control.sock", "/aws/", "inside the output dir"),
        ("/aws//./control.sock", "/aws", "inside the output dir"),
    ] {
        let p = problems(load(sock, out));
        assert!(has(&p, "--control-socket", why), "{sock}: {p:#?}");
    }
    assert!(load(&long[..107], "/aws").is_ok(), "107 bytes fit");
    assert!(
        load("/awsome/control.sock", "/aws").is_ok(),
        "a sibling is not inside"
    );
    // The default is checked against the output dir too.
    let mut f = flags(&[&format!("reader={ARN_A}")]);
    f.output_dir = Some("/run".into());
    let p = problems(Config::load(&f, &Env::new()));
    assert!(
        has(&p, "control_socket (default)", "inside the output dir"),
        "{p:#?}"
    );
    // Bad values from the environment and the file name their origin.
    let p = problems(Config::load(
        &flags(&[&format!("reader={ARN_A}")]),
        &env(&[("ROLECALL_CONTROL_SOCKET", "relative.sock")]),
    ));
    assert!(
        has(&p, "environment ROLECALL_CONTROL_SOCKET", "absolute"),
        "{p:#?}"
    );
    let (_f, fl) = yaml(&format!(
        "region: r1\ncontrol_socket: /aws/c.sock\nprofiles: {{a: '{ARN_A}'}}\n"
    ));
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(
        has(&p, ": control_socket", "inside the output dir"),
        "{p:#?}"
    );
}

#[test]
fn a_control_socket_inside_an_output_sets_dir_is_refused() {
    let (_f, mut flags) = yaml(&format!(
        "region: eu-west-1\nprofiles:\n  reader: {ARN_A}\n\
         outputs:\n  app: {{dir: /run/rolecall, profiles: [reader]}}\n"
    ));
    let p = problems(Config::load(&flags, &Env::new()));
    assert!(
        has(
            &p,
            "control_socket (default)",
            "inside output set app's dir"
        ),
        "{p:#?}"
    );
    flags.control_socket = Some("/run/ctl/control.sock".into());
    assert!(Config::load(&flags, &Env::new()).is_ok());
    flags.control_socket = Some("/run/rolecall/x/control.sock".into());
    let p = problems(Config::load(&flags, &Env::new()));
    assert!(
        has(&p, "--control-socket", "inside output set app's dir"),
        "{p:#?}"
    );
}
