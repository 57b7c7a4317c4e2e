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

pub mod check;
pub mod clock;
pub mod config;
pub mod endpoint;
pub mod fsread;
pub mod health;
pub mod http;
pub mod metrics;
pub mod output;
pub mod process;
pub mod ratelimit;
pub mod refresher;
pub mod schedule;
pub mod session;
pub mod signal;
pub mod state;
pub mod status;
pub mod sts;
pub mod token;
pub mod trust;
pub mod watch;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch as tokio_watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, Profile};
use crate::output::{WriteError, Writer};
use crate::refresher::{Context, Outcome, Refresher};
use crate::schedule::Jitter;
use crate::state::Shared;
use crate::sts::Sts;

/// The AWS SDK's environment switch for logging response bodies, which
/// hold STS's secret keys: `main` removes it from the environment at start,
/// and [`log_filter`] caps the module that honours it below `trace`.
pub const SDK_BODY_LOG_SWITCH: &str = "LOG_SENSITIVE_BODIES";
/// The SDK module that logs response bodies at `trace`.
const SDK_BODY_LOG_TARGET: &str = "aws_smithy_runtime::client::orchestrator::http";

/// The log filter for a `RUST_LOG` value: a default level and
/// `target=level` directives (`info`, `rolecall=debug,warn`; span and field
/// filters are not supported, which keeps a regex engine out of the binary).
/// An unreadable value falls back to `info`. The HTTP and TLS internals are
/// capped at `info` whatever it says, because at `trace` they print raw
/// requests, which hold the token; the SDK's body logging is capped at
/// `debug` for the same reason.
pub fn log_filter(spec: &str) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let spec = spec.trim();
    let parsed = if spec.is_empty() {
        Targets::new().with_default(LevelFilter::INFO)
    } else {
        spec.parse::<Targets>()
            .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
    };
    let capped = parsed.iter().fold(Targets::new(), |t, (target, level)| {
        t.with_target(target, level)
    });
    let mut filter = match parsed.default_level() {
        Some(level) => capped.with_default(level),
        None => capped,
    };
    for target in ["hyper", "hyper_util", "h2", "rustls"] {
        let level = parsed
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, l)| l)
            .or(parsed.default_level())
            .map_or(LevelFilter::INFO, |l| l.min(LevelFilter::INFO));
        filter = filter.with_target(target, level);
    }
    let body_level = parsed
        .default_level()
        .map_or(LevelFilter::INFO, |l| l.min(LevelFilter::DEBUG));
    filter.with_target(SDK_BODY_LOG_TARGET, body_level)
}

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

/// The pieces every mode shares.
struct Core {
    shared: Arc<Shared>,
    ctx: Context,
    writer: Writer,
    /// The installed process-mode helper, for the writer's re-check.
    helper: Arc<output::Helper>,
    nudge: Arc<tokio_watch::Sender<u64>>,
    refresh_all: tokio_watch::Sender<u64>,
}

impl Core {
    fn new(config: &Config, opts: &Options) -> Result<Core, RunError> {
        let shared = Shared::with_clock(opts.clock);
        sts::warn_plaintext_endpoints(&config.profiles);
        let writer = Writer::new(config);
        writer.prepare()?;
        let helper = Arc::new(output::Helper::default());
        install_helper_if_needed(&writer, &helper, config, opts)?;
        let nudge = Arc::new(tokio_watch::channel(0u64).0);
        let refresh_all = tokio_watch::channel(0u64).0;
        let ctx = Context {
            shared: shared.clone(),
            sts: Sts::new(opts.attempt_timeout).with_clock(opts.clock),
            token_file: config.token_file.clone(),
            jitter: opts.jitter,
            token_changed: nudge.subscribe(),
            refresh_all: refresh_all.subscribe(),
            clock: opts.clock,
        };
        Ok(Core {
            shared,
            ctx,
            writer,
            helper,
            nudge,
            refresh_all,
        })
    }

