//! `identity: pod-identity` end to end: the real binary against the fake
//! EKS Pod Identity agent (`support::fake_agent`) and the fake STS
//! (design24 §3, integration tests 1-9), and the fake agent itself.

mod support;

use std::time::{Duration, SystemTime};

use support::fake_agent::{AGENT_ACCOUNT, FakeAgent, Field, Reply, token_digest};
use support::*;

// ---------------------------------------------------------------------------
// The fake agent behaves like the real one (F2, F3, F5-F8).

/// One raw `GET` to the fake agent: `(status, content-type, body)`, or
/// `None` when the connection closed without an answer.
async fn get(
    agent: &FakeAgent,
    host: Option<&str>,
    token: Option<&str>,
) -> Option<(u16, String, String)> {
    get_path(agent, "/v1/credentials", host, token).await
}

async fn get_path(
    agent: &FakeAgent,
    path: &str,
    host: Option<&str>,
    token: Option<&str>,
) -> Option<(u16, String, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(agent.addrs()[0])
        .await
        .ok()?;
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\n{host}{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.get(9..12)?.parse().ok()?;
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Some((status, ctype, body.to_owned()))
}

fn parse(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn fake_agent_answers_container_credentials_json() {
    let agent = FakeAgent::start_local();
    agent.set_default(Reply::ok_for(Duration::from_secs(600)));
    let token = valid_jwt();
    let before = SystemTime::now();
    let (status, ctype, body) = get(&agent, None, Some(&token)).await.expect("an answer");
    assert_eq!((status, ctype.as_str()), (200, "application/json"));
    // Go's json.Marshal: compact, the struct's key order.
    let keys: Vec<&str> = body.split('"').skip(1).step_by(4).collect();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "SecretAccessKey",
            "Token",
            "AccountId",
            "Expiration"
        ],
        "{body}"
    );
    let v = parse(&body);
    assert_eq!(v["AccountId"], AGENT_ACCOUNT);
    assert_eq!(
        agent.issued(),
        vec![v["AccessKeyId"].as_str().unwrap().to_owned()]
    );
    let exp = v["Expiration"].as_str().unwrap();
    let (whole, frac) = exp
        .trim_end_matches('Z')
        .split_once('.')
        .expect("a fraction");
    assert!(!frac.is_empty() && !frac.ends_with('0'), "{exp}");
    let exp_t = parse_utc(&format!("{whole}Z"));
    let left = exp_t.duration_since(before).expect("in the future");
    assert!(
        left > Duration::from_secs(590) && left <= Duration::from_secs(601),
        "{exp}"
    );
    // The token is never kept, only its digest.
    let calls = agent.call_log();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].token_digest.as_deref(),
        Some(token_digest(&token).as_str())
    );
    assert!(!format!("{calls:?}{agent:?}").contains(&token));
    assert_eq!(agent.calls_with_token(&token_digest(&token)), 1);
}

#[tokio::test]
async fn fake_agent_checks_the_token_like_the_agent() {
    let agent = FakeAgent::start_local();
    let dir = TokenDir::new(&valid_jwt());
    agent.accept_token_file(&dir.path());
    let (s, ctype, body) = get(&agent, None, None).await.unwrap();
    assert_eq!((s, ctype.as_str()), (400, "text/plain; charset=utf-8"));
    assert_eq!(body, "Service account token cannot be empty\n");
    let (s, _, body) = get(&agent, None, Some("not-a-jwt")).await.unwrap();
    assert_eq!(s, 400);
    assert!(
        body.starts_with("Service account token cannot be parsed"),
        "{body}"
    );
    let (s, _, body) = get(&agent, None, Some(&expired_jwt())).await.unwrap();
    assert_eq!(s, 400);
    assert!(body.contains("token is expired"), "{body}");
    // A valid JWT that is not the file's: EKS Auth's InvalidTokenException.
    let other = valid_jwt_with_sub("system:serviceaccount:other:sa");
    let (s, _, body) = get(&agent, None, Some(&other)).await.unwrap();
    assert_eq!(s, 400);
    assert!(
        body.starts_with('[') && body.contains("]: (InvalidTokenException): "),
        "{body}"
    );
    assert!(body.ends_with(", fault: client\n"), "{body}");
    let (s, _, _) = get(&agent, None, Some(&dir.read())).await.unwrap();
    assert_eq!(s, 200);
    // After a kubelet rotation only the new token is valid.
    let old = dir.read();
    dir.rotate(&valid_jwt_with_sub("system:serviceaccount:default:app2"));
    assert_eq!(get(&agent, None, Some(&old)).await.unwrap().0, 400);
    assert_eq!(get(&agent, None, Some(&dir.read())).await.unwrap().0, 200);
    assert_eq!(agent.statuses(), [400, 400, 400, 400, 200, 400, 200]);
    assert_eq!(agent.issued().len(), 2, "only successes mint keys");
}

