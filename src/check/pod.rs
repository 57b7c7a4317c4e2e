//! `rolecall check` under `identity: pod-identity`: the agent, the Pod
//! Identity token, the association and its role's trust policy, and for
//! each role profile the trust policy its role needs (the association's
//! role may assume it, for the pod's namespace and service account); with
//! `--assume`, one agent call, then one `AssumeRole` per profile with the
//! agent's session. Nothing is written.

use super::issuer::Entry;
use crate::config::{Config, PodIdentity, Profile};
use crate::token::Claims;
use crate::trust;

/// The placeholders of what neither the configuration nor the token says.
const CLUSTER: &str = "CLUSTER";
const ACCOUNT: &str = "ACCOUNT";
const ROLE_NAME: &str = "ASSOCIATION_ROLE";

/// The addresses the real agent answers on (it refuses any other `Host`).
const AGENT_HOSTS: [&str; 2] = ["169.254.170.23", "fd00:ec2::23"];

/// Where the association role's ARN came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    /// `--association-role`: exact.
    Given,
    /// The agent's `AccountId` (`--assume`): the name is a placeholder.
    Agent,
    /// The roles' one account: a guess, the name a placeholder.
    Roles,
    /// Nothing: account and name are placeholders.
    Nothing,
}

/// What the policies are written for.
pub(super) struct Setup<'a> {
    config: &'a Config,
    pod: &'a PodIdentity,
    namespace: String,
    service_account: String,
    /// The association role's ARN, with placeholders where unknown.
    association: String,
    known: Known,
}

/// The namespace and service account of a service account token's `sub`
/// (`system:serviceaccount:NS:SA`).
pub fn subject(claims: &Claims) -> Option<(String, String)> {
    let rest = claims
        .sub
        .as_deref()?
        .strip_prefix("system:serviceaccount:")?;
    let (ns, sa) = rest.split_once(':')?;
    (!ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
        .then(|| (crate::text::printable(ns), crate::text::printable(sa)))
}

/// Whether `url` is addressed to the real agent (`169.254.170.23` or
/// `[fd00:ec2::23]`, any port).
pub fn is_agent_address(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    AGENT_HOSTS.contains(&host)
}

impl<'a> Setup<'a> {
    /// The setup for `claims`, with the association role `given`, or its
    /// account from the agent (`account`), or from the roles' ARNs.
    pub(super) fn new(
        config: &'a Config,
        pod: &'a PodIdentity,
        claims: &Claims,
        given: Option<&str>,
        account: Option<&str>,
    ) -> Setup<'a> {
        let (namespace, service_account) =
            subject(claims).unwrap_or_else(|| ("NAMESPACE".into(), "SERVICE_ACCOUNT".into()));
        let roles: Vec<&Profile> = config.profiles.iter().filter(|p| !p.pod_identity).collect();
        let partition = roles
            .first()
            .and_then(|p| p.role_arn.split(':').nth(1))
            .unwrap_or("aws");
        let mut accounts: Vec<&str> = roles.iter().map(|p| p.account()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let (known, account) = match (given, account, &accounts[..]) {
            (Some(arn), _, _) => (Known::Given, arn.to_owned()),
            (None, Some(a), _) => (Known::Agent, a.to_owned()),
            (None, None, [one]) => (Known::Roles, (*one).to_owned()),
            _ => (Known::Nothing, ACCOUNT.to_owned()),
        };
        let association = match known {
            Known::Given => account,
            _ => format!("arn:{partition}:iam::{account}:role/{ROLE_NAME}"),
        };
        Setup {
            config,
            pod,
            namespace,
            service_account,
            association,
            known,
        }
    }

    /// The role `p`'s role must trust: its source role when chained from
    /// another role profile, else the association's.
    fn principal(&self, p: &Profile) -> String {
        match p
            .source_profile
            .as_deref()
            .and_then(|s| self.config.profile(s))
        {
            Some(src) if !src.pod_identity => src.role_arn.clone(),
            _ => self.association.clone(),
        }
    }

    /// The command that creates the association.
    fn command(&self) -> String {
        format!(
            "aws eks create-pod-identity-association --cluster-name {CLUSTER} --namespace {} --service-account {} --role-arn {}",
            self.namespace, self.service_account, self.association
        )
    }

    /// One profile's policies: the association role's trust for the base,
    /// the trust and the principal's permissions for a role.
    pub(super) fn entry<'p>(&self, p: &'p Profile) -> Entry<'p> {
        if p.pod_identity {
            return Entry {
                profile: Some(p),
                provider: None,
                trust: trust::association_trust(),
                permissions: None,
            };
        }
        let principal = self.principal(p);
        Entry {
            profile: Some(p),
            provider: None,
            trust: trust::pod_identity_policy(
                p,
                &principal,
                &self.namespace,
                &self.service_account,
            ),
            permissions: Some((principal, trust::pod_identity_permissions(p))),
        }
    }
}

/// The trust actions of a profile chained from the Pod Identity session,
/// as a phrase.
fn pod_actions(p: &Profile) -> &'static str {
    if p.source_identity.is_some() {
        "sts:AssumeRole, sts:TagSession and sts:SetSourceIdentity"
    } else {
        "sts:AssumeRole and sts:TagSession"
    }
}

mod assume;
mod shapes;
mod text;

pub use assume::check;
pub(super) use shapes::render;

#[cfg(test)]
mod tests;
