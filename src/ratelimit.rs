//! A log line that may repeat as fast as the network can make it happen (an
//! accept failure, a rejected request) is written at most once per interval,
//! with the number of occurrences it stands for since the last line.
//!
//! ```ignore
//! static REJECTED: LogLimit = LogLimit::new(Duration::from_secs(10));
//! if let Some(suppressed) = REJECTED.admit() {
//!     tracing::warn!(suppressed, "request rejected");
//! }
//! ```

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The interval the listeners and the endpoint use: one line per 10 s.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Admits one event per interval; counts the others.
#[derive(Debug)]
pub struct LogLimit {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    pub const fn new(interval: Duration) -> LogLimit {
        LogLimit {
            interval,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Records one event. `Some(n)` when it may be logged now, `n` being
    /// the events that were not logged since the previous line; `None` when
    /// it is to be left out (and counted).
    pub fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn admits_one_event_per_interval_and_counts_the_rest() {
        let limit = LogLimit::new(Duration::from_secs(10));
        assert_eq!(limit.admit(), Some(0), "the first event is logged");
        for _ in 0..999 {
            assert_eq!(limit.admit(), None);
        }
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(limit.admit(), None, "not before the interval has passed");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            limit.admit(),
            Some(1000),
            "the next line says how many were left out"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(limit.admit(), Some(0), "the count starts again");
    }
}
