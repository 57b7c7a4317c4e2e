//! The sidecar end to end, in-process: a real HTTP server playing STS on
//! 127.0.0.1, a kubelet-style token directory, a real output directory.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rolecall::clock::Clock;
use rolecall::config::{Config, Env, Flags};
use rolecall::{Command, Options};
use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";
const AUDIT: &str = "arn:aws:iam::444455556666:role/audit";

/// Backoff at its ceiling and refreshes at exactly 45 % of the lifetime:
/// deterministic schedules.
fn ceiling_jitter() -> f64 {
    1.0
}

fn opts() -> Options {
    Options {
        attempt_timeout: Duration::from_secs(2),
        jitter: ceiling_jitter,
        // The steady schedule: no spread of a first refresh.
        spread: || 0.0,
        ..Options::default()
    }
}

struct Harness {
    sts: FakeSts,
    token: TokenDir,
    out: tempfile::TempDir,
    health_port: u16,
    clock: Clock,
}

impl Harness {
    /// For a test under paused time: the fake STS on the test's runtime
    /// (see `FakeSts::start_local`), it and the sidecar ([`Harness::opts`])
    /// on one [`Clock::tokio`], so sessions expire in simulated time.
    fn paused() -> Harness {
        let clock = Clock::tokio();
        let sts = FakeSts::start_local();
        sts.set_clock(clock);
        Harness::with(sts, clock)
    }

    /// [`opts`] on the harness's clock.
    fn opts(&self) -> Options {
        Options {
            clock: self.clock,
            ..opts()
        }
    }

    fn new() -> Harness {
        Harness::with(FakeSts::start(), Clock::system())
    }

