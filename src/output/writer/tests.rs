//! The writer task in paused time: one write per round, no change lost.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::{WRITE_DEBOUNCE, Writer, take_pending_change};
use crate::config::Profile;
use crate::output::{CREDENTIALS_FILE, Helper, RECHECK_INTERVAL};
use crate::session::{Secret, Session};
use crate::state::{Shared, current_profile};

const PROFILES: usize = 10;

fn name(i: usize) -> String {
    format!("p{i}")
}

/// Shared state with [`PROFILES`] file-mode profiles, none with a session.
fn shared() -> Arc<Shared> {
    let shared = Shared::new();
    for i in 0..PROFILES {
        let p = Profile::new(
            name(i),
            format!("arn:aws:iam::111122223333:role/{}", name(i)),
        );
        shared.register(Arc::new(p), None);
    }
    shared
}

/// What a refresher does with a new session: store it and wake the writer.
fn publish(shared: &Shared, i: usize) {
    let session = Session {
        access_key_id: Secret::new(format!("ASIAKEY{i}")),
        secret_access_key: Secret::new("secret"),
        session_token: Secret::new("token"),
        expiration: SystemTime::now() + Duration::from_secs(3600),
        assumed_role_arn: None,
    };
    shared.record_success(
        &current_profile(shared, &name(i)),
        session,
        crate::state::RefreshPlan {
            received: SystemTime::now(),
            next_refresh: None,
        },
    );
}

/// The writer task for `dir`, counting the files it replaces.
struct Running {
    written: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(dir: &Path, shared: &Arc<Shared>) -> Running {
    let written = Arc::new(AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (writer, shared, shutdown, written) = (
            Writer::for_dir(dir),
            shared.clone(),
            shutdown.clone(),
            written.clone(),
        );
        async move {
            writer
                .keep_current(shared, Arc::new(Helper::default()), shutdown, &written)
                .await
        }
    });
    Running {
        written,
        shutdown,
        task,
    }
}

impl Running {
    fn written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }
}

fn credentials(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(CREDENTIALS_FILE)).unwrap_or_default()
}

/// Waits (in paused time, so without real waiting) until `cond` holds,
/// at most a minute of tokio time.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ten_sessions_published_in_one_round_are_written_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared();
    let w = start(dir.path(), &shared);
    // The first pass: credentials, config and status.json.
    until("the first pass", || w.written() == 3).await;
    // One round: ten STS answers a millisecond apart, each published as
    // the refreshers do.
    for i in 0..PROFILES {
        publish(&shared, i);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    until("every session written", || {
        let c = credentials(dir.path());
        (0..PROFILES).all(|i| c.contains(&format!("ASIAKEY{i}\n")))
    })
    .await;
    // One pass for the round: credentials and status.json, once each (ten
    // each without the debounce).
    assert_eq!(w.written() - 3, 2);
    // Later passes (expiry re-checks) find nothing to rewrite.
    tokio::time::sleep(RECHECK_INTERVAL * 2).await;
    assert_eq!(w.written() - 3, 2);
    w.shutdown.cancel();
    w.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_first_pass_is_not_delayed_and_a_change_waits_for_the_debounce() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared();
    publish(&shared, 0);
    let start_at = tokio::time::Instant::now();
    let w = start(dir.path(), &shared);
    // Without letting tokio time pass: the writer runs as soon as it is
    // polled.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        credentials(dir.path()).contains("ASIAKEY0"),
        "no delay at start"
    );
    assert_eq!(tokio::time::Instant::now(), start_at);
    publish(&shared, 1);
    let changed_at = tokio::time::Instant::now();
    until("the change written", || {
        credentials(dir.path()).contains("ASIAKEY1")
    })
    .await;
    let took = tokio::time::Instant::now() - changed_at;
    assert!(
        took >= WRITE_DEBOUNCE && took < WRITE_DEBOUNCE + Duration::from_millis(5),
        "{took:?}"
    );
    w.shutdown.cancel();
    w.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_change_after_the_render_gets_a_pass_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared();
    let w = start(dir.path(), &shared);
    until("the first pass", || w.written() == 3).await;
    publish(&shared, 0);
    until("the first change", || {
        credentials(dir.path()).contains("ASIAKEY0")
    })
    .await;
    // Just after that render: a new change is not lost.
    publish(&shared, 1);
    until("the second change", || {
        credentials(dir.path()).contains("ASIAKEY1")
    })
    .await;
    assert_eq!(
        w.written() - 3,
        4,
        "two passes of credentials and status.json"
    );
    w.shutdown.cancel();
    w.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_change_just_before_shutdown_is_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared();
    let w = start(dir.path(), &shared);
    until("the first pass", || w.written() == 3).await;
    publish(&shared, 0);
    // The writer is woken and waiting out the debounce when asked to stop:
    // it writes the change at once and stops.
    tokio::task::yield_now().await;
    let stop_at = tokio::time::Instant::now();
    w.shutdown.cancel();
    w.task.await.unwrap();
    assert!(credentials(dir.path()).contains("ASIAKEY0"));
    assert_eq!(
        tokio::time::Instant::now(),
        stop_at,
        "stopping is not delayed"
    );
}

#[test]
fn a_pending_change_is_taken_once() {
    let shared = Shared::new();
    assert!(!take_pending_change(&shared));
    shared.writes().request();
    shared.writes().request();
    assert!(take_pending_change(&shared));
    assert!(!take_pending_change(&shared));
}

#[test]
fn write_returns_how_many_files_it_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared();
    let w = Writer::for_dir(dir.path());
    let now = SystemTime::now();
    assert_eq!(
        w.write(&shared, now).unwrap(),
        3,
        "credentials, config, status"
    );
    assert_eq!(w.write(&shared, now).unwrap(), 0, "nothing changed");
    publish(&shared, 0);
    assert_eq!(w.write(&shared, now).unwrap(), 2, "credentials, status");
}

#[tokio::test(start_paused = true)]
async fn a_session_is_removed_from_the_files_just_after_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared();
    let clock = crate::clock::Clock::tokio();
    let expiry = clock.now() + Duration::from_secs(10);
    shared.record_success(
        &current_profile(&shared, &name(0)),
        Session {
            access_key_id: Secret::new("ASIAKEY0"),
            secret_access_key: Secret::new("secret"),
            session_token: Secret::new("token"),
            expiration: expiry,
            assumed_role_arn: None,
        },
        crate::state::RefreshPlan {
            received: clock.now(),
            next_refresh: None,
        },
    );
    let shutdown = CancellationToken::new();
    let writer = Writer {
        clock,
        ..Writer::for_dir(dir.path())
    };
    let task = tokio::spawn(writer.run(
        shared.clone(),
        Arc::new(Helper::default()),
        shutdown.clone(),
    ));
    until("the session written", || {
        credentials(dir.path()).contains("ASIAKEY0")
    })
    .await;
    // The writer wakes at the expiry it rendered, not at the next re-check
    // (RECHECK_INTERVAL, longer than the session's 10 s).
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(9_900)).await;
    assert!(credentials(dir.path()).contains("ASIAKEY0"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!credentials(dir.path()).contains("ASIAKEY0"));
    shutdown.cancel();
    task.await.unwrap();
}
