//! What a role's trust policy must say for this pod's token, and the hints
//! that turn STS error codes into what the operator must fix.

use serde_json::json;

use crate::codes::Code;
use crate::config::Profile;
use crate::sts::codes;
use crate::sys::limits::Limit;
use crate::token::Claims;

/// The issuer as IAM names it in condition keys: the URL without `https://`.
pub fn issuer_host(iss: &str) -> &str {
    iss.strip_prefix("https://")
        .unwrap_or(iss)
        .trim_end_matches('/')
}

/// The IAM OIDC provider ARN for the token's issuer in the role's account.
pub fn provider_arn(profile: &Profile, iss: &str) -> String {
    let partition = profile.role_arn.split(':').nth(1).unwrap_or("aws");
    provider_arn_in(partition, profile.account(), iss)
}

/// The IAM OIDC provider ARN for issuer `iss` in `account` of `partition`.
pub fn provider_arn_in(partition: &str, account: &str, iss: &str) -> String {
    format!(
        "arn:{partition}:iam::{account}:oidc-provider/{}",
        issuer_host(iss)
    )
}

/// The trust policy document the role of `profile` needs for this token.
pub fn trust_policy(profile: &Profile, claims: &Claims) -> serde_json::Value {
    let iss = claims.iss.as_deref().unwrap_or("ISSUER");
    web_identity_policy(&provider_arn(profile, iss), claims)
}

/// The trust policy that lets the token's subject, with its audience, in
/// through the IAM OIDC provider `provider`.
pub fn web_identity_policy(provider: &str, claims: &Claims) -> serde_json::Value {
    let host = issuer_host(claims.iss.as_deref().unwrap_or("ISSUER"));
    let aud = match claims.aud.as_slice() {
        [one] => json!(one),
        [] => json!("sts.amazonaws.com"),
        many => json!(many),
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": provider },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    format!("{host}:sub"): claims.sub.as_deref().unwrap_or("SUBJECT"),
                    format!("{host}:aud"): aud,
                }
            }
        }]
    })
}

/// What a chained profile's call needs: `sts:AssumeRole`, and the actions
/// its session tags and source identity add (sts:TagSession,
/// sts:SetSourceIdentity), one value or a list.
fn chained_actions(profile: &Profile) -> serde_json::Value {
    let extra = profile.extra_trust_actions();
    if extra.is_empty() {
        json!("sts:AssumeRole")
    } else {
        json!(
            std::iter::once("sts:AssumeRole")
                .chain(extra)
                .collect::<Vec<_>>()
        )
    }
}

/// The trust policy of a chained profile's role: the source role
/// (`source_arn`) may assume it, with the external id if one is set.
pub fn chained_policy(profile: &Profile, source_arn: &str) -> serde_json::Value {
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": { "AWS": source_arn },
        "Action": chained_actions(profile),
    });
    if let Some(id) = &profile.external_id {
        statement["Condition"] = json!({ "StringEquals": { "sts:ExternalId": id } });
    }
    json!({ "Version": "2012-10-17", "Statement": [statement] })
}

/// The permissions policy the SOURCE role of a chained profile needs: the
/// same actions on the profile's role.
pub fn source_permissions(profile: &Profile) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": chained_actions(profile),
            "Resource": profile.role_arn,
        }]
    })
}

/// The service principal that assumes a Pod Identity association's role,
/// and the session tags EKS Pod Identity sets on its session.
pub use crate::aws::{POD_IDENTITY_AUDIENCE as POD_IDENTITY_SERVICE, POD_IDENTITY_TAG_KEYS};

/// The trust policy of a Pod Identity association's role: EKS Pod Identity
/// assumes it and tags the session.
pub fn association_trust() -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": POD_IDENTITY_SERVICE },
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }]
    })
}

/// What a call chained from a Pod Identity session needs: `sts:AssumeRole`,
/// `sts:TagSession` (the session's transitive tags pass on, and any tags
/// the profile sends), and `sts:SetSourceIdentity` with a source identity.
fn pod_identity_actions(profile: &Profile) -> Vec<&'static str> {
    let mut out = vec!["sts:AssumeRole", "sts:TagSession"];
    if profile.source_identity.is_some() {
        out.push("sts:SetSourceIdentity");
    }
    out
}

/// The trust policy of a role chained from a Pod Identity session:
/// `principal` (the association's role, or the source profile's role) may
/// assume it and pass the tags on, only for the pod's namespace and
/// service account (the tags EKS set), with the external id if one is set.
pub fn pod_identity_policy(
    profile: &Profile,
    principal: &str,
    namespace: &str,
    service_account: &str,
) -> serde_json::Value {
    let mut equals = serde_json::Map::new();
    equals.insert(
        "aws:RequestTag/kubernetes-namespace".into(),
        json!(namespace),
    );
    equals.insert(
        "aws:RequestTag/kubernetes-service-account".into(),
        json!(service_account),
    );
    if let Some(id) = &profile.external_id {
        equals.insert("sts:ExternalId".into(), json!(id));
    }
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": principal },
            "Action": pod_identity_actions(profile),
            "Condition": { "StringEquals": equals },
        }]
    })
}

/// The permissions policy the principal of [`pod_identity_policy`] needs
/// (for a role in another account): the same actions on the profile's role.
pub fn pod_identity_permissions(profile: &Profile) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": pod_identity_actions(profile),
            "Resource": profile.role_arn,
        }]
    })
}

/// A one-line hint for an error code (STS's or rolecall's own), or `None`
/// when the code speaks for itself. Mentions only claims (never the token)
/// and configuration.
pub fn hint(code: &str, profile: &Profile, claims: Option<&Claims>) -> Option<String> {
    match Code::parse(code) {
        Some(own) => own_hint(own, profile),
        None => sts_hint(code, profile, claims),
    }
}

