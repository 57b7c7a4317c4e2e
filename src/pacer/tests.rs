use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// The STS endpoint of the calls.
fn ep() -> Arc<str> {
    Arc::from("https://sts.eu-west-1.amazonaws.com")
}

fn ceiling() -> f64 {
    1.0
}

fn floor() -> f64 {
    0.0
}

/// Waits for a permit and says when it came, relative to `t0`.
async fn granted_after(pacer: &Pacer, t0: Instant) -> Duration {
    let p = pacer.acquire(&ep()).await;
    let at = t0.elapsed();
    drop(p);
    at
}

#[tokio::test(start_paused = true)]
async fn slow_start_one_call_then_twice_as_many_per_answer() {
    let pacer = Arc::new(Pacer::default());
    let first = pacer.acquire(&ep()).await;
    // A second call waits for the first.
    let p2 = pacer.clone();
    let second = tokio::spawn(async move {
        let p = p2.acquire(&ep()).await;
        p.finish(Paced::Answered, ceiling);
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!second.is_finished(), "two calls in flight at the start");
    assert_eq!(first.finish(Paced::Answered, ceiling).0, Change::None);
    second.await.unwrap();
    // Two answers: four in flight, then no more than MAX_IN_FLIGHT.
    let four: Vec<_> = futures_lite_acquire(&pacer, 4).await;
    assert_eq!(four.len(), 4);
    for p in four {
        p.finish(Paced::Answered, ceiling);
    }
    for _ in 0..8 {
        let p = pacer.acquire(&ep()).await;
        p.finish(Paced::Answered, ceiling);
    }
    assert_eq!(pacer.lock().window, MAX_IN_FLIGHT);
}

/// `n` permits taken at once, each within a millisecond (paused time).
async fn futures_lite_acquire(pacer: &Pacer, n: usize) -> Vec<Permit<'_>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let p = tokio::time::timeout(Duration::from_millis(1), pacer.acquire(&ep()))
            .await
            .expect("a permit within the window");
        out.push(p);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_throttled_call_holds_every_call_for_an_equal_jitter_pause_that_doubles() {
    let pacer = Pacer::default();
    let t0 = Instant::now();
    let change = pacer
        .acquire(&ep())
        .await
        .finish(Paced::Throttled, ceiling)
        .0;
    assert_eq!(
        change,
        Change::Throttled {
            level: 1,
            pause: Duration::from_secs(5)
        }
    );
    assert_eq!(pacer.held_for(&ep()), Duration::from_secs(5));
    assert_eq!(granted_after(&pacer, t0).await, Duration::from_secs(5));
    // The least jitter still waits half the ceiling: 10 s at level 2 -> 5 s.
    let t1 = Instant::now();
    pacer.acquire(&ep()).await.finish(Paced::Throttled, floor);
    assert_eq!(granted_after(&pacer, t1).await, Duration::from_secs(5));
    // Levels 3 to 6: ceilings of 20, 40, 80, then 120 s (the cap), where
    // the level stays.
    for (before, level, want) in [(2, 3, 20), (3, 4, 40), (4, 5, 80), (5, 6, 120), (6, 6, 120)] {
        assert_eq!(pacer.level(), before);
        let permit = pacer.acquire(&ep()).await;
        let t = Instant::now();
        let c = permit.finish(Paced::Throttled, ceiling).0;
        assert_eq!(
            c,
            Change::Throttled {
                level,
                pause: Duration::from_secs(want)
            }
        );
        assert_eq!(granted_after(&pacer, t).await, Duration::from_secs(want));
    }
}

#[tokio::test(start_paused = true)]
async fn while_throttled_one_call_at_a_time() {
    let pacer = Arc::new(Pacer::default());
    // Past slow start: eight calls may be in flight.
    for _ in 0..3 {
        pacer.acquire(&ep()).await.finish(Paced::Answered, ceiling);
    }
    let permits = futures_lite_acquire(&pacer, 8).await;
    let mut permits = permits.into_iter();
    permits.next().unwrap().finish(Paced::Throttled, ceiling);
    for p in permits {
        p.finish(Paced::Failed, ceiling);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let one = pacer.acquire(&ep()).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(600), pacer.acquire(&ep()))
            .await
            .is_err(),
        "a second call in flight while throttled"
    );
    drop(one);
    // A dropped permit frees its slot and leaves the level alone.
    assert_eq!(pacer.level(), 1);
    let _again = tokio::time::timeout(Duration::from_millis(1), pacer.acquire(&ep()))
        .await
        .expect("the slot was freed");
}

