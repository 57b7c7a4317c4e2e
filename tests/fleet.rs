//! The fleet simulator of issue 14 (tests/support/fleet): real `rolecall
//! run` processes against a fake STS with an account-wide rate limit.
//!
//! - `a_hundred_sidecars_against_a_throttling_sts_all_become_ready`: the
//!   reduced fleet of `make test` (N = 100, P = 3, 10 calls/s, burst 20, all
//!   at once). It asserts the absence of failure, never a time, and bounds
//!   the log lines of each sidecar (no ERROR for a throttled call).
//! - `an_sts_outage_costs_each_sidecar_one_probe_stream_and_loses_nothing`:
//!   the reduced form of (d) in `make test` (N = 30, P = 3, a 30 s outage
//!   over the first refreshes): calls per sidecar at most 1/P of one retry
//!   stream per profile, recovery, no credential lost, few log lines.
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
/// minimum N×P. Each profile backing off on its own (before src/pacer.rs)
/// made 1,256 calls for 300 here (4.2×, 956 throttled); with the sidecar's
/// pace, 539 (1.8×). The bound leaves room for a loaded machine and fails
/// well before the old behaviour (issue 14's target is 1.3; docs/SCALE.md
/// says by how much and why it is missed).
const MAX_CALLS_FACTOR: f64 = 2.5;

/// The most log lines one sidecar of the reduced fleet writes during its
/// throttled start (under a minute): `started` and what comes before it
/// (about 5), `refreshed` per profile, the `STS is throttling` WARN and
/// its end, and per profile one `refresh failed` WARN and one `refresh
/// recovered`. Before issue 20 every throttled call was an ERROR line: 4 to
/// 13 lines per sidecar (median 8), 192 ERROR in all.
const ROLLOUT_LOG_LINES_MAX: u64 = 7 + 3 * 3;

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
    let mut lines: Vec<u64> = fleet.log_lines().iter().map(|l| *l as u64).collect();
    lines.sort_unstable();
    let lines = Spread::of(&lines);
    let minutes = end / 60.0;
    let summary = format!(
        "ready {}/{N} after {:?}, exited {}, calls {} (minimum {}), throttled {}, per sidecar {}, \
         peak {}/s, log lines per sidecar {lines} in {minutes:.1} min, logs: {} WARN, {} ERROR, {} panics {:?}",
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
    assert_eq!(logs.error, 0, "a throttled call is no error: {summary}");
    assert!(lines.max <= ROLLOUT_LOG_LINES_MAX, "{summary}");
}

/// The reduced form of scenario (d), in `make test`: [`OUTAGE_N`] sidecars
/// with [`OUTAGE_P`] profiles and sessions of [`OUTAGE_SESSION`], then an
/// outage of [`OUTAGE`] (every STS call answered `500 InternalFailure`)
/// placed over the first refreshes (20-50 % of a session after the start):
/// nearly every profile is due while STS is down. Measures the calls and
/// the log lines each sidecar makes during it, and the recovery after it.
///
/// Before the sidecar's probe (each profile backing off on its own from
/// 1 s), measured on the same setup: 353 calls, 23.3 per sidecar per
/// minute (12 per sidecar, 17 at most), 12 log lines per sidecar (17 at
/// most), every profile healthy 38.6 s after the outage; nothing lost. The
/// target (issue 20): at most 1/P of those calls, a recovery as fast, no
/// credential lost, and a small constant of log lines.
const OUTAGE_N: usize = 30;
const OUTAGE_P: usize = 3;
const OUTAGE_SESSION: Duration = Duration::from_secs(100);
const OUTAGE: Duration = Duration::from_secs(30);
const OUTAGE_CALLS_PER_MINUTE_BEFORE: f64 = 23.3;
/// The probe's pause is at most 40 s at this point of an outage (10, 20,
/// then 40 s ceilings), plus the slow start of the waiting profiles.
const OUTAGE_RECOVERY_LIMIT_S: f64 = 45.0;
/// One `STS is not answering` line, one `refresh failed` for the first
/// failure of each profile that probed, one `refresh still failing` per
/// profile and minute at most.
const OUTAGE_LOG_LINES_MAX: u64 = 1 + 2 * OUTAGE_P as u64;

