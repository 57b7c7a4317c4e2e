//! How one sidecar paces its STS calls when STS throttles the account
//! (src/pacer.rs): one call at a time and growing pauses while throttled,
//! slow start, nothing of the kind for failures that say nothing about the
//! rate; and how it spreads the first refresh of a session obtained off the
//! schedule. The fleet-wide effect is measured by tests/fleet.rs and
//! `make fleet` (docs/SCALE.md).

mod support;

use std::time::Duration;

use rolecall::Options;
use rolecall::clock::Clock;
use rolecall::config::{Config, Env, Flags};
use support::*;
use tokio::time::Instant;

const ROLES: [&str; 3] = [
    "arn:aws:iam::111122223333:role/a",
    "arn:aws:iam::111122223333:role/b",
    "arn:aws:iam::111122223333:role/c",
];

/// A sidecar with `n` profiles on paused time, against a fake STS on the
/// same runtime and clock, with the health listener for `/metrics`.
struct Paused {
    sts: FakeSts,
    _token: TokenDir,
    out: tempfile::TempDir,
    port: u16,
    start: Instant,
    running: Running,
}

impl Paused {
    fn start(n: usize, spread: fn() -> f64, before: impl FnOnce(&FakeSts)) -> Paused {
        let clock = Clock::tokio();
        let sts = FakeSts::start_local();
        sts.set_clock(clock);
        before(&sts);
        let token = TokenDir::new(&valid_jwt());
        let out = tempfile::tempdir().unwrap();
        let port = free_port();
        let profiles: Vec<String> = ROLES[..n]
            .iter()
            .enumerate()
            .map(|(i, r)| format!("p{i}={r}"))
            .collect();
        let profiles: Vec<&str> = profiles.iter().map(String::as_str).collect();
        let flags = Flags {
            health_addr: Some(format!("127.0.0.1:{port}")),
            ..test_flags(&sts, &token, out.path(), &profiles)
        };
        let config = Config::load(&flags, &Env::new()).unwrap();
        let opts = Options {
            clock,
            spread,
            ..test_options()
        };
        let start = Instant::now();
        let running = Running::start(config, opts);
        Paused {
            sts,
            _token: token,
            out,
            port,
            start,
            running,
        }
    }

    /// When each STS request came, from the start.
    fn times(&self) -> Vec<Duration> {
        self.sts
            .requests()
            .iter()
            .map(|r| r.received - self.start)
            .collect()
    }

    fn gaps(&self) -> Vec<Duration> {
        self.times().windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// `rolecall_sts_throttled_total`, from `/metrics`.
    async fn throttled(&self) -> usize {
        let (_, body) = http_get(self.port, "/metrics", None).await;
        body.lines()
            .find_map(|l| l.strip_prefix("rolecall_sts_throttled_total "))
            .unwrap_or_else(|| panic!("no rolecall_sts_throttled_total in {body}"))
            .parse()
            .unwrap()
    }

    fn published(&self) -> usize {
        std::fs::read_to_string(self.out.path().join("credentials"))
            .map(|t| parse_ini(&t).len())
            .unwrap_or(0)
    }
}

/// Asserts each gap is `want` seconds, within the paused clock's slack.
fn assert_gaps(gaps: &[Duration], want: &[u64]) {
    assert_eq!(gaps.len(), want.len(), "{gaps:?}");
    for (got, want) in gaps.iter().zip(want) {
        let want = Duration::from_secs(*want);
        assert!(
            *got >= want && *got < want + Duration::from_millis(100),
            "gaps {gaps:?}, want {want:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_throttled_sidecar_makes_one_call_at_a_time_with_growing_pauses() {
    let s = Paused::start(3, || 0.0, |sts| sts.set_default(Reply::throttle()));
    // Three profiles, but one call at a time: a throttled call holds every
    // profile for the ceiling with this jitter: 5, 10, 20, 40, 80, then
    // 120 s.
    assert!(s.sts.wait_for_calls(8, Duration::from_secs(500)).await);
    assert_gaps(&s.gaps()[..7], &[5, 10, 20, 40, 80, 120, 120]);
    assert_eq!(s.throttled().await, s.sts.calls());
    // STS lets calls through again. Each answer halves the level (6, 3, 1,
    // 0) and paces the next call under the lowered ceiling: 20 s, then 5 s.
    s.sts.clear_history();
    s.sts.set_default(Reply::ok());
    assert!(wait_until(Duration::from_secs(300), || s.published() == 3).await);
    assert_eq!(s.sts.calls(), 3, "one call a profile");
    assert_gaps(&s.gaps(), &[20, 5]);
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_starting_sidecar_makes_one_call_before_the_others() {
    // The first call hangs until its attempt times out (2 s): slow start
    // keeps the other profiles' calls back until then.
    let s = Paused::start(3, || 0.0, |sts| sts.push(Reply::Hang));
    assert!(s.sts.wait_for_calls(1, Duration::from_secs(1)).await);
    tokio::time::sleep_until(s.start + Duration::from_millis(1900)).await;
    assert_eq!(s.sts.calls(), 1, "only the first call in flight");
    assert!(wait_until(Duration::from_secs(10), || s.published() == 3).await);
    let times = s.times();
    assert!(times[1] >= Duration::from_secs(2), "{times:?}");
    // A failure that is not throttling neither opens nor closes the window:
    // the hung profile retries (1 s backoff), the others go one by one.
    assert_eq!(s.sts.calls(), 4, "{times:?}");
    assert_eq!(s.throttled().await, 0);
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn server_errors_do_not_pause_the_other_profiles() {
    let s = Paused::start(3, || 0.0, |sts| sts.set_default(Reply::server_error()));
    // All three profiles are tried at once (one after the other, each
    // failing fast), then each backs off on its own: 1 s, 2 s, 4 s.
    assert!(s.sts.wait_for_calls(3, Duration::from_millis(100)).await);
    assert!(s.times()[2] < Duration::from_millis(100), "{:?}", s.times());
    assert!(s.sts.wait_for_calls(9, Duration::from_secs(8)).await);
    assert!(
        s.times()[8] < Duration::from_millis(7100),
        "{:?}",
        s.times()
    );
    assert_eq!(s.throttled().await, 0);
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_first_refresh_is_spread_then_the_schedule_is_steady() {
    // The whole spread (this draw): the first refresh at 20 % of the
    // one-hour session, the next ones 45 % apart.
    let s = Paused::start(1, || 1.0, |_| {});
    assert!(s.sts.wait_for_calls(4, Duration::from_secs(3 * 3600)).await);
    let gaps = s.gaps();
    let near = |got: Duration, want: f64| (got.as_secs_f64() - want).abs() < 3.0;
    assert!(near(gaps[0], 0.2 * 3600.0), "{gaps:?}");
    assert!(near(gaps[1], 0.45 * 3600.0), "{gaps:?}");
    assert!(near(gaps[2], 0.45 * 3600.0), "{gaps:?}");
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn recovering_from_an_outage_spreads_the_next_refresh_too() {
    let s = Paused::start(
        1,
        || 1.0,
        |sts| {
            sts.push(Reply::server_error());
            sts.push(Reply::server_error());
        },
    );
    // Two failures (backoff 1 s, 2 s), then a session: its refresh at 20 %.
    assert!(s.sts.wait_for_calls(4, Duration::from_secs(3600)).await);
    let gaps = s.gaps();
    assert!(
        (gaps[2].as_secs_f64() - 0.2 * 3600.0).abs() < 3.0,
        "{gaps:?}"
    );
    s.running.stop().await;
}
