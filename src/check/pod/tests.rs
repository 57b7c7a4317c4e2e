use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::*;
use crate::check::issuer::{Format, IssuerArgs};
use crate::config::{Identity, POD_IDENTITY_PROFILE};
use crate::trust::POD_IDENTITY_SERVICE;

const NS: &str = "shop";
const SA: &str = "cart";

fn claims(aud: &str) -> Claims {
    Claims {
        iss: Some("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC".into()),
        sub: Some(format!("system:serviceaccount:{NS}:{SA}")),
        aud: vec![aud.into()],
        exp: Some(4_000_000_000),
        ..Claims::default()
    }
}

fn pod(endpoint: &str, published: bool) -> PodIdentity {
    PodIdentity {
        endpoint: endpoint.into(),
        profile: POD_IDENTITY_PROFILE.into(),
        published,
    }
}

fn role(name: &str, arn: &str, source: &str) -> Profile {
    Profile {
        source_profile: Some(source.into()),
        ..Profile::new(name, arn)
    }
}

/// A pod-identity configuration as `cfg` builds it: the base and roles
/// chained from it (one with an external id and a source identity), and
/// one chained from another role.
fn config(token_file: PathBuf) -> Config {
    let base = Profile {
        pod_identity: true,
        ..Profile::new(POD_IDENTITY_PROFILE, "")
    };
    let writer = Profile {
        external_id: Some("ext-1".into()),
        source_identity: Some("alice".into()),
        ..role(
            "writer",
            "arn:aws:iam::111122223333:role/writer",
            POD_IDENTITY_PROFILE,
        )
    };
    let mut profiles = vec![
        base,
        role(
            "reader",
            "arn:aws:iam::111122223333:role/reader",
            POD_IDENTITY_PROFILE,
        ),
        writer,
        role("audit", "arn:aws:iam::111122223333:role/audit", "reader"),
    ];
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    Config {
        token_file,
        identity: Identity::PodIdentity(pod(crate::agent::DEFAULT_ENDPOINT, false)),
        profiles,
        ..Config::default()
    }
}

fn pod_of(config: &Config) -> &PodIdentity {
    match &config.identity {
        Identity::PodIdentity(p) => p,
        Identity::WebIdentity => unreachable!(),
    }
}

fn token_file(dir: &tempfile::TempDir, aud: &str) -> PathBuf {
    let payload = json!({
        "iss": "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
        "sub": format!("system:serviceaccount:{NS}:{SA}"),
        "aud": [aud],
        "exp": 4_000_000_000u64,
    });
    let jwt = format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let path = dir.path().join("eks-pod-identity-token");
    std::fs::write(&path, jwt).unwrap();
    path
}

#[test]
fn the_subject_gives_namespace_and_service_account() {
    assert_eq!(
        subject(&claims(POD_IDENTITY_SERVICE)),
        Some((NS.into(), SA.into()))
    );
    for bad in [
        "system:serviceaccount:shop",
        "user:x",
        "system:serviceaccount::a",
    ] {
        let c = Claims {
            sub: Some(bad.into()),
            ..Claims::default()
        };
        assert_eq!(subject(&c), None, "{bad}");
    }
}

#[test]
fn only_the_agents_two_addresses_are_agent_addresses() {
    for good in [
        "http://169.254.170.23/v1/credentials",
        "http://169.254.170.23:80/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
        "http://[fd00:ec2::23]:80/v1/credentials",
    ] {
        assert!(is_agent_address(good), "{good}");
    }
    for bad in [
        "http://127.0.0.1:8080/v1/credentials",
        "http://169.254.170.2/v1/credentials",
        "http://localhost/v1/credentials",
        "http://[::1]/v1/credentials",
    ] {
        assert!(!is_agent_address(bad), "{bad}");
    }
}

