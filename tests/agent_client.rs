//! The Pod Identity agent's client (`rolecall::agent::Agent`) against the
//! fake agent: every row of design24 §2.4, each answer's class and code,
//! what the agent received (the raw token, the exact `Host`, one call per
//! fetch), the metrics, and that no token reaches an error.

mod support;

use std::time::Duration;

use rolecall::agent::{Agent, hint};
use rolecall::metrics::Metrics;
use rolecall::sts::{ErrorClass, StsError};
use support::fake_agent::{Field, token_digest};
use support::*;

fn pod_token() -> String {
    jwt(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
        "system:serviceaccount:shop:cart",
        "pods.eks.amazonaws.com",
        now_unix() + 86_400,
    )
}

/// The failure of one fetch answered with `reply`; the agent saw one call.
async fn failure(reply: AgentReply) -> StsError {
    let agent = FakeAgent::start_local();
    agent.script(vec![reply]);
    let token = pod_token();
    let e = Agent::new(&agent.url()).fetch(&token).await.unwrap_err();
    assert_eq!(agent.calls(), 1, "one call per fetch, no retry of its own");
    assert!(!e.message.contains(&token) && !format!("{e:?}").contains(&token));
    e
}

fn class_code(e: &StsError) -> (ErrorClass, &str) {
    (e.class, e.code.as_str())
}

