use super::*;

#[test]
fn refreshes_at_half_the_lifetime_without_jitter() {
    assert_eq!(
        refresh_in(Duration::from_secs(3600), 0.0),
        Duration::from_secs(1800)
    );
    assert_eq!(
        refresh_in(Duration::from_secs(900), 0.0),
        Duration::from_secs(450)
    );
}

#[test]
fn jitter_only_moves_the_refresh_earlier_and_by_a_bounded_amount() {
    let lifetime = Duration::from_secs(3600);
    for i in 0..1000 {
        let j = i as f64 / 1000.0;
        let r = refresh_in(lifetime, j);
        assert!(r <= lifetime / 2, "{r:?} later than half");
        assert!(
            r >= lifetime.mul_f64(0.5 - JITTER_FRACTION),
            "{r:?} too early"
        );
    }
}

#[test]
fn an_almost_expired_session_does_not_cause_a_hot_loop() {
    assert_eq!(refresh_in(Duration::ZERO, 0.5), MIN_REFRESH);
    assert_eq!(refresh_in(Duration::from_millis(10), 0.0), MIN_REFRESH);
}

#[test]
fn backoff_doubles_from_one_second_and_caps_at_sixty() {
    let ceilings: Vec<u64> = (0..10).map(|a| backoff_ceiling(a).as_secs()).collect();
    assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    assert_eq!(backoff_ceiling(u32::MAX), BACKOFF_CAP);
}

#[test]
fn backoff_is_full_jitter_under_the_ceiling() {
    for attempt in 0..20 {
        for i in 0..100 {
            let j = i as f64 / 100.0;
            let d = backoff(attempt, j);
            assert!(d <= backoff_ceiling(attempt));
            assert!(d >= Duration::from_millis(10));
        }
    }
    assert_eq!(backoff(3, 0.5), Duration::from_secs(4));
}

#[test]
fn out_of_range_jitter_is_clamped() {
    assert_eq!(
        refresh_in(Duration::from_secs(100), -3.0),
        Duration::from_secs(50)
    );
    assert_eq!(backoff(0, 7.0), Duration::from_secs(1));
}

// --- planned_expiry (what older helpers print) -------------------------------------------------

const MIN: u64 = 60;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000)
}

/// (real expiry, planned refresh, reported) for a session of
/// `lifetime_s` received at `t0()` and scheduled with `jitter`.
fn plan(lifetime_s: u64, jitter: f64) -> (SystemTime, SystemTime, SystemTime) {
    let lifetime = Duration::from_secs(lifetime_s);
    let real = t0() + lifetime;
    let next = t0() + refresh_in(lifetime, jitter);
    (real, next, planned_expiry(real, t0(), Some(next)))
}

fn secs_after_t0(t: SystemTime) -> u64 {
    t.duration_since(t0()).unwrap().as_secs()
}

/// Each SDK's refresh window: botocore advisory and mandatory, JS v3,
/// Java v2, the Rust SDK, Go v2's credential_process provider (none).
const SDK_WINDOWS: [(&str, u64); 6] = [
    ("botocore advisory", 15 * 60),
    ("botocore mandatory", 10 * 60),
    ("JS v3", 5 * 60),
    ("Java v2", 15),
    ("Rust", 10),
    ("Go v2 process", 0),
];

#[test]
fn planned_expiry_arithmetic_for_the_usual_sessions() {
    // (lifetime, jitter, planned refresh, reported), seconds after receipt.
    let cases = [
        // One hour: refresh at 30 min (27 with the most jitter), report
        // 16 min later; the real expiry minus 5 min (55 min) is not reached.
        (60 * MIN, 0.0, 30 * MIN, 46 * MIN),
        (60 * MIN, 1.0, 27 * MIN, 43 * MIN),
        // Twelve hours: refresh at 6 h (5 h 24 min), report 16 min later.
        (720 * MIN, 0.0, 360 * MIN, 376 * MIN),
        (720 * MIN, 1.0, 324 * MIN, 340 * MIN),
        // Fifteen minutes: refresh at 7.5 min (6.75); 16 min later is past
        // the real expiry, so the cap applies: 15 min - 90 s (a tenth).
        (15 * MIN, 0.0, 450, 810),
        (15 * MIN, 1.0, 405, 810),
        // Thirty minutes: refresh at 15 min, cap 30 - 3 = 27 min.
        (30 * MIN, 0.0, 15 * MIN, 27 * MIN),
        // Two hours: the margin is 5 min, not a tenth (12 min).
        (120 * MIN, 0.0, 60 * MIN, 76 * MIN),
    ];
    for (lifetime, jitter, next_s, reported_s) in cases {
        let (_, next, reported) = plan(lifetime, jitter);
        assert_eq!(secs_after_t0(next), next_s, "{lifetime} s, jitter {jitter}");
        assert_eq!(
            secs_after_t0(reported),
            reported_s,
            "{lifetime} s, jitter {jitter}"
        );
    }
}

