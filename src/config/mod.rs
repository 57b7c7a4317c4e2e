//! Configuration: flags, environment and a YAML file, merged and validated.
//!
//! Precedence is flag > environment > file > default. Every value is checked
//! before anything talks to STS, and every problem found is reported at once
//! (the caller exits 64), each with the flag, variable or YAML key path it came
//! from. Tests pass the environment as a map instead of mutating the process.
//!
//! Every global option is declared once, in the table of `options.rs` (flag,
//! environment variables, YAML key, check and default, whether a reload
//! applies it). [`Config::load`] builds the configuration in stages, each a
//! module with its own tests:
//!
//! 1. `sources`: the flags, the environment and the file (`yaml`), each on
//!    its own into the typed layer the table declares;
//! 2. `sources::merge`: the precedence rule, field by field;
//! 3. `files`: the load, the only I/O after the file itself: the CA
//!    bundle and the supplied endpoint tokens the merged options name;
//! 4. `validate`: the process-wide options, each checked once;
//! 5. `profiles`: each profile checked and completed with the defaults it
//!    inherits (`checks` holds rolecall's checks of single values,
//!    `crate::aws` AWS's rules);
//! 6. `order`: the source_profile graph (cycles; sources before the
//!    profiles chained to them, [`Config::order`] and [`Config::waves`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod checks;
mod files;
mod options;
mod order;
mod outputs;
mod pod;
mod profile;
mod profiles;
mod sources;
mod tags;
mod validate;
mod values;
mod yaml;

pub use checks::default_session_name;
pub use options::Flags;
pub use outputs::{DEFAULT_SET, valid_set_name};
pub use pod::{
    DEFAULT_ENDPOINT as DEFAULT_POD_IDENTITY_ENDPOINT,
    DEFAULT_TOKEN_FILE as DEFAULT_POD_IDENTITY_TOKEN_FILE, Warning,
    check_endpoint as check_agent_url,
};
pub use profile::{CredentialsMode, Profile, endpoint_for};

pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";
pub const DEFAULT_OUTPUT_DIR: &str = "/aws";
pub const DEFAULT_DURATION: u32 = 3600;
pub const DEFAULT_FILE_MODE: u32 = 0o640;
pub const DEFAULT_HEALTH_ADDR: &str = "0.0.0.0:9911";
/// The control socket of `rolecall reload` and `rolecall refresh`: in a
/// directory that only the rolecall container mounts (an emptyDir).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/rolecall/control.sock";
/// The longest Unix socket path (`sun_path` holds 108 bytes with the NUL).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;
/// The largest configuration file read: a real one is a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 256 * 1024;
/// The deepest nesting of the configuration file, aliases expanded (a real
/// one nests 4 levels); the parser's time grows with its square.
pub const MAX_CONFIG_DEPTH: usize = 32;
/// The most values (an alias counts as the copy of what it names) the file
/// may build, before serde_yaml_ng builds any: a real one holds a few hundred.
pub const MAX_CONFIG_NODES: u64 = 100_000;

/// The environment as a map, so tests never touch the process environment.
pub type Env = BTreeMap<String, String>;

/// What the environment sets for the output dir (empty included), by the
/// table's variable: for the commands that load no configuration.
pub fn env_output_dir(env: &Env) -> Option<&str> {
    options::env_raw(env, "output_dir")
}

/// What the environment sets for the control socket (empty included: it
/// disables the socket), by the table's variable.
pub fn env_control_socket(env: &Env) -> Option<&str> {
    options::env_raw(env, "control_socket")
}

/// The process environment (only valid UTF-8 entries).
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where the sidecar's own identity comes from: the `identity` option.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Identity {
    /// The projected service-account token, exchanged for each profile
    /// with `AssumeRoleWithWebIdentity`.
    #[default]
    WebIdentity,
    /// The EKS Pod Identity agent: its session is a source profile (the
    /// base) that every role profile chains from with `AssumeRole`.
    PodIdentity(PodIdentity),
}

