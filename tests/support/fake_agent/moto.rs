//! The fake agent's moto-backed answer (design24 §3, "The moto-backed
//! answer"): what EKS Auth does behind the real agent, done against moto's
//! STS. moto has no eks-auth (design24 F15), so the fake agent assumes the
//! association role itself with `AssumeRole`, the way EKS does: signed with
//! moto's dummy keys, the six EKS session tags, all transitive (F10), and
//! `DurationSeconds` 3600 (moto does not enforce a role's maximum; an hour
//! keeps it realistic). The answer is the container-credentials JSON the
//! agent sends (F5), with `AccountId`.
//!
//! rolecall's chained `AssumeRole` calls to moto are then signed with a real
//! moto session, so `aws sts get-caller-identity` on a chained profile shows
//! the whole chain worked.

use std::time::{Duration, SystemTime};

use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sts::types::Tag;

use super::AgentCredentials;

/// The cluster named in the session tags and the role session name.
pub const MOTO_CLUSTER: &str = "acceptance";
/// The six session tag keys EKS Pod Identity sets, all transitive (F10).
pub use rolecall::aws::POD_IDENTITY_TAG_KEYS as EKS_TAG_KEYS;
/// The session length the moto answer asks for.
pub const MOTO_SESSION: Duration = Duration::from_secs(3600);

/// The six EKS session tags for a pod whose token has `claims`, in
/// [`EKS_TAG_KEYS`] order: namespace and service account from `sub`
/// (`system:serviceaccount:NS:SA`), the pod from the `kubernetes.io` claim
/// when the token has one (kubelet's bound tokens do), else a fixed pod.
pub fn eks_session_tags(claims: Option<&serde_json::Value>) -> Vec<(String, String)> {
    let none = serde_json::Value::Null;
    let claims = claims.unwrap_or(&none);
    let sub = claims["sub"].as_str().unwrap_or_default();
    let mut parts = sub
        .strip_prefix("system:serviceaccount:")
        .unwrap_or_default()
        .splitn(2, ':');
    let namespace = parts.next().filter(|s| !s.is_empty()).unwrap_or("default");
    let account = parts.next().filter(|s| !s.is_empty()).unwrap_or("default");
    let pod = &claims["kubernetes.io"]["pod"];
    let pod_name = pod["name"].as_str().unwrap_or("acceptance-pod");
    let pod_uid = pod["uid"]
        .as_str()
        .unwrap_or("00000000-0000-4000-8000-000000000001");
    let values = [
        format!("arn:aws:eks:us-east-1:111122223333:cluster/{MOTO_CLUSTER}"),
        MOTO_CLUSTER.to_owned(),
        namespace.to_owned(),
        account.to_owned(),
        pod_name.to_owned(),
        pod_uid.to_owned(),
    ];
    EKS_TAG_KEYS
        .iter()
        .map(|k| (*k).to_owned())
        .zip(values)
        .collect()
}

/// The role session name EKS gives the association's session:
/// `eks-CLUSTER-POD`, at most 64 characters.
fn session_name(tags: &[(String, String)]) -> String {
    let pod = tags
        .iter()
        .find(|(k, _)| k == "kubernetes-pod-name")
        .map_or("pod", |(_, v)| v.as_str());
    let mut name: String = format!("eks-{MOTO_CLUSTER}-{pod}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "=,.@-_".contains(*c))
        .collect();
    name.truncate(64);
    name
}

/// A client for moto's STS at `endpoint`, signing with moto's dummy keys.
fn moto_client(endpoint: &str) -> aws_sdk_sts::Client {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .http_client(http)
        .timeout_config(
            aws_smithy_types::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "moto-dummy",
        ))
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

/// One moto-backed session for `role_arn` on moto at `endpoint`, as EKS
/// Auth gets it for the pod whose Pod Identity token has `claims` (`None`
/// if it is not a JWT). The fake agent's server renders it as the agent's
/// JSON (with `AccountId`) and records it; an `Err` (which never holds the
/// token) becomes a 500 `(InternalServerException)` carrying its text.
pub(super) async fn assume(
    endpoint: &str,
    role_arn: &str,
    claims: Option<&serde_json::Value>,
) -> Result<AgentCredentials, String> {
    let tags = eks_session_tags(claims);
    let sdk_tags = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("session tag: {e}"))?;
    let out = moto_client(endpoint)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session_name(&tags))
        .duration_seconds(MOTO_SESSION.as_secs() as i32)
        .set_tags(Some(sdk_tags))
        .set_transitive_tag_keys(Some(EKS_TAG_KEYS.map(str::to_owned).to_vec()))
        .send()
        .await
        .map_err(|e| {
            format!(
                "moto AssumeRole {role_arn}: {}",
                aws_sdk_sts::error::DisplayErrorContext(e)
            )
        })?;
    let creds = out.credentials().ok_or("moto AssumeRole: no Credentials")?;
    let arn = out
        .assumed_role_user()
        .map(|u| u.arn())
        .ok_or("moto AssumeRole: no AssumedRoleUser")?;
    // arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION, as the agent parses it.
    let account_id = arn.split(':').nth(4).unwrap_or_default().to_owned();
    let expiration =
        SystemTime::try_from(*creds.expiration()).map_err(|e| format!("moto Expiration: {e}"))?;
    Ok(AgentCredentials {
        access_key_id: creds.access_key_id().to_owned(),
        secret_access_key: creds.secret_access_key().to_owned(),
        session_token: creds.session_token().to_owned(),
        account_id,
        expiration,
    })
}
