use super::*;

#[test]
fn role_arns_are_checked_strictly() {
    for ok in [
        "arn:aws:iam::111122223333:role/reader",
        "arn:aws:iam::111122223333:role/path/to/Name+=,.@-_",
        "arn:aws-cn:iam::111122223333:role/r",
        "arn:aws-us-gov:iam::111122223333:role/r",
    ] {
        assert!(check_role_arn(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "arn:aws:iam::11112222333:role/r",
        "arn:aws:iam::111122223333:user/r",
        "arn:aws:sts::111122223333:role/r",
        "arn:aws:iam:eu-west-1:111122223333:role/r",
        "arn:aws:iam::111122223333:role/",
        "arn:aws:iam::111122223333:role/a b",
    ] {
        assert!(check_role_arn(bad).is_err(), "{bad}");
    }
}

#[test]
fn keys_values_and_source_identities_follow_stss_rules() {
    for ok in ["team", "cost-center", "a:b/c=d+e-f@g_h.i", "Équipe 1"] {
        assert!(check_tag_key(ok).is_ok(), "{ok}");
    }
    for bad in ["", &"k".repeat(129), "a,b", "a\tb", "aws:team", "AWS:x"] {
        assert!(check_tag_key(bad).is_err(), "{bad:?}");
    }
    assert!(check_tag_key(&"k".repeat(128)).is_ok());
    assert!(check_tag_value("").is_ok(), "a value may be empty");
    assert!(check_tag_value(&"v".repeat(256)).is_ok());
    assert!(check_tag_value(&"v".repeat(257)).is_err());
    assert!(check_tag_value("a;b").is_err());
    for ok in ["ab", "alice@example.com", &"s".repeat(64)] {
        assert!(check_source_identity(ok).is_ok(), "{ok}");
    }
    for bad in ["a", &"s".repeat(65), "a b", "a/b"] {
        assert!(check_source_identity(bad).is_err(), "{bad:?}");
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
            endpoint_for(Some(region), fips, dualstack, None).as_deref(),
            Ok(want),
            "{region} fips={fips} dualstack={dualstack}"
        );
    }
    assert_eq!(
        endpoint_for(None, false, false, None).as_deref(),
        Ok("https://sts.us-east-1.amazonaws.com"),
        "without a region: the fallback region's"
    );
}

#[test]
fn a_custom_endpoint_wins_and_cannot_be_combined_with_fips_or_dual_stack() {
    let custom = Some("https://vpce-1.sts.eu-west-1.vpce.amazonaws.com");
    assert_eq!(
        endpoint_for(Some("eu-west-1"), false, false, custom).as_deref(),
        Ok("https://vpce-1.sts.eu-west-1.vpce.amazonaws.com")
    );
    for (fips, dualstack) in [(true, false), (false, true)] {
        let e = endpoint_for(Some("eu-west-1"), fips, dualstack, custom).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
    }
}
