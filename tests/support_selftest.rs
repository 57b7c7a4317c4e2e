//! Checks the shared test support (`tests/support`) itself: the fake STS
//! speaks the protocol the real SDK expects, the token directory looks and
//! rotates like kubelet's, and the small helpers do what they say.

mod support;

use std::io::ErrorKind;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ROLE_A: &str = "arn:aws:iam::111122223333:role/reader";
const ROLE_B: &str = "arn:aws:iam::444455556666:role/team/writer";

/// One raw HTTP/1.1 exchange, as the test side sees it.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn form_encode(params: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn web_identity_form(role: &str, session: &str, token: &str) -> String {
    form_encode(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", session),
        ("WebIdentityToken", token),
        ("DurationSeconds", "900"),
    ])
}

async fn send_raw(
    addr: std::net::SocketAddr,
    body: &str,
    extra_headers: &str,
) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        addr,
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    Ok(out)
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8(raw.to_vec()).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn post(sts: &FakeSts, body: &str) -> RawResponse {
    parse_response(&send_raw(sts.addr(), body, "").await.expect("HTTP exchange"))
}

/// Text of the first `<name>…</name>` element.
fn tag<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&close).expect("closing tag") + start;
    &xml[start..end]
}

#[tokio::test]
async fn success_returns_unique_credentials_and_counts_calls() {
    let sts = FakeSts::start();
    assert!(sts.endpoint().starts_with("http://127.0.0.1:"));
    let token = valid_jwt();
    let before = now_unix();

    let first = post(&sts, &web_identity_form(ROLE_A, "rolecall-pod", &token)).await;
    let second = post(&sts, &web_identity_form(ROLE_A, "rolecall-pod", &token)).await;

    assert_eq!(sts.calls(), 2);
    assert_eq!(sts.calls_for_role(ROLE_A), 2);
    assert_eq!(sts.calls_for_role(ROLE_B), 0);
    let issued = sts.issued();
    assert_eq!(issued.len(), 2);
    for (resp, creds) in [(&first, &issued[0]), (&second, &issued[1])] {
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.header("content-type"), Some("text/xml"));
        let xml = &resp.body;
        assert!(xml.contains("<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"));
        assert_eq!(tag(xml, "SubjectFromWebIdentityToken"), TEST_SUBJECT);
        assert_eq!(tag(xml, "Audience"), "sts.amazonaws.com");
        assert_eq!(
            tag(xml, "Arn"),
            "arn:aws:sts::111122223333:assumed-role/reader/rolecall-pod"
        );
        assert_eq!(tag(xml, "AccessKeyId"), creds.access_key_id);
        assert_eq!(tag(xml, "SecretAccessKey"), creds.secret_access_key);
        assert_eq!(tag(xml, "SessionToken"), creds.session_token);
        assert_eq!(
            tag(xml, "RequestId"),
            resp.header("x-amzn-RequestId").unwrap()
        );
        assert_eq!(tag(xml, "RequestId").len(), 36);

        let key = &creds.access_key_id;
        assert_eq!(key.len(), 20);
        assert!(key.starts_with("ASIA"));
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert_eq!(creds.secret_access_key.len(), 40);
        assert!(creds.session_token.len() > 100);
        for c in ['/', '+', '='] {
            assert!(creds.session_token.contains(c), "session token lacks {c}");
        }
        assert_eq!(creds.role_arn, ROLE_A);

        // Expiration: the default reply lasts an hour; XML and record agree.
        let exp = parse_utc(tag(xml, "Expiration"));
        assert_eq!(exp, creds.expiration);
        let exp_unix = exp.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!((before + 3599..=now_unix() + 3600).contains(&exp_unix));
    }
    assert_ne!(issued[0].access_key_id, issued[1].access_key_id);
    assert_ne!(issued[0].secret_access_key, issued[1].secret_access_key);
    assert_ne!(issued[0].session_token, issued[1].session_token);
    assert_ne!(
        first.header("x-amzn-RequestId"),
        second.header("x-amzn-RequestId")
    );

    let requests = sts.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].action, "AssumeRoleWithWebIdentity");
    assert_eq!(requests[0].role_arn, ROLE_A);
    assert_eq!(requests[0].session_name, "rolecall-pod");
    assert_eq!(requests[0].token.as_deref(), Some(token.as_str()));
    assert_eq!(requests[0].duration_seconds, Some(900));
    assert_eq!(requests[0].param("Version"), Some("2011-06-15"));
    assert_eq!(requests[0].authorization, None);
}

