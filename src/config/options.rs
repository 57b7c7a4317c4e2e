//! The table of options: every global option declared once, in one row
//! of [`options!`] (its field, YAML key, environment variables, how its
//! YAML value reads, where it is checked, whether a reload applies it).
//! From the rows come the command line (clap's [`Flags`], its help naming
//! the row's variables and default), the typed [`Layer`] that each source
//! fills (flags, environment, file), the merge, the YAML key lists, the
//! order of the checks and the restart rule.

use std::path::PathBuf;

use super::files::Loaded;
use super::pod;
use super::validate::{self, Globals};
use super::values::{Problems, Sourced, src};
use super::{Config, Env};

/// How an option's YAML value reads as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Yaml {
    /// A string or a number.
    Text,
    /// A number is the mode itself (`0o640` == 416), a string octal text.
    Mode,
    /// A boolean, or the same words as text; its flag takes `--flag`,
    /// `--flag=true` or `--flag=false`.
    Bool,
}

/// One option, as the key lists and the tests read it.
pub(super) struct Opt {
    /// The YAML key; also its name in the restart warning.
    pub key: &'static str,
    /// The [`Flags`] field: the flag with `_` for `-`.
    #[cfg(test)]
    pub field: &'static str,
    /// Environment variables, in order of precedence.
    pub env: &'static [&'static str],
    /// A default that every profile inherits and may set for itself (the
    /// same key in a profile), checked where a profile inherits it
    /// (profiles.rs), so that a bad default nobody inherits is no error.
    pub inherited: bool,
}

