use std::collections::BTreeSet;

use clap::Args;

use super::*;
use crate::config::{Env, LogFormat};

#[test]
fn keys_flags_and_variables_are_each_declared_once() {
    let unique = |xs: Vec<&str>| xs.iter().collect::<BTreeSet<_>>().len() == xs.len();
    assert!(unique(OPTIONS.iter().map(|o| o.key).collect()));
    assert!(unique(OPTIONS.iter().map(|o| o.field).collect()));
    assert!(unique(
        OPTIONS.iter().flat_map(|o| o.env.iter().copied()).collect()
    ));
    assert!(unique(profile_keys()));
    let mut layer = Layer::default();
    assert!(layer.slot("region", true).is_some());
    assert!(layer.slot("token_file", true).is_none() && layer.slot("token_file", false).is_some());
    assert!(layer.slot("profiles", false).is_none() && layer.slot("regoin", false).is_none());
}

#[test]
fn the_yaml_key_lists_are_derived_from_the_table() {
    assert_eq!(
        top_keys().join(", "),
        "token_file, identity, pod_identity_endpoint, pod_identity_token_file, \
         pod_identity_profile, output_dir, app_output_dir, region, sts_endpoint, use_fips_endpoint, \
         use_dualstack_endpoint, duration_seconds, role_session_name, credentials, file_mode, \
         allow_world_readable, health_addr, endpoint_addr, endpoint_token_file, ca_bundle, \
         control_socket, proxy, no_proxy, log_format, profiles, outputs"
    );
    assert_eq!(
        profile_keys().join(", "),
        "role_arn, region, sts_endpoint, use_fips_endpoint, use_dualstack_endpoint, \
         duration_seconds, role_session_name, credentials, policy, policy_arns, source_profile, \
         external_id, tags, transitive_tag_keys, source_identity, kubernetes_tags"
    );
}

/// The help text of every flag names the table's variables, and only
/// those (`--help` is the command line's documentation).
#[test]
fn every_option_is_a_flag_whose_help_names_its_variables() {
    let cmd = Flags::augment_args(clap::Command::new("rolecall"));
    for o in OPTIONS {
        let flag = o.field.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
            .unwrap_or_else(|| panic!("no --{flag}"));
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        if o.env.is_empty() {
            assert!(!help.contains("env:"), "--{flag}: {help}");
        } else {
            let named = format!("env: {}", o.env.join(", "));
            assert!(help.contains(&named), "--{flag}: {help}");
        }
    }
}

#[test]
fn restart_needed_lists_the_changed_options_a_reload_cannot_apply_in_table_order() {
    let flags = Flags {
        profiles: vec!["a=arn:aws:iam::111122223333:role/a".into()],
        region: Some("eu-west-1".into()),
        ..Flags::default()
    };
    let old = Config::load(&flags, &Env::new()).unwrap();
    assert!(restart_needed(&old, &old.clone()).is_empty());
    let mut new = old.clone();
    new.log_format = LogFormat::Json;
    new.token_file = "/other".into();
    new.app_output_dir = "/app".into();
    new.profiles[0].region = Some("us-east-1".into());
    assert_eq!(restart_needed(&old, &new), ["token_file", "log_format"]);
    let new = Config {
        token_file: "/t".into(),
        output_dir: "/o".into(),
        file_mode: 0o600,
        allow_world_readable: true,
        health_addr: None,
        endpoint_addr: Some("127.0.0.1:1".parse().unwrap()),
        endpoint_token_file: Some("/e".into()),
        control_socket: None,
        log_format: LogFormat::Json,
        ..old.clone()
    };
    assert_eq!(
        restart_needed(&old, &new),
        [
            "token_file",
            "output_dir",
            "file_mode",
            "allow_world_readable",
            "health_addr",
            "endpoint_addr",
            "endpoint_token_file",
            "control_socket",
            "log_format",
        ]
    );
}

#[test]
fn the_commands_without_a_configuration_read_the_table_s_variables() {
    let env: Env = [
        ("ROLECALL_OUTPUT_DIR", "/o"),
        ("ROLECALL_CONTROL_SOCKET", ""),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    assert_eq!(crate::config::env_output_dir(&env), Some("/o"));
    assert_eq!(crate::config::env_control_socket(&env), Some(""));
    assert_eq!(crate::config::env_output_dir(&Env::new()), None);
}
