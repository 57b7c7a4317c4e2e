//! The table of options: every global option declared once, with its flag,
//! environment variables, YAML key, how its YAML value reads, its check
//! (which also gives its default) and whether a reload applies it. The YAML
//! key lists, the sources, the merge and the restart list are derived from
//! [`OPTIONS`]; the command line is clap's [`Flags`] (flags.rs), which the
//! table reads.

use super::sources::{Problems, Src, Values};
use super::validate::{self, Globals};
use super::{Config, Flags};

/// How an option's YAML value reads as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Yaml {
    /// A string or a number.
    Text,
    /// A number is the mode itself (`0o640` == 416), a string octal text.
    Mode,
    /// A boolean, or the same words as text.
    Bool,
}

/// Where an option's value is checked.
#[derive(Clone, Copy)]
pub(super) enum Scope {
    /// Process-wide: this checks the merged value (or gives the default)
    /// into the globals, once; it may look at the other merged values.
    Global(fn(Option<&Src>, &Values, &mut Globals, &mut Problems)),
    /// A default that every profile inherits and may set for itself (the
    /// same key in a profile): checked where a profile inherits it
    /// (profiles.rs), so a bad default nobody inherits is not an error.
    Profile,
}

/// Whether a reload (SIGHUP) applies a change of the option.
#[derive(Clone, Copy)]
pub(super) enum Reload {
    Live,
    /// Only a restart applies it; tells whether two configurations differ in it.
    Restart(fn(&Config, &Config) -> bool),
}

/// One global option.
pub(super) struct Opt {
    /// The YAML key; also its name in the restart warning.
    pub key: &'static str,
    /// The long flag, without `--`.
    pub flag: &'static str,
    pub flag_value: fn(&Flags) -> &Option<String>,
    /// Environment variables, in order of precedence.
    pub env: &'static [&'static str],
    /// Whether an empty environment value is a value (otherwise it is unset).
    pub env_empty_counts: bool,
    pub yaml: Yaml,
    pub scope: Scope,
    pub reload: Reload,
}

impl Opt {
    /// An option with no variable, read from YAML as text, that profiles
    /// inherit and a reload applies; the methods below say otherwise.
    const fn new(
        key: &'static str,
        flag: &'static str,
        flag_value: fn(&Flags) -> &Option<String>,
    ) -> Opt {
        Opt {
            key,
            flag,
            flag_value,
            env: &[],
            env_empty_counts: false,
            yaml: Yaml::Text,
            scope: Scope::Profile,
            reload: Reload::Live,
        }
    }

    /// A default of every profile ([`Scope::Profile`]), as `new` gives.
    const fn inherited(self) -> Opt {
        Opt {
            scope: Scope::Profile,
            ..self
        }
    }

    const fn env(self, env: &'static [&'static str]) -> Opt {
        Opt { env, ..self }
    }

    const fn empty_env_counts(self) -> Opt {
        Opt {
            env_empty_counts: true,
            ..self
        }
    }

    const fn yaml(self, yaml: Yaml) -> Opt {
        Opt { yaml, ..self }
    }

    const fn global(self, check: fn(Option<&Src>, &Values, &mut Globals, &mut Problems)) -> Opt {
        Opt {
            scope: Scope::Global(check),
            ..self
        }
    }

    /// Only a restart applies it; `changed` compares the two configurations.
    const fn restart(self, changed: fn(&Config, &Config) -> bool) -> Opt {
        Opt {
            reload: Reload::Restart(changed),
            ..self
        }
    }
}

