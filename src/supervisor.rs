//! The supervisor: starts the listeners, the watchers, the writer and one
//! refresher task per profile; carries out the [`Command`](crate::Command)s that come on
//! its one channel (reloads through the [`reloader::Reloader`], see
//! [`crate::reload`]; refreshes; the sets' names); stops everything on
//! shutdown.
//!
//! Start-up is an initial pass (every profile assumed once, sources before
//! the profiles chained to them, a bounded number at a time), one write of
//! the outputs, then the long-running tasks ([`start`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as tokio_watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, Profile};
use crate::control::Commands;
use crate::metrics::Metrics;
use crate::output::{Sets, WriteError};
use crate::ratelimit::{LOG_INTERVAL, LogLimit};
use crate::refresher::{Context, Manual, Outcome, Refresher};
use crate::state::Shared;
use crate::sts::{self, Sts};
use crate::{OnceReport, Options, RunError};

mod commands;
mod reloader;
mod reloads;
mod start;
#[cfg(test)]
mod tests;

use reloader::Reloader;

/// The Pod Identity agent's client under `identity: pod-identity`, its
/// calls counted in `metrics`; says which identity the sidecar runs with
/// (`rolecall_identity_info`, and a line under pod-identity).
fn agent(config: &Config, metrics: &Metrics) -> Option<Arc<crate::agent::Agent>> {
    let crate::config::Identity::PodIdentity(p) = &config.identity else {
        metrics.record_identity("web-identity");
        return None;
    };
    metrics.record_identity("pod-identity");
    tracing::info!(
        identity = "pod-identity",
        agent = %p.endpoint,
        token = %config.token_file.display(),
        base = %p.profile,
        published = p.published,
        "the base session comes from the EKS Pod Identity agent; every role profile is chained from it"
    );
    Some(Arc::new(
        crate::agent::Agent::new(&p.endpoint).with_metrics(metrics.clone()),
    ))
}

/// The pieces every mode shares.
struct Core {
    shared: Arc<Shared>,
    metrics: Metrics,
    ctx: Context,
    /// One writer per output set (each with its process-mode helper).
    sets: Sets,
    /// Bumped by the token watcher when the token's content changes.
    nudge: Arc<tokio_watch::Sender<u64>>,
    /// Bumped when a reload was applied: failing profiles retry now.
    reloaded: tokio_watch::Sender<u64>,
}

impl Core {
    fn new(config: &Config, opts: &Options, once: bool) -> Result<Core, RunError> {
        let metrics = Metrics::new();
        let shared = Shared::with_metrics(metrics.clone());
        shared.set_source(match &config.identity {
            crate::config::Identity::PodIdentity(p) => Some(p.endpoint.clone()),
            crate::config::Identity::WebIdentity => None,
        });
        sts::warn_plaintext_endpoints(&config.profiles);
        config.log_warnings(None);
        let sets = Sets::new(config, opts.jitter, opts.clock, &metrics);
        sets.prepare()?;
        sets.publish_members(&shared, config);
        install_helper_if_needed(&sets, &shared, config, opts)?;
        let nudge = Arc::new(tokio_watch::channel(0u64).0);
        let reloaded = tokio_watch::channel(0u64).0;
        let ctx = Context {
            shared: shared.clone(),
            metrics: metrics.clone(),
            pacer: Arc::default(),
            sts: Sts::new(opts.attempt_timeout)
                .with_network(
                    config.ca_bundle.as_ref(),
                    config
                        .proxy
                        .as_ref()
                        .map(|p| p.config(config.no_proxy.as_deref())),
                )
                .with_clock(opts.clock)
                .with_metrics(metrics.clone()),
            agent: agent(config, &metrics),
            token_file: config.token_file.clone(),
            jitter: opts.jitter,
            spread: opts.spread,
            token_changed: nudge.subscribe(),
            config_reloaded: reloaded.subscribe(),
            clock: opts.clock,
            once,
        };
        Ok(Core {
            shared,
            metrics,
            ctx,
            sets,
            nudge,
            reloaded,
        })
    }

    /// Registers the profiles, seeded with the still-valid sessions an
    /// earlier run left in the output sets' dirs (see [`Sets::adopt`]).
    fn add_states(&self, profiles: &[Arc<Profile>]) {
        let mut adopted = self
            .sets
            .adopt(&self.shared, profiles, self.ctx.clock.now());
        if !adopted.is_empty() {
            tracing::info!(
                profiles = %adopted.keys().cloned().collect::<Vec<_>>().join(","),
                "kept valid credentials from the previous run until they are refreshed"
            );
        }
        for p in profiles {
            self.shared.register(p.clone(), adopted.remove(&p.name));
        }
    }