/// The Pod Identity agent and the base session's profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    /// The agent's URL, validated (`http://`, an IP literal or localhost).
    pub endpoint: String,
    /// The base profile's name: `pod_identity_profile`, or
    /// [`POD_IDENTITY_PROFILE`] when unset.
    pub profile: String,
    /// Whether the base session is published (`pod_identity_profile` set).
    pub published: bool,
}

/// The internal name of the base session when `pod_identity_profile` is
/// not set (reserved: no configured profile may use it then).
pub const POD_IDENTITY_PROFILE: &str = "pod-identity";

/// The validated configuration of one rolecall process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub config_file: Option<PathBuf>,
    /// The [`crate::fsread::digest`] of the file's bytes this configuration was built
    /// from: where the configuration watcher starts, so that a change made
    /// while rolecall was starting is not missed.
    pub file_digest: Option<u64>,
    /// The token rolecall reads: the web identity's, or under
    /// [`Identity::PodIdentity`] the Pod Identity agent's
    /// (`pod_identity_token_file`); watched the same way either way.
    pub token_file: PathBuf,
    /// Where the sidecar's own identity comes from (restart-only).
    pub identity: Identity,
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
    /// Certificates trusted for STS calls besides the system's (checked at load).
    pub ca_bundle: Option<crate::tls::CaBundle>,
    /// The control socket (`None`: disabled).
    pub control_socket: Option<PathBuf>,
    /// The proxy of STS calls (its `Debug` masks the password).
    pub proxy: Option<crate::proxy::Proxy>,
    /// Hosts reached without the proxy (loopback always is).
    pub no_proxy: Option<String>,
    pub log_format: LogFormat,
    /// Sorted by name; [`Config::order`] gives them sources first.
    pub profiles: Vec<Profile>,
    /// The output sets, sorted by name; never empty: without `outputs`,
    /// one set [`DEFAULT_SET`] with the output dir and every profile.
    pub outputs: Vec<OutputSet>,
    /// Whether the configuration declares `outputs` (see
    /// [`Config::declared_sets`]).
    pub sets_declared: bool,
    /// What the load accepted but the log should say (an option ignored,
    /// a combination that may not work), for [`Config::log_warnings`].
    pub warnings: Vec<Warning>,
}

/// One output set: a directory, for one application container, holding
/// only its own profiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSet {
    pub name: String,
    pub dir: PathBuf,
    /// The dir as the application container sees it (process mode).
    pub app_dir: PathBuf,
    /// Sorted by name.
    pub profiles: Vec<String>,
    /// A supplied endpoint token for this set.
    pub endpoint_token_file: Option<PathBuf>,
}

/// One thing wrong with the configuration, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    pub message: String,
}

impl Problem {
    /// Whether this is the problem of a configuration that names no
    /// profile (`check --issuer` does without profiles).
    pub fn is_no_profiles(&self) -> bool {
        self.origin == "profiles" && self.message == profiles::NO_PROFILES
    }
}

