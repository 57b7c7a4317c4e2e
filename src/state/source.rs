//! The source of every session under `identity: pod-identity`: the base
//! profile (the agent's session), as `status.json` shows it whether or not
//! it is published.

use std::time::SystemTime;

use super::Shared;

/// The base profile's session and the agent it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The base profile's name (`pod-identity`, or its published name).
    pub name: String,
    /// Whether an output set publishes it.
    pub published: bool,
    /// Its session's expiry, if it holds one.
    pub expiration: Option<SystemTime>,
    /// Its last failure (`CODE: message`), until a refresh succeeds.
    pub last_error: Option<String>,
    /// The agent's URL.
    pub agent: String,
}

impl Shared {
    /// Records the Pod Identity agent's URL (`None` under web-identity).
    pub fn set_source(&self, agent: Option<String>) {
        self.lock().agent = agent;
    }

    /// The base profile's state under pod-identity; `None` under
    /// web-identity.
    pub fn source(&self) -> Option<Source> {
        let state = self.lock();
        let agent = state.agent.clone()?;
        let base = state.profiles.values().find(|s| s.profile.pod_identity)?;
        let name = base.profile.name.clone();
        Some(Source {
            published: state.members.values().any(|m| m.contains(&name)),
            name,
            expiration: base.session.as_ref().map(|s| s.expiration),
            last_error: base.last_error.clone(),
            agent,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::Profile;
    use crate::metrics::RefreshResult;

    #[test]
    fn the_source_is_the_base_profile_under_pod_identity_only() {
        let shared = Shared::new();
        let base = Arc::new(Profile {
            pod_identity: true,
            ..Profile::new("pod-identity", "")
        });
        let reader = Arc::new(Profile::new("reader", "arn:aws:iam::111122223333:role/r"));
        shared.register(base.clone(), None);
        shared.register(reader, None);
        assert_eq!(shared.source(), None, "web-identity: no agent");
        shared.set_source(Some("http://169.254.170.23/v1/credentials".into()));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        shared.record_failure(
            &base,
            RefreshResult::TransientError,
            "Timeout: t".into(),
            at,
        );
        let s = shared.source().unwrap();
        assert_eq!(
            (s.name.as_str(), s.published, s.expiration),
            ("pod-identity", false, None)
        );
        assert_eq!(s.last_error.as_deref(), Some("Timeout: t"));
        assert_eq!(s.agent, "http://169.254.170.23/v1/credentials");
        shared.set_members("default", ["reader".to_owned(), "pod-identity".to_owned()]);
        assert!(shared.source().unwrap().published);
    }
}
