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

// ---------------------------------------------------------------------------
// The sidecar under `identity: pod-identity` (design24 §3, tests 1-9).

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";
const AUDITOR: &str = "arn:aws:iam::111122223333:role/auditor";
const WAIT: Duration = Duration::from_secs(20);

/// A Pod Identity token for `shop/cart` (audience pods.eks.amazonaws.com),
/// valid for a day; `n` makes each one different.
fn pod_token(n: u32) -> String {
    jwt(
        TEST_ISSUER,
        &format!("system:serviceaccount:shop:cart{n}"),
        rolecall::agent::AUDIENCE,
        now_unix() + 24 * 3600,
    )
}

/// A pod on a Pod Identity cluster: the agent (taking only the token
/// file's current content), STS, the projected token and the output dir.
struct Pod {
    agent: FakeAgent,
    sts: FakeSts,
    token: TokenDir,
    out: tempfile::TempDir,
}

impl Pod {
    /// Agent and STS on their own threads (for the binary).
    fn new() -> Pod {
        Pod::with(FakeAgent::start(), FakeSts::start())
    }

    fn with(agent: FakeAgent, sts: FakeSts) -> Pod {
        let token = TokenDir::new(&pod_token(0));
        agent.accept_token_file(&token.path());
        Pod {
            agent,
            sts,
            token,
            out: tempfile::tempdir().unwrap(),
        }
    }

    /// The options every run needs, as flags, in file mode.
    fn args(&self) -> Vec<String> {
        self.args_in(TEST_MODE)
    }

    /// [`Pod::args`] with `--credentials MODE`.
    fn args_in(&self, mode: &str) -> Vec<String> {
        vec![
            "--identity".into(),
            "pod-identity".into(),
            "--pod-identity-endpoint".into(),
            self.agent.url(),
            "--pod-identity-token-file".into(),
            self.token.path().display().to_string(),
            "--output-dir".into(),
            self.out.path().display().to_string(),
            "--region".into(),
            "eu-west-1".into(),
            "--sts-endpoint".into(),
            self.sts.endpoint(),
            "--credentials".into(),
            mode.into(),
        ]
    }

    /// `rolecall run` publishing `profiles`, plus `extra`.
    fn run(&self, profiles: &[(&str, &str)], extra: &[&str]) -> ChildSidecar {
        self.run_in(TEST_MODE, profiles, extra)
    }

    /// [`Pod::run`] in publication mode `mode`.
    fn run_in(&self, mode: &str, profiles: &[(&str, &str)], extra: &[&str]) -> ChildSidecar {
        let mut c = rolecall_command();
        c.env("RUST_LOG", "info")
            .env("ROLECALL_HEALTH_ADDR", "")
            .arg("run")
            .args(self.args_in(mode))
            .args(extra);
        for (name, arn) in profiles {
            c.args(["--profile", &format!("{name}={arn}")]);
        }
        ChildSidecar::spawn(&mut c)
    }

    fn credentials(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
        std::fs::read_to_string(self.out.path().join("credentials"))
            .map(|t| parse_ini(&t))
            .unwrap_or_default()
    }

    fn key_of(&self, profile: &str) -> Option<String> {
        self.credentials()
            .get(profile)
            .and_then(|s| s.get("aws_access_key_id").cloned())
    }

    /// The access key ids the `AssumeRole` calls to STS were signed with.
    fn sts_signers(&self) -> Vec<String> {
        self.sts
            .requests()
            .iter()
            .filter(|r| r.action == "AssumeRole")
            .map(|r| {
                r.authorization
                    .as_deref()
                    .and_then(signing_key)
                    .expect("a signed AssumeRole")
                    .to_owned()
            })
            .collect()
    }
}

/// Polls `f` on the wall clock (a child process works in real time).
async fn until(f: impl FnMut() -> bool) -> bool {
    wait_until_real(WAIT, f).await
}

