//! `identity: pod-identity`: the four options of the EKS Pod Identity
//! agent, checked in table order after `token_file` (§2.1 of issue 24's
//! design), and what tells one identity's options from the other's.
//!
//! EKS injects `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` into every container of a pod
//! with an association, and the IRSA webhook `AWS_WEB_IDENTITY_TOKEN_FILE`
//! into every container of a pod whose service account has a role: the
//! other identity's variables are therefore ignored (a warning says so),
//! while the same option set by a flag or the file is an error.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::checks::{check_profile_name, word};
use super::options::Layer;
use super::sources::{Merged, RawProfiles};
use super::validate::{Globals, check_path, validate};
use super::values::{Problems, Sourced};
use super::{Config, Identity, POD_IDENTITY_PROFILE, PodIdentity};
use crate::text::printable;

pub use crate::aws::{
    POD_IDENTITY_ENDPOINT as DEFAULT_ENDPOINT, POD_IDENTITY_TAG_KEYS as EKS_TAG_KEYS,
    POD_IDENTITY_TOKEN_FILE as DEFAULT_TOKEN_FILE,
};

impl Identity {
    /// The option's word: `web-identity` or `pod-identity`.
    pub fn name(&self) -> &'static str {
        match self {
            Identity::WebIdentity => "web-identity",
            Identity::PodIdentity(_) => "pod-identity",
        }
    }

    /// The agent and the base profile, under pod-identity.
    pub fn pod(&self) -> Option<&PodIdentity> {
        match self {
            Identity::WebIdentity => None,
            Identity::PodIdentity(p) => Some(p),
        }
    }
}

impl Config {
    /// The permissions besides `sts:AssumeRole` that `p`'s role must grant
    /// its source in its trust policy: [`Profile::extra_trust_actions`],
    /// and under pod-identity always `sts:TagSession` (every chained session
    /// carries the agent's six transitive tags, unless the association
    /// sets disableSessionTags).
    pub fn trust_actions(&self, p: &super::Profile) -> Vec<&'static str> {
        let mut out = p.extra_trust_actions();
        let tagged = self.identity.pod().is_some() && !p.pod_identity;
        if tagged && !out.contains(&"sts:TagSession") {
            out.insert(0, "sts:TagSession");
        }
        out
    }
}

/// A remark on a valid configuration, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Logged at debug level (expected on many pods), else at warn.
    pub debug: bool,
    pub origin: String,
    pub message: String,
}

/// The pod-identity options as the rows above `pod_identity_profile` left
/// them, for its check to build [`Identity`].
#[derive(Debug, Default)]
pub(super) struct Raw {
    pub pod: bool,
    pub endpoint: Option<String>,
    /// Where `token_file` was set (rule 3 judges it under pod-identity).
    pub token_file_at: Option<Sourced>,
}

/// Whether `s` came from the environment (not a flag nor the file).
fn from_env(s: &Sourced) -> bool {
    s.origin.starts_with("environment ")
}

/// A pod-identity option under web-identity: from the environment it is
/// ignored (EKS injects it on every associated pod, and such a pod may use
/// IRSA), from a flag or the file it is an error.
fn web_only(s: Option<&Sourced>, key: &str, g: &mut Globals, p: &mut Problems) {
    let Some(s) = s else { return };
    if from_env(s) {
        g.config.warnings.push(Warning {
            debug: true,
            origin: s.origin.clone(),
            message: format!("ignored: {key} is only used with identity: pod-identity"),
        });
    } else {
        p.at(
            s,
            format!("{key} is only used with identity: pod-identity (this configuration uses web-identity)"),
        );
    }
}

pub(super) fn identity(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    let words = [("web-identity", false), ("pod-identity", true)];
    let check = |v: &str| {
        word(
            v,
            &words,
            "is not an identity: use web-identity or pod-identity",
        )
    };
    g.pod.pod = validate(s, p, check).unwrap_or(false);
}

