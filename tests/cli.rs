//! The real binary: exit codes, signals, and what reaches its logs.

mod support;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";

/// `--profile reader=… --profile writer=…`
fn reader_and_writer() -> [String; 4] {
    [
        "--profile".into(),
        format!("reader={READER}"),
        "--profile".into(),
        format!("writer={WRITER}"),
    ]
}

/// `rolecall once` with reader and writer, writer refused with AccessDenied.
fn once_with_writer_denied() -> (FakeSts, TokenDir, tempfile::TempDir, Output) {
    let sts = FakeSts::start();
    sts.push_for_role(WRITER, Reply::access_denied());
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let o = rolecall_command()
        .arg("once")
        .args(base_args(&sts, &token, out.path()))
        .args(reader_and_writer())
        .output()
        .unwrap();
    (sts, token, out, o)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

/// Reads the child's piped stderr as it comes (a full pipe would stall the
/// child); the thread returns it all once the child exits.
fn drain_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut pipe = child.stderr.take().expect("stderr piped");
    std::thread::spawn(move || {
        let mut logs = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut logs).unwrap();
        logs
    })
}

/// Waits for the child to exit, on the wall clock, at most `limit`.
async fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGTERM; waits (at most 5 s) for the exit; everything it logged.
async fn stop_and_read_logs(child: &mut Child, reader: std::thread::JoinHandle<String>) -> String {
    signal(child, "TERM");
    assert!(
        wait_exit(child, Duration::from_secs(5)).await.is_some(),
        "SIGTERM did not stop it within 5 s"
    );
    reader.join().unwrap()
}