#[tokio::test]
async fn profiles_chain_from_one_agent_session() {
    let pod = Pod::new();
    let mut s = pod.run(
        &[("reader", READER), ("writer", WRITER), ("auditor", AUDITOR)],
        &[],
    );
    assert!(until(|| pod.credentials().len() == 3).await, "{}", s.log());
    let sections: Vec<String> = pod.credentials().into_keys().collect();
    assert_eq!(
        sections,
        ["auditor", "reader", "writer"],
        "the base is not published"
    );
    assert_eq!(pod.agent.calls(), 1, "one base session");
    let agent_key = pod.agent.issued()[0].clone();
    let requests = pod.sts.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| r.action == "AssumeRole"),
        "{requests:?}"
    );
    assert_eq!(
        pod.sts_signers(),
        [agent_key.clone(), agent_key.clone(), agent_key]
    );
    // The agent saw the raw token from the Pod Identity token file.
    let call = &pod.agent.call_log()[0];
    assert_eq!(
        call.token_digest.as_deref(),
        Some(token_digest(&pod.token.read()).as_str())
    );
    for (name, arn) in [("reader", READER), ("writer", WRITER), ("auditor", AUDITOR)] {
        let issued = pod.sts.last_issued_for_role(arn).unwrap();
        assert_eq!(pod.key_of(name), Some(issued.access_key_id), "{name}");
    }
    s.stop_within(Duration::from_secs(10)).expect("stops");
    let log = s.log();
    assert!(
        log.contains("identity=pod-identity") || log.contains("pod-identity"),
        "{log}"
    );
    // No secret in the log: the token, the agent's secret or session token.
    let base = &pod.agent.issued_credentials()[0];
    for secret in [
        pod.token.read(),
        base.secret_access_key.clone(),
        base.session_token.clone(),
    ] {
        assert!(!log.contains(&secret), "a secret in the log:\n{log}");
    }
}

#[tokio::test]
async fn a_published_base_is_a_profile_in_every_mode() {
    // File mode: the base's own keys, next to the chained profile.
    let pod = Pod::new();
    let s = pod.run(&[("reader", READER)], &["--pod-identity-profile", "node"]);
    assert!(until(|| pod.credentials().len() == 2).await, "{}", s.log());
    assert_eq!(pod.key_of("node"), Some(pod.agent.issued()[0].clone()));
    assert_eq!(pod.sts_signers(), [pod.agent.issued()[0].clone()]);
    drop(s);

    // Endpoint mode: served under its name.
    let pod = Pod::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let s = pod.run_in(
        "endpoint",
        &[("reader", READER)],
        &["--pod-identity-profile", "node", "--endpoint-addr", &addr],
    );
    let token_copy = pod.out.path().join("endpoint-token");
    assert!(until(|| token_copy.exists()).await, "{}", s.log());
    let auth = std::fs::read_to_string(&token_copy).unwrap();
    let mut served = None;
    assert!(
        wait_until(WAIT, || {
            let (status, body) = http_get_blocking_auth(port, "/v1/credentials/node", &auth);
            served = (status == 200).then_some(body);
            served.is_some()
        })
        .await,
        "{}",
        s.log()
    );
    let v = parse(&served.unwrap());
    assert_eq!(v["AccessKeyId"], pod.agent.issued()[0]);
    drop(s);

    // Process mode: in credential-process.json.
    let pod = Pod::new();
    let s = pod.run_in(
        "process",
        &[("reader", READER)],
        &["--pod-identity-profile", "node"],
    );
    let file = pod.out.path().join("credential-process.json");
    assert!(
        until(|| std::fs::read_to_string(&file)
            .is_ok_and(|t| t.contains("\"node\"") && t.contains("\"reader\"")))
        .await,
        "{}",
        s.log()
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&pod.agent.issued()[0]), "{text}");
}

/// A blocking `GET` with `Authorization` on 127.0.0.1:`port`: `(status,
/// body)`, `(0, "")` when nothing answers.
fn http_get_blocking_auth(port: u16, path: &str, auth: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return (0, String::new());
    }
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn sigusr1_refreshes_the_base_then_the_chained_profiles() {
    let pod = Pod::new();
    let s = pod.run(&[("reader", READER), ("writer", WRITER)], &[]);
    assert!(until(|| pod.credentials().len() == 2).await, "{}", s.log());
    let first = pod.agent.issued()[0].clone();
    s.signal(libc::SIGUSR1);
    assert!(pod.agent.wait_for_calls(2, WAIT).await, "{}", s.log());
    let second = pod.agent.issued()[1].clone();
    assert!(
        until(|| pod.sts_signers().iter().filter(|k| **k == second).count() == 2).await,
        "{}",
        s.log()
    );
    let signers = pod.sts_signers();
    assert_eq!(signers[..2], [first.clone(), first], "{signers:?}");
    // The files hold the sessions signed with the new base.
    assert!(
        until(|| {
            pod.key_of("reader")
                == pod
                    .sts
                    .last_issued_for_role(READER)
                    .map(|c| c.access_key_id)
                && pod.key_of("writer")
                    == pod
                        .sts
                        .last_issued_for_role(WRITER)
                        .map(|c| c.access_key_id)
        })
        .await
    );
    assert_eq!(pod.agent.calls(), 2);
}

