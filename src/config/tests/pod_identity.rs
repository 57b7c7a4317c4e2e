//! `identity: pod-identity`: the options, the base profile every role
//! profile chains from, and each exit-64 rule of issue 24's §2.1.

use super::*;

/// The variables EKS injects on a pod with a Pod Identity association.
const EKS: [(&str, &str); 2] = [
    (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "http://169.254.170.23/v1/credentials",
    ),
    (
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
    ),
];

fn load_yaml(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let (_f, fl) = yaml(text);
    Config::load(&fl, &env(pairs))
}

fn pod(c: &Config) -> &PodIdentity {
    c.identity.pod().expect("pod-identity")
}

#[test]
fn pod_identity_with_the_injected_variables_needs_only_a_region() {
    let c = load_yaml(
        &format!("identity: pod-identity\nregion: eu-west-1\nduration_seconds: 7200\nprofiles:\n  reader: {{role_arn: '{ARN_A}'}}\n  writer: {{role_arn: '{ARN_B}', duration_seconds: 900}}\n"),
        &EKS,
    )
    .unwrap();
    assert_eq!(
        c.identity,
        Identity::PodIdentity(PodIdentity {
            endpoint: DEFAULT_POD_IDENTITY_ENDPOINT.into(),
            profile: POD_IDENTITY_PROFILE.into(),
            published: false,
        })
    );
    assert_eq!(c.token_file, PathBuf::from(DEFAULT_POD_IDENTITY_TOKEN_FILE));
    let names: Vec<_> = c.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["pod-identity", "reader", "writer"]);
    let base = c.base().unwrap();
    assert!(base.pod_identity && base.role_arn.is_empty() && base.source_profile.is_none());
    for (name, secs) in [("reader", 3600), ("writer", 900)] {
        let p = c.profile(name).unwrap();
        assert!(!p.pod_identity);
        assert_eq!(p.source_profile.as_deref(), Some("pod-identity"), "{name}");
        assert_eq!(
            p.duration,
            Duration::from_secs(secs),
            "{name}: capped at 1 h"
        );
    }
    let waves: Vec<Vec<&str>> = c
        .waves()
        .iter()
        .map(|w| w.iter().map(|p| p.name.as_str()).collect())
        .collect();
    assert_eq!(waves, [vec!["pod-identity"], vec!["reader", "writer"]]);
    assert_eq!(c.order()[0].name, "pod-identity");
    assert_eq!(
        c.outputs[0].profiles,
        ["reader", "writer"],
        "internal base unpublished"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn flags_and_yaml_keys_set_the_agent_and_a_published_base() {
    let fl = Flags {
        identity: Some("pod-identity".into()),
        pod_identity_endpoint: Some("http://127.0.0.1:8080/v1/credentials".into()),
        pod_identity_token_file: Some("/tok/pod".into()),
        pod_identity_profile: Some("node".into()),
        ..flags(&[&format!("reader={ARN_A}")])
    };
    let c = Config::load(&fl, &env(&EKS)).unwrap();
    let p = pod(&c);
    assert_eq!(
        p.endpoint, "http://127.0.0.1:8080/v1/credentials",
        "flag beats env"
    );
    assert_eq!((p.profile.as_str(), p.published), ("node", true));
    assert_eq!(c.token_file, PathBuf::from("/tok/pod"));
    let base = c.profile("node").unwrap();
    assert!(base.pod_identity);
    assert_eq!(base.region.as_deref(), Some("eu-west-1"));
    assert_eq!(base.credentials, CredentialsMode::Process);
    assert_eq!(
        c.profile("reader").unwrap().source_profile.as_deref(),
        Some("node")
    );
    assert_eq!(c.outputs[0].profiles, ["node", "reader"]);
    // The same from the file.
    let c2 = load_yaml(
        &format!("identity: pod-identity\npod_identity_endpoint: 'http://127.0.0.1:8080/v1/credentials'\npod_identity_token_file: /tok/pod\npod_identity_profile: node\nregion: eu-west-1\nprofiles:\n  reader: {{role_arn: '{ARN_A}'}}\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c2.identity, c.identity);
    assert_eq!(c2.token_file, c.token_file);
}

#[test]
fn the_published_base_alone_is_a_configuration() {
    let c = load_yaml(
        "identity: pod-identity\npod_identity_profile: node\nregion: eu-west-1\ncredentials: file\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.profiles.len(), 1);
    assert_eq!(c.profiles[0].credentials, CredentialsMode::File);
    assert_eq!(c.outputs[0].profiles, ["node"]);
    // Unpublished, there is nothing to publish: an error that says so.
    let p = problems(load_yaml(
        "identity: pod-identity\nregion: eu-west-1\n",
        &[],
    ));
    assert!(has(&p, "profiles", "pod_identity_profile"), "{p:?}");
    // The published base needs a region too.
    let p = problems(load_yaml(
        "identity: pod-identity\npod_identity_profile: node\n",
        &[],
    ));
    assert!(has(&p, "region", "no AWS region"), "{p:?}");
}

#[test]
fn rule_1_the_identity_is_one_of_two_words() {
    let p = problems(load_yaml(
        &format!("identity: irsa\nregion: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}'}}\n"),
        &[],
    ));
    assert!(
        has(
            &p,
            "identity",
            "is not an identity: use web-identity or pod-identity"
        ),
        "{p:?}"
    );
    let c = Config::load(
        &flags(&[&format!("a={ARN_A}")]),
        &env(&[("ROLECALL_IDENTITY", "web-identity")]),
    );
    assert_eq!(c.unwrap().identity, Identity::WebIdentity);
}

#[test]
fn rule_2_pod_identity_options_under_web_identity_are_errors_unless_from_the_environment() {
    // Injected by EKS (a pod with both IRSA and an association): ignored.
    let mut pairs = EKS.to_vec();
    pairs.push(("ROLECALL_POD_IDENTITY_PROFILE", "node"));
    pairs.push(("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/irsa/token"));
    let c = Config::load(&flags(&[&format!("a={ARN_A}")]), &env(&pairs)).unwrap();
    assert_eq!(c.identity, Identity::WebIdentity);
    assert_eq!(c.token_file, PathBuf::from("/var/run/irsa/token"));
    assert_eq!(c.warnings.len(), 3);
    assert!(
        c.warnings
            .iter()
            .all(|w| w.debug && w.message.contains("only used with identity: pod-identity"))
    );
    // Only Pod Identity's variables, no web-identity token named: most
    // likely a Pod Identity cluster; a warning says what to set.
    let c = Config::load(&flags(&[&format!("a={ARN_A}")]), &env(&EKS)).unwrap();
    assert_eq!(c.token_file, PathBuf::from(DEFAULT_TOKEN_FILE));
    let loud: Vec<_> = c.warnings.iter().filter(|w| !w.debug).collect();
    assert_eq!(loud.len(), 1, "{:?}", c.warnings);
    assert_eq!(
        loud[0].origin,
        "environment AWS_CONTAINER_CREDENTIALS_FULL_URI"
    );
    assert!(
        loud[0].message.contains("set identity: pod-identity"),
        "{loud:?}"
    );
    // From a flag or the file: errors, each with its origin.
    let fl = Flags {
        pod_identity_endpoint: Some("http://169.254.170.23/v1/credentials".into()),
        pod_identity_profile: Some("node".into()),
        ..flags(&[&format!("a={ARN_A}")])
    };
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(
        has(
            &p,
            "--pod-identity-endpoint",
            "only used with identity: pod-identity"
        ),
        "{p:?}"
    );
    assert!(
        has(
            &p,
            "--pod-identity-profile",
            "only used with identity: pod-identity"
        ),
        "{p:?}"
    );
    let p = problems(load_yaml(
        &format!(
            "pod_identity_token_file: /t\nregion: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}'}}\n"
        ),
        &[],
    ));
    assert!(
        has(
            &p,
            "pod_identity_token_file",
            "only used with identity: pod-identity"
        ),
        "{p:?}"
    );
}

#[test]
fn rule_3_the_web_identity_token_is_refused_from_a_flag_or_the_file_and_ignored_from_the_environment()
 {
    let text = format!(
        "identity: pod-identity\nregion: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}'}}\n"
    );
    let c = load_yaml(&text, &[("AWS_WEB_IDENTITY_TOKEN_FILE", "/irsa/token")]).unwrap();
    assert_eq!(c.token_file, PathBuf::from(DEFAULT_POD_IDENTITY_TOKEN_FILE));
    let w = &c.warnings;
    assert!(
        w.len() == 1 && !w[0].debug && w[0].origin == "environment AWS_WEB_IDENTITY_TOKEN_FILE",
        "{w:?}"
    );
    assert!(w[0].message.contains("both") && w[0].message.contains("pod_identity_token_file"));
    let p = problems(load_yaml(&format!("token_file: /t\n{text}"), &[]));
    assert!(
        has(
            &p,
            "token_file",
            "with identity: pod-identity the token is pod_identity_token_file"
        ),
        "{p:?}"
    );
    let (_f, fl) = yaml(&text);
    let fl = Flags {
        token_file: Some("/t".into()),
        ..fl
    };
    let p = problems(Config::load(&fl, &Env::new()));
    assert!(
        has(
            &p,
            "--token-file",
            "pod_identity_token_file (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"
        ),
        "{p:?}"
    );
}

#[test]
fn rule_4_aws_role_arn_is_not_a_profile_under_pod_identity() {
    let pairs = [
        ("AWS_ROLE_ARN", ARN_A),
        ("AWS_REGION", "eu-west-1"),
        ("ROLECALL_IDENTITY", "pod-identity"),
    ];
    let p = problems(Config::load(&Flags::default(), &env(&pairs)));
    assert!(
        has(&p, "profiles", "AWS_ROLE_ARN is the web identity's role"),
        "{p:?}"
    );
    assert!(!p.iter().any(Problem::is_no_profiles));
    let fl = Flags {
        pod_identity_profile: Some("node".into()),
        ..Flags::default()
    };
    let c = Config::load(&fl, &env(&pairs)).unwrap();
    let names: Vec<_> = c.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["node"]);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.debug && w.origin == "environment AWS_ROLE_ARN")
    );
}

#[test]
fn rule_5_the_agent_url_is_checked_with_its_origin() {
    let pairs = [
        ("ROLECALL_IDENTITY", "pod-identity"),
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "https://agent.example/v1/credentials",
        ),
    ];
    let p = problems(Config::load(&flags(&[&format!("a={ARN_A}")]), &env(&pairs)));
    assert!(
        has(
            &p,
            "environment AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "plain HTTP"
        ),
        "{p:?}"
    );
    let fl = Flags {
        identity: Some("pod-identity".into()),
        pod_identity_endpoint: Some("http://[fd00:ec2::23]/v1/credentials".into()),
        ..flags(&[&format!("a={ARN_A}")])
    };
    assert_eq!(
        pod(&Config::load(&fl, &Env::new()).unwrap()).endpoint,
        "http://[fd00:ec2::23]/v1/credentials"
    );
}

