//! Configuration: flags, environment and a YAML file, merged and validated.
//!
//! Precedence is flag > environment > file > default. Every value is checked
//! before anything talks to STS, and every problem found is reported at once
//! (the caller exits 64), each with the flag, variable or YAML key path it came
//! from. Tests pass the environment as a map instead of mutating the process.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::Value;

pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";
pub const DEFAULT_OUTPUT_DIR: &str = "/aws";
pub const DEFAULT_DURATION: u32 = 3600;
pub const MIN_DURATION: u32 = 900;
pub const MAX_DURATION: u32 = 43200;
/// AWS caps role-chained sessions at one hour.
pub const MAX_CHAINED_DURATION: u32 = 3600;
pub const DEFAULT_FILE_MODE: u32 = 0o640;
pub const DEFAULT_HEALTH_ADDR: &str = "0.0.0.0:9911";
pub const MAX_POLICY_CHARS: usize = 2048;
pub const MAX_POLICY_ARNS: usize = 10;
/// The largest configuration file read: a real one is a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 256 * 1024;
/// The deepest nesting accepted in the configuration file (a real one
/// nests 4 levels: profiles, name, key, list). Checked before the YAML
/// parser runs, whose time grows with the square of the depth.
pub const MAX_CONFIG_DEPTH: usize = 32;

/// The environment as a map, so tests never touch the process environment.
pub type Env = BTreeMap<String, String>;

/// The process environment (only valid UTF-8 entries).
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

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
    /// Log format: text or json [env: ROLECALL_LOG_FORMAT; default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// How a profile's credentials reach the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsMode {
    /// Keys in the shared `credentials` file.
    File,
    /// A `credential_process` line in `config` running the rolecall helper.
    Process,
    /// Served only by the loopback credentials endpoint: never written to
    /// `credentials` or `credential-process.json`; `config` holds its region.
    Endpoint,
}

impl CredentialsMode {
    /// The name used in the configuration and in `status.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialsMode::File => "file",
            CredentialsMode::Process => "process",
            CredentialsMode::Endpoint => "endpoint",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One validated profile: everything needed for its STS call and its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub role_arn: String,
    pub region: Option<String>,
    pub sts_endpoint: Option<String>,
    pub duration: Duration,
    pub session_name: String,
    pub credentials: CredentialsMode,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub source_profile: Option<String>,
    pub external_id: Option<String>,
}

impl Profile {
    /// A profile with the defaults a configuration gives when nothing else is
    /// said (for tests and tools; the role ARN is not validated here).
    pub fn new(name: impl Into<String>, role_arn: impl Into<String>) -> Profile {
        Profile {
            name: name.into(),
            role_arn: role_arn.into(),
            region: None,
            sts_endpoint: None,
            duration: Duration::from_secs(DEFAULT_DURATION.into()),
            session_name: "rolecall".into(),
            credentials: CredentialsMode::File,
            policy: None,
            policy_arns: Vec::new(),
            source_profile: None,
            external_id: None,
        }
    }

    /// The account that owns the role (the ARN's fifth field).
    pub fn account(&self) -> &str {
        self.role_arn.split(':').nth(4).unwrap_or_default()
    }
}

/// The validated configuration of one rolecall process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub config_file: Option<PathBuf>,
    pub token_file: PathBuf,
    pub output_dir: PathBuf,
    /// The output dir as the application sees it (process mode).
    pub app_output_dir: PathBuf,
    pub file_mode: u32,
    /// Whether a `file_mode` with the other-read bit was explicitly allowed.
    pub allow_world_readable: bool,
    pub health_addr: Option<SocketAddr>,
    pub endpoint_addr: Option<SocketAddr>,
    /// A file holding the endpoint's authorization token (validated at load).
    pub endpoint_token_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// Sorted by name.
    pub profiles: Vec<Profile>,
}

/// One thing wrong with the configuration, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    pub message: String,
}

/// Every problem found, reported together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {}: {}", p.origin, p.message)?;
        }
        Ok(())
    }
}

/// A raw value with the place it came from, for error messages.
#[derive(Clone, Debug)]
struct Src<T> {
    value: T,
    origin: String,
}

fn src<T>(value: T, origin: impl Into<String>) -> Src<T> {
    Src {
        value,
        origin: origin.into(),
    }
}

/// Per-profile settings as read from the file (all optional but the ARN).
#[derive(Clone, Debug, Default)]
struct RawProfile {
    role_arn: Option<Src<String>>,
    region: Option<Src<String>>,
    sts_endpoint: Option<Src<String>>,
    duration_seconds: Option<Src<String>>,
    role_session_name: Option<Src<String>>,
    credentials: Option<Src<String>>,
    policy: Option<Src<String>>,
    policy_arns: Vec<Src<String>>,
    source_profile: Option<Src<String>>,
    external_id: Option<Src<String>>,
}

