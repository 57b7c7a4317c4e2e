//! The answers the supervisor gives through the control socket: to
//! `sets`, to a reload, and to a refresh, which waits for the attempts it
//! started.

use std::collections::BTreeMap;
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
/// asks each refresher, then answers, on a task of its own, once every
/// attempt it started ended or [`REFRESH_WAIT`] passed.
pub(crate) fn refresh(
    refreshers: BTreeMap<String, Manual>,
    profile: Option<String>,
    shared: Arc<Shared>,
    reply: Reply,
) {
    let targets: Vec<(String, Manual)> = match profile {
        None => refreshers.into_iter().collect(),
        Some(name) => match refreshers.get(&name) {
            Some(m) => vec![(name, m.clone())],
            None => {
                let names: Vec<&str> = refreshers.keys().map(String::as_str).collect();
                let _ = reply.send(Answer::bad_request(format!(
                    "no profile {}; configured: {}",
                    crate::text::printable(&name),
                    names.join(", ")
                )));
                return;
            }
        },
    };
    let asked: Vec<(String, Result<oneshot::Receiver<ManualOutcome>, ()>)> = targets
        .into_iter()
        .map(|(name, manual)| {
            let (tx, rx) = oneshot::channel();
            let sent = manual.try_send(tx).map(|()| rx).map_err(|_| ());
            (name, sent)
        })
        .collect();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        let mut results = Vec::new();
        for (name, asked) in asked {
            let outcome = match asked {
                Err(()) => Some(ManualOutcome::Skipped(
                    "a refresh of this profile was already asked for".into(),
                )),
                Ok(rx) => tokio::time::timeout_at(deadline, rx)
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