/// The rows: `field (| aws)?: "key" (| "aws_key")?, [variables] keep_empty?,
/// yaml, scope, reload, "VALUE" "help" (default "text")?;`. `field` is the
/// [`Flags`] field (the flag with `-` for `_`) and, for a restart option,
/// the [`Config`] field; `aws` and `aws_key`: the AWS config name, accepted
/// as a flag and a YAML key beside rolecall's own (not both in one source);
/// `keep_empty`: an empty variable is a value (otherwise unset); scope
/// `global(check)` checks the merged value once, in row order (a check may
/// read the rows above it), `inherited` leaves it to each profile; reload
/// `restart`: only a restart applies a change (of the [`Config`] field, or
/// `restart(get)` of what `get` reads from the [`Config`]).
macro_rules! options {
    ($($field:ident $(| $aws:ident)?: $key:literal $(| $aws_key:literal)?,
       [$($env:literal),*] $($keep:ident)?, $yaml:ident,
       $scope:ident $(($check:path))?, $reload:ident $(($get:path))?,
       $value_name:literal $help:literal $(default $default:literal)?;)*) => {
        /// Command-line options shared by `run`, `once` and `check`. Values are kept
        /// as text here and validated in [`Config::load`], so that a bad flag is
        /// reported together with every other problem.
        #[derive(clap::Args, Clone, Debug, Default)]
        pub struct Flags {
            /// YAML configuration file [env: ROLECALL_CONFIG]
            #[arg(long, value_name = "FILE")]
            pub config: Option<PathBuf>,
            /// A profile to publish, NAME=ROLE_ARN (repeatable) [env: ROLECALL_PROFILES=a=arn,b=arn]
            #[arg(long = "profile", value_name = "NAME=ROLE_ARN")]
            pub profiles: Vec<String>,
            $(#[arg(
                long,
                value_name = $value_name,
                help = note($help, &[$($env),*], &[$($default)?], &[$(stringify!($aws))?]),
                num_args = if Yaml::$yaml == Yaml::Bool { 0..=1 } else { 1..=1 },
                default_missing_value = (Yaml::$yaml == Yaml::Bool).then_some("true"),
                require_equals = Yaml::$yaml == Yaml::Bool,
            )]
            pub $field: Option<String>,)*
            $($(#[arg(long, hide = true, value_name = $value_name, conflicts_with = stringify!($field))]
            pub $aws: Option<String>,)?)*
        }

        /// The global options as one source gives them, or merged: each
        /// value as text with where it came from (judged after the merge,
        /// so that a value another source overrides is never judged).
        #[derive(Clone, Debug, Default)]
        pub(super) struct Layer {
            $(pub $field: Option<Sourced>,)*
        }

        pub(super) const OPTIONS: &[Opt] = &[$(Opt {
            key: $key,
            #[cfg(test)]
            field: stringify!($field),
            env: &[$($env),*],
            inherited: matches!(stringify!($scope).as_bytes(), b"inherited"),
        },)*];

        impl Layer {
            /// The command line: each option's flag.
            pub fn from_flags(f: &Flags) -> Layer {
                let flag = |v: &Option<String>, field: &str| {
                    v.as_ref().map(|v| src(v, format!("--{}", field.replace('_', "-"))))
                };
                Layer {$($field: flag(&f.$field, stringify!($field))
                    $(.or(flag(&f.$aws, stringify!($aws))))?,)*}
            }

            /// The environment: the first of an option's variables set (to
            /// a non-empty value, unless an empty one counts).
            pub fn from_env(env: &Env) -> Layer {
                Layer {$($field: env_value(env, &[$($env),*], !stringify!($($keep)?).is_empty()),)*}
            }

            /// `self` under `over`: field by field, `over`'s value if set.
            pub fn under(self, over: Layer) -> Layer {
                Layer {$($field: over.$field.or(self.$field),)*}
            }

            /// The field a YAML key names and how its value reads; only
            /// the inherited options when `inherited_only` (in a profile).
            pub fn slot(&mut self, key: &str, inherited_only: bool)
                -> Option<(&mut Option<Sourced>, Yaml)> {
                match key {
                    $($key $(| $aws_key)? if !inherited_only || stringify!($scope) == "inherited" =>
                        Some((&mut self.$field, Yaml::$yaml)),)*
                    _ => None,
                }
            }

            /// Checks each global option's merged value, once, in row
            /// order, with the files the load read.
            pub fn globals(&self, files: Loaded) -> (Globals, Problems) {
                let mut g = Globals { files, ..Globals::default() };
                let mut p = Problems::default();
                $($($check(self.$field.as_ref(), &mut g, &mut p);)?)*
                (g, p)
            }
        }

        /// The options that differ between `old` and `new` and that only a
        /// restart applies, in table order.
        pub(super) fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
            let mut keys = Vec::new();
            $(restart!($reload $(($get))?, old, new, $field, $key, keys);)*
            keys
        }

        /// Rolecall's own key of an AWS config name (`endpoint_url`).
        pub(super) fn own_key(key: &str) -> Option<&'static str> {
            match key {
                $($($aws_key => Some($key),)?)*
                _ => None,
            }
        }
    };
}

/// A flag's help with its note: ` [env: A, B; default: D]`, or the part
/// there is, and its AWS name as clap shows a visible alias.
fn note(help: &str, env: &[&str], default: &[&str], aws: &[&str]) -> String {
    let env = (!env.is_empty()).then(|| format!("env: {}", env.join(", ")));
    let notes: Vec<String> = env
        .into_iter()
        .chain(default.iter().map(|d| format!("default: {d}")))
        .collect();
    let aws = aws
        .iter()
        .map(|a| format!(" [alias: --{}]", a.replace('_', "-")));
    let aws: String = aws.collect();
    if notes.is_empty() {
        return format!("{help}{aws}");
    }
    format!("{help} [{}]{aws}", notes.join("; "))
}
macro_rules! restart {
    (restart ($get:path), $old:ident, $new:ident, $field:ident, $key:expr, $keys:ident) => {
        if $get($old) != $get($new) {
            $keys.push($key);
        }
    };
    (restart, $old:ident, $new:ident, $field:ident, $key:expr, $keys:ident) => {
        if $old.$field != $new.$field {
            $keys.push($key);
        }
    };
    (live, $($t:tt)*) => {};
}