#[test]
fn rule_6_the_base_has_a_name_of_its_own() {
    let p = problems(load_yaml(
        &format!(
            "identity: pod-identity\nregion: eu-west-1\nprofiles:\n  pod-identity: {{role_arn: '{ARN_A}'}}\n"
        ),
        &[],
    ));
    assert!(
        has(
            &p,
            "profiles.pod-identity",
            "rename this profile, or set pod_identity_profile"
        ),
        "{p:?}"
    );
    let p = problems(load_yaml(
        &format!(
            "identity: pod-identity\npod_identity_profile: a\nregion: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}'}}\n"
        ),
        &[],
    ));
    assert!(
        has(
            &p,
            "pod_identity_profile",
            "\"a\" is also a configured profile"
        ),
        "{p:?}"
    );
    let p = problems(load_yaml(
        "identity: pod-identity\npod_identity_profile: 'no pe'\nregion: eu-west-1\n",
        &[],
    ));
    assert!(
        has(&p, "pod_identity_profile", "must be 1-64 characters"),
        "{p:?}"
    );
    // Under web-identity the name is an ordinary one.
    let c = Config::load(&flags(&[&format!("pod-identity={ARN_A}")]), &Env::new()).unwrap();
    assert_eq!(c.profiles[0].name, "pod-identity");
}

