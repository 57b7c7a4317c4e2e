//! The `Expiration` that process mode and the endpoint report
//! (`schedule::sliding_expiry`): while the session is healthy, 17 minutes
//! from the moment a client asks, never later than the real expiry minus a
//! margin, so a forced refresh reaches every client within that bound; the
//! real expiry once refreshes fail, and again after a restart adopts the
//! session. In-process against a fake STS, with the real binary as the
//! helper; the helper's library function with later instants plays a
//! client's next asks without waiting for them.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use rolecall::config::{Config, Env, Flags};
use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";
const HOUR: Duration = Duration::from_secs(3600);
const QUARTER: Duration = Duration::from_secs(900);
/// The documented slide (README, `schedule::REPORT_SLIDE`).
const SLIDE: Duration = Duration::from_secs(17 * 60);
/// Each SDK's refresh window: botocore advisory and mandatory, JS v3,
/// Java v2, the Rust SDK, Go v2's credential_process provider (none).
const SDK_WINDOWS: [(&str, u64); 6] = [
    ("botocore advisory", 15 * 60),
    ("botocore mandatory", 10 * 60),
    ("JS v3", 5 * 60),
    ("Java v2", 15),
    ("Rust", 10),
    ("Go v2 process", 0),
];

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

/// (access key, Expiration) that the helper would print at `now`: its
/// library function on the file the sidecar wrote, for a client's later ask.
fn helper_at(dir: &Path, profile: &str, now: SystemTime) -> Option<(String, SystemTime)> {
    let out = rolecall::process::credentials(dir, profile, now).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    Some((
        v["AccessKeyId"].as_str()?.to_owned(),
        parse_utc(v["Expiration"].as_str()?),
    ))
}

/// (access key, Expiration) as the helper and as the endpoint report them,
/// and the wall-clock interval in which they were asked.
struct Reported {
    helper: (String, SystemTime),
    endpoint: (String, SystemTime),
    asked: (SystemTime, SystemTime),
}

async fn reported(dir: &Path, port: u16, profile: &str) -> Option<Reported> {
    let from = SystemTime::now();
    let h = helper(dir, profile)?;
    let secret = std::fs::read_to_string(dir.join("endpoint-token")).ok()?;
    let (status, body) = http_get(port, &format!("/v1/credentials/{profile}"), Some(&secret)).await;
    let to = SystemTime::now();
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
        asked: (from, to),
    })
}

/// Waits until both the helper and the endpoint serve `key` for `profile`.
/// The session is published with its refresh plan, so the first file that
/// holds it already allows the slide: `assert_healthy` checks the first
/// observation, not a later one.
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

/// `credentials.Expiration` in `credential-process.json` for `profile`:
/// the fixed value a helper from before the slide prints.
fn file_expiration(dir: &Path, profile: &str) -> SystemTime {
    let text = std::fs::read_to_string(dir.join("credential-process.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    parse_utc(
        v["profiles"][profile]["credentials"]["Expiration"]
            .as_str()
            .unwrap(),
    )
}

fn secs(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn whole(t: SystemTime) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs())
}

/// The margin before the real expiry for a session of `lifetime`.
fn margin(lifetime: Duration) -> Duration {
    Duration::from_secs(300).min(lifetime / 10)
}

/// Checks the healthy rule for a session of `lifetime` (jitter 1.0): both
/// report 17 minutes from when they were asked, or the real expiry minus
/// the margin when that is sooner, in whole seconds; the file keeps the
/// fixed value for older helpers, 16 minutes after the planned refresh (at
/// 45 % of the lifetime: `real - 0.55 lifetime`, within the second STS
/// truncates to and the time the answer took) under the same cap.
fn assert_healthy(dir: &Path, profile: &str, r: &Reported, real: SystemTime, lifetime: Duration) {
    let cap = real - margin(lifetime);
    let earliest = whole((r.asked.0 + SLIDE).min(cap));
    let latest = (r.asked.1 + SLIDE).min(cap);
    for (who, reported) in [("helper", r.helper.1), ("endpoint", r.endpoint.1)] {
        assert!(
            earliest - Duration::from_secs(1) <= reported && reported <= latest,
            "{profile}: the {who} reports {} for keys expiring {}, asked {} to {}",
            format_utc(reported),
            format_utc(real),
            format_utc(r.asked.0),
            format_utc(r.asked.1)
        );
    }
    let planned = real - lifetime.mul_f64(0.55);
    let expected = (planned + Duration::from_secs(16 * 60)).min(cap);
    let fixed = file_expiration(dir, profile);
    let off = secs(fixed, expected);
    assert!(
        (-2..=1).contains(&off),
        "{profile}: the file's fixed Expiration is {}, expected about {}",
        format_utc(fixed),
        format_utc(expected)
    );
}

