//! Session tags and source identity on chained hops: a chained profile's
//! `AssumeRole` carries exactly its configured `tags`, `transitive_tag_keys`
//! and `source_identity`, and with `kubernetes_tags` the token's
//! `kubernetes.io` claims under EKS Pod Identity's keys; the web-identity
//! hop carries none; bad tags are exit 64 before any call; `check` names the
//! extra permissions.

mod support;

use std::time::Duration;

use rolecall::config::{Config, Env, Flags};
use support::*;

const BASE: &str = "arn:aws:iam::111122223333:role/base";
const TAGGED: &str = "arn:aws:iam::444455556666:role/tagged";
const PLAIN: &str = "arn:aws:iam::444455556666:role/plain";

/// A projected token bound to a pod, as kubelet writes it.
fn pod_token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jwt_from_claims(&serde_json::json!({
        "iss": TEST_ISSUER,
        "sub": "system:serviceaccount:shop:cart",
        "aud": [TEST_AUDIENCE],
        "exp": now + 86_400,
        "iat": now,
        "kubernetes.io": {
            "namespace": "shop",
            "serviceaccount": {"name": "cart", "uid": "5f1c0d1e-0000-4000-8000-000000000001"},
            "pod": {"name": "cart-7f9c-abcde", "uid": "5f1c0d1e-0000-4000-8000-000000000002"},
        },
    }))
}

fn yaml() -> String {
    format!(
        "region: eu-west-1\nprofiles:\n  base: '{BASE}'\n  \
         tagged:\n    role_arn: '{TAGGED}'\n    source_profile: base\n    \
         tags: {{team: shop, cost-center: '1234', empty: ''}}\n    \
         transitive_tag_keys: [team]\n    source_identity: cart-service\n    \
         kubernetes_tags: true\n  \
         plain: {{role_arn: '{PLAIN}', source_profile: base}}\n"
    )
}

/// The form parameters of the first request for `role` whose name starts
/// with `prefix`, in the order sent.
fn params(sts: &FakeSts, role: &str, prefix: &str) -> Vec<(String, String)> {
    sts.requests_for_role(role)[0]
        .params
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .cloned()
        .collect()
}

/// The fake STS, a pod-bound token and the configuration of [`yaml`].
struct Tagged {
    sts: FakeSts,
    token: TokenDir,
    out: tempfile::TempDir,
    _cfg: ConfigDir,
    config: Config,
}

