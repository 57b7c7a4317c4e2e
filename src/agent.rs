//! The EKS Pod Identity agent (`identity: pod-identity`): the node-local
//! HTTP service that exchanges the pod's Pod Identity token for the
//! association role's session, the base every role profile chains from.
//!
//! STUB (issue 24): the interface the refreshers, `check` and the tests
//! build against; the client is filled in by the agent slice.

use std::fmt;

use crate::sts::{Assumed, StsError};

/// The agent's default URL, as EKS injects it in
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.170.23/v1/credentials";

/// The default Pod Identity token, as EKS injects it in
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
pub const DEFAULT_TOKEN_FILE: &str =
    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";

/// The audience of the Pod Identity token.
pub const AUDIENCE: &str = "pods.eks.amazonaws.com";

/// A client of one agent URL (validated by the configuration).
pub struct Agent {
    url: String,
}

impl Agent {
    pub fn new(url: &str) -> Agent {
        Agent { url: url.to_owned() }
    }

    /// The agent's URL: also the pacer gate its calls go through.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One `GET` with the raw token as `Authorization`: the base session,
    /// or the failure classified like an STS failure.
    pub async fn fetch(&self, token: &str) -> Result<Assumed, StsError> {
        let _ = token;
        unimplemented!("issue 24: the agent client")
    }
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent").field("url", &self.url).finish()
    }
}