options! {
    token_file | web_identity_token_file: "token_file" | "web_identity_token_file", ["AWS_WEB_IDENTITY_TOKEN_FILE"], Text, global(validate::token_file), restart(pod::web_token),
        "PATH" "Projected service-account token (identity: web-identity)";
    identity: "identity", ["ROLECALL_IDENTITY"], Text, global(pod::identity), restart(pod::kind),
        "IDENTITY" "Where rolecall's own identity comes from: web-identity (the token, AssumeRoleWithWebIdentity) or pod-identity (the EKS Pod Identity agent's session, which every profile chains from)"
        default "web-identity";
    pod_identity_endpoint: "pod_identity_endpoint", ["AWS_CONTAINER_CREDENTIALS_FULL_URI"], Text, global(pod::endpoint), restart(pod::endpoint_of),
        "URL" "The EKS Pod Identity agent's URL, http:// to loopback, 169.254.170.23 or [fd00:ec2::23] (identity: pod-identity)"
        default "http://169.254.170.23/v1/credentials";
    pod_identity_token_file: "pod_identity_token_file", ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], Text, global(pod::token_file), restart(pod::pod_token),
        "PATH" "The Pod Identity token sent to the agent (identity: pod-identity)"
        default "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";
    pod_identity_profile: "pod_identity_profile", ["ROLECALL_POD_IDENTITY_PROFILE"], Text, global(pod::profile), live,
        "NAME" "Publish the Pod Identity agent's session as this profile (identity: pod-identity)"
        default "unpublished, named pod-identity";
    output_dir: "output_dir", ["ROLECALL_OUTPUT_DIR"], Text, global(validate::output_dir), restart,
        "DIR" "Directory the credentials and config files are written to";
    app_output_dir: "app_output_dir", ["ROLECALL_APP_OUTPUT_DIR"], Text, global(validate::app_output_dir), live,
        "DIR" "Where the application container mounts the output dir, for the credential_process lines in `config`"
        default "the output dir";
    region: "region", ["AWS_REGION", "AWS_DEFAULT_REGION"], Text, inherited, live,
        "REGION" "AWS region for STS calls and the config file";
    sts_endpoint | endpoint_url: "sts_endpoint" | "endpoint_url", ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"], Text, inherited, live,
        "URL" "STS endpoint URL";
    use_fips_endpoint: "use_fips_endpoint", ["AWS_USE_FIPS_ENDPOINT"], Bool, inherited, live,
        "BOOL" "Call STS's FIPS endpoints (sts-fips.REGION...)" default "false";
    use_dualstack_endpoint: "use_dualstack_endpoint", ["AWS_USE_DUALSTACK_ENDPOINT"], Bool, inherited, live,
        "BOOL" "Call STS's dual-stack (IPv4 and IPv6) endpoints (sts.REGION.api.aws)" default "false";
    duration | duration_seconds: "duration_seconds", [], Text, inherited, live,
        "SECONDS" "Session duration in seconds, 900-43200" default "3600";
    session_name | role_session_name: "role_session_name", ["AWS_ROLE_SESSION_NAME"], Text, inherited, live,
        "NAME" "Role session name" default "rolecall-$HOSTNAME";
    credentials: "credentials", [], Text, inherited, live,
        "MODE" "How profiles are published: file, process or endpoint" default "process";
    file_mode: "file_mode", [], Mode, global(validate::file_mode), restart,
        "OCTAL" "Mode of the written files, in octal; group/other write is refused" default "0640";
    allow_world_readable: "allow_world_readable", ["ROLECALL_ALLOW_WORLD_READABLE"], Bool, global(validate::allow_world_readable), restart,
        "BOOL" "Allow a --file-mode that every user can read (e.g. 0644)" default "false";
    health_addr: "health_addr", ["ROLECALL_HEALTH_ADDR"] keep_empty, Text, global(validate::health_addr), restart,
        "ADDR" "Health and metrics listener; empty disables" default "0.0.0.0:9911";
    endpoint_addr: "endpoint_addr", [], Text, global(validate::endpoint_addr), restart,
        "ADDR" "Loopback credentials endpoint, e.g. 127.0.0.1:9912" default "off";
    endpoint_token_file: "endpoint_token_file", ["ROLECALL_ENDPOINT_TOKEN_FILE"], Text, global(validate::endpoint_token_file), restart,
        "PATH" "The endpoint's authorization token, read from this file (e.g. a mounted Secret) instead of generated; needs --endpoint-addr";
    ca_bundle: "ca_bundle", ["AWS_CA_BUNDLE"], Text, global(validate::ca_bundle), restart,
        "FILE" "PEM certificates trusted for STS calls besides the system's roots (a TLS-inspecting proxy, a private STS endpoint)";
    control_socket: "control_socket", ["ROLECALL_CONTROL_SOCKET"] keep_empty, Text, global(validate::control_socket), restart,
        "PATH" "Unix socket of `rolecall reload` and `rolecall refresh`, in a directory only this container mounts; empty disables"
        default "/run/rolecall/control.sock";
    proxy: "proxy", ["HTTPS_PROXY", "https_proxy"], Text, global(validate::proxy), restart,
        "URL" "HTTP(S) proxy for STS calls, http://[USER:PASS@]HOST:PORT, USER and PASS %-escaped (a CONNECT tunnel; loopback is never proxied)";
    no_proxy: "no_proxy", ["NO_PROXY", "no_proxy"], Text, global(validate::no_proxy), restart,
        "LIST" "Hosts reached without the proxy: comma-separated names, .suffixes, CIDRs or *";
    log_format: "log_format", ["ROLECALL_LOG_FORMAT"], Text, global(validate::log_format), restart,
        "FORMAT" "Log format: text or json" default "text";
}