#[test]
fn a_role_trusts_the_association_role_with_tag_session_and_the_tag_conditions() {
    let c = config(PathBuf::from("/nonexistent"));
    let setup = Setup::new(&c, pod_of(&c), &claims(POD_IDENTITY_SERVICE), None, None);
    let reader = c.profile("reader").unwrap();
    let e = setup.entry(reader);
    let st = &e.trust["Statement"][0];
    assert_eq!(
        st["Principal"]["AWS"],
        "arn:aws:iam::111122223333:role/ASSOCIATION_ROLE"
    );
    assert_eq!(st["Action"], json!(["sts:AssumeRole", "sts:TagSession"]));
    assert_eq!(
        st["Condition"],
        json!({"StringEquals": {
            "aws:RequestTag/kubernetes-namespace": NS,
            "aws:RequestTag/kubernetes-service-account": SA,
        }})
    );
    let (principal, perms) = e.permissions.unwrap();
    assert_eq!(principal, "arn:aws:iam::111122223333:role/ASSOCIATION_ROLE");
    assert_eq!(
        perms["Statement"][0]["Resource"],
        "arn:aws:iam::111122223333:role/reader"
    );
    assert_eq!(
        perms["Statement"][0]["Action"],
        json!(["sts:AssumeRole", "sts:TagSession"])
    );
}

#[test]
fn external_id_and_source_identity_are_in_the_trust() {
    let c = config(PathBuf::from("/nonexistent"));
    let given = "arn:aws:iam::444455556666:role/pods";
    let setup = Setup::new(
        &c,
        pod_of(&c),
        &claims(POD_IDENTITY_SERVICE),
        Some(given),
        None,
    );
    let st = &setup.entry(c.profile("writer").unwrap()).trust["Statement"][0];
    assert_eq!(st["Principal"]["AWS"], given);
    assert_eq!(
        st["Action"],
        json!(["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"])
    );
    assert_eq!(st["Condition"]["StringEquals"]["sts:ExternalId"], "ext-1");
    // Chained from another role: that role is the principal.
    let st = &setup.entry(c.profile("audit").unwrap()).trust["Statement"][0];
    assert_eq!(
        st["Principal"]["AWS"],
        "arn:aws:iam::111122223333:role/reader"
    );
    assert_eq!(st["Action"], json!(["sts:AssumeRole", "sts:TagSession"]));
}

#[test]
fn the_association_role_account_comes_from_the_agent_then_the_roles() {
    let mut c = config(PathBuf::from("/nonexistent"));
    let cl = claims(POD_IDENTITY_SERVICE);
    let s = Setup::new(&c, pod_of(&c), &cl, None, Some("999988887777"));
    assert_eq!(
        s.association,
        "arn:aws:iam::999988887777:role/ASSOCIATION_ROLE"
    );
    assert_eq!(s.known, Known::Agent);
    c.profiles[0].role_arn = "arn:aws:iam::222233334444:role/audit".into();
    let s = Setup::new(&c, pod_of(&c), &cl, None, None);
    assert_eq!(s.association, "arn:aws:iam::ACCOUNT:role/ASSOCIATION_ROLE");
    assert!(s.notes()[0].contains("replace ACCOUNT"), "{:?}", s.notes());
}

#[test]
fn the_association_trust_is_the_eks_service_with_tag_session() {
    let doc = trust::association_trust();
    assert_eq!(
        doc,
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }]})
    );
}

#[test]
fn text_names_the_agent_the_association_command_and_every_policy() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(token_file(&dir, POD_IDENTITY_SERVICE));
    let setup = Setup::new(&c, pod_of(&c), &claims(POD_IDENTITY_SERVICE), None, None);
    let (text, ok) = setup.text(
        &claims(POD_IDENTITY_SERVICE),
        Some(SystemTime::now()),
        &HashMap::new(),
    );
    assert!(ok, "{text}");
    for want in [
        "identity: pod-identity\n",
        "agent: http://169.254.170.23/v1/credentials\n",
        "token: ",
        "aws eks create-pod-identity-association --cluster-name CLUSTER --namespace shop --service-account cart --role-arn arn:aws:iam::111122223333:role/ASSOCIATION_ROLE",
        "\"Service\": \"pods.eks.amazonaws.com\"",
        "profile pod-identity -> (Pod Identity association) (internal: not published",
        "profile reader -> arn:aws:iam::111122223333:role/reader",
        "\"aws:RequestTag/kubernetes-namespace\": \"shop\"",
        "\"sts:ExternalId\": \"ext-1\"",
        "at most 1 hour",
        "disableSessionTags",
        "eks-cluster-arn, eks-cluster-name",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("warning:"), "{text}");
    // The internal base is published nowhere: no note on its mode.
    assert!(
        text.contains("note: file mode (audit, reader, writer)"),
        "{text}"
    );
}