impl Tagged {
    fn new() -> Tagged {
        let sts = FakeSts::granting(Duration::from_secs(3600));
        let token = TokenDir::new(&pod_token());
        let out = tempfile::tempdir().unwrap();
        let cfg = ConfigDir::plain(&yaml());
        let flags = Flags {
            config: Some(cfg.path()),
            region: None,
            ..test_flags(&sts, &token, out.path(), &[])
        };
        let config = Config::load(&flags, &Env::new()).expect("valid");
        Tagged {
            sts,
            token,
            out,
            _cfg: cfg,
            config,
        }
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn a_chained_call_sends_exactly_the_configured_tags_and_source_identity() {
    let Tagged {
        sts,
        token: _token,
        out: _out,
        _cfg,
        config,
    } = Tagged::new();
    let report = rolecall::once(&config, &test_options()).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // Sorted by key: the profile's tags and the four Kubernetes ones.
    assert_eq!(
        params(&sts, TAGGED, "Tags.member."),
        pairs(&[
            ("Tags.member.1.Key", "cost-center"),
            ("Tags.member.1.Value", "1234"),
            ("Tags.member.2.Key", "empty"),
            ("Tags.member.2.Value", ""),
            ("Tags.member.3.Key", "kubernetes-namespace"),
            ("Tags.member.3.Value", "shop"),
            ("Tags.member.4.Key", "kubernetes-pod-name"),
            ("Tags.member.4.Value", "cart-7f9c-abcde"),
            ("Tags.member.5.Key", "kubernetes-pod-uid"),
            (
                "Tags.member.5.Value",
                "5f1c0d1e-0000-4000-8000-000000000002"
            ),
            ("Tags.member.6.Key", "kubernetes-service-account"),
            ("Tags.member.6.Value", "cart"),
            ("Tags.member.7.Key", "team"),
            ("Tags.member.7.Value", "shop"),
        ])
    );
    assert_eq!(
        params(&sts, TAGGED, "TransitiveTagKeys."),
        pairs(&[
            ("TransitiveTagKeys.member.1", "team"),
            ("TransitiveTagKeys.member.2", "kubernetes-namespace"),
            ("TransitiveTagKeys.member.3", "kubernetes-service-account"),
            ("TransitiveTagKeys.member.4", "kubernetes-pod-name"),
            ("TransitiveTagKeys.member.5", "kubernetes-pod-uid"),
        ])
    );
    assert_eq!(
        params(&sts, TAGGED, "SourceIdentity"),
        pairs(&[("SourceIdentity", "cart-service")])
    );
    // Signed with base's session (AssumeRole), not the token.
    let req = &sts.requests_for_role(TAGGED)[0];
    assert_eq!(req.action, "AssumeRole");
    assert!(req.token.is_none());
    // Neither the web-identity hop nor an untagged chained profile sends any.
    for role in [BASE, PLAIN] {
        for prefix in ["Tags.", "TransitiveTagKeys.", "SourceIdentity"] {
            assert!(
                params(&sts, role, prefix).is_empty(),
                "{role} sent {prefix}"
            );
        }
    }
}

#[test]
fn bad_tags_are_exit_64_with_every_problem_before_any_call() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&pod_token());
    let out = tempfile::tempdir().unwrap();
    let many: String = (0..48).map(|i| format!("t{i}: v, ")).collect();
    let cfg = ConfigDir::plain(&format!(
        "region: eu-west-1\nprofiles:\n  base: '{BASE}'\n  \
         direct: {{role_arn: '{PLAIN}', tags: {{team: x}}}}\n  \
         tagged:\n    role_arn: '{TAGGED}'\n    source_profile: base\n    \
         tags: {{'aws:x': a, 'bad,key': b, team: 'semi;colon', Team: c, kubernetes-namespace: d}}\n    \
         transitive_tag_keys: [nope]\n    source_identity: x\n    kubernetes_tags: true\n  \
         crowded: {{role_arn: '{PLAIN}', source_profile: base, kubernetes_tags: true, tags: {{ {many} }}}}\n"
    ));
    let run = run_for(
        rolecall_piped()
            .arg("once")
            .args(["--config", &cfg.path().display().to_string()])
            .args(["--token-file", &token.path().display().to_string()])
            .args(["--output-dir", &out.path().display().to_string()])
            .args(["--sts-endpoint", &sts.endpoint()]),
        Duration::from_secs(30),
    );
    run.assert_says(
        64,
        &[
            "profiles.direct.tags.team: session tags and source_identity apply to chained profiles only",
            "the aws: prefix is reserved",
            "tag key \"bad,key\"",
            "tag value \"semi;colon\"",
            "tag key \"Team\" is given twice",
            "tag key \"kubernetes-namespace\" is one kubernetes_tags sets",
            "\"nope\" is not one of the profile's tag keys",
            "source_identity \"x\" must be 2-64",
            "52 session tags with kubernetes_tags' 4: STS allows at most 50",
        ],
        "bad tags",
    );
    assert_eq!(sts.calls(), 0);
}

#[test]
fn check_names_the_extra_trust_permissions_tags_and_source_identity_need() {
    let token = TokenDir::new(&pod_token());
    let cfg = ConfigDir::plain(&yaml());
    let o = rolecall_command()
        .args(["check", "--config", &cfg.path().display().to_string()])
        .args(["--token-file", &token.path().display().to_string()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let tagged = &out[out.find("profile tagged").expect("tagged")..];
    let tagged = &tagged[..tagged.find("\nprofile ").unwrap_or(tagged.len())];
    assert!(
        tagged.contains("it sends session tags and a source identity: the trust policy must also allow sts:TagSession and sts:SetSourceIdentity"),
        "{tagged}"
    );
    for action in [
        "\"sts:AssumeRole\"",
        "\"sts:TagSession\"",
        "\"sts:SetSourceIdentity\"",
    ] {
        assert!(tagged.contains(action), "{action}: {tagged}");
    }
    let plain = &out[out.find("profile plain").expect("plain")..];
    let plain = &plain[..plain.find("\nprofile ").unwrap_or(plain.len())];
    assert!(!plain.contains("sts:TagSession"), "{plain}");
}

#[tokio::test]
async fn kubernetes_tags_without_a_readable_token_send_nothing_untagged() {
    let Tagged {
        sts,
        token,
        out,
        _cfg,
        config,
    } = Tagged::new();
    let running = Running::start(config, test_options());
    assert!(wait_until(Duration::from_secs(10), || sts.calls_for_role(TAGGED) == 1).await);
    token.remove_token();
    running
        .controls
        .send(rolecall::Command::refresh_all())
        .await
        .unwrap();
    // plain (no kubernetes_tags) refreshes on base's session; tagged, which
    // needs the pod's claims, does not call STS at all.
    assert!(wait_until(Duration::from_secs(10), || sts.calls_for_role(PLAIN) == 2).await);
    let status = || {
        let text = std::fs::read_to_string(out.path().join("status.json")).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(10), || {
            status()["profiles"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "tagged"))
                .and_then(|p| {
                    p["last_error"]
                        .as_str()
                        .map(|e| e.starts_with("TokenUnavailable"))
                })
                .unwrap_or(false)
        })
        .await,
        "{}",
        status()
    );
    assert_eq!(sts.calls_for_role(TAGGED), 1);
    running.stop().await;
}
