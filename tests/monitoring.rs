//! The monitoring examples name only what rolecall exports (issue 23, item
//! 5): every metric, label and literal label value that
//! examples/monitoring's alerts (`prometheus-rule.yaml`) and dashboard
//! (`grafana-dashboard.json`) use is in a real `/metrics` scrape.
//!
//! The real sidecar runs against the fake STS and is driven through
//! success and through every failure whose series exist only once it
//! happened: a refused role (`config_error`), a refused token
//! (`token_error`), an answer already expired (`clock_error`), throttling
//! (`transient_error`, `rolecall_sts_throttled_total`), a refused endpoint
//! request, a failed write, and an `accept` at the open-file limit. A
//! second sidecar runs under `identity: pod-identity` against the fake
//! agent (one 503, then a session). The real webhook runs too. Both are scraped, and scripts/check_monitoring.py
//! compares the names with what the files use; a misspelled metric, label
//! or value in a copy of the files, and a scrape missing a failure-only
//! series, each make it fail.
#![cfg(feature = "inject")]

mod support;

#[allow(dead_code)]
#[path = "webhook/client.rs"]
mod client;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::*;

const GOOD: &str = "arn:aws:iam::111122223333:role/good";
const DENIED: &str = "arn:aws:iam::111122223333:role/denied";
const BAD_TOKEN: &str = "arn:aws:iam::111122223333:role/bad-token";
const STALE: &str = "arn:aws:iam::111122223333:role/stale";
const THROTTLED: &str = "arn:aws:iam::111122223333:role/throttled";
/// Enough descriptors to start and serve, too few for 100 connections.
const NOFILE: u32 = 48;
const WAIT: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The script needs PyYAML: the venv's Python when the Makefile names it
/// (`ROLECALL_VENV`) or `make venv` made `.venv` (`make test` does, before
/// `cargo test`), else the system's (Debian's python3-yaml).
fn python() -> PathBuf {
    let venv = std::env::var_os("ROLECALL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv"));
    let python = venv.join("bin/python");
    if python.exists() {
        python
    } else {
        PathBuf::from("python3")
    }
}

