//! Thirty simulated days under paused tokio time: five profiles with one-hour
//! sessions, kubelet rotating one-hour tokens every 48 minutes. The STS calls
//! must be exactly the minimum the schedule implies (rotations cost nothing
//! while profiles are healthy; the first refresh, spread to its earliest
//! point, costs at most one call more), no refresh may be late, and memory
//! must not grow. Then, still in simulated time, what only expiry shows: an STS outage
//! longer than a session (the sessions expire and leave `credentials`,
//! readiness drops, and recovery costs one call a profile), and kubelet
//! stopping rotation (the token's `exp` passes and rolecall stops sending it).
//!
//! The fake STS runs on the same paused runtime (see `FakeSts::start_local`),
//! so the clock only advances when rolecall and STS are both idle. rolecall,
//! the fake STS and the tokens' `exp` all take wall time from one
//! [`Clock::tokio`], so sessions and tokens really expire in simulated time.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rolecall::Options;
use rolecall::clock::Clock;
use rolecall::config::{Config, Env, Flags};
use support::*;
use tokio::time::Instant;

/// Live heap bytes of this test process.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const DAYS: u64 = 30;
const PROFILES: usize = 5;
const ROTATION: Duration = Duration::from_secs(48 * 60);
const SESSION: f64 = 3600.0;
/// Projected tokens live an hour (kubelet rotates them at 80 %: 48 minutes).
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest backoff between failed attempts (at the ceiling jitter).
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// How long past its `exp` rolecall still sends a token (`token::EXPIRY_GRACE`,
/// judged in whole seconds).
const TOKEN_GRACE: Duration = Duration::from_secs(61);

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A service-account token valid for [`TOKEN_LIFETIME`] by `clock`, and its `exp`.
fn token_at(clock: &Clock) -> (String, SystemTime) {
    let exp = unix(clock.now() + TOKEN_LIFETIME);
    (
        jwt(TEST_ISSUER, TEST_SUBJECT, TEST_AUDIENCE, exp),
        UNIX_EPOCH + Duration::from_secs(exp),
    )
}

/// kubelet's side of the soak: rotates the token every [`ROTATION`] from
/// `start` (with an `exp` an hour ahead on `clock`), counting rotations.
struct Kubelet<'a> {
    token: &'a TokenDir,
    clock: &'a Clock,
    start: Instant,
    rotations: u32,
}

impl Kubelet<'_> {
    /// Rotates on schedule until `until`, then waits for it.
    async fn rotate_until(&mut self, until: Instant) {
        loop {
            let next = self.start + ROTATION * (self.rotations + 1);
            if next > until {
                break;
            }
            tokio::time::sleep_until(next).await;
            self.token.rotate(&token_at(self.clock).0);
            self.rotations += 1;
        }
        tokio::time::sleep_until(until).await;
    }
}

/// The tokio instant at which `clock` shows `wall`.
fn instant_of(clock: &Clock, wall: SystemTime) -> Instant {
    Instant::now() + wall.duration_since(clock.now()).unwrap_or_default()
}

/// The profiles that have keys in `credentials`.
fn published(out: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(out.join("credentials")).unwrap_or_default();
    parse_ini(&text)
        .values()
        .filter(|keys| keys.contains_key("aws_access_key_id"))
        .count()
}

/// Every profile's entry in `status.json`.
fn status_profiles(out: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("status.json")).unwrap();
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    status["profiles"].as_array().unwrap().clone()
}

/// Every profile's `last_error` in `status.json`.
fn last_errors(out: &std::path::Path) -> Vec<Option<String>> {
    status_profiles(out)
        .iter()
        .map(|p| p["last_error"].as_str().map(str::to_owned))
        .collect()
}