#[test]
fn configuration_errors_exit_64_listing_every_problem() {
    let out = rolecall_command()
        .args([
            "once",
            "--profile",
            "bad name=notanarn",
            "--duration",
            "5",
            "--file-mode",
            "9",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    for needle in [
        "profile name",
        "IAM role ARN",
        "--duration",
        "--file-mode",
        "no AWS region",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.contains("5 problems"), "{err}");
}

#[test]
fn malformed_usage_exits_64_and_help_exits_0() {
    let out = rolecall_command()
        .args(["--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let out = rolecall_command()
        .args(["once", "--profile"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = rolecall_command().args(["--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("once"));
}

#[test]
fn the_eks_webhook_environment_alone_is_enough() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let o = rolecall_command()
        .args(["once", "--credentials", TEST_MODE])
        .env("AWS_ROLE_ARN", READER)
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", token.path())
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ENDPOINT_URL_STS", sts.endpoint())
        .env("ROLECALL_OUTPUT_DIR", out.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let creds = parse_ini(&std::fs::read_to_string(out.path().join("credentials")).unwrap());
    assert!(creds.contains_key("default"));
    assert_eq!(sts.requests()[0].session_name, "rolecall-test-pod");
}

#[test]
fn once_exits_1_when_a_profile_fails_but_writes_the_others() {
    let (_sts, _token, out, o) = once_with_writer_denied();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("AccessDenied"), "{err}");
    assert!(
        err.contains("system:serviceaccount:default:app"),
        "the hint names the sub: {err}"
    );
    assert!(
        err.contains("sts.amazonaws.com"),
        "the hint names the aud: {err}"
    );
    let creds = parse_ini(&std::fs::read_to_string(out.path().join("credentials")).unwrap());
    assert!(creds.contains_key("reader") && !creds.contains_key("writer"));
}

/// Every secret the fake STS issued and the token: none may be in `text`.
fn assert_no_secrets(text: &str, sts: &FakeSts, tokens: &[String]) {
    assert!(
        !sts.issued().is_empty(),
        "the test issued nothing to look for"
    );
    for c in sts.issued() {
        assert!(
            !text.contains(&c.secret_access_key),
            "secret access key in logs"
        );
        assert!(!text.contains(&c.session_token), "session token in logs");
        assert!(
            !text.contains(&c.session_token[..40]),
            "part of a session token in logs"
        );
    }
    for t in tokens {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!text.contains(t.as_str()), "token in logs");
        assert!(!text.contains(sig), "token signature in logs");
    }
}

#[tokio::test]
async fn nothing_secret_reaches_the_logs_even_at_trace_level_with_sensitive_bodies_asked_for() {
    for format in ["text", "json"] {
        let sts = FakeSts::start();
        sts.push_for_role(
            WRITER,
            Reply::error(400, "InvalidIdentityToken", "Token rejected"),
        );
        let first = valid_jwt();
        let token = TokenDir::new(&first);
        let out = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = rolecall_run(
            &sts,
            &token,
            out.path(),
            [("reader", READER), ("writer", WRITER)],
        )
        .args([
            "--health-addr",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            format,
        ])
        .env("RUST_LOG", "trace")
        // The SDK's switch for logging response bodies, which hold the
        // issued keys: rolecall must ignore it.
        .env("LOG_SENSITIVE_BODIES", "true")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let reader = drain_stderr(&mut child);
        assert!(
            sts.wait_for_calls(3, Duration::from_secs(10)).await,
            "writer retried"
        );
        let second = valid_jwt_with_sub("system:serviceaccount:default:other");
        token.rotate(&second);
        signal(&child, "USR1");
        // The reader's manual refresh waits out the 5 s spacing after its
        // first attempt.
        assert!(sts.wait_for_calls(5, Duration::from_secs(10)).await);
        let logs = stop_and_read_logs(&mut child, reader).await;
        assert!(
            logs.contains("refreshed"),
            "{format}: expected refresh lines"
        );
        assert!(
            logs.len() > 10_000,
            "{format}: trace level should be verbose, got {} bytes",
            logs.len()
        );
        assert_no_secrets(&logs, &sts, &[first, second]);
    }
}

#[tokio::test]
async fn sigterm_stops_within_two_seconds_leaving_the_files() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let mut child = rolecall_command()
        .arg("run")
        .args(base_args(&sts, &token, out.path()))
        .args([
            "--profile",
            &format!("reader={READER}"),
            "--health-addr",
            "",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let creds = out.path().join("credentials");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&creds)
            .is_ok_and(|c| c.contains("[reader]")))
        .await
    );
    // Make the next call hang, and ask for it: shutdown must not wait for STS.
    sts.set_default(Reply::Hang);
    signal(&child, "USR1");
    // SIGUSR1 is spaced 5 s after a profile's last attempt (the one that
    // wrote `credentials`), so the call comes up to 5 s after the signal:
    // wait longer than that spacing.
    assert!(sts.wait_for_calls(2, Duration::from_secs(15)).await);
    let asked = Instant::now();
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(2))
        .await
        .expect("stopped within 2 s");
    assert_eq!(status.code(), Some(0));
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert!(
        std::fs::read_to_string(&creds)
            .unwrap()
            .contains("[reader]")
    );
    assert!(out.path().join("config").exists());
}

#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let cfg = out.path().join("..rolecall.yaml");
    std::fs::write(
        &cfg,
        format!("profiles:\n  reader: {{role_arn: '{READER}'}}\n"),
    )
    .unwrap();
    let mut child = rolecall_command()
        .args(base_args(&sts, &token, out.path()))
        .args(["--health-addr", ""])
        .env("ROLECALL_CONFIG", &cfg)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let creds = out.path().join("credentials");
    let has = |name: &str| {
        std::fs::read_to_string(&creds).is_ok_and(|c| c.contains(&format!("[{name}]")))
    };
    assert!(wait_until(Duration::from_secs(10), || has("reader")).await);
    std::fs::write(
        &cfg,
        format!("profiles:\n  writer: {{role_arn: '{WRITER}'}}\n"),
    )
    .unwrap();
    signal(&child, "HUP");
    assert!(wait_until(Duration::from_secs(5), || has("writer") && !has("reader")).await);
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(2))
            .await
            .unwrap()
            .code(),
        Some(0)
    );
}