/// The hint for one of STS's codes.
fn sts_hint(code: &str, profile: &Profile, claims: Option<&Claims>) -> Option<String> {
    let region = profile.region.as_deref().unwrap_or("the configured region");
    let who = claims
        .map(|c| {
            format!(
                "sub {:?} and aud {:?} from issuer {}",
                c.sub.as_deref().unwrap_or("?"),
                c.aud.join(","),
                c.iss.as_deref().map(issuer_host).unwrap_or("?")
            )
        })
        .unwrap_or_else(|| "the token's sub and aud".into());
    let provider = claims
        .and_then(|c| c.iss.as_deref())
        .map(|iss| provider_arn(profile, iss))
        .unwrap_or_else(|| "the cluster's OIDC provider".into());
    Some(match code {
        codes::ACCESS_DENIED if profile.source_profile.is_some() => format!(
            "the trust policy of {} must allow sts:AssumeRole by the source profile's role{}",
            profile.role_arn,
            if profile.external_id.is_some() { " with this external_id" } else { "" }
        ),
        codes::ACCESS_DENIED => format!(
            "the trust policy of {} must allow sts:AssumeRoleWithWebIdentity for federated principal {provider} with StringEquals on {who} (`rolecall check` prints the policy)",
            profile.role_arn
        ),
        codes::IDP_REJECTED_CLAIM => format!(
            "the identity provider rejected the token's claims ({who}): the audience must be a client ID of the IAM OIDC provider (usually sts.amazonaws.com)"
        ),
        codes::INVALID_IDENTITY_TOKEN => format!(
            "STS could not validate the token: create the IAM OIDC provider {provider} (or fix its thumbprint); rolecall re-reads the token and retries"
        ),
        codes::EXPIRED_TOKEN_EXCEPTION | codes::EXPIRED_TOKEN => {
            "the token had expired: check that kubelet rotates the projected token (expirationSeconds) and the node clock".into()
        }
        codes::REGION_DISABLED => format!(
            "STS is not activated in {region} for account {}: activate it in IAM account settings or set another region",
            profile.account()
        ),
        codes::MALFORMED_POLICY_DOCUMENT => "the session policy is not accepted by IAM: fix the profile's `policy`".into(),
        codes::PACKED_POLICY_TOO_LARGE => "the session policies and session tags share one packed size limit: shorten `policy`, use fewer `policy_arns`, or fewer or shorter `tags`".into(),
        codes::VALIDATION_ERROR => "STS rejected a parameter: check duration_seconds against the role's MaxSessionDuration, the role ARN and the session name".into(),
        codes::THROTTLING | codes::THROTTLING_EXCEPTION | codes::REQUEST_LIMIT_EXCEEDED => {
            "STS is throttling requests; rolecall backs off".into()
        }
        _ => return None,
    })
}

/// The hint for one of rolecall's own codes.
fn own_hint(code: Code, profile: &Profile) -> Option<String> {
    Some(match code {
        Code::ExpiredOnArrival => {
            "check the node's clock (NTP): expiry is judged by the local clock; or the STS endpoint or a proxy is replaying an old answer. The last good session stays published".into()
        }
        Code::CertificateRefused => format!(
            "the certificate of {} is not trusted: if STS is reached through a TLS-inspecting proxy or a private endpoint, add its CA certificate with ca_bundle (--ca-bundle, AWS_CA_BUNDLE); otherwise check the image's /etc/ssl/certs and the endpoint's name",
            profile.sts_endpoint.as_deref().unwrap_or("the regional STS endpoint")
        ),
        Code::TooManyOpenFiles => Limit::ProcessOpenFiles.hint(),
        Code::FileTableFull => Limit::NodeOpenFiles.hint(),
        Code::LocalPortsExhausted => Limit::LocalPorts.hint(),
        Code::ThreadLimitReached => Limit::Threads.hint(),
        Code::Timeout | Code::ConnectionError => format!(
            "check network access to the STS endpoint ({})",
            profile.sts_endpoint.as_deref().unwrap_or("regional")
        ),
        Code::MalformedResponse
        | Code::InvalidRequest
        | Code::TokenUnavailable
        | Code::SourceUnavailable
        | Code::StsDown
        | Code::AgentError
        | Code::AgentHostRefused => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            region: Some("eu-west-1".into()),
            ..Profile::new("reader", "arn:aws:iam::111122223333:role/reader")
        }
    }

    fn claims() -> Claims {
        Claims {
            iss: Some("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC".into()),
            sub: Some("system:serviceaccount:shop:cart".into()),
            aud: vec!["sts.amazonaws.com".into()],
            exp: Some(1),
            ..Claims::default()
        }
    }

    #[test]
    fn trust_policy_names_the_provider_in_the_roles_account_and_both_conditions() {
        let doc = trust_policy(&profile(), &claims());
        let st = &doc["Statement"][0];
        assert_eq!(
            st["Principal"]["Federated"],
            "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"
        );
        assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity");
        let eq = &st["Condition"]["StringEquals"];
        assert_eq!(
            eq["oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub"],
            "system:serviceaccount:shop:cart"
        );
        assert_eq!(
            eq["oidc.eks.eu-west-1.amazonaws.com/id/ABC:aud"],
            "sts.amazonaws.com"
        );
    }

    #[test]
    fn access_denied_hint_names_sub_and_aud() {
        let h = hint("AccessDenied", &profile(), Some(&claims())).unwrap();
        assert!(h.contains("system:serviceaccount:shop:cart"), "{h}");
        assert!(h.contains("sts.amazonaws.com"), "{h}");
        assert!(
            h.contains("oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"),
            "{h}"
        );
        assert!(hint("SomethingElse", &profile(), None).is_none());
    }
}
