//! Start-up: the listeners, the watchers (each sends what it notices as a
//! [`Command`] on the supervisor's channel, or bumps the token's wake-up),
//! then the initial pass, the first write and one refresher task per
//! profile.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Core, Task, spawn_refresher};
use crate::config::{Config, Profile};
use crate::control::Command;
use crate::state::Readiness;
use crate::{Options, RunError};
use crate::{control, endpoint, health, http, watch};

/// Starts the health listener and the credentials endpoint, if configured.
pub(super) async fn listeners(
    core: &Core,
    config: &Config,
    live: &Readiness,
    stop: &CancellationToken,
    background: &mut JoinSet<()>,
) -> Result<(), RunError> {
    if let Some(addr) = config.health_addr {
        let health = health::Health {
            shared: core.shared.clone(),
            metrics: core.metrics.clone(),
            live: live.clone(),
            clock: core.ctx.clock,
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
        let tokens = endpoint::start_tokens(&core.sets, config)?;
        for token in &tokens {
            background.spawn(token.clone().run(stop.clone()));
        }
        let ep = endpoint::Endpoint {
            shared: core.shared.clone(),
            metrics: core.metrics.clone(),
            clock: core.ctx.clock,
            tokens,
            sets: core.sets.clone(),
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
    Ok(())
}

/// Starts the token watcher, the configuration file's watcher and the
/// control socket. The last two send their requests on `commands`, as the
/// signals do: a change of the file is a [`Command::Reload`]; the socket's
/// requests wait in the channel until the supervisor takes them.
pub(super) fn watchers(
    core: &Core,
    config: &Config,
    opts: &Options,
    commands: mpsc::Sender<Command>,
    stop: &CancellationToken,
    background: &mut JoinSet<()>,
) {
    background.spawn(
        watch::TokenWatcher {
            token_file: config.token_file.clone(),
            poll_interval: opts.poll_interval,
            changed: core.nudge.clone(),
            metrics: core.metrics.clone(),
            clock: core.ctx.clock,
        }
        .run(stop.clone()),
    );
    if let Some(path) = &config.config_file {
        background.spawn(
            watch::ConfigWatcher {
                config_file: path.clone(),
                poll_interval: opts.poll_interval,
                changed: commands.clone(),
                reload: Command::reload,
                loaded: config.file_digest,
                metrics: core.metrics.clone(),
            }
            .run(stop.clone()),
        );
    }
    if let Some(path) = &config.control_socket {
        background.spawn(control::serve(
            path.clone(),
            core.metrics.clone(),
            commands,
            stop.clone(),
        ));
    }
}

/// The initial pass, the first write, the writer's task, then one
/// refresher task per profile: the tasks, by profile name.
pub(super) async fn refreshers(
    core: &Core,
    config: &Config,
    stop: &CancellationToken,
    background: &mut JoinSet<()>,
) -> BTreeMap<String, Task> {
    let profiles: Vec<Arc<Profile>> = config.profiles.iter().cloned().map(Arc::new).collect();
    core.add_states(&profiles);
    let results = core.initial_pass(config, &profiles).await;
    if let Err(e) = core.sets.write(&core.shared, core.ctx.clock.now()) {
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
    // The start-up pass is the sidecar's peak: give its free pages back.
    crate::sys::trim_heap();
    results
        .into_iter()
        .map(|(r, outcome)| {
            let name = r.profile.name.clone();
            (name, spawn_refresher(r, outcome.next(), stop))
        })
        .collect()
}