#[tokio::test]
async fn fake_agent_checks_the_host_when_asked() {
    let agent = FakeAgent::start_local();
    let token = valid_jwt();
    // Off by default.
    assert_eq!(
        get(&agent, Some("localhost"), Some(&token))
            .await
            .unwrap()
            .0,
        200
    );
    agent.require_agent_host();
    for ok in [
        "169.254.170.23",
        "169.254.170.23:80",
        "[fd00:ec2::23]",
        "[fd00:ec2::23]:80",
    ] {
        assert_eq!(
            get(&agent, Some(ok), Some(&token)).await.unwrap().0,
            200,
            "{ok}"
        );
    }
    let (s, _, body) = get(&agent, Some("127.0.0.1:8080"), Some(&token))
        .await
        .unwrap();
    assert_eq!(s, 403);
    assert_eq!(
        body,
        "Access Denied. Called agent through invalid address, please use either \
         [169.254.170.23 fd00:ec2::23] address not 127.0.0.1\n"
    );
    // The Host check comes before the token check, as in the agent.
    assert_eq!(get(&agent, Some("localhost"), None).await.unwrap().0, 403);
    assert_eq!(
        agent.hosts_seen(),
        [
            "localhost",
            "169.254.170.23",
            "169.254.170.23:80",
            "[fd00:ec2::23]",
            "[fd00:ec2::23]:80",
            "127.0.0.1:8080",
        ]
    );
    let (s, _, body) = get_path(
        &agent,
        "/v2/credentials",
        Some("169.254.170.23"),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!((s, body.as_str()), (404, "404 page not found\n"));
}

#[tokio::test]
async fn fake_agent_plays_its_script_then_the_default() {
    let agent = FakeAgent::start_local();
    let token = valid_jwt();
    agent.script(vec![
        Reply::no_association(),
        Reply::throttle(),
        Reply::server_error(),
        Reply::unavailable(),
        Reply::Garbage,
        Reply::Huge { bytes: 70_000 },
        Reply::Missing(Field::Token),
        Reply::Empty(Field::AccessKeyId),
        Reply::Stale {
            expired_ago: Duration::from_secs(60),
        },
        Reply::Reset,
    ]);
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(get(&agent, None, Some(&token)).await);
    }
    let status = |i: usize| answers[i].as_ref().map(|a| a.0);
    let body = |i: usize| answers[i].as_ref().unwrap().2.clone();
    assert_eq!(status(0), Some(404));
    assert!(
        body(0).contains("(ResourceNotFoundException)"),
        "{}",
        body(0)
    );
    assert_eq!(
        (status(1), body(1).as_str()),
        (Some(429), "Too Many Requests\n")
    );
    assert_eq!(status(2), Some(500));
    assert!(body(2).contains("(InternalServerException)") && body(2).contains("fault: server"));
    assert_eq!(status(3), Some(503));
    assert!(body(3).contains("(ServiceUnavailableException)"));
    assert_eq!(status(4), Some(200));
    assert!(serde_json::from_str::<serde_json::Value>(&body(4)).is_err());
    assert_eq!(status(5), Some(200));
    assert_eq!(body(5).len(), 70_000);
    assert!(
        parse(&body(5))["AccessKeyId"].is_string(),
        "valid, only too big"
    );
    assert!(parse(&body(6)).get("Token").is_none());
    assert_eq!(parse(&body(7))["AccessKeyId"], "");
    let stale = parse(&body(8))["Expiration"].as_str().unwrap().to_owned();
    let stale = parse_utc(&format!("{}Z", stale.split('.').next().unwrap()));
    assert!(stale < SystemTime::now());
    assert!(answers[9].is_none(), "Reset: no answer");
    assert_eq!(get(&agent, None, Some(&token)).await.unwrap().0, 200);
    assert_eq!(agent.calls(), 11);
    assert_eq!(agent.statuses()[9], 0);
}