/// The latest session expiry in `status.json`.
fn last_expiry(out: &std::path::Path) -> SystemTime {
    status_profiles(out)
        .iter()
        .map(|p| parse_utc(p["expiration"].as_str().unwrap()))
        .max()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn thirty_days_cost_the_minimum_sts_calls_with_no_late_refresh_and_flat_memory() {
    let clock = Clock::tokio();
    let sts = FakeSts::start_local();
    sts.set_clock(clock);
    let token = TokenDir::new(&token_at(&clock).0);
    let shm = std::path::Path::new("/dev/shm");
    let out = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let health_port = free_port();
    let roles: Vec<String> = (0..PROFILES)
        .map(|i| format!("arn:aws:iam::111122223333:role/p{i}"))
        .collect();
    let flags = Flags {
        profiles: roles
            .iter()
            .enumerate()
            .map(|(i, r)| format!("p{i}={r}"))
            .collect(),
        token_file: Some(token.path().display().to_string()),
        output_dir: Some(out.path().display().to_string()),
        region: Some("eu-west-1".into()),
        sts_endpoint: Some(sts.endpoint()),
        health_addr: Some(format!("127.0.0.1:{health_port}")),
        control_socket: Some(String::new()), // no socket in the host's /run
        credentials: Some(TEST_MODE.into()), // not the default: see TEST_MODE
        ..Flags::default()
    };
    let config = Config::load(&flags, &Env::new()).unwrap();
    let opts = Options {
        jitter: || 1.0,
        // The first refresh after the start and after the outage spread
        // to its earliest point: 20 % of the session (schedule::spread_refresh_in).
        spread: || 1.0,
        clock,
        ..Options::default()
    };
    let r = Running::start(config, opts);

    let start = Instant::now();
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    let mut last: BTreeMap<String, Instant> = BTreeMap::new();
    let (mut first_gap, mut min_gap, mut max_gap) = (f64::MAX, f64::MAX, 0.0f64);
    let mut kubelet = Kubelet {
        token: &token,
        clock: &clock,
        start,
        rotations: 0,
    };
    let mut live_by_day = Vec::new();
    let mut tally = |sts: &FakeSts| {
        for r in sts.requests() {
            *calls.entry(r.role_arn.clone()).or_default() += 1;
            let n = calls[&r.role_arn];
            if let Some(prev) = last.insert(r.role_arn.clone(), r.received) {
                let gap = (r.received - prev).as_secs_f64();
                if n == 2 {
                    first_gap = first_gap.min(gap);
                } else {
                    min_gap = min_gap.min(gap);
                }
                max_gap = max_gap.max(gap);
            }
        }
        sts.clear_history();
    };
    for day in 1..=DAYS {
        let end = start + Duration::from_secs(day * 86_400);
        kubelet.rotate_until(end).await;
        tally(&sts);
        live_by_day.push(LIVE.load(Ordering::Relaxed));
    }
    let soak_rotations = kubelet.rotations;
    let out = out.path();
    assert_eq!(published(out), PROFILES);
    assert_eq!(http_get(health_port, "/readyz", None).await.0, 200);

    // An STS outage longer than a session. The published sessions are kept
    // while they last (each refreshed at most 27 minutes ago, so at least 33
    // minutes left)...
    sts.set_default(Reply::server_error());
    let outage = Instant::now();
    // Idle (nothing in flight) before reading what was published.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let expiry = instant_of(&clock, last_expiry(out));
    kubelet
        .rotate_until(outage + Duration::from_secs(28 * 60))
        .await;
    assert!(sts.calls() > 0, "refreshes were attempted");
    assert_eq!(published(out), PROFILES, "kept while valid");
    assert_eq!(http_get(health_port, "/readyz", None).await.0, 200);
    // ...and leave `credentials` when they expire, by the injected clock.
    kubelet.rotate_until(expiry).await;
    assert!(wait_until(Duration::from_secs(60), || published(out) == 0).await);
    let (status, body) = http_get(health_port, "/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    for e in last_errors(out) {
        assert!(
            e.as_deref().unwrap().starts_with("InternalFailure: "),
            "{e:?}"
        );
    }
    // More than an hour down; failed attempts back off instead of looping.
    kubelet
        .rotate_until(outage + Duration::from_secs(75 * 60))
        .await;
    let down = (Instant::now() - outage).as_secs();
    for role in &roles {
        let n = sts.calls_for_role(role) as u64;
        assert!(
            n <= down / BACKOFF_CAP.as_secs() + 10,
            "{role}: {n} attempts in {down} s of outage"
        );
    }
    assert_eq!(published(out), 0);

    // STS is back: one call a profile, none more before the next refresh,
    // spread after a recovery to 20 % of the session at the earliest.
    sts.set_default(Reply::ok());
    sts.clear_history();
    let back = Instant::now();
    kubelet
        .rotate_until(back + BACKOFF_CAP + Duration::from_secs(1))
        .await;
    assert_eq!(published(out), PROFILES, "recovered within one backoff");
    assert_eq!(http_get(health_port, "/readyz", None).await.0, 200);
    kubelet
        .rotate_until(back + Duration::from_secs_f64(0.2 * (SESSION - 2.0)))
        .await;
    for role in &roles {
        assert_eq!(sts.calls_for_role(role), 1, "{role}: recovery calls");
    }

    // kubelet stops rotating: the last token's `exp` passes on the injected
    // clock, and rolecall stops sending it (after the grace for clock skew).
    let (last_token, token_exp) = token_at(&clock);
    token.rotate(&last_token);
    sts.clear_history();
    let cutoff = instant_of(&clock, token_exp) + TOKEN_GRACE;
    // The last session it can buy expires a session's length after that.
    tokio::time::sleep_until(cutoff + Duration::from_secs_f64(SESSION)).await;
    assert!(wait_until(Duration::from_secs(60), || published(out) == 0).await);
    assert_eq!(http_get(health_port, "/readyz", None).await.0, 503);
    let requests = sts.requests();
    assert!(!requests.is_empty(), "the token was used while valid");
    for req in &requests {
        assert_eq!(req.token.as_deref(), Some(last_token.as_str()));
        assert!(
            req.received < cutoff,
            "{}: an expired token sent {:?} after its exp",
            req.role_arn,
            req.received - (cutoff - TOKEN_GRACE)
        );
    }
    for e in last_errors(out) {
        assert!(
            e.as_deref().unwrap().starts_with("TokenUnavailable: "),
            "{e:?}"
        );
    }
    // A fresh token: every profile recovers at once, one call each.
    sts.clear_history();
    token.rotate(&token_at(&clock).0);
    assert!(wait_until(Duration::from_secs(10), || published(out) == PROFILES).await);
    assert_eq!(sts.calls(), PROFILES);
    r.stop().await;

    // The minimum: one call at start, the first refresh at 20 % of a
    // session (the spread at its earliest with this draw), then one every
    // 45 % (refresh at half the lifetime, the full 5 % jitter with this
    // draw); sessions are 3598-3600 s after the fake STS truncates to whole
    // seconds.
    let horizon = (DAYS * 86_400) as f64;
    let fewest = 2 + ((horizon - 0.2 * SESSION) / (0.45 * SESSION)).floor() as u64;
    let most = 2 + ((horizon - 0.2 * (SESSION - 2.0)) / (0.45 * (SESSION - 2.0))).floor() as u64;
    assert_eq!(calls.len(), PROFILES);
    for (role, n) in &calls {
        assert!(
            (fewest..=most).contains(n),
            "{role}: {n} STS calls, the schedule implies {fewest}..={most}"
        );
    }
    assert!(
        max_gap <= 0.5 * SESSION + 1.0,
        "a refresh came {max_gap:.1} s after the previous one: late"
    );
    assert!(
        min_gap >= 0.45 * (SESSION - 2.0) - 1.0,
        "a refresh came only {min_gap:.1} s after the previous one"
    );
    assert!(
        first_gap >= 0.2 * (SESSION - 2.0) - 1.0,
        "the first refresh came only {first_gap:.1} s after the start"
    );
    assert!(soak_rotations >= 30 * 30, "{soak_rotations} rotations");

    // Memory at the end of days 28, 29 and 30 versus days 1, 2 and 3 (the
    // fake STS's history is cleared daily). Refreshes come every 1620 s,
    // which divides three days but not one: a day's end falls at the same
    // point of the refresh cycle as the end of the day three before (on
    // every third day just after a refresh, while the SDK's connection
    // buffers are still held), so days are compared three apart.
    let n = DAYS as usize;
    let growth = (1..=3)
        .map(|back| live_by_day[n - back] - live_by_day[3 - back])
        .max()
        .unwrap();
    let summary = format!(
        "soak: {DAYS} days, {PROFILES} profiles, {soak_rotations} token rotations, STS calls per profile {:?} (minimum {fewest}), refresh gaps {min_gap:.1}-{max_gap:.1} s, live heap days 1-3 {:?} B, days 28-30 {:?} B, growth {growth} B",
        calls.values().collect::<Vec<_>>(),
        &live_by_day[..3],
        &live_by_day[n - 3..],
    );
    println!("{summary}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("soak.txt"), summary + "\n").unwrap();
    assert!(
        growth < 64 * 1024,
        "memory grew by {growth} bytes over {DAYS} days"
    );
}