#[test]
fn rule_7_every_role_profile_is_chained() {
    let text = |extra: &str| {
        format!(
            "identity: pod-identity\npod_identity_profile: node\nregion: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}'{extra}}}\n  b: {{role_arn: '{ARN_B}', source_profile: a}}\n"
        )
    };
    let c = load_yaml(&text(", source_profile: node"), &[]).unwrap();
    assert_eq!(
        c.profile("a").unwrap().source_profile.as_deref(),
        Some("node")
    );
    assert_eq!(
        c.profile("b").unwrap().source_profile.as_deref(),
        Some("a"),
        "an explicit source is kept"
    );
    let waves: Vec<usize> = c.waves().iter().map(Vec::len).collect();
    assert_eq!(waves, [1, 1, 1]);
    let p = problems(load_yaml(&text(", duration_seconds: 7200"), &[]));
    assert!(
        has(
            &p,
            "profiles.a.duration_seconds",
            "role-chained sessions at one hour"
        ),
        "{p:?}"
    );
    let p = problems(load_yaml(&text(", source_profile: pod-identity"), &[]));
    assert!(
        has(
            &p,
            "source_profile",
            "unknown source_profile \"pod-identity\""
        ),
        "{p:?}"
    );
}

#[test]
fn rule_8_declared_sets_may_list_the_published_base_and_need_not_list_the_internal_one() {
    let sets = "outputs:\n  app: {dir: /aws/app, profiles: [a, node]}\n";
    let text = format!(
        "identity: pod-identity\npod_identity_profile: node\nregion: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}'}}\n{sets}"
    );
    let c = load_yaml(&text, &[]).unwrap();
    assert_eq!(c.outputs[0].profiles, ["a", "node"]);
    // Internal: exempt from "in no output set", and not a name a set may list.
    let text = format!(
        "identity: pod-identity\nregion: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}'}}\noutputs:\n  app: {{dir: /aws/app, profiles: [a]}}\n"
    );
    assert_eq!(load_yaml(&text, &[]).unwrap().outputs[0].profiles, ["a"]);
    let p = problems(load_yaml(&text.replace("[a]", "[a, pod-identity]"), &[]));
    assert!(
        has(
            &p,
            "outputs.app.profiles",
            "unknown profile \"pod-identity\""
        ),
        "{p:?}"
    );
    // Published, it is in a set like any profile (an error otherwise).
    let text = text.replace("region:", "pod_identity_profile: node\nregion:");
    let p = problems(load_yaml(&text, &[]));
    assert!(
        has(
            &p,
            "pod_identity_profile",
            "\"node\" is published but in no output set"
        ),
        "{p:?}"
    );
}