    /// Registers the profiles, seeded with the still-valid sessions an
    /// earlier run left in the output dir (see [`output::adopt`]).
    fn add_states(&self, profiles: &[Arc<Profile>]) {
        let mut adopted = output::adopt(&self.writer.dir, profiles, SystemTime::now());
        if !adopted.is_empty() {
            tracing::info!(
                profiles = %adopted.keys().cloned().collect::<Vec<_>>().join(","),
                "kept valid credentials from the previous run until they are refreshed"
            );
        }
        for p in profiles {
            self.shared
                .register(p.clone(), adopted.remove(&p.name), self.shared.now());
        }
    }

    /// Assumes every profile once, concurrently (bounded), sources before
    /// the profiles chained to them. Returns each refresher with its outcome.
    async fn initial_pass(
        &self,
        profiles: &[Arc<Profile>],
        concurrency: usize,
    ) -> Vec<(Refresher, Outcome)> {
        let mut done: Vec<(Refresher, Outcome)> = Vec::new();
        let mut pending: Vec<Arc<Profile>> = profiles.to_vec();
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        while !pending.is_empty() {
            let (ready, waiting): (Vec<_>, Vec<_>) = pending.into_iter().partition(|p| {
                p.source_profile.as_ref().is_none_or(|s| {
                    !profiles.iter().any(|q| &q.name == s)
                        || done.iter().any(|(r, _)| &r.profile.name == s)
                })
            });
            if ready.is_empty() {
                // Unreachable with a validated configuration (no cycles).
                break;
            }
            let mut set = JoinSet::new();
            for p in ready {
                let mut r = Refresher::new(p, self.ctx.clone());
                let permits = permits.clone();
                set.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let o = r.attempt().await;
                    (r, o)
                });
            }
            while let Some(res) = set.join_next().await {
                match res {
                    Ok(pair) => done.push(pair),
                    Err(e) => tracing::error!(error = %e, "initial refresh task failed"),
                }
            }
            pending = waiting;
        }
        done
    }
}

/// Installs rolecall as `<dir>/rolecall` when a profile uses process mode,
/// and has the writer's re-check keep it installed (or stop checking it).
fn install_helper_if_needed(
    writer: &Writer,
    helper: &output::Helper,
    config: &Config,
    opts: &Options,
) -> Result<(), WriteError> {
    if config
        .profiles
        .iter()
        .any(|p| p.credentials == config::CredentialsMode::Process)
    {
        let exe = opts
            .helper_binary
            .clone()
            .unwrap_or_else(|| "/proc/self/exe".into());
        writer.install_tracked_helper(&exe, helper)?;
    } else {
        helper.forget();
    }
    Ok(())
}

/// `rolecall once`: assume every profile, write the outputs, return.
pub async fn once(config: &Config, opts: &Options) -> Result<OnceReport, RunError> {
    let core = Core::new(config, opts)?;
    let profiles: Vec<Arc<Profile>> = config.profiles.iter().cloned().map(Arc::new).collect();
    core.add_states(&profiles);
    let results = core.initial_pass(&profiles, opts.concurrency).await;
    core.writer.write(&core.shared, SystemTime::now())?;
    let mut failed: Vec<String> = results
        .iter()
        .filter(|(_, o)| !o.is_success())
        .map(|(r, _)| r.profile.name.clone())
        .collect();
    failed.sort();
    Ok(OnceReport { failed })
}