#[test]
fn check_prints_the_claims_and_the_trust_policy_each_role_needs() {
    let token = TokenDir::new(&valid_jwt());
    let o = rolecall_command()
        .args([
            "check",
            "--token-file",
            &token.path().display().to_string(),
            "--region",
            "eu-west-1",
        ])
        .args([
            "--profile",
            &format!("reader={READER}"),
            "--profile",
            "audit=arn:aws:iam::444455556666:role/audit",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let claims = decode_jwt_claims(&token.read());
    let iss = claims["iss"].as_str().unwrap();
    let host = iss.trim_start_matches("https://");
    assert!(out.contains(&format!("iss: {iss}")), "{out}");
    assert!(
        out.contains(&format!("sub: {}", claims["sub"].as_str().unwrap())),
        "{out}"
    );
    assert!(out.contains("aud: sts.amazonaws.com"), "{out}");
    assert!(
        out.contains(&format!(
            "\"Federated\": \"arn:aws:iam::111122223333:oidc-provider/{host}\""
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "\"Federated\": \"arn:aws:iam::444455556666:oidc-provider/{host}\""
        )),
        "each role's own account: {out}"
    );
    assert!(out.contains("\"sts:AssumeRoleWithWebIdentity\""), "{out}");
    assert!(
        out.contains(&format!(
            "\"{host}:sub\": \"{}\"",
            claims["sub"].as_str().unwrap()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("\"{host}:aud\": \"sts.amazonaws.com\"")),
        "{out}"
    );
    assert!(
        !out.contains(&token.read()),
        "the token itself is never printed"
    );
    assert!(
        out.contains("STS endpoint: https://sts.eu-west-1.amazonaws.com"),
        "the endpoint each profile calls: {out}"
    );
    // The default mode (file or process) has its note, after the profiles.
    let last = out.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("note: file mode (audit, reader)")
            || last.starts_with("note: process mode (audit, reader)"),
        "{out}"
    );
}

#[test]
fn check_prints_the_fips_and_dual_stack_endpoints_the_sdk_resolves() {
    let token = TokenDir::new(&valid_jwt());
    let o = rolecall_command()
        .args(["check", "--token-file", &token.path().display().to_string()])
        .args(["--region", "us-east-1", "--use-fips-endpoint"])
        .args(["--profile", &format!("reader={READER}")])
        .env("AWS_USE_DUALSTACK_ENDPOINT", "true")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("STS endpoint: https://sts-fips.us-east-1.api.aws"),
        "{out}"
    );
}

#[test]
fn check_assume_calls_sts_once_per_profile_explains_failures_and_writes_nothing() {
    let sts = FakeSts::start();
    sts.push_for_role(WRITER, Reply::access_denied());
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let o = rolecall_command()
        .args(["check", "--assume"])
        .args(base_args(&sts, &token, out.path()))
        .args(reader_and_writer())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("assume: OK as arn:aws:sts::111122223333:assumed-role/reader/"),
        "{text}"
    );
    assert!(text.contains("assume: FAILED AccessDenied"), "{text}");
    assert!(
        text.contains("fix: the trust policy of arn:aws:iam::111122223333:role/writer"),
        "{text}"
    );
    assert_eq!(sts.calls(), 2);
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "check writes nothing"
    );
    for c in sts.issued() {
        assert!(!text.contains(&c.secret_access_key) && !text.contains(&c.session_token));
    }
}

#[test]
fn check_with_an_expired_or_missing_token_says_so_and_fails() {
    let token = TokenDir::new(&expired_jwt());
    let args = |t: &str| {
        rolecall_command()
            .args([
                "check",
                "--token-file",
                t,
                "--region",
                "eu-west-1",
                "--profile",
                &format!("reader={READER}"),
            ])
            .output()
            .unwrap()
    };
    let o = args(&token.path().display().to_string());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("the token expired"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = args("/no/such/token");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("The token cannot be used: token file /no/such/token does not exist")
    );
}

