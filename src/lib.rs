//! rolecall: one pod identity, many AWS role sessions.
//!
//! rolecall runs beside an application as a sidecar. It reads the pod's
//! projected service-account token, assumes every configured IAM role with
//! STS, and publishes each session as a named AWS profile in a shared
//! directory, so that the application picks a role with `AWS_PROFILE=name`
//! and never sees the token.
//!
//! ```text
//!                       SIGHUP/SIGUSR1            SIGTERM
//!   signal ────────────▶ supervisor (run) ◀──────── shutdown token
//!                          │ spawns, reloads, stops
//!   watch (notify on the   ├──────────────┬───────────────┐
//!   token dir + 60 s poll) ▼              ▼               ▼
//!     │ "token changed" refresher(a)  refresher(b) …  writer ──▶ credentials, config
//!     └────────────────▶   │ STS          │ STS          ▲ (atomic, on change)
//!                          └──── Shared state ───────────┘
//!                                    ▲
//!                        health: /livez /readyz /metrics
//! ```
//!
//! - [`config`] merges flags, environment and YAML and reports every problem.
//! - [`token`] reads and decodes the JWT on every use.
//! - [`watch`] turns directory events and a poll into "the token changed".
//! - [`sts`] makes the calls and sorts errors into transient, token and
//!   configuration classes; [`schedule`] is the pure timing arithmetic.
//! - [`refresher`] is one task per profile; [`output`] renders and writes the
//!   files atomically; [`health`] serves probes and metrics through the
//!   bounded server in [`http`].
//! - [`endpoint`] serves the loopback container-credentials endpoint; its
//!   token survives restarts, or comes from a supplied file that is
//!   re-read when it changes.
//! - [`fsread`] is the one way any file is read (regular, non-blocking,
//!   capped; never through a link in the output dir); [`ratelimit`] keeps
//!   floods (accept errors, bad endpoint tokens, SIGUSR1) to a log line per
//!   interval.

// `deny`, not `forbid`: forbid cannot be lifted per module, and the libc
// calls std lacks live in `sys`, which alone allows unsafe code.
#![deny(unsafe_code)]

pub mod check;
pub mod clock;
pub mod config;
mod endpoint;
mod fsread;
mod health;
mod http;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod process;
mod ratelimit;
pub mod refresher;
mod reload;
mod schedule;
pub mod session;
pub mod signal;
pub mod state;
pub mod status;
pub mod sts;
mod supervisor;
mod sys;
pub mod token;
pub mod trust;
pub mod watch;

use std::time::Duration;

use crate::output::WriteError;
use crate::schedule::Jitter;

/// Requests the supervisor acts on while running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Re-read the configuration (SIGHUP).
    Reload,
    /// Refresh every profile now (SIGUSR1).
    RefreshNow,
}

/// Knobs that are not part of the product's configuration: timing for
/// tests and benchmarks.
#[derive(Clone, Debug)]
pub struct Options {
    pub poll_interval: Duration,
    pub attempt_timeout: Duration,
    pub jitter: Jitter,
    /// How many STS calls the initial pass makes at once.
    pub concurrency: usize,
    /// How long shutdown waits for tasks before giving up on them.
    pub stop_grace: Duration,
    /// The binary installed as the process-mode helper; `None` for this
    /// executable (tests of the library point it at the built binary).
    pub helper_binary: Option<std::path::PathBuf>,
    /// Wall time for expiry and token checks: the system clock, or
    /// [`clock::Clock::tokio`] in tests under paused time.
    pub clock: clock::Clock,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            poll_interval: watch::POLL_INTERVAL,
            attempt_timeout: sts::ATTEMPT_TIMEOUT,
            jitter: schedule::random_jitter,
            concurrency: 16,
            stop_grace: Duration::from_millis(1500),
            helper_binary: None,
            clock: clock::Clock::system(),
        }
    }
}

/// Failures that stop rolecall (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Output(#[from] WriteError),
    #[error(transparent)]
    EndpointToken(#[from] endpoint::TokenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The outcome of `rolecall once`.
#[derive(Debug)]
pub struct OnceReport {
    /// Profiles that could not be assumed (their outputs were not written).
    pub failed: Vec<String>,
}

pub use supervisor::{once, run};