#[tokio::test]
async fn reports_a_sliding_expiry_while_healthy_and_the_real_one_once_refreshes_fail() {
    let sts = FakeSts::granting(HOUR);
    sts.push_for_role(WRITER, Reply::ok_for(QUARTER));
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = Running::start(config(&sts, &token, out.path(), port), test_options());
    assert!(wait_until(Duration::from_secs(10), || sts.issued().len() == 2).await);
    let reader = sts.last_issued_for_role(READER).unwrap();
    let writer = sts.last_issued_for_role(WRITER).unwrap();

    // Healthy: one hour, reported 17 min from now (the file's fixed value
    // 43 min: 16 after the refresh at 27); fifteen minutes, reported at
    // 13.5 (the cap: 90 s margin).
    let got = wait_reported(out.path(), port, "reader", &reader.access_key_id).await;
    assert_healthy(out.path(), "reader", &got, reader.expiration, HOUR);
    let got = wait_reported(out.path(), port, "writer", &writer.access_key_id).await;
    assert_healthy(out.path(), "writer", &got, writer.expiration, QUARTER);
    // status.json (for operators and `rolecall status`) keeps the real expiry.
    assert_eq!(status(out.path(), "reader").0, Some(reader.expiration));

    // STS fails from now on: nothing newer can come, so the same keys are
    // reported with their real expiry, for as long as they are valid.
    sts.set_default(Reply::server_error());
    r.controls
        .send(rolecall::Command::refresh_all())
        .await
        .unwrap();
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
    r.controls
        .send(rolecall::Command::refresh_all())
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(15), || sts.issued().len() >= before + 2).await);
    let fresh = sts.last_issued_for_role(READER).unwrap();
    let got = wait_reported(out.path(), port, "reader", &fresh.access_key_id).await;
    assert_healthy(out.path(), "reader", &got, fresh.expiration, HOUR);
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
    assert_healthy(out.path(), "reader", &got, reader.expiration, HOUR);
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

/// When a client with refresh `window` that was handed `held` asks again:
/// at the first of its calls (one a second from `from`) inside its window.
fn next_ask(window: Duration, held: SystemTime, from: SystemTime) -> SystemTime {
    (held - window).max(from)
}

/// How the operator makes rolecall replace the sessions it serves.
#[derive(Clone, Copy, Debug)]
enum Forced {
    /// `rolecall refresh` or SIGUSR1 (the same control).
    Refresh,
    /// A reload that gives the profile another role.
    RoleChange,
}

/// The role `reader` has after the reload of [`Forced::RoleChange`].
const READER2: &str = "arn:aws:iam::111122223333:role/reader2";

/// A long-lived client of every SDK asks at `reader`'s first session (hour
/// long); the operator forces new keys as `how` says; each client's next
/// ask, inside its window of what it holds, gets them: at most the slide
/// less its window after the forced refresh.
async fn a_forced_change_reaches_every_client_within_the_slide(how: Forced) {
    let Sandbox { sts, token, out } = Sandbox::granting(HOUR);
    let port = free_port();
    let flags = Flags {
        credentials: Some("process".into()),
        ..endpoint_flags(&sts, &token, out.path(), port)
    };
    let reloaded = Flags {
        profiles: vec![format!("reader={READER2}"), format!("writer={WRITER}")],
        ..flags.clone()
    };
    let r = Running::start_with_reload(
        Config::load(&flags, &Env::new()).unwrap(),
        move || Config::load(&reloaded, &Env::new()),
        test_options(),
    );
    assert!(wait_until(Duration::from_secs(10), || sts.issued().len() == 2).await);
    let old = sts.last_issued_for_role(READER).unwrap();
    // Every client asks now (a long-lived client's first call): the helper
    // and the endpoint hand out 17 minutes, not the 43 of the fixed rule.
    let first = wait_reported(out.path(), port, "reader", &old.access_key_id).await;
    assert_healthy(out.path(), "reader", &first, old.expiration, HOUR);
    for (who, held) in [("helper", first.helper.1), ("endpoint", first.endpoint.1)] {
        assert!(
            held <= first.asked.1 + SLIDE,
            "the {who} handed out {}, later than 17 minutes after {}",
            format_utc(held),
            format_utc(first.asked.1)
        );
    }

    // The operator revokes the sessions and forces new keys.
    let before = sts.issued().len();
    let forced = SystemTime::now();
    let (control, role) = match how {
        Forced::Refresh => (rolecall::Command::refresh_all(), READER),
        Forced::RoleChange => (rolecall::Command::reload(), READER2),
    };
    r.controls.send(control).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || {
            sts.issued()[before..].iter().any(|c| c.role_arn == role)
        })
        .await,
        "{how:?}: no new session for {role}"
    );
    let new = sts.last_issued_for_role(role).unwrap();
    let now = wait_reported(out.path(), port, "reader", &new.access_key_id).await;
    assert_healthy(out.path(), "reader", &now, new.expiration, HOUR);

    // Each client asks again inside its window of what it holds; by then
    // the helper (and, asked then, the endpoint: the same state and rule)
    // serves the new session, with an expiry ahead of that moment.
    for (sdk, window) in SDK_WINDOWS {
        let window = Duration::from_secs(window);
        for held in [first.helper.1, first.endpoint.1] {
            let at = next_ask(window, held, now.asked.1);
            let lag = at.duration_since(forced).unwrap_or_default();
            assert!(
                lag <= SLIDE.saturating_sub(window),
                "{how:?}, {sdk}: would ask again {lag:?} after the forced refresh"
            );
            let (key, expiration) = helper_at(out.path(), "reader", at).unwrap();
            assert_eq!(
                key, new.access_key_id,
                "{how:?}, {sdk}: not the new session"
            );
            assert!(
                expiration > at,
                "{how:?}, {sdk}: handed an expiry in the past"
            );
        }
    }
    r.stop().await;
}