#[test]
fn status_shows_role_expiry_and_last_error_from_the_output_dir() {
    let (sts, _token, out, o) = once_with_writer_denied();
    assert_eq!(o.status.code(), Some(1));
    let o = rolecall_command()
        .args(["status", "--output-dir", &out.path().display().to_string()])
        .output()
        .unwrap();
    // The writer never got a session: not ready, exit 1; the table still
    // prints.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stderr(&o), "rolecall: not ready: writer (no session)\n");
    let table = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("PROFILE"), "{table}");
    assert!(
        lines[1].starts_with("reader") && lines[1].contains(READER) && lines[1].contains("59m"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("writer") && lines[2].contains("AccessDenied: Not authorized"),
        "{table}"
    );

    let o = rolecall_command()
        .args(["status", "--json"])
        .env("ROLECALL_OUTPUT_DIR", out.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "--json: the same code");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["profiles"][0]["name"], "reader");
    assert!(
        v["profiles"][1]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("AccessDenied")
    );
    let status_text = std::fs::read_to_string(out.path().join("status.json")).unwrap();
    for c in sts.issued() {
        assert!(
            !status_text.contains(&c.secret_access_key) && !status_text.contains(&c.access_key_id)
        );
    }

    let empty = tempfile::tempdir().unwrap();
    let o = rolecall_command()
        .args([
            "status",
            "--output-dir",
            &empty.path().display().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is rolecall running"));
}

#[tokio::test]
async fn a_burst_of_sigusr1_costs_one_refresh_and_one_log_line() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let mut child = rolecall_run(&sts, &token, out.path(), [("reader", READER)])
        .args(["--health-addr", ""])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = drain_stderr(&mut child);
    let creds = out.path().join("credentials");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&creds)
            .is_ok_and(|c| c.contains("[reader]")))
        .await
    );
    for _ in 0..100 {
        signal(&child, "USR1");
    }
    // One refresh for the whole burst (at most one per 5 s per profile).
    assert!(sts.wait_for_calls(2, Duration::from_secs(10)).await);
    assert!(
        wait_until(Duration::from_secs(5), || sts.issued().len() == 2).await,
        "the refresh succeeded"
    );
    let logs = stop_and_read_logs(&mut child, reader).await;
    assert_eq!(sts.calls(), 2, "one call at start, one for the burst");
    let lines = logs
        .lines()
        .filter(|l| l.contains("refreshing every profile now"))
        .count();
    assert_eq!(lines, 1, "{logs}");
}

// `check --issuer`: the policies before the first deploy, with no token
// (the token file named does not exist) and no STS.

const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const HOST: &str = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

