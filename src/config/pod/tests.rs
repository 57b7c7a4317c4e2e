use super::*;

#[test]
fn the_agent_url_is_http_to_loopback_or_the_agents_addresses() {
    for ok in [
        "http://169.254.170.23/v1/credentials",
        "http://169.254.170.23:80/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
        "http://[fd00:ec2::23]:8080/v1/credentials",
        "http://127.0.0.1:8080/v1/credentials",
        "http://[::1]:9/x",
        "http://localhost:80/v1/credentials",
    ] {
        assert_eq!(check_endpoint(ok).as_deref(), Ok(ok), "{ok}");
    }
    for (bad, why) in [
        ("https://169.254.170.23/v1/credentials", "plain HTTP"),
        ("169.254.170.23/v1/credentials", "plain HTTP"),
        ("http://10.0.0.1/v1/credentials", "in clear"),
        ("http://[fd00:ec2::24]/v1/credentials", "in clear"),
        ("http://agent.local/v1/credentials", "no DNS lookup"),
        ("http://fd00:ec2::23/v1/credentials", "no DNS lookup"),
        ("http://[169.254.170.23]/v1/credentials", "no DNS lookup"),
        ("http://169.254.170.23", "no path"),
        ("http://169.254.170.23:0/v1/credentials", "bad port"),
        ("http://169.254.170.23:65536/v1/credentials", "bad port"),
        ("http://169.254.170.23:+80/v1/credentials", "bad port"),
        ("http://169.254.170.23:/v1/credentials", "bad port"),
        ("http://[fd00:ec2::23/v1/credentials", "unclosed"),
        (
            "http://u:p@169.254.170.23/v1/credentials",
            "user or password",
        ),
        ("http://169.254.170.23/v1/credentials?a=b", "query"),
        ("http://169.254.170.23/v1/credentials#f", "fragment"),
        ("http://169.254.170.23/v1/cre dentials", "spaces"),
    ] {
        let e = check_endpoint(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn a_refused_url_never_shows_its_user_or_password() {
    for bad in [
        "http://user:s3cret@169.254.170.23/v1/credentials",
        "https://user:s3cret@agent.example/v1/credentials",
        "user:s3cret@169.254.170.23/v1/credentials",
        "http://169.254.170.23/v1/credentials?x=1@user:s3cret",
    ] {
        let e = check_endpoint(bad).unwrap_err();
        assert!(!e.contains("s3cret") && !e.contains("user:"), "{e}");
        assert!(
            e.starts_with("\"http://***\" ")
                || e.starts_with("\"https://***\" ")
                || e.starts_with("\"***\" "),
            "{e}"
        );
    }
}
