//! The base profile under `identity: pod-identity`: its session comes from
//! the agent (a local stand-in here), through its own pacer gate.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::watch;

use super::*;
use crate::agent::tests::{agent_script, respond};
use crate::agent::{AUDIENCE, Agent};
use crate::state::Lookup;

const OK: &str = r#"{"AccessKeyId":"ASIAAGENT","SecretAccessKey":"agent-secret","Token":"agent-session","AccountId":"111122223333","Expiration":"2099-01-01T00:00:00.25Z"}"#;

/// A token for `aud`, valid for an hour, in a file of `dir`.
fn token_file(dir: &tempfile::TempDir, aud: &str) -> PathBuf {
    let exp = crate::session::unix_seconds(std::time::SystemTime::now()) + 3600;
    let claims = format!(
        r#"{{"iss":"https://oidc.eks.eu-west-1.amazonaws.com/id/X","sub":"system:serviceaccount:shop:cart","aud":["{aud}"],"exp":{exp}}}"#
    );
    let jwt = format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let path = dir.path().join("eks-pod-identity-token");
    std::fs::write(&path, jwt).unwrap();
    path
}

fn base() -> Arc<Profile> {
    Arc::new(Profile {
        pod_identity: true,
        ..Profile::new(crate::config::POD_IDENTITY_PROFILE, "")
    })
}

fn context(url: &str, token_file: PathBuf) -> Context {
    let metrics = Metrics::new();
    Context {
        shared: Shared::with_metrics(metrics.clone()),
        metrics: metrics.clone(),
        pacer: Arc::default(),
        sts: Sts::new(Duration::from_secs(1)),
        agent: Some(Arc::new(Agent::new(url).with_metrics(metrics))),
        token_file,
        jitter: crate::schedule::no_jitter,
        spread: crate::schedule::no_jitter,
        token_changed: watch::channel(0).1,
        config_reloaded: watch::channel(0).1,
        clock: Clock::system(),
        once: false,
    }
}

#[tokio::test]
async fn the_base_session_comes_from_the_agent_and_a_failure_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let nf = "[r1]: (ResourceNotFoundException): no association, fault: client\n";
    let (url, mut requests) = agent_script(vec![
        Some(respond("200 OK", OK)),
        Some(respond("404 Not Found", nf)),
        Some(respond("200 OK", "{\"AccessKeyId\":1}")),
    ])
    .await;
    let ctx = context(&url, token_file(&dir, AUDIENCE));
    let p = base();
    ctx.shared.register(p.clone(), None);
    let mut r = Refresher::new(p.clone(), ctx.clone());
    assert_eq!(&*r.endpoint, url.as_str(), "the agent's gate");
    assert!(r.attempt().await.is_success());
    let request = requests.recv().await.unwrap();
    let token = std::fs::read_to_string(&ctx.token_file).unwrap();
    assert!(
        request.contains(&format!("authorization: {token}\r\n")),
        "{request}"
    );
    let live = |ctx: &Context| match ctx.shared.credentials_for(&p.name, ctx.clock.now()) {
        Lookup::Live { session, .. } => session.access_key_id.expose().to_owned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(live(&ctx), "ASIAAGENT");
    let m = &ctx.metrics;
    assert_eq!(
        m.value(r#"rolecall_agent_responses_total{status="200"}"#),
        Some(1.0)
    );
    assert_eq!(
        m.value("rolecall_sts_request_duration_seconds_count"),
        Some(0.0)
    );
    // No association: a configuration error, retried in 5 minutes; the
    // session stays.
    let o = r.attempt().await;
    assert_eq!(
        o,
        Outcome::Failed {
            class: ErrorClass::Configuration,
            next: crate::schedule::CONFIG_RETRY
        }
    );
    assert_eq!(live(&ctx), "ASIAAGENT");
    // An unreadable answer: transient, the agent's gate only.
    let o = r.attempt().await;
    assert!(
        matches!(
            o,
            Outcome::Failed {
                class: ErrorClass::Transient,
                ..
            }
        ),
        "{o:?}"
    );
    assert_eq!(live(&ctx), "ASIAAGENT");
    assert!(ctx.pacer.is_down(&url));
    assert!(!ctx.pacer.is_down(""), "the STS gate is open");
}

#[tokio::test]
async fn the_agent_s_429_holds_only_the_agent_s_gate() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _requests) = agent_script(vec![Some(respond(
        "429 Too Many Requests",
        "Too Many Requests\n",
    ))])
    .await;
    let ctx = context(&url, token_file(&dir, AUDIENCE));
    let p = base();
    ctx.shared.register(p.clone(), None);
    let mut r = Refresher::new(p, ctx.clone());
    let o = r.attempt().await;
    assert!(
        matches!(
            o,
            Outcome::Failed {
                class: ErrorClass::Transient,
                ..
            }
        ),
        "{o:?}"
    );
    assert_eq!(ctx.metrics.value("rolecall_sts_throttled_total"), Some(1.0));
    assert_eq!(
        ctx.metrics
            .value(r#"rolecall_agent_responses_total{status="429"}"#),
        Some(1.0)
    );
    assert_eq!(ctx.pacer.level(), 0, "STS calls are not slowed");
    assert!(ctx.pacer.is_down(&url), "the agent is held");
    assert!(o.next() > Duration::ZERO);
}