/// `scripts/check_monitoring.py ARGS`: success and what it printed.
fn check(args: &[&str]) -> (bool, String) {
    let out = Command::new(python())
        .arg(root().join("scripts/check_monitoring.py"))
        .args(args)
        .output()
        .expect("run scripts/check_monitoring.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn scrape(port: u16) -> String {
    http_get_blocking(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// Polls `f` every 20 ms on the wall clock (the sidecar is another
/// process) until it holds; false after [`WAIT`].
fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while !f() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The sidecar's scrape once every failure-only series exists.
fn sidecar_scrape() -> String {
    let sts = FakeSts::granting(Duration::from_secs(3600));
    sts.set_date_offset(90);
    for _ in 0..3 {
        sts.push_for_role(DENIED, Reply::access_denied());
    }
    sts.push_for_role(
        BAD_TOKEN,
        Reply::error(
            400,
            "InvalidIdentityToken",
            "Couldn't retrieve verification key",
        ),
    );
    sts.push_for_role(
        STALE,
        Reply::Stale {
            expired_ago: Duration::from_secs(60),
        },
    );
    sts.push_for_role(THROTTLED, Reply::throttle());
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let (health, endpoint) = (free_port(), free_port());
    let profiles = [
        ("good", GOOD),
        ("denied", DENIED),
        ("badtoken", BAD_TOKEN),
        ("stale", STALE),
        ("throttled", THROTTLED),
    ];
    let mut cmd = rolecall_run(&sts, &token, out.path(), profiles);
    cmd.env("ROLECALL_HEALTH_ADDR", format!("127.0.0.1:{health}"))
        .args(["--endpoint-addr", &format!("127.0.0.1:{endpoint}")]);
    limit_open_files(&mut cmd, NOFILE);
    let mut sidecar = ChildSidecar::spawn(&mut cmd);

    // Each failure counted, and the profiles that failed once refreshed.
    let counted = |s: &str, profile: &str, result: &str| {
        s.contains(&format!(
            "rolecall_refresh_total{{profile=\"{profile}\",result=\"{result}\"}} "
        ))
    };
    let failed = wait_for(|| {
        let s = scrape(health);
        counted(&s, "denied", "config_error")
            && counted(&s, "badtoken", "token_error")
            && counted(&s, "stale", "clock_error")
            && counted(&s, "throttled", "transient_error")
            && ["good", "badtoken", "stale", "throttled"]
                .iter()
                .all(|p| counted(&s, p, "success"))
            && !s.contains("rolecall_sts_throttled_total 0")
            && out.path().join("status.json").is_file()
    });
    assert!(failed, "{}\n{}", scrape(health), sidecar.log());

    // A request without the endpoint's token.
    let refused = http_get_blocking(endpoint, "/v1/credentials/good").map(|(code, _)| code);
    assert_eq!(refused, Some(401), "{}", sidecar.log());

    // A write that fails: a directory (not empty) where status.json goes,
    // then a refresh by hand.
    let status = out.path().join("status.json");
    std::fs::remove_file(&status).unwrap();
    std::fs::create_dir_all(status.join("in-the-way")).unwrap();
    sidecar.signal(libc::SIGUSR1);
    let write_failed = wait_for(|| scrape(health).contains("rolecall_write_errors_total{"));
    assert!(write_failed, "{}\n{}", scrape(health), sidecar.log());

    // 100 clients of the endpoint: more than the descriptors left, so an
    // accept fails with EMFILE; then they go and the sidecar serves again.
    let held: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", endpoint)).ok())
        .collect();
    let at_limit = wait_for(|| sidecar.log().contains("accept failed"));
    drop(held);
    assert!(at_limit, "{}", sidecar.log());
    let counted_limit = wait_for(|| scrape(health).contains("rolecall_limit_reached_total{"));
    assert!(counted_limit, "{}\n{}", scrape(health), sidecar.log());

    let text = scrape(health);
    assert!(sidecar.running(), "{}", sidecar.log());
    sidecar.signal(libc::SIGTERM);
    assert!(sidecar.stop_within(Duration::from_secs(10)).is_some());
    text
}

/// The scrape of a sidecar under `identity: pod-identity` once the agent
/// failed (503) and then answered: its `rolecall_agent_*` series.
fn pod_identity_scrape() -> String {
    let sts = FakeSts::granting(Duration::from_secs(3600));
    let agent = FakeAgent::start();
    agent.script(vec![AgentReply::unavailable()]);
    let token = TokenDir::new(&jwt(
        TEST_ISSUER,
        "system:serviceaccount:shop:cart",
        rolecall::agent::AUDIENCE,
        now_unix() + 3600,
    ));
    agent.accept_token_file(&token.path());
    let out = tempfile::tempdir().unwrap();
    let health = free_port();
    let mut sidecar = ChildSidecar::spawn(
        rolecall_command()
            .env("ROLECALL_HEALTH_ADDR", format!("127.0.0.1:{health}"))
            .args(["run", "--identity", "pod-identity", "--region", "eu-west-1"])
            .args(["--pod-identity-endpoint", &agent.url()])
            .args(["--pod-identity-token-file", token.path().to_str().unwrap()])
            .args(["--output-dir", out.path().to_str().unwrap()])
            .args([
                "--sts-endpoint",
                &sts.endpoint(),
                "--credentials",
                TEST_MODE,
            ])
            .args(["--profile", &format!("good={GOOD}")]),
    );
    let answered = wait_for(|| {
        let s = scrape(health);
        ["5xx", "200"].iter().all(|v| {
            s.contains(&format!(
                "rolecall_agent_responses_total{{status=\"{v}\"}} "
            ))
        }) && s.contains("rolecall_identity_info{identity=\"pod-identity\"} 1")
    });
    assert!(answered, "{}\n{}", scrape(health), sidecar.log());
    let text = scrape(health);
    sidecar.signal(libc::SIGTERM);
    assert!(sidecar.stop_within(Duration::from_secs(10)).is_some());
    text
}

/// The webhook's scrape.
fn webhook_scrape() -> String {
    let hook = client::Webhook::start();
    let text = scrape(hook.health);
    assert!(
        text.contains("rolecall_webhook_certificate_expiry_timestamp_seconds "),
        "{text}\n{}",
        hook.log()
    );
    text
}

/// The scrapes, made once for every test here: (sidecar, webhook, sidecar
/// under Pod Identity).
fn scrapes() -> &'static (String, String, String) {
    static SCRAPES: OnceLock<(String, String, String)> = OnceLock::new();
    SCRAPES.get_or_init(|| (sidecar_scrape(), webhook_scrape(), pod_identity_scrape()))
}

/// `check_monitoring.py names` (with `extra` options) on `sidecar`, the
/// webhook's and the Pod Identity sidecar's scrapes, written to files in
/// `dir`.
fn names(dir: &Path, extra: &[&str], sidecar: &str) -> (bool, String) {
    let (s, w, p) = (
        dir.join("sidecar.txt"),
        dir.join("webhook.txt"),
        dir.join("pod-identity.txt"),
    );
    std::fs::write(&s, sidecar).unwrap();
    std::fs::write(&w, &scrapes().1).unwrap();
    std::fs::write(&p, &scrapes().2).unwrap();
    let mut args = vec!["names"];
    args.extend_from_slice(extra);
    args.extend([
        s.to_str().unwrap(),
        w.to_str().unwrap(),
        p.to_str().unwrap(),
    ]);
    check(&args)
}

#[test]
fn every_metric_label_and_value_the_alerts_and_the_dashboard_use_is_in_a_real_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, said) = names(dir.path(), &[], &scrapes().0);
    assert!(ok, "{said}");
}