#[test]
fn an_sts_outage_costs_each_sidecar_one_probe_stream_and_loses_nothing() {
    let (n, p) = (OUTAGE_N, OUTAGE_P);
    let sts = FakeSts::granting(OUTAGE_SESSION);
    let mut fleet = Fleet::new(sts.clone(), p, &results_dir().join("logs/reduced-outage"));
    let startup = fleet.start(n, Start::AllAtOnce, Duration::from_secs(60));
    assert_eq!(startup.ready, n, "{startup:?}");
    // The first refreshes come 20 s to 50 s after each session: the
    // outage covers them.
    std::thread::sleep(Duration::from_secs(18).saturating_sub(fleet.t0.elapsed()));
    let lines_before = fleet.log_lines();
    let outage_from = fleet.t0.elapsed().as_secs_f64();
    sts.set_default(Reply::server_error());
    let mut min_valid = usize::MAX;
    let end = Instant::now() + OUTAGE;
    while Instant::now() < end {
        fleet.poll();
        min_valid = min_valid.min(fleet.health().valid);
        std::thread::sleep(Duration::from_millis(500));
    }
    let outage_to = fleet.t0.elapsed().as_secs_f64();
    let lines_during = fleet.log_lines();
    sts.set_default(Reply::ok_for(OUTAGE_SESSION));
    // Recovery: no profile failing, within a generous bound.
    let mut recovered = None;
    let limit = Instant::now() + Duration::from_secs(75);
    while Instant::now() < limit {
        fleet.poll();
        let h = fleet.health();
        min_valid = min_valid.min(h.valid);
        if h.failing == 0 {
            recovered = Some(fleet.t0.elapsed().as_secs_f64() - outage_to);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = sts.call_log();
    let during = Calls::of(&log, fleet.t0, outage_from, outage_to, n);
    let per_minute = during.total as f64 / n as f64 * 60.0 / (outage_to - outage_from);
    let mut lines: Vec<u64> = lines_during
        .iter()
        .zip(&lines_before)
        .map(|(a, b)| (a - b) as u64)
        .collect();
    lines.sort_unstable();
    let lines = Spread::of(&lines);
    let logs = fleet.logs();
    let summary = format!(
        "{n} × {p}, {:.0} s outage from {outage_from:.1} s: {} calls ({per_minute:.1} per sidecar per minute; \
         per sidecar {}); log lines per sidecar during it {lines}; recovered {} after it; \
         fewest valid profiles {min_valid} of {}; {} exited, {} panics; top log lines {:?}",
        outage_to - outage_from,
        during.total,
        during.per_sidecar,
        recovered.map_or("NOT".to_owned(), |r| format!("{r:.1} s")),
        n * p,
        fleet.exited(),
        logs.panics,
        logs.top,
    );
    eprintln!("{summary}");
    std::fs::write(
        results_dir().join("reduced-outage.txt"),
        summary.clone() + "\n",
    )
    .unwrap();
    assert_eq!(fleet.exited(), 0, "{summary}");
    assert_eq!(logs.panics, 0, "{summary}");
    assert_eq!(min_valid, n * p, "a credential was lost: {summary}");
    assert!(
        recovered.is_some_and(|r| r <= OUTAGE_RECOVERY_LIMIT_S),
        "{summary}"
    );
    assert!(
        per_minute <= OUTAGE_CALLS_PER_MINUTE_BEFORE / p as f64,
        "more than 1/{p} of the calls of one retry stream per profile: {summary}"
    );
    assert!(lines.max <= OUTAGE_LOG_LINES_MAX, "{summary}");
}

// ------------------------------------------------------------ the full scenarios (make fleet)

/// The sizes of `make fleet`, from the environment:
///
/// | variable | default | |
/// |---|---|---|
/// | `ROLECALL_FLEET_N` | 1000 | sidecars |
/// | `ROLECALL_FLEET_P` | 3 | profiles per sidecar |
/// | `ROLECALL_FLEET_RATE` | 50 | account limit, calls/s |
/// | `ROLECALL_FLEET_BURST` | 100 | bucket size |
/// | `ROLECALL_FLEET_SURGE` | N/4 | maxSurge of (b) |
/// | `ROLECALL_FLEET_SESSION_SECS` | 300 | session length of (d) |
/// | `ROLECALL_FLEET_STEADY_SECS` | 2 × session | (d)'s window after start-up, the outage in its middle |
/// | `ROLECALL_FLEET_OUTAGE_SECS` | 60 | (d)'s outage |
/// | `ROLECALL_FLEET_SCENARIOS` | `a,b,c,d` | which to run |
#[derive(Clone, Debug)]
struct Knobs {
    n: usize,
    p: usize,
    rate: f64,
    burst: u32,
    surge: usize,
    session_s: u64,
    steady_s: u64,
    outage_s: u64,
    scenarios: Vec<String>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        _ => default,
    }
}

impl Knobs {
    fn from_env() -> Knobs {
        let n = env_or("ROLECALL_FLEET_N", 1000usize);
        let session_s = env_or("ROLECALL_FLEET_SESSION_SECS", 300u64);
        Knobs {
            n,
            p: env_or("ROLECALL_FLEET_P", 3),
            rate: env_or("ROLECALL_FLEET_RATE", 50.0),
            burst: env_or("ROLECALL_FLEET_BURST", 100),
            surge: env_or("ROLECALL_FLEET_SURGE", n.div_ceil(4)),
            session_s,
            // Long enough that, on each side of the outage, some cycles
            // follow the first refreshes (which come at 20-50 % of a
            // session after a start or a recovery).
            steady_s: env_or("ROLECALL_FLEET_STEADY_SECS", 4 * session_s),
            outage_s: env_or("ROLECALL_FLEET_OUTAGE_SECS", 60),
            scenarios: env_or("ROLECALL_FLEET_SCENARIOS", "a,b,c,d".to_owned())
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// The command that reproduces scenario `which` with these sizes.
    fn command(&self, which: &str) -> String {
        let mut c = format!(
            "ROLECALL_FLEET_SCENARIOS={which} ROLECALL_FLEET_N={} ROLECALL_FLEET_P={} \
             ROLECALL_FLEET_RATE={} ROLECALL_FLEET_BURST={}",
            self.n, self.p, self.rate, self.burst
        );
        match which {
            "b" => c.push_str(&format!(" ROLECALL_FLEET_SURGE={}", self.surge)),
            "d" => c.push_str(&format!(
                " ROLECALL_FLEET_SESSION_SECS={} ROLECALL_FLEET_STEADY_SECS={} ROLECALL_FLEET_OUTAGE_SECS={}",
                self.session_s, self.steady_s, self.outage_s
            )),
            _ => {}
        }
        c + " make fleet"
    }
}

fn rate_row(r: &Rate) -> String {
    if r.mean == 0.0 {
        return "n/a (window shorter than a bin, or no calls)".to_owned();
    }
    format!(
        "mean {:.1}/s, peak {:.0}/s, peak-to-mean {:.2}",
        r.mean, r.peak, r.peak_to_mean
    )
}

/// Starts the fleet and adds the start-up figures to `section`; the fleet
/// stays up for the caller.
fn start_up(
    k: &Knobs,
    rate: f64,
    burst: u32,
    start: Start,
    sts: FakeSts,
    name: &str,
    section: &mut Section,
) -> (Fleet, Startup) {
    let min_calls = k.n * k.p;
    let ideal = (min_calls as f64 - f64::from(burst)).max(0.0) / rate;
    sts.set_rate_limit(rate, burst);
    let mut fleet = Fleet::new(
        sts.clone(),
        k.p,
        &results_dir().join(format!("logs/{name}")),
    );
    let limit = Duration::from_secs_f64((ideal * 20.0).max(600.0));
    let startup = fleet.start(k.n, start, limit);
    let elapsed = fleet.t0.elapsed().as_secs_f64();
    let res = fleet.resources();
    let calls = Calls::of(&sts.call_log(), fleet.t0, 0.0, elapsed.ceil(), k.n);
    let logs = fleet.logs();
    section.row(
        "sidecars × profiles",
        format!("{} × {} ({})", k.n, k.p, start),
    );
    section.row("limit", format!("{rate}/s, burst {burst}"));
    section.row(
        "all ready after",
        match startup.all_ready {
            Some(t) => format!(
                "{:.1} s (ideal (N×P − burst)/rate = {:.1} s; ratio {:.2})",
                t.as_secs_f64(),
                ideal,
                t.as_secs_f64() / ideal.max(f64::EPSILON)
            ),
            None => format!(
                "NOT ALL: {} of {} ready after {:.0} s",
                startup.ready, k.n, elapsed
            ),
        },
    );
    let mut each = startup
        .ready_after
        .iter()
        .map(|s| (s * 1000.0) as u64)
        .collect::<Vec<_>>();
    each.sort_unstable();
    section.row(
        "each sidecar ready after its start, ms (min/median/p90/p99/max)",
        Spread::of(&each).to_string(),
    );
    section.row(
        "STS calls",
        format!(
            "{} for a minimum of {min_calls} ({:.2}×); accepted {}, throttled {}, other {}",
            calls.total,
            calls.total as f64 / min_calls as f64,
            calls.accepted,
            calls.throttled,
            calls.other
        ),
    );
    section.row(
        "calls per sidecar (min/median/p90/p99/max)",
        calls.per_sidecar.to_string(),
    );
    section.row(
        "peak offered load (attempts in a 1-s bin)",
        format!(
            "{:.0}/s against a limit of {rate}/s ({:.1}×)",
            calls.rate_1s.peak,
            calls.rate_1s.peak / rate
        ),
    );
    section.row("offered load, 10-s bins", rate_row(&calls.rate_10s));
    section.row(
        "gave up or crashed",
        format!("{} exited, {} panics", startup.exited, logs.panics),
    );
    section.row(
        "alive at the end of start-up",
        format!("{} of {}", res.alive, k.n),
    );
    section.row(
        "fleet CPU during start-up",
        format!(
            "{:.1} s user+system ({:.1} ms per sidecar); fake STS {:.1} s",
            res.cpu_s,
            res.cpu_s * 1000.0 / k.n as f64,
            res.sts_cpu_s
        ),
    );
    section.row(
        "fleet memory when ready",
        format!(
            "Pss {:.0} MiB, RSS {:.0} MiB ({:.2} / {:.2} MiB per sidecar)",
            res.pss_kib as f64 / 1024.0,
            res.rss_kib as f64 / 1024.0,
            res.pss_kib as f64 / 1024.0 / res.alive.max(1) as f64,
            res.rss_kib as f64 / 1024.0 / res.alive.max(1) as f64
        ),
    );
    section.row(
        "log lines",
        format!(
            "{} WARN, {} ERROR; most frequent: {}",
            logs.warn,
            logs.error,
            logs.top
                .iter()
                .map(|(m, c)| format!("{c} × `{m}`"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    (fleet, startup)
}

/// Polls the fleet every second for `secs`: the fewest valid profiles
/// seen, and when (seconds after t0) no profile's last refresh was failing
/// any more, if that happened after `ok_after`.
fn watch(fleet: &mut Fleet, secs: f64, ok_after: Option<f64>) -> (usize, Option<f64>) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut min_valid = usize::MAX;
    let mut recovered = None;
    while Instant::now() < end {
        fleet.poll();
        let h = fleet.health();
        min_valid = min_valid.min(h.valid);
        let now = fleet.t0.elapsed().as_secs_f64();
        if recovered.is_none() && h.failing == 0 && ok_after.is_some_and(|t| now >= t) {
            recovered = Some(now);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    (min_valid, recovered)
}

fn steady_state(k: &Knobs, section: &mut Section) -> bool {
    let sts = FakeSts::granting(Duration::from_secs(k.session_s));
    let (mut fleet, startup) = start_up(
        k,
        k.rate,
        k.burst,
        Start::AllAtOnce,
        sts.clone(),
        "d",
        section,
    );
    if startup.ready < k.n {
        return false;
    }
    let all = k.n * k.p;
    let ready = fleet.t0.elapsed().as_secs_f64();
    let half = k.steady_s as f64 / 2.0;
    section.row(
        "session length",
        format!(
            "{} s (refresh at about half: {:.0} s)",
            k.session_s,
            k.session_s as f64 / 2.0
        ),
    );
    let (min_before, _) = watch(&mut fleet, half, None);
    let outage_from = fleet.t0.elapsed().as_secs_f64();
    sts.set_default(Reply::server_error());
    let (min_during, _) = watch(&mut fleet, k.outage_s as f64, None);
    let outage_to = fleet.t0.elapsed().as_secs_f64();
    sts.set_default(Reply::ok_for(Duration::from_secs(k.session_s)));
    let (min_after, recovered) = watch(&mut fleet, half, Some(outage_to));
    let end = fleet.t0.elapsed().as_secs_f64();
    let log = sts.call_log();
    let steady = Calls::of(&log, fleet.t0, ready.ceil(), outage_from.floor(), k.n);
    let during = Calls::of(&log, fleet.t0, outage_from, outage_to, k.n);
    let after = Calls::of(&log, fleet.t0, outage_to, end, k.n);
    let res = fleet.resources();
    let model = all as f64 / (k.session_s as f64 * (0.5 - 0.05 / 2.0));
    section.row(
        "steady state before the outage",
        format!(
            "{:.0} s to {:.0} s after the first start; {} calls, {} throttled",
            ready.ceil(),
            outage_from.floor(),
            steady.total,
            steady.throttled
        ),
    );
    section.row(
        "steady calls/s, 1-s bins",
        format!("{} (model N×P/(0.475 × session) = {model:.1}/s; Poisson noise dominates 1-s bins at this rate)", rate_row(&steady.rate_1s)),
    );
    section.row("steady calls/s, 10-s bins", rate_row(&steady.rate_10s));
    // Once every profile has made its first refresh (spread over 20-50 % of
    // a session after it became ready): the regime the fleet keeps.
    let settled_from = ready + k.session_s as f64 / 2.0;
    if settled_from + 2.0 * k.session_s as f64 * 0.475 <= outage_from {
        let settled = Calls::of(
            &log,
            fleet.t0,
            settled_from.ceil(),
            outage_from.floor(),
            k.n,
        );
        section.row(
            "steady calls/s after the first refreshes, 1-s / 10-s bins",
            format!(
                "from {:.0} s: {} / {}",
                settled_from.ceil(),
                rate_row(&settled.rate_1s),
                rate_row(&settled.rate_10s)
            ),
        );
    }
    section.row(
        "STS outage (500 InternalFailure)",
        format!(
            "{:.0} s, from {outage_from:.0} s: {} calls during it ({:.1}/s)",
            outage_to - outage_from,
            during.total,
            during.total as f64 / (outage_to - outage_from)
        ),
    );
    section.row(
        "after the outage",
        format!(
            "{} calls in {:.0} s, {} throttled; peak {:.0}/s (1-s bins), {:.1}/s (10-s bins)",
            after.total,
            end - outage_to,
            after.throttled,
            after.rate_1s.peak,
            after.rate_10s.peak
        ),
    );
    section.row(
        "time to full recovery (no profile failing)",
        match recovered {
            Some(t) => format!("{:.0} s after the outage ended", t - outage_to),
            None => "NOT within the window".to_owned(),
        },
    );
    // After the recovered profiles' first refreshes: did the outage leave
    // the fleet synchronised?
    if let Some(t) = recovered {
        let again_from = t + k.session_s as f64 / 2.0;
        if again_from + 2.0 * k.session_s as f64 * 0.475 <= end {
            let again = Calls::of(&log, fleet.t0, again_from.ceil(), end.floor(), k.n);
            section.row(
                "steady calls/s again (after the recovered profiles' first refreshes), 1-s / 10-s bins",
                format!(
                    "from {:.0} s: {} / {}, {} throttled",
                    again_from.ceil(),
                    rate_row(&again.rate_1s),
                    rate_row(&again.rate_10s),
                    again.throttled
                ),
            );
        }
    }
    let lowest = min_before.min(min_during).min(min_after);
    section.row(
        "credentials lost",
        format!(
            "{} (fewest valid profiles seen: {lowest} of {all})",
            all.saturating_sub(lowest)
        ),
    );
    section.row(
        "alive at the end",
        format!(
            "{} of {}; fleet CPU in all {:.1} s, fake STS {:.1} s",
            res.alive, k.n, res.cpu_s, res.sts_cpu_s
        ),
    );
    eprintln!("{}", section.markdown());
    lowest == all && res.alive == k.n && recovered.is_some()
}

#[test]
#[ignore = "the full fleet: make fleet (minutes, about 6 GiB for 1,000 sidecars)"]
fn fleet_scenarios() {
    let k = Knobs::from_env();
    let bin = fleet_bin();
    let (nproc, mem_mib, size) = machine(&bin);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let machine = format!(
        "{nproc} CPUs, {:.1} GiB, binary {} ({size} bytes), load average at the start {}",
        mem_mib as f64 / 1024.0,
        bin.display(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("fleet: {machine}; {k:?}");
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    for which in &k.scenarios {
        let cmd = k.command(which);
        let ok = match which.as_str() {
            "a" | "b" | "c" => {
                let (title, rate, burst, start) = match which.as_str() {
                    "a" => ("(a) all at once", k.rate, k.burst, Start::AllAtOnce),
                    "b" => (
                        "(b) rolling update",
                        k.rate,
                        k.burst,
                        Start::Rolling { max_surge: k.surge },
                    ),
                    _ => (
                        "(c) all at once, limit 10× lower",
                        k.rate / 10.0,
                        (k.burst / 10).max(1),
                        Start::AllAtOnce,
                    ),
                };
                let mut s = Section::new(title, cmd);
                let (fleet, startup) =
                    start_up(&k, rate, burst, start, FakeSts::start(), which, &mut s);
                eprintln!("{}", s.markdown());
                drop(fleet);
                sections.push(s);
                startup.ready == k.n && startup.exited == 0
            }
            "d" => {
                let mut s = Section::new("(d) steady state with a 1-minute STS outage", cmd);
                let ok = steady_state(&k, &mut s);
                sections.push(s);
                ok
            }
            other => panic!("ROLECALL_FLEET_SCENARIOS: unknown scenario {other:?} (a, b, c, d)"),
        };
        if !ok {
            failed.push(which.clone());
        }
        let section = sections.last().expect("a section per scenario");
        for path in write_results(&machine, which, section) {
            eprintln!("fleet: wrote {}", path.display());
        }
    }
    assert!(
        failed.is_empty(),
        "scenarios with a failure (see the tables): {failed:?}"
    );
}
