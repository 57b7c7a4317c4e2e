//! Rows `sts-calls` (calls over a schedule window) and `burst` (rotations and
//! junk files cost no STS call).

use std::time::{Duration, Instant};

use crate::child::*;
use crate::env::*;
use crate::helpers::*;
use crate::procfs::*;
use crate::report::*;
use crate::support::{self, FakeSts, Reply, TokenDir};

pub(crate) fn row_sts_calls(env: &Env, r: &mut Report) {
    const N: usize = 10;
    const LIFETIME: f64 = 20.0;
    let secs = env_secs("ROLECALL_BENCH_STS_SECS", 60).max(10);
    let sts = FakeSts::start();
    sts.set_default(Reply::ok_for(Duration::from_secs(LIFETIME as u64)));
    let token = TokenDir::new(&support::valid_jwt());
    let mut sc = Sidecar::start(env, &sts.endpoint(), N, &token);
    let window = Duration::from_secs(secs);
    let end = sc.started + window;
    while Instant::now() < end {
        std::thread::sleep((end - Instant::now()).min(Duration::from_secs(1)));
        if !sc.alive() {
            sc.fail("rolecall exited");
        }
    }
    let requests = sts.requests();
    // The schedule: refresh at half the lifetime, up to 5 % of the lifetime
    // earlier: every 9 s at the earliest for a 20 s session (the fake
    // truncates expiry to whole seconds, so it may be 8.55 s for 19.x s).
    let minimum = 1 + secs / 9;
    let mut counts = vec![];
    let mut min_gap = f64::INFINITY;
    let mut max_gap: f64 = 0.0;
    for arn in roles(N) {
        let times: Vec<Instant> = requests
            .iter()
            .filter(|q| q.role_arn == arn)
            .map(|q| q.received.into_std())
            .filter(|t| *t <= end)
            .collect();
        counts.push(times.len());
        for w in times.windows(2) {
            let gap = (w[1] - w[0]).as_secs_f64();
            min_gap = min_gap.min(gap);
            max_gap = max_gap.max(gap);
        }
    }
    let (lo, hi) = (
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    let total: usize = counts.iter().sum();
    r.line(
        "sts-calls",
        format!("STS calls per profile, 20 s sessions, {secs} s"),
        format!(
            "{lo}–{hi} calls per profile ({total} in all; gaps {min_gap:.2}–{max_gap:.2} s); \
             minimum 1 + ⌊{secs}/9⌋ = {minimum}"
        ),
        "exactly the minimum, no gap < 8.55 s",
        Some(lo == minimum as usize && hi == minimum as usize && min_gap >= 0.45 * 19.0),
    );
}

/// Extra STS calls caused by bursts of token events while healthy.
pub(crate) fn row_burst(env: &Env, r: &mut Report) {
    const ROTATIONS: u64 = 50;
    const FILES: usize = 200;
    let sts = FakeSts::start();
    let token = TokenDir::new(&token_n(0));
    let mut sc = Sidecar::start(env, &sts.endpoint(), 10, &token);
    sc.wait_written(10, Duration::from_millis(5), Duration::from_secs(30));
    let calls0 = sts.calls();
    let mut meter = CpuMeter::new(sc.pid);
    let (ns0, _) = meter.sample();
    let mut last = String::new();
    for i in 1..=ROTATIONS {
        last = token_n(i);
        token.rotate(&last);
    }
    for i in 0..FILES {
        let p = token.dir().join(format!("junk-{i}"));
        std::fs::write(&p, b"x").expect("create junk file");
        std::fs::remove_file(&p).expect("remove junk file");
    }
    // The watcher has caught up when it reports the last token's exp.
    let exp = support::decode_jwt_claims(&last)["exp"]
        .as_u64()
        .expect("exp") as f64;
    let seen = poll(Duration::from_secs(10), Duration::from_millis(10), || {
        let m = http_get(sc.health, "/metrics").unwrap_or_default();
        (metric_sum(&m, "rolecall_token_expiry_timestamp_seconds", "") == exp).then_some(())
    });
    if seen.is_none() {
        sc.fail("the watcher did not see the last rotation within 10 s");
    }
    // Give any refresher that would react 2 s to do so.
    std::thread::sleep(Duration::from_secs(2));
    let (ns1, _) = meter.sample();
    let changes = sc.log_text().matches("token changed").count();
    let delta = sts.calls() - calls0;
    r.line(
        "burst",
        format!("extra STS calls: {ROTATIONS} rotations + {FILES} files created/removed, healthy"),
        format!(
            "{delta} calls ({changes} token changes logged; {:.1} ms CPU for the burst)",
            (ns1 - ns0) as f64 / 1e6
        ),
        "0",
        Some(delta == 0),
    );
}
