//! `rolecall check` under `identity: pod-identity`, the real binary: the
//! text, `-o json` and `-o trust-policy` give the same documents (the
//! association role's trust, each target role's trust with the exact
//! principal, actions and conditions); `--assume` asks the fake agent
//! once and signs each `AssumeRole` with the agent's keys; `--issuer` is
//! refused.

mod support;

use std::process::Output;

use serde_json::{Value, json};
use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";
const NS: &str = "shop";
const SA: &str = "cart";
const ASSOCIATION: &str = "arn:aws:iam::111122223333:role/ASSOCIATION_ROLE";

/// The Pod Identity token of `shop/cart`, as EKS projects it.
fn pod_token() -> TokenDir {
    TokenDir::new(&jwt(
        TEST_ISSUER,
        &format!("system:serviceaccount:{NS}:{SA}"),
        "pods.eks.amazonaws.com",
        now_unix() + 3600,
    ))
}

/// A configuration file: reader, and writer with an external id and a
/// source identity.
fn config_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("rolecall.yaml");
    std::fs::write(
        &path,
        format!(
            "identity: pod-identity\nprofiles:\n  reader:\n    role_arn: {READER}\n  writer:\n    role_arn: {WRITER}\n    external_id: ext-1\n    source_identity: alice\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// `rolecall check ARGS` under pod-identity with `agent_url`.
fn check(token: &TokenDir, agent_url: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = rolecall_command()
        .arg("check")
        .args(args)
        .args(["--config", &config_file(&dir)])
        .args(["--pod-identity-endpoint", agent_url])
        .args([
            "--pod-identity-token-file",
            &token.path().display().to_string(),
        ])
        .args(["--output-dir", &out.path().display().to_string()])
        .args(["--region", "eu-west-1", "--credentials", "file"])
        .output()
        .unwrap();
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "check writes nothing"
    );
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The document as the text shows it: pretty JSON, indented two spaces.
fn as_text(doc: &Value) -> String {
    serde_json::to_string_pretty(doc)
        .unwrap()
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect()
}

fn reader_trust() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": ASSOCIATION},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {
            "aws:RequestTag/kubernetes-namespace": NS,
            "aws:RequestTag/kubernetes-service-account": SA,
        }},
    }]})
}

fn association_trust() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }]})
}

