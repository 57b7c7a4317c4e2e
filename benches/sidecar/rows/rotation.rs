//! Row `rotation`: from a token rotation to every profile rewritten.

use std::time::{Duration, Instant};

use crate::SIGUSR1;
use crate::child::*;
use crate::env::*;
use crate::helpers::*;
use crate::report::*;
use crate::support::{FakeSts, Reply, TokenDir};

pub(crate) fn row_rotation(env: &Env, r: &mut Report) {
    const N: usize = 10;
    const ROUNDS: usize = 20;
    let sts = FakeSts::start();
    let token = TokenDir::new(&token_n(0));
    let mut sc = Sidecar::start(env, &sts.endpoint(), N, &token);
    sc.wait_written(N, Duration::from_millis(5), Duration::from_secs(30));
    let arns = roles(N);
    let (mut total, mut detect, mut sts_rtt, mut raw_rtt) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        // Re-arm: every profile's next call is refused; SIGUSR1 makes them call.
        let before = sc.keys();
        assert_eq!(before.len(), N);
        let calls0 = sts.calls();
        let m = sc.metrics();
        let errors0 = metric_sum(&m, "rolecall_refresh_total", "config_error");
        for arn in &arns {
            sts.push_for_role(arn, Reply::access_denied());
        }
        sc.signal(SIGUSR1);
        let failed = poll(Duration::from_secs(10), Duration::from_millis(2), || {
            (sts.calls() >= calls0 + N
                && metric_sum(
                    &http_get(sc.health, "/metrics").unwrap_or_default(),
                    "rolecall_refresh_total",
                    "config_error",
                ) >= errors0 + N as f64)
                .then_some(())
        });
        if failed.is_none() {
            sc.fail("the re-armed profiles did not fail with AccessDenied within 10 s");
        }
        let requests = sts.requests();
        for arn in &arns {
            let n = requests[calls0..]
                .iter()
                .filter(|q| &q.role_arn == arn)
                .count();
            assert_eq!(n, 1, "{arn}: {n} calls after SIGUSR1, want 1");
        }
        assert_eq!(sc.keys(), before, "a failed refresh changed the file");
        let m = sc.metrics();
        let (sum0, count0) = (
            metric_sum(&m, "rolecall_sts_request_duration_seconds_sum", ""),
            metric_sum(&m, "rolecall_sts_request_duration_seconds_count", ""),
        );
        sts.set_default(Reply::ok());
        let calls1 = sts.calls();
        let t0 = Instant::now();
        token.rotate(&token_n(round as u64 + 1));
        let t1 = sc.wait_all_changed(&before, Duration::from_millis(1), Duration::from_secs(10));
        total.push(ms(t1 - t0));
        let first = sts.requests()[calls1..]
            .iter()
            .map(|q| q.received.into_std())
            .min()
            .expect("calls after the rotation");
        detect.push(ms(first.saturating_duration_since(t0)));
        let m = sc.metrics();
        let (sum1, count1) = (
            metric_sum(&m, "rolecall_sts_request_duration_seconds_sum", ""),
            metric_sum(&m, "rolecall_sts_request_duration_seconds_count", ""),
        );
        if count1 > count0 {
            sts_rtt.push((sum1 - sum0) / (count1 - count0) * 1000.0);
        }
        raw_rtt.push(ms(raw_sts_round_trip(&sts, &token.read())));
    }
    // Start: N; per round: N refused, N after the rotation, 1 raw round trip.
    let extra_calls = sts.calls() as i64 - (N + ROUNDS * (2 * N + 1)) as i64;
    let (lo, hi) = min_max(&total);
    let total_med = median(&mut total);
    let rtt_med = median(&mut sts_rtt);
    let raw_med = median(&mut raw_rtt);
    let detect_med = median(&mut detect);
    r.line(
        "rotation",
        "token rotation to all 10 failing profiles rewritten (median of 20)",
        format!(
            "{total_med:.1} ms (min {lo:.1}, max {hi:.1}); rotation to first STS request {detect_med:.1} ms"
        ),
        format!("≤ 100 ms + STS round trip = {:.1} ms", 100.0 + rtt_med),
        Some(total_med <= 100.0 + rtt_med),
    );
    r.line(
        "rotation",
        "STS round trip",
        format!(
            "{rtt_med:.2} ms as rolecall saw it (mean of rolecall_sts_request_duration_seconds \
             per rotation, median); {raw_med:.2} ms raw HTTP from the harness; {extra_calls} \
             unexpected calls"
        ),
        "—",
        None,
    );
}