/// Every global option, in the order the YAML key list shows them and
/// their checks run (an option may depend on one above it).
pub(super) const OPTIONS: &[Opt] = &[
    Opt::new("token_file", "token-file", |f| &f.token_file)
        .env(&["AWS_WEB_IDENTITY_TOKEN_FILE"])
        .global(validate::token_file)
        .restart(|a, b| a.token_file != b.token_file),
    Opt::new("output_dir", "output-dir", |f| &f.output_dir)
        .env(&["ROLECALL_OUTPUT_DIR"])
        .global(validate::output_dir)
        .restart(|a, b| a.output_dir != b.output_dir),
    Opt::new("app_output_dir", "app-output-dir", |f| &f.app_output_dir)
        .env(&["ROLECALL_APP_OUTPUT_DIR"])
        .global(validate::app_output_dir),
    Opt::new("region", "region", |f| &f.region)
        .env(&["AWS_REGION", "AWS_DEFAULT_REGION"])
        .inherited(),
    Opt::new("sts_endpoint", "sts-endpoint", |f| &f.sts_endpoint)
        .env(&["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"])
        .inherited(),
    Opt::new("use_fips_endpoint", "use-fips-endpoint", |f| {
        &f.use_fips_endpoint
    })
    .env(&["AWS_USE_FIPS_ENDPOINT"])
    .yaml(Yaml::Bool)
    .inherited(),
    Opt::new("use_dualstack_endpoint", "use-dualstack-endpoint", |f| {
        &f.use_dualstack_endpoint
    })
    .env(&["AWS_USE_DUALSTACK_ENDPOINT"])
    .yaml(Yaml::Bool)
    .inherited(),
    Opt::new("duration_seconds", "duration", |f| &f.duration).inherited(),
    Opt::new("role_session_name", "session-name", |f| &f.session_name)
        .env(&["AWS_ROLE_SESSION_NAME"])
        .inherited(),
    Opt::new("credentials", "credentials", |f| &f.credentials).inherited(),
    Opt::new("file_mode", "file-mode", |f| &f.file_mode)
        .yaml(Yaml::Mode)
        .global(validate::file_mode)
        .restart(|a, b| a.file_mode != b.file_mode),
    Opt::new("allow_world_readable", "allow-world-readable", |f| {
        &f.allow_world_readable
    })
    .env(&["ROLECALL_ALLOW_WORLD_READABLE"])
    .yaml(Yaml::Bool)
    .global(validate::allow_world_readable)
    .restart(|a, b| a.allow_world_readable != b.allow_world_readable),
    Opt::new("health_addr", "health-addr", |f| &f.health_addr)
        .env(&["ROLECALL_HEALTH_ADDR"])
        // Empty disables the listener.
        .empty_env_counts()
        .global(validate::health_addr)
        .restart(|a, b| a.health_addr != b.health_addr),
    Opt::new("endpoint_addr", "endpoint-addr", |f| &f.endpoint_addr)
        .global(validate::endpoint_addr)
        .restart(|a, b| a.endpoint_addr != b.endpoint_addr),
    Opt::new("endpoint_token_file", "endpoint-token-file", |f| {
        &f.endpoint_token_file
    })
    .env(&["ROLECALL_ENDPOINT_TOKEN_FILE"])
    .global(validate::endpoint_token_file)
    .restart(|a, b| a.endpoint_token_file != b.endpoint_token_file),
    Opt::new("ca_bundle", "ca-bundle", |f| &f.ca_bundle)
        .env(&["AWS_CA_BUNDLE"])
        .global(validate::ca_bundle)
        .restart(|a, b| a.ca_bundle != b.ca_bundle),
    Opt::new("control_socket", "control-socket", |f| &f.control_socket)
        .env(&["ROLECALL_CONTROL_SOCKET"])
        // Empty disables the socket.
        .empty_env_counts()
        .global(validate::control_socket)
        .restart(|a, b| a.control_socket != b.control_socket),
    Opt::new("proxy", "proxy", |f| &f.proxy)
        .env(&["HTTPS_PROXY", "https_proxy"])
        .global(validate::proxy)
        .restart(|a, b| a.proxy != b.proxy),
    Opt::new("no_proxy", "no-proxy", |f| &f.no_proxy)
        .env(&["NO_PROXY", "no_proxy"])
        .global(validate::no_proxy)
        .restart(|a, b| a.no_proxy != b.no_proxy),
    Opt::new("log_format", "log-format", |f| &f.log_format)
        .env(&["ROLECALL_LOG_FORMAT"])
        .global(validate::log_format)
        .restart(|a, b| a.log_format != b.log_format),
];

