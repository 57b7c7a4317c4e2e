//! The fleet simulator of issue 14 (tests/support/fleet): real `rolecall
//! run` processes against a fake STS with an account-wide rate limit.
//!
//! - `a_hundred_sidecars_against_a_throttling_sts_all_become_ready`: the
//!   reduced fleet of `make test` (N = 100, P = 3, 10 calls/s, burst 20, all
//!   at once). It asserts the absence of failure, never a time.
//! - `fleet_scenarios` (ignored; `make fleet`): the full runs, chosen and
//!   sized by `ROLECALL_FLEET_*` (see [`Knobs`]); results in
//!   `target/fleet/results.md`, and docs/SCALE.md with
//!   `ROLECALL_FLEET_WRITE_DOCS=1`.
//! - unit tests of the pure parts (token bucket, statistics, report).

#[path = "support/fleet/mod.rs"]
mod fleet;
mod support;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use fleet::*;
use support::*;

/// The most STS calls the reduced fleet may make, as a multiple of the
/// minimum N×P. The backoff of 2026-11-30 (before issue 14's changes) made
/// 1,256 calls for 300 here (4.2×, 956 throttled), so the bound starts at
/// 5; tighten it once the throttling behaviour changes (issue 14's target
/// is 1.3).
const MAX_CALLS_FACTOR: f64 = 5.0;

// ------------------------------------------------------------ pure parts

#[test]
fn token_bucket_starts_full_and_refills_at_its_rate_up_to_the_burst() {
    let t = Instant::now();
    let mut b = TokenBucket::new(2.0, 3, t);
    assert!((0..3).all(|_| b.try_take(t)), "the burst is there at once");
    assert!(!b.try_take(t), "then it is empty");
    assert!(!b.try_take(t + Duration::from_millis(400)), "0.8 token");
    assert!(
        b.try_take(t + Duration::from_millis(500)),
        "1 token after 0.5 s"
    );
    assert!(!b.try_take(t + Duration::from_millis(500)));
    // A long pause refills only up to the burst.
    let later = t + Duration::from_secs(100);
    assert_eq!((0..10).filter(|_| b.try_take(later)).count(), 3);
    // An instant earlier than the last refills nothing (and does not panic).
    assert!(!b.try_take(t));
}

#[test]
fn token_bucket_accepts_rate_times_time_plus_burst_over_a_long_run() {
    let t = Instant::now();
    let mut b = TokenBucket::new(50.0, 100, t);
    // 1,000 attempts a second for 10 s: 100 + 50 × 10 accepted.
    let accepted = (0..10_000)
        .filter(|k| b.try_take(t + Duration::from_millis(*k)))
        .count();
    assert!((599..=601).contains(&accepted), "{accepted}");
}

#[test]
fn percentiles_use_the_nearest_rank() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 0.5), 50);
    assert_eq!(percentile(&v, 0.9), 90);
    assert_eq!(percentile(&v, 0.99), 99);
    assert_eq!(percentile(&v, 1.0), 100);
    assert_eq!(percentile(&v, 0.0), 1);
    assert_eq!(percentile(&[7], 0.99), 7);
    assert_eq!(percentile(&[], 0.5), 0);
    let s = Spread::of(&[5, 1, 3, 3, 9]);
    assert_eq!(
        s,
        Spread {
            min: 1,
            median: 3,
            p90: 9,
            p99: 9,
            max: 9
        }
    );
    assert_eq!(s.to_string(), "1 / 3 / 9 / 9 / 9");
}

#[test]
fn bins_count_half_open_intervals_and_drop_a_partial_last_bin() {
    let times = [0.0, 0.5, 0.999, 1.0, 2.5, 3.2, 9.0, -1.0];
    assert_eq!(bins(&times, 1.0, 0.0, 3.5), vec![3, 1, 1]);
    assert_eq!(bins(&times, 2.0, 0.0, 4.0), vec![4, 2]);
    assert_eq!(bins(&times, 1.0, 1.0, 3.0), vec![1, 1]);
    assert!(bins(&times, 10.0, 0.0, 5.0).is_empty());
}

#[test]
fn rates_give_mean_peak_and_peak_to_mean() {
    let r = Rate::of(&[10, 30, 20, 20], 1.0);
    assert_eq!((r.mean, r.peak, r.peak_to_mean), (20.0, 30.0, 1.5));
    let r = Rate::of(&[100, 300], 10.0);
    assert_eq!((r.mean, r.peak, r.peak_to_mean), (20.0, 30.0, 1.5));
    assert_eq!(Rate::of(&[], 1.0), Rate::default());
    assert_eq!(Rate::of(&[0, 0], 1.0).peak_to_mean, 0.0);
}

#[test]
fn fleet_role_arns_name_sidecar_and_profile() {
    assert_eq!(parse_fleet_arn(&fleet_arn(12, 2)), Some((12, 2)));
    assert_eq!(parse_fleet_arn("arn:aws:iam::1:role/other"), None);
    assert_eq!(parse_fleet_arn("arn:aws:iam::1:role/fleet-sx-p1"), None);
}