/// The YAML file's top-level options.
#[derive(Debug, Default)]
struct FileConfig {
    token_file: Option<Src<String>>,
    output_dir: Option<Src<String>>,
    app_output_dir: Option<Src<String>>,
    region: Option<Src<String>>,
    sts_endpoint: Option<Src<String>>,
    duration_seconds: Option<Src<String>>,
    role_session_name: Option<Src<String>>,
    credentials: Option<Src<String>>,
    file_mode: Option<Src<String>>,
    allow_world_readable: Option<Src<String>>,
    health_addr: Option<Src<String>>,
    endpoint_addr: Option<Src<String>>,
    endpoint_token_file: Option<Src<String>>,
    log_format: Option<Src<String>>,
    profiles: Vec<(Src<String>, RawProfile)>,
}

const TOP_KEYS: &[&str] = &[
    "token_file",
    "output_dir",
    "app_output_dir",
    "region",
    "sts_endpoint",
    "duration_seconds",
    "role_session_name",
    "credentials",
    "file_mode",
    "allow_world_readable",
    "health_addr",
    "endpoint_addr",
    "endpoint_token_file",
    "log_format",
    "profiles",
];
const PROFILE_KEYS: &[&str] = &[
    "role_arn",
    "region",
    "sts_endpoint",
    "duration_seconds",
    "role_session_name",
    "credentials",
    "policy",
    "policy_arns",
    "source_profile",
    "external_id",
];

/// Collects problems while the configuration is assembled.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, origin: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            origin: origin.into(),
            message: message.into(),
        });
    }
}

/// A YAML scalar as text. `file_mode` is special-cased by the caller: YAML
/// reads `0o640` as a number and `0640` as a string.
fn scalar(v: &Value, origin: &str, problems: &mut Problems) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        Value::Bool(_) => {
            problems.push(origin, "expected a string or number, found a boolean");
            None
        }
        Value::Sequence(_) => {
            problems.push(origin, "expected a single value, found a list");
            None
        }
        Value::Mapping(_) => {
            problems.push(origin, "expected a single value, found a mapping");
            None
        }
        Value::Tagged(_) => {
            problems.push(origin, "YAML tags are not supported here");
            None
        }
    }
}

fn key_name(k: &Value, parent: &str, problems: &mut Problems) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        _ => {
            problems.push(parent, "keys must be strings");
            None
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn parse_file(text: &[u8], file: &Path, problems: &mut Problems) -> FileConfig {
    let mut out = FileConfig::default();
    let prefix = file.display().to_string();
    if text.len() as u64 > MAX_CONFIG_BYTES {
        problems.push(prefix, too_large());
        return out;
    }
    let depth = nesting_depth(text);
    if depth > MAX_CONFIG_DEPTH {
        problems.push(
            prefix,
            format!(
                "the file nests deeper than {MAX_CONFIG_DEPTH} levels (a rolecall configuration needs 4); it is refused before parsing"
            ),
        );
        return out;
    }
    let root: Value = match serde_yaml_ng::from_slice(text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(prefix, format!("not valid YAML: {e}"));
            return out;
        }
    };
    let map = match root {
        Value::Mapping(m) => m,
        Value::Null => return out,
        _ => {
            problems.push(prefix, "the file must hold a mapping of options");
            return out;
        }
    };
    let here = |key: &str| format!("{prefix}: {key}");
    for (k, v) in &map {
        let Some(key) = key_name(k, &prefix, problems) else {
            continue;
        };
        let origin = here(&printable(&key));
        let slot = match key.as_str() {
            "token_file" => &mut out.token_file,
            "output_dir" => &mut out.output_dir,
            "app_output_dir" => &mut out.app_output_dir,
            "region" => &mut out.region,
            "sts_endpoint" => &mut out.sts_endpoint,
            "duration_seconds" => &mut out.duration_seconds,
            "role_session_name" => &mut out.role_session_name,
            "credentials" => &mut out.credentials,
            "health_addr" => &mut out.health_addr,
            "endpoint_addr" => &mut out.endpoint_addr,
            "endpoint_token_file" => &mut out.endpoint_token_file,
            "log_format" => &mut out.log_format,
            "file_mode" => {
                // A YAML number is the mode itself (0o640 == 416); a string is octal text.
                out.file_mode = match v {
                    Value::Number(n) => {
                        n.as_u64()
                            .map(|m| src(format!("{m:o}"), &origin))
                            .or_else(|| {
                                problems.push(&origin, "expected an octal mode such as \"0640\"");
                                None
                            })
                    }
                    _ => scalar(v, &origin, problems).map(|s| src(s, &origin)),
                };
                continue;
            }
            "allow_world_readable" => {
                // A YAML boolean, or the same words as text.
                out.allow_world_readable = match v {
                    Value::Bool(b) => Some(src(b.to_string(), &origin)),
                    _ => scalar(v, &origin, problems).map(|s| src(s, &origin)),
                };
                continue;
            }
            "profiles" => {
                out.profiles = parse_profiles(v, &origin, problems);
                continue;
            }
            other => {
                problems.push(
                    origin,
                    format!(
                        "unknown key `{}` (known keys: {})",
                        printable(other),
                        TOP_KEYS.join(", ")
                    ),
                );
                continue;
            }
        };
        *slot = scalar(v, &origin, problems).map(|s| src(s, &origin));
    }
    out
}

