//! STS answers that look like success but must not be trusted: credentials
//! that expired before they arrived, a body far larger than any real answer,
//! a `Date` header that disagrees with the local clock; and manual refreshes
//! (SIGUSR1) that must neither hammer STS nor cut a backoff short.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rolecall::config::{Config, Env, Flags, Profile};
use rolecall::refresher::{Context, Manual, Refresher};
use rolecall::state::Shared;
use rolecall::sts::Sts;
use rolecall::{Command, Options};
use support::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const ROLE: &str = "arn:aws:iam::111122223333:role/reader";

fn flags(sts: &FakeSts, token: &TokenDir, out: &std::path::Path, port: u16) -> Flags {
    Flags {
        health_addr: Some(format!("127.0.0.1:{port}")),
        ..test_flags(sts, token, out, &[&format!("reader={ROLE}")])
    }
}

fn ceiling_jitter() -> f64 {
    1.0
}

fn published_key(out: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(out.join("credentials")).ok()?;
    parse_ini(&text)
        .get("reader")
        .map(|s| s["aws_access_key_id"].clone())
}

fn last_error(out: &std::path::Path) -> String {
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("status.json")).unwrap_or_default())
            .unwrap_or_default();
    status["profiles"][0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An in-process sidecar holding one good session, whose every later STS
/// answer is `fault`, asked to refresh now.
struct Faulted {
    sts: FakeSts,
    /// Bind it: dropping it removes the token.
    _token: TokenDir,
    out: tempfile::TempDir,
    port: u16,
    running: Running,
    /// The access key of the good session.
    good: String,
}

async fn good_session_then(fault: Reply) -> Faulted {
    let sts = FakeSts::start();
    sts.push(Reply::ok());
    sts.set_default(fault);
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = Config::load(&flags(&sts, &token, out.path(), port), &Env::new()).unwrap();
    let opts = Options {
        jitter: ceiling_jitter,
        spread: || 0.0,
        ..Options::default()
    };
    let running = Running::start(config, opts);
    assert!(
        wait_until(Duration::from_secs(10), || published_key(out.path())
            .is_some())
        .await
    );
    let good = sts.issued()[0].access_key_id.clone();
    running.controls.send(Command::refresh_all()).await.unwrap();
    Faulted {
        sts,
        _token: token,
        out,
        port,
        running,
        good,
    }
}

#[tokio::test]
async fn a_success_that_expired_before_it_arrived_keeps_the_last_good_session_and_backs_off() {
    let Faulted {
        sts,
        out,
        port,
        running: r,
        good,
        _token,
        ..
    } = good_session_then(Reply::Stale {
        expired_ago: Duration::from_secs(120),
    })
    .await;
    // The refresh, then two retries: backoff ceilings of 1 s and 2 s.
    assert!(sts.wait_for_calls(4, Duration::from_secs(20)).await);
    assert!(
        wait_until(Duration::from_secs(5), || last_error(out.path())
            .starts_with("ExpiredOnArrival"))
        .await,
        "status.json: {}",
        last_error(out.path())
    );
    assert_eq!(
        published_key(out.path()).as_deref(),
        Some(good.as_str()),
        "the good session stays published"
    );
    assert_eq!(http_get(port, "/readyz", None).await.0, 200);
    let at: Vec<_> = sts.requests().iter().map(|r| r.received).collect();
    assert!(
        at[2] - at[1] >= Duration::from_millis(900) && at[3] - at[2] >= Duration::from_millis(1900),
        "no backoff between refused answers: {:?}",
        at.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
    );
    let err = last_error(out.path());
    assert!(err.contains("by the local clock"), "{err}");
    let metrics = http_get(port, "/metrics", None).await.1;
    assert!(
        metrics.contains(r#"rolecall_refresh_total{profile="reader",result="clock_error"}"#),
        "{metrics}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_clock_far_ahead_is_reported_and_its_short_lived_answers_are_refused() {
    let sts = FakeSts::start();
    // Our clock 3700 s ahead of STS's: a one-hour session, issued at STS's
    // now (its Date header), expired 100 s ago by our clock.
    sts.set_date_offset(-3700);
    sts.set_default(Reply::Stale {
        expired_ago: Duration::from_secs(100),
    });
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = Config::load(&flags(&sts, &token, out.path(), port), &Env::new()).unwrap();
    let r = Running::start(config, Options::default());
    assert!(sts.wait_for_calls(1, Duration::from_secs(10)).await);
    assert!(
        wait_until(Duration::from_secs(5), || last_error(out.path())
            .starts_with("ExpiredOnArrival"))
        .await,
        "{}",
        last_error(out.path())
    );
    assert_eq!(published_key(out.path()), None);
    let err = last_error(out.path());
    assert!(err.contains("100 s ago"), "{err}");
    assert!(
        err.contains("-3700 s") || err.contains("-3699 s"),
        "the skew is named: {err}"
    );
    let metrics = http_get(port, "/metrics", None).await.1;
    assert!(
        metrics.contains("rolecall_sts_clock_skew_seconds -3700")
            || metrics.contains("rolecall_sts_clock_skew_seconds -3699"),
        "{metrics}"
    );
    assert_eq!(http_get(port, "/readyz", None).await.0, 503);
    r.stop().await;
}

#[tokio::test]
async fn an_sts_body_larger_than_any_real_answer_is_cut_off_and_the_session_kept() {
    let Faulted {
        sts,
        out,
        running: r,
        good,
        _token,
        ..
    } = good_session_then(Reply::Huge {
        bytes: 8 * 1024 * 1024,
    })
    .await;
    assert!(sts.wait_for_calls(2, Duration::from_secs(10)).await);
    assert!(
        wait_until(Duration::from_secs(10), || last_error(out.path())
            .starts_with("MalformedResponse"))
        .await,
        "{}",
        last_error(out.path())
    );
    assert_eq!(published_key(out.path()).as_deref(), Some(good.as_str()));
    r.stop().await;
}

/// The real binary against a 100 MB answer: its peak memory stays small.
#[tokio::test]
async fn a_100_mb_sts_answer_does_not_grow_memory() {
    let sts = FakeSts::start();
    sts.set_default(Reply::Huge {
        bytes: 100 * 1024 * 1024,
    });
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let mut child = rolecall_command()
        .args([
            "--token-file",
            &token.path().display().to_string(),
            "--output-dir",
            &out.path().display().to_string(),
            "--region",
            "eu-west-1",
            "--sts-endpoint",
            &sts.endpoint(),
            "--profile",
            &format!("reader={ROLE}"),
            "--credentials",
            TEST_MODE,
            "--health-addr",
            "",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(sts.wait_for_calls(1, Duration::from_secs(10)).await);
    assert!(
        wait_until(Duration::from_secs(20), || last_error(out.path())
            .starts_with("MalformedResponse"))
        .await,
        "{}",
        last_error(out.path())
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(
        peak_kib < 48 * 1024,
        "peak RSS {peak_kib} KiB after a 100 MB answer"
    );
}

#[tokio::test]
async fn plain_http_to_a_non_loopback_sts_endpoint_is_warned_about_at_start() {
    let token_dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // No token: nothing is sent anywhere, but the warning comes at start.
    let missing = token_dir.path().join("token").display().to_string();
    let run = |endpoint_flag: Option<&str>, env_endpoint: Option<&str>| {
        let mut c = rolecall_command();
        c.args(["once", "--token-file", &missing, "--region", "eu-west-1"])
            .args(["--credentials", TEST_MODE])
            .args(["--output-dir", &out.path().display().to_string()])
            .args(["--profile", &format!("reader={ROLE}")]);
        if let Some(e) = endpoint_flag {
            c.args(["--sts-endpoint", e]);
        }
        if let Some(e) = env_endpoint {
            c.env("AWS_ENDPOINT_URL", e);
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(1), "no token: exit 1");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let warning = "plain HTTP to a host that is not a loopback address";
    let err = run(Some("http://sts.internal.invalid:8080"), None);
    assert!(err.contains(warning), "{err}");
    assert!(err.contains("http://sts.internal.invalid:8080"), "{err}");
    let err = run(None, Some("http://sts.internal.invalid"));
    assert!(err.contains(warning), "through AWS_ENDPOINT_URL: {err}");
    for quiet in ["https://sts.internal.invalid", "http://127.0.0.1:9"] {
        let err = run(Some(quiet), None);
        assert!(!err.contains(warning), "{quiet}: {err}");
    }
}

/// A refresher on a paused clock, against an STS on the same runtime.
fn paused_refresher(sts: &FakeSts, token: &TokenDir) -> (Arc<Shared>, Manual, CancellationToken) {
    let shared = Shared::with_metrics(rolecall::metrics::Metrics::new());
    let p = Arc::new(Profile {
        region: Some("eu-west-1".into()),
        sts_endpoint: Some(sts.endpoint()),
        ..Profile::new("reader", ROLE)
    });
    shared.register(p.clone(), None);
    let ctx = Context {
        shared: shared.clone(),
        metrics: rolecall::metrics::Metrics::new(),
        pacer: Default::default(),
        sts: Sts::new(Duration::from_secs(5)),
        agent: None,
        token_file: token.path(),
        jitter: ceiling_jitter,
        spread: || 0.0,
        token_changed: watch::channel(0u64).1,
        config_reloaded: watch::channel(0u64).1,
        clock: rolecall::clock::Clock::system(),
        once: false,
    };
    let stop = CancellationToken::new();
    let (refresher, manual) = Refresher::new(p, ctx).manual();
    tokio::spawn(refresher.run(Duration::ZERO, stop.clone()));
    (shared, manual, stop)
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_manual_refreshes_costs_one_call_per_five_seconds() {
    let sts = FakeSts::start_local();
    let token = TokenDir::new(&valid_jwt());
    let (_shared, manual, stop) = paused_refresher(&sts, &token);
    let start = tokio::time::Instant::now();
    assert!(wait_until(Duration::from_secs(5), || sts.calls() == 1).await);
    // A thousand SIGUSR1s in one second.
    for _ in 0..1000 {
        manual.ask(None);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(sts.calls(), 1, "coalesced until five seconds have passed");
    tokio::time::sleep_until(start + Duration::from_millis(5500)).await;
    assert_eq!(sts.calls(), 2, "one refresh for the whole burst");
    // Quiet afterwards: the next refresh is at half the hour's session.
    tokio::time::sleep_until(start + Duration::from_secs(60)).await;
    assert_eq!(sts.calls(), 2);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn manual_refreshes_never_cut_a_backoff_short() {
    let sts = FakeSts::start_local();
    sts.set_default(Reply::server_error());
    let token = TokenDir::new(&valid_jwt());
    let (_shared, manual, stop) = paused_refresher(&sts, &token);
    let start = tokio::time::Instant::now();
    // Failed at 0, 1, 11, 31 and 71 s (the probes of an STS that is down,
    // src/pacer.rs): the pause is now 60 s.
    tokio::time::sleep_until(start + Duration::from_millis(71_500)).await;
    assert_eq!(sts.calls(), 5);
    // SIGUSR1 every 100 ms for 50 s during that backoff.
    for _ in 0..500 {
        manual.ask(None);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sts.calls(), 5, "no call before the backoff ends");
    tokio::time::sleep_until(start + Duration::from_millis(131_500)).await;
    assert_eq!(sts.calls(), 6, "the scheduled retry, and only it");
    stop.cancel();
}

#[tokio::test]
async fn a_clock_more_than_a_minute_off_is_logged_once() {
    let sts = FakeSts::start();
    sts.set_date_offset(150);
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let o = rolecall_command()
        .args(["once", "--region", "eu-west-1", "--credentials", TEST_MODE])
        .args(["--token-file", &token.path().display().to_string()])
        .args(["--output-dir", &out.path().display().to_string()])
        .args(["--sts-endpoint", &sts.endpoint()])
        .args(["--profile", &format!("reader={ROLE}")])
        .args(["--profile", "writer=arn:aws:iam::111122223333:role/writer"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("the local clock differs from STS's"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("clock_skew_s=150") || warnings[0].contains("clock_skew_s=149"),
        "{err}"
    );
    assert!(
        published_key(out.path()).is_some(),
        "a skew alone refuses nothing"
    );
}
