use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::codes::{classify_status, exception_name, status_label, with_audience};
use super::request::Target;
use super::*;
use crate::sts::ErrorClass;
use crate::token::Claims;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJlLXNlY3JldA";

#[test]
fn the_host_header_is_the_authority_exactly_and_the_address_an_ip_literal() {
    let t = Target::parse(DEFAULT_ENDPOINT).unwrap();
    assert_eq!(t.host, "169.254.170.23");
    assert_eq!(t.addr, "169.254.170.23:80".parse().unwrap());
    assert_eq!(t.path, "/v1/credentials");
    let t = Target::parse("http://[fd00:ec2::23]/v1/credentials").unwrap();
    assert_eq!(t.host, "[fd00:ec2::23]");
    assert_eq!(t.addr, "[fd00:ec2::23]:80".parse().unwrap());
    let t = Target::parse("http://[fd00:ec2::23]:8080/v1/credentials").unwrap();
    assert_eq!(t.host, "[fd00:ec2::23]:8080", "the port only when given");
    assert_eq!(t.addr.port(), 8080);
    let t = Target::parse("HTTP://127.0.0.1:4567/creds").unwrap();
    assert_eq!((t.host.as_str(), t.addr.port()), ("127.0.0.1:4567", 4567));
    let t = Target::parse("http://localhost:9").unwrap();
    assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
    assert_eq!((t.host.as_str(), t.path.as_str()), ("localhost:9", "/"));
    for bad in [
        "https://169.254.170.23/v1/credentials",
        "http://agent.local/v1/credentials",
        "http://user@169.254.170.23/v1/credentials",
        "http://169.254.170.23/v1/credentials?x=1",
        "http://169.254.170.23/v1/credentials#f",
        "http://169.254.170.23:0/",
        "http://169.254.170.23:99999/",
        "http://[fd00:ec2::23/",
        "http://[nope]/",
        "169.254.170.23/v1/credentials",
        "",
    ] {
        assert!(Target::parse(bad).is_err(), "{bad}");
    }
}

fn body(fields: &str) -> Vec<u8> {
    format!("{{{fields}}}").into_bytes()
}

const KEYS: &str =
    r#""AccessKeyId":"ASIAAGENT","SecretAccessKey":"agent-secret","Token":"agent-session""#;

#[test]
fn an_answer_is_read_with_fractional_seconds_offsets_and_unknown_fields() {
    let a = answer::parse(&body(&format!(
        r#"{KEYS},"AccountId":"111122223333","Expiration":"2030-01-02T03:04:05.123456789Z","Extra":{{"a":1}}"#
    )))
    .unwrap();
    let s = &a.assumed.session;
    assert_eq!(s.access_key_id.expose(), "ASIAAGENT");
    assert_eq!(s.secret_access_key.expose(), "agent-secret");
    assert_eq!(s.session_token.expose(), "agent-session");
    assert_eq!(s.assumed_role_arn, None);
    assert_eq!(a.account_id.as_deref(), Some("111122223333"));
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_553_445);
    assert_eq!(s.expiration.duration_since(at).unwrap().as_millis(), 123);
    let offset = answer::parse(&body(&format!(
        r#"{KEYS},"Expiration":"2030-01-02T04:04:05+01:00""#
    )))
    .unwrap();
    assert_eq!(offset.assumed.session.expiration, at);
    assert_eq!(offset.account_id, None, "AccountId is optional");
    let odd_account = answer::parse(&body(&format!(
        r#"{KEYS},"AccountId":"12","Expiration":"2030-01-02T03:04:05Z""#
    )))
    .unwrap();
    assert_eq!(odd_account.account_id, None, "not 12 digits: left out");
}