#[tokio::test]
async fn fake_agent_cache_returns_the_same_keys_per_token() {
    let agent = FakeAgent::start_local();
    agent.set_default(Reply::cached());
    let a = valid_jwt();
    let b = valid_jwt_with_sub("system:serviceaccount:default:other");
    let key = |body: &str| parse(body)["AccessKeyId"].as_str().unwrap().to_owned();
    let a1 = key(&get(&agent, None, Some(&a)).await.unwrap().2);
    let a2 = key(&get(&agent, None, Some(&a)).await.unwrap().2);
    let b1 = key(&get(&agent, None, Some(&b)).await.unwrap().2);
    assert_eq!(a1, a2);
    assert_ne!(a1, b1);
    agent.renew();
    let a3 = key(&get(&agent, None, Some(&a)).await.unwrap().2);
    assert_ne!(a1, a3);
    assert_eq!(agent.issued(), [a1, b1, a3]);
}

#[tokio::test]
async fn fake_agent_rate_limit_comes_first() {
    let agent = FakeAgent::start_local();
    agent.set_rate_limit(0.001, 2);
    let token = valid_jwt();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&agent, None, Some(&token)).await.unwrap().0);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(agent.throttled(), 2);
    // Even an empty token is throttled, not refused.
    assert_eq!(get(&agent, None, None).await.unwrap().0, 429);
}

#[tokio::test]
async fn fake_agent_hang_and_slow_and_waiting() {
    let agent = FakeAgent::start_local();
    agent.script(vec![
        Reply::Hang,
        Reply::Slow {
            delay: Duration::from_millis(200),
        },
    ]);
    let token = valid_jwt();
    let hung = {
        let agent = agent.clone();
        let token = token.clone();
        tokio::spawn(async move { get(&agent, None, Some(&token)).await })
    };
    assert!(agent.wait_for_calls(1, Duration::from_secs(5)).await);
    let started = std::time::Instant::now();
    assert_eq!(get(&agent, None, Some(&token)).await.unwrap().0, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(!hung.is_finished());
    assert!(!agent.wait_for_calls(3, Duration::from_millis(50)).await);
    hung.abort();
    let blocking = agent.clone();
    let waited =
        std::thread::spawn(move || blocking.wait_for_calls_blocking(3, Duration::from_secs(5)));
    assert_eq!(get(&agent, None, Some(&token)).await.unwrap().0, 200);
    assert!(
        tokio::task::spawn_blocking(move || waited.join().unwrap())
            .await
            .unwrap()
    );
}

#[test]
fn fake_agent_serves_several_addresses_from_its_own_thread() {
    let agent = FakeAgent::start_on(&[
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    ]);
    let addrs = agent.addrs();
    assert_eq!(addrs.len(), 2);
    assert_eq!(agent.url(), format!("http://{}/v1/credentials", addrs[0]));
    assert_eq!(
        FakeAgent::url_for("169.254.170.23:80".parse().unwrap()),
        "http://169.254.170.23/v1/credentials"
    );
    assert_eq!(
        FakeAgent::url_for("[fd00:ec2::23]:80".parse().unwrap()),
        "http://[fd00:ec2::23]/v1/credentials"
    );
    let token = valid_jwt();
    for addr in addrs {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /v1/credentials HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    assert!(agent.wait_for_calls_blocking(2, Duration::from_secs(5)));
}