pub(super) fn endpoint(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    if !g.pod.pod {
        // EKS's Pod Identity variable, and no web-identity token named
        // anywhere (the IRSA webhook would have set one): most likely a Pod
        // Identity cluster and a configuration that forgot to say so.
        if let Some(s) = s.filter(|s| from_env(s) && g.pod.token_file_at.is_none()) {
            g.config.warnings.push(Warning {
                debug: false,
                origin: s.origin.clone(),
                message: "EKS Pod Identity's agent is set in this container, and no web-identity token is (AWS_WEB_IDENTITY_TOKEN_FILE, token_file): on a cluster with Pod Identity associations, set identity: pod-identity".into(),
            });
            return;
        }
        return web_only(s, "pod_identity_endpoint", g, p);
    }
    g.pod.endpoint = match s {
        None => Some(DEFAULT_ENDPOINT.into()),
        Some(s) => validate(s, p, check_endpoint),
    };
}

/// Under pod-identity, the token rolecall reads ([`Config::token_file`]);
/// `token_file` (the web identity's) is then refused from a flag or the
/// file, ignored from the environment.
pub(super) fn token_file(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    if !g.pod.pod {
        return web_only(s, "pod_identity_token_file", g, p);
    }
    g.config.token_file = s.map_or_else(|| DEFAULT_TOKEN_FILE.into(), |s| check_path(s, p));
    match g.pod.token_file_at.take() {
        Some(t) if from_env(&t) => g.config.warnings.push(Warning {
            debug: false,
            origin: t.origin.clone(),
            message: "ignored with identity: pod-identity (the IRSA webhook set it: this pod has both an IAM role for its service account and a Pod Identity association); rolecall reads pod_identity_token_file".into(),
        }),
        Some(t) => p.at(
            &t,
            "token_file is the web-identity token; with identity: pod-identity the token is pod_identity_token_file (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)",
        ),
        None => {}
    }
}

/// The last of the rows: builds [`Config::identity`].
pub(super) fn profile(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    if !g.pod.pod {
        return web_only(s, "pod_identity_profile", g, p);
    }
    let name = match s {
        None => Some(POD_IDENTITY_PROFILE.to_owned()),
        Some(s) => validate(s, p, |v| check_profile_name(v).map(|()| v.to_owned())),
    };
    // A bad value is a problem already: the load fails.
    let (Some(endpoint), Some(name)) = (g.pod.endpoint.clone(), name) else {
        return;
    };
    g.config.identity = Identity::PodIdentity(PodIdentity {
        endpoint,
        profile: name,
        published: s.is_some(),
    });
}

/// Under pod-identity, the `AWS_ROLE_ARN` fallback profile is dropped:
/// that variable is the IRSA webhook's role, not one to chain to.
pub(super) fn drop_fallback(merged: &mut Merged, g: &mut Globals) {
    if let Some(origin) = merged.fallback.take().filter(|_| g.pod.pod) {
        merged.profiles.clear();
        g.config.warnings.push(Warning {
            debug: true,
            origin,
            message: "ignored with identity: pod-identity: it is the web identity's role (IRSA); name the roles to chain to under profiles".into(),
        });
    }
}

/// The base's name is its own: `pod_identity_profile` must not name a
/// configured profile, and unset, the reserved [`POD_IDENTITY_PROFILE`]
/// must not be one.
pub(super) fn reserved(b: &PodIdentity, l: &Layer, merged: &RawProfiles, p: &mut Problems) {
    let Some((name, _)) = merged.get(&b.profile) else {
        return;
    };
    match &l.pod_identity_profile {
        Some(s) => p.at(
            s,
            format!(
                "\"{}\" is also a configured profile: the agent's session needs a name of its own",
                printable(&b.profile)
            ),
        ),
        None => p.at(
            name,
            format!(
                "\"{POD_IDENTITY_PROFILE}\" is the name of the Pod Identity agent's session (identity: pod-identity): rename this profile, or set pod_identity_profile to publish the agent's session under a name"
            ),
        ),
    }
}