/// The first of `names` set (to a non-empty value unless `keep_empty`).
fn env_value(env: &Env, names: &[&str], keep_empty: bool) -> Option<Sourced> {
    names.iter().find_map(|n| {
        env.get(*n)
            .filter(|v| keep_empty || !v.is_empty())
            .map(|v| src(v.clone(), format!("environment {n}")))
    })
}

/// An option's variable as the environment sets it (empty included), for
/// the commands that read one option without loading a configuration.
pub(super) fn env_raw<'a>(env: &'a Env, key: &str) -> Option<&'a str> {
    let o = OPTIONS.iter().find(|o| o.key == key)?;
    o.env.iter().find_map(|n| env.get(*n)).map(String::as_str)
}

/// The top-level YAML key of the output sets.
pub(super) const OUTPUTS_KEY: &str = "outputs";
/// The keys a profile has besides its role and the inherited options.
pub(super) const OWN_PROFILE_KEYS: &[&str] = &[
    "policy",
    "policy_arns",
    "source_profile",
    "external_id",
    "tags",
    "transitive_tag_keys",
    "source_identity",
    "kubernetes_tags",
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
/// The profile key of its role.
pub(super) const ROLE_ARN: &str = "role_arn";

/// The top-level YAML keys, in the order error messages list them.
pub(super) fn top_keys() -> Vec<&'static str> {
    let keys = OPTIONS.iter().map(|o| o.key);
    keys.chain([PROFILES_KEY, OUTPUTS_KEY]).collect()
}

/// The keys a profile may set: its role, the inherited options, its own.
pub(super) fn profile_keys() -> Vec<&'static str> {
    let inherited = OPTIONS.iter().filter(|o| o.inherited).map(|o| o.key);
    [ROLE_ARN]
        .into_iter()
        .chain(inherited)
        .chain(OWN_PROFILE_KEYS.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests;
