//! Readiness, computed from the table where it is asked for: a profile is
//! ready when it holds a valid session (what the endpoint serves, and what
//! the next write renders) and every file that serves it holds a valid
//! session of the same identity (what the application reads there now);
//! and the last write of the outputs succeeded. `/readyz` and the
//! `rolecall_ready` gauge both read [`Shared::not_ready`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::{ProfileState, Shared, State};
use crate::config::{CredentialsMode, Profile};

/// A session an output set's files hold for one profile, as recorded when
/// they were written: the configuration it was assumed for and its expiry
/// (never the keys themselves).
#[derive(Debug)]
pub(super) struct Written {
    identity: Arc<Profile>,
    expiration: SystemTime,
}

/// What one write pass of the outputs did, recorded at its end
/// ([`Shared::record_write`]): for each output set whose files it wrote,
/// the sessions they hold now; and whether every set's write succeeded.
#[derive(Debug, Default)]
pub struct WritePass {
    written: Vec<(String, BTreeMap<String, Written>)>,
}

impl WritePass {
    /// Notes that output set `set`'s files were written and hold these
    /// sessions: for each profile whose keys they hold, the identity
    /// (configuration) its session was assumed for and its expiry.
    pub fn wrote(
        &mut self,
        set: &str,
        sessions: impl IntoIterator<Item = (String, Arc<Profile>, SystemTime)>,
    ) {
        let held = sessions
            .into_iter()
            .map(|(name, identity, expiration)| {
                (
                    name,
                    Written {
                        identity,
                        expiration,
                    },
                )
            })
            .collect();
        self.written.push((set.to_owned(), held));
    }
}

impl Shared {
    /// Records the outcome of a write pass: what each set it wrote holds
    /// now (replacing what the set's previous write recorded), and whether
    /// every set's write succeeded (`ok`).
    pub fn record_write(&self, pass: WritePass, ok: bool) {
        let mut state = self.lock();
        state.written.extend(pass.written);
        state.outputs_written = ok;
    }

    /// Whether the last write of the outputs succeeded.
    #[cfg(test)]
    pub(crate) fn outputs_written(&self) -> bool {
        self.lock().outputs_written
    }

    /// What is not ready at `now`, with the reason (a profile's name, or
    /// `outputs`); empty when the sidecar is ready. The one definition of
    /// readiness: `/readyz` answers it, the `rolecall_ready` gauge is
    /// computed from it when scraped.
    pub fn not_ready(&self, now: SystemTime) -> Vec<(String, String)> {
        let state = self.lock();
        let mut out: Vec<(String, String)> = state
            .profiles
            .values()
            .filter_map(|s| {
                s.not_ready(now)
                    .or_else(|| state.unwritten(s, now))
                    .map(|why| (s.profile.name.clone(), why))
            })
            .collect();
        if !state.outputs_written {
            out.push(("outputs".into(), "the output files are not written".into()));
        }
        out
    }
}

impl State {
    /// Why the files that serve `entry`'s profile do not hold a valid
    /// session of its current identity at `now`, or `None` when they all
    /// do. An endpoint-only profile is served from memory alone; a file or
    /// process-mode one by every output set that holds it (a set without
    /// members, the lone writer of unit tests, holds every profile once it
    /// wrote).
    fn unwritten(&self, entry: &ProfileState, now: SystemTime) -> Option<String> {
        if entry.profile.credentials == CredentialsMode::Endpoint {
            return None;
        }
        let name = &entry.profile.name;
        let identity = entry.identity();
        let serving = self
            .members
            .iter()
            .filter(|(_, m)| m.contains(name))
            .map(|(set, _)| set)
            .chain(
                self.written
                    .keys()
                    .filter(|set| !self.members.contains_key(*set)),
            );
        for set in serving {
            // A set that never wrote: the last write did not succeed, which
            // readiness reports once for all ("outputs").
            let Some(written) = self.written.get(set) else {
                continue;
            };
            let valid = written.get(name).is_some_and(|w| {
                w.expiration > now
                    && (Arc::ptr_eq(&w.identity, identity) || w.identity.same_identity(identity))
            });
            if !valid {
                return Some(if set == crate::config::DEFAULT_SET {
                    "its session is not in the output files yet".into()
                } else {
                    format!("its session is not in output set {set}'s files yet")
                });
            }
        }
        None
    }
}
