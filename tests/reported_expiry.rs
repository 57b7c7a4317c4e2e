//! The `Expiration` that process mode and the endpoint report
//! (`schedule::reported_expiry`): shortly after rolecall's next planned
//! refresh while newer keys are due, the real expiry once refreshes fail,
//! and the real expiry again after a restart adopts the session.
//! In-process against a fake STS, with the real binary as the helper.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use rolecall::Control;
use rolecall::config::{Config, Env, Flags};
use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";
const HOUR: Duration = Duration::from_secs(3600);
const QUARTER: Duration = Duration::from_secs(900);

/// `reader` and `writer` in process mode, with the endpoint on `port`.
fn config(sts: &FakeSts, token: &TokenDir, out: &Path, port: u16) -> Config {
    let f = Flags {
        credentials: Some("process".into()),
        ..endpoint_flags(sts, token, out, port)
    };
    Config::load(&f, &Env::new()).unwrap()
}

/// What the installed helper prints for `profile`, as an SDK runs it;
/// `None` while it fails.
fn helper(dir: &Path, profile: &str) -> Option<serde_json::Value> {
    let o = Command::new(dir.join("rolecall"))
        .args(["credential-process", "--profile", profile])
        .env_clear()
        .output()
        .ok()?;
    if !o.status.success() {
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

/// (access key, Expiration) as the helper and as the endpoint report them.
struct Reported {
    helper: (String, SystemTime),
    endpoint: (String, SystemTime),
}

async fn reported(dir: &Path, port: u16, profile: &str) -> Option<Reported> {
    let h = helper(dir, profile)?;
    let secret = std::fs::read_to_string(dir.join("endpoint-token")).ok()?;
    let (status, body) = http_get(port, &format!("/v1/credentials/{profile}"), Some(&secret)).await;
    if status != 200 {
        return None;
    }
    let e: serde_json::Value = serde_json::from_str(&body).ok()?;
    let pair = |v: &serde_json::Value| {
        Some((
            v["AccessKeyId"].as_str()?.to_owned(),
            parse_utc(v["Expiration"].as_str()?),
        ))
    };
    Some(Reported {
        helper: pair(&h)?,
        endpoint: pair(&e)?,
    })
}

/// Waits until both the helper and the endpoint serve `key` for `profile`.
/// The session is published with its refresh plan, so the first file that
/// holds it already reports the planned expiry: `assert_healthy` checks the
/// first observation, not a later one.
async fn wait_reported(dir: &Path, port: u16, profile: &str, key: &str) -> Reported {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = reported(dir, port, profile).await
            && r.helper.0 == key
            && r.endpoint.0 == key
        {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{profile}: {key} not served by the helper and the endpoint"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `status.json`'s expiration and last error for `profile`.
fn status(dir: &Path, profile: &str) -> (Option<SystemTime>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(dir.join("status.json")) else {
        return (None, None);
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let p = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == profile)
        .cloned()
        .unwrap_or_default();
    (
        p["expiration"].as_str().map(parse_utc),
        p["last_error"].as_str().map(str::to_owned),
    )
}

fn secs(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Checks the healthy rule for a session of `lifetime` (jitter 1.0): the
/// refresh is planned at 45 % of it (`real - 0.55 lifetime`, within the
/// second STS truncates to and the time the answer took); the report is 16
/// minutes after it, or the real expiry minus the margin when that is sooner.
fn assert_healthy(profile: &str, r: &Reported, real: SystemTime, lifetime: Duration) {
    assert_eq!(
        r.helper.1, r.endpoint.1,
        "{profile}: helper and endpoint differ"
    );
    let reported = r.helper.1;
    let planned = real - lifetime.mul_f64(0.55);
    let margin = Duration::from_secs(300).min(lifetime / 10);
    assert!(
        reported > planned && reported + margin <= real,
        "{profile}: reports {} for keys expiring {} (refresh planned about {})",
        format_utc(reported),
        format_utc(real),
        format_utc(planned)
    );
    let expected = (planned + Duration::from_secs(16 * 60)).min(real - margin);
    let off = secs(reported, expected);
    assert!(
        (-2..=1).contains(&off),
        "{profile}: reports {} , expected about {}",
        format_utc(reported),
        format_utc(expected)
    );
}

#[tokio::test]
async fn reports_an_expiry_after_the_planned_refresh_and_the_real_one_once_refreshes_fail() {
    let sts = FakeSts::granting(HOUR);
    sts.push_for_role(WRITER, Reply::ok_for(QUARTER));
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = Running::start(config(&sts, &token, out.path(), port), test_options());
    assert!(wait_until(Duration::from_secs(10), || sts.issued().len() == 2).await);
    let reader = sts.last_issued_for_role(READER).unwrap();
    let writer = sts.last_issued_for_role(WRITER).unwrap();

    // Healthy: one hour refreshed at 27 min, reported at 43 min; fifteen
    // minutes refreshed at 6.75 min, reported at 13.5 (the cap: 90 s margin).
    let got = wait_reported(out.path(), port, "reader", &reader.access_key_id).await;
    assert_healthy("reader", &got, reader.expiration, HOUR);
    let got = wait_reported(out.path(), port, "writer", &writer.access_key_id).await;
    assert_healthy("writer", &got, writer.expiration, QUARTER);
    // status.json (for operators and `rolecall status`) keeps the real expiry.
    assert_eq!(status(out.path(), "reader").0, Some(reader.expiration));

    // STS fails from now on: nothing newer can come, so the same keys are
    // reported with their real expiry, for as long as they are valid.
    sts.set_default(Reply::server_error());
    r.controls.send(Control::RefreshNow).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || {
            status(out.path(), "reader").1.is_some() && status(out.path(), "writer").1.is_some()
        })
        .await,
        "refreshes did not fail"
    );
    for (profile, issued) in [("reader", &reader), ("writer", &writer)] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = wait_reported(out.path(), port, profile, &issued.access_key_id).await;
            if got.helper.1 == issued.expiration && got.endpoint.1 == issued.expiration {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{profile}: during the outage the helper reports {} and the endpoint {}, not the real expiry {}",
                format_utc(got.helper.1),
                format_utc(got.endpoint.1),
                format_utc(issued.expiration)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // STS is back: the new session is reported by the rule again.
    sts.set_default(Reply::ok_for(HOUR));
    let before = sts.issued().len();
    r.controls.send(Control::RefreshNow).await.unwrap();
    assert!(wait_until(Duration::from_secs(15), || sts.issued().len() >= before + 2).await);
    let fresh = sts.last_issued_for_role(READER).unwrap();
    let got = wait_reported(out.path(), port, "reader", &fresh.access_key_id).await;
    assert_healthy("reader", &got, fresh.expiration, HOUR);
    r.stop().await;
}

#[tokio::test]
async fn a_restart_adopts_the_real_expiry_not_the_reported_one() {
    let Sandbox { sts, token, out } = Sandbox::granting(HOUR);
    let port = free_port();
    let r = Running::start(config(&sts, &token, out.path(), port), test_options());
    assert!(wait_until(Duration::from_secs(10), || sts.issued().len() == 2).await);
    let reader = sts.last_issued_for_role(READER).unwrap();
    let got = wait_reported(out.path(), port, "reader", &reader.access_key_id).await;
    assert_healthy("reader", &got, reader.expiration, HOUR);
    r.stop().await;

    // Restarted during an STS outage: the keys are adopted with their real
    // expiry (not the earlier reported one), and reported with it.
    sts.set_default(Reply::server_error());
    let port = free_port();
    let r = Running::start(config(&sts, &token, out.path(), port), test_options());
    assert!(
        wait_until(Duration::from_secs(15), || status(out.path(), "reader")
            .1
            .is_some())
        .await,
        "the refresh after the restart did not fail"
    );
    assert_eq!(
        status(out.path(), "reader").0,
        Some(reader.expiration),
        "adopted with another expiry"
    );
    let got = wait_reported(out.path(), port, "reader", &reader.access_key_id).await;
    assert_eq!(got.helper.1, reader.expiration);
    assert_eq!(got.endpoint.1, reader.expiration);
    r.stop().await;
}

#[tokio::test]
async fn a_one_shot_run_reports_the_real_expiry_since_nothing_newer_comes() {
    let Sandbox { sts, token, out } = Sandbox::granting(HOUR);
    let config = config(&sts, &token, out.path(), free_port());
    let report = rolecall::once(&config, &test_options()).await.unwrap();
    assert!(report.failed.is_empty());
    let issued = sts.last_issued_for_role(READER).unwrap();
    let v = helper(out.path(), "reader").expect("the helper serves reader");
    assert_eq!(v["AccessKeyId"], issued.access_key_id);
    assert_eq!(
        parse_utc(v["Expiration"].as_str().unwrap()),
        issued.expiration
    );
}