/// A running refresher task.
struct Task {
    profile: Arc<Profile>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

/// The long-running sidecar: initial pass, then one task per profile, the
/// writer, the token watcher and the health server, until `shutdown`
/// completes. `reload` re-reads the configuration on [`Control::Reload`],
/// on the blocking pool: reading and parsing a file must not stop the
/// probes, the refreshers or shutdown (the runtime has one thread).
pub async fn run(
    config: Config,
    reload: impl Fn() -> Result<Config, ConfigError> + Send + 'static,
    opts: Options,
    mut controls: mpsc::Receiver<Control>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let core = Core::new(&config, &opts)?;
    let stop = CancellationToken::new();
    let live = state::Readiness::new(true);
    let mut background = JoinSet::new();
    if let Some(addr) = config.health_addr {
        let health = health::Health {
            shared: core.shared.clone(),
            live: live.clone(),
        };
        let (bound, task) = health::serve(addr, health, stop.clone())
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        tracing::info!(addr = %bound, "health and metrics listening");
        background.spawn(async move {
            let _ = task.await;
        });
    }
    if let Some(addr) = config.endpoint_addr {
        let token =
            endpoint::EndpointToken::start(&core.writer, config.endpoint_token_file.as_deref())?;
        background.spawn(token.clone().run(stop.clone()));
        let ep = endpoint::Endpoint {
            shared: core.shared.clone(),
            token,
        };
        let (bound, task) = http::serve(addr, move |req| ep.respond(req), stop.clone())
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        tracing::info!(addr = %bound, token_file = %core.writer.dir.join(endpoint::TOKEN_FILE).display(), "credentials endpoint listening");
        background.spawn(async move {
            let _ = task.await;
        });
    }
    background.spawn(
        watch::TokenWatcher {
            token_file: config.token_file.clone(),
            poll_interval: opts.poll_interval,
            changed: core.nudge.clone(),
            shared: core.shared.clone(),
        }
        .run(stop.clone()),
    );

    let profiles: Vec<Arc<Profile>> = config.profiles.iter().cloned().map(Arc::new).collect();
    core.add_states(&profiles);
    let results = core.initial_pass(&profiles, opts.concurrency).await;
    if let Err(e) = core.writer.write(&core.shared, SystemTime::now()) {
        tracing::error!(error = %e, "initial write failed; retrying with backoff");
    }
    let ok = results.iter().filter(|(_, o)| o.is_success()).count();
    tracing::info!(
        profiles = results.len(),
        ok,
        failing = results.len() - ok,
        output_dir = %config.output_dir.display(),
        "started"
    );
    background.spawn(core.writer.clone().run(
        core.shared.clone(),
        core.helper.clone(),
        stop.clone(),
    ));

    let mut tasks: BTreeMap<String, Task> = BTreeMap::new();
    for (r, outcome) in results {
        let name = r.profile.name.clone();
        tasks.insert(name, spawn_refresher(r, outcome.next(), &stop));
    }

    let mut current = config;
    // One reload runs at a time, off the runtime's thread; a SIGHUP during
    // it queues one more (the file may have changed after it was read).
    let reload = Arc::new(std::sync::Mutex::new(reload));
    let start_reload = || {
        let reload = reload.clone();
        tokio::task::spawn_blocking(move || (reload.lock().unwrap_or_else(|e| e.into_inner()))())
    };
    let mut reloading: Option<tokio::task::JoinHandle<Result<Config, ConfigError>>> = None;
    let mut reload_again = false;
    // A burst of SIGUSR1 logs one line per interval, with the count left out.
    let refresh_log = ratelimit::LogLimit::new(ratelimit::LOG_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(ctl) = controls.recv() => match ctl {
                Control::RefreshNow => {
                    if let Some(suppressed) = refresh_log.admit() {
                        tracing::info!(suppressed, "refreshing every profile now (at most once per profile every 5 s)");
                    }
                    core.refresh_all.send_modify(|g| *g = g.wrapping_add(1));
                }
                Control::Reload if reloading.is_some() => reload_again = true,
                Control::Reload => reloading = Some(start_reload()),
            },
            done = async { reloading.as_mut().expect("guarded").await }, if reloading.is_some() => {
                reloading = reload_again.then(start_reload);
                reload_again = false;
                match done {
                    Ok(Ok(new)) => {
                        if let Err(e) = install_helper_if_needed(&core.writer, &core.helper, &new, &opts) {
                            tracing::error!(error = %e, "cannot install the credential_process helper");
                        }
                        apply_reload(&core, &mut tasks, &current, &new, &stop);
                        current = new;
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "reload refused; keeping the running configuration"),
                    Err(e) => tracing::error!(error = %e, "reload refused (the reload task failed); keeping the running configuration"),
                }
            },
            _ = &mut shutdown => break,
            _ = stop.cancelled() => break,
        }
    }

    live.set(false);
    stop.cancel();
    let handles = tasks.into_values().map(|t| t.handle);
    let all = async {
        for h in handles {
            let _ = h.await;
        }
        while background.join_next().await.is_some() {}
    };
    if tokio::time::timeout(opts.stop_grace, all).await.is_err() {
        tracing::warn!("some tasks did not stop in time");
    }
    tracing::info!("stopped; output files left in place");
    Ok(())
}

