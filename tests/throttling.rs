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
        Paused::start_with(n, || 1.0, spread, before)
    }

    /// [`Paused::start`] with the pacer's and the backoff's `jitter`.
    fn start_with(
        n: usize,
        jitter: fn() -> f64,
        spread: fn() -> f64,
        before: impl FnOnce(&FakeSts),
    ) -> Paused {
        let clock = Clock::tokio();
        let sts = FakeSts::start_local();
        sts.set_clock(clock);
        before(&sts);
        let token = TokenDir::new(&valid_jwt());
        let out = tempfile::tempdir().unwrap();
        let port = free_port();
        let profiles: Vec<String> = (0..n)
            .map(|i| match ROLES.get(i) {
                Some(r) => format!("p{i}={r}"),
                None => format!("p{i}=arn:aws:iam::111122223333:role/r{i}"),
            })
            .collect();
        let profiles: Vec<&str> = profiles.iter().map(String::as_str).collect();
        let flags = Flags {
            health_addr: Some(format!("127.0.0.1:{port}")),
            ..test_flags(&sts, &token, out.path(), &profiles)
        };
        let config = Config::load(&flags, &Env::new()).unwrap();
        let opts = Options {
            clock,
            jitter,
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
    // A timeout closes the gate of a failing STS: the next call, a probe,
    // comes a second later (this jitter); its answer opens the gate, and
    // the calls go on in slow start, as at the start.
    assert_eq!(s.sts.calls(), 4, "{times:?}");
    assert_eq!(s.throttled().await, 0);
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_sends_one_probe_at_a_time_to_an_sts_that_is_down() {
    let s = Paused::start(3, || 0.0, |sts| sts.set_default(Reply::server_error()));
    // Each profile's first call (the start-up pass waits for one attempt
    // of each), then one stream of calls for the three: the first probe a
    // second after the first failure (this jitter draws each ceiling), then
    // 10, 20, 40 and 60 s apart. Each profile on its own made 8 calls in
    // these two minutes (1, 2, 4... 60 s), 24 for the three.
    assert!(s.sts.wait_for_calls(8, Duration::from_secs(200)).await);
    tokio::time::sleep_until(s.start + Duration::from_secs(190)).await;
    assert_eq!(s.sts.calls(), 8, "{:?}", s.times());
    assert_gaps(&s.gaps(), &[0, 0, 1, 10, 20, 40, 60]);
    // Every profile's call waits for the probe; each probe is the call of
    // whichever profile came first, so all three took part.
    let roles: std::collections::BTreeSet<String> = s
        .sts
        .requests()
        .iter()
        .filter_map(|r| r.param("RoleArn").map(str::to_owned))
        .collect();
    assert_eq!(roles.len(), 3, "{roles:?}");
    assert_eq!(s.throttled().await, 0);
    // STS answers again: the next probe (60 s after the last) gets a
    // session, and the two profiles that waited follow at once (slow start:
    // one, then two): three calls for three profiles.
    let back = tokio::time::Instant::now();
    s.sts.clear_history();
    s.sts.set_default(Reply::ok());
    assert!(wait_until(Duration::from_secs(120), || s.published() == 3).await);
    assert!(
        back.elapsed() <= Duration::from_secs(61),
        "{:?}",
        back.elapsed()
    );
    assert_eq!(s.sts.calls(), 3, "{:?}", s.times());
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_start_during_throttling_is_ready_within_the_documented_startup_probe() {
    // Issue 20: ten profiles started while STS throttled for 60 s. With a
    // middle draw of the jitter (0.5), the throttled calls come at 0, 3.75,
    // 11.25, 26.25 and 56.25 s (levels 1-5), the next one 60 s later; STS
    // answered again at 60 s, so the sidecar learns it at 116 s, and the
    // recovery pace adds 5 + 2.5 s: ready at about 124 s. (The five
    // profiles throttled in the start-up pass used to wait their pause
    // again after it: ready at 184 s.)
    let budget = readme_startup_budget();
    let s = Paused::start_with(10, || 0.5, || 0.0, |sts| sts.set_default(Reply::throttle()));
    tokio::time::sleep_until(s.start + Duration::from_secs(60)).await;
    s.sts.set_default(Reply::ok());
    assert!(wait_until(Duration::from_secs(600), || s.published() == 10).await);
    let ready = s.start.elapsed();
    assert!(
        ready <= budget,
        "ready {ready:?} after the start, past the README's startupProbe budget of {budget:?}"
    );
    assert!(ready <= Duration::from_secs(130), "{ready:?}");
    s.running.stop().await;
}

/// `failureThreshold × periodSeconds` of the `startupProbe` in the README's
/// minimal pod: how long the app's start may wait for rolecall.
fn readme_startup_budget() -> Duration {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let probe = &readme[readme
        .find("startupProbe:")
        .expect("a startupProbe in README.md")..];
    let value = |key: &str| -> u64 {
        let at = probe
            .find(key)
            .unwrap_or_else(|| panic!("{key} in the startupProbe"));
        probe[at + key.len()..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number after {key}"))
    };
    Duration::from_secs(value("failureThreshold:") * value("periodSeconds:"))
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

/// At most this many refresher lines per sidecar and minute of an incident:
/// one sidecar-wide line when it starts and one when it ends, and per
/// profile one `refresh failed` and one `refresh still failing`
/// (docs/OPERATIONS.md, Log volume).
const LINES_PER_MINUTE: usize = 2 + 2 * 3;

#[tokio::test(start_paused = true)]
async fn a_minute_of_sts_outage_logs_a_few_lines_not_one_per_retry() {
    let log = Logs::default();
    let _guard = log.install();
    let s = Paused::start(3, || 0.0, |sts| sts.set_default(Reply::server_error()));
    tokio::time::sleep_until(s.start + Duration::from_secs(60)).await;
    let lines = log.lines_with("rolecall::refresher");
    // Before issue 20: one ERROR per failed call, 8 a profile (24).
    assert!(lines.len() <= LINES_PER_MINUTE, "{lines:#?}");
    let failed = lines
        .iter()
        .filter(|l| l.contains("refresh failed"))
        .count();
    assert_eq!(failed, 3, "each profile's first failure: {lines:#?}");
    // No credentials yet: the profiles' failures are errors; the sidecar's
    // line says what it does about it.
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" WARN ") && l.contains("STS is not answering")),
        "{lines:#?}"
    );
    s.sts.set_default(Reply::ok());
    assert!(wait_until(Duration::from_secs(120), || s.published() == 3).await);
    let lines = log.lines_with("rolecall::refresher");
    assert!(
        lines.iter().any(|l| l.contains("STS answers again")),
        "{lines:#?}"
    );
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_minute_of_throttling_logs_warnings_only_and_a_few() {
    let log = Logs::default();
    let _guard = log.install();
    let s = Paused::start(3, || 0.0, |sts| sts.set_default(Reply::throttle()));
    tokio::time::sleep_until(s.start + Duration::from_secs(60)).await;
    let lines = log.lines_with("rolecall::refresher");
    assert!(lines.len() <= LINES_PER_MINUTE, "{lines:#?}");
    // Before issue 20 each throttled call was an ERROR.
    assert!(!lines.iter().any(|l| l.contains(" ERROR ")), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains(" WARN ")
            && l.contains("refresh failed")
            && l.contains("code=Throttling")),
        "{lines:#?}"
    );
    s.running.stop().await;
}