#[test]
fn nothing_newer_due_reports_the_real_expiry() {
    for lifetime in [15 * MIN, 60 * MIN, 720 * MIN, 10, 0] {
        let real = t0() + Duration::from_secs(lifetime);
        assert_eq!(planned_expiry(real, t0(), None), real);
    }
}

#[test]
fn planned_expiry_is_after_the_refresh_and_before_the_real_expiry_minus_the_margin() {
    // Every lifetime STS grants (15 min to 12 h, by minutes), jitter 0 to max.
    for lifetime in (15 * MIN..=720 * MIN).step_by(60) {
        for j in 0..=10 {
            let jitter = j as f64 / 10.0;
            let (real, next, reported) = plan(lifetime, jitter);
            let margin = EXPIRY_MARGIN.min(Duration::from_secs(lifetime).mul_f64(0.1));
            let ctx = format!("{lifetime} s, jitter {jitter}");
            assert!(reported > next, "{ctx}: not after the refresh");
            assert!(reported + margin <= real, "{ctx}: inside the margin");
            assert!(
                reported <= next + REPORT_AFTER_REFRESH,
                "{ctx}: later than needed"
            );
            // Go v2 (no window) re-fetches at `reported`: newer keys exist
            // by then (the refresh plus a grace), unless the cap is closer.
            assert!(
                reported >= (next + REFRESH_GRACE).min(real - margin - Duration::from_secs(1)),
                "{ctx}: too soon after the refresh"
            );
            assert_eq!(
                reported
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
                0,
                "{ctx}: not a whole second"
            );
        }
    }
}

/// At the planned refresh (the latest moment a healthy rolecall lets a
/// client hold the old keys) no client is inside its window through the
/// reported expiry unless it would be through the real one: no client
/// re-fetches the same keys in a loop because of the rule.
#[test]
fn no_client_is_pushed_into_its_refresh_window_before_the_refresh() {
    for lifetime in [15 * MIN, 60 * MIN, 720 * MIN] {
        for jitter in [0.0, 1.0] {
            let (real, next, reported) = plan(lifetime, jitter);
            for (sdk, window) in SDK_WINDOWS {
                let window = Duration::from_secs(window);
                let reported_left = reported.duration_since(next).unwrap();
                let real_left = real.duration_since(next).unwrap();
                assert!(
                    reported_left > window || real_left < window,
                    "{sdk}, {lifetime} s session, jitter {jitter}: {reported_left:?} left at the refresh, real {real_left:?}"
                );
            }
        }
    }
    // A 15-minute session is inside botocore's windows by its real expiry
    // already; JS v3, Java, Rust and Go are outside theirs.
    let (real, next, reported) = plan(15 * MIN, 0.0);
    assert!(real.duration_since(next).unwrap() < Duration::from_secs(10 * MIN));
    assert!(reported.duration_since(next).unwrap() > Duration::from_secs(5 * MIN));
}

#[test]
fn sessions_of_42_minutes_or_more_stay_outside_every_window_until_the_refresh() {
    for lifetime in (42 * MIN..=720 * MIN).step_by(60) {
        for j in 0..=10 {
            let (_, next, reported) = plan(lifetime, j as f64 / 10.0);
            assert!(
                reported.duration_since(next).unwrap() > CLIENT_REFRESH_WINDOW,
                "{lifetime} s, jitter {j}/10"
            );
        }
    }
    // Below that the margin wins, and botocore's advisory window (15 min)
    // opens before the refresh for at most the margin plus the grace
    // longer than it would with the real expiry.
    for lifetime in (15 * MIN..42 * MIN).step_by(10) {
        for j in 0..=10 {
            let (real, next, reported) = plan(lifetime, j as f64 / 10.0);
            let margin = EXPIRY_MARGIN.min(Duration::from_secs(lifetime).mul_f64(0.1));
            for (sdk, window) in SDK_WINDOWS {
                let window = Duration::from_secs(window);
                if reported.duration_since(next).unwrap() < window {
                    assert!(
                        real.duration_since(next).unwrap() < window + margin + REFRESH_GRACE,
                        "{sdk}, {lifetime} s, jitter {j}/10"
                    );
                }
            }
        }
    }
}

