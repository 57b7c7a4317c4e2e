//! The command line's options (clap): read by the table in options.rs,
//! which says what each one means.

use std::path::PathBuf;

#[cfg(doc)]
use super::Config;

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
    /// Projected service-account token [env: AWS_WEB_IDENTITY_TOKEN_FILE]
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<String>,
    /// Directory the credentials and config files are written to [env: ROLECALL_OUTPUT_DIR]
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<String>,
    /// Where the application container mounts the output dir, for the
    /// credential_process lines in `config` [env: ROLECALL_APP_OUTPUT_DIR; default: the output dir]
    #[arg(long, value_name = "DIR")]
    pub app_output_dir: Option<String>,
    /// AWS region for STS calls and the config file [env: AWS_REGION, AWS_DEFAULT_REGION]
    #[arg(long)]
    pub region: Option<String>,
    /// STS endpoint URL [env: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// Call STS's FIPS endpoints (sts-fips.REGION...) [env: AWS_USE_FIPS_ENDPOINT; default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub use_fips_endpoint: Option<String>,
    /// Call STS's dual-stack (IPv4 and IPv6) endpoints (sts.REGION.api.aws) [env: AWS_USE_DUALSTACK_ENDPOINT; default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub use_dualstack_endpoint: Option<String>,
    /// Session duration in seconds, 900-43200 [default: 3600]
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<String>,
    /// Role session name [env: AWS_ROLE_SESSION_NAME; default: rolecall-$HOSTNAME]
    #[arg(long, value_name = "NAME")]
    pub session_name: Option<String>,
    /// How profiles are published: file, process or endpoint [default: file]
    #[arg(long, value_name = "MODE")]
    pub credentials: Option<String>,
    /// Mode of the written files, in octal; group/other write is refused [default: 0640]
    #[arg(long, value_name = "OCTAL")]
    pub file_mode: Option<String>,
    /// Allow a --file-mode that every user can read (e.g. 0644) [env: ROLECALL_ALLOW_WORLD_READABLE; default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub allow_world_readable: Option<String>,
    /// Health and metrics listener; empty disables [env: ROLECALL_HEALTH_ADDR; default: 0.0.0.0:9911]
    #[arg(long, value_name = "ADDR")]
    pub health_addr: Option<String>,
    /// Loopback credentials endpoint, e.g. 127.0.0.1:9912 [default: off]
    #[arg(long, value_name = "ADDR")]
    pub endpoint_addr: Option<String>,
    /// The endpoint's authorization token, read from this file (e.g. a
    /// mounted Secret) instead of generated; needs --endpoint-addr [env: ROLECALL_ENDPOINT_TOKEN_FILE]
    #[arg(long, value_name = "PATH")]
    pub endpoint_token_file: Option<String>,
    /// PEM certificates trusted for STS calls besides the system's roots (a
    /// TLS-inspecting proxy, a private STS endpoint) [env: AWS_CA_BUNDLE]
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<String>,
    /// Unix socket of `rolecall reload` and `rolecall refresh`, in a directory
    /// only this container mounts; empty disables [env: ROLECALL_CONTROL_SOCKET; default: /run/rolecall/control.sock]
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<String>,
    /// HTTP(S) proxy for STS calls, http://[USER:PASS@]HOST:PORT, USER and
    /// PASS %-escaped (a CONNECT tunnel; loopback is never proxied) [env:
    /// HTTPS_PROXY, https_proxy]
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Hosts reached without the proxy: comma-separated names, .suffixes,
    /// CIDRs or * [env: NO_PROXY, no_proxy]
    #[arg(long, value_name = "LIST")]
    pub no_proxy: Option<String>,
    /// Log format: text or json [env: ROLECALL_LOG_FORMAT; default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}