fn spawn_refresher(r: Refresher, first: Duration, stop: &CancellationToken) -> Task {
    let child = stop.child_token();
    let profile = r.profile.clone();
    let handle = tokio::spawn(r.run(first, child.clone()));
    Task {
        profile,
        stop: child,
        handle,
    }
}

/// Whether a change of profile settings invalidates the session it holds
/// (a different role or different permissions).
fn keeps_session(old: &Profile, new: &Profile) -> bool {
    old.role_arn == new.role_arn
        && old.source_profile == new.source_profile
        && old.external_id == new.external_id
        && old.policy == new.policy
        && old.policy_arns == new.policy_arns
}

fn apply_reload(
    core: &Core,
    tasks: &mut BTreeMap<String, Task>,
    old: &Config,
    new: &Config,
    stop: &CancellationToken,
) {
    let restart_needed: Vec<&str> = [
        ("token_file", old.token_file != new.token_file),
        ("output_dir", old.output_dir != new.output_dir),
        ("file_mode", old.file_mode != new.file_mode),
        (
            "allow_world_readable",
            old.allow_world_readable != new.allow_world_readable,
        ),
        ("health_addr", old.health_addr != new.health_addr),
        ("endpoint_addr", old.endpoint_addr != new.endpoint_addr),
        (
            "endpoint_token_file",
            old.endpoint_token_file != new.endpoint_token_file,
        ),
        ("log_format", old.log_format != new.log_format),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect();
    if !restart_needed.is_empty() {
        tracing::warn!(
            options = %restart_needed.join(","),
            "these options only take effect after a restart; the running values are kept"
        );
    }
    let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    let names: Vec<String> = tasks.keys().cloned().collect();
    for name in names {
        if new.profile(&name).is_none() {
            let t = tasks.remove(&name).expect("listed");
            t.stop.cancel();
            core.shared.remove(&name, core.shared.now());
            removed.push(name);
        }
    }
    for p in &new.profiles {
        match tasks.get(&p.name) {
            Some(t) if *t.profile == *p => {}
            existing => {
                let keep = existing.is_some_and(|t| keeps_session(&t.profile, p));
                if let Some(t) = tasks.remove(&p.name) {
                    t.stop.cancel();
                    changed.push(p.name.clone());
                } else {
                    added.push(p.name.clone());
                }
                let profile = Arc::new(p.clone());
                core.shared.upsert(profile.clone(), keep, core.shared.now());
                let r = Refresher::new(profile, core.ctx.clone());
                tasks.insert(p.name.clone(), spawn_refresher(r, Duration::ZERO, stop));
            }
        }
    }
    tracing::info!(
        added = %added.join(","),
        changed = %changed.join(","),
        removed = %removed.join(","),
        "configuration reloaded"
    );
    // Unchanged profiles that are failing retry now, as on a token change.
    core.nudge.send_modify(|g| *g = g.wrapping_add(1));
    core.shared.request_write();
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn rust_log_sets_levels_but_http_internals_stay_capped_at_info() {
        let f = super::log_filter("trace");
        assert!(f.would_enable("rolecall::sts", &Level::TRACE));
        assert!(f.would_enable("aws_smithy_runtime", &Level::TRACE));
        for t in ["hyper", "hyper_util::client", "h2", "rustls"] {
            assert!(!f.would_enable(t, &Level::DEBUG), "{t}");
            assert!(f.would_enable(t, &Level::INFO), "{t}");
        }
        assert!(!f.would_enable(super::SDK_BODY_LOG_TARGET, &Level::TRACE));
        assert!(f.would_enable("aws_smithy_runtime::client::orchestrator", &Level::TRACE));
        let f = super::log_filter("rolecall=debug,warn");
        assert!(f.would_enable("rolecall", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(
            !f.would_enable("hyper", &Level::INFO),
            "a stricter level for hyper is kept"
        );
        let f = super::log_filter("not a == filter");
        assert_eq!(f.default_level(), Some(LevelFilter::INFO));
        assert_eq!(
            super::log_filter("").default_level(),
            Some(LevelFilter::INFO)
        );
    }
}
