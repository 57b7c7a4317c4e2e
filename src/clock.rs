//! Wall-clock time, injected.
//!
//! Session expiry, token expiry and the reported `Expiration` are wall-clock
//! facts (STS and kubelet speak in absolute times), while the sidecar waits
//! with tokio's clock. Every wall-clock reading in the program goes through
//! a [`Clock`] carried in its context (as aws-config carries a
//! `TimeSource`), so a test can run the wall clock from tokio's clock:
//! with paused time, a day of sessions expiring and being refreshed runs in
//! milliseconds.

use std::time::SystemTime;

use tokio::time::Instant;

/// Where wall-clock time comes from.
#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    /// The system's wall clock (production). Steps of the system clock
    /// (NTP corrections) are seen as they happen.
    #[default]
    System,
    /// `start` plus the time tokio's clock has moved since `at`: paused or
    /// auto-advanced tokio time moves the wall clock too.
    FollowsTokio { start: SystemTime, at: Instant },
}

impl Clock {
    /// A clock that reads `start` now and then follows tokio's clock (call
    /// it inside the runtime whose time should drive it).
    pub fn following_tokio(start: SystemTime) -> Clock {
        Clock::FollowsTokio {
            start,
            at: Instant::now(),
        }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::FollowsTokio { start, at } => *start + at.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_clock_following_tokio_moves_with_paused_time_only() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let clock = Clock::following_tokio(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert_eq!(clock.now(), start + Duration::from_secs(86_400));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), start + Duration::from_secs(90_000));
    }

    #[test]
    fn the_system_clock_reads_the_system_time() {
        let before = SystemTime::now();
        let now = Clock::System.now();
        assert!(now >= before && now <= SystemTime::now());
    }
}
