//! [`Reply::Moto`](super::Reply::Moto): the fake agent's answer from a real
//! moto session (design24 §3 "The moto-backed answer").
//!
//! STUB, owned by the "accept" slice, which replaces the body of
//! [`assume`]: moto's STS `AssumeRole` of `role_arn` (moto's dummy keys,
//! the six EKS session tags, all transitive, 3600 s), turned into
//! [`AgentCredentials`]. The server renders and records what it returns;
//! an `Err` becomes a 500 `(InternalServerException)` carrying its text.

use super::AgentCredentials;

/// One moto-backed session for `role_arn` on moto at `endpoint`; `claims`
/// are the Pod Identity token's (for `kubernetes-namespace` and
/// `kubernetes-service-account` from `sub`), `None` if it is not a JWT.
pub(super) async fn assume(
    endpoint: &str,
    role_arn: &str,
    claims: Option<&serde_json::Value>,
) -> Result<AgentCredentials, String> {
    let _ = (endpoint, role_arn, claims);
    Err("Reply::Moto is not implemented yet (tests/support/fake_agent/moto.rs)".into())
}