#[tokio::test]
async fn once_under_pod_identity_writes_the_chained_profiles() {
    let pod = Pod::new();
    let r = run_for(
        rolecall_piped()
            .arg("once")
            .args(pod.args())
            .args(["--profile", &format!("reader={READER}")])
            .args(["--profile", &format!("writer={WRITER}")]),
        WAIT,
    );
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert_eq!(pod.credentials().len(), 2, "{}", r.describe());
    assert_eq!(pod.agent.calls(), 1);
    let key = pod.agent.issued()[0].clone();
    assert_eq!(pod.sts_signers(), [key.clone(), key]);
    // A 404 (no association): once fails, saying what to do.
    let pod = Pod::new();
    pod.agent.set_default(Reply::no_association());
    let r = run_for(
        rolecall_piped()
            .arg("once")
            .args(pod.args())
            .args(["--profile", &format!("reader={READER}")]),
        WAIT,
    );
    assert_ne!(r.code, Some(0), "{}", r.describe());
    assert!(
        r.stderr.contains("ResourceNotFoundException"),
        "{}",
        r.describe()
    );
    assert!(
        r.stderr.contains("create-pod-identity-association"),
        "{}",
        r.describe()
    );
    assert_eq!(pod.sts.calls(), 0, "nothing to chain from");
    assert!(pod.credentials().is_empty());
}

/// A sidecar on paused time (in process), with the agent and STS on the
/// test's runtime and clock, and the health listener.
struct Paused {
    pod: Pod,
    port: u16,
    start: tokio::time::Instant,
    running: Running,
    logs: Logs,
    _logging: tracing::subscriber::DefaultGuard,
}

impl Paused {
    /// `profiles` (`NAME=ARN`); `before` scripts the agent and STS.
    fn start(profiles: &[&str], before: impl FnOnce(&FakeAgent, &FakeSts)) -> Paused {
        let logs = Logs::default();
        let logging = logs.install();
        let clock = rolecall::clock::Clock::tokio();
        let agent = FakeAgent::start_local();
        agent.set_clock(clock);
        let sts = FakeSts::start_local();
        sts.set_clock(clock);
        let pod = Pod::with(agent, sts);
        before(&pod.agent, &pod.sts);
        let port = free_port();
        let flags = rolecall::config::Flags {
            identity: Some("pod-identity".into()),
            pod_identity_endpoint: Some(pod.agent.url()),
            pod_identity_token_file: Some(pod.token.path().display().to_string()),
            token_file: None,
            health_addr: Some(format!("127.0.0.1:{port}")),
            ..test_flags(&pod.sts, &pod.token, pod.out.path(), profiles)
        };
        let config = rolecall::config::Config::load(&flags, &rolecall::config::Env::new()).unwrap();
        let opts = rolecall::Options {
            clock,
            ..test_options()
        };
        let start = tokio::time::Instant::now();
        Paused {
            pod,
            port,
            start,
            running: Running::start(config, opts),
            logs,
            _logging: logging,
        }
    }

    /// When each agent call came, from the start (virtual time).
    fn agent_times(&self) -> Vec<Duration> {
        self.pod
            .agent
            .call_log()
            .iter()
            .map(|c| c.received - self.start)
            .collect()
    }

    /// When each STS call came, from the start (virtual time).
    fn sts_times(&self) -> Vec<Duration> {
        self.pod
            .sts
            .requests()
            .iter()
            .map(|r| r.received - self.start)
            .collect()
    }

    async fn ready(&self) -> u16 {
        http_get(self.port, "/readyz", None).await.0
    }