fn parse_profiles(
    v: &Value,
    origin: &str,
    problems: &mut Problems,
) -> Vec<(Src<String>, RawProfile)> {
    let map = match v {
        Value::Mapping(m) => m,
        Value::Null => return Vec::new(),
        _ => {
            problems.push(origin, "expected a mapping of profile name to settings");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let Some(name) = key_name(k, origin, problems) else {
            continue;
        };
        let porigin = join(origin, &printable(&name));
        let mut p = RawProfile::default();
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let Some(key) = key_name(k, &porigin, problems) else {
                        continue;
                    };
                    let korigin = join(&porigin, &printable(&key));
                    let slot = match key.as_str() {
                        "role_arn" => &mut p.role_arn,
                        "region" => &mut p.region,
                        "sts_endpoint" => &mut p.sts_endpoint,
                        "duration_seconds" => &mut p.duration_seconds,
                        "role_session_name" => &mut p.role_session_name,
                        "credentials" => &mut p.credentials,
                        "policy" => &mut p.policy,
                        "source_profile" => &mut p.source_profile,
                        "external_id" => &mut p.external_id,
                        "policy_arns" => {
                            match v {
                                Value::Sequence(items) => {
                                    for (i, item) in items.iter().enumerate() {
                                        let o = format!("{korigin}[{i}]");
                                        if let Some(s) = scalar(item, &o, problems) {
                                            p.policy_arns.push(src(s, o));
                                        }
                                    }
                                }
                                Value::Null => {}
                                _ => problems.push(&korigin, "expected a list of policy ARNs"),
                            }
                            continue;
                        }
                        other => {
                            problems.push(
                                korigin,
                                format!(
                                    "unknown key `{}` (known profile keys: {})",
                                    printable(other),
                                    PROFILE_KEYS.join(", ")
                                ),
                            );
                            continue;
                        }
                    };
                    *slot = scalar(v, &korigin, problems).map(|s| src(s, &korigin));
                }
            }
            Value::String(arn) => p.role_arn = Some(src(arn.clone(), &porigin)),
            _ => problems.push(
                &porigin,
                "expected a mapping with role_arn (or the role ARN as a string)",
            ),
        }
        out.push((src(name, porigin), p));
    }
    out
}

/// Parses `NAME=ARN` pairs from `--profile` flags or `ROLECALL_PROFILES`.
fn parse_pairs<'a>(
    items: impl Iterator<Item = (&'a str, String)>,
    problems: &mut Problems,
) -> Vec<(Src<String>, RawProfile)> {
    let mut out = Vec::new();
    for (item, origin) in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.split_once('=') {
            Some((name, arn)) => {
                let p = RawProfile {
                    role_arn: Some(src(arn.trim().to_owned(), &origin)),
                    ..RawProfile::default()
                };
                out.push((src(name.trim().to_owned(), origin), p));
            }
            None => problems.push(
                origin,
                format!("expected NAME=ROLE_ARN, got \"{}\"", printable(item)),
            ),
        }
    }
    out
}

/// Shortens and escapes a user value for an error message.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

fn env_src(env: &Env, names: &[&str]) -> Option<Src<String>> {
    names.iter().find_map(|n| {
        env.get(*n)
            .filter(|v| !v.is_empty())
            .map(|v| src(v.clone(), format!("environment {n}")))
    })
}

fn flag_src(v: &Option<String>, flag: &str) -> Option<Src<String>> {
    v.as_ref().map(|v| src(v.clone(), format!("--{flag}")))
}

/// flag > environment > file.
fn pick(
    flag: Option<Src<String>>,
    env: Option<Src<String>>,
    file: &Option<Src<String>>,
) -> Option<Src<String>> {
    flag.or(env).or_else(|| file.clone())
}