#[test]
fn text_json_and_trust_policy_give_the_same_documents() {
    let token = pod_token();
    let url = "http://169.254.170.23/v1/credentials";
    let o = check(&token, url, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    for want in [
        "identity: pod-identity\n".to_owned(),
        format!("agent: {url}\n"),
        format!("token: {}\n", token.path().display()),
        "aud: pods.eks.amazonaws.com\n".into(),
        format!(
            "aws eks create-pod-identity-association --cluster-name CLUSTER --namespace {NS} --service-account {SA} --role-arn {ASSOCIATION}\n"
        ),
        "profile pod-identity -> (Pod Identity association) (internal: not published".into(),
        format!("profile reader -> {READER}\n"),
        as_text(&association_trust()),
        as_text(&reader_trust()),
        "at most 1 hour".into(),
        "disableSessionTags".into(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("warning:"), "{text}");

    let o = check(&token, url, &["-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["identity"], "pod-identity");
    assert_eq!(doc["association_role_arn"], ASSOCIATION);
    assert_eq!(doc["association_trust_policy"], association_trust());
    let profile = |name: &str| -> Value {
        doc["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {doc}"))
    };
    assert_eq!(profile("reader")["trust_policy"], reader_trust());
    let writer = profile("writer")["trust_policy"]["Statement"][0].clone();
    assert_eq!(
        writer["Action"],
        json!(["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"])
    );
    assert_eq!(
        writer["Condition"]["StringEquals"]["sts:ExternalId"],
        "ext-1"
    );
    assert!(
        text.contains(&as_text(&profile("writer")["trust_policy"])),
        "{text}"
    );
    assert_eq!(
        profile("reader")["permissions_policy"]["Statement"][0]["Resource"],
        READER
    );
    assert_eq!(doc["profiles"].as_array().unwrap().len(), 2, "{doc}");

    // Two different documents: trust-policy needs --for-profile.
    let o = check(&token, url, &["-o", "trust-policy"]);
    assert_eq!(o.status.code(), Some(64), "{}", stdout(&o));
    assert!(stderr(&o).contains("--for-profile"), "{}", stderr(&o));
    let o = check(
        &token,
        url,
        &["-o", "trust-policy", "--for-profile", "reader"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let one: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(one, reader_trust());
    let o = check(
        &token,
        url,
        &["-o", "trust-policy", "--for-profile", "pod-identity"],
    );
    let one: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(one, association_trust());
}

#[test]
fn a_given_association_role_is_the_principal_and_issuer_is_refused() {
    let token = pod_token();
    let url = "http://169.254.170.23/v1/credentials";
    let given = "arn:aws:iam::444455556666:role/pods/shop-cart";
    let o = check(
        &token,
        url,
        &[
            "--association-role",
            given,
            "-o",
            "trust-policy",
            "--for-profile",
            "reader",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let one: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(one["Statement"][0]["Principal"]["AWS"], given);
    let o = check(&token, url, &["--association-role", given]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("--role-arn {given}\n")),
        "{}",
        stdout(&o)
    );

    let o = check(&token, url, &["--association-role", "pods"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("--association-role"), "{}", stderr(&o));
    let o = check(
        &token,
        url,
        &[
            "--issuer",
            TEST_ISSUER,
            "--namespace",
            NS,
            "--service-account",
            SA,
        ],
    );
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("--issuer: identity is pod-identity"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn assume_asks_the_agent_once_and_signs_every_call_with_its_keys() {
    let sts = FakeSts::start();
    let agent = FakeAgent::start();
    let token = pod_token();
    agent.accept_token_file(&token.path());
    let dir = tempfile::tempdir().unwrap();
    let o = rolecall_command()
        .args(["check", "--assume", "--config", &config_file(&dir)])
        .args(["--pod-identity-endpoint", &agent.url()])
        .args([
            "--pod-identity-token-file",
            &token.path().display().to_string(),
        ])
        .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
        .output()
        .unwrap();
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    assert_eq!(agent.calls(), 1);
    assert!(
        text.contains("agent: OK, account 111122223333, session until"),
        "{text}"
    );
    // The account the agent named fills the association role's ARN.
    assert!(
        text.contains(&format!("--role-arn {ASSOCIATION}")),
        "{text}"
    );
    assert!(
        text.contains("the EKS Pod Identity agent answers 403"),
        "a loopback agent is not the real one: {text}"
    );
    assert!(
        text.contains("assume: OK as arn:aws:sts::111122223333:assumed-role/reader/"),
        "{text}"
    );
    assert_eq!(sts.calls(), 2);
    let keys = agent.issued();
    assert!(!keys.is_empty());
    for signer in sts.signed_with() {
        assert!(keys.contains(&signer), "{signer} is not the agent's key");
    }
    for c in agent.issued_credentials() {
        assert!(!text.contains(&c.secret_access_key) && !text.contains(&c.session_token));
    }
    for c in sts.issued() {
        assert!(!text.contains(&c.secret_access_key) && !text.contains(&c.session_token));
    }
}

#[test]
fn assume_without_an_association_names_the_command_and_calls_no_sts() {
    let sts = FakeSts::start();
    let agent = FakeAgent::start();
    agent.set_default(AgentReply::no_association());
    let token = pod_token();
    let dir = tempfile::tempdir().unwrap();
    let o = rolecall_command()
        .args(["check", "--assume", "--config", &config_file(&dir)])
        .args(["--pod-identity-endpoint", &agent.url()])
        .args([
            "--pod-identity-token-file",
            &token.path().display().to_string(),
        ])
        .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
        .output()
        .unwrap();
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("agent: FAILED (config_error) ResourceNotFoundException"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "fix: no Pod Identity association for {NS}/{SA} (from the token's sub): aws eks create-pod-identity-association"
        )),
        "{text}"
    );
    assert!(
        text.contains("assume: skipped, source profile pod-identity could not be assumed"),
        "{text}"
    );
    assert_eq!(agent.calls(), 1);
    assert_eq!(sts.calls(), 0);
}

#[test]
fn before_the_first_deploy_namespace_and_service_account_stand_for_the_token() {
    // No pod yet, so no Pod Identity token: the flags say who the pod is,
    // and the documents are the ones the token would give.
    let token = pod_token();
    let url = "http://169.254.170.23/v1/credentials";
    let with_token = check(
        &token,
        url,
        &["-o", "trust-policy", "--for-profile", "reader"],
    );
    assert_eq!(with_token.status.code(), Some(0), "{}", stderr(&with_token));
    let no_token = TokenDir::new("placeholder");
    std::fs::remove_file(no_token.path()).ok();
    let who = ["--namespace", NS, "--service-account", SA];
    let args = [&who[..], &["-o", "trust-policy", "--for-profile", "reader"]].concat();
    let o = check(&no_token, url, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), stdout(&with_token));
    let o = check(&no_token, url, &who);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&format!(
            "service account: {NS}/{SA} (from --namespace and --service-account; no token read)"
        )) && text.contains(&format!(
            "--namespace {NS} --service-account {SA} --role-arn"
        )),
        "{text}"
    );
    // Without the flags and without the token: both ways are named.
    let o = check(&no_token, url, &["-o", "json"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("or from --namespace and --service-account"),
        "{}",
        stderr(&o)
    );
    // Bad names are refused, each with its flag, at once.
    let o = check(
        &no_token,
        url,
        &["--namespace", "Shop_1", "--service-account", "cart."],
    );
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("--namespace: ") && stderr(&o).contains("--service-account: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn under_web_identity_the_pod_identity_flags_are_refused() {
    for args in [
        &["check", "--for-profile", "reader"][..],
        &["check", "--association-role", READER],
        &["check", "--namespace", NS, "--service-account", SA],
    ] {
        let o = rolecall_command()
            .args(args)
            .args(["--profile", &format!("reader={READER}")])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(args[1]), "{args:?}: {}", stderr(&o));
    }
}

/// `aws iam` against moto, with moto's test keys and no configuration.
fn aws_iam(moto: &Moto, args: &[&str]) -> Output {
    std::process::Command::new(venv_bin("aws"))
        .arg("iam")
        .args(args)
        .args(["--endpoint-url", &moto.endpoint(), "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs the Python tools (make venv): ROLECALL_VENV=$PWD/.venv cargo test --test check_pod_identity -- --ignored"]
fn the_printed_policies_are_what_aws_iam_create_role_takes() {
    let moto = Moto::start(&venv());
    let dir = tempfile::tempdir().unwrap();
    let token = pod_token();
    let url = "http://169.254.170.23/v1/credentials";
    let association = "arn:aws:iam::123456789012:role/shop-cart";
    // The association role first (the base's document), then the target
    // roles trusting it.
    for (role, name) in [
        ("pod-identity", "shop-cart"),
        ("reader", "reader"),
        ("writer", "writer"),
    ] {
        let o = check(
            &token,
            url,
            &[
                "--association-role",
                association,
                "-o",
                "trust-policy",
                "--for-profile",
                role,
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{role}: {}", stderr(&o));
        let file = dir.path().join(format!("{role}.json"));
        std::fs::write(&file, &o.stdout).unwrap();
        let document = format!("file://{}", file.display());
        let created = aws_iam(
            &moto,
            &[
                "create-role",
                "--role-name",
                name,
                "--assume-role-policy-document",
                &document,
            ],
        );
        assert!(created.status.success(), "{role}: {}", stderr(&created));
        let got = aws_iam(&moto, &["get-role", "--role-name", name]);
        assert!(got.status.success(), "{role}: {}", stderr(&got));
        let got: Value = serde_json::from_slice(&got.stdout).unwrap();
        let printed: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            got["Role"]["AssumeRolePolicyDocument"], printed,
            "{role}: IAM keeps the document as printed"
        );
    }
}
