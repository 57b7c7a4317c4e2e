use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn ceiling() -> f64 {
    1.0
}

fn floor() -> f64 {
    0.0
}

/// Waits for a permit and says when it came, relative to `t0`.
async fn granted_after(pacer: &Pacer, t0: Instant) -> Duration {
    let p = pacer.acquire().await;
    let at = t0.elapsed();
    drop(p);
    at
}

#[tokio::test(start_paused = true)]
async fn slow_start_one_call_then_twice_as_many_per_answer() {
    let pacer = Arc::new(Pacer::default());
    let first = pacer.acquire().await;
    // A second call waits for the first.
    let p2 = pacer.clone();
    let second = tokio::spawn(async move {
        let p = p2.acquire().await;
        p.finish(Paced::Answered, ceiling);
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!second.is_finished(), "two calls in flight at the start");
    assert_eq!(first.finish(Paced::Answered, ceiling), Change::None);
    second.await.unwrap();
    // Two answers: four in flight, then no more than MAX_IN_FLIGHT.
    let four: Vec<_> = futures_lite_acquire(&pacer, 4).await;
    assert_eq!(four.len(), 4);
    for p in four {
        p.finish(Paced::Answered, ceiling);
    }
    for _ in 0..8 {
        let p = pacer.acquire().await;
        p.finish(Paced::Answered, ceiling);
    }
    assert_eq!(pacer.lock().window, MAX_IN_FLIGHT);
}

/// `n` permits taken at once, each within a millisecond (paused time).
async fn futures_lite_acquire(pacer: &Pacer, n: usize) -> Vec<Permit<'_>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let p = tokio::time::timeout(Duration::from_millis(1), pacer.acquire())
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
    let change = pacer.acquire().await.finish(Paced::Throttled, ceiling);
    assert_eq!(
        change,
        Change::Throttled {
            level: 1,
            pause: Duration::from_secs(5)
        }
    );
    assert_eq!(pacer.held_for(), Duration::from_secs(5));
    assert_eq!(granted_after(&pacer, t0).await, Duration::from_secs(5));
    // The least jitter still waits half the ceiling: 10 s at level 2 -> 5 s.
    let t1 = Instant::now();
    pacer.acquire().await.finish(Paced::Throttled, floor);
    assert_eq!(granted_after(&pacer, t1).await, Duration::from_secs(5));
    // Levels 3 to 6: ceilings of 20, 40, 80, then 120 s (the cap), where
    // the level stays.
    for (before, level, want) in [(2, 3, 20), (3, 4, 40), (4, 5, 80), (5, 6, 120), (6, 6, 120)] {
        assert_eq!(pacer.level(), before);
        let permit = pacer.acquire().await;
        let t = Instant::now();
        let c = permit.finish(Paced::Throttled, ceiling);
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
        pacer.acquire().await.finish(Paced::Answered, ceiling);
    }
    let permits = futures_lite_acquire(&pacer, 8).await;
    let mut permits = permits.into_iter();
    permits.next().unwrap().finish(Paced::Throttled, ceiling);
    for p in permits {
        p.finish(Paced::Failed, ceiling);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let one = pacer.acquire().await;
    assert!(
        tokio::time::timeout(Duration::from_secs(600), pacer.acquire())
            .await
            .is_err(),
        "a second call in flight while throttled"
    );
    drop(one);
    // A dropped permit frees its slot and leaves the level alone.
    assert_eq!(pacer.level(), 1);
    let _again = tokio::time::timeout(Duration::from_millis(1), pacer.acquire())
        .await
        .expect("the slot was freed");
}

#[tokio::test(start_paused = true)]
async fn each_answer_halves_the_level_and_paces_the_next_call_until_recovered() {
    let pacer = Pacer::default();
    for _ in 0..5 {
        pacer.acquire().await.finish(Paced::Throttled, floor);
    }
    assert_eq!(pacer.level(), 5);
    // An answer at level 5 -> 2: the next call waits up to 10 s.
    let permit = pacer.acquire().await;
    let t = Instant::now();
    assert_eq!(permit.finish(Paced::Answered, ceiling), Change::None);
    assert_eq!(pacer.level(), 2);
    assert_eq!(pacer.held_for(), Duration::from_secs(10));
    assert_eq!(granted_after(&pacer, t).await, Duration::from_secs(10));
    let permit = pacer.acquire().await;
    let t = Instant::now();
    permit.finish(Paced::Answered, ceiling);
    assert_eq!(
        pacer.held_for(),
        Duration::from_secs(5),
        "level 1: up to 5 s"
    );
    assert_eq!(granted_after(&pacer, t).await, Duration::from_secs(5));
    // An answer at level 1: the sidecar has recovered.
    assert_eq!(
        pacer.acquire().await.finish(Paced::Answered, ceiling),
        Change::Recovered
    );
    assert_eq!(pacer.level(), 0);
    assert_eq!(pacer.held_for(), Duration::ZERO);
    let two = futures_lite_acquire(&pacer, 2).await;
    assert_eq!(two.len(), 2, "slow start resumes at two");
}

#[tokio::test(start_paused = true)]
async fn failures_that_say_nothing_about_the_rate_leave_the_pace_alone() {
    let pacer = Pacer::default();
    pacer.acquire().await.finish(Paced::Throttled, ceiling);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        pacer.acquire().await.finish(Paced::Failed, ceiling),
        Change::None
    );
    assert_eq!(pacer.level(), 1);
    assert_eq!(pacer.held_for(), Duration::ZERO);
    // Not throttled: a failure neither opens nor closes the window.
    let fresh = Pacer::default();
    fresh.acquire().await.finish(Paced::Failed, ceiling);
    assert_eq!(fresh.lock().window, 1);
}

#[tokio::test(start_paused = true)]
async fn a_minute_without_throttling_starts_again_from_level_zero() {
    let pacer = Pacer::default();
    pacer.acquire().await.finish(Paced::Throttled, ceiling);
    pacer.acquire().await.finish(Paced::Throttled, ceiling);
    assert_eq!(pacer.level(), 2);
    // The next call, half an hour later (a refresh): not held, and slow
    // start from two.
    tokio::time::sleep(Duration::from_secs(1800)).await;
    let two = futures_lite_acquire(&pacer, 2).await;
    assert_eq!(pacer.level(), 0);
    drop(two);
    // Within the minute the level stands.
    pacer.acquire().await.finish(Paced::Throttled, ceiling);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let one = pacer.acquire().await;
    assert_eq!(pacer.level(), 1);
    drop(one);
}