/// `rolecall check --issuer … --namespace shop --service-account cart` and
/// `more`, with a token file that does not exist.
fn check_issuer(issuer: &str, more: &[&str]) -> Output {
    rolecall_command()
        .args([
            "check",
            "--token-file",
            "/nonexistent/token",
            "--issuer",
            issuer,
        ])
        .args(["--namespace", "shop", "--service-account", "cart"])
        .args(more)
        .env_remove("AWS_ROLE_ARN")
        .env_remove("ROLECALL_PROFILES")
        .env_remove("ROLECALL_CONFIG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one web-identity statement's principal, subject and audience.
fn web_identity(doc: &serde_json::Value, host: &str) -> (String, String, String) {
    let st = &doc["Statement"][0];
    assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity", "{doc}");
    let eq = &st["Condition"]["StringEquals"];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    (
        s(&st["Principal"]["Federated"]),
        s(&eq[format!("{host}:sub")]),
        s(&eq[format!("{host}:aud")]),
    )
}

#[test]
fn check_issuer_without_profiles_prints_the_trust_policy_for_the_account() {
    let want = (
        format!("arn:aws:iam::111122223333:oidc-provider/{HOST}"),
        "system:serviceaccount:shop:cart".to_owned(),
        "sts.amazonaws.com".to_owned(),
    );
    // The document alone, the same with or without https:// and a slash.
    let mut docs = Vec::new();
    for issuer in [ISSUER, HOST, &format!("{ISSUER}/")] {
        let o = check_issuer(
            issuer,
            &["--account-id", "111122223333", "-o", "trust-policy"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(web_identity(&doc, HOST), want);
        assert_eq!(doc["Version"], "2012-10-17");
        docs.push(doc);
    }
    assert!(docs.windows(2).all(|w| w[0] == w[1]));

    let o = check_issuer(ISSUER, &["--account-id", "111122223333"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with(&format!("issuer: {ISSUER}\nsubject: system:serviceaccount:shop:cart\naudience: sts.amazonaws.com\n")), "{text}");
    assert!(
        text.contains(&format!("IAM OIDC provider {} must exist", want.0)),
        "{text}"
    );
    assert!(!text.contains("token:"), "no token is read: {text}");

    let o = check_issuer(
        ISSUER,
        &[
            "--account-id",
            "111122223333",
            "-o",
            "json",
            "--audience",
            "my-aud",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["issuer"], ISSUER);
    assert_eq!(v["audience"], "my-aud");
    assert_eq!(v["oidc_provider_arn"], want.0.as_str());
    assert_eq!(v["profiles"], serde_json::json!([]));
    assert_eq!(web_identity(&v["trust_policy"], HOST).2, "my-aud");
}

#[test]
fn check_issuer_finds_the_partition_in_the_issuer_the_flag_or_the_role() {
    let cases: [(&str, &[&str], &str); 4] = [
        ("oidc.eks.cn-north-1.amazonaws.com.cn/id/A", &[], "aws-cn"),
        (
            "oidc.eks.us-gov-west-1.amazonaws.com/id/A",
            &[],
            "aws-us-gov",
        ),
        ("issuer.example.com/cluster", &[], "aws"),
        (
            "issuer.example.com/cluster",
            &["--partition", "aws-cn"],
            "aws-cn",
        ),
    ];
    for (issuer, more, partition) in cases {
        let mut args = vec!["--account-id", "111122223333", "-o", "trust-policy"];
        args.extend(more);
        let o = check_issuer(issuer, &args);
        assert_eq!(o.status.code(), Some(0), "{issuer}: {}", stderr(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            web_identity(&doc, issuer).0,
            format!("arn:{partition}:iam::111122223333:oidc-provider/{issuer}"),
        );
    }
    // With profiles, each role's ARN gives partition and account.
    let o = check_issuer(
        "oidc.eks.cn-north-1.amazonaws.com.cn/id/A",
        &[
            "--region",
            "cn-north-1",
            "--profile",
            "r=arn:aws-cn:iam::444455556666:role/r",
            "-o",
            "trust-policy",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        web_identity(&doc, "oidc.eks.cn-north-1.amazonaws.com.cn/id/A").0,
        "arn:aws-cn:iam::444455556666:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/A"
    );
}

/// A reader (web identity) and an audit role chained from it with session
/// tags and a source identity, in another account.
fn chained_config() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut f,
        format!(
            "region: eu-west-1\nprofiles:\n  reader:\n    role_arn: {READER}\n    credentials: file\n  \
             writer:\n    role_arn: {WRITER}\n    credentials: process\n  \
             audit:\n    role_arn: arn:aws:iam::444455556666:role/audit\n    source_profile: reader\n    \
             credentials: process\n    kubernetes_tags: true\n    source_identity: ci\n"
        )
        .as_bytes(),
    )
    .unwrap();
    f
}

#[test]
fn check_issuer_prints_chained_roles_trust_and_the_source_roles_permissions() {
    let cfg = chained_config();
    let config = ["--config", cfg.path().to_str().unwrap()];
    let o = check_issuer(ISSUER, &[&config[..], &["-o", "json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let by_name = |n: &str| {
        v["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap()
    };
    let reader = by_name("reader");
    assert_eq!(reader["role_arn"], READER);
    assert_eq!(
        web_identity(&reader["trust_policy"], HOST).0,
        format!("arn:aws:iam::111122223333:oidc-provider/{HOST}")
    );
    assert!(reader["permissions_policy"].is_null());
    let audit = by_name("audit");
    let actions = serde_json::json!(["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]);
    let st = &audit["trust_policy"]["Statement"][0];
    assert_eq!(st["Principal"]["AWS"], READER);
    assert_eq!(st["Action"], actions);
    assert_eq!(audit["permissions_policy_role_arn"], READER);
    let perm = &audit["permissions_policy"]["Statement"][0];
    assert_eq!(perm["Action"], actions);
    assert_eq!(perm["Resource"], "arn:aws:iam::444455556666:role/audit");
    assert!(v["trust_policy"].is_null(), "the roles need two documents");

    // The document alone: refused while the roles differ, one on request.
    let o = check_issuer(ISSUER, &[&config[..], &["-o", "trust-policy"]].concat());
    assert_eq!(o.status.code(), Some(64));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("the roles need 2 different trust policies (reader, writer | audit): pass --for-profile NAME, one of audit, reader, writer"),
        "{}",
        stderr(&o)
    );
    let o = check_issuer(
        ISSUER,
        &[
            &config[..],
            &["-o", "trust-policy", "--for-profile", "audit"],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["Statement"][0]["Principal"]["AWS"], READER);

    // For a person: the same, then the notes on modes (exit unchanged).
    let o = check_issuer(ISSUER, &config);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(
            "permissions policy the source role arn:aws:iam::111122223333:role/reader needs:"
        ),
        "{text}"
    );
    let notes: Vec<&str> = text.lines().filter(|l| l.starts_with("note: ")).collect();
    assert_eq!(notes.len(), 2, "{text}");
    assert!(notes[0].starts_with("note: file mode (reader): long-lived SDK clients — boto3, JS v3, Rust, Go — keep the first keys"), "{text}");
    assert!(notes[1].starts_with("note: process mode (audit, writer): the Go SDK and the Rust SDK run credential_process through /bin/sh"), "{text}");
    assert!(
        text.trim_end().ends_with(notes[1]),
        "the notes come last: {text}"
    );
}

#[test]
fn check_issuer_reports_every_bad_input_at_once_with_exit_64() {
    let o = rolecall_command()
        .args([
            "check",
            "--issuer",
            "http://x",
            "--namespace",
            "Shop",
            "--service-account",
            "c_a",
        ])
        .args([
            "--account-id",
            "12",
            "--partition",
            "azure",
            "--audience",
            "a b",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    let e = stderr(&o);
    assert!(e.starts_with("rolecall: check: 6 problems:"), "{e}");
    for origin in [
        "--issuer",
        "--namespace",
        "--service-account",
        "--account-id",
        "--partition",
        "--audience",
    ] {
        assert!(e.contains(&format!("\n  - {origin}: ")), "{origin}: {e}");
    }
    assert!(stdout(&o).is_empty());

    let cases: [(&[&str], &str); 5] = [
        (
            &[],
            "--account-id: without profiles, the OIDC provider's account is needed",
        ),
        (
            &["--account-id", "111122223333", "--for-profile", "x"],
            "--for-profile: no profiles configured",
        ),
        (
            &[
                "--profile",
                &format!("reader={READER}"),
                "--region",
                "eu-west-1",
                "--for-profile",
                "x",
            ],
            "--for-profile: \"x\": no such profile; the profiles are reader",
        ),
        (
            &[
                "--profile",
                &format!("reader={READER}"),
                "--region",
                "eu-west-1",
                "--account-id",
                "444455556666",
            ],
            "profile reader's role is in account 111122223333",
        ),
        (
            &[
                "--profile",
                &format!("reader={READER}"),
                "--account-id",
                "1",
            ],
            "no AWS region",
        ),
    ];
    for (more, says) in cases {
        let o = check_issuer(ISSUER, more);
        assert_eq!(o.status.code(), Some(64), "{more:?}");
        assert!(stderr(&o).contains(says), "{more:?}: {}", stderr(&o));
    }
    // A bad flag and an unknown --for-profile, together.
    let o = check_issuer(
        "http://x",
        &[
            "--profile",
            &format!("reader={READER}"),
            "--region",
            "eu-west-1",
            "--for-profile",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).starts_with("rolecall: check: 2 problems:"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("--for-profile: \"x\": no such profile"),
        "{}",
        stderr(&o)
    );
    // The last: a configuration problem and a flag's, together.
    let o = check_issuer(
        ISSUER,
        &[
            "--profile",
            &format!("reader={READER}"),
            "--account-id",
            "1",
        ],
    );
    assert!(stderr(&o).contains("--account-id: \"1\""), "{}", stderr(&o));

    // Usage: the formats need --issuer; --issuer needs both names and
    // excludes --assume.
    for args in [
        &["check", "-o", "json"][..],
        &["check", "--issuer", ISSUER, "--namespace", "shop"],
        &[
            "check",
            "--issuer",
            ISSUER,
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--assume",
        ],
        &["check", "--namespace", "a"],
        &["check", "-o", "yaml"],
    ] {
        let o = rolecall_command().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
    }
}

/// `aws iam` against moto, with moto's test keys and no configuration.
fn aws_iam(moto: &Moto, args: &[&str]) -> Output {
    Command::new(venv_bin("aws"))
        .arg("iam")
        .args(args)
        .args(["--endpoint-url", &moto.endpoint(), "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("run aws")
}

#[test]
#[ignore = "needs the Python tools (make venv): ROLECALL_VENV=$PWD/.venv cargo test --test cli -- --ignored"]
fn check_issuer_trust_policy_is_what_aws_iam_create_role_takes() {
    let moto = Moto::start(&venv());
    let dir = tempfile::tempdir().unwrap();
    let cfg = chained_config();
    // Without profiles (one document for the account), and a chained
    // role's, chosen with --for-profile.
    let cases: [(&str, Vec<&str>); 2] = [
        ("reader", vec!["--account-id", "111122223333"]),
        (
            "audit",
            vec![
                "--config",
                cfg.path().to_str().unwrap(),
                "--for-profile",
                "audit",
            ],
        ),
    ];
    for (role, more) in cases {
        let mut args = more.clone();
        args.extend(["-o", "trust-policy"]);
        let o = check_issuer(ISSUER, &args);
        assert_eq!(o.status.code(), Some(0), "{role}: {}", stderr(&o));
        let file = dir.path().join(format!("{role}.json"));
        std::fs::write(&file, &o.stdout).unwrap();
        let created = aws_iam(
            &moto,
            &[
                "create-role",
                "--role-name",
                role,
                "--assume-role-policy-document",
                &format!("file://{}", file.display()),
            ],
        );
        assert!(created.status.success(), "{role}: {}", stderr(&created));
        let got = aws_iam(&moto, &["get-role", "--role-name", role]);
        assert!(got.status.success(), "{role}: {}", stderr(&got));
        let got: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
        let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            got["Role"]["AssumeRolePolicyDocument"], printed,
            "{role}: IAM keeps the document as printed"
        );
    }
}

// ---------------------------------------------------------------- the AWS config names
// (issue 23 item 8; kept apart at the end of the file: other helpers edit the tests above)

/// The AWS names of four options: `--help` lists each as its flag's alias
/// (and not as a flag of its own), a bad value is reported under the
/// spelling given, and both spellings at once are a usage error naming both.
#[test]
fn the_aws_config_names_are_aliases_shown_in_help_and_named_in_errors() {
    let out = rolecall_command().args(["run", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for (own, aws) in [
        ("--token-file", "--web-identity-token-file"),
        ("--sts-endpoint", "--endpoint-url"),
        ("--duration", "--duration-seconds"),
        ("--session-name", "--role-session-name"),
    ] {
        let line = help
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{own} <")));
        let line = line.unwrap_or_else(|| panic!("no {own} in:\n{help}"));
        let text = help.lines().nth(line + 1).unwrap();
        assert!(text.ends_with(&format!("[alias: {aws}]")), "{own}: {text}");
        assert_eq!(
            help.matches(aws).count(),
            1,
            "{aws} listed once, as the alias"
        );
        let out = rolecall_command()
            .args(["once", &format!("{own}=1"), &format!("{aws}=2")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64));
        let err = stderr(&out);
        assert!(err.contains(own) && err.contains(aws), "{err}");
    }
    let out = rolecall_command()
        .args([
            "once",
            "--profile",
            &format!("reader={READER}"),
            "--endpoint-url",
            "ftp://sts.example.com",
            "--duration-seconds",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(
        err.contains("--endpoint-url: ") && err.contains("--duration-seconds: "),
        "{err}"
    );
    assert!(
        !err.contains("--sts-endpoint") && !err.contains("--duration:"),
        "{err}"
    );
}

/// clap's suggestions (the `suggestions` feature, +5.4 KB on the static
/// sidecar): a misspelled flag is still a usage error (exit 64) that names
/// the flag meant.
#[test]
fn a_misspelled_flag_exits_64_suggesting_the_flag_meant() {
    for (typo, meant) in [
        ("--regoin", "'--region'"),
        ("--sesion-name", "'--session-name'"),
    ] {
        let out = rolecall_command()
            .args(["once", typo, "x"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64));
        let err = stderr(&out);
        assert!(
            err.contains("a similar argument exists") && err.contains(meant),
            "{err}"
        );
    }
}
