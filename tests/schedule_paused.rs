//! Schedules under paused tokio time: hours of retries run in milliseconds,
//! and every attempt lands exactly when the backoff says; a chained profile
//! wakes for its own source's sessions only.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rolecall::config::Profile;
use rolecall::metrics::Metrics;
use rolecall::refresher::{Context, Refresher};
use rolecall::state::{Lookup, Shared};
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

fn token_errors(metrics: &Metrics) -> u64 {
    metrics
        .value(r#"rolecall_refresh_total{profile="reader",result="token_error"}"#)
        .unwrap_or(0.0) as u64
}

#[tokio::test(start_paused = true)]
async fn a_missing_token_is_retried_with_capped_exponential_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let shared = Shared::with_metrics(metrics.clone());
    let p = profile();
    shared.register(p.clone(), None);
    let nudge = watch::channel(0u64).0;
    let ctx = Context {
        shared: shared.clone(),
        metrics: metrics.clone(),
        pacer: Default::default(),
        sts: Sts::new(Duration::from_secs(1)),
        agent: None,
        token_file: dir.path().join("missing-token"),
        jitter: ceiling_jitter,
        spread: || 0.0,
        token_changed: nudge.subscribe(),
        config_reloaded: watch::channel(0u64).1,
        clock: rolecall::clock::Clock::system(),
        once: false,
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(Refresher::new(p, ctx).run(Duration::ZERO, stop.clone()));

    // Attempts at 0, 1, 3, 7, 15, 31, 63, then every 60 s.
    let expected_at = [0u64, 1, 3, 7, 15, 31, 63, 123, 183, 243];
    let start = tokio::time::Instant::now();
    for (n, at) in expected_at.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_millis(at * 1000 + 500)).await;
        assert_eq!(token_errors(&metrics), n as u64 + 1, "after {at}.5 s");
    }
    // A whole day: one attempt a minute, no more.
    tokio::time::sleep_until(start + Duration::from_secs(86_400 + 3)).await;
    let day = token_errors(&metrics);
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
    let shared = Shared::with_metrics(rolecall::metrics::Metrics::new());
    // One sidecar: its refreshers share its metrics and the pace of its
    // STS calls.
    let base = Context {
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
    let spawn = |p: Arc<Profile>, stop: &CancellationToken| {
        shared.register(p.clone(), None);
        let (r, manual) = Refresher::new(p, base.clone()).manual();
        tokio::spawn(r.run(Duration::ZERO, stop.clone()));
        manual
    };
    let source_stop = stop.child_token();
    spawn(local_profile(&sts, "src", SOURCE, None), &source_stop);
    let other = spawn(local_profile(&sts, "other", OTHER, None), &stop);
    assert!(wait_until(Duration::from_secs(5), || sts.calls() == 2).await);
    spawn(local_profile(&sts, "chained", CHAINED, Some("src")), &stop);
    assert!(wait_until(Duration::from_secs(5), || sts.calls_for_role(CHAINED) == 1).await);

    // Another profile's new session does not concern it.
    assert!(other.ask(None));
    assert!(wait_until(Duration::from_secs(10), || sts.calls_for_role(OTHER) == 2).await);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(sts.calls_for_role(CHAINED), 1);

    // A reload gives the source another role: its new refresher's first
    // session reaches the running chained refresher, which follows once.
    source_stop.cancel();
    let replaced = local_profile(&sts, "src", SOURCE_2, None);
    shared.upsert(replaced.clone(), false);
    tokio::spawn(Refresher::new(replaced, base.clone()).run(Duration::ZERO, stop.clone()));
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

/// A "reader" profile on `sts`, its state and its refresher, all on `clock`.
struct Reader {
    shared: Arc<Shared>,
    metrics: Metrics,
    refresher: Refresher,
}

fn reader_on(sts: &FakeSts, token: &TokenDir, clock: rolecall::clock::Clock) -> Reader {
    let metrics = Metrics::new();
    let shared = Shared::with_metrics(metrics.clone());
    let p = local_profile(sts, "reader", SOURCE, None);
    shared.register(p.clone(), None);
    let ctx = Context {
        shared: shared.clone(),
        metrics: metrics.clone(),
        pacer: Default::default(),
        sts: Sts::new(Duration::from_secs(5)).with_clock(clock),
        agent: None,
        token_file: token.path(),
        jitter: ceiling_jitter,
        spread: || 0.0,
        token_changed: watch::channel(0u64).1,
        config_reloaded: watch::channel(0u64).1,
        clock,
        once: false,
    };
    Reader {
        shared,
        metrics,
        refresher: Refresher::new(p, ctx),
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_never_sent_even_when_only_paused_time_reached_its_expiry() {
    let clock = rolecall::clock::Clock::tokio();
    let unix =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sts = FakeSts::start_local();
    sts.set_clock(clock);
    // Ten minutes left on the token; the session's refresh is due in about 25.
    let token = TokenDir::new(&jwt(
        TEST_ISSUER,
        TEST_SUBJECT,
        TEST_AUDIENCE,
        unix(clock.now()) + 600,
    ));
    let Reader {
        shared,
        metrics,
        refresher,
    } = reader_on(&sts, &token, clock);
    let stop = CancellationToken::new();
    tokio::spawn(refresher.run(Duration::ZERO, stop.clone()));
    assert!(wait_until(Duration::from_secs(5), || sts.calls() == 1).await);

    // The refresh falls after the token's exp by the injected clock (the
    // system clock has not moved): refused before any STS call.
    assert!(wait_until(Duration::from_secs(3600), || token_errors(&metrics) == 1).await);
    assert_eq!(sts.calls(), 1, "the expired token was not sent");
    let last = shared.get("reader").unwrap().last_error.unwrap();
    assert!(last.starts_with("TokenUnavailable: token in"), "{last}");
    assert!(last.contains("expired at"), "{last}");
    assert!(
        shared.get("reader").unwrap().session.is_some(),
        "the last good session is kept"
    );

    // kubelet rotates it: the retry after the backoff sends the new one.
    let fresh = jwt(
        TEST_ISSUER,
        TEST_SUBJECT,
        TEST_AUDIENCE,
        unix(clock.now()) + 3600,
    );
    token.rotate(&fresh);
    assert!(wait_until(Duration::from_secs(10), || sts.calls() == 2).await);
    assert_eq!(
        sts.requests()[1].param("WebIdentityToken"),
        Some(fresh.as_str())
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn through_an_sts_outage_the_last_session_is_kept_until_it_expires_on_the_injected_clock() {
    let clock = rolecall::clock::Clock::tokio();
    let sts = FakeSts::start_local();
    sts.set_clock(clock);
    let token = TokenDir::new(&valid_jwt());
    let Reader {
        shared, refresher, ..
    } = reader_on(&sts, &token, clock);
    shared.record_write(Default::default(), true);
    let stop = CancellationToken::new();
    let start = tokio::time::Instant::now();
    tokio::spawn(refresher.run(Duration::ZERO, stop.clone()));
    assert!(wait_until(Duration::from_secs(5), || sts.calls() == 1).await);
    let expiry = shared.get("reader").unwrap().session.unwrap().expiration;
    sts.set_default(Reply::server_error());

    // Refreshes fail from half-life on; the session stays published.
    tokio::time::sleep_until(start + Duration::from_secs(3000)).await;
    assert!(sts.calls() > 1, "the refresh was attempted");
    let last = shared.get("reader").unwrap().last_error.unwrap();
    assert!(last.starts_with("InternalFailure: "), "{last}");
    let live = |now| matches!(shared.credentials_for("reader", now), Lookup::Live { .. });
    assert!(live(clock.now()));
    assert!(shared.not_ready(clock.now()).is_empty());

    // An hour on the injected clock: expired, and so not ready, without
    // an hour of real waiting.
    let left = expiry.duration_since(clock.now()).unwrap();
    tokio::time::sleep(left).await;
    assert!(!live(clock.now()));
    assert_eq!(
        shared.not_ready(clock.now()),
        vec![("reader".to_owned(), last)]
    );
    stop.cancel();
}