    /// The value of the metric line starting with `prefix`.
    async fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = http_get(self.port, "/metrics", None).await;
        body.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{body}"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotated_token_heals_a_failing_base_at_once_and_wakes_no_healthy_one() {
    let s = Paused::start(&[&format!("reader={READER}")], |agent, _| {
        // The file holds token 0, the agent wants token 1: 400.
        agent.accept_token(&pod_token(1));
    });
    assert!(s.pod.agent.wait_for_calls(3, WAIT).await);
    assert!(s.pod.agent.statuses().iter().all(|c| *c == 400));
    assert!(s.pod.credentials().is_empty());
    // Kubelet rotates the token: the base asks again at once, not after
    // its backoff (the clock stands still while the test waits for real).
    let rotated = tokio::time::Instant::now();
    s.pod.token.rotate(&pod_token(1));
    // (The next try was due 4 s after the third.)
    assert!(wait_until_real(WAIT, || s.pod.agent.statuses().last() == Some(&200)).await);
    assert!(
        rotated.elapsed() < Duration::from_secs(1),
        "{:?}",
        s.agent_times()
    );
    assert!(wait_until(WAIT, || s.pod.credentials().len() == 1).await);
    let calls = s.pod.agent.calls();
    let key = s.pod.agent.issued()[0].clone();
    assert_eq!(s.pod.sts_signers(), std::slice::from_ref(&key));