/// Under pod-identity, a profile's `kubernetes_tags` or `tags` that set
/// keys the base session already carries as transitive tags: allowed, but
/// STS refuses a key the session inherits (its `AssumeRole` reference), so
/// they work only when the association sets disableSessionTags, which
/// rolecall cannot see.
pub(super) fn tag_warnings(c: &Config, origin: impl Fn(&str) -> String) -> Vec<Warning> {
    if c.identity.pod().is_none() {
        return Vec::new();
    }
    let eks = |k: &str| EKS_TAG_KEYS.iter().any(|e| e.eq_ignore_ascii_case(k));
    let why = "the Pod Identity session already carries these keys as transitive tags unless the association sets disableSessionTags, and STS refuses a tag key the session inherits; use them only with disableSessionTags";
    let mut out = Vec::new();
    for p in &c.profiles {
        let keys: Vec<&str> = p
            .tags
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| eks(k))
            .collect();
        let mut what = Vec::new();
        if p.kubernetes_tags {
            what.push("kubernetes_tags: true".to_owned());
        }
        if !keys.is_empty() {
            what.push(format!("tags {}", keys.join(", ")));
        }
        if !what.is_empty() {
            out.push(Warning {
                debug: false,
                origin: origin(&p.name),
                message: format!("{} under identity: pod-identity: {why}", what.join(" and ")),
            });
        }
    }
    out
}

/// `http://HOST[:PORT]/PATH` with HOST an IP literal or `localhost` (no
/// DNS lookup is made), plain HTTP only to loopback or the agent's own
/// addresses (the SDKs' rule: the token must not cross the network in
/// clear). Returned as given.
pub fn check_endpoint(v: &str) -> Result<String, String> {
    // Shown masked after the scheme when it holds an `@`: a user or
    // password never reaches a message.
    let shown = match v.find("://") {
        _ if !v.contains('@') => v.to_owned(),
        Some(i) => format!("{}***", &v[..i + 3]),
        None => "***".to_owned(),
    };
    let bad = |why: &str| Err(format!("\"{}\" {why}", printable(&shown)));
    let Some(rest) = v.strip_prefix("http://") else {
        return bad(
            "is not an http:// URL: rolecall talks to the node-local agent over plain HTTP, such as http://169.254.170.23/v1/credentials",
        );
    };
    if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not have a query, a fragment, spaces or control characters");
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if path.is_empty() {
        return bad(
            "has no path: use http://HOST[:PORT]/PATH, such as http://169.254.170.23/v1/credentials",
        );
    }
    if authority.contains('@') {
        return bad("must not hold a user or password");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, port)) => (h, port),
            None => return bad("has an unclosed [ in its host"),
        },
        None => match authority.rsplit_once(':') {
            Some((h, _)) => (h, &authority[h.len()..]),
            None => (authority, ""),
        },
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .and_then(|d| d.parse::<u16>().ok())
            .is_some_and(|n| n > 0 && !port[1..].starts_with('+'));
    if !port_ok {
        return bad("has a bad port: use 1-65535");
    }
    let ip = if host.eq_ignore_ascii_case("localhost") {
        None
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) if authority.starts_with('[') == ip.is_ipv6() => Some(ip),
            _ => {
                return bad(
                    "must name an IP address or localhost (no DNS lookup is made): the agent is http://169.254.170.23/v1/credentials or http://[fd00:ec2::23]/v1/credentials",
                );
            }
        }
    };
    let agent: [IpAddr; 2] = [
        [169, 254, 170, 23].into(),
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23].into(),
    ];
    if ip.is_some_and(|ip| !ip.is_loopback() && !agent.contains(&ip)) {
        return bad(
            "is neither loopback nor the agent's address (169.254.170.23 or [fd00:ec2::23]): the token would cross the network in clear",
        );
    }
    Ok(v.to_owned())
}

/// The web identity's token, `None` under pod-identity (`token_file`'s
/// restart rule).
pub(super) fn web_token(c: &Config) -> Option<&Path> {
    matches!(c.identity, Identity::WebIdentity).then_some(c.token_file.as_path())
}

/// The Pod Identity token, `None` under web-identity.
pub(super) fn pod_token(c: &Config) -> Option<&PathBuf> {
    matches!(c.identity, Identity::PodIdentity(_)).then_some(&c.token_file)
}

/// The identity's name.
pub(super) fn kind(c: &Config) -> &'static str {
    c.identity.name()
}

/// The agent's URL, `None` under web-identity.
pub(super) fn endpoint_of(c: &Config) -> Option<&str> {
    match &c.identity {
        Identity::WebIdentity => None,
        Identity::PodIdentity(p) => Some(&p.endpoint),
    }
}

#[cfg(test)]
mod tests;
