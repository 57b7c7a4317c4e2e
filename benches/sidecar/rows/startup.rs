//! Row `startup`: from exec to the first credentials written, against moto.

use std::time::Duration;

use crate::child::*;
use crate::env::*;
use crate::helpers::*;
use crate::report::*;
use crate::support::{self, FakeSts, Moto, TokenDir};

pub(crate) fn startup_times(env: &Env, endpoint: &str, runs: usize) -> Vec<f64> {
    let token = TokenDir::new(&support::valid_jwt());
    // One discarded warm-up start (page cache, moto's lazy imports).
    let mut sc = Sidecar::start(env, endpoint, 10, &token);
    sc.wait_written(10, Duration::from_millis(1), Duration::from_secs(60));
    drop(sc);
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut sc = Sidecar::start(env, endpoint, 10, &token);
        let t = sc.wait_written(10, Duration::from_millis(1), Duration::from_secs(30));
        times.push(ms(t - sc.started));
    }
    times
}

pub(crate) fn row_startup(env: &Env, r: &mut Report) {
    let sts = FakeSts::start();
    let mut fake = startup_times(env, &sts.endpoint(), 10);
    let (lo, hi) = min_max(&fake);
    r.line(
        "startup",
        "start to all 10 profiles written, fake STS (median of 10)",
        format!("{:.1} ms (min {lo:.1}, max {hi:.1})", median(&mut fake)),
        "—",
        None,
    );
    let moto = Moto::start(&env.venv);
    let mut m = startup_times(env, &moto.endpoint(), 10);
    let (lo, hi) = min_max(&m);
    r.line(
        "startup",
        "start to all 10 profiles written, moto STS (median of 10)",
        format!("{:.1} ms (min {lo:.1}, max {hi:.1})", median(&mut m)),
        "—",
        None,
    );
}
