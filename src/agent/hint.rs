//! What the operator should do about a failure of the base profile (the
//! agent's session): the association, the agent's reachability, the
//! `Host` it accepts, the token's audience. The codes no agent failure
//! has fall through to [`crate::trust::hint`].

use super::codes::{ACCESS_DENIED, EXPIRED_TOKEN, INVALID_TOKEN, RESOURCE_NOT_FOUND};
use crate::codes::Code;
use crate::token::Claims;

/// The hint for `code` from the agent at `url`, `None` when it has none
/// of its own.
pub fn hint(code: &str, url: &str, claims: Option<&Claims>) -> Option<String> {
    let (ns, sa) = claims
        .and_then(|c| c.sub.as_deref())
        .and_then(|s| s.strip_prefix("system:serviceaccount:"))
        .and_then(|s| s.split_once(':'))
        .unwrap_or(("NAMESPACE", "SERVICE_ACCOUNT"));
    let ns = crate::text::printable(ns);
    let sa = crate::text::printable(sa);
    let wrong_aud = claims
        .map(|c| &c.aud)
        .filter(|aud| !aud.iter().any(|a| a == super::AUDIENCE));
    Some(match code {
        c if c == Code::ConnectionError.as_str() || c == Code::Timeout.as_str() => format!(
            "is the eks-pod-identity-agent add-on running on this node? It listens on 169.254.170.23:80 and [fd00:ec2::23]:80 on the host network ({url} was called); a NetworkPolicy or Cilium policy must allow egress to it"
        ),
        c if c == Code::AgentHostRefused.as_str() => {
            "the agent answers only requests addressed to 169.254.170.23 or [fd00:ec2::23]; set pod_identity_endpoint to one of them (http://169.254.170.23/v1/credentials)".to_owned()
        }
        RESOURCE_NOT_FOUND => format!(
            "no Pod Identity association for {ns}/{sa} (from the token's sub): aws eks create-pod-identity-association --cluster-name CLUSTER --namespace {ns} --service-account {sa} --role-arn ROLE_ARN; associations take a few seconds to apply"
        ),
        ACCESS_DENIED => "EKS Auth refused: the association's role must trust the service principal pods.eks.amazonaws.com with sts:AssumeRole and sts:TagSession (`rolecall check` prints the policy)".to_owned(),
        EXPIRED_TOKEN | INVALID_TOKEN if let Some(aud) = wrong_aud => format!(
            "the token's audience is \"{}\"; Pod Identity needs the projected token with audience {} (pod_identity_token_file, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)",
            crate::text::printable(&aud.join(",")),
            super::AUDIENCE
        ),
        EXPIRED_TOKEN | INVALID_TOKEN => {
            "EKS Auth refused the Pod Identity token: rolecall re-reads it and retries; kubelet rotates it (check the projected volume of the pod)".to_owned()
        }
        crate::sts::codes::THROTTLING_EXCEPTION => {
            "the Pod Identity agent is throttling (its per-node limit, or EKS Auth's): rolecall backs off, and only its calls to the agent wait".to_owned()
        }
        c if c == Code::AgentError.as_str() => {
            "the agent's answer names no EKS Auth error: is pod_identity_endpoint the Pod Identity agent?".to_owned()
        }
        _ => return None,
    })
}
