//! A validated profile: what one role's STS call and its outputs need,
//! and what two profiles share (the same identity, the extra permissions
//! of a chained call).

use std::time::Duration;

use super::DEFAULT_DURATION;

/// How a profile's credentials reach the application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CredentialsMode {
    /// Keys in the shared `credentials` file.
    #[default]
    File,
    /// A `credential_process` line in `config` running the rolecall helper.
    Process,
    /// Served only by the loopback credentials endpoint: never written to
    /// `credentials` or `credential-process.json`; `config` holds its region.
    Endpoint,
}

impl CredentialsMode {
    /// The name used in the configuration and in `status.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialsMode::File => "file",
            CredentialsMode::Process => "process",
            CredentialsMode::Endpoint => "endpoint",
        }
    }
}

/// One validated profile: everything needed for its STS call and its output.
/// (`Default` is the empty profile; [`Profile::new`] has the defaults.)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub role_arn: String,
    pub region: Option<String>,
    pub sts_endpoint: Option<String>,
    /// `use_fips_endpoint`: the SDK's resolver picks STS's FIPS endpoint.
    pub use_fips: bool,
    /// `use_dualstack_endpoint`: the SDK's resolver picks the dual-stack one.
    pub use_dualstack: bool,
    pub duration: Duration,
    pub session_name: String,
    pub credentials: CredentialsMode,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub source_profile: Option<String>,
    pub external_id: Option<String>,
    /// Session tags of a chained profile's `AssumeRole`, by key.
    pub tags: Vec<(String, String)>,
    /// Of those (and of the Kubernetes tags), the keys passed on to
    /// sessions chained further.
    pub transitive_tag_keys: Vec<String>,
    /// `SourceIdentity` of a chained profile's `AssumeRole`.
    pub source_identity: Option<String>,
    /// Tag a chained session from the token's `kubernetes.io` claims, with
    /// the keys EKS Pod Identity uses ([`crate::aws::KUBERNETES_TAG_KEYS`]).
    pub kubernetes_tags: bool,
    /// The base session of `identity: pod-identity`: obtained from the Pod
    /// Identity agent, not from STS (its `role_arn` is empty).
    pub pod_identity: bool,
}

impl Profile {
    /// A profile with the defaults a configuration gives when nothing else is
    /// said (for tests and tools; the role ARN is not validated here).
    pub fn new(name: impl Into<String>, role_arn: impl Into<String>) -> Profile {
        Profile {
            name: name.into(),
            role_arn: role_arn.into(),
            duration: Duration::from_secs(DEFAULT_DURATION.into()),
            session_name: "rolecall".into(),
            ..Profile::default()
        }
    }

    /// Whether `other` is the same identity: the same role, reached the same
    /// way, with the same permissions. A session assumed for one serves the
    /// other (its name, region or duration may differ).
    pub fn same_identity(&self, other: &Profile) -> bool {
        self.role_arn == other.role_arn
            && self.pod_identity == other.pod_identity
            && self.source_profile == other.source_profile
            && self.external_id == other.external_id
            && self.policy == other.policy
            && self.policy_arns == other.policy_arns
            && self.tags == other.tags
            && self.transitive_tag_keys == other.transitive_tag_keys
            && self.source_identity == other.source_identity
            && self.kubernetes_tags == other.kubernetes_tags
    }

    /// The permissions besides `sts:AssumeRole` that the role's trust
    /// policy must grant the source role for this profile's call.
    pub fn extra_trust_actions(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.tags.is_empty() || self.kubernetes_tags {
            out.push("sts:TagSession");
        }
        if self.source_identity.is_some() {
            out.push("sts:SetSourceIdentity");
        }
        out
    }

    /// The account that owns the role (the ARN's fifth field).
    pub fn account(&self) -> &str {
        self.role_arn.split(':').nth(4).unwrap_or_default()
    }
}

/// The URL of `p`'s STS calls by the SDK's rules ([`crate::aws::endpoint_for`]),
/// as `check` prints it; an error for a combination the SDK refuses.
pub fn endpoint_for(p: &Profile) -> Result<String, String> {
    let (region, custom) = (p.region.as_deref(), p.sts_endpoint.as_deref());
    crate::aws::endpoint_for(region, p.use_fips, p.use_dualstack, custom)
}
