//! Schedules under paused tokio time: hours of retries run in milliseconds,
//! and every attempt lands exactly when the backoff says; a chained profile
//! wakes for its own source's sessions only.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rolecall::config::Profile;
use rolecall::metrics::RefreshLabels;
use rolecall::refresher::{Context, Refresher};
use rolecall::state::Shared;
use rolecall::sts::Sts;
use support::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn ceiling_jitter() -> f64 {
    1.0
}

fn profile() -> Arc<Profile> {
    Arc::new(Profile {
        region: Some("eu-west-1".into()),
        // Never reached: the token is missing, so no call is made.
        sts_endpoint: Some("http://127.0.0.1:9".into()),
        ..Profile::new("reader", "arn:aws:iam::111122223333:role/reader")
    })
}

fn token_errors(shared: &Shared) -> u64 {
    shared
        .metrics()
        .refresh
        .get(&RefreshLabels {
            profile: "reader".into(),
            result: "token_error",
        })
        .map(|c| c.get())
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn a_missing_token_is_retried_with_capped_exponential_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::new();
    let p = profile();
    shared.register(p.clone(), None, std::time::SystemTime::now());
    let nudge = watch::channel(0u64).0;
    let all = watch::channel(0u64).0;
    let ctx = Context {
        shared: shared.clone(),
        sts: Sts::new(Duration::from_secs(1)),
        token_file: dir.path().join("missing-token"),
        jitter: ceiling_jitter,
        token_changed: nudge.subscribe(),
        refresh_all: all.subscribe(),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(Refresher::new(p, ctx).run(Duration::ZERO, stop.clone()));

    // Attempts at 0, 1, 3, 7, 15, 31, 63, then every 60 s.
    let expected_at = [0u64, 1, 3, 7, 15, 31, 63, 123, 183, 243];
    let start = tokio::time::Instant::now();
    for (n, at) in expected_at.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_millis(at * 1000 + 500)).await;
        assert_eq!(token_errors(&shared), n as u64 + 1, "after {at}.5 s");
    }
    // A whole day: one attempt a minute, no more.
    tokio::time::sleep_until(start + Duration::from_secs(86_400 + 3)).await;
    let day = token_errors(&shared);
    // tokio's timer rounds each deadline up to the next millisecond, so a
    // day of 1440 sleeps may drift by up to ~1.4 s: allow one fewer.
    let exact = 7 + (86_400 - 63) / 60 + 1;
    assert!(
        (exact - 1..=exact).contains(&day),
        "{day} attempts in a day, expected {exact}"
    );
    let last = shared.get("reader").unwrap().last_error.unwrap();
    assert!(last.starts_with("TokenUnavailable: token file"), "{last}");

    stop.cancel();
    task.await.unwrap();
}

const SOURCE: &str = "arn:aws:iam::111122223333:role/source";
const SOURCE_2: &str = "arn:aws:iam::111122223333:role/source-2";
const OTHER: &str = "arn:aws:iam::111122223333:role/other";
const CHAINED: &str = "arn:aws:iam::444455556666:role/chained";

fn local_profile(sts: &FakeSts, name: &str, role: &str, source: Option<&str>) -> Arc<Profile> {
    Arc::new(Profile {
        region: Some("eu-west-1".into()),
        sts_endpoint: Some(sts.endpoint()),
        source_profile: source.map(str::to_owned),
        ..Profile::new(name, role)
    })
}

#[tokio::test(start_paused = true)]
async fn a_chained_profile_follows_only_its_source_also_when_a_reload_replaces_it() {
    let sts = FakeSts::start_local();
    let token = TokenDir::new(&valid_jwt());
    let shared = Shared::new();
    let ctx = |refresh_all: &watch::Sender<u64>| Context {
        shared: shared.clone(),
        sts: Sts::new(Duration::from_secs(5)),
        token_file: token.path(),
        jitter: ceiling_jitter,
        token_changed: watch::channel(0u64).1,
        refresh_all: refresh_all.subscribe(),
    };
    let quiet = watch::channel(0u64).0;
    let poke_other = watch::channel(0u64).0;
    let stop = CancellationToken::new();
    let spawn = |p: Arc<Profile>, all: &watch::Sender<u64>, stop: &CancellationToken| {
        shared.register(p.clone(), None, std::time::SystemTime::now());
        tokio::spawn(Refresher::new(p, ctx(all)).run(Duration::ZERO, stop.clone()))
    };
    let source_stop = stop.child_token();
    spawn(
        local_profile(&sts, "src", SOURCE, None),
        &quiet,
        &source_stop,
    );
    spawn(
        local_profile(&sts, "other", OTHER, None),
        &poke_other,
        &stop,
    );
    assert!(wait_until(Duration::from_secs(5), || sts.calls() == 2).await);
    spawn(
        local_profile(&sts, "chained", CHAINED, Some("src")),
        &quiet,
        &stop,
    );
    assert!(wait_until(Duration::from_secs(5), || sts.calls_for_role(CHAINED) == 1).await);

    // Another profile's new session does not concern it.
    poke_other.send_modify(|g| *g += 1);
    assert!(wait_until(Duration::from_secs(10), || sts.calls_for_role(OTHER) == 2).await);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(sts.calls_for_role(CHAINED), 1);

    // A reload gives the source another role: its new refresher's first
    // session reaches the running chained refresher, which follows once.
    source_stop.cancel();
    let replaced = local_profile(&sts, "src", SOURCE_2, None);
    shared.upsert(replaced.clone(), false, std::time::SystemTime::now());
    tokio::spawn(Refresher::new(replaced, ctx(&quiet)).run(Duration::ZERO, stop.clone()));
    assert!(wait_until(Duration::from_secs(5), || sts.calls_for_role(CHAINED) == 2).await);
    let signed_with = signing_key(
        sts.requests_for_role(CHAINED)[1]
            .authorization
            .as_deref()
            .unwrap(),
    )
    .unwrap()
    .to_owned();
    assert_eq!(
        Some(signed_with),
        sts.last_issued_for_role(SOURCE_2).map(|c| c.access_key_id),
        "signed with the replaced source's session"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(sts.calls_for_role(CHAINED), 2, "once per source session");
    stop.cancel();
}
