//! Wall time, injected (as aws-config's `TimeSource`): expiry, token
//! validity and readiness are judged by a [`Clock`] chosen once in
//! [`crate::Options`] and carried by those that read the time (the
//! refresher's context, the STS client, health, the endpoint, the token
//! watcher, the writers), never by `SystemTime::now()` directly.
//!
//! The running sidecar reads the system clock, so a wall-clock step (NTP)
//! moves it as before. Tests under paused tokio time use
//! [`Clock::tokio`], whose wall time advances with tokio's clock, so a
//! paused test reaches a session's or a token's expiry without waiting.

use std::time::SystemTime;

use tokio::time::Instant;

/// Where "now" comes from.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock(Source);

#[derive(Clone, Copy, Debug, Default)]
enum Source {
    /// The system clock.
    #[default]
    System,
    /// `wall` at `at`, moving with tokio's clock from there.
    Tokio { wall: SystemTime, at: Instant },
}

impl Clock {
    /// The system clock: what the sidecar uses.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// Wall time that starts at the system clock's current value and then
    /// moves with tokio's clock: paused time moves it, in steps as large as
    /// the test advances.
    pub fn tokio() -> Clock {
        Clock(Source::Tokio {
            wall: SystemTime::now(),
            at: Instant::now(),
        })
    }

    /// The current wall time.
    pub fn now(&self) -> SystemTime {
        match self.0 {
            Source::System => SystemTime::now(),
            Source::Tokio { wall, at } => wall + at.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time() {
        let clock = Clock::tokio();
        let start = clock.now();
        tokio::time::sleep(Duration::from_secs(30 * 86_400)).await;
        let moved = clock.now().duration_since(start).unwrap();
        assert!(moved >= Duration::from_secs(30 * 86_400), "{moved:?}");
        assert!(moved < Duration::from_secs(30 * 86_400 + 1), "{moved:?}");
        // The system clock did not move a month meanwhile.
        let system = Clock::system().now();
        assert!(system < start + Duration::from_secs(86_400));
    }
}