    /// Assumes every profile once, concurrently (as the pacer allows), in
    /// the configuration's waves: sources before the profiles chained to
    /// them. Returns each refresher with its outcome.
    async fn initial_pass(
        &self,
        config: &Config,
        profiles: &[Arc<Profile>],
    ) -> Vec<(Refresher, Outcome)> {
        let mut done: Vec<(Refresher, Outcome)> = Vec::new();
        for wave in config.waves() {
            let mut set = JoinSet::new();
            for p in profiles
                .iter()
                .filter(|p| wave.iter().any(|w| w.name == p.name))
            {
                let mut r = Refresher::new(p.clone(), self.ctx.clone());
                set.spawn(async move {
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
        }
        done
    }
}

/// Installs rolecall as `<dir>/rolecall` in each output set that holds a
/// process-mode profile, and has the writer's re-check keep it installed
/// (or stop checking it).
fn install_helper_if_needed(
    sets: &Sets,
    shared: &Shared,
    config: &Config,
    opts: &Options,
) -> Result<(), WriteError> {
    let exe = opts
        .helper_binary
        .clone()
        .unwrap_or_else(|| "/proc/self/exe".into());
    sets.install_helpers(shared, config, &exe)
}

/// `rolecall once`: assume every profile, write the outputs, return.
pub async fn once(config: &Config, opts: &Options) -> Result<OnceReport, RunError> {
    let core = Core::new(config, opts, true)?;
    let profiles: Vec<Arc<Profile>> = config.profiles.iter().cloned().map(Arc::new).collect();
    core.add_states(&profiles);
    let results = core.initial_pass(config, &profiles).await;
    core.sets.write(&core.shared, core.ctx.clock.now())?;
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
    /// Asks this profile to refresh (SIGUSR1, the control socket).
    manual: Manual,
}

/// The running sidecar, between start-up and shutdown: what carries out
/// the [`Command`](crate::Command)s.
struct Supervisor {
    core: Core,
    opts: Options,
    /// Stops every task at shutdown.
    stop: CancellationToken,
    /// The running configuration.
    current: Config,
    /// One refresher task per profile, by name.
    tasks: BTreeMap<String, Task>,
    reloader: Reloader,
    /// A burst of SIGUSR1 logs one line per interval, with the count left out.
    refresh_log: LogLimit,
    /// A reload retried at the thread limit logs once a minute.
    thread_limit_log: LogLimit,
}

/// The long-running sidecar: initial pass, then one task per profile, the
/// writer, the watchers and the listeners, carrying out `commands` until
/// `shutdown` completes. `reload` re-reads the configuration on
/// [`Command::Reload`](crate::Command::Reload), on a thread of its own ([`Reloader`]).
pub async fn run(
    config: Config,
    reload: impl Fn() -> Result<Config, ConfigError> + Send + 'static,
    opts: Options,
    commands: Commands,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let core = Core::new(&config, &opts, false)?;
    core.metrics.record_config_loaded(core.ctx.clock.now());
    let stop = CancellationToken::new();
    let live = crate::state::Readiness::new(true);
    let (sender, commands) = commands.split();
    let mut background = JoinSet::new();
    start::listeners(&core, &config, &live, &stop, &mut background).await?;
    start::watchers(&core, &config, &opts, sender, &stop, &mut background);
    let tasks = start::refreshers(&core, &config, &stop, &mut background).await;
    let mut supervisor = Supervisor {
        core,
        opts,
        stop,
        current: config,
        tasks,
        reloader: Reloader::new(Box::new(reload)),
        refresh_log: LogLimit::new(LOG_INTERVAL),
        thread_limit_log: LogLimit::new(reloader::THREAD_LIMIT_LOG_INTERVAL),
    };
    supervisor.serve(commands, shutdown).await;
    live.set(false);
    supervisor.shut_down(background).await;
    tracing::info!("stopped; output files left in place");
    Ok(())
}

fn spawn_refresher(r: Refresher, first: Duration, stop: &CancellationToken) -> Task {
    let child = stop.child_token();
    let profile = r.profile.clone();
    let (r, manual) = r.manual();
    let handle = tokio::spawn(r.run(first, child.clone()));
    Task {
        profile,
        stop: child,
        handle,
        manual,
    }
}