    fn with(sts: FakeSts, clock: Clock) -> Harness {
        use tracing_subscriber::prelude::*;
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_test_writer()
                    .with_ansi(false)
                    .with_filter(rolecall::logging::filter("rolecall=debug")),
            )
            .try_init();
        Harness {
            sts,
            token: TokenDir::new(&valid_jwt()),
            out: tempfile::tempdir().unwrap(),
            health_port: free_port(),
            clock,
        }
    }

    fn flags(&self, profiles: &[(&str, &str)]) -> Flags {
        Flags {
            profiles: profiles.iter().map(|(n, a)| format!("{n}={a}")).collect(),
            token_file: Some(self.token.path().display().to_string()),
            output_dir: Some(self.out.path().display().to_string()),
            region: Some("eu-west-1".into()),
            sts_endpoint: Some(self.sts.endpoint()),
            session_name: Some("rolecall-test".into()),
            health_addr: Some(format!("127.0.0.1:{}", self.health_port)),
            control_socket: Some(String::new()), // no socket in the host's /run
            credentials: Some(TEST_MODE.into()), // not the default: see TEST_MODE
            ..Flags::default()
        }
    }

    fn config(&self, profiles: &[(&str, &str)]) -> Config {
        Config::load(&self.flags(profiles), &Env::new()).expect("valid test configuration")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.out.path().join(name)
    }

    fn credentials(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
        match std::fs::read_to_string(self.path("credentials")) {
            Ok(text) => parse_ini(&text),
            Err(_) => Default::default(),
        }
    }

    fn key_of(&self, profile: &str) -> Option<String> {
        self.credentials()
            .get(profile)
            .and_then(|s| s.get("aws_access_key_id").cloned())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.health_port, path, None).await
    }

    /// Polls `/readyz` until `f` holds for its answer (at most 5 s).
    async fn wait_readyz(&self, f: impl Fn(u16, &str) -> bool) -> (u16, String) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, body) = self.get("/readyz").await;
            if f(status, &body) || Instant::now() > deadline {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn once_writes_every_profile_with_one_sts_call_each() {
    let h = Harness::new();
    let config = h.config(&[("reader", READER), ("writer", WRITER), ("default", AUDIT)]);
    let report = rolecall::once(&config, &opts()).await.unwrap();
    assert!(report.failed.is_empty());
    assert_eq!(h.sts.calls(), 3);

    let creds = h.credentials();
    assert_eq!(
        creds.keys().collect::<Vec<_>>(),
        ["default", "reader", "writer"]
    );
    for (name, arn) in [("reader", READER), ("writer", WRITER), ("default", AUDIT)] {
        let issued = h.sts.last_issued_for_role(arn).unwrap();
        let s = &creds[name];
        assert_eq!(s["aws_access_key_id"], issued.access_key_id);
        assert_eq!(s["aws_secret_access_key"], issued.secret_access_key);
        assert_eq!(s["aws_session_token"], issued.session_token);
    }
    let config_ini = parse_ini(&std::fs::read_to_string(h.path("config")).unwrap());
    assert_eq!(config_ini["default"]["region"], "eu-west-1");
    assert_eq!(config_ini["profile reader"]["region"], "eu-west-1");

    let req = &h.sts.requests_for_role(READER)[0];
    assert_eq!(req.action, "AssumeRoleWithWebIdentity");
    assert_eq!(req.session_name, "rolecall-test");
    assert_eq!(req.duration_seconds, Some(3600));
    assert_eq!(req.token.as_deref(), Some(h.token.read().trim()));
    assert!(
        req.authorization.is_none(),
        "AssumeRoleWithWebIdentity is sent unsigned"
    );

    use std::os::unix::fs::PermissionsExt;
    for f in ["credentials", "config"] {
        let mode = std::fs::metadata(h.path(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{f}");
    }
}

#[tokio::test]
async fn once_reports_the_profiles_that_failed_and_still_writes_the_others() {
    let h = Harness::new();
    h.sts.push_for_role(WRITER, Reply::access_denied());
    let report = rolecall::once(
        &h.config(&[("reader", READER), ("writer", WRITER)]),
        &opts(),
    )
    .await
    .unwrap();
    assert_eq!(report.failed, ["writer"]);
    let creds = h.credentials();
    assert!(creds.contains_key("reader"));
    assert!(!creds.contains_key("writer"));
}

#[tokio::test(start_paused = true)]
async fn refreshes_each_profile_at_about_half_its_lifetime() {
    let h = Harness::paused();
    let r = Running::start(h.config(&[("reader", READER)]), h.opts());
    assert!(h.sts.wait_for_calls(3, Duration::from_secs(10)).await);
    // Three calls: at 0, then twice at 45 % of an hour's session (whole
    // seconds on the wire make it 3599-3600 s): 1619.55-1620 s apart, on the
    // paused clock.
    let at: Vec<_> = h.sts.requests().iter().map(|r| r.received).collect();
    for gap in at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()) {
        assert!(
            (1619.5..=1620.01).contains(&gap),
            "refreshed {gap:.3} s after the previous call, not at 45 % of the lifetime"
        );
    }
    // A request is recorded before its credentials are issued: wait for both.
    assert!(
        wait_until(Duration::from_secs(2), || {
            let third = h.sts.issued().get(2).map(|c| c.access_key_id.clone());
            third.is_some() && h.key_of("reader") == third
        })
        .await
    );
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn keeps_last_good_credentials_when_sts_fails_and_removes_them_at_expiry() {
    let h = Harness::paused();
    h.sts.push(Reply::ok());
    h.sts.set_default(Reply::server_error());
    let r = Running::start(h.config(&[("reader", READER)]), h.opts());
    assert!(wait_until(Duration::from_secs(5), || h.key_of("reader").is_some()).await);
    let good = h.key_of("reader").unwrap();
    assert_eq!(h.get("/readyz").await.0, 200);
    let expiry = h.sts.issued()[0].expiration;

    // The refresh at ~27 min fails; the old keys stay published and ready,
    // up to a second before they expire.
    assert!(h.sts.wait_for_calls(2, Duration::from_secs(10)).await);
    let failing_since = tokio::time::Instant::now();
    assert_eq!(h.key_of("reader").as_deref(), Some(good.as_str()));
    assert_eq!(h.get("/readyz").await.0, 200);
    let left = expiry.duration_since(h.clock.now()).unwrap();
    tokio::time::sleep(left - Duration::from_secs(1)).await;
    assert_eq!(h.key_of("reader").as_deref(), Some(good.as_str()));
    assert_eq!(h.get("/readyz").await.0, 200);

    // At expiry (by the injected clock) they are removed from the file and
    // readiness drops.
    assert!(wait_until(Duration::from_secs(2), || h.key_of("reader").is_none()).await);
    assert!(h.clock.now() >= expiry, "removed before expiry");
    assert!(h.path("credentials").exists(), "the file itself stays");
    let (status, body) = h.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("reader: InternalFailure"), "{body}");
    // Backoff, not a hot loop: ceilings 1 s, 2 s, ..., 32 s, then 60 s.
    let failing = failing_since.elapsed().as_secs();
    let calls = h.sts.calls() as u64;
    assert!(
        calls <= 2 + 6 + failing / 60 + 1,
        "{calls} calls in {failing} s"
    );

    // STS comes back: recovery by itself, within one backoff.
    h.sts.set_default(Reply::ok());
    assert!(wait_until(Duration::from_secs(61), || h.key_of("reader").is_some()).await);
    assert_eq!(h.get("/readyz").await.0, 200);
    r.stop().await;
}

// Real time: how fast a rotation is noticed is the watcher's inotify events
// on real files (and its poll fallback), measured on the wall clock.
#[tokio::test]
async fn token_rotation_retries_failing_profiles_at_once_and_leaves_healthy_ones_alone() {
    let h = Harness::new();
    for _ in 0..3 {
        h.sts.push_for_role(WRITER, Reply::access_denied());
    }
    let r = Running::start(h.config(&[("reader", READER), ("writer", WRITER)]), opts());
    assert!(h.sts.wait_for_calls(2, Duration::from_secs(5)).await);
    assert!(wait_until(Duration::from_secs(2), || h.key_of("reader").is_some()).await);
    assert_eq!(h.get("/readyz").await.0, 503);

    // AccessDenied waits five minutes... unless the token changes: two
    // rotations meet AccessDenied again, the third succeeds.
    for i in 0..3 {
        let before = h.sts.calls_for_role(WRITER);
        let rotated = Instant::now();
        h.token.rotate(&valid_jwt_with_sub(&format!(
            "system:serviceaccount:default:app{i}"
        )));
        assert!(
            wait_until(Duration::from_secs(2), || h.sts.calls_for_role(WRITER)
                > before)
            .await,
            "rotation {i} not picked up"
        );
        assert!(
            rotated.elapsed() < Duration::from_secs(1),
            "rotation {i} took {:?}",
            rotated.elapsed()
        );
    }
    assert!(wait_until(Duration::from_secs(2), || h.key_of("writer").is_some()).await);
    assert_eq!(
        h.sts.calls_for_role(READER),
        1,
        "a healthy profile keeps its schedule"
    );
    assert_eq!(h.get("/readyz").await.0, 200);
    r.stop().await;
}

#[tokio::test]
async fn a_missing_or_expired_token_is_never_sent_and_is_picked_up_when_it_appears() {
    let h = Harness::new();
    h.token.rotate(&expired_jwt());
    let r = Running::start(h.config(&[("reader", READER)]), opts());
    let (status, body) = h
        .wait_readyz(|_, body| body.contains("TokenUnavailable"))
        .await;
    assert_eq!(status, 503);
    assert!(body.contains("TokenUnavailable"), "{body}");
    assert!(body.contains("expired"), "{body}");
    assert_eq!(h.sts.calls(), 0, "an expired token must not reach STS");

    h.token.remove_token();
    h.token.rotate(&valid_jwt());
    assert!(h.sts.wait_for_calls(1, Duration::from_secs(2)).await);
    assert!(wait_until(Duration::from_secs(2), || h.key_of("reader").is_some()).await);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refresh_now_refreshes_every_profile_once() {
    let h = Harness::paused();
    let r = Running::start(
        h.config(&[("reader", READER), ("writer", WRITER)]),
        h.opts(),
    );
    assert!(h.sts.wait_for_calls(2, Duration::from_secs(5)).await);
    assert!(wait_until(Duration::from_secs(2), || h.key_of("writer").is_some()).await);
    let first = h.key_of("reader");
    // Within 5 s of the first attempts: held until 5 s have passed.
    r.controls.send(Command::refresh_all()).await.unwrap();
    assert!(h.sts.wait_for_calls(4, Duration::from_secs(10)).await);
    let reqs = h.sts.requests();
    let held = reqs[2].received - reqs[0].received;
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(6)).contains(&held),
        "{held:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || h.key_of("reader") != first).await);
    assert_eq!(h.sts.calls_for_role(READER), 2);
    assert_eq!(h.sts.calls_for_role(WRITER), 2);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn transient_errors_back_off_exponentially() {
    let h = Harness::paused();
    // Throttling has its own pace (tests/throttling.rs).
    h.sts.set_default(Reply::error(
        503,
        "ServiceUnavailable",
        "Service is unavailable",
    ));
    let r = Running::start(h.config(&[("reader", READER)]), h.opts());
    assert!(h.sts.wait_for_calls(3, Duration::from_secs(15)).await);
    // 0, then +1 s, then +10 s (the ceilings, with this jitter), on the
    // paused clock: after two failures in a row STS is down, and the
    // sidecar probes it 5-10 s, 10-20 s... apart (src/pacer.rs).
    let at: Vec<_> = h.sts.requests().iter().map(|r| r.received).collect();
    for (i, want) in [(1, 1), (2, 10)] {
        let gap = at[i] - at[i - 1];
        assert!(
            gap >= Duration::from_secs(want) && gap < Duration::from_millis(want * 1000 + 100),
            "retry {i} after {gap:?}"
        );
    }
    h.sts.set_default(Reply::ok());
    assert!(wait_until(Duration::from_secs(25), || h.key_of("reader").is_some()).await);
    let (_, metrics) = h.get("/metrics").await;
    assert!(
        metrics.contains(r#"rolecall_refresh_total{profile="reader",result="transient_error"} 3"#),
        "{metrics}"
    );
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_identity_token_is_retried_with_backoff_not_every_five_minutes() {
    let h = Harness::paused();
    h.sts.push(Reply::error(
        400,
        "InvalidIdentityToken",
        "Couldn't retrieve verification key from your identity provider",
    ));
    let r = Running::start(h.config(&[("reader", READER)]), h.opts());
    assert!(h.sts.wait_for_calls(2, Duration::from_secs(4)).await);
    // The first backoff ceiling (1 s), on the paused clock.
    let reqs = h.sts.requests();
    let gap = reqs[1].received - reqs[0].received;
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_millis(1100),
        "{gap:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || h.key_of("reader").is_some()).await);
    r.stop().await;
}

// Real time: a prompt shutdown is measured on the wall clock (a paused
// clock would skip the stop grace instead of proving it is not needed).
#[tokio::test]
async fn a_hanging_sts_times_out_per_attempt_and_shutdown_is_prompt() {
    let h = Harness::new();
    h.sts.push(Reply::Hang);
    let options = Options {
        attempt_timeout: Duration::from_millis(500),
        ..opts()
    };
    let r = Running::start(h.config(&[("reader", READER)]), options);
    // The hung attempt times out, the retry (1 s later) succeeds.
    assert!(wait_until(Duration::from_secs(5), || h.key_of("reader").is_some()).await);
    assert_eq!(h.sts.calls(), 2);

    // Shut down while another call hangs: well within 2 s, files left.
    h.sts.set_default(Reply::Hang);
    r.controls.send(Command::refresh_all()).await.unwrap();
    assert!(h.sts.wait_for_calls(3, Duration::from_secs(10)).await);
    let took = r.stop().await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(h.key_of("reader").is_some());
}

#[tokio::test]
async fn garbage_and_resets_are_transient() {
    let h = Harness::new();
    h.sts.push(Reply::Garbage);
    h.sts.push(Reply::Reset);
    let r = Running::start(h.config(&[("reader", READER)]), opts());
    // Two failures in a row: STS is down, probed again 10 s later (this
    // jitter; src/pacer.rs).
    assert!(wait_until(Duration::from_secs(15), || h.key_of("reader").is_some()).await);
    assert_eq!(h.sts.calls(), 3);
    r.stop().await;
}

#[tokio::test]
async fn reload_adds_changes_and_removes_profiles_and_refuses_a_bad_config() {
    let h = Harness::new();
    let file = h.out.path().join("..rolecall.yaml");
    let write_yaml = |profiles: &str| {
        std::fs::write(&file, format!("profiles:\n{profiles}")).unwrap();
    };
    write_yaml(&format!(
        "  reader: {{role_arn: '{READER}'}}\n  writer: {{role_arn: '{WRITER}'}}\n"
    ));
    let mut flags = h.flags(&[]);
    flags.config = Some(file.clone());
    let config = Config::load(&flags, &Env::new()).unwrap();
    let reload_flags = flags.clone();
    let r = Running::start_with_reload(
        config,
        move || Config::load(&reload_flags, &Env::new()),
        opts(),
    );
    assert!(wait_until(Duration::from_secs(5), || h.key_of("writer").is_some()).await);
    let reader_key = h.key_of("reader");

    // An invalid file is refused; everything keeps running.
    write_yaml("  reader: {role_arn: 'not-an-arn'}\n");
    r.controls.send(Command::reload()).await.unwrap();
    write_yaml(&format!(
        "  reader: {{role_arn: '{READER}'}}\n  writer: {{role_arn: '{WRITER}', duration_seconds: 900}}\n  audit: {{role_arn: '{AUDIT}'}}\n"
    ));
    // (the refused reload is processed before this one)
    r.controls.send(Command::reload()).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || h.key_of("audit").is_some()).await);
    assert!(h.sts.wait_for_calls(4, Duration::from_secs(2)).await);
    assert_eq!(
        h.sts
            .requests_for_role(WRITER)
            .last()
            .unwrap()
            .duration_seconds,
        Some(900)
    );
    assert_eq!(
        h.key_of("reader"),
        reader_key,
        "an unchanged profile is not refreshed"
    );

    write_yaml(&format!("  audit: {{role_arn: '{AUDIT}'}}\n"));
    r.controls.send(Command::reload()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || h
            .credentials()
            .keys()
            .collect::<Vec<_>>()
            == ["audit"])
        .await
    );
    let config_ini = std::fs::read_to_string(h.path("config")).unwrap();
    assert!(!config_ini.contains("reader"), "{config_ini}");
    let (_, metrics) = h.get("/metrics").await;
    assert!(!metrics.contains(r#"profile="reader""#), "{metrics}");
    assert_eq!(h.sts.calls(), 4);
    r.stop().await;
}

#[tokio::test]
async fn health_endpoints_report_liveness_readiness_and_metrics() {
    let h = Harness::new();
    h.sts.push_for_role(WRITER, Reply::Hang);
    let options = Options {
        attempt_timeout: Duration::from_secs(1),
        ..opts()
    };
    let r = Running::start(h.config(&[("reader", READER), ("writer", WRITER)]), options);
    assert!(
        wait_until(Duration::from_secs(2), || std::net::TcpStream::connect((
            "127.0.0.1",
            h.health_port
        ))
        .is_ok())
        .await
    );
    assert_eq!(h.get("/livez").await.0, 200);
    let (status, body) = h.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("writer: no credentials yet"), "{body}");

    assert!(wait_until(Duration::from_secs(5), || h.key_of("writer").is_some()).await);
    assert_eq!(h.get("/readyz").await.0, 200);
    let (status, metrics) = h.get("/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        r#"rolecall_credentials_expiry_timestamp_seconds{profile="reader"}"#,
        r#"rolecall_refresh_total{profile="writer",result="transient_error"} 1"#,
        r#"rolecall_refresh_total{profile="writer",result="success"} 1"#,
        "rolecall_token_expiry_timestamp_seconds ",
        "rolecall_sts_request_duration_seconds_bucket",
        "rolecall_ready 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    let exp = decode_jwt_claims(&h.token.read())["exp"].as_u64().unwrap();
    assert!(metrics.contains(&format!("rolecall_token_expiry_timestamp_seconds {exp}")));
    assert_eq!(h.get("/nope").await.0, 404);
    r.stop().await;
}

#[tokio::test]
async fn role_chaining_assumes_the_target_with_the_source_session() {
    let h = Harness::new();
    let file = h.out.path().join("..chain.yaml");
    std::fs::write(
        &file,
        format!("profiles:\n  reader: {{role_arn: '{READER}'}}\n  audit: {{role_arn: '{AUDIT}', source_profile: reader, external_id: example}}\n"),
    )
    .unwrap();
    let mut flags = h.flags(&[]);
    flags.config = Some(file);
    let config = Config::load(&flags, &Env::new()).unwrap();
    let report = rolecall::once(&config, &opts()).await.unwrap();
    assert!(report.failed.is_empty());
    let req = &h.sts.requests_for_role(AUDIT)[0];
    assert_eq!(req.action, "AssumeRole");
    assert_eq!(req.external_id.as_deref(), Some("example"));
    let source = h.sts.last_issued_for_role(READER).unwrap();
    let auth = req.authorization.as_deref().unwrap();
    assert!(
        auth.contains(&format!("Credential={}/", source.access_key_id)),
        "{auth}"
    );
    assert_eq!(
        req.header("x-amz-security-token"),
        Some(source.session_token.as_str())
    );
    assert!(h.key_of("audit").is_some());
}

#[tokio::test]
async fn the_outputs_are_only_rewritten_when_their_content_changes() {
    let h = Harness::new();
    let r = Running::start(h.config(&[("reader", READER)]), opts());
    assert!(wait_until(Duration::from_secs(5), || h.key_of("reader").is_some()).await);
    let ino = |f: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(h.path(f)).unwrap());
    let (c, k) = (ino("config"), ino("credentials"));
    r.controls.send(Command::refresh_all()).await.unwrap();
    assert!(h.sts.wait_for_calls(2, Duration::from_secs(10)).await);
    assert!(wait_until(Duration::from_secs(2), || ino("credentials") != k).await);
    assert_eq!(
        ino("config"),
        c,
        "config did not change and was not rewritten"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_restart_during_an_sts_outage_keeps_the_previous_valid_credentials() {
    let h = Harness::new();
    let report = rolecall::once(
        &h.config(&[("reader", READER), ("writer", WRITER)]),
        &opts(),
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty());
    let before = h.credentials();

    // STS is down when rolecall restarts; writer now names another role.
    h.sts.set_default(Reply::server_error());
    let r = Running::start(h.config(&[("reader", READER), ("writer", AUDIT)]), opts());
    assert!(h.sts.wait_for_calls(4, Duration::from_secs(5)).await);
    let (status, body) = h.wait_readyz(|s, _| s == 503).await;
    assert_eq!(status, 503);
    assert!(
        body.contains("writer") && !body.contains("reader"),
        "{body}"
    );
    // Readiness is 503 from the start; the first write of the new run
    // follows its initial pass.
    assert!(
        wait_until(Duration::from_secs(5), || !h
            .credentials()
            .contains_key("writer"))
        .await,
        "a session for a different role is not adopted"
    );
    assert_eq!(
        h.credentials().get("reader"),
        before.get("reader"),
        "reader's valid session was kept"
    );
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_session_adopted_after_a_restart_leaves_the_files_at_its_expiry_on_the_injected_clock() {
    let h = Harness::paused();
    let report = rolecall::once(&h.config(&[("reader", READER)]), &h.opts())
        .await
        .unwrap();
    assert!(report.failed.is_empty());
    let good = h.key_of("reader").unwrap();
    let expiry = h.sts.issued()[0].expiration;

    // Half an hour later rolecall restarts while STS is down: it adopts the
    // session from its files and keeps it published while it is valid.
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    h.sts.set_default(Reply::server_error());
    let r = Running::start(h.config(&[("reader", READER)]), h.opts());
    assert!(h.sts.wait_for_calls(2, Duration::from_secs(5)).await);
    assert_eq!(h.key_of("reader").as_deref(), Some(good.as_str()));
    assert_eq!(h.get("/readyz").await.0, 200);
    let left = expiry.duration_since(h.clock.now()).unwrap();
    assert!(left < Duration::from_secs(31 * 60), "{left:?} left");
    tokio::time::sleep(left - Duration::from_secs(1)).await;
    assert_eq!(h.key_of("reader").as_deref(), Some(good.as_str()));

    // At its expiry by the injected clock it is removed, and not ready.
    assert!(wait_until(Duration::from_secs(2), || h.key_of("reader").is_none()).await);
    assert!(h.clock.now() >= expiry, "removed before expiry");
    let (status, body) = h.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("reader: InternalFailure"), "{body}");
    r.stop().await;
}