#[tokio::test]
async fn decodes_every_form_parameter() {
    let sts = FakeSts::start();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]} & more+%"#;
    let body = form_encode(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", ROLE_B),
        ("RoleSessionName", "a+b=c,d.e@f-g"),
        ("WebIdentityToken", "tok"),
        ("DurationSeconds", "3600"),
        ("Policy", policy),
        ("PolicyArns.member.2.arn", "arn:aws:iam::aws:policy/Second"),
        ("PolicyArns.member.1.arn", "arn:aws:iam::aws:policy/First"),
        ("ExternalId", "ext id"),
    ]);
    let resp = post(&sts, &body).await;
    assert_eq!(resp.status, 200);
    // Role path and account come from the ARN; the session name is escaped.
    assert_eq!(
        tag(&resp.body, "Arn"),
        "arn:aws:sts::444455556666:assumed-role/writer/a+b=c,d.e@f-g"
    );
    let req = &sts.requests()[0];
    assert_eq!(req.session_name, "a+b=c,d.e@f-g");
    assert_eq!(req.policy.as_deref(), Some(policy));
    assert_eq!(
        req.policy_arns,
        [
            "arn:aws:iam::aws:policy/First",
            "arn:aws:iam::aws:policy/Second"
        ]
    );
    assert_eq!(req.external_id.as_deref(), Some("ext id"));
    assert_eq!(req.params.len(), 10);
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );

    assert_eq!(
        parse_form(b"a=1+2&b=%2B%2f&c&d=%zz&e=%4"),
        [
            ("a".to_owned(), "1 2".to_owned()),
            ("b".to_owned(), "+/".to_owned()),
            ("c".to_owned(), String::new()),
            ("d".to_owned(), "%zz".to_owned()),
            ("e".to_owned(), "%4".to_owned()),
        ]
    );
}

#[tokio::test]
async fn assume_role_gets_its_own_response_shape() {
    let sts = FakeSts::start();
    let body = form_encode(&[
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", ROLE_B),
        ("RoleSessionName", "chain"),
        ("ExternalId", "example"),
    ]);
    let raw = send_raw(
        sts.addr(),
        &body,
        "Authorization: AWS4-HMAC-SHA256 Credential=ASIAX/20261129/eu-west-1/sts/aws4_request\r\n",
    )
    .await
    .unwrap();
    let resp = parse_response(&raw);
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains("<AssumeRoleResponse "));
    assert!(resp.body.contains("<AssumeRoleResult>"));
    assert!(!resp.body.contains("SubjectFromWebIdentityToken"));
    assert!(!resp.body.contains("<Provider>"));
    let req = &sts.requests()[0];
    assert_eq!(req.action, "AssumeRole");
    assert_eq!(req.token, None);
    assert_eq!(req.external_id.as_deref(), Some("example"));
    assert!(
        req.authorization
            .as_deref()
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 ")
    );
}

#[tokio::test]
async fn per_role_queue_takes_precedence_over_global_queue_and_default() {
    let sts = FakeSts::start();
    sts.push(Reply::throttle());
    sts.push_for_role(ROLE_B, Reply::access_denied());
    sts.set_default(Reply::server_error());

    let b1 = post(&sts, &web_identity_form(ROLE_B, "s", "t")).await;
    let a1 = post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    let b2 = post(&sts, &web_identity_form(ROLE_B, "s", "t")).await;
    sts.set_default(Reply::ok_for(Duration::from_secs(900)));
    let a2 = post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;

    assert_eq!((b1.status, tag(&b1.body, "Code")), (403, "AccessDenied"));
    assert_eq!((a1.status, tag(&a1.body, "Code")), (400, "Throttling"));
    assert_eq!((b2.status, tag(&b2.body, "Code")), (500, "InternalFailure"));
    assert_eq!(a2.status, 200);
    assert_eq!(sts.calls(), 4);
    assert_eq!(sts.calls_for_role(ROLE_A), 2);
    assert_eq!(sts.calls_for_role(ROLE_B), 2);
    assert_eq!(sts.issued().len(), 1);
    let exp = sts.last_issued_for_role(ROLE_A).unwrap().expiration;
    let left = exp.duration_since(SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(890) && left <= Duration::from_secs(900));
}