#[tokio::test(start_paused = true)]
async fn each_answer_halves_the_level_and_paces_the_next_call_until_recovered() {
    let pacer = Pacer::default();
    for _ in 0..5 {
        pacer.acquire(&ep()).await.finish(Paced::Throttled, floor);
    }
    assert_eq!(pacer.level(), 5);
    // An answer at level 5 -> 2: the next call waits up to 10 s.
    let permit = pacer.acquire(&ep()).await;
    let t = Instant::now();
    assert_eq!(permit.finish(Paced::Answered, ceiling).0, Change::None);
    assert_eq!(pacer.level(), 2);
    assert_eq!(pacer.held_for(&ep()), Duration::from_secs(10));
    assert_eq!(granted_after(&pacer, t).await, Duration::from_secs(10));
    let permit = pacer.acquire(&ep()).await;
    let t = Instant::now();
    permit.finish(Paced::Answered, ceiling);
    assert_eq!(
        pacer.held_for(&ep()),
        Duration::from_secs(5),
        "level 1: up to 5 s"
    );
    assert_eq!(granted_after(&pacer, t).await, Duration::from_secs(5));
    // An answer at level 1: the sidecar has recovered.
    assert_eq!(
        pacer
            .acquire(&ep())
            .await
            .finish(Paced::Answered, ceiling)
            .0,
        Change::Recovered
    );
    assert_eq!(pacer.level(), 0);
    assert_eq!(pacer.held_for(&ep()), Duration::ZERO);
    let two = futures_lite_acquire(&pacer, 2).await;
    assert_eq!(two.len(), 2, "slow start resumes at two");
}

#[tokio::test(start_paused = true)]
async fn failures_that_say_nothing_about_the_rate_leave_the_pace_alone() {
    let pacer = Pacer::default();
    pacer.acquire(&ep()).await.finish(Paced::Throttled, ceiling);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        pacer.acquire(&ep()).await.finish(Paced::Failed, ceiling).0,
        Change::None
    );
    assert_eq!(pacer.level(), 1);
    assert_eq!(pacer.held_for(&ep()), Duration::ZERO);
    // Not throttled: a failure neither opens nor closes the window.
    let fresh = Pacer::default();
    fresh.acquire(&ep()).await.finish(Paced::Failed, ceiling);
    assert_eq!(fresh.lock().window, 1);
}

#[tokio::test(start_paused = true)]
async fn a_minute_without_throttling_starts_again_from_level_zero() {
    let pacer = Pacer::default();
    pacer.acquire(&ep()).await.finish(Paced::Throttled, ceiling);
    pacer.acquire(&ep()).await.finish(Paced::Throttled, ceiling);
    assert_eq!(pacer.level(), 2);
    // The next call, half an hour later (a refresh): not held, and slow
    // start from two.
    tokio::time::sleep(Duration::from_secs(1800)).await;
    let two = futures_lite_acquire(&pacer, 2).await;
    assert_eq!(pacer.level(), 0);
    drop(two);
    // Within the minute the level stands.
    pacer.acquire(&ep()).await.finish(Paced::Throttled, ceiling);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let one = pacer.acquire(&ep()).await;
    assert_eq!(pacer.level(), 1);
    drop(one);
}