#[test]
fn kubernetes_tags_and_eks_tag_keys_under_pod_identity_are_allowed_with_a_warning() {
    let c = load_yaml(
        &format!("identity: pod-identity\nregion: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}', kubernetes_tags: true}}\n  b: {{role_arn: '{ARN_B}', tags: {{Kubernetes-Namespace: x, team: y}}}}\n"),
        &[],
    )
    .unwrap();
    let w: Vec<_> = c
        .warnings
        .iter()
        .map(|w| (w.debug, w.origin.as_str(), w.message.as_str()))
        .collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].1.ends_with("profiles.a")
            && w[0].2.starts_with("kubernetes_tags: true")
            && w[0].2.contains("disableSessionTags"),
        "{w:?}"
    );
    assert!(
        w[1].1.ends_with("profiles.b") && w[1].2.starts_with("tags Kubernetes-Namespace under"),
        "{w:?}"
    );
    assert!(!w[0].0 && !w[1].0);
}

#[test]
fn every_role_profile_under_pod_identity_needs_tag_session_in_its_trust() {
    let text = format!(
        "identity: pod-identity\npod_identity_profile: node\nregion: eu-west-1\nprofiles:\n  a: {{role_arn: '{ARN_A}'}}\n  b: {{role_arn: '{ARN_B}', source_profile: a, source_identity: me}}\n"
    );
    let c = load_yaml(&text, &[]).unwrap();
    let actions = |n: &str| c.trust_actions(c.profile(n).unwrap());
    assert_eq!(actions("a"), ["sts:TagSession"]);
    assert_eq!(actions("b"), ["sts:TagSession", "sts:SetSourceIdentity"]);
    assert!(actions("node").is_empty(), "the base is no STS call");
    let web = Config::load(&flags(&[&format!("a={ARN_A}")]), &Env::new()).unwrap();
    assert!(web.trust_actions(web.profile("a").unwrap()).is_empty());
}
