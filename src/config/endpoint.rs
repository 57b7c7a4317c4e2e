//! The STS endpoint a profile's calls go to, by the SDK's own resolver
//! rules: pure (no call is made), so that the configuration refuses a
//! combination the SDK refuses, and `check` prints the URL.

use super::Profile;

/// Region used to sign and resolve when only an endpoint is configured.
pub const FALLBACK_REGION: &str = "us-east-1";

/// The URL the SDK's endpoint resolver gives for `profile`'s STS calls
/// (its region, endpoint, FIPS and dual-stack choices), as `check` prints
/// it; an error for a combination the SDK's rules refuse (FIPS or
/// dual-stack with a custom endpoint, a partition without one).
pub fn endpoint_for(profile: &Profile) -> Result<String, String> {
    use aws_sdk_sts::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    use futures_util::FutureExt;
    let params = Params::builder()
        .region(profile.region.as_deref().unwrap_or(FALLBACK_REGION))
        .use_fips(profile.use_fips)
        .use_dual_stack(profile.use_dualstack)
        .set_endpoint(profile.sts_endpoint.clone())
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
mod tests {
    use super::*;

    fn at(region: &str, fips: bool, dualstack: bool) -> Profile {
        Profile {
            region: Some(region.into()),
            use_fips: fips,
            use_dualstack: dualstack,
            ..Profile::new("p", "arn:aws:iam::111122223333:role/p")
        }
    }

    /// The hosts of AWS's STS endpoint tables (regional, FIPS, dual-stack,
    /// both), for the commercial, GovCloud and China partitions, as the
    /// SDK's resolver gives them.
    #[test]
    fn fips_and_dual_stack_hosts_come_from_the_sdks_resolver() {
        let cases = [
            (
                "eu-west-1",
                false,
                false,
                "https://sts.eu-west-1.amazonaws.com",
            ),
            (
                "us-east-1",
                false,
                false,
                "https://sts.us-east-1.amazonaws.com",
            ),
            (
                "us-east-1",
                true,
                false,
                "https://sts-fips.us-east-1.amazonaws.com",
            ),
            (
                "us-west-2",
                true,
                false,
                "https://sts-fips.us-west-2.amazonaws.com",
            ),
            ("eu-west-1", false, true, "https://sts.eu-west-1.api.aws"),
            (
                "us-east-1",
                true,
                true,
                "https://sts-fips.us-east-1.api.aws",
            ),
            (
                "us-gov-west-1",
                false,
                false,
                "https://sts.us-gov-west-1.amazonaws.com",
            ),
            (
                "us-gov-west-1",
                true,
                false,
                "https://sts.us-gov-west-1.amazonaws.com",
            ),
            (
                "cn-north-1",
                false,
                false,
                "https://sts.cn-north-1.amazonaws.com.cn",
            ),
            (
                "ca-central-1",
                true,
                false,
                "https://sts-fips.ca-central-1.amazonaws.com",
            ),
        ];
        for (region, fips, dualstack, want) in cases {
            assert_eq!(
                endpoint_for(&at(region, fips, dualstack)).as_deref(),
                Ok(want),
                "{region} fips={fips} dualstack={dualstack}"
            );
        }
    }

    #[test]
    fn a_custom_endpoint_wins_and_cannot_be_combined_with_fips_or_dual_stack() {
        let custom = Profile {
            sts_endpoint: Some("https://vpce-1.sts.eu-west-1.vpce.amazonaws.com".into()),
            ..at("eu-west-1", false, false)
        };
        assert_eq!(
            endpoint_for(&custom).as_deref(),
            Ok("https://vpce-1.sts.eu-west-1.vpce.amazonaws.com")
        );
        for (fips, dualstack) in [(true, false), (false, true)] {
            let e = endpoint_for(&Profile {
                use_fips: fips,
                use_dualstack: dualstack,
                ..custom.clone()
            })
            .unwrap_err();
            assert!(e.contains("not supported"), "{e}");
        }
    }
}