#[tokio::test(start_paused = true)]
async fn an_sts_that_is_down_gets_one_probe_at_a_time_with_growing_pauses() {
    let pacer = Arc::new(Pacer::default());
    let t0 = Instant::now();
    // A 5xx: the gate closes; the first probe within a second (the
    // ceiling draw: 1 s).
    let (change, gate) = pacer.acquire(&ep()).await.finish(Paced::Down, ceiling);
    assert_eq!(change, Change::None, "the pace of the account is untouched");
    assert_eq!(
        gate,
        Gate::Down {
            level: 1,
            pause: Duration::from_secs(1)
        }
    );
    assert_eq!(pacer.held_for(&ep()), Duration::from_secs(1));
    // Another endpoint (another region) is not held.
    let other: Arc<str> = Arc::from("https://sts.us-east-1.amazonaws.com");
    assert_eq!(pacer.held_for(&other), Duration::ZERO);
    // Three profiles wait for the probe; one gets it, the others wait for
    // its outcome.
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let p = pacer.clone();
            tokio::spawn(async move {
                let permit = p.acquire(&ep()).await;
                let at = Instant::now();
                // Each probe finds STS down, until 40 s.
                let how = if at < t0 + Duration::from_secs(40) {
                    Paced::Down
                } else {
                    Paced::Answered
                };
                (at, permit.finish(how, ceiling).1)
            })
        })
        .collect();
    let mut seen = Vec::new();
    for w in waiting {
        seen.push(w.await.unwrap());
    }
    seen.sort_by_key(|s| s.0);
    let at: Vec<u64> = seen.iter().map(|s| (s.0 - t0).as_secs()).collect();
    // One probe at a time: 1 s, then 10 s later, then 20 s later.
    assert_eq!(at, [1, 11, 31], "{seen:?}");
    assert_eq!(
        seen[1].1,
        Gate::Down {
            level: 3,
            pause: Duration::from_secs(20)
        }
    );
    // The third probe (31 s) failed too: the next waits 40 s, then STS
    // answers and the gate opens.
    let (_, gate) = pacer.acquire(&ep()).await.finish(Paced::Answered, ceiling);
    assert_eq!(t0.elapsed(), Duration::from_secs(71));
    assert_eq!(
        gate,
        Gate::Up {
            calls: 4,
            down_for: Duration::from_secs(71)
        }
    );
    assert_eq!(pacer.held_for(&ep()), Duration::ZERO);
    // The waiting profiles go in slow start: two at once after one answer.
    let two = futures_lite_acquire(&pacer, 2).await;
    assert_eq!(two.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn calls_in_flight_when_sts_went_down_do_not_raise_the_pause() {
    let pacer = Pacer::default();
    // Slow start has opened to four calls.
    for _ in 0..2 {
        pacer.acquire(&ep()).await.finish(Paced::Answered, ceiling);
    }
    let four = futures_lite_acquire(&pacer, 4).await;
    let gates: Vec<Gate> = four
        .into_iter()
        .map(|p| p.finish(Paced::Down, ceiling).1)
        .collect();
    assert_eq!(
        gates,
        [
            Gate::Down {
                level: 1,
                pause: Duration::from_secs(1)
            },
            Gate::None,
            Gate::None,
            Gate::None
        ]
    );
    // A dropped probe (a cancelled attempt) lets the next one go at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(pacer.acquire(&ep()).await);
    let t = Instant::now();
    let (_, gate) = pacer.acquire(&ep()).await.finish(Paced::Down, floor);
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(
        gate,
        Gate::Down {
            level: 2,
            pause: Duration::from_secs(5)
        },
        "the least jitter waits half the ceiling"
    );
    // Throttling opens the gate (STS answers) and paces as throttling.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (change, gate) = pacer.acquire(&ep()).await.finish(Paced::Throttled, ceiling);
    assert!(matches!(change, Change::Throttled { level: 1, .. }));
    assert!(matches!(gate, Gate::Up { calls: 2, .. }));
}
