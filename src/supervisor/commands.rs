//! Carrying out the [`Command`]s: the supervisor's loop, one command at a
//! time, whoever sent it (a signal, the configuration watcher, the control
//! socket).

use std::future::Future;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Supervisor;
use crate::control::{Command, Reply, answers};

impl Supervisor {
    /// Carries out `commands` as they come, and the reloads they start,
    /// until `shutdown` completes. The channel closes on return: a sender
    /// still waiting for room is told the sidecar stops.
    pub(super) async fn serve(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                Some(command) = commands.recv() => self.carry_out(command),
                finished = self.reloader.finished() => self.reloaded(finished),
                () = &mut shutdown => break,
            }
        }
    }

    /// Carries out one command. Never waits: a reload runs on its thread
    /// (its end comes back to [`Supervisor::serve`]), and a refresh with a
    /// reply waits for its outcome on a task of its own.
    fn carry_out(&mut self, command: Command) {
        match command {
            Command::Reload(reply) => self.reloader.ask(reply),
            Command::Refresh { profile, reply } => self.refresh(profile, reply),
            Command::Sets(reply) => {
                let _ = reply.send(answers::sets_answer(self.core.sets.writers()));
            }
        }
    }

    /// Asks `profile`'s refresher (or every one) to refresh now, through
    /// each one's [`Manual`](crate::refresher::Manual); `reply` gets what
    /// each did. Without a reply (SIGUSR1) nobody waits: each refreshes now
    /// or when its 5 s since its last attempt are up.
    fn refresh(&self, profile: Option<String>, reply: Option<Reply>) {
        if profile.is_none()
            && reply.is_none()
            && let Some(suppressed) = self.refresh_log.admit()
        {
            tracing::info!(
                suppressed,
                "refreshing every profile now (at most once per profile every 5 s)"
            );
        }
        let manual = self.tasks.iter().map(|(n, t)| (n.as_str(), &t.manual));
        answers::refresh(manual, profile, &self.core.shared, reply);
    }

    /// Stops every task, waiting for them at most `stop_grace`.
    pub(super) async fn shut_down(self, mut background: JoinSet<()>) {
        self.stop.cancel();
        let handles = self.tasks.into_values().map(|t| t.handle);
        let all = async {
            for h in handles {
                let _ = h.await;
            }
            while background.join_next().await.is_some() {}
        };
        if tokio::time::timeout(self.opts.stop_grace, all)
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop in time");
        }
    }
}