#[tokio::test]
async fn error_reply_is_an_aws_query_error_document() {
    let sts = FakeSts::start();
    sts.push(Reply::error(
        400,
        "IDPRejectedClaim",
        "Incorrect token audience <&>",
    ));
    let resp = post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("content-type"), Some("text/xml"));
    assert!(resp.body.starts_with("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"));
    assert_eq!(tag(&resp.body, "Code"), "IDPRejectedClaim");
    assert_eq!(
        tag(&resp.body, "Message"),
        "Incorrect token audience &lt;&amp;&gt;"
    );
    assert_eq!(
        tag(&resp.body, "RequestId"),
        resp.header("x-amzn-RequestId").unwrap()
    );

    sts.push(Reply::server_error());
    let resp = post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    assert_eq!(resp.status, 500);
    assert_eq!(tag(&resp.body, "Type"), "Receiver");

    // Unknown actions are answered without consuming the script.
    sts.push(Reply::throttle());
    let resp = post(
        &sts,
        &form_encode(&[("Action", "DecodeAuthorizationMessage")]),
    )
    .await;
    assert_eq!(
        (resp.status, tag(&resp.body, "Code")),
        (400, "InvalidAction")
    );
    // GetCallerIdentity signed with a key nobody issued is refused, unscripted.
    let resp = post(&sts, &form_encode(&[("Action", "GetCallerIdentity")])).await;
    assert_eq!(
        (resp.status, tag(&resp.body, "Code")),
        (403, "InvalidClientTokenId")
    );
    let resp = post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    assert_eq!(tag(&resp.body, "Code"), "Throttling");
}

#[tokio::test]
async fn garbage_reply_is_200_without_xml() {
    let sts = FakeSts::start();
    sts.push(Reply::Garbage);
    let resp = post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    assert_eq!(resp.status, 200);
    assert!(!resp.body.trim_start().starts_with('<'));
    assert!(sts.issued().is_empty());
}

