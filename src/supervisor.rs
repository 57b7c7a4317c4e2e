//! The supervisor: starts the listeners, the token watcher, the writer and
//! one refresher task per profile; carries out reloads ([`crate::reload`])
//! and manual refreshes; stops everything on shutdown.
//!
//! Start-up is an initial pass (every profile assumed once, sources before
//! the profiles chained to them, a bounded number at a time), one write of
//! the outputs, then the long-running tasks.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, ConfigError, Profile};
use crate::metrics::Metrics;
use crate::output::{Sets, WriteError};
use crate::refresher::{Context, Manual, Outcome, Refresher};
use crate::state::Shared;
use crate::sts::Sts;
use crate::{Control, OnceReport, Options, RunError};
use crate::{control, endpoint, health, http, ratelimit, sts, watch};

mod reloads;

/// The pieces every mode shares.
struct Core {
    shared: Arc<Shared>,
    metrics: Metrics,
    ctx: Context,
    /// One writer per output set (each with its process-mode helper).
    sets: Sets,
    nudge: Arc<tokio_watch::Sender<u64>>,
    refresh_all: tokio_watch::Sender<u64>,
    clock: Clock,
}

impl Core {
    fn new(config: &Config, opts: &Options, once: bool) -> Result<Core, RunError> {
        let metrics = Metrics::new();
        let shared = Shared::with_metrics(metrics.clone());
        sts::warn_plaintext_endpoints(&config.profiles);
        let sets = Sets::new(config, opts.jitter, opts.clock, &metrics);
        sets.prepare()?;
        sets.publish_members(&shared, config);
        install_helper_if_needed(&sets, &shared, config, opts)?;
        let nudge = Arc::new(tokio_watch::channel(0u64).0);
        let refresh_all = tokio_watch::channel(0u64).0;
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
            token_file: config.token_file.clone(),
            jitter: opts.jitter,
            spread: opts.spread,
            token_changed: nudge.subscribe(),
            refresh_all: refresh_all.subscribe(),
            clock: opts.clock,
            once,
        };
        Ok(Core {
            shared,
            metrics,
            ctx,
            sets,
            nudge,
            refresh_all,
            clock: opts.clock,
        })
    }

    /// Registers the profiles, seeded with the still-valid sessions an
    /// earlier run left in the output sets' dirs (see [`Sets::adopt`]).
    fn add_states(&self, profiles: &[Arc<Profile>]) {
        let mut adopted = self.sets.adopt(&self.shared, profiles, self.clock.now());
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
    core.sets.write(&core.shared, core.clock.now())?;
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
    /// Asks this profile alone to refresh (the control socket).
    manual: Manual,
}