/// Every problem found, reported together.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid configuration ({} problem{}):{}",
    .problems.len(),
    if .problems.len() == 1 { "" } else { "s" },
    .problems.iter().map(|p| format!("\n  - {}: {}", p.origin, p.message)).collect::<String>()
)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl Config {
    /// Reads the file named by `--config` or `ROLECALL_CONFIG` (if any),
    /// merges it with flags and environment, and validates everything.
    pub fn load(flags: &Flags, env: &Env) -> Result<Config, ConfigError> {
        let config_file = flags.config.clone().or_else(|| {
            env.get(options::CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        // Followed if a symlink (a ConfigMap mount is kubelet's `..data`
        // layout), but a regular file only, opened non-blocking and capped.
        let text = config_file.as_ref().map(|path| {
            crate::fsread::read(path, MAX_CONFIG_BYTES, crate::fsread::Follow::Yes).map_err(|e| {
                match e {
                    crate::fsread::ReadError::TooLarge { .. } => yaml::too_large(),
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

    /// Every profile, each after its source profile (otherwise by name).
    pub fn order(&self) -> Vec<&Profile> {
        order::order(&self.profiles)
    }

    /// The profiles in layers, sources first: every profile of a layer can
    /// be assumed once the layers before it have been (by name within one).
    pub fn waves(&self) -> Vec<Vec<&Profile>> {
        order::waves(&self.profiles)
    }

    /// The options that differ between `old` and `new` but that a reload
    /// cannot apply (only a restart), by their YAML keys, in table order.
    pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
        let mut keys = options::restart_needed(old, new);
        if (old.sets_declared || new.sets_declared)
            && outputs::layout_changed(&old.outputs, &new.outputs)
        {
            keys.push(options::OUTPUTS_KEY);
        }
        keys
    }

    /// Whether the configuration declares output sets (otherwise it has
    /// the one set [`DEFAULT_SET`]): decides what is shown, never how
    /// files are written.
    pub fn declared_sets(&self) -> bool {
        self.sets_declared
    }

    /// Logs each of [`Config::warnings`]: at start, every one (`since`:
    /// `None`); at a reload, those the running configuration `since` did
    /// not have.
    pub fn log_warnings(&self, since: Option<&Config>) {
        let old = since.map_or(&[][..], |c| &c.warnings);
        for w in self.warnings.iter().filter(|w| !old.contains(w)) {
            if w.debug {
                tracing::debug!(origin = %w.origin, "{}", w.message);
            } else {
                tracing::warn!(origin = %w.origin, "{}", w.message);
            }
        }
    }

    /// The base session's profile under pod-identity (see
    /// [`Profile::pod_identity`]).
    pub fn base(&self) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.pod_identity)
    }

    /// The output set named `name`.
    pub fn output_set(&self, name: &str) -> Option<&OutputSet> {
        self.outputs.iter().find(|s| s.name == name)
    }
}

/// The stages: sources, merge, load, globals, profiles (with their order
/// checks), output sets. Problems are listed in the order of the stages:
/// the file's, the global options', the profile lists' (environment,
/// flags), the duplicates, then each profile's, then the sets'.
fn assemble(
    flags: &Flags,
    env: &Env,
    path: Option<&Path>,
    text: Option<Result<Vec<u8>, String>>,
) -> Result<Config, ConfigError> {
    let file_digest = text
        .as_ref()
        .and_then(|t| t.as_ref().ok())
        .map(|b| crate::fsread::digest(b));
    let file = match (path, text) {
        (Some(path), Some(text)) => yaml::source(path, text),
        _ => sources::Source::default(),
    };
    let (from_env, from_flags) = (sources::from_env(env), sources::from_flags(flags));
    let mut merged = sources::merge([&file, &from_env, &from_flags]);
    let sets = file.outputs.iter().flat_map(|o| &o.sets);
    let tokens = std::iter::once(&merged.values.endpoint_token_file)
        .chain(sets.map(|s| &s.endpoint_token_file));
    let v = &merged.values;
    let loaded = files::Loaded::read(&v.ca_bundle, &v.endpoint_addr, tokens);
    let (mut globals, global_problems) = merged.values.globals(loaded);
    pod::drop_fallback(&mut merged, &mut globals);
    let v = &merged.values;
    let mut problems = values::Problems::default();
    let (f, e) = (from_flags.problems, from_env.problems);
    for p in [file.problems, global_problems, e, f, merged.problems] {
        problems.append(p);
    }
    let session = default_session_name(env);
    let profiles = profiles::resolve(&merged.profiles, v, &globals, &session, &mut problems);
    let base = globals.config.identity.pod();
    let published = base.filter(|b| b.published).map(|b| b.profile.clone());
    let (sets, declared) = outputs::resolve(
        file.outputs,
        v,
        &merged.profiles,
        published.as_deref(),
        &globals,
        &mut problems,
    );
    let problems = problems.into_vec();
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let mut config = Config {
        config_file: path.map(Path::to_owned),
        file_digest,
        profiles,
        outputs: sets,
        sets_declared: declared,
        ..globals.config
    };
    let origin = |name: &str| {
        merged
            .profiles
            .get(name)
            .map_or_else(String::new, |(s, _)| s.origin.clone())
    };
    config.warnings.extend(pod::tag_warnings(&config, origin));
    Ok(config)
}

#[cfg(test)]
mod tests;