#[test]
fn proc_stat_and_smaps_rollup_are_parsed() {
    let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 1 0";
    assert_eq!(stat_cpu_ticks(stat), Some(22));
    assert_eq!(stat_cpu_ticks("garbage"), None);
    let rollup = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  5800 kB\nPss:  4100 kB\n";
    assert_eq!(rollup_kib(rollup), (4100, 5800));
    let own = process_cpu_s(std::process::id()).expect("own stat");
    assert!(own >= 0.0);
    let (pss, rss) = process_mem_kib(std::process::id()).expect("own smaps_rollup");
    assert!(pss > 0 && rss >= pss, "{pss} {rss}");
}

#[test]
fn results_are_spliced_between_the_markers_only() {
    let doc = format!("# Scale\n\nmodel\n\n{BEGIN}\nold\n{END}\n\ntuning\n");
    let new = splice(&doc, "| a | b |\n").unwrap();
    assert_eq!(
        new,
        format!("# Scale\n\nmodel\n\n{BEGIN}\n| a | b |\n{END}\n\ntuning\n")
    );
    assert_eq!(splice(&new, "x").unwrap().matches(BEGIN).count(), 1);
    assert_eq!(splice("no markers", "x"), None);
    assert_eq!(splice(&format!("{END} {BEGIN}"), "x"), None);
    let mut s = Section::new("(a) all at once", "make fleet");
    s.row("calls", "3|4");
    assert!(
        s.markdown().contains("| calls | 3\\|4 |"),
        "{}",
        s.markdown()
    );
}

// ------------------------------------------------------------ the fake STS's rate limit

/// One AssumeRoleWithWebIdentity POST on a new connection: status and body.
fn assume(sts: &FakeSts, role: &str) -> (u16, String) {
    let body = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName=s&WebIdentityToken=t",
        role.replace(':', "%3A").replace('/', "%2F")
    );
    let mut c = std::net::TcpStream::connect(sts.addr()).expect("connect");
    write!(
        c,
        "POST / HTTP/1.1\r\nHost: sts\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[test]
fn fake_sts_throttles_over_its_rate_like_sts_and_an_outage_takes_no_tokens() {
    let sts = FakeSts::start();
    // One token every 1000 s: only the burst is accepted during the test.
    sts.set_rate_limit(0.001, 2);
    sts.set_default(Reply::server_error());
    for _ in 0..3 {
        assert_eq!(assume(&sts, "arn:aws:iam::1:role/r").0, 500);
    }
    sts.set_default(Reply::ok());
    let answers: Vec<(u16, String)> = (0..4)
        .map(|_| assume(&sts, "arn:aws:iam::1:role/r"))
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 400, 400], "the outage used no tokens");
    assert!(
        answers[2].1.contains("<Code>Throttling</Code>"),
        "{}",
        answers[2].1
    );
    assert!(answers[2].1.contains("<Message>Rate exceeded</Message>"));
    let outcomes: Vec<CallOutcome> = sts.call_log().iter().map(|c| c.outcome).collect();
    use CallOutcome::*;
    assert_eq!(
        outcomes,
        [
            Other, Other, Other, Accepted, Accepted, Throttled, Throttled
        ]
    );
    assert_eq!(sts.throttled(), 2);
    assert!(
        sts.call_log()
            .iter()
            .all(|c| c.role_arn == "arn:aws:iam::1:role/r")
    );
    sts.clear_rate_limit();
    assert_eq!(assume(&sts, "arn:aws:iam::1:role/r").0, 200);
    sts.clear_history();
    assert!(sts.call_log().is_empty());
}

// ------------------------------------------------------------ the reduced fleet (make test)

#[test]
fn a_hundred_sidecars_against_a_throttling_sts_all_become_ready() {
    const N: usize = 100;
    const P: usize = 3;
    let sts = FakeSts::start();
    sts.set_rate_limit(10.0, 20);
    let mut fleet = Fleet::new(sts.clone(), P, &results_dir().join("logs/reduced"));
    // A generous bound on a failure, not an expectation (ideal: 28 s).
    let startup = fleet.start(N, Start::AllAtOnce, Duration::from_secs(600));
    let end = fleet.t0.elapsed().as_secs_f64() + 1.0;
    let calls = Calls::of(&sts.call_log(), fleet.t0, 0.0, end, N);
    let logs = fleet.logs();
    let summary = format!(
        "ready {}/{N} after {:?}, exited {}, calls {} (minimum {}), throttled {}, per sidecar {}, \
         peak {}/s, logs: {} WARN, {} ERROR, {} panics {:?}",
        startup.ready,
        startup.all_ready,
        startup.exited,
        calls.total,
        N * P,
        calls.throttled,
        calls.per_sidecar,
        calls.rate_1s.peak,
        logs.warn,
        logs.error,
        logs.panics,
        logs.top
    );
    eprintln!("{summary}");
    let crashed: Vec<String> = fleet
        .sidecars
        .iter()
        .filter_map(|s| {
            s.exited
                .as_ref()
                .map(|e| format!("s{}: {e}\n{}", s.index, s.proc.log()))
        })
        .take(3)
        .collect();
    assert!(
        crashed.is_empty(),
        "sidecars exited: {crashed:#?}\n{summary}"
    );
    assert_eq!(startup.ready, N, "{summary}");
    assert_eq!(logs.panics, 0, "{summary}");
    assert!(
        calls.total as f64 <= MAX_CALLS_FACTOR * (N * P) as f64,
        "more than {MAX_CALLS_FACTOR} × the minimum: {summary}"
    );
    assert_eq!(
        calls.accepted,
        N * P,
        "one success per profile, none repeated: {summary}"
    );
}
