//! What a profile's failures put in the log: a failure that needs a human
//! (configuration, trust policy, clock) every time, loudly; a run of the
//! same failure that only waits for STS (throttling, an outage) once in
//! full, then one summary line per [`SUMMARY_INTERVAL`] with the count and
//! the last error ([`crate::ratelimit::LogLimit`]), and one line when a
//! run of more than one ends. docs/OPERATIONS.md (Troubleshooting, Log volume) has the lines.

use std::time::Duration;

use tokio::time::Instant;

use crate::ratelimit::LogLimit;
use crate::sts::ErrorClass;

/// A run of the same failure is summarised in one line per this interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// What to log for a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// `refresh failed`, in full: the first of a run, or a failure that
    /// needs a human.
    Full,
    /// `refresh still failing`: `failures` in the run so far, `left_out`
    /// of them since the previous line, for `failing_for`.
    Summary {
        failures: u32,
        left_out: u64,
        failing_for: Duration,
    },
    /// Nothing: counted for the next summary.
    Quiet,
}

/// A run of failures that ended with a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub class: ErrorClass,
    pub failures: u32,
    pub failing_for: Duration,
}

/// One run: the same failure (class and code) in a row.
#[derive(Debug)]
struct Run {
    class: ErrorClass,
    code: String,
    since: Instant,
    failures: u32,
    log: LogLimit,
}

/// A profile's current run of failures, if any.
#[derive(Debug, Default)]
pub struct Failures {
    /// Boxed: a healthy profile's task carries only the pointer.
    run: Option<Box<Run>>,
}

/// Whether failures of `class` need a human (every one logged, at ERROR).
pub fn needs_a_human(class: ErrorClass) -> bool {
    matches!(class, ErrorClass::Configuration | ErrorClass::Clock)
}

impl Failures {
    /// Records a failure of `class` with `code` at `now`; says what to
    /// log. Another code starts another run: a new cause is worth a line.
    pub fn record(&mut self, class: ErrorClass, code: &str, now: Instant) -> Line {
        let same = self
            .run
            .as_ref()
            .is_some_and(|r| r.class == class && r.code == code);
        if !same {
            let run = Run {
                class,
                code: code.to_owned(),
                since: now,
                failures: 1,
                log: LogLimit::new(SUMMARY_INTERVAL),
            };
            // The first line opens the interval.
            let _ = run.log.admit();
            self.run = Some(Box::new(run));
            return Line::Full;
        }
        let run = self.run.as_mut().expect("checked above");
        run.failures = run.failures.saturating_add(1);
        if needs_a_human(class) {
            return Line::Full;
        }
        match run.log.admit() {
            Some(left_out) => Line::Summary {
                failures: run.failures,
                left_out,
                failing_for: now.saturating_duration_since(run.since),
            },
            None => Line::Quiet,
        }
    }

    /// Whether the last attempt failed (a run is open).
    pub fn is_failing(&self) -> bool {
        self.run.is_some()
    }

    /// Records a success at `now`: the run it ended, if it had more than
    /// one failure (a single failure's line said all there is: the
    /// `refreshed` line that follows ends it).
    pub fn ended(&mut self, now: Instant) -> Option<Ended> {
        self.run.take().filter(|r| r.failures > 1).map(|r| Ended {
            class: r.class,
            failures: r.failures,
            failing_for: now.saturating_duration_since(r.since),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_run_is_logged_once_then_once_a_minute_then_when_it_ends() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        assert_eq!(
            f.record(ErrorClass::Transient, "InternalFailure", t0),
            Line::Full
        );
        // A minute of retries: counted, not logged.
        for s in [1, 3, 7, 15, 31] {
            tokio::time::advance(Duration::from_secs(s) - t0.elapsed()).await;
            assert_eq!(
                f.record(ErrorClass::Transient, "InternalFailure", Instant::now()),
                Line::Quiet
            );
        }
        tokio::time::advance(Duration::from_secs(61) - t0.elapsed()).await;
        assert_eq!(
            f.record(ErrorClass::Transient, "InternalFailure", Instant::now()),
            Line::Summary {
                failures: 7,
                left_out: 5,
                failing_for: Duration::from_secs(61)
            }
        );
        // Another code is another run: in full again.
        assert_eq!(
            f.record(ErrorClass::Transient, "Throttling", Instant::now()),
            Line::Full
        );
        assert_eq!(
            f.record(ErrorClass::Transient, "Throttling", Instant::now()),
            Line::Quiet
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(
            f.ended(Instant::now()),
            Some(Ended {
                class: ErrorClass::Transient,
                failures: 2,
                failing_for: Duration::from_secs(9)
            })
        );
        assert_eq!(f.ended(Instant::now()), None, "one line per run");
        assert_eq!(
            f.record(ErrorClass::Transient, "InternalFailure", Instant::now()),
            Line::Full,
            "a new run after a success"
        );
        assert_eq!(
            f.ended(Instant::now()),
            None,
            "a single failure needs no closing line"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_that_need_a_human_are_logged_every_time() {
        let mut f = Failures::default();
        for class in [ErrorClass::Configuration, ErrorClass::Clock] {
            for _ in 0..3 {
                assert_eq!(f.record(class, "AccessDenied", Instant::now()), Line::Full);
            }
        }
        assert!(needs_a_human(ErrorClass::Configuration));
        assert!(!needs_a_human(ErrorClass::Token));
        assert!(!needs_a_human(ErrorClass::Transient));
    }
}