/// A copy of `file` (under examples/monitoring) with `from` replaced by
/// `to`, in `dir`.
fn misspelled(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("examples/monitoring").join(file)).unwrap();
    assert!(text.contains(from), "{file} no longer says {from}");
    let path = dir.join(file);
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn a_misspelled_metric_label_or_value_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "prometheus-rule.yaml";
    let dashboard = "grafana-dashboard.json";
    // (file, its option, the text, its misspelling, what the error names)
    for (file, option, from, to, named) in [
        (
            rules,
            "--rules",
            "rolecall_ready == 0",
            "rolecall_redy == 0",
            "metric rolecall_redy",
        ),
        (
            rules,
            "--rules",
            "\"config_error\"",
            "\"config_eror\"",
            "config_eror",
        ),
        (
            rules,
            "--rules",
            "$labels.profile",
            "$labels.profil",
            "label profil ",
        ),
        (
            rules,
            "--rules",
            "rolecall_agent_responses_total{status=\"200\"}",
            "rolecall_agent_response_total{status=\"200\"}",
            "metric rolecall_agent_response_total",
        ),
        (
            rules,
            "--rules",
            "rolecall_webhook_certificate_expiry",
            "rolecall_webhook_cert_expiry",
            "metric rolecall_webhook_cert_expiry",
        ),
        (
            dashboard,
            "--dashboard",
            "sum by (file)",
            "sum by (fiel)",
            "label fiel ",
        ),
        (
            dashboard,
            "--dashboard",
            "rolecall_sts_throttled_total",
            "rolecall_sts_throttle_total",
            "metric rolecall_sts_throttle_total",
        ),
        (
            dashboard,
            "--dashboard",
            "result!=\\\"success\\\"",
            "reslt!=\\\"success\\\"",
            "label reslt ",
        ),
    ] {
        let copy = misspelled(dir.path(), file, from, to);
        let (ok, said) = names(dir.path(), &[option, copy.to_str().unwrap()], &scrapes().0);
        assert!(!ok, "{to} passed:\n{said}");
        assert!(
            said.contains(named),
            "{to}: the error does not say {named:?}:\n{said}"
        );
    }
}

#[test]
fn a_scrape_without_a_failure_only_series_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let full = &scrapes().0;
    for (series, named) in [
        (
            "rolecall_write_errors_total{",
            "metric rolecall_write_errors_total",
        ),
        (
            "rolecall_limit_reached_total{",
            "metric rolecall_limit_reached_total",
        ),
        (
            "rolecall_refresh_total{profile=\"denied\",result=\"config_error\"}",
            "config_error",
        ),
    ] {
        let kept: Vec<&str> = full.lines().filter(|l| !l.starts_with(series)).collect();
        assert!(
            kept.len() < full.lines().count(),
            "no {series} in the scrape"
        );
        let (ok, said) = names(dir.path(), &[], &kept.join("\n"));
        assert!(!ok, "passed without {series}:\n{said}");
        assert!(said.contains(named), "without {series}: {said}");
    }
}