impl Config {
    /// Reads the file named by `--config` or `ROLECALL_CONFIG` (if any),
    /// merges it with flags and environment, and validates everything.
    pub fn load(flags: &Flags, env: &Env) -> Result<Config, ConfigError> {
        let config_file = flags.config.clone().or_else(|| {
            env.get("ROLECALL_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        // Followed if a symlink (a ConfigMap mount is kubelet's `..data`
        // layout), but a regular file only, opened non-blocking and capped.
        let text = config_file.as_ref().map(|path| {
            crate::fsread::read(path, MAX_CONFIG_BYTES, crate::fsread::Follow::Yes).map_err(|e| {
                match e {
                    crate::fsread::ReadError::TooLarge { .. } => too_large(),
                    e => format!("cannot read the configuration file: it {e}"),
                }
            })
        });
        assemble(flags, env, config_file.as_deref(), text)
    }

    /// Like [`Config::load`], with the file's bytes given instead of read
    /// (for fuzzing and tests); `name` stands for the file in messages.
    pub fn load_text(
        flags: &Flags,
        env: &Env,
        name: &Path,
        text: &[u8],
    ) -> Result<Config, ConfigError> {
        assemble(flags, env, Some(name), Some(Ok(text.to_vec())))
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

/// Parses the file (if any), merges and validates; every problem at once.
fn assemble(
    flags: &Flags,
    env: &Env,
    path: Option<&Path>,
    text: Option<Result<Vec<u8>, String>>,
) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();
    let file = match (path, text) {
        (Some(path), Some(Ok(text))) => parse_file(&text, path, &mut problems),
        (Some(path), Some(Err(message))) => {
            problems.push(path.display().to_string(), message);
            FileConfig::default()
        }
        _ => FileConfig::default(),
    };
    let config = build(flags, env, file, path.map(Path::to_owned), &mut problems);
    // A bad shared default is seen once per profile: report it once.
    let mut seen = BTreeSet::new();
    problems
        .0
        .retain(|p| seen.insert((p.origin.clone(), p.message.clone())));
    if problems.0.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError {
            problems: problems.0,
        })
    }
}

fn build(
    flags: &Flags,
    env: &Env,
    file: FileConfig,
    config_file: Option<PathBuf>,
    problems: &mut Problems,
) -> Config {
    let token_file = pick(
        flag_src(&flags.token_file, "token-file"),
        env_src(env, &["AWS_WEB_IDENTITY_TOKEN_FILE"]),
        &file.token_file,
    )
    .map(|s| check_path(&s, problems))
    .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE));
    let output_dir = pick(
        flag_src(&flags.output_dir, "output-dir"),
        env_src(env, &["ROLECALL_OUTPUT_DIR"]),
        &file.output_dir,
    )
    .map(|s| check_path(&s, problems))
    .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT_DIR));
    let app_output_dir = pick(
        flag_src(&flags.app_output_dir, "app-output-dir"),
        env_src(env, &["ROLECALL_APP_OUTPUT_DIR"]),
        &file.app_output_dir,
    )
    .map(|s| {
        let p = check_path(&s, problems);
        if !p.is_absolute() || s.value.chars().any(char::is_whitespace) {
            problems.push(&s.origin, "must be an absolute path without spaces (it is written into credential_process lines)");
        }
        p
    })
    .unwrap_or_else(|| std::path::absolute(&output_dir).unwrap_or_else(|_| output_dir.clone()));
    let file_mode = pick(
        flag_src(&flags.file_mode, "file-mode"),
        None,
        &file.file_mode,
    )
    .and_then(|s| {
        validate(&s, problems, |v| {
            u32::from_str_radix(v.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    format!(
                        "\"{}\" is not an octal file mode such as 0640",
                        printable(v)
                    )
                })
        })
    })
    .unwrap_or(DEFAULT_FILE_MODE);
    let allow_world_readable = pick(
        flag_src(&flags.allow_world_readable, "allow-world-readable"),
        env_src(env, &["ROLECALL_ALLOW_WORLD_READABLE"]),
        &file.allow_world_readable,
    )
    .and_then(|s| validate(&s, problems, parse_bool))
    .unwrap_or(false);
    let mode_origin = flags
        .file_mode
        .as_ref()
        .map(|_| "--file-mode".to_owned())
        .or_else(|| file.file_mode.as_ref().map(|s| s.origin.clone()))
        .unwrap_or_else(|| "--file-mode".into());
    if file_mode & 0o022 != 0 {
        problems.push(
            &mode_origin,
            format!(
                "mode {file_mode:04o} makes the credentials writable by {}: anyone could replace the keys the application uses; use 0640 (readable by the group, e.g. a shared fsGroup) or 0600",
                if file_mode & 0o002 != 0 { "every user" } else { "the group" }
            ),
        );
    } else if file_mode & 0o004 != 0 && !allow_world_readable {
        problems.push(
            &mode_origin,
            format!(
                "mode {file_mode:04o} makes the credentials readable by every user: use 0640 with a shared fsGroup for the application container, or pass --allow-world-readable (ROLECALL_ALLOW_WORLD_READABLE=true, `allow_world_readable: true`) if every user of the pod may hold them"
            ),
        );
    }
    // The health listener may be disabled with an empty value, so the
    // environment is read even when empty.
    let health = flag_src(&flags.health_addr, "health-addr")
        .or_else(|| {
            env.get("ROLECALL_HEALTH_ADDR")
                .map(|v| src(v.clone(), "environment ROLECALL_HEALTH_ADDR"))
        })
        .or(file.health_addr.clone());
    let health_addr = match health {
        None => Some(DEFAULT_HEALTH_ADDR.parse().expect("valid default")),
        Some(s) if s.value.trim().is_empty() => None,
        Some(s) => validate(&s, problems, parse_addr),
    };
    let endpoint_addr_src = pick(
        flag_src(&flags.endpoint_addr, "endpoint-addr"),
        None,
        &file.endpoint_addr,
    )
    .filter(|s| !s.value.trim().is_empty());
    let endpoint_addr = endpoint_addr_src.clone()
        .and_then(|s| {
            validate(&s, problems, |v| {
                let a = parse_addr(v)?;
                if a.ip().is_loopback() {
                    Ok(a)
                } else {
                    Err(format!(
                        "{a} is not a loopback address: the credentials endpoint must only be reachable inside the pod (use 127.0.0.1:PORT)"
                    ))
                }
            })
        });
    // Read and validated here, so that a bad token file exits 64 at start
    // (and a SIGHUP while it is bad is refused); the endpoint reads it again
    // when it changes. The token never appears in a message.
    let endpoint_token_file = pick(
        flag_src(&flags.endpoint_token_file, "endpoint-token-file"),
        env_src(env, &["ROLECALL_ENDPOINT_TOKEN_FILE"]),
        &file.endpoint_token_file,
    )
    .map(|s| {
        let path = check_path(&s, problems);
        if endpoint_addr_src.is_none() {
            problems.push(
                &s.origin,
                "the token is only used by the credentials endpoint: set endpoint_addr (--endpoint-addr 127.0.0.1:PORT) too, or remove this option",
            );
        } else if !s.value.is_empty()
            && let Err(e) = crate::endpoint::read_supplied_token(&path)
        {
            problems.push(&s.origin, e);
        }
        path
    });
    let log_format = pick(
        flag_src(&flags.log_format, "log-format"),
        env_src(env, &["ROLECALL_LOG_FORMAT"]),
        &file.log_format,
    )
    .and_then(|s| {
        validate(&s, problems, |v| match v {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "\"{}\" is not a log format: use text or json",
                printable(v)
            )),
        })
    })
    .unwrap_or(LogFormat::Text);

    // Defaults that every profile inherits.
    let region = pick(
        flag_src(&flags.region, "region"),
        env_src(env, &["AWS_REGION", "AWS_DEFAULT_REGION"]),
        &file.region,
    );
    let sts_endpoint = pick(
        flag_src(&flags.sts_endpoint, "sts-endpoint"),
        env_src(env, &["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"]),
        &file.sts_endpoint,
    );
    let duration = pick(
        flag_src(&flags.duration, "duration"),
        None,
        &file.duration_seconds,
    );
    let session_name = pick(
        flag_src(&flags.session_name, "session-name"),
        env_src(env, &["AWS_ROLE_SESSION_NAME"]),
        &file.role_session_name,
    );
    let credentials = pick(
        flag_src(&flags.credentials, "credentials"),
        None,
        &file.credentials,
    );

    // Profiles: the union of file, environment and flags; a name given in a
    // higher-precedence source overrides the role ARN of a lower one and
    // keeps the file's per-profile settings. A name twice in one source is
    // an error.
    let mut merged: BTreeMap<String, (Src<String>, RawProfile)> = BTreeMap::new();
    let env_profiles = env
        .get("ROLECALL_PROFILES")
        .map(|v| {
            parse_pairs(
                v.split(',')
                    .map(|i| (i, "environment ROLECALL_PROFILES".to_owned())),
                problems,
            )
        })
        .unwrap_or_default();
    let flag_profiles = parse_pairs(
        flags
            .profiles
            .iter()
            .map(|i| (i.as_str(), format!("--profile {}", printable(i)))),
        problems,
    );
    for source in [file.profiles, env_profiles, flag_profiles] {
        let mut seen = BTreeSet::new();
        for (name, raw) in source {
            if !seen.insert(name.value.clone()) {
                problems.push(
                    &name.origin,
                    format!("duplicate profile \"{}\"", printable(&name.value)),
                );
                continue;
            }
            match merged.get_mut(&name.value) {
                Some((_, existing)) => existing.role_arn = raw.role_arn,
                None => {
                    merged.insert(name.value.clone(), (name, raw));
                }
            }
        }
    }
    if merged.is_empty()
        && let Some(arn) = env_src(env, &["AWS_ROLE_ARN"])
    {
        merged.insert(
            "default".into(),
            (
                src("default".into(), "environment AWS_ROLE_ARN"),
                RawProfile {
                    role_arn: Some(arn),
                    ..RawProfile::default()
                },
            ),
        );
    }
    // A file with problems has already been reported; its profiles are not
    // "missing".
    let file_reported = config_file.as_ref().is_some_and(|f| {
        let f = f.display().to_string();
        problems.0.iter().any(|p| p.origin.starts_with(&f))
    });
    if merged.is_empty() && !file_reported {
        problems.push(
            "profiles",
            "no profiles configured: give --profile NAME=ROLE_ARN, ROLECALL_PROFILES, `profiles` in the config file, or AWS_ROLE_ARN",
        );
    }

    let default_session = default_session_name(env);
    let mut profiles = Vec::new();
    for (name, (name_src, raw)) in &merged {
        let ok_name = check_profile_name(name_src, problems);
        let role_arn = match &raw.role_arn {
            Some(s) => validate(s, problems, check_role_arn),
            None => {
                problems.push(join(&name_src.origin, "role_arn"), "missing role_arn");
                None
            }
        };
        let region_src = raw.region.clone().or_else(|| region.clone());
        let endpoint_src = raw.sts_endpoint.clone().or_else(|| sts_endpoint.clone());
        if region_src.is_none()
            && endpoint_src.is_none()
            && !problems.0.iter().any(|p| p.origin == "region")
        {
            problems.push(
                "region",
                "no AWS region: set --region, AWS_REGION or `region` in the config file (or an STS endpoint with --sts-endpoint)",
            );
        }
        let region = region_src.and_then(|s| validate(&s, problems, check_region));
        let sts_endpoint = endpoint_src.and_then(|s| validate(&s, problems, check_endpoint));
        // A chained profile's own duration_seconds may not exceed one hour
        // (AWS's limit for role chaining); an inherited default is capped.
        let chained = raw.source_profile.is_some();
        let duration = match (&raw.duration_seconds, &duration) {
            (Some(own), _) => validate(own, problems, |v| {
                check_duration(
                    v,
                    if chained {
                        MAX_CHAINED_DURATION
                    } else {
                        MAX_DURATION
                    },
                )
            }),
            (None, Some(default)) => {
                validate(default, problems, |v| check_duration(v, MAX_DURATION)).map(|d| {
                    if chained {
                        d.min(MAX_CHAINED_DURATION)
                    } else {
                        d
                    }
                })
            }
            (None, None) => Some(DEFAULT_DURATION),
        }
        .map(|s| Duration::from_secs(s.into()));
        let session_name = match raw
            .role_session_name
            .clone()
            .or_else(|| session_name.clone())
        {
            Some(s) => validate(&s, problems, check_session_name),
            None => Some(default_session.clone()),
        };
        let credentials = raw
            .credentials
            .clone()
            .or_else(|| credentials.clone())
            .map(|s| {
                let mode = validate(&s, problems, |v| match v {
                    "file" => Ok(CredentialsMode::File),
                    "process" => Ok(CredentialsMode::Process),
                    "endpoint" => Ok(CredentialsMode::Endpoint),
                    _ => Err(format!(
                        "\"{}\" is not a credentials mode: use file, process or endpoint",
                        printable(v)
                    )),
                });
                if mode == Some(CredentialsMode::Endpoint) && endpoint_addr_src.is_none() {
                    problems.push(
                        &s.origin,
                        format!(
                            "profile \"{name}\" uses credentials: endpoint, which only the credentials endpoint serves: set endpoint_addr (--endpoint-addr 127.0.0.1:PORT), or use file or process"
                        ),
                    );
                }
                mode
            })
            .unwrap_or(Some(CredentialsMode::File));
        let policy = raw
            .policy
            .as_ref()
            .and_then(|s| validate(s, problems, check_policy));
        let policy_arns: Vec<String> = raw
            .policy_arns
            .iter()
            .filter_map(|s| validate(s, problems, check_policy_arn))
            .collect();
        if raw.policy_arns.len() > MAX_POLICY_ARNS {
            problems.push(
                join(&name_src.origin, "policy_arns"),
                format!("at most {MAX_POLICY_ARNS} managed session policies are allowed"),
            );
        }
        let source_profile = raw.source_profile.as_ref().and_then(|s| {
            if merged.contains_key(&s.value) {
                Some(s.value.clone())
            } else {
                problems.push(
                    &s.origin,
                    format!("unknown source_profile \"{}\"", printable(&s.value)),
                );
                None
            }
        });
        let external_id = raw
            .external_id
            .as_ref()
            .and_then(|s| validate(s, problems, check_external_id));
        if let (Some(()), Some(role_arn), Some(duration), Some(session_name), Some(credentials)) =
            (ok_name, role_arn, duration, session_name, credentials)
        {
            profiles.push(Profile {
                name: name.clone(),
                role_arn,
                region,
                sts_endpoint,
                duration,
                session_name,
                credentials,
                policy,
                policy_arns,
                source_profile,
                external_id,
            });
        }
    }
    check_cycles(&merged, problems);
    let app_dir_text = app_output_dir.to_string_lossy();
    // The SDKs split the credential_process line on spaces, and several run
    // it with `sh -c`: only characters that mean nothing to a shell.
    let shell_safe = |c: char| c.is_ascii_alphanumeric() || "/._+,=@%:-".contains(c);
    if profiles
        .iter()
        .any(|p| p.credentials == CredentialsMode::Process)
        && !app_dir_text.chars().all(shell_safe)
    {
        problems.push(
            "app_output_dir",
            format!(
                "process mode writes `credential_process = DIR/rolecall ...` into config, which the SDKs split on spaces and run with `sh -c`: \"{}\" cannot be used; give --app-output-dir (where the app mounts the volume) using only A-Z a-z 0-9 / . _ + , = @ % : -",
                printable(&app_dir_text)
            ),
        );
    }

    Config {
        config_file,
        token_file,
        output_dir,
        app_output_dir,
        file_mode,
        allow_world_readable,
        health_addr,
        endpoint_addr,
        endpoint_token_file,
        log_format,
        profiles,
    }
}

