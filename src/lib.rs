//! rolecall: one pod identity, many AWS role sessions.
//!
//! rolecall runs beside an application as a sidecar. It reads the pod's
//! projected service-account token, assumes every configured IAM role with
//! STS, and publishes each session as a named AWS profile in a shared
//! directory, so that the application picks a role with `AWS_PROFILE=name`
//! and never sees the token.
//!
//! ```text
//!   SIGHUP/SIGUSR1, config file, control socket         SIGTERM
//!   ── Command ────────▶ supervisor ◀──────────── shutdown future
//!                          │ spawns, reloads (reload::plan), stops
//!   watch (notify on the   ├──────────────┬───────────────┐
//!   token dir + 60 s poll) ▼              ▼               ▼
//!     │ "token changed" refresher(a)  refresher(b) …  writer ──▶ credentials, config,
//!     └────────────────▶   │ STS          │ STS          ▲        status.json, …
//!                          ▼              ▼              │ (debounced, atomic)
//!                  Shared state: profiles, sessions, what the files hold
//!                          │ per-source watch ──▶ chained refreshers
//!                          ▼
//!            health (/livez /readyz /metrics), endpoint (/v1/credentials/NAME)
//! ```
//!
//! ## A token rotation, from kubelet to the files
//!
//! 1. kubelet swaps the token directory's `..data` link. [`watch`] gets the
//!    directory event (or, on layouts without events, its 60 s poll fires),
//!    re-reads the token, and only if its content changed bumps the "token
//!    changed" generation.
//! 2. Every [`refresher`] task (one per profile, started by the supervisor)
//!    receives the bump. A profile that needs it (no live session, a failed
//!    last attempt, or close to expiry) runs an attempt at once; the others
//!    keep their schedule: the token is re-read at every attempt anyway.
//! 3. The attempt reads the token with [`token`], calls
//!    `AssumeRoleWithWebIdentity` through [`sts`] (which sorts failures into
//!    transient, token, clock and configuration classes), and records the
//!    result in [`state::Shared`] with one intent: `record_success` or
//!    `record_failure`. The next attempt is planned by `schedule` (pure
//!    arithmetic: half the lifetime with jitter, or a backoff).
//! 4. `record_success` stores the session, recomputes readiness (one writer,
//!    one value), updates the metrics, pushes the session to the profiles
//!    chained to this one (their refreshers subscribe to their source only),
//!    and asks the [`output`] writer to write.
//! 5. The writer waits a short debounce so that a round of profiles is
//!    written once, renders every file from a snapshot of the state, and
//!    replaces each file whose bytes changed atomically (temporary file,
//!    fsync, rename). A failed write keeps the previous file and is retried
//!    with backoff. A set's successful write records in `Shared` which
//!    session each profile now has in its files, and readiness follows: a
//!    session is ready once the files that serve it hold it, not before.
//!
//! Applications then read the new keys: from `credentials` (file mode), by
//! running the installed helper ([`process`]), or from the loopback
//! endpoint, which reads the same state.
//!
//! ## The modules
//!
//! - [`config`] declares each option once (flag, variables, YAML key,
//!   default, validator, reloadable) and builds the configuration in stages,
//!   reporting every problem at once.
//! - The supervisor (private) starts the listeners, the watcher, the writer
//!   and the refreshers, and carries out the [`Command`]s that SIGHUP,
//!   SIGUSR1, the configuration watcher and the control socket send on its
//!   one channel ([`Commands`]): reloads (`reload::plan` compares the
//!   running and the new configuration without a runtime), refreshes, the
//!   sets' names.
//! - [`state`] is the shared state, private behind intent methods;
//!   [`clock`] is the injected wall clock (tests run it from tokio's).
//! - [`token`] reads and decodes the JWT on every use; [`watch`] turns
//!   directory events and a poll into "the token changed", and watches the
//!   configuration file the same way: a change of its content (a ConfigMap
//!   edit) reloads as SIGHUP does.
//! - [`sts`] makes the calls (STS's error codes are listed once, in
//!   `sts::codes`; rolecall's own, for failures without one, in [`codes`]);
//!   [`trust`] turns a refusal into a hint about the trust policy.
//! - Every STS call waits for a permit of the sidecar's one `pacer`: slow
//!   start, and after a `Throttling` answer one call at a time with growing
//!   pauses, because the account's rate limit is shared by every pod; while
//!   an STS endpoint fails (5xx, timeouts, refused connections), one probe at
//!   a time to it for all profiles, the others waiting for its outcome.
//! - [`refresher`] is one task per profile; [`output`] renders and writes the
//!   files; the health server serves probes and metrics ([`metrics`])
//!   through the bounded HTTP server; the endpoint serves the loopback
//!   container-credentials endpoint, whose token survives restarts or comes
//!   from a supplied file.
//! - `fsread` is the one way any file is read (regular, non-blocking,
//!   capped; never through a link in the output dir); `ratelimit` keeps
//!   floods to a log line per interval; [`sys`] holds the only unsafe calls
//!   and the process's limits (`sys::limits`: the open-file limit raised at
//!   start, and the names of the limits an error met).
//! - [`output`] writes one directory per output set (`output::Sets`):
//!   each app container mounts only its set's volume, and the endpoint's
//!   token of a set is served only that set's profiles.
//! - [`control`] is the control socket of `rolecall reload`, `refresh` and
//!   `status` (through `kubectl exec`: the image has no shell to send a
//!   signal), and its client.
//! - [`tls`] is the trust for STS calls: the platform's roots plus a
//!   checked `ca_bundle`, and the name of a refused certificate.
//! - [`logging`] builds the `RUST_LOG` filter that keeps secrets out of
//!   every level; [`status`] and [`check`] are the `status` and `check`
//!   commands.

// `deny`, not `forbid`: forbid cannot be lifted per module, and the libc
// calls std lacks live in `sys`, which alone allows unsafe code.
#![deny(unsafe_code)]

pub mod agent;
pub mod aws;
pub mod check;
pub mod cli;
pub mod clock;
pub mod codes;
pub mod config;
pub mod control;
mod endpoint;
mod fsread;
mod health;
mod http;
#[cfg(feature = "inject")]
pub mod inject;
#[cfg(feature = "inject")]
pub mod krm;
pub mod logging;
pub mod metrics;
pub mod output;
mod pacer;
pub mod process;
pub mod proxy;
mod ratelimit;
pub mod refresher;
mod reload;
mod schedule;
pub mod session;
pub mod signal;
mod slots;
pub mod state;
pub mod status;
pub mod sts;
mod supervisor;
mod supplied;
pub mod sys;
mod text;
pub mod tls;
pub mod token;
pub mod trust;
pub mod watch;
#[cfg(feature = "inject")]
pub mod webhook;

use std::time::Duration;

use crate::output::WriteError;
use crate::schedule::Jitter;

/// Knobs that are not part of the product's configuration: timing for
/// tests and benchmarks.
#[derive(Clone, Debug)]
pub struct Options {
    pub poll_interval: Duration,
    pub attempt_timeout: Duration,
    pub jitter: Jitter,
    /// The draw that spreads the first refresh of a session obtained off
    /// the schedule ([`schedule::spread_refresh_in`]); tests that check
    /// the steady schedule pass [`schedule::no_jitter`].
    pub spread: Jitter,
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
            spread: schedule::random_jitter,
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

pub use control::{Command, Commands};
pub use supervisor::{once, run};

/// The most connections each HTTP listener (health, credentials endpoint)
/// holds open: `main` sizes the open-file limit it needs with it.
pub use http::MAX_CONNECTIONS as LISTENER_MAX_CONNECTIONS;