#[test]
fn warnings_for_a_foreign_agent_address_a_wrong_audience_and_kubernetes_tags() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(token_file(&dir, "sts.amazonaws.com"));
    c.identity = Identity::PodIdentity(pod("http://127.0.0.1:9/v1/credentials", true));
    let named =
        |c: &mut Config, name: &str| c.profiles.iter().position(|p| p.name == name).unwrap();
    let i = named(&mut c, "writer");
    c.profiles[i].kubernetes_tags = true;
    let i = named(&mut c, "reader");
    c.profiles[i].tags = vec![("Kubernetes-Namespace".into(), "x".into())];
    let cl = claims("sts.amazonaws.com");
    let setup = Setup::new(&c, pod_of(&c), &cl, None, None);
    let (text, ok) = setup.text(&cl, Some(SystemTime::now()), &HashMap::new());
    assert!(!ok, "a wrong audience cannot work:\n{text}");
    assert!(text.contains("answers 403 to any other Host"), "{text}");
    assert!(
        text.contains("audience is not pods.eks.amazonaws.com"),
        "{text}"
    );
    assert!(text.contains("note: kubernetes_tags (writer)"), "{text}");
    assert!(text.contains("tag Kubernetes-Namespace"), "{text}");
    assert!(text.contains("(published)"), "{text}");
}

fn args(output: Format) -> IssuerArgs {
    IssuerArgs {
        output,
        ..IssuerArgs::default()
    }
}

#[test]
fn json_and_trust_policy_give_the_same_documents_as_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(token_file(&dir, POD_IDENTITY_SERVICE));
    let (out, ok) = render(&c, pod_of(&c), &args(Format::Json)).unwrap();
    assert!(ok);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["identity"], "pod-identity");
    assert_eq!(doc["namespace"], NS);
    assert_eq!(doc["service_account"], SA);
    assert_eq!(doc["association_trust_policy"], trust::association_trust());
    let mut names: Vec<&str> = doc["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["audit", "reader", "writer"],
        "the base is not a role"
    );
    // Different documents: no single one, and trust-policy refuses.
    assert_eq!(doc["trust_policy"], Value::Null);
    assert!(render(&c, pod_of(&c), &args(Format::TrustPolicy)).is_err());
    let one = IssuerArgs {
        for_profile: Some("reader".into()),
        ..args(Format::TrustPolicy)
    };
    let (policy, _) = render(&c, pod_of(&c), &one).unwrap();
    let policy: Value = serde_json::from_str(&policy).unwrap();
    let reader = doc["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "reader")
        .unwrap();
    assert_eq!(policy, reader["trust_policy"]);
    let base = IssuerArgs {
        for_profile: Some(POD_IDENTITY_PROFILE.into()),
        ..args(Format::TrustPolicy)
    };
    let (policy, _) = render(&c, pod_of(&c), &base).unwrap();
    let policy: Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(policy, trust::association_trust());
}

#[test]
fn issuer_a_bad_association_role_and_a_missing_token_are_refused_together() {
    let c = config(PathBuf::from("/nonexistent/token"));
    let bad = IssuerArgs {
        issuer: Some("https://oidc.example".into()),
        association_role: Some("not-an-arn".into()),
        for_profile: Some("nope".into()),
        ..args(Format::Json)
    };
    let e = render(&c, pod_of(&c), &bad).unwrap_err();
    let origins: Vec<&str> = e.0.iter().map(|p| p.origin.as_str()).collect();
    assert_eq!(
        origins,
        [
            "--issuer",
            "--association-role",
            "--for-profile",
            "pod_identity_token_file"
        ]
    );
}
