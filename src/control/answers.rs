//! The answers the supervisor gives through the control socket: to
//! `sets`, to a reload, and to a refresh, which waits for the attempts it
//! started.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::REFRESH_WAIT;
use super::command::Reply;
use super::protocol::{self, Answer, ProfileResult, RefreshResult};
use crate::refresher::{Manual, ManualOutcome, Outcome};
use crate::reload::ReloadPlan;
use crate::session::format_time;
use crate::state::Shared;

/// The answer to `sets`: each writer's set and directory.
pub(crate) fn sets_answer<'a>(writers: impl Iterator<Item = &'a crate::output::Writer>) -> Answer {
    let mut sets: Vec<protocol::SetDir> = writers
        .map(|w| protocol::SetDir {
            name: w.set.clone(),
            dir: w.dir.display().to_string(),
        })
        .collect();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    Answer {
        ok: true,
        sets: Some(sets),
        ..Answer::default()
    }
}

/// The answer to a reload that applied `plan`.
pub(crate) fn reload_applied(plan: &ReloadPlan) -> Answer {
    let (added, changed, removed) = plan.summary();
    let own = |v: Vec<&str>| Some(v.into_iter().map(str::to_owned).collect());
    Answer {
        ok: true,
        added: own(added),
        changed: own(changed),
        removed: own(removed),
        restart_needed: own(plan.restart_needed.clone()),
        ..Answer::default()
    }
}

/// Carries out a refresh of `profile` (or all of `refreshers`, by name):
/// asks each refresher through its [`Manual`]. With a `reply`, answers on
/// a task of its own once every attempt it started ended or
/// [`REFRESH_WAIT`] passed; without one (SIGUSR1), nobody waits and
/// nothing is kept (a refresher with a request already waiting keeps that
/// one).
pub(crate) fn refresh<'a>(
    refreshers: impl Iterator<Item = (&'a str, &'a Manual)> + Clone,
    profile: Option<String>,
    shared: &Arc<Shared>,
    reply: Option<Reply>,
) {
    let mut targets = refreshers
        .clone()
        .filter(|(n, _)| profile.as_deref().is_none_or(|p| p == *n))
        .peekable();
    if let Some(name) = profile.as_deref().filter(|_| targets.peek().is_none()) {
        let names: Vec<&str> = refreshers.map(|(n, _)| n).collect();
        if let Some(reply) = reply {
            let _ = reply.send(Answer::bad_request(format!(
                "no profile {}; configured: {}",
                crate::text::printable(name),
                names.join(", ")
            )));
        }
        return;
    }
    let Some(reply) = reply else {
        for (_, manual) in targets {
            manual.ask(None);
        }
        return;
    };
    let asked: Vec<(String, Option<oneshot::Receiver<ManualOutcome>>)> = targets
        .map(|(name, manual)| {
            let (tx, rx) = oneshot::channel();
            (name.to_owned(), manual.ask(Some(tx)).then_some(rx))
        })
        .collect();
    let shared = shared.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        let mut results = Vec::new();
        for (name, asked) in asked {
            let outcome = match asked {
                None => Some(ManualOutcome::Skipped(
                    "a refresh of this profile was already asked for".into(),
                )),
                Some(rx) => tokio::time::timeout_at(deadline, rx)
                    .await
                    .ok()
                    .and_then(Result::ok),
            };
            results.push(profile_result(&shared, name, outcome));
        }
        let ok = results
            .iter()
            .all(|r| matches!(r.result, RefreshResult::Refreshed | RefreshResult::Skipped));
        let _ = reply.send(Answer {
            ok,
            profiles: Some(results),
            ..Answer::default()
        });
    });
}

/// One profile's line of a refresh's answer, from what its refresher said
/// (`None`: no word in time) and its state.
fn profile_result(shared: &Shared, name: String, outcome: Option<ManualOutcome>) -> ProfileResult {
    let state = shared.get(&name);
    let mut class = None;
    let (result, expiration, detail) = match outcome {
        Some(ManualOutcome::Attempted(Outcome::Refreshed { .. })) => (
            RefreshResult::Refreshed,
            state
                .and_then(|s| s.session)
                .map(|s| format_time(s.expiration)),
            None,
        ),
        Some(ManualOutcome::Attempted(Outcome::Failed { class: c, .. })) => {
            class = Some(c.as_str().to_owned());
            (
                RefreshResult::Failed,
                None,
                Some(
                    state
                        .and_then(|s| s.last_error)
                        .unwrap_or_else(|| "the refresh failed; see the sidecar's logs".into()),
                ),
            )
        }
        Some(ManualOutcome::Skipped(why)) => (RefreshResult::Skipped, None, Some(why)),
        None => (
            RefreshResult::Pending,
            None,
            Some(format!(
                "no result within {} s; see rolecall status and the sidecar's logs",
                REFRESH_WAIT.as_secs()
            )),
        ),
    };
    ProfileResult {
        profile: name,
        result,
        expiration,
        detail,
        class,
    }
}
