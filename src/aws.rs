//! AWS's own rules: ARN, region, STS endpoint, duration, session-name,
//! external-id, policy and session-tag syntax and limits. Pure: each check
//! takes the text (trimmed) and gives the value or the message that says
//! what is wrong with it; the configuration reports it where the value was
//! set, and whatever else reads AWS values can apply the same rules.

use crate::text::{judged, printable, quoted};

pub const MIN_DURATION: u32 = 900;
pub const MAX_DURATION: u32 = 43200;
/// AWS caps role-chained sessions at one hour.
pub const MAX_CHAINED_DURATION: u32 = 3600;
pub const MAX_POLICY_CHARS: usize = 2048;
pub const MAX_POLICY_ARNS: usize = 10;
/// STS's limits: at most 50 session tags, keys of 1-128 and values of
/// 0-256 characters.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;
/// Region used to sign and resolve when only an endpoint is configured.
pub const FALLBACK_REGION: &str = "us-east-1";

/// The session tags EKS Pod Identity sets (rolecall's `kubernetes_tags`
/// sets the same, so one policy serves both), all transitive as Pod
/// Identity's are: the namespace, the service account, the pod's name and
/// uid.
pub const KUBERNETES_TAG_KEYS: [&str; 4] = [
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-pod-name",
    "kubernetes-pod-uid",
];

/// EKS Pod Identity's agent URL, as EKS injects it in
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
pub const POD_IDENTITY_ENDPOINT: &str = "http://169.254.170.23/v1/credentials";
/// The Pod Identity token, as EKS projects it and names it in
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
pub const POD_IDENTITY_TOKEN_FILE: &str =
    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";
/// The Pod Identity token's audience, also the service principal that
/// assumes an association's role.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
/// The session tags EKS Pod Identity puts on the association's session,
/// all transitive: every session chained from it inherits them.
pub const POD_IDENTITY_TAG_KEYS: [&str; 6] = [
    "eks-cluster-arn",
    "eks-cluster-name",
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-pod-name",
    "kubernetes-pod-uid",
];

/// The characters of IAM names and session names: `[\w+=,.@-]`.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`
pub fn check_role_arn(v: &str) -> Result<String, String> {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = matches!(parts[..], ["arn", partition, "iam", "", account, resource]
    if partition.starts_with("aws")
    && partition.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    && account.len() == 12
    && account.chars().all(|c| c.is_ascii_digit())
    && resource.strip_prefix("role/").is_some_and(|role| {
        let name = role.rsplit('/').next().unwrap_or_default();
        (1..=64).contains(&name.len())
            && role.len() <= 512
            && role.chars().all(|c| is_name_char(c) || c == '/')
    }));
    let example = "is not an IAM role ARN such as arn:aws:iam::111122223333:role/NAME";
    judged(ok, v, "", example)
}

pub fn check_policy_arn(v: &str) -> Result<String, String> {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = matches!(parts[..], ["arn", p, "iam", "", acct, res]
        if p.starts_with("aws")
        && (acct == "aws" || (acct.len() == 12 && acct.chars().all(|c| c.is_ascii_digit())))
        && res.starts_with("policy/")
        && res.chars().all(|c| is_name_char(c) || c == '/'));
    let example = "is not an IAM policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess";
    judged(ok, v, "", example)
}

pub fn check_region(v: &str) -> Result<String, String> {
    let ok = v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && v.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    judged(ok, v, "", "is not an AWS region such as eu-west-1")
}

pub fn check_endpoint(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty() && !r.starts_with('/') && r.chars().all(|c| c.is_ascii_graphic())
    });
    let example = "is not an http(s) URL such as https://sts.eu-west-1.amazonaws.com";
    let trimmed = v.trim_end_matches('/');
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(quoted(v, "", example))
    }
}