#[tokio::test]
async fn a_session_from_the_agent_with_the_raw_token_and_the_exact_host() {
    let agent = FakeAgent::start_local();
    let token = pod_token();
    let metrics = Metrics::new();
    let client = Agent::new(&agent.url()).with_metrics(metrics.clone());
    let answer = client.fetch_answer(&token).await.unwrap();
    let issued = agent.issued_credentials();
    assert_eq!(issued.len(), 1);
    let s = &answer.assumed.session;
    assert_eq!(s.access_key_id.expose(), issued[0].access_key_id);
    assert_eq!(s.secret_access_key.expose(), issued[0].secret_access_key);
    assert_eq!(s.session_token.expose(), issued[0].session_token);
    assert_eq!(
        s.expiration, issued[0].expiration,
        "fractional seconds kept"
    );
    assert_eq!(s.assumed_role_arn, None);
    assert_eq!(
        answer.account_id.as_deref(),
        Some(issued[0].account_id.as_str())
    );
    let calls = agent.call_log();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("GET", "/v1/credentials")
    );
    assert_eq!(
        call.token_digest,
        Some(token_digest(&token)),
        "the raw token"
    );
    let authority = agent.url()["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(agent.hosts_seen(), [authority]);
    let header = |name: &str| {
        call.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("connection").as_deref(), Some("close"));
    assert_eq!(header("accept").as_deref(), Some("application/json"));
    assert!(header("user-agent").unwrap().starts_with("rolecall/"));
    assert_eq!(
        metrics.value(r#"rolecall_agent_responses_total{status="200"}"#),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("rolecall_agent_request_duration_seconds_count"),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_agent_s_cache_answers_the_same_keys_for_the_same_token() {
    let agent = FakeAgent::start_local();
    agent.set_default(AgentReply::cached());
    let client = Agent::new(&agent.url());
    let token = pod_token();
    let a = client.fetch(&token).await.unwrap().session;
    let b = client.fetch(&token).await.unwrap().session;
    assert_eq!(a, b, "equal sessions: the chained profiles stay asleep");
    agent.renew();
    let c = client.fetch(&token).await.unwrap().session;
    assert_ne!(a, c);
}

#[tokio::test]
async fn the_agent_s_refusals_are_configuration_token_or_transient() {
    let e = failure(AgentReply::no_association()).await;
    assert_eq!(
        class_code(&e),
        (ErrorClass::Configuration, "ResourceNotFoundException")
    );
    assert!(e.request_id.is_some(), "the agent's request id");
    assert!(e.message.contains("404"), "{}", e.message);
    let e = failure(AgentReply::access_denied()).await;
    assert_eq!(
        class_code(&e),
        (ErrorClass::Configuration, "AccessDeniedException")
    );
    let e = failure(AgentReply::invalid_token()).await;
    assert_eq!(class_code(&e), (ErrorClass::Token, "InvalidTokenException"));
    let e = failure(AgentReply::expired_token()).await;
    assert_eq!(class_code(&e), (ErrorClass::Token, "ExpiredTokenException"));
    for reply in [AgentReply::throttle(), AgentReply::eks_throttle()] {
        let e = failure(reply).await;
        assert_eq!(
            class_code(&e),
            (ErrorClass::Transient, "ThrottlingException")
        );
    }
    let e = failure(AgentReply::server_error()).await;
    assert_eq!(
        class_code(&e),
        (ErrorClass::Transient, "InternalServerException")
    );
    let e = failure(AgentReply::unavailable()).await;
    assert_eq!(
        class_code(&e),
        (ErrorClass::Transient, "ServiceUnavailableException")
    );
    let e = failure(AgentReply::error(502, "Bad Gateway")).await;
    assert_eq!(class_code(&e), (ErrorClass::Transient, "AgentError"));
    let e = failure(AgentReply::error(418, "\u{1b}[2J teapot")).await;
    assert_eq!(class_code(&e), (ErrorClass::Configuration, "AgentError"));
    assert!(!e.message.contains('\u{1b}'), "{}", e.message);
}

#[tokio::test]
async fn a_token_the_agent_does_not_take_is_refused_as_the_token() {
    let agent = FakeAgent::start_local();
    let token = TokenDir::new(&pod_token());
    agent.accept_token_file(&token.path());
    let client = Agent::new(&agent.url());
    let e = client
        .fetch(&pod_token().replace('a', "b"))
        .await
        .unwrap_err();
    assert_eq!(class_code(&e), (ErrorClass::Token, "InvalidTokenException"));
    let current = std::fs::read_to_string(token.path()).unwrap();
    assert!(client.fetch(current.trim()).await.is_ok());
    let e = client.fetch("").await.unwrap_err();
    assert_eq!(class_code(&e), (ErrorClass::Configuration, "AgentError"));
    assert!(e.message.contains("cannot be empty"), "{}", e.message);
}

#[tokio::test]
async fn only_the_agent_s_own_addresses_are_answered() {
    let agent = FakeAgent::start_local();
    agent.require_agent_host();
    let e = Agent::new(&agent.url())
        .fetch(&pod_token())
        .await
        .unwrap_err();
    assert_eq!(
        class_code(&e),
        (ErrorClass::Configuration, "AgentHostRefused")
    );
    let h = hint(&e.code, &agent.url(), None).unwrap();
    assert!(
        h.contains("169.254.170.23") && h.contains("pod_identity_endpoint"),
        "{h}"
    );
}

#[tokio::test]
async fn answers_without_usable_keys_are_malformed() {
    for reply in [
        AgentReply::Garbage,
        AgentReply::Huge { bytes: 100_000 },
        AgentReply::Missing(Field::AccessKeyId),
        AgentReply::Missing(Field::SecretAccessKey),
        AgentReply::Missing(Field::Token),
        AgentReply::Missing(Field::Expiration),
        AgentReply::Empty(Field::AccessKeyId),
        AgentReply::Empty(Field::Token),
        AgentReply::Empty(Field::Expiration),
    ] {
        let what = format!("{reply:?}");
        let e = failure(reply).await;
        assert_eq!(
            class_code(&e),
            (ErrorClass::Transient, "MalformedResponse"),
            "{what}"
        );
    }
    let agent = FakeAgent::start_local();
    agent.script(vec![AgentReply::Missing(Field::AccountId)]);
    let answer = Agent::new(&agent.url())
        .fetch_answer(&pod_token())
        .await
        .unwrap();
    assert_eq!(answer.account_id, None, "AccountId is optional");
}

#[tokio::test]
async fn a_stale_answer_is_read_and_left_to_the_refresher_to_refuse() {
    let agent = FakeAgent::start_local();
    agent.script(vec![AgentReply::Stale {
        expired_ago: Duration::from_secs(60),
    }]);
    let s = Agent::new(&agent.url())
        .fetch(&pod_token())
        .await
        .unwrap()
        .session;
    assert!(s.expiration < std::time::SystemTime::now());
}

#[tokio::test]
async fn no_agent_a_reset_and_the_rate_limit_are_transient() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/credentials", free.local_addr().unwrap());
    drop(free);
    let metrics = Metrics::new();
    let e = Agent::new(&url)
        .with_metrics(metrics.clone())
        .fetch(&pod_token())
        .await
        .unwrap_err();
    assert_eq!(class_code(&e), (ErrorClass::Transient, "ConnectionError"));
    assert_eq!(
        metrics.value(r#"rolecall_agent_responses_total{status="error"}"#),
        Some(1.0)
    );
    let h = hint(&e.code, &url, None).unwrap();
    assert!(
        h.contains("eks-pod-identity-agent") && h.contains("NetworkPolicy"),
        "{h}"
    );
    let e = failure(AgentReply::Reset).await;
    assert_eq!(class_code(&e), (ErrorClass::Transient, "ConnectionError"));
    let agent = FakeAgent::start_local();
    agent.set_rate_limit(0.001, 1);
    let client = Agent::new(&agent.url()).with_metrics(metrics.clone());
    assert!(client.fetch(&pod_token()).await.is_ok());
    let e = client.fetch(&pod_token()).await.unwrap_err();
    assert_eq!(
        class_code(&e),
        (ErrorClass::Transient, "ThrottlingException")
    );
    assert_eq!(agent.throttled(), 1);
    assert_eq!(
        metrics.value(r#"rolecall_agent_responses_total{status="429"}"#),
        Some(1.0)
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_hangs_times_out_and_a_slow_one_is_waited_for() {
    let agent = FakeAgent::start_local();
    agent.script(vec![
        AgentReply::Hang,
        AgentReply::Slow {
            delay: Duration::from_secs(8),
        },
        AgentReply::Slow {
            delay: Duration::from_secs(11),
        },
    ]);
    let client = Agent::new(&agent.url());
    let token = pod_token();
    let started = tokio::time::Instant::now();
    let e = client.fetch(&token).await.unwrap_err();
    assert_eq!(class_code(&e), (ErrorClass::Transient, "Timeout"));
    assert_eq!(started.elapsed(), rolecall::agent::ATTEMPT_TIMEOUT);
    let h = hint(&e.code, &agent.url(), None).unwrap();
    assert!(h.contains("169.254.170.23:80"), "{h}");
    assert!(client.fetch(&token).await.is_ok(), "8 s is within the 10 s");
    let e = client.fetch(&token).await.unwrap_err();
    assert_eq!(e.code, "Timeout");
    assert_eq!(agent.calls(), 3);
}