    // A healthy base: the next rotation is read, but asks nothing.
    s.pod.agent.accept_token_file(&s.pod.token.path());
    let changes = s.logs.count("token changed");
    s.pod.token.rotate(&pod_token(2));
    assert!(wait_until_real(WAIT, || s.logs.count("token changed") > changes).await);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.pod.agent.calls(), calls, "{:?}", s.agent_times());
    assert_eq!(s.pod.sts_signers(), [key]);
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_agent_outage_keeps_every_session_and_recovery_refreshes_the_chain() {
    let two_hours = Duration::from_secs(7200);
    let s = Paused::start(
        &[&format!("reader={READER}"), &format!("writer={WRITER}")],
        |agent, _| {
            agent.script(vec![
                Reply::ok_for(two_hours),
                Reply::Reset,
                Reply::Hang,
                Reply::unavailable(),
                Reply::unavailable(),
                Reply::server_error(),
            ]);
            agent.set_default(Reply::ok_for(two_hours));
        },
    );
    assert!(wait_until(WAIT, || s.pod.credentials().len() == 2).await);
    let k1 = s.pod.agent.issued()[0].clone();
    // The base refreshes at 45 % of 2 h (54 min): the outage. The chained
    // profiles refreshed at 27 min with the base's first session.
    assert!(s.pod.agent.wait_for_calls(6, Duration::from_secs(60)).await);
    let times = s.agent_times();
    assert!(times[1] >= Duration::from_secs(54 * 60), "{times:?}");
    assert_eq!(s.ready().await, 200, "valid sessions: ready");
    assert_eq!(s.pod.credentials().len(), 2);
    assert!(s.pod.sts_signers().iter().all(|k| *k == k1));
    // Backoff, then the probe gate: each pause at least as long as the
    // one before (the Hang's is its attempt timeout).
    let gaps: Vec<Duration> = times[1..].windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.windows(2).skip(1).all(|g| g[1] >= g[0]), "{times:?}");
    // The agent answers again: the base's new session, then both chained
    // profiles at once, signed with it.
    assert!(s.pod.agent.wait_for_calls(7, Duration::from_secs(60)).await);
    let k2 = s.pod.agent.issued().last().unwrap().clone();
    assert_ne!(k1, k2);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .pod
            .sts_signers()
            .iter()
            .filter(|k| **k == k2)
            .count()
            == 2)
        .await,
        "{:?} {:?}",
        s.agent_times(),
        s.sts_times()
    );
    let back = s.agent_times()[6];
    assert!(
        s.sts_times()
            .iter()
            .rev()
            .take(2)
            .all(|t| *t - back < Duration::from_secs(5))
    );
    assert_eq!(s.ready().await, 200);
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn agent_throttling_paces_only_the_agent() {
    let s = Paused::start(
        &[&format!("reader={READER}"), &format!("writer={WRITER}")],
        |agent, _| {
            agent.push(Reply::ok_for(Duration::from_secs(40 * 60)));
            agent.set_default(Reply::throttle());
        },
    );
    assert!(wait_until(WAIT, || s.pod.credentials().len() == 2).await);
    let k1 = s.pod.agent.issued()[0].clone();
    // The base refreshes at 18 min and is throttled from then on; the
    // chained profiles refresh on their own schedule (27 min) with the
    // base's still valid session, without waiting for the agent's gate.
    tokio::time::sleep(Duration::from_secs(28 * 60)).await;
    let agent_calls = s.pod.agent.calls();
    assert!(agent_calls >= 4, "{:?}", s.agent_times());
    assert_eq!(
        s.pod.agent.throttled(),
        0,
        "the script's 429s, not the limiter's"
    );
    let sts = s.sts_times();
    assert_eq!(sts.len(), 4, "{sts:?}");
    for t in &sts[2..] {
        let late = t.saturating_sub(Duration::from_secs(27 * 60));
        assert!(late < Duration::from_secs(5), "STS is not paced: {sts:?}");
    }
    assert!(s.pod.sts_signers().iter().all(|k| *k == k1));
    // Growing pauses between the agent's calls, and counted.
    let times = s.agent_times();
    let gaps: Vec<Duration> = times[1..].windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.last() > gaps.first(), "{times:?}");
    let throttled = s.metric("rolecall_sts_throttled_total ").await;
    assert_eq!(throttled as usize, agent_calls - 1);
    let r429 = s
        .metric("rolecall_agent_responses_total{status=\"429\"} ")
        .await;
    assert_eq!(r429 as usize, agent_calls - 1);
    assert_eq!(s.ready().await, 200);
    // The agent lets calls through: a new base, and the chain follows.
    s.pod.agent.set_default(Reply::ok());
    assert!(s.pod.agent.wait_for_calls(agent_calls + 1, WAIT).await);
    let k2 = s.pod.agent.issued().last().unwrap().clone();
    assert!(
        wait_until(Duration::from_secs(10), || s
            .pod
            .sts_signers()
            .iter()
            .filter(|k| **k == k2)
            .count()
            == 2)
        .await
    );
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn bad_agent_answers_never_replace_the_session() {
    let two_hours = Duration::from_secs(7200);
    let s = Paused::start(&[&format!("reader={READER}")], |agent, _| {
        agent.script(vec![
            Reply::ok_for(two_hours),
            Reply::Garbage,
            Reply::Huge { bytes: 70_000 },
            Reply::Missing(Field::Token),
            Reply::Empty(Field::AccessKeyId),
            Reply::Stale {
                expired_ago: Duration::from_secs(60),
            },
            Reply::no_association(),
            Reply::no_association(),
        ]);
        agent.set_default(Reply::ok_for(two_hours));
    });
    assert!(wait_until(WAIT, || s.pod.credentials().len() == 1).await);
    let k1 = s.pod.agent.issued()[0].clone();
    assert!(s.pod.agent.wait_for_calls(7, Duration::from_secs(60)).await);
    // Every bad answer failed the attempt; the reader still signs with
    // the first base session, and the sidecar is ready.
    assert_eq!(s.ready().await, 200);
    assert!(s.pod.sts_signers().iter().all(|k| *k == k1));
    assert_eq!(s.pod.credentials().len(), 1);
    // The 404 is a configuration error: the next try 5 min later.
    assert!(s.pod.agent.wait_for_calls(8, Duration::from_secs(60)).await);
    let times = s.agent_times();
    let gap = times[7] - times[6];
    assert!(
        gap >= Duration::from_secs(290) && gap <= Duration::from_secs(310),
        "{times:?}"
    );
    assert_eq!(
        s.metric("rolecall_agent_responses_total{status=\"404\"} ")
            .await,
        2.0
    );
    assert!(s.logs.count("create-pod-identity-association") >= 1);
    // A new token is tried at once, and this time the agent answers.
    let rotated = tokio::time::Instant::now();
    s.pod.agent.accept_token_file(&s.pod.token.path());
    s.pod.token.rotate(&pod_token(3));
    assert!(wait_until_real(WAIT, || s.pod.agent.calls() == 9).await);
    assert!(
        rotated.elapsed() < Duration::from_secs(1),
        "{:?}",
        s.agent_times()
    );
    assert_eq!(s.pod.agent.statuses()[8], 200);
    let k2 = s.pod.agent.issued().last().unwrap().clone();
    assert!(
        wait_until(Duration::from_secs(10), || s.pod.key_of("reader").is_some()
            && s.pod.sts_signers().last() == Some(&k2))
        .await
    );
    // No bad answer's keys were ever used.
    let used: std::collections::BTreeSet<String> = s.pod.sts_signers().into_iter().collect();
    assert_eq!(used, [k1, k2].into_iter().collect());
    s.running.stop().await;
}