#[test]
fn planned_expiry_does_not_move_with_the_receipt_time_fraction() {
    // Received at a fraction of a second: still whole seconds, the same
    // rule (the writer rewrites only changed bytes).
    let real = t0() + Duration::from_secs(3600);
    let received = t0() + Duration::from_millis(300);
    let next = received + refresh_in(real.duration_since(received).unwrap(), 0.0);
    let reported = planned_expiry(real, received, Some(next));
    assert_eq!(reported, t0() + Duration::from_secs(46 * MIN));
    assert_eq!(planned_expiry(real, received, Some(next)), reported);
}

#[test]
fn a_refresh_planned_too_late_or_a_degenerate_session_reports_the_real_expiry() {
    let real = t0() + Duration::from_secs(3600);
    // Planned after the cap (55 min): nothing newer before it.
    assert_eq!(
        planned_expiry(real, t0(), Some(t0() + Duration::from_secs(56 * MIN))),
        real
    );
    assert_eq!(planned_expiry(real, t0(), Some(real)), real);
    // A one-second session refreshed after MIN_REFRESH.
    let tiny = t0() + Duration::from_secs(1);
    assert_eq!(
        planned_expiry(
            tiny,
            t0(),
            Some(t0() + refresh_in(Duration::from_secs(1), 0.0))
        ),
        tiny
    );
    // Received after its expiry (a clock step): the real expiry.
    assert_eq!(planned_expiry(t0(), real, Some(real)), t0());
    // Test-sized sessions keep the rule: 20 s, refresh at 10, cap 18.
    let short = t0() + Duration::from_secs(20);
    let next = t0() + refresh_in(Duration::from_secs(20), 0.0);
    assert_eq!(
        planned_expiry(short, t0(), Some(next)),
        t0() + Duration::from_secs(18)
    );
}

// --- sliding_expiry (what the helper and the endpoint report) ----------

/// The lifetimes STS grants worth checking: the shortest, around the one
/// where the margin stops winning, an hour, two, twelve.
const LIFETIMES: [u64; 7] = [
    15 * MIN,
    30 * MIN,
    40 * MIN,
    42 * MIN,
    60 * MIN,
    120 * MIN,
    720 * MIN,
];

fn whole(t: SystemTime) -> bool {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        == 0
}

#[test]
fn the_cap_is_the_real_expiry_minus_the_margin_in_whole_seconds() {
    let at = |s: u64| t0() + Duration::from_secs(s);
    assert_eq!(report_cap(at(3600), t0()), Some(at(55 * MIN)));
    assert_eq!(report_cap(at(15 * MIN), t0()), Some(at(810)));
    assert_eq!(report_cap(at(720 * MIN), t0()), Some(at(715 * MIN)));
    // Received at a fraction of a second: rounded down.
    let real = at(3600) + Duration::from_millis(700);
    assert_eq!(report_cap(real, t0()), Some(at(55 * MIN)));
    // Expired on arrival, or no lifetime at all: no cap.
    assert_eq!(report_cap(t0(), at(10)), None);
    assert_eq!(report_cap(t0(), t0()), None);
}

#[test]
fn sliding_expiry_is_the_slide_from_now_under_the_cap_and_never_in_the_past() {
    for lifetime in LIFETIMES {
        let real = t0() + Duration::from_secs(lifetime);
        let cap = report_cap(real, t0()).unwrap();
        // Every 7 s from receipt to the last second, at odd sub-seconds.
        for s in (0..lifetime).step_by(7) {
            let now = t0() + Duration::from_secs(s) + Duration::from_millis(s % 1000);
            let r = sliding_expiry(real, cap, now);
            let ctx = format!("{lifetime} s session, {s} s in");
            assert!(r > now, "{ctx}: valid keys reported as expired");
            assert!(r <= real, "{ctx}: after the real expiry");
            if now + REPORT_SLIDE <= cap {
                assert_eq!(r, whole_second(now + REPORT_SLIDE), "{ctx}");
            } else if cap > now + Duration::from_secs(1) {
                assert_eq!(r, cap, "{ctx}: the cap dominates");
            }
            if r != real {
                assert!(r <= cap && whole(r), "{ctx}: {r:?}");
            }
        }
        // The cap passed without a refresh: the real expiry.
        assert_eq!(sliding_expiry(real, cap, cap), real);
        assert_eq!(
            sliding_expiry(real, cap, real - Duration::from_secs(1)),
            real
        );
    }
    // A cap at or after the real expiry (not one `report_cap` makes) is
    // never reported past it.
    let real = t0() + Duration::from_secs(60);
    assert_eq!(
        sliding_expiry(real, real + Duration::from_secs(60), t0()),
        real
    );
}

