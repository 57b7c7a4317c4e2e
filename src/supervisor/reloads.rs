//! The end of a reload: a valid configuration applied (its
//! [`ReloadPlan`] carried out), or a refused one recorded; either way, the
//! answer for those who asked through the control socket.

use std::sync::Arc;
use std::time::Duration;

use super::reloader::{Finished, RELOAD_THREAD_RETRY, Read};
use super::{Core, Supervisor, install_helper_if_needed, spawn_refresher};
use crate::config::Config;
use crate::control::{answers, protocol::Answer};
use crate::ratelimit::LogLimit;
use crate::refresher::Refresher;
use crate::reload::ReloadPlan;
use crate::sys::limits::{Limit, ThreadError};

impl Supervisor {
    /// Carries out the reload that `finished` and answers those who
    /// waited for it.
    pub(super) fn reloaded(&mut self, finished: Finished) {
        let Finished { read, waiting } = finished;
        waiting.answer(&self.apply(read));
    }

    /// A valid configuration replaces the running one; any other result
    /// is recorded, and the running configuration kept.
    fn apply(&mut self, read: Read) -> Answer {
        let new = match read {
            Ok(Ok(new)) => new,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reload refused; keeping the running configuration");
                let problems = e.problems.iter();
                let problems = problems.map(|p| format!("{}: {}", p.origin, p.message));
                return self.refuse(problems.collect());
            }
            Err(e) => return not_read(&self.core, &self.thread_limit_log, e),
        };
        if let Some(why) = crate::reload::refused(&self.current, &new) {
            tracing::error!(error = %why, "reload refused");
            return self.refuse(vec![why]);
        }
        new.log_warnings(Some(&self.current));
        let core = &self.core;
        apply_members(core, &new);
        if let Err(e) = install_helper_if_needed(&core.sets, &core.shared, &new, &self.opts) {
            tracing::error!(error = %e, "cannot install the credential_process helper");
        }
        let running = self
            .tasks
            .iter()
            .map(|(n, t)| (n.clone(), t.profile.clone()))
            .collect();
        let plan = crate::reload::plan(&self.current, &new, &running);
        let answer = answers::reload_applied(&plan);
        self.apply_plan(plan);
        self.core
            .metrics
            .count_config_reload(true, self.core.ctx.clock.now());
        self.core.sets.show_rejected(&self.core.shared, Vec::new());
        self.current = new;
        answer
    }

    /// A refused reload: counted as failed, its `problems` shown (status),
    /// the running configuration kept.
    fn refuse(&self, problems: Vec<String>) -> Answer {
        let core = &self.core;
        core.metrics
            .count_config_reload(false, core.ctx.clock.now());
        core.sets.show_rejected(&core.shared, problems.clone());
        Answer::refused(problems)
    }
}

/// The reload's thread did not return a configuration. At the thread
/// limit the reload is retried every [`RELOAD_THREAD_RETRY`]: the first
/// failure is logged, the retries that fail again once per
/// [`super::reloader::THREAD_LIMIT_LOG_INTERVAL`] with the count left out (each is counted
/// in `rolecall_limit_reached_total`).
fn not_read(core: &Core, log: &LogLimit, e: ThreadError) -> Answer {
    match e {
        e @ ThreadError::Unavailable { .. } => {
            // Not the file's fault: nothing is recorded against it.
            core.metrics.count_limit_reached(Limit::Threads, "reload");
            let hint = Limit::Threads.hint();
            let retry_in_s = RELOAD_THREAD_RETRY.as_secs();
            match log.admit() {
                Some(suppressed) => {
                    tracing::error!(error = %e, hint = %hint, retry_in_s, suppressed, "reload not carried out; keeping the running configuration")
                }
                None => tracing::debug!(error = %e, retry_in_s, "reload not carried out again"),
            }
            Answer::refused(vec![format!(
                "{e}; {hint}; the reload is tried again in {retry_in_s} s"
            )])
        }
        e => {
            tracing::error!(error = %e, "reload refused (the reload task failed); keeping the running configuration");
            let problems = vec![format!("the reload task failed: {e}")];
            core.metrics
                .count_config_reload(false, core.ctx.clock.now());
            core.sets.show_rejected(&core.shared, problems.clone());
            Answer::refused(problems)
        }
    }
}

/// Applies the output sets' new members (a reload may move a profile from
/// one container's set to another's). Sets added only start at a restart
/// (their volumes are in the pod spec); a running set the configuration no
/// longer names serves nothing from now on (no profile in its files, 403
/// for its token) and is gone at the restart.
fn apply_members(core: &Core, new: &Config) {
    let (added, gone) = core.sets.publish_members(&core.shared, new);
    if !added.is_empty() || !gone.is_empty() {
        tracing::warn!(
            added = %added.join(","),
            removed = %gone.join(","),
            "output sets only change after a restart: an added set starts then; a removed (or renamed) set serves no profile from now on (its files are emptied, its endpoint token refused) and disappears then; the other sets' members are updated"
        );
    }
}

impl Supervisor {
    /// Carries out a reload's [`ReloadPlan`]: warns about options that need
    /// a restart, stops removed and changed profiles, starts new and changed
    /// ones (keeping a session the change leaves valid).
    fn apply_plan(&mut self, plan: ReloadPlan) {
        let (core, tasks, stop) = (&self.core, &mut self.tasks, &self.stop);
        if !plan.restart_needed.is_empty() {
            tracing::warn!(
                options = %plan.restart_needed.join(","),
                "these options only take effect after a restart; the running values are kept"
            );
        }
        let (added, changed, removed) = plan.summary();
        let (added, changed, removed) = (added.join(","), changed.join(","), removed.join(","));
        for name in &plan.removed {
            if let Some(t) = tasks.remove(name) {
                t.stop.cancel();
            }
            core.shared.remove(name);
        }
        for start in plan.start {
            if let Some(t) = tasks.remove(&start.profile.name) {
                t.stop.cancel();
            }
            let profile = Arc::new(start.profile);
            core.shared.upsert(profile.clone(), start.keep_session);
            let r = Refresher::new(profile.clone(), core.ctx.clone());
            tasks.insert(
                profile.name.clone(),
                spawn_refresher(r, Duration::ZERO, stop),
            );
        }
        tracing::info!(added = %added, changed = %changed, removed = %removed, "configuration reloaded");
        // Unchanged profiles that are failing retry now, with the reload's own
        // wake-up (not the token's).
        core.reloaded.send_modify(|g| *g = g.wrapping_add(1));
        core.shared.writes().request();
    }
}