#[tokio::test]
async fn a_forced_refresh_mid_session_reaches_every_client_within_the_slide() {
    a_forced_change_reaches_every_client_within_the_slide(Forced::Refresh).await;
}

#[tokio::test]
async fn a_role_change_mid_session_reaches_every_client_within_the_slide() {
    a_forced_change_reaches_every_client_within_the_slide(Forced::RoleChange).await;
}

#[tokio::test]
async fn no_report_is_in_the_past_for_valid_keys_and_no_client_asks_in_a_loop() {
    let sts = FakeSts::granting(HOUR);
    sts.push_for_role(WRITER, Reply::ok_for(QUARTER));
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = Running::start(config(&sts, &token, out.path(), port), test_options());
    assert!(wait_until(Duration::from_secs(10), || sts.issued().len() == 2).await);
    let reader = sts.last_issued_for_role(READER).unwrap();
    let writer = sts.last_issued_for_role(WRITER).unwrap();
    wait_reported(out.path(), port, "reader", &reader.access_key_id).await;
    wait_reported(out.path(), port, "writer", &writer.access_key_id).await;
    // The sidecar stops: the file stays as the last write left it, which
    // is what the helper reads at each later instant below.
    r.stop().await;

    let start = SystemTime::now();
    for (profile, issued, lifetime) in [("reader", &reader, HOUR), ("writer", &writer, QUARTER)] {
        // Every 7 s until the keys expire: an expiry ahead of the ask, never
        // past the real one, and within the margin of it unless it is it.
        let mut at = start;
        while at < issued.expiration {
            let (key, expiration) = helper_at(out.path(), profile, at).unwrap();
            assert_eq!(key, issued.access_key_id);
            assert!(
                expiration > at && expiration <= issued.expiration,
                "{profile}: {} handed out at {} for keys expiring {}",
                format_utc(expiration),
                format_utc(at),
                format_utc(issued.expiration)
            );
            assert!(
                expiration == issued.expiration
                    || expiration + margin(lifetime) <= issued.expiration,
                "{profile}: {} is inside the margin",
                format_utc(expiration)
            );
            at += Duration::from_secs(7);
        }
        assert!(helper_at(out.path(), profile, issued.expiration).is_none());
    }

    // Each client, calling once a second over the hour session's first
    // half (before its planned refresh): it asks every 17 minutes less its
    // window (botocore every 2, JS v3 every 12, Go every 17), never in a loop.
    let half = start + HOUR / 2 - Duration::from_secs(60);
    for (sdk, window) in SDK_WINDOWS {
        let window = Duration::from_secs(window);
        let mut asks = vec![start];
        let (_, mut held) = helper_at(out.path(), "reader", start).unwrap();
        let mut at = start;
        while at < half {
            at += Duration::from_secs(1);
            if at + window >= held {
                asks.push(at);
                held = helper_at(out.path(), "reader", at).unwrap().1;
            }
        }
        for pair in asks.windows(2) {
            let gap = pair[1].duration_since(pair[0]).unwrap();
            assert!(
                gap + Duration::from_secs(2) >= SLIDE - window,
                "{sdk}: asked again after {gap:?}"
            );
        }
        let most = (half.duration_since(start).unwrap().as_secs()
            / (SLIDE - window).as_secs().max(1)) as usize
            + 1;
        assert!(asks.len() <= most, "{sdk}: {} asks", asks.len());
    }
}
