//! The facts the documentation check compares the docs with (issue 23,
//! item 2): the real binary, started against the fake STS, drives a
//! success, a configuration error (`AccessDenied`), a transient one (5xx),
//! a session that expired before it arrived (`clock_error`), a token error
//! (an expired token and SIGUSR1), a refused reload and the credentials
//! endpoint's three refusals (`missing_token`, `wrong_token`,
//! `not_in_set`), then its `/metrics` is scraped and written
//! to `ROLECALL_DOCS_FACTS` (default `target/tmp/docs-facts`) as
//! `metrics.txt`, which `scripts/check_docs.py` reads (`make docs-check`).

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn arn(name: &str) -> String {
    format!("arn:aws:iam::111122223333:role/{name}")
}

fn facts_dir() -> PathBuf {
    std::env::var_os("ROLECALL_DOCS_FACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docs-facts"))
}

/// The series a scrape must hold before it is written: one per thing the
/// test drove.
const DRIVEN: [&str; 10] = [
    r#"rolecall_refresh_total{profile="good",result="success"}"#,
    r#"rolecall_refresh_total{profile="denied",result="config_error"}"#,
    r#"rolecall_refresh_total{profile="down",result="transient_error"}"#,
    r#"rolecall_credentials_expiry_timestamp_seconds{profile="good"}"#,
    r#"rolecall_endpoint_rejected_requests_total{reason="missing_token"}"#,
    r#"rolecall_endpoint_rejected_requests_total{reason="wrong_token"}"#,
    r#"rolecall_endpoint_rejected_requests_total{reason="not_in_set"}"#,
    r#"rolecall_config_reloads_total{result="invalid"}"#,
    r#"rolecall_refresh_total{profile="stale",result="clock_error"}"#,
    r#"rolecall_refresh_total{profile="good",result="token_error"}"#,
];

/// The status of `GET path` once the listener on `port` answers.
async fn answer(port: u16, path: &str, auth: Option<&str>) -> u16 {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _) = http_get(port, path, auth).await;
        if status != 0 {
            return status;
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        wait_until_real(Duration::from_millis(50), || false).await;
    }
}

#[tokio::test]
async fn a_scrape_after_a_success_and_failures_is_written_for_the_docs_check() {
    let sts = FakeSts::granting(Duration::from_secs(3600));
    sts.push_for_role(&arn("denied"), Reply::access_denied());
    sts.push_for_role(
        &arn("stale"),
        Reply::Stale {
            expired_ago: Duration::from_secs(120),
        },
    );
    for _ in 0..50 {
        sts.push_for_role(&arn("down"), Reply::server_error());
    }
    let token = TokenDir::new(&valid_jwt());
    let root = tempfile::tempdir().unwrap();
    let (port, health) = (free_port(), free_port());
    let dir = |set: &str| root.path().join(set).display().to_string();
    // File mode: process mode would copy the (debug) binary into each set.
    let yaml = format!(
        "endpoint_addr: 127.0.0.1:{port}\ncredentials: file\nprofiles:\n  good: '{}'\n  denied: '{}'\n  down: '{}'\n  stale: '{}'\noutputs:\n  app: {{ dir: '{}', profiles: [good, denied] }}\n  other: {{ dir: '{}', profiles: [down, stale] }}\n",
        arn("good"),
        arn("denied"),
        arn("down"),
        arn("stale"),
        dir("app"),
        dir("other"),
    );
    let config = ConfigDir::plain(&yaml);
    let mut cmd = rolecall_command();
    cmd.env("RUST_LOG", "info")
        .arg("run")
        .args(["--token-file", &token.path().display().to_string()])
        .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
        .args(["--config", &config.path().display().to_string()])
        .args(["--health-addr", &format!("127.0.0.1:{health}")]);
    let mut sidecar = ChildSidecar::spawn(&mut cmd);

    let app_token = root.path().join("app/endpoint-token");
    assert!(
        wait_until_real(WAIT, || app_token.exists()).await,
        "no endpoint token: {}",
        sidecar.log()
    );
    let tok = std::fs::read_to_string(&app_token).unwrap();
    assert_eq!(answer(port, "/v1/credentials/good", None).await, 401);
    let wrong = "w".repeat(64);
    assert_eq!(
        answer(port, "/v1/credentials/good", Some(&wrong)).await,
        403
    );
    assert_eq!(answer(port, "/v1/credentials/down", Some(&tok)).await, 403);
    // A refused reload: the configuration file made invalid.
    config.rename_over("profiles: [not, a, map]\n");
    // A token error: once `good` holds its session, an expired token and
    // SIGUSR1 (every profile refreshes now; the token is never sent).
    let good = root.path().join("app/credentials");
    assert!(
        wait_until_real(WAIT, || std::fs::read_to_string(&good)
            .is_ok_and(|c| c.contains("[good]")))
        .await,
        "no session for good: {}",
        sidecar.log()
    );
    token.rotate(&expired_jwt());
    sidecar.signal(libc::SIGUSR1);

    let deadline = Instant::now() + WAIT;
    let scrape = loop {
        let (status, body) = http_get(health, "/metrics", None).await;
        let missing: Vec<&str> = DRIVEN
            .iter()
            .copied()
            .filter(|s| !body.contains(s))
            .collect();
        if status == 200 && missing.is_empty() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the scrape lacks {missing:?}:\n{body}\n{}",
            sidecar.log()
        );
        wait_until_real(Duration::from_millis(100), || false).await;
    };
    assert!(sidecar.running(), "{}", sidecar.log());
    let facts = facts_dir();
    std::fs::create_dir_all(&facts).unwrap();
    std::fs::write(facts.join("metrics.txt"), &scrape).unwrap();
}
