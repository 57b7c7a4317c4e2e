//! `use_fips_endpoint` and `use_dualstack_endpoint`: flag, variable, YAML
//! (globally and per profile), their precedence, and the combinations the
//! SDK's endpoint rules refuse.

use super::*;

fn choices(c: &Config) -> Vec<(String, bool, bool)> {
    c.profiles
        .iter()
        .map(|p| (p.name.clone(), p.use_fips, p.use_dualstack))
        .collect()
}

#[test]
fn off_by_default_and_on_by_flag_variable_or_file() {
    let one = [format!("reader={ARN_A}")];
    let one: Vec<&str> = one.iter().map(String::as_str).collect();
    let c = Config::load(&flags(&one), &env(&[])).unwrap();
    assert_eq!(choices(&c), [("reader".into(), false, false)]);
    let by_flag = Flags {
        use_fips_endpoint: Some("true".into()),
        use_dualstack_endpoint: Some("true".into()),
        ..flags(&one)
    };
    let c = Config::load(&by_flag, &env(&[])).unwrap();
    assert_eq!(choices(&c), [("reader".into(), true, true)]);
    let by_env = env(&[
        ("AWS_USE_FIPS_ENDPOINT", "true"),
        ("AWS_USE_DUALSTACK_ENDPOINT", "false"),
    ]);
    let c = Config::load(&flags(&one), &by_env).unwrap();
    assert_eq!(choices(&c), [("reader".into(), true, false)]);
    // Flag > environment.
    let off = Flags {
        use_fips_endpoint: Some("false".into()),
        ..flags(&one)
    };
    let c = Config::load(&off, &by_env).unwrap();
    assert_eq!(choices(&c), [("reader".into(), false, false)]);
}

#[test]
fn a_profile_overrides_the_files_default() {
    let (_f, flags) = yaml(&format!(
        "region: us-east-1\nuse_fips_endpoint: true\nprofiles:\n  \
         reader: {{role_arn: '{ARN_A}'}}\n  \
         writer: {{role_arn: '{ARN_B}', use_fips_endpoint: false, use_dualstack_endpoint: true}}\n"
    ));
    let c = Config::load(&flags, &env(&[])).unwrap();
    assert_eq!(
        choices(&c),
        [
            ("reader".into(), true, false),
            ("writer".into(), false, true)
        ]
    );
    assert_eq!(
        crate::config::endpoint_for(c.profile("writer").unwrap()).as_deref(),
        Ok("https://sts.us-east-1.api.aws")
    );
}

#[test]
fn bad_values_and_refused_combinations_are_configuration_errors() {
    let (_f, flags) = yaml(&format!(
        "region: eu-west-1\nuse_dualstack_endpoint: maybe\nprofiles:\n  \
         reader: {{role_arn: '{ARN_A}', use_fips_endpoint: 1}}\n  \
         writer: {{role_arn: '{ARN_B}', sts_endpoint: 'https://sts.example.com', use_fips_endpoint: true, use_dualstack_endpoint: false}}\n"
    ));
    let p = problems(Config::load(&flags, &env(&[])));
    assert!(has(&p, "use_dualstack_endpoint", "not a boolean"), "{p:?}");
    assert!(
        has(&p, "profiles.reader.use_fips_endpoint", "not a boolean"),
        "{p:?}"
    );
    assert!(
        has(&p, "profiles.writer", "STS endpoint cannot be resolved"),
        "{p:?}"
    );
}