#[test]
fn an_answer_without_usable_keys_is_malformed_and_never_quoted() {
    let exp = r#""Expiration":"2030-01-02T03:04:05Z""#;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            body(&format!(
                r#""SecretAccessKey":"agent-secret","Token":"agent-session",{exp}"#
            )),
            "has no AccessKeyId",
        ),
        (
            body(&format!(
                r#""AccessKeyId":"","SecretAccessKey":"agent-secret","Token":"agent-session",{exp}"#
            )),
            "empty AccessKeyId",
        ),
        (
            body(&format!(
                r#""AccessKeyId":"ASIA","SecretAccessKey":"agent-secret",{exp}"#
            )),
            "has no Token",
        ),
        (
            body(&format!(
                r#""AccessKeyId":"ASIA","SecretAccessKey":"agent secret","Token":"agent-session",{exp}"#
            )),
            "SecretAccessKey with spaces",
        ),
        (
            body(&format!(
                r#""AccessKeyId":"ASIA","SecretAccessKey":"agent-secret","Token":"agent-\nsession",{exp}"#
            )),
            "Token with spaces or control",
        ),
        (body(KEYS), "has no Expiration"),
        (
            body(&format!(r#"{KEYS},"Expiration":"tomorrow""#)),
            "not an RFC 3339 time",
        ),
        (
            body(&format!(r#"{KEYS},"Expiration":12"#)),
            "not the credentials JSON",
        ),
        (
            b"<html>agent-secret</html>".to_vec(),
            "not the credentials JSON",
        ),
        (b"\xff\xfe agent-secret".to_vec(), "not UTF-8"),
        (b"".to_vec(), "not the credentials JSON"),
    ];
    for (bytes, why) in cases {
        let e = answer::parse(&bytes).err().unwrap();
        assert_eq!(e.class, ErrorClass::Transient, "{why}");
        assert_eq!(e.code, "MalformedResponse", "{why}");
        assert!(e.message.contains(why), "{why}: {}", e.message);
        for secret in ["agent-secret", "agent-session", "agent secret"] {
            assert!(!e.message.contains(secret), "{}", e.message);
            assert!(!format!("{e:?}").contains(secret));
        }
    }
}

#[test]
fn every_answer_is_classified_by_status_and_exception() {
    let cases: &[(u16, &str, ErrorClass, &str)] = &[
        (
            429,
            "Too Many Requests\n",
            ErrorClass::Transient,
            "ThrottlingException",
        ),
        (
            400,
            "[r1]: (ThrottlingException): slow down, fault: client\n",
            ErrorClass::Transient,
            "ThrottlingException",
        ),
        (
            500,
            "[r2]: (InternalServerException): boom, fault: server\n",
            ErrorClass::Transient,
            "InternalServerException",
        ),
        (
            503,
            "[r3]: (ServiceUnavailableException): later, fault: server\n",
            ErrorClass::Transient,
            "ServiceUnavailableException",
        ),
        (502, "Bad Gateway", ErrorClass::Transient, "AgentError"),
        (
            400,
            "[r4]: (ExpiredTokenException): expired, fault: client\n",
            ErrorClass::Token,
            "ExpiredTokenException",
        ),
        (
            400,
            "[r5]: (InvalidTokenException): bad, fault: client\n",
            ErrorClass::Token,
            "InvalidTokenException",
        ),
        (
            404,
            "[r6]: (ResourceNotFoundException): no association, fault: client\n",
            ErrorClass::Configuration,
            "ResourceNotFoundException",
        ),
        (
            400,
            "[r7]: (AccessDeniedException): no, fault: client\n",
            ErrorClass::Configuration,
            "AccessDeniedException",
        ),
        (
            400,
            "[r8]: (InvalidRequestException): x, fault: client\n",
            ErrorClass::Configuration,
            "InvalidRequestException",
        ),
        (
            400,
            "[r9]: (InvalidParameterException): x, fault: client\n",
            ErrorClass::Configuration,
            "InvalidParameterException",
        ),
        (
            400,
            "Service account token cannot be empty\n",
            ErrorClass::Configuration,
            "AgentError",
        ),
        (
            403,
            "Access Denied. Called agent through invalid address, please use either [169.254.170.23 fd00:ec2::23] address not 127.0.0.1\n",
            ErrorClass::Configuration,
            "AgentHostRefused",
        ),
        (
            404,
            "404 page not found\n",
            ErrorClass::Configuration,
            "AgentError",
        ),
        (401, "", ErrorClass::Configuration, "AgentError"),
        (302, "", ErrorClass::Transient, "AgentError"),
    ];
    for (status, text, class, code) in cases {
        let e = classify_status(*status, text.as_bytes());
        assert_eq!(
            (e.class, e.code.as_str()),
            (*class, *code),
            "{status} {text}"
        );
        assert!(
            e.message
                .starts_with(&format!("the Pod Identity agent answered {status}")),
            "{}",
            e.message
        );
    }
    let e = classify_status(
        404,
        b"[7f3e-11]: (ResourceNotFoundException): none, fault: client\n",
    );
    assert_eq!(e.request_id.as_deref(), Some("7f3e-11"));
    assert_eq!(classify_status(429, b"Too Many Requests").request_id, None);
    assert_eq!(
        exception_name("a (b) (NotAnException!) (FooException): x"),
        Some("FooException")
    );
    assert_eq!(exception_name("(Exception"), None);
    let labels: Vec<_> = [200, 400, 403, 404, 429, 500, 503, 401, 302]
        .map(status_label)
        .into();
    assert_eq!(
        labels,
        [
            "200", "400", "403", "404", "429", "5xx", "5xx", "error", "error"
        ]
    );
}

#[test]
fn an_error_body_is_cut_and_made_printable() {
    let long = format!("\u{1b}[31m{}\r\n\0", "x".repeat(500));
    let e = classify_status(500, long.as_bytes());
    assert!(
        !e.message.contains('\u{1b}') && !e.message.contains('\0') && !e.message.contains('\r')
    );
    assert!(e.message.contains("\\u{1b}"), "{}", e.message);
    assert!(e.message.ends_with("…\""), "{}", e.message);
    assert!(e.message.chars().count() < 300, "{}", e.message);
    let e = classify_status(400, b"\xff\xfe(InvalidTokenException)");
    assert_eq!(e.code, "InvalidTokenException");
}

#[test]
fn a_token_refused_for_another_audience_is_a_configuration_error() {
    let refused = || classify_status(400, b"[r]: (InvalidTokenException): bad, fault: client");
    let pods = vec![AUDIENCE.to_owned()];
    let sts = vec!["sts.amazonaws.com".to_owned()];
    assert_eq!(with_audience(refused(), &pods).class, ErrorClass::Token);
    assert_eq!(
        with_audience(refused(), &sts).class,
        ErrorClass::Configuration
    );
    let other = classify_status(404, b"(ResourceNotFoundException)");
    assert_eq!(with_audience(other, &sts).class, ErrorClass::Configuration);
    let down = classify_status(503, b"");
    assert_eq!(with_audience(down, &sts).class, ErrorClass::Transient);
}

fn claims(aud: &str) -> Claims {
    Claims {
        sub: Some("system:serviceaccount:shop:cart".into()),
        aud: vec![aud.into()],
        ..Claims::default()
    }
}

#[test]
fn hints_name_the_association_the_agent_the_host_and_the_audience() {
    let url = DEFAULT_ENDPOINT;
    let pods = claims(AUDIENCE);
    let h = hint("ResourceNotFoundException", url, Some(&pods)).unwrap();
    assert!(h.contains("--namespace shop --service-account cart"), "{h}");
    assert!(h.contains("aws eks create-pod-identity-association"), "{h}");
    let h = hint("ResourceNotFoundException", url, None).unwrap();
    assert!(
        h.contains("--namespace NAMESPACE --service-account SERVICE_ACCOUNT"),
        "{h}"
    );
    for code in ["ConnectionError", "Timeout"] {
        let h = hint(code, url, None).unwrap();
        assert!(
            h.contains("169.254.170.23:80") && h.contains("NetworkPolicy"),
            "{h}"
        );
    }
    let h = hint("AgentHostRefused", "http://127.0.0.1/v1/credentials", None).unwrap();
    assert!(h.contains("set pod_identity_endpoint"), "{h}");
    let h = hint(
        "InvalidTokenException",
        url,
        Some(&claims("sts.amazonaws.com")),
    )
    .unwrap();
    assert!(
        h.contains("audience is \"sts.amazonaws.com\"") && h.contains(AUDIENCE),
        "{h}"
    );
    let h = hint("InvalidTokenException", url, Some(&pods)).unwrap();
    assert!(h.contains("re-reads"), "{h}");
    // A 429 is the agent's (or EKS Auth's) throttling, not STS's.
    let h = hint("ThrottlingException", url, None).unwrap();
    assert!(
        h.contains("Pod Identity agent is throttling") && !h.contains("STS"),
        "{h}"
    );
    assert!(
        hint("AccessDeniedException", url, None)
            .unwrap()
            .contains("pods.eks.amazonaws.com")
    );
    assert_eq!(
        hint("ExpiredOnArrival", url, None),
        None,
        "the trust hint's"
    );
}

/// An HTTP/1.1 answer with `body`.
pub(crate) fn respond(status: &str, body: &str) -> &'static str {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Box::leak(text.into_boxed_str())
}

/// An agent on 127.0.0.1 that answers each connection with `answer`
/// (`None`: reads the request and never answers), and sends each request
/// it read.
pub(crate) async fn agent_serving(
    answer: Option<&'static str>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    agent_script(vec![answer]).await
}

/// The same, answering the connections in turn with `script`, the last
/// entry again and again.
pub(crate) async fn agent_script(
    script: Vec<Option<&'static str>>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for i in 0.. {
            let (mut conn, _) = listener.accept().await.unwrap();
            let answer = script[i.min(script.len() - 1)];
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&buf[..read]).into_owned());
                match answer {
                    Some(a) => {
                        let _ = conn.write_all(a.as_bytes()).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
    (format!("http://127.0.0.1:{port}/v1/credentials"), rx)
}

#[tokio::test]
async fn one_get_with_the_raw_token_the_exact_host_and_connection_close() {
    let ok = respond(
        "200 OK",
        r#"{"AccessKeyId":"ASIAAGENT","SecretAccessKey":"agent-secret","Token":"agent-session","Expiration":"2099-01-01T00:00:00.5Z"}"#,
    );
    let (url, mut requests) = agent_serving(Some(ok)).await;
    let metrics = Metrics::new();
    let agent = Agent::new(&url).with_metrics(metrics.clone());
    let answer = agent.fetch_answer(TOKEN).await.unwrap();
    assert_eq!(answer.assumed.session.access_key_id.expose(), "ASIAAGENT");
    let request = requests.recv().await.unwrap();
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    assert!(
        request.starts_with("GET /v1/credentials HTTP/1.1\r\n"),
        "{request}"
    );
    for header in [
        format!("host: 127.0.0.1:{port}\r\n"),
        format!("authorization: {TOKEN}\r\n"),
        "accept: application/json\r\n".to_owned(),
        "connection: close\r\n".to_owned(),
        format!("user-agent: rolecall/{}\r\n", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(
            request
                .to_ascii_lowercase()
                .contains(&header.to_ascii_lowercase()),
            "{header} in {request}"
        );
    }
    assert!(!request.to_ascii_lowercase().contains("bearer"));
    assert_eq!(
        metrics.value(r#"rolecall_agent_responses_total{status="200"}"#),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("rolecall_agent_request_duration_seconds_count"),
        Some(1.0)
    );
    let debug = format!("{agent:?}");
    assert!(debug.contains(&url) && !debug.contains(TOKEN), "{debug}");
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_never_answers_times_out_after_the_attempt_timeout() {
    let (url, mut requests) = agent_serving(None).await;
    let metrics = Metrics::new();
    let agent = Agent::new(&url).with_metrics(metrics.clone());
    let started = tokio::time::Instant::now();
    let e = agent.fetch(TOKEN).await.unwrap_err();
    assert_eq!(started.elapsed(), ATTEMPT_TIMEOUT);
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Transient, "Timeout")
    );
    assert!(e.message.contains("within 10 s"), "{}", e.message);
    assert!(requests.recv().await.is_some(), "the request was sent");
    assert_eq!(
        metrics.value(r#"rolecall_agent_responses_total{status="error"}"#),
        Some(1.0)
    );
    assert!(!e.message.contains(TOKEN) && !format!("{e:?}").contains(TOKEN));
}

#[tokio::test]
async fn refused_connections_huge_bodies_and_error_answers_fail_without_the_token() {
    // A port nothing listens on.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/credentials", free.local_addr().unwrap());
    drop(free);
    let e = Agent::new(&url).fetch(TOKEN).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Transient, "ConnectionError")
    );
    assert!(e.message.contains(&url), "{}", e.message);

    let huge: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n{}",
            "x".repeat(70_000)
        )
        .into_boxed_str(),
    );
    let (url, _r) = agent_serving(Some(huge)).await;
    let e = Agent::new(&url).fetch(TOKEN).await.unwrap_err();
    assert_eq!(e.code, "MalformedResponse");
    assert!(e.message.contains("64 KiB"), "{}", e.message);

    let nf = respond(
        "404 Not Found",
        "[id-1]: (ResourceNotFoundException): no association found, fault: client\n",
    );
    let (url, _r) = agent_serving(Some(nf)).await;
    let metrics = Metrics::new();
    let e = Agent::new(&url)
        .with_metrics(metrics.clone())
        .fetch(TOKEN)
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Configuration, "ResourceNotFoundException")
    );
    assert_eq!(e.request_id.as_deref(), Some("id-1"));
    assert_eq!(
        metrics.value(r#"rolecall_agent_responses_total{status="404"}"#),
        Some(1.0)
    );

    let cut = "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"AccessKeyId\":";
    let (url, _r) = agent_serving(Some(cut)).await;
    let e = Agent::new(&url).fetch(TOKEN).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Transient, "ConnectionError")
    );
    assert!(!e.message.contains(TOKEN) && !format!("{e:?}").contains(TOKEN));

    let e = Agent::new("https://169.254.170.23/")
        .fetch(TOKEN)
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str()),
        (ErrorClass::Configuration, "InvalidRequest")
    );
}