/// The YAML of a pod-identity sidecar: `pod_identity_profile` if `base`,
/// and `profiles` (`(name, ARN)`).
fn pod_yaml(pod: &Pod, base: Option<&str>, profiles: &[(&str, &str)]) -> String {
    let mut y = format!(
        "identity: pod-identity\npod_identity_endpoint: {}\npod_identity_token_file: {}\n",
        pod.agent.url(),
        pod.token.path().display()
    );
    if let Some(base) = base {
        y.push_str(&format!("pod_identity_profile: {base}\n"));
    }
    y.push_str("profiles:\n");
    for (name, arn) in profiles {
        y.push_str(&format!("  {name}: {{role_arn: '{arn}'}}\n"));
    }
    y
}

#[tokio::test]
async fn reloads_add_profiles_publish_the_base_and_refuse_an_identity_switch() {
    let pod = Pod::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rolecall.yaml");
    let write = |text: String| {
        // Renamed over, as an editor or a ConfigMap update would.
        let tmp = dir.path().join("rolecall.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    write(pod_yaml(&pod, None, &[("reader", READER)]));
    let mut c = rolecall_command();
    c.env("RUST_LOG", "info")
        .env("ROLECALL_HEALTH_ADDR", "")
        .arg("run")
        .args(["--config", &file.display().to_string()])
        .args(["--output-dir", &pod.out.path().display().to_string()])
        .args([
            "--region",
            "eu-west-1",
            "--sts-endpoint",
            &pod.sts.endpoint(),
        ])
        .args(["--credentials", TEST_MODE]);
    let s = ChildSidecar::spawn(&mut c);
    assert!(until(|| pod.credentials().len() == 1).await, "{}", s.log());
    let k1 = pod.agent.issued()[0].clone();

    // A profile more: chained from the running base, no new agent call.
    write(pod_yaml(
        &pod,
        None,
        &[("reader", READER), ("writer", WRITER)],
    ));
    s.signal(libc::SIGHUP);
    assert!(until(|| pod.credentials().len() == 2).await, "{}", s.log());
    assert_eq!(pod.agent.calls(), 1);
    assert_eq!(pod.sts_signers(), [k1.clone(), k1.clone()]);
    let before = pod.credentials();

    // Another identity: refused whole, every session kept.
    let web_token = TokenDir::new(&valid_jwt());
    write(format!(
        "identity: web-identity\ntoken_file: {}\nprofiles:\n  reader: {{role_arn: '{READER}'}}\n",
        web_token.path().display()
    ));
    s.signal(libc::SIGHUP);
    assert!(
        until(|| s
            .log()
            .contains("identity changed (pod-identity \u{2192} web-identity)"))
        .await,
        "{}",
        s.log()
    );
    assert!(s.log().contains("only a restart applies it"), "{}", s.log());
    assert_eq!(pod.credentials(), before);
    assert!(
        pod.sts.requests().iter().all(|r| r.action == "AssumeRole"),
        "no web identity call"
    );

    // Publishing the base: it appears under its name.
    write(pod_yaml(
        &pod,
        Some("node"),
        &[("reader", READER), ("writer", WRITER)],
    ));
    s.signal(libc::SIGHUP);
    assert!(until(|| pod.credentials().len() == 3).await, "{}", s.log());
    let node = pod.key_of("node").unwrap();
    assert!(pod.agent.issued().contains(&node), "the agent's keys");
    // And unpublishing it again.
    write(pod_yaml(
        &pod,
        None,
        &[("reader", READER), ("writer", WRITER)],
    ));
    s.signal(libc::SIGHUP);
    assert!(until(|| pod.credentials().len() == 2).await, "{}", s.log());
    assert!(!pod.credentials().contains_key("node"));
    assert!(pod.key_of("reader").is_some() && pod.key_of("writer").is_some());
}
