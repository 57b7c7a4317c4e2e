//! The flags of `rolecall check --issuer`, checked: every bad value is a
//! problem, reported together (exit 64).

use crate::config::Problem;

/// The partitions an IAM role ARN may name.
pub const PARTITIONS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

/// The audience of the token rolecall's pods project (and STS expects by
/// default).
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

/// Problems found so far, each with the flag it came from.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, origin: &str, message: impl Into<String>) {
        self.0.push(Problem {
            origin: origin.into(),
            message: message.into(),
        });
    }

    /// `check(v)`'s value, or `None` with its problem recorded.
    pub fn value<T>(
        &mut self,
        origin: &str,
        v: &str,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        check(v)
            .map_err(|e| {
                self.push(origin, format!("\"{}\": {e}", crate::text::printable(v)));
            })
            .ok()
    }
}

/// The issuer as `https://HOST/PATH` (no trailing slash), given with or
/// without `https://`.
pub fn issuer(v: &str) -> Result<String, String> {
    if v.contains("://") && !v.starts_with("https://") {
        return Err("an OIDC issuer is an https:// URL".into());
    }
    let rest = v
        .strip_prefix("https://")
        .unwrap_or(v)
        .trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or_default();
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let path_ok = rest
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '?' | '#' | '"' | '\\' | '*'));
    if !host_ok || !path_ok {
        return Err(
            "expected the cluster's issuer URL, e.g. https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE (aws eks describe-cluster --name NAME --query cluster.identity.oidc.issuer --output text)"
                .into(),
        );
    }
    Ok(format!("https://{rest}"))
}

/// A Kubernetes namespace: a DNS-1123 label.
pub fn namespace(v: &str) -> Result<String, String> {
    dns1123(v, 63, false).map_err(|e| format!("a namespace is a DNS-1123 label: {e}"))
}

/// A service account's name: a DNS-1123 subdomain.
pub fn service_account(v: &str) -> Result<String, String> {
    dns1123(v, 253, true)
        .map_err(|e| format!("a service account's name is a DNS-1123 subdomain: {e}"))
}

fn dns1123(v: &str, max: usize, dots: bool) -> Result<String, String> {
    if crate::text::is_dns1123(v, max, dots) {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "at most {max} lowercase letters, digits and '-'{}, starting and ending with a letter or digit",
            if dots { " or '.'" } else { "" }
        ))
    }
}

/// An AWS account id: 12 digits.
pub fn account_id(v: &str) -> Result<String, String> {
    if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v.to_owned())
    } else {
        Err("an AWS account id is 12 digits".into())
    }
}

/// One of [`PARTITIONS`].
pub fn partition(v: &str) -> Result<String, String> {
    if PARTITIONS.contains(&v) {
        Ok(v.to_owned())
    } else {
        Err(format!("expected one of {}", PARTITIONS.join(", ")))
    }
}

/// An audience: printable, no spaces, at most 255 bytes.
pub fn audience(v: &str) -> Result<String, String> {
    if !v.is_empty() && v.len() <= 255 && v.chars().all(|c| c.is_ascii_graphic()) {
        Ok(v.to_owned())
    } else {
        Err("an audience is 1 to 255 printable ASCII characters without spaces".into())
    }
}

/// The partition of an issuer's host: EKS's issuers in China end in
/// `.amazonaws.com.cn`, in GovCloud they start `oidc.eks.us-gov-`; any
/// other issuer is taken as `aws`'s (say `--partition` otherwise).
pub fn partition_of_issuer(issuer: &str) -> &'static str {
    let host = crate::trust::issuer_host(issuer)
        .split('/')
        .next()
        .unwrap_or_default();
    if host.ends_with(".amazonaws.com.cn") {
        "aws-cn"
    } else if host.starts_with("oidc.eks.us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_with_or_without_https_are_one_url() {
        let want = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC";
        assert_eq!(issuer(want).unwrap(), want);
        assert_eq!(
            issuer("oidc.eks.eu-west-1.amazonaws.com/id/ABC/").unwrap(),
            want
        );
        for bad in ["http://x/y", "", "https://", "a b/c", "x/y?z", "hé/x"] {
            assert!(issuer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(namespace("shop-1").is_ok());
        for bad in ["", "Shop", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(namespace(bad).is_err(), "{bad}");
        }
        assert!(service_account("cart.v2").is_ok());
        assert!(service_account("cart_v2").is_err());
    }

    #[test]
    fn accounts_partitions_and_audiences() {
        assert!(account_id("111122223333").is_ok());
        for bad in ["11112222333", "1111222233334", "11112222333x"] {
            assert!(account_id(bad).is_err(), "{bad}");
        }
        assert!(partition("aws-cn").is_ok() && partition("azure").is_err());
        assert!(audience("sts.amazonaws.com").is_ok() && audience("a b").is_err());
        assert_eq!(
            partition_of_issuer("https://oidc.eks.cn-north-1.amazonaws.com.cn/id/A"),
            "aws-cn"
        );
        assert_eq!(
            partition_of_issuer("oidc.eks.us-gov-west-1.amazonaws.com/id/A"),
            "aws-us-gov"
        );
        assert_eq!(partition_of_issuer("https://issuer.example.com"), "aws");
    }
}