/// One client of an SDK with refresh window `window`, calling once a second
/// from `from` to `to`: when it asks rolecall (the helper or the endpoint),
/// given that rolecall reports `report(now)`. It asks at its first call,
/// then at the first call inside its window of the `Expiration` it holds
/// (Go v2's process provider, window 0, at that `Expiration`).
fn asks(
    window: Duration,
    from: SystemTime,
    to: SystemTime,
    report: impl Fn(SystemTime) -> SystemTime,
) -> Vec<SystemTime> {
    let mut asked = vec![from];
    let mut held = report(from);
    let mut now = from;
    while now < to {
        now += Duration::from_secs(1);
        if now + window >= held {
            asked.push(now);
            held = report(now);
        }
    }
    asked
}

#[test]
fn a_forced_refresh_reaches_every_client_within_the_slide_minus_its_window() {
    for lifetime in LIFETIMES {
        let real = t0() + Duration::from_secs(lifetime);
        let cap = report_cap(real, t0()).unwrap();
        // A forced refresh at F publishes a session of the same lifetime:
        // from F on, rolecall reports for the new one.
        for forced in (60..lifetime / 2).step_by(97) {
            let forced = t0() + Duration::from_secs(forced);
            let new_real = forced + Duration::from_secs(lifetime);
            let new_cap = report_cap(new_real, forced).unwrap();
            let report = |now: SystemTime| {
                if now < forced {
                    sliding_expiry(real, cap, now)
                } else {
                    sliding_expiry(new_real, new_cap, now)
                }
            };
            for (sdk, window) in SDK_WINDOWS {
                let window = Duration::from_secs(window);
                let asked = asks(window, t0(), forced + REPORT_SLIDE * 2, report);
                let first_new = asked.iter().find(|&&t| t >= forced).unwrap();
                let lag = first_new.duration_since(forced).unwrap();
                let bound = REPORT_SLIDE.saturating_sub(window);
                assert!(
                    lag <= bound,
                    "{sdk}, {lifetime} s session forced at {forced:?}: {lag:?} > {bound:?}"
                );
            }
        }
    }
}

#[test]
fn no_client_asks_in_a_loop_while_the_session_is_healthy() {
    // Sessions of 40 minutes or more: until the planned refresh (half the
    // lifetime at most: jitter 0 is the latest, so the worst case; jitter
    // and the first refresh's spread only move it earlier), each client
    // asks at most once per slide minus its window (botocore every 2
    // minutes, JS v3 every 12, Go every 17).
    for lifetime in LIFETIMES.into_iter().filter(|&l| l >= 40 * MIN) {
        let real = t0() + Duration::from_secs(lifetime);
        let cap = report_cap(real, t0()).unwrap();
        let refresh = t0() + refresh_in(Duration::from_secs(lifetime), 0.0);
        for (sdk, window) in SDK_WINDOWS {
            let window = Duration::from_secs(window);
            let asked = asks(window, t0(), refresh, |now| sliding_expiry(real, cap, now));
            for pair in asked.windows(2) {
                let gap = pair[1].duration_since(pair[0]).unwrap();
                assert!(
                    gap + Duration::from_secs(1) >= REPORT_SLIDE - window,
                    "{sdk}, {lifetime} s session: asked again after {gap:?}"
                );
            }
        }
    }
    // Botocore's 2 minutes, JS v3's 12, Go's 17 for an hour's first half.
    let real = t0() + Duration::from_secs(60 * MIN);
    let cap = report_cap(real, t0()).unwrap();
    let count = |window: u64| {
        asks(
            Duration::from_secs(window),
            t0(),
            t0() + Duration::from_secs(30 * MIN),
            |now| sliding_expiry(real, cap, now),
        )
        .len()
    };
    assert_eq!(count(15 * MIN), 16);
    assert_eq!(count(5 * MIN), 3);
    assert_eq!(count(0), 2);
}