/// The long-running sidecar: initial pass, then one task per profile, the
/// writer, the token watcher and the health server, until `shutdown`
/// completes. `reload` re-reads the configuration on [`Control::Reload`],
/// on a thread of its own: reading and parsing a file must not stop the
/// probes, the refreshers or shutdown (the runtime has one thread).
pub async fn run(
    config: Config,
    reload: impl Fn() -> Result<Config, ConfigError> + Send + 'static,
    opts: Options,
    mut controls: mpsc::Receiver<Control>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let core = Core::new(&config, &opts, false)?;
    core.metrics.record_config_loaded(core.clock.now());
    let stop = CancellationToken::new();
    let live = crate::state::Readiness::new(true);
    let mut background = JoinSet::new();
    if let Some(addr) = config.health_addr {
        let health = health::Health {
            shared: core.shared.clone(),
            metrics: core.metrics.clone(),
            live: live.clone(),
            clock: core.clock,
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
        let tokens = endpoint::start_tokens(&core.sets, &config)?;
        for token in &tokens {
            background.spawn(token.clone().run(stop.clone()));
        }
        let ep = endpoint::Endpoint {
            shared: core.shared.clone(),
            metrics: core.metrics.clone(),
            clock: core.clock,
            tokens,
            sets_declared: config.declared_sets(),
        };
        let metrics = core.metrics.clone();
        let (bound, task) = http::serve(addr, move |req| ep.respond(req), metrics, stop.clone())
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        let token_files: Vec<String> = core
            .sets
            .writers()
            .map(|w| w.dir.join(endpoint::TOKEN_FILE).display().to_string())
            .collect();
        tracing::info!(addr = %bound, token_file = %token_files.join(","), "credentials endpoint listening");
        background.spawn(async move {
            let _ = task.await;
        });
    }
    background.spawn(
        watch::TokenWatcher {
            token_file: config.token_file.clone(),
            poll_interval: opts.poll_interval,
            changed: core.nudge.clone(),
            metrics: core.metrics.clone(),
            clock: core.clock,
        }
        .run(stop.clone()),
    );
    // A change of the configuration file asks for a reload, as SIGHUP does.
    let (config_tx, mut config_changed) = mpsc::channel::<()>(1);
    if let Some(path) = &config.config_file {
        background.spawn(
            watch::ConfigWatcher {
                config_file: path.clone(),
                poll_interval: opts.poll_interval,
                changed: config_tx,
                loaded: config.file_digest,
                metrics: core.metrics.clone(),
            }
            .run(stop.clone()),
        );
    }
    // `rolecall reload` and `rolecall refresh` (kubectl exec): requests
    // wait in the channel until the loop below takes them.
    let (commands_tx, mut commands) = mpsc::channel::<control::Command>(4);
    if let Some(path) = &config.control_socket {
        background.spawn(control::serve(
            path.clone(),
            core.metrics.clone(),
            commands_tx,
            stop.clone(),
        ));
    }

    let profiles: Vec<Arc<Profile>> = config.profiles.iter().cloned().map(Arc::new).collect();
    core.add_states(&profiles);
    let results = core.initial_pass(&config, &profiles).await;
    if let Err(e) = core.sets.write(&core.shared, core.clock.now()) {
        tracing::error!(error = %e, "initial write failed; retrying with backoff");
    }
    let ok = results.iter().filter(|(_, o)| o.is_success()).count();
    tracing::info!(
        profiles = results.len(),
        ok,
        failing = results.len() - ok,
        output_dir = %core.sets.writers().map(|w| w.dir.display().to_string()).collect::<Vec<_>>().join(","),
        "started"
    );
    background.spawn(core.sets.clone().run(core.shared.clone(), stop.clone()));

    let mut tasks: BTreeMap<String, Task> = BTreeMap::new();
    for (r, outcome) in results {
        let name = r.profile.name.clone();
        tasks.insert(name, spawn_refresher(r, outcome.next(), &stop));
    }

    let mut current = config;
    // One reload runs at a time, on a thread of its own (not tokio's
    // blocking pool, which panics when no thread can be started: see
    // `sys::limits`); a SIGHUP during it queues one more (the file may have
    // changed after it was read). A reload that could not start its thread
    // is answered as failed and tried again after `RELOAD_THREAD_RETRY`.
    let reload = Arc::new(std::sync::Mutex::new(reload));
    let start_reload = || {
        let reload = reload.clone();
        crate::sys::limits::run_on_thread(
            "rolecall-reload",
            "the configuration reload",
            move || (reload.lock().unwrap_or_else(|e| e.into_inner()))(),
        )
    };
    let mut reloading: Option<crate::sys::limits::OnThread<Result<Config, ConfigError>>> = None;
    let mut reload_again = false;
    let mut reload_retry: Option<tokio::time::Instant> = None;
    let mut reload_waiters = control::ReloadWaiters::default();
    // A burst of SIGUSR1 logs one line per interval, with the count left out.
    let refresh_log = ratelimit::LogLimit::new(ratelimit::LOG_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            ctl = next_control(&mut controls, &mut config_changed) => match ctl {
                Control::RefreshNow => {
                    if let Some(suppressed) = refresh_log.admit() {
                        tracing::info!(suppressed, "refreshing every profile now (at most once per profile every 5 s)");
                    }
                    core.refresh_all.send_modify(|g| *g = g.wrapping_add(1));
                }
                Control::Reload if reloading.is_some() => reload_again = true,
                Control::Reload => reloading = Some(start_reload()),
            },
            Some(cmd) = commands.recv() => match cmd {
                control::Command::Reload(reply) => {
                    reload_waiters.wait(reply, reloading.is_some());
                    if reloading.is_some() {
                        reload_again = true;
                    } else {
                        reloading = Some(start_reload());
                    }
                }
                control::Command::Refresh { profile, reply } => {
                    let manual = tasks.iter().map(|(n, t)| (n.clone(), t.manual.clone())).collect();
                    control::refresh(manual, profile, core.shared.clone(), reply);
                }
                control::Command::Sets(reply) => {
                    let _ = reply.send(control::sets_answer(core.sets.writers()));
                }
            },
            done = async { reloading.as_mut().expect("guarded").await }, if reloading.is_some() => {
                if matches!(done, Err(crate::sys::limits::ThreadError::Unavailable { .. })) {
                    reload_retry = Some(tokio::time::Instant::now() + reloads::RELOAD_THREAD_RETRY);
                }
                reloading = reload_again.then(start_reload);
                reload_again = false;
                let answer = reloads::finish(&core, &mut tasks, &mut current, done, &opts, &stop);
                reload_waiters.answer(&answer);
            },
            () = async { tokio::time::sleep_until(reload_retry.expect("guarded")).await }, if reload_retry.is_some() => {
                reload_retry = None;
                if reloading.is_some() {
                    reload_again = true;
                } else {
                    reloading = Some(start_reload());
                }
            },
            _ = &mut shutdown => break,
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

/// The next request for the supervisor: a control message (a signal), or a
/// reload because the configuration file changed, which is handled exactly
/// as SIGHUP. Pending while neither comes (or both channels are closed).
async fn next_control(
    controls: &mut mpsc::Receiver<Control>,
    config_changed: &mut mpsc::Receiver<()>,
) -> Control {
    tokio::select! {
        Some(ctl) = controls.recv() => ctl,
        Some(()) = config_changed.recv() => Control::Reload,
        else => std::future::pending().await,
    }
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