/// A session's duration in seconds, at most `max`.
pub fn check_duration(v: &str, max: u32) -> Result<u32, String> {
    let chained = if max == MAX_CHAINED_DURATION {
        " (AWS caps role-chained sessions at one hour)"
    } else {
        ""
    };
    let rule = format!("must be whole seconds from {MIN_DURATION} to {max}{chained}");
    let d = v.parse().ok().filter(|d| (MIN_DURATION..=max).contains(d));
    d.ok_or_else(|| quoted(v, "duration ", &rule))
}

pub fn check_session_name(v: &str) -> Result<String, String> {
    let ok = (2..=64).contains(&v.len()) && v.chars().all(is_name_char);
    let rule = "must be 2-64 characters of A-Z a-z 0-9 and +=,.@_-";
    judged(ok, v, "role session name ", rule)
}

pub fn check_external_id(v: &str) -> Result<String, String> {
    if (2..=1224).contains(&v.len()) && v.chars().all(|c| is_name_char(c) || ":/".contains(c)) {
        Ok(v.to_owned())
    } else {
        Err("external_id must be 2-1224 characters of A-Z a-z 0-9 and +=,.@:/_-".into())
    }
}

/// A session policy: a JSON object, re-serialised compactly (no newline
/// can reach an STS form or a log line).
pub fn check_policy(v: &str) -> Result<String, String> {
    if v.chars().count() > MAX_POLICY_CHARS {
        return Err(format!(
            "the session policy is longer than {MAX_POLICY_CHARS} characters"
        ));
    }
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(serde_json::Value::Object(o)) => Ok(serde_json::to_string(&o).expect("serialisable")),
        Ok(_) => Err("the session policy must be a JSON object".into()),
        Err(e) => Err(format!("the session policy is not valid JSON: {e}")),
    }
}

/// A tag's characters: letters, digits, spaces and `_ . : / = + - @`.
fn tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}

pub fn check_tag_key(v: &str) -> Result<String, String> {
    let n = v.chars().count();
    if !(1..=MAX_TAG_KEY).contains(&n) || !v.chars().all(tag_char) {
        let rule = format!("must be 1-{MAX_TAG_KEY} letters, digits, spaces and _ . : / = + - @");
        return Err(quoted(v, "tag key ", &rule));
    }
    if v.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!(
            "tag key \"{}\": the aws: prefix is reserved by AWS",
            printable(v)
        ));
    }
    Ok(v.to_owned())
}

pub fn check_tag_value(v: &str) -> Result<String, String> {
    let ok = v.chars().count() <= MAX_TAG_VALUE && v.chars().all(tag_char);
    let rule =
        format!("must be at most {MAX_TAG_VALUE} letters, digits, spaces and _ . : / = + - @");
    judged(ok, v, "tag value ", &rule)
}

/// 2-64 characters of `[\w+=,.@-]`, not starting with `aws:`.
pub fn check_source_identity(v: &str) -> Result<String, String> {
    let ok = (2..=64).contains(&v.len()) && v.chars().all(is_name_char);
    judged(
        ok,
        v,
        "source_identity ",
        "must be 2-64 characters of A-Z a-z 0-9 and _+=,.@-",
    )
}

/// The URL the SDK's endpoint resolver gives for STS calls in `region`
/// (else [`FALLBACK_REGION`]) with these FIPS and dual-stack choices and
/// custom endpoint: pure (no call is made), so that the configuration
/// refuses a combination the SDK refuses (FIPS or dual-stack with a custom
/// endpoint, a partition without one), and `check` prints the URL.
pub fn endpoint_for(
    region: Option<&str>,
    fips: bool,
    dualstack: bool,
    custom: Option<&str>,
) -> Result<String, String> {
    use aws_sdk_sts::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    use futures_util::FutureExt;
    let params = Params::builder()
        .region(region.unwrap_or(FALLBACK_REGION))
        .use_fips(fips)
        .use_dual_stack(dualstack)
        .set_endpoint(custom.map(str::to_owned))
        .build()
        .map_err(|e| e.to_string())?;
    DefaultResolver::new()
        .resolve_endpoint(&params)
        .now_or_never()
        .ok_or_else(|| "the endpoint resolver did not answer at once".to_owned())?
        .map(|e| e.url().to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
