//! Thirty simulated days under paused tokio time: five profiles with one-hour
//! sessions, kubelet rotating the token every 48 minutes. The STS calls must
//! be exactly the minimum the schedule implies (rotations cost nothing while
//! profiles are healthy), no refresh may be late, and memory must not grow.
//!
//! The fake STS runs on the same paused runtime (see `FakeSts::start_local`),
//! so the clock only advances when rolecall and STS are both idle.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use rolecall::Options;
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

#[tokio::test(start_paused = true)]
async fn thirty_days_cost_the_minimum_sts_calls_with_no_late_refresh_and_flat_memory() {
    let sts = FakeSts::start_local();
    let token = TokenDir::new(&valid_jwt());
    let shm = std::path::Path::new("/dev/shm");
    let out = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
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
        health_addr: Some(String::new()),
        ..Flags::default()
    };
    let config = Config::load(&flags, &Env::new()).unwrap();
    let opts = Options {
        jitter: || 1.0,
        ..Options::default()
    };
    let r = Running::start(config, opts);

    let start = Instant::now();
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    let mut last: BTreeMap<String, Instant> = BTreeMap::new();
    let (mut min_gap, mut max_gap) = (f64::MAX, 0.0f64);
    let mut rotations = 0;
    let mut live_by_day = Vec::new();
    let mut tally = |sts: &FakeSts| {
        for r in sts.requests() {
            *calls.entry(r.role_arn.clone()).or_default() += 1;
            if let Some(prev) = last.insert(r.role_arn.clone(), r.received) {
                let gap = (r.received - prev).as_secs_f64();
                min_gap = min_gap.min(gap);
                max_gap = max_gap.max(gap);
            }
        }
        sts.clear_history();
    };
    for day in 1..=DAYS {
        let end = start + Duration::from_secs(day * 86_400);
        let mut next_rotation = start + ROTATION * (rotations + 1);
        while next_rotation <= end {
            tokio::time::sleep_until(next_rotation).await;
            token.rotate(&valid_jwt());
            rotations += 1;
            next_rotation = start + ROTATION * (rotations + 1);
        }
        tokio::time::sleep_until(end).await;
        tally(&sts);
        live_by_day.push(LIVE.load(Ordering::Relaxed));
    }
    r.stop().await;

    // The minimum: one call at start, then one every 45 % of a session
    // (refresh at half the lifetime, the full 5 % jitter with this draw);
    // sessions are 3598-3600 s after the fake STS truncates to whole seconds.
    let horizon = (DAYS * 86_400) as f64;
    let fewest = 1 + (horizon / (0.45 * SESSION)).floor() as u64;
    let most = 1 + (horizon / (0.45 * (SESSION - 2.0))).floor() as u64;
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
    assert!(rotations >= 30 * 30, "{rotations} rotations");

    // Memory after day 2 versus day 30 (the fake STS's history is cleared daily).
    let growth = live_by_day[DAYS as usize - 1] - live_by_day[1];
    let summary = format!(
        "soak: {DAYS} days, {PROFILES} profiles, {rotations} token rotations, STS calls per profile {:?} (minimum {fewest}), refresh gaps {min_gap:.1}-{max_gap:.1} s, live heap day 2 {} B, day {DAYS} {} B, growth {growth} B",
        calls.values().collect::<Vec<_>>(),
        live_by_day[1],
        live_by_day[DAYS as usize - 1],
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
