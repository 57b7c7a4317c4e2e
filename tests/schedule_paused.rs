//! Schedules under paused tokio time: hours of retries run in milliseconds,
//! and every attempt lands exactly when the backoff says.

use std::sync::Arc;
use std::time::Duration;

use rolecall::config::Profile;
use rolecall::metrics::RefreshLabels;
use rolecall::refresher::{Context, Refresher};
use rolecall::state::Shared;
use rolecall::sts::Sts;
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
            result: "token_error".into(),
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
        sessions: Arc::new(watch::channel(0u64).0),
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