#[tokio::test]
async fn a_token_for_another_audience_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let refused = "[r2]: (InvalidTokenException): bad audience, fault: client\n";
    let (url, _requests) = agent_script(vec![Some(respond("400 Bad Request", refused))]).await;
    let ctx = context(&url, token_file(&dir, "sts.amazonaws.com"));
    let p = base();
    ctx.shared.register(p.clone(), None);
    let o = Refresher::new(p.clone(), ctx.clone()).attempt().await;
    assert!(
        matches!(
            o,
            Outcome::Failed {
                class: ErrorClass::Configuration,
                ..
            }
        ),
        "{o:?}"
    );
    let ctx = context(&url, token_file(&dir, AUDIENCE));
    ctx.shared.register(p.clone(), None);
    let o = Refresher::new(p, ctx).attempt().await;
    assert!(
        matches!(
            o,
            Outcome::Failed {
                class: ErrorClass::Token,
                ..
            }
        ),
        "{o:?}"
    );
}

#[tokio::test]
async fn no_token_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut requests) = agent_script(vec![Some(respond("200 OK", OK))]).await;
    let ctx = context(&url, dir.path().join("missing"));
    let p = base();
    ctx.shared.register(p.clone(), None);
    let o = Refresher::new(p, ctx.clone()).attempt().await;
    assert!(
        matches!(
            o,
            Outcome::Failed {
                class: ErrorClass::Token,
                ..
            }
        ),
        "{o:?}"
    );
    assert!(requests.try_recv().is_err(), "nothing was sent");
    assert_eq!(
        ctx.metrics
            .value("rolecall_agent_request_duration_seconds_count"),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_stale_answer_never_replaces_a_valid_session() {
    let dir = tempfile::tempdir().unwrap();
    let stale = r#"{"AccessKeyId":"ASIASTALE","SecretAccessKey":"s","Token":"t","Expiration":"2020-01-01T00:00:00Z"}"#;
    let (url, _requests) = agent_script(vec![
        Some(respond("200 OK", OK)),
        Some(respond("200 OK", stale)),
    ])
    .await;
    let ctx = context(&url, token_file(&dir, AUDIENCE));
    let p = base();
    ctx.shared.register(p.clone(), None);
    let mut r = Refresher::new(p.clone(), ctx.clone());
    assert!(r.attempt().await.is_success());
    let o = r.attempt().await;
    assert!(
        matches!(
            o,
            Outcome::Failed {
                class: ErrorClass::Clock,
                ..
            }
        ),
        "{o:?}"
    );
    match ctx.shared.credentials_for(&p.name, ctx.clock.now()) {
        Lookup::Live { session, .. } => assert_eq!(session.access_key_id.expose(), "ASIAAGENT"),
        other => panic!("{other:?}"),
    }
    ctx.shared.set_source(Some(url.clone()));
    let error = ctx.shared.source().unwrap().last_error.unwrap();
    assert!(
        error.starts_with(
            "ExpiredOnArrival: the Pod Identity agent returned credentials expiring at 2020-01-01"
        ),
        "{error}"
    );
}