#[test]
fn a_client_never_holds_keys_into_their_last_minutes_while_healthy() {
    // Whatever it last asked, a client re-asks by the cap: Go v2 (no
    // window) at the latest, which is the margin before the real expiry.
    for lifetime in LIFETIMES {
        let real = t0() + Duration::from_secs(lifetime);
        let cap = report_cap(real, t0()).unwrap();
        let margin = EXPIRY_MARGIN.min(Duration::from_secs(lifetime).mul_f64(0.1));
        for s in (0..lifetime).step_by(11) {
            let now = t0() + Duration::from_secs(s);
            let r = sliding_expiry(real, cap, now);
            assert!(
                r == real || r + margin <= real,
                "{lifetime} s session, {s} s in: {r:?}"
            );
        }
    }
}

#[test]
fn a_first_refresh_spreads_over_twenty_to_fifty_percent_of_the_lifetime() {
    let hour = Duration::from_secs(3600);
    // No spread: the steady schedule.
    for j in [0.0, 0.5, 1.0] {
        assert_eq!(spread_refresh_in(hour, j, 0.0), refresh_in(hour, j));
    }
    // The whole spread: 20 % at the earliest, never after half the lifetime.
    assert_eq!(spread_refresh_in(hour, 1.0, 1.0), Duration::from_secs(720));
    assert_eq!(spread_refresh_in(hour, 0.0, 1.0), Duration::from_secs(900));
    for i in 0..=100 {
        for k in 0..=10 {
            let d = spread_refresh_in(hour, f64::from(i) / 100.0, f64::from(k) / 10.0);
            assert!(
                (Duration::from_secs(720)..=Duration::from_secs(1800)).contains(&d),
                "{d:?}"
            );
        }
    }
    // Out-of-range draws are clamped; tiny sessions keep MIN_REFRESH.
    assert_eq!(spread_refresh_in(hour, 1.0, 7.0), Duration::from_secs(720));
    assert_eq!(
        spread_refresh_in(Duration::from_millis(100), 1.0, 1.0),
        MIN_REFRESH
    );
}

#[test]
fn throttling_pauses_with_equal_jitter_under_a_doubling_ceiling() {
    let s = Duration::from_secs;
    let ceilings: Vec<_> = (1..=7).map(throttle_ceiling).collect();
    assert_eq!(ceilings, [s(5), s(10), s(20), s(40), s(80), s(120), s(120)]);
    assert_eq!(throttle_ceiling(0), s(5));
    assert_eq!(throttle_ceiling(u32::MAX), THROTTLE_CAP);
    for level in 1..=6 {
        let c = throttle_ceiling(level);
        // Never less than half the ceiling, never more than it.
        assert_eq!(throttle_pause(level, 0.0), c / 2);
        assert_eq!(throttle_pause(level, 1.0), c);
        assert_eq!(throttle_pause(level, -3.0), c / 2);
        assert_eq!(throttle_pause(level, 0.5), c.mul_f64(0.75));
        // The pace after an answer: full jitter under the same ceiling.
        assert_eq!(recovery_pace(level, 0.0), Duration::ZERO);
        assert_eq!(recovery_pace(level, 1.0), c);
    }
}

#[test]
fn probes_of_an_sts_that_is_down_come_within_a_second_then_5_to_60_s_apart() {
    let s = Duration::from_secs;
    assert_eq!(outage_pause(1, 1.0), s(1), "the first: as a blip's retry");
    assert_eq!(outage_pause(1, 0.0), Duration::from_millis(10));
    for (level, ceiling) in [(2, 10), (3, 20), (4, 40), (5, 60), (6, 60), (40, 60)] {
        assert_eq!(outage_pause(level, 1.0), s(ceiling), "level {level}");
        assert_eq!(
            outage_pause(level, 0.0),
            s(ceiling) / 2,
            "level {level}: never under half the ceiling"
        );
    }
    // Never longer than the backoff cap: recovery waits at most a minute.
    assert!((0..100).all(|l| outage_pause(l, 1.0) <= BACKOFF_CAP));
}