#[tokio::test]
async fn reset_closes_the_connection_without_a_response() {
    let sts = FakeSts::start();
    sts.push(Reply::Reset);
    match send_raw(sts.addr(), &web_identity_form(ROLE_A, "s", "t"), "").await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(bytes) => panic!(
            "expected a reset, got {:?}",
            String::from_utf8_lossy(&bytes)
        ),
    }
    assert_eq!(sts.calls(), 1);
    // The server carries on.
    assert_eq!(
        post(&sts, &web_identity_form(ROLE_A, "s", "t"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn hang_never_answers_until_the_server_is_dropped() {
    let sts = FakeSts::start();
    sts.push(Reply::Hang);
    let addr = sts.addr();
    // The exchange holds only the address: the test's handle is the last one.
    let exchange =
        tokio::spawn(async move { send_raw(addr, &web_identity_form(ROLE_A, "s", "t"), "").await });
    assert!(sts.wait_for_calls(1, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!exchange.is_finished(), "Hang answered");

    drop(sts);
    let outcome = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("connection still open after drop")
        .unwrap();
    match outcome {
        Ok(bytes) => assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes)),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "server still listening after drop"
    );
}

#[tokio::test]
async fn wait_for_calls_wakes_on_requests_and_times_out() {
    let sts = FakeSts::start();
    assert!(sts.wait_for_calls(0, Duration::ZERO).await);
    let started = std::time::Instant::now();
    assert!(!sts.wait_for_calls(1, Duration::from_millis(100)).await);
    assert!(started.elapsed() >= Duration::from_millis(100));

    let waiter = tokio::spawn({
        let sts = sts.clone();
        async move { sts.wait_for_calls(2, Duration::from_secs(10)).await }
    });
    post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    let started = std::time::Instant::now();
    assert!(waiter.await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn answers_and_waits_in_real_time_under_paused_tokio_time() {
    let sts = FakeSts::start();
    let resp = post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    assert_eq!(resp.status, 200);
    assert!(sts.wait_for_calls(1, Duration::from_secs(1)).await);
    // A wall-clock timeout even though tokio time is paused.
    let started = std::time::Instant::now();
    assert!(!sts.wait_for_calls(2, Duration::from_millis(100)).await);
    assert!(started.elapsed() >= Duration::from_millis(100));

    let paused_at = tokio::time::Instant::now();
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let setter = flag.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        setter.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    assert!(
        wait_until_real(Duration::from_secs(5), || flag
            .load(std::sync::atomic::Ordering::SeqCst))
        .await
    );
    assert_eq!(tokio::time::Instant::now(), paused_at, "paused clock moved");

    // The tokio-time flavour advances the paused clock instead.
    assert!(!wait_until(Duration::from_secs(60), || false).await);
    assert!(tokio::time::Instant::now() >= paused_at + Duration::from_secs(60));
}

fn sdk_client(sts: &FakeSts) -> aws_sdk_sts::Client {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("eu-west-1"))
        .endpoint_url(sts.endpoint())
        .http_client(http)
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "ASIASOURCE0000000001",
            "source-secret",
            Some("source-session".to_owned()),
            None,
            "test",
        ))
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

#[tokio::test]
async fn the_real_sdk_understands_the_fake() {
    use aws_sdk_sts::error::ProvideErrorMetadata as _;
    use aws_sdk_sts::operation::RequestId as _;

    let sts = FakeSts::start();
    let client = sdk_client(&sts);
    let token = valid_jwt();

    let out = client
        .assume_role_with_web_identity()
        .role_arn(ROLE_A)
        .role_session_name("rolecall-pod")
        .web_identity_token(&token)
        .duration_seconds(900)
        .policy(r#"{"Version":"2012-10-17"}"#)
        .policy_arns(
            aws_sdk_sts::types::PolicyDescriptorType::builder()
                .arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
                .build(),
        )
        .send()
        .await
        .expect("AssumeRoleWithWebIdentity");
    let creds = out.credentials().expect("credentials");
    let issued = &sts.issued()[0];
    assert_eq!(creds.access_key_id(), issued.access_key_id);
    assert_eq!(creds.secret_access_key(), issued.secret_access_key);
    assert_eq!(creds.session_token(), issued.session_token);
    assert_eq!(
        SystemTime::try_from(*creds.expiration()).unwrap(),
        issued.expiration
    );
    assert_eq!(
        out.subject_from_web_identity_token(),
        Some("system:serviceaccount:default:app")
    );
    assert!(out.request_id().is_some());
    let req = &sts.requests()[0];
    assert_eq!(req.action, "AssumeRoleWithWebIdentity");
    assert_eq!(req.token.as_deref(), Some(token.as_str()));
    assert_eq!(req.duration_seconds, Some(900));
    assert_eq!(req.policy.as_deref(), Some(r#"{"Version":"2012-10-17"}"#));
    assert_eq!(req.policy_arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
    assert_eq!(req.authorization, None, "web identity calls are unsigned");

    // (reply, why the call must fail, the error code and message the SDK reads)
    let refusals = [
        (
            Reply::access_denied(),
            "AccessDenied",
            Some((
                "AccessDenied",
                "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            )),
        ),
        (Reply::Garbage, "garbage must not parse", None),
        (Reply::Reset, "reset must fail", None),
    ];
    for (reply, why, code_and_message) in refusals {
        sts.push(reply);
        let err = client
            .assume_role_with_web_identity()
            .role_arn(ROLE_A)
            .role_session_name("rolecall-pod")
            .web_identity_token(&token)
            .send()
            .await
            .expect_err(why);
        if let Some((code, message)) = code_and_message {
            assert_eq!(err.code(), Some(code));
            assert_eq!(err.message(), Some(message));
        }
    }

    let out = client
        .assume_role()
        .role_arn(ROLE_B)
        .role_session_name("chain")
        .external_id("example")
        .send()
        .await
        .expect("AssumeRole");
    assert_eq!(
        out.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::444455556666:assumed-role/writer/chain"
    );
    let req = sts.requests().pop().unwrap();
    assert_eq!(req.action, "AssumeRole");
    assert_eq!(req.external_id.as_deref(), Some("example"));
    let auth = req.authorization.as_deref().expect("AssumeRole is signed");
    assert!(auth.contains("Credential=ASIASOURCE0000000001/"), "{auth}");
    assert_eq!(req.header("x-amz-security-token"), Some("source-session"));
}

#[test]
fn token_dir_is_laid_out_like_kubelet() {
    let dir = TokenDir::new("first");
    let root = dir.dir();
    assert_eq!(dir.path(), root.join("token"));
    assert_eq!(
        std::fs::read_link(dir.path()).unwrap(),
        std::path::Path::new("..data/token")
    );
    let data = std::fs::read_link(root.join("..data")).unwrap();
    let name = data.to_str().unwrap();
    // ..2026_11_29_01_02_03.123456789
    assert_eq!(name.len(), 31, "{name}");
    assert!(
        name.starts_with("..") && name.as_bytes()[21] == b'.',
        "{name}"
    );
    assert!(!data.is_absolute());
    assert_eq!(dir.data_dir(), root.join(&data));
    assert_eq!(std::fs::read_to_string(dir.path()).unwrap(), "first");
    assert_eq!(dir.read(), "first");
}

#[test]
fn token_dir_rotates_like_atomic_writer() {
    let dir = TokenDir::new("first");
    let root = dir.dir();
    let old = dir.data_dir();

    dir.rotate("second");
    assert_eq!(std::fs::read_to_string(dir.path()).unwrap(), "second");
    assert!(!old.exists(), "old data dir survived");
    assert!(
        std::fs::symlink_metadata(root.join("..data"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!root.join("..data_tmp").exists());
    assert_ne!(dir.data_dir(), old);

    for i in 0..20 {
        dir.rotate(&format!("token-{i}"));
    }
    assert_eq!(dir.read(), "token-19");
    let mut entries: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[1..], ["..data".to_owned(), "token".to_owned()]);
    assert!(entries[0].starts_with("..20"));
}

#[test]
fn token_dir_can_lose_its_token_and_get_it_back() {
    let dir = TokenDir::new("first");
    dir.remove_token();
    let err = std::fs::read_to_string(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        std::fs::symlink_metadata(dir.path()).is_ok(),
        "token link should dangle"
    );
    dir.remove_token(); // idempotent
    dir.rotate("back");
    assert_eq!(dir.read(), "back");
}

#[test]
fn jwt_helpers_decode_back() {
    let token = valid_jwt();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[0])
        .unwrap();
    assert_eq!(header, br#"{"alg":"RS256","kid":"test"}"#);
    assert!((38..=44).contains(&parts[2].len()));
    assert!(!token.contains(['=', '+', '/']));

    let claims = decode_jwt_claims(&token);
    let now = now_unix();
    assert_eq!(claims["iss"], TEST_ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:default:app");
    assert_eq!(claims["aud"], "sts.amazonaws.com");
    let exp = claims["exp"].as_u64().unwrap();
    assert!((now + 24 * 3600 - 5..=now + 24 * 3600).contains(&exp));
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat <= now && iat + 5 >= now);
    assert_eq!(claims["nbf"], claims["iat"]);

    assert_eq!(
        decode_jwt_claims(&valid_jwt_with_sub("system:serviceaccount:x:y"))["sub"],
        "system:serviceaccount:x:y"
    );
    let expired = decode_jwt_claims(&expired_jwt());
    let exp = expired["exp"].as_u64().unwrap();
    assert!(exp < now && exp + 3605 > now);
    assert!(expired["iat"].as_u64().unwrap() < exp);

    let custom = jwt_from_claims(&serde_json::json!({"aud": ["a", "b"]}));
    assert_eq!(decode_jwt_claims(&custom)["aud"][1], "b");
}

#[test]
fn utc_timestamps_round_trip() {
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    assert_eq!(format_utc(at(0)), "1970-01-01T00:00:00Z");
    assert_eq!(format_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
    assert_eq!(format_utc(at(1_795_914_123)), "2026-11-29T01:02:03Z");
    assert_eq!(format_utc(at(4_107_542_399)), "2100-02-28T23:59:59Z");
    assert_eq!(parse_utc("2026-11-29T01:02:03Z"), at(1_795_914_123));
    assert_eq!(parse_utc("2026-11-29T01:02:03.999Z"), at(1_795_914_123));
    assert_eq!(parse_utc("2026-11-29T01:02:03+00:00"), at(1_795_914_123));
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..10_000 {
        let t = at(rng.u64(..8_000_000_000));
        assert_eq!(parse_utc(&format_utc(t)), t);
    }
}

#[test]
#[should_panic(expected = "not a UTC RFC 3339 timestamp")]
fn parse_utc_rejects_offsets() {
    parse_utc("2026-11-29T01:02:03+01:00");
}

#[test]
fn parse_ini_reads_sections_and_keys() {
    let ini = parse_ini(
        "# written by rolecall\n\
         [default]\n\
         region = eu-west-1\n\
         \n\
         [profile writer]\n\
         region=us-east-1\n\
         credential_process = /aws/rolecall credential-process --profile writer\n\
         ; comment\n\
         empty =\n",
    );
    assert_eq!(ini.len(), 2);
    assert_eq!(ini["default"]["region"], "eu-west-1");
    assert_eq!(ini["profile writer"]["region"], "us-east-1");
    assert_eq!(
        ini["profile writer"]["credential_process"],
        "/aws/rolecall credential-process --profile writer"
    );
    assert_eq!(ini["profile writer"]["empty"], "");
    assert!(parse_ini("").is_empty());
}

#[test]
#[should_panic(expected = "duplicate key")]
fn parse_ini_rejects_duplicate_keys() {
    parse_ini("[a]\nk = 1\nk = 2\n");
}

#[test]
#[should_panic(expected = "duplicate section")]
fn parse_ini_rejects_duplicate_sections() {
    parse_ini("[a]\n[a]\n");
}

#[test]
#[should_panic(expected = "key outside any section")]
fn parse_ini_rejects_keys_before_a_section() {
    parse_ini("k = v\n[a]\n");
}

#[test]
#[should_panic(expected = "expected `key = value`")]
fn parse_ini_rejects_stray_lines() {
    parse_ini("[a]\njust words\n");
}

#[tokio::test]
async fn misc_helpers_work() {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port is free");

    let start = std::time::Instant::now();
    let mut n = 0;
    assert!(
        wait_until(Duration::from_secs(5), || {
            n += 1;
            n >= 3
        })
        .await
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert!(!wait_until(Duration::from_millis(50), || false).await);
    assert!(!wait_until_real(Duration::from_millis(50), || false).await);
}

#[test]
fn run_cases_runs_every_case_and_names_the_failed_ones() {
    let ran = std::sync::Mutex::new(Vec::new());
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_cases(
            &["a", "b", "c"],
            |c| c,
            |c| {
                ran.lock().unwrap().push(*c);
                assert_ne!(*c, "b", "case b fails");
            },
        )
    }));
    assert_eq!(
        *ran.lock().unwrap(),
        ["a", "b", "c"],
        "c ran after b failed"
    );
    let message = verdict.expect_err("a failed case fails the table");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert_eq!(message, "1 of 3 cases failed: b");
    run_cases(&[1, 2], |_| "passes", |n| assert!(*n > 0));
}

#[tokio::test]
async fn run_cases_async_runs_every_case_and_names_the_failed_ones() {
    static CASES: [&str; 3] = ["a", "b", "c"];
    static RAN: std::sync::Mutex<Vec<&str>> = std::sync::Mutex::new(Vec::new());
    let verdict = tokio::spawn(run_cases_async(
        &CASES,
        |c| c,
        |c| async move {
            RAN.lock().unwrap().push(c);
            assert_ne!(*c, "a", "case a fails");
        },
    ))
    .await;
    assert_eq!(*RAN.lock().unwrap(), ["a", "b", "c"]);
    let panic = verdict
        .expect_err("a failed case fails the table")
        .into_panic();
    assert_eq!(
        panic.downcast_ref::<String>().map(String::as_str),
        Some("1 of 3 cases failed: a")
    );
}

#[test]
fn one_line_escapes_control_characters() {
    assert_eq!(one_line("a\nb\r\tc\u{1b}d"), "a\\nb\\r\\tc\\u{1b}d");
    assert_eq!(one_line("plain é"), "plain é");
}

#[test]
fn a_table_keeps_the_lines_of_other_cases() {
    static TABLE: Table = Table::new("selftest.txt", "case\tvalue");
    let path = reliability_dir().join("selftest.txt");
    std::fs::write(
        &path,
        "case\tvalue\tmeasured\nold\tkept\t2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    TABLE.record("new", "new\t1");
    TABLE.record("new", "new\t2");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "case\tvalue\tmeasured");
    assert_eq!(lines[2], "old\tkept\t2026-01-01T00:00:00Z");
    assert!(lines[1].starts_with("new\t2\t20"), "{text}");
    assert_eq!(lines.len(), 3, "{text}");
}

#[test]
fn read_faults_count_everything_and_keep_ten_samples() {
    let faults = ReadFaults::default();
    faults.read();
    for i in 0..12 {
        faults.torn(format!("torn {i}"));
    }
    faults.mixed("mixed".into());
    faults.lost("lost".into());
    assert_eq!(faults.reads.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(faults.torn.load(std::sync::atomic::Ordering::Relaxed), 12);
    assert_eq!(faults.mixed.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(faults.lost.load(std::sync::atomic::Ordering::Relaxed), 1);
    let samples = faults.samples();
    assert_eq!(samples.len(), 10);
    assert_eq!(samples[0], "torn 0");
}

#[test]
fn temporaries_lists_only_rolecalls_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    assert!(temporaries(&dir.path().join("missing")).is_empty());
    std::fs::write(dir.path().join("credentials"), "").unwrap();
    let tmp = format!(".credentials{TMP_MARKER}1-2");
    std::fs::write(dir.path().join(&tmp), "").unwrap();
    assert_eq!(
        temporaries(dir.path()).into_iter().collect::<Vec<_>>(),
        [tmp]
    );
}

#[test]
fn http_get_blocking_reads_status_and_body() {
    assert_eq!(http_get_blocking(free_port(), "/livez"), None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut s, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let n = s.read(&mut request).unwrap();
        s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\n\r\nnot yet\n")
            .unwrap();
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    assert_eq!(
        http_get_blocking(port, "/readyz"),
        Some((503, "not yet\n".to_owned()))
    );
    assert!(
        server
            .join()
            .unwrap()
            .starts_with("GET /readyz HTTP/1.1\r\n")
    );
}

#[test]
fn a_child_sidecar_collects_its_log_and_stops_on_sigterm() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let mut cmd = rolecall_run(&sts, &token, out.path(), [("reader", ROLE_A)]);
    cmd.args(["--health-addr", ""]);
    let mut sc = ChildSidecar::spawn(&mut cmd);
    assert!(sc.running());
    let written = std::time::Instant::now() + Duration::from_secs(10);
    while !out.path().join("credentials").exists() {
        assert!(std::time::Instant::now() < written, "{}", sc.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = sc.stop_within(Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(sc.log().contains("reader"), "{}", sc.log());
    assert_eq!(sc.log_path(), None);
}

#[tokio::test]
async fn a_sandbox_grants_sessions_of_its_lifetime() {
    let Sandbox { sts, token, out } = Sandbox::granting(Duration::from_secs(900));
    assert!(out.path().read_dir().unwrap().next().is_none(), "empty");
    assert_eq!(decode_jwt_claims(&token.read())["sub"], TEST_SUBJECT);
    let answer = post(&sts, &web_identity_form(ROLE_A, "s", &token.read())).await;
    assert_eq!(answer.status, 200);
    let issued = sts.issued();
    let left = issued[0]
        .expiration
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(890) && left <= Duration::from_secs(900));
}

#[tokio::test(start_paused = true)]
async fn a_local_server_on_an_injected_clock_stamps_expirations_and_dates_in_paused_time() {
    let clock = rolecall::clock::Clock::tokio();
    let sts = FakeSts::start_local();
    sts.set_clock(clock);
    // Thirty simulated days: the system clock has not moved meanwhile.
    tokio::time::sleep(Duration::from_secs(30 * 86_400)).await;
    let now = clock.now();
    assert!(now > SystemTime::now() + Duration::from_secs(29 * 86_400));
    let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(unix(sts.now()), unix(now));

    let resp = post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    assert_eq!(resp.status, 200);
    let exp = parse_utc(tag(&resp.body, "Expiration"));
    assert!(
        (unix(now) + 3599..=unix(now) + 3600).contains(&unix(exp)),
        "expiration {} for now {}",
        unix(exp),
        unix(now)
    );
    assert_eq!(sts.issued()[0].expiration, exp);
    let date = aws_smithy_types::DateTime::from_str(
        resp.header("date").unwrap(),
        aws_smithy_types::date_time::Format::HttpDate,
    )
    .unwrap();
    assert!(
        date.secs().abs_diff(unix(now) as i64) <= 1,
        "Date {date} for now {}",
        unix(now)
    );

    // Stale answers are stale by the same clock.
    sts.push(Reply::Stale {
        expired_ago: Duration::from_secs(60),
    });
    let resp = post(&sts, &web_identity_form(ROLE_A, "s", "t")).await;
    let exp = parse_utc(tag(&resp.body, "Expiration"));
    assert!((unix(now) - 61..=unix(now) - 59).contains(&unix(exp)));
}