fn too_large() -> String {
    format!(
        "the file is larger than {} KiB (a rolecall configuration is a few KiB); it is refused before parsing",
        MAX_CONFIG_BYTES / 1024
    )
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "\"{}\" is not a boolean: use true or false",
            printable(v)
        )),
    }
}

/// How deeply `text` nests, as YAML would read it, without parsing it: the
/// deepest of flow nesting (`[` and `{` outside quotes and comments) and
/// block nesting (indentation levels, plus `- ` and `? ` entries that open
/// a level on the same line). Block scalars (`|`, `>`) are skipped. It may
/// overestimate odd layouts, never underestimate: a file it passes cannot
/// make the parser nest deeper than it says (plus one).
fn nesting_depth(text: &[u8]) -> usize {
    let text = String::from_utf8_lossy(text);
    let mut max = 0usize;
    let mut flow = 0usize;
    // Indentations of the open block levels.
    let mut indents: Vec<usize> = Vec::new();
    // Inside a block scalar: lines indented more than this belong to it.
    let mut scalar_parent: Option<usize> = None;
    let mut quote: Option<char> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let body = &line[indent..];
        if let Some(parent) = scalar_parent {
            if body.trim().is_empty() || indent > parent {
                continue;
            }
            scalar_parent = None;
        }
        if quote.is_none() && flow == 0 {
            if body.trim().is_empty() || body.starts_with('#') {
                continue;
            }
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&i| i < indent) {
                indents.push(indent);
            }
            // "- - - x" and "? ? x" open a level per indicator.
            let mut rest = body;
            let mut inline = 0;
            while let Some(r) = rest
                .strip_prefix("- ")
                .or_else(|| rest.strip_prefix("? "))
                .or_else(|| rest.strip_prefix(": "))
            {
                inline += 1;
                rest = r.trim_start_matches(' ');
            }
            max = max.max(indents.len() + inline);
        }
        let mut prev = ' ';
        let mut chars = body.chars().peekable();
        let mut last_significant = ' ';
        while let Some(c) = chars.next() {
            match quote {
                Some('\'') if c == '\'' => {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some('"') if c == '"' => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if prev == ' ' || prev == '\t' => break,
                    '\'' | '"' if matches!(prev, ' ' | '\t' | '[' | '{' | ',' | ':') => {
                        quote = Some(c)
                    }
                    '[' | '{' => {
                        flow += 1;
                        max = max.max(indents.len() + flow);
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            if !c.is_whitespace() {
                last_significant = c;
            }
            prev = c;
        }
        // `key: |`, `- >-`, `key: |2+`: the following, more indented lines
        // are text.
        if quote.is_none() && flow == 0 {
            let t = body.split(" #").next().unwrap_or_default().trim_end();
            let indicator = t
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
                .ends_with(['|', '>']);
            if indicator && matches!(last_significant, '|' | '>' | '-' | '+' | '0'..='9') {
                scalar_parent = Some(indent);
            }
        }
    }
    max
}

fn check_cycles(merged: &BTreeMap<String, (Src<String>, RawProfile)>, problems: &mut Problems) {
    for (start, (origin, _)) in merged {
        let mut seen = vec![start.as_str()];
        let mut cur = start.as_str();
        while let Some(next) = merged
            .get(cur)
            .and_then(|(_, p)| p.source_profile.as_ref())
            .map(|s| s.value.as_str())
        {
            if next == start {
                seen.push(next);
                problems.push(
                    join(&origin.origin, "source_profile"),
                    format!(
                        "source_profile cycle: {}",
                        seen.iter()
                            .map(|n| printable(n))
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    ),
                );
                break;
            }
            if seen.contains(&next) || !merged.contains_key(next) {
                break;
            }
            seen.push(next);
            cur = next;
        }
    }
}

/// Runs a validator over a sourced value, recording a problem on failure.
fn validate<T>(
    s: &Src<String>,
    problems: &mut Problems,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match f(s.value.trim()) {
        Ok(v) => Some(v),
        Err(msg) => {
            problems.push(&s.origin, msg);
            None
        }
    }
}

fn check_path(s: &Src<String>, problems: &mut Problems) -> PathBuf {
    if s.value.is_empty() || s.value.chars().any(char::is_control) {
        problems.push(
            &s.origin,
            "must be a non-empty path without control characters",
        );
    }
    PathBuf::from(&s.value)
}

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse().map_err(|_| {
        format!(
            "\"{}\" is not an address such as 0.0.0.0:9911",
            printable(v)
        )
    })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn check_profile_name(s: &Src<String>, problems: &mut Problems) -> Option<()> {
    let v = &s.value;
    let ok = (1..=64).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Some(())
    } else {
        problems.push(
            &s.origin,
            format!(
                "profile name \"{}\" must be 1-64 characters of A-Z a-z 0-9 _ . -",
                printable(v)
            ),
        );
        None
    }
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`
pub fn check_role_arn(v: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "\"{}\" is not an IAM role ARN such as arn:aws:iam::111122223333:role/NAME",
            printable(v)
        )
    };
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts[..] else {
        return Err(bad());
    };
    let role = resource.strip_prefix("role/").ok_or_else(bad)?;
    let name = role.rsplit('/').next().unwrap_or_default();
    let ok = arn == "arn"
        && partition.starts_with("aws")
        && partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-')
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && (1..=64).contains(&name.len())
        && role.len() <= 512
        && role.chars().all(|c| is_name_char(c) || c == '/');
    if ok { Ok(v.to_owned()) } else { Err(bad()) }
}

fn check_policy_arn(v: &str) -> Result<String, String> {
    let parts: Vec<&str> = v.splitn(6, ':').collect();
    let ok = matches!(parts[..], ["arn", p, "iam", "", acct, res]
        if p.starts_with("aws")
        && (acct == "aws" || (acct.len() == 12 && acct.chars().all(|c| c.is_ascii_digit())))
        && res.starts_with("policy/")
        && res.chars().all(|c| is_name_char(c) || c == '/'));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "\"{}\" is not an IAM policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess",
            printable(v)
        ))
    }
}

fn check_region(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && v.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "\"{}\" is not an AWS region such as eu-west-1",
            printable(v)
        ))
    }
}

fn check_endpoint(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty() && !r.starts_with('/') && r.chars().all(|c| c.is_ascii_graphic())
    });
    if ok {
        Ok(v.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "\"{}\" is not an http(s) URL such as https://sts.eu-west-1.amazonaws.com",
            printable(v)
        ))
    }
}

fn check_duration(v: &str, max: u32) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(d) if (MIN_DURATION..=max).contains(&d) => Ok(d),
        _ if max == MAX_CHAINED_DURATION => Err(format!(
            "duration \"{}\" must be whole seconds from {MIN_DURATION} to {max} (AWS caps role-chained sessions at one hour)",
            printable(v)
        )),
        _ => Err(format!(
            "duration \"{}\" must be whole seconds from {MIN_DURATION} to {max}",
            printable(v)
        )),
    }
}

fn check_session_name(v: &str) -> Result<String, String> {
    if (2..=64).contains(&v.len()) && v.chars().all(is_name_char) {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "role session name \"{}\" must be 2-64 characters of A-Z a-z 0-9 and +=,.@_-",
            printable(v)
        ))
    }
}

fn check_external_id(v: &str) -> Result<String, String> {
    if (2..=1224).contains(&v.len()) && v.chars().all(|c| is_name_char(c) || ":/".contains(c)) {
        Ok(v.to_owned())
    } else {
        Err("external_id must be 2-1224 characters of A-Z a-z 0-9 and +=,.@:/_-".into())
    }
}

fn check_policy(v: &str) -> Result<String, String> {
    if v.chars().count() > MAX_POLICY_CHARS {
        return Err(format!(
            "the session policy is longer than {MAX_POLICY_CHARS} characters"
        ));
    }
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(serde_json::Value::Object(_)) => {
            // Re-serialised compactly: no newline can reach an STS form or a log line.
            Ok(serde_json::to_string(
                &serde_json::from_str::<serde_json::Value>(v).expect("parsed"),
            )
            .expect("serialisable"))
        }
        Ok(_) => Err("the session policy must be a JSON object".into()),
        Err(e) => Err(format!("the session policy is not valid JSON: {e}")),
    }
}

/// `rolecall-<HOSTNAME>`, cleaned to the characters STS accepts and cut to 64.
pub fn default_session_name(env: &Env) -> String {
    let host = env
        .get("HOSTNAME")
        .cloned()
        .or_else(|| {
            // A host name is at most 64 bytes.
            crate::fsread::read(
                Path::new("/proc/sys/kernel/hostname"),
                256,
                crate::fsread::Follow::No,
            )
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_default();
    let mut name: String = format!("rolecall-{}", host.trim())
        .chars()
        .map(|c| if is_name_char(c) { c } else { '-' })
        .collect();
    name.truncate(64);
    name
}

#[cfg(test)]
mod tests;