/// The top-level YAML key that holds the profiles.
pub(super) const PROFILES_KEY: &str = "profiles";
/// `--profile NAME=ROLE_ARN` and its environment variable (`a=arn,b=arn`).
pub(super) const PROFILES_ENV: &str = "ROLECALL_PROFILES";
/// With no profile configured, this variable (set by the EKS webhook) gives
/// the profile `default`.
pub(super) const ROLE_ARN_ENV: &str = "AWS_ROLE_ARN";
/// The configuration file's variable (the flag is `--config`).
pub(super) const CONFIG_ENV: &str = "ROLECALL_CONFIG";

/// Per-profile keys besides the inherited options ([`Scope::Profile`]).
pub(super) const ROLE_ARN: &str = "role_arn";
/// The per-profile list key.
pub(super) const POLICY_ARNS: &str = "policy_arns";
/// The per-profile map of session tags, and its list of transitive keys.
pub(super) const TAGS: &str = "tags";
pub(super) const TRANSITIVE_TAG_KEYS: &str = "transitive_tag_keys";
/// Per-profile keys read as booleans.
pub(super) const OWN_BOOL_KEYS: &[&str] = &["kubernetes_tags"];
const OWN_PROFILE_KEYS: &[&str] = &[
    "policy",
    POLICY_ARNS,
    "source_profile",
    "external_id",
    TAGS,
    TRANSITIVE_TAG_KEYS,
    "source_identity",
    "kubernetes_tags",
];

/// The option a YAML top-level key names.
pub(super) fn option(key: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.key == key)
}

/// The top-level YAML keys, in the order error messages list them.
pub(super) fn top_keys() -> Vec<&'static str> {
    OPTIONS
        .iter()
        .map(|o| o.key)
        .chain([PROFILES_KEY, super::outputs::OUTPUTS_KEY])
        .collect()
}

/// The keys a profile may set: its role, the inherited options, its own.
pub(super) fn profile_keys() -> Vec<&'static str> {
    let inherited = OPTIONS
        .iter()
        .filter(|o| matches!(o.scope, Scope::Profile))
        .map(|o| o.key);
    [ROLE_ARN]
        .into_iter()
        .chain(inherited)
        .chain(OWN_PROFILE_KEYS.iter().copied())
        .collect()
}

/// The options that differ between `old` and `new` and that only a restart
/// applies, in table order.
pub(super) fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    OPTIONS
        .iter()
        .filter(|o| matches!(o.reload, Reload::Restart(changed) if changed(old, new)))
        .map(|o| o.key)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::Args;

    use super::*;
    use crate::config::{Env, LogFormat};

    #[test]
    fn keys_flags_and_variables_are_each_declared_once() {
        let unique = |xs: Vec<&str>| xs.iter().collect::<BTreeSet<_>>().len() == xs.len();
        assert!(unique(OPTIONS.iter().map(|o| o.key).collect()));
        assert!(unique(OPTIONS.iter().map(|o| o.flag).collect()));
        assert!(unique(
            OPTIONS.iter().flat_map(|o| o.env.iter().copied()).collect()
        ));
        assert!(unique(profile_keys()));
        assert!(option("region").is_some_and(|o| o.flag == "region"));
        assert!(option("profiles").is_none() && option("regoin").is_none());
    }

    #[test]
    fn the_yaml_key_lists_are_derived_from_the_table() {
        assert_eq!(
            top_keys().join(", "),
            "token_file, output_dir, app_output_dir, region, sts_endpoint, use_fips_endpoint, \
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
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(o.flag))
                .unwrap_or_else(|| panic!("no --{}", o.flag));
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            if o.env.is_empty() {
                assert!(!help.contains("env:"), "--{}: {help}", o.flag);
            } else {
                let named = format!("env: {}", o.env.join(", "));
                assert!(help.contains(&named), "--{}: {help}", o.flag);
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
}
