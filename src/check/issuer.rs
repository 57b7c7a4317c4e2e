//! `rolecall check --issuer URL --namespace NS --service-account SA`: the
//! policies a first deploy needs, before any token exists. Reads no token
//! and calls no STS: the subject and audience the pod's token will carry
//! stand for its claims, and the policies come from the same functions as
//! `check`'s with a token ([`crate::trust`]).

use std::fmt::Write as _;

use serde_json::Value;

use super::inputs::{self, Problems};
use crate::config::{Config, Env, Flags, Problem, Profile};
use crate::token::Claims;
use crate::trust;

/// What `check` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a person: each profile's role and policies, then notes
    #[default]
    Text,
    /// One JSON object: each profile's trust and permissions policies
    Json,
    /// The trust-policy document alone (aws iam create-role
    /// --assume-role-policy-document file://trust.json)
    TrustPolicy,
}

/// The flags of `check` without a token.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct IssuerArgs {
    /// The cluster's OIDC issuer URL, with or without https:// (aws eks
    /// describe-cluster --name NAME --query cluster.identity.oidc.issuer
    /// --output text): print the policies without a token; no STS call
    #[arg(long, value_name = "URL", requires_all = ["namespace", "service_account"], conflicts_with = "assume")]
    pub issuer: Option<String>,
    /// The pod's namespace (with --issuer, or under identity: pod-identity
    /// instead of the token)
    #[arg(long, value_name = "NS", requires = "service_account")]
    pub namespace: Option<String>,
    /// The pod's service account (with --issuer, or under identity:
    /// pod-identity instead of the token)
    #[arg(long, value_name = "NAME", requires = "namespace")]
    pub service_account: Option<String>,
    /// The account of the IAM OIDC provider, needed without profiles (with
    /// profiles: each role's account)
    #[arg(long, value_name = "ID", requires = "issuer")]
    pub account_id: Option<String>,
    /// The partition without profiles [default: from the issuer's host:
    /// aws-cn for *.amazonaws.com.cn, aws-us-gov for oidc.eks.us-gov-*,
    /// else aws]
    #[arg(long, value_name = "PARTITION", requires = "issuer")]
    pub partition: Option<String>,
    /// The audience of the pod's token [default: sts.amazonaws.com]
    #[arg(long, value_name = "AUD", requires = "issuer")]
    pub audience: Option<String>,
    /// Only this profile (with --issuer, or -o under identity: pod-identity)
    #[arg(long, value_name = "NAME")]
    pub for_profile: Option<String>,
    /// Under identity: pod-identity, the association's role that the roles
    /// trust [default: a placeholder in the roles' account]
    #[arg(long, value_name = "ARN", conflicts_with = "assume")]
    pub association_role: Option<String>,
    /// The output: text, json, or trust-policy (json and trust-policy need
    /// --issuer, or identity: pod-identity)
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT", default_value_t = Format::Text)]
    pub output: Format,
}

impl IssuerArgs {
    /// Whether `check` runs without a token (or was asked for a format
    /// only that way has).
    pub fn wanted(&self) -> bool {
        self.issuer.is_some()
            || self.output != Format::Text
            || self.association_role.is_some()
            || self.for_profile.is_some()
            || self.namespace.is_some()
    }
}

/// Every problem, reported together; exit 64.
#[derive(Debug, thiserror::Error)]
#[error("check: {} problem{}:{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list(.0))]
pub struct Refused(pub Vec<Problem>);

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("\n  - {}: {}", p.origin, p.message))
        .collect()
}

/// Prints the policies (stdout) or every problem (stderr); the exit code:
/// 0, or 64.
pub fn run(flags: &Flags, env: &Env, args: &IssuerArgs) -> u8 {
    if let Ok(config) = Config::load(flags, env)
        && let crate::config::Identity::PodIdentity(pod) = &config.identity
    {
        return match super::pod::render(&config, pod, args) {
            Ok((out, ok)) => {
                print!("{out}");
                u8::from(!ok)
            }
            Err(e) => {
                eprintln!("rolecall: {e}");
                64
            }
        };
    }
    match render(flags, env, args) {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(e) => {
            eprintln!("rolecall: {e}");
            64
        }
    }
}

/// The subject and audience the pod's token will carry.
struct Subject {
    claims: Claims,
    partition: String,
    account: Option<String>,
}

/// The flags, checked.
fn subject(args: &IssuerArgs, problems: &mut Problems) -> Option<Subject> {
    let Some(iss) = &args.issuer else {
        if args.output != Format::Text {
            problems.push(
                "--output",
                "json and trust-policy are printed without a token: give --issuer, --namespace and --service-account",
            );
        }
        let text = args.output == Format::Text;
        let alone = [("--for-profile", text && args.for_profile.is_some())];
        let alone = alone
            .into_iter()
            .chain([("--namespace", args.namespace.is_some())]);
        for (flag, _) in alone.filter(|f| f.1) {
            problems.push(flag, "only with --issuer (or identity: pod-identity)");
        }
        return None;
    };
    let iss = problems.value("--issuer", iss, inputs::issuer);
    let ns = args.namespace.as_deref().unwrap_or_default();
    let ns = problems.value("--namespace", ns, inputs::namespace);
    let sa = args.service_account.as_deref().unwrap_or_default();
    let sa = problems.value("--service-account", sa, inputs::service_account);
    let aud = args.audience.as_deref().unwrap_or(inputs::DEFAULT_AUDIENCE);
    let aud = problems.value("--audience", aud, inputs::audience);
    let account = args
        .account_id
        .as_deref()
        .map(|v| problems.value("--account-id", v, inputs::account_id));
    let partition = args
        .partition
        .as_deref()
        .map(|v| problems.value("--partition", v, inputs::partition));
    let (iss, ns, sa, aud, account, partition) = (
        iss?,
        ns?,
        sa?,
        aud?,
        account.transpose_flat()?,
        partition.transpose_flat()?,
    );
    Some(Subject {
        partition: partition.unwrap_or_else(|| inputs::partition_of_issuer(&iss).to_owned()),
        claims: Claims {
            iss: Some(iss),
            sub: Some(format!("system:serviceaccount:{ns}:{sa}")),
            aud: vec![aud],
            ..Claims::default()
        },
        account,
    })
}

/// `Some(None)` for an absent flag, `None` for a bad one.
trait Flat<T> {
    fn transpose_flat(self) -> Option<Option<T>>;
}

impl<T> Flat<T> for Option<Option<T>> {
    fn transpose_flat(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(Some(v)) => Some(Some(v)),
            Some(None) => None,
        }
    }
}

/// One role's policies.
pub(super) struct Entry<'a> {
    /// `None` without profiles: the one role the flags describe.
    pub profile: Option<&'a Profile>,
    /// The IAM OIDC provider a web-identity role trusts.
    pub provider: Option<String>,
    pub trust: Value,
    /// A chained profile's: the source role's ARN and the permissions
    /// policy it needs.
    pub permissions: Option<(String, Value)>,
}

/// The configuration, checked and read without a token: `None` with no
/// profiles (then the flags name the account); its problems otherwise.
fn load(flags: &Flags, env: &Env, problems: &mut Problems) -> Option<Config> {
    match Config::load(flags, env) {
        Ok(c) => Some(c),
        Err(e) => {
            let (_, other): (Vec<_>, Vec<_>) =
                e.problems.into_iter().partition(Problem::is_no_profiles);
            problems.0.extend(other);
            None
        }
    }
}

/// Checks and renders; every problem at once.
pub fn render(flags: &Flags, env: &Env, args: &IssuerArgs) -> Result<String, Refused> {
    let mut problems = Problems::default();
    let config = load(flags, env, &mut problems);
    let config_ok = problems.0.is_empty();
    let who = subject(args, &mut problems);
    let entries = match (&who, &config) {
        (Some(who), _) if config_ok => entries(config.as_ref(), who, args, &mut problems),
        // Bad flags: still every problem at once.
        (None, Some(config)) => {
            if let Some(name) = args.for_profile.as_deref() {
                unknown_profile(config, name, &mut problems);
            }
            Vec::new()
        }
        _ => Vec::new(),
    };
    if args.association_role.is_some() {
        problems.push(
            "--association-role",
            "only with identity: pod-identity (web-identity roles trust the IAM OIDC provider)",
        );
    }
    let Some(who) = who.filter(|_| problems.0.is_empty()) else {
        return Err(Refused(problems.0));
    };
    match args.output {
        Format::Text => Ok(text(config.as_ref(), &who.claims, &entries)),
        Format::Json => {
            let notes = config.as_ref().map(super::modes::notes).unwrap_or_default();
            let doc = super::shapes::to_json(&who.claims, &entries, &notes);
            Ok(format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).expect("serialisable")
            ))
        }
        Format::TrustPolicy => super::shapes::one_policy(&entries),
    }
}

/// The roles to print: each selected profile's, or the one the flags name.
fn entries<'a>(
    config: Option<&'a Config>,
    who: &Subject,
    args: &IssuerArgs,
    problems: &mut Problems,
) -> Vec<Entry<'a>> {
    let iss = who.claims.iss.as_deref().unwrap_or_default();
    let Some(config) = config else {
        if args.for_profile.is_some() {
            problems.push("--for-profile", "no profiles configured");
        }
        let Some(account) = &who.account else {
            problems.push(
                "--account-id",
                "without profiles, the OIDC provider's account is needed: give --account-id (12 digits), or the profiles (--config FILE, --profile NAME=ROLE_ARN)",
            );
            return Vec::new();
        };
        let provider = trust::provider_arn_in(&who.partition, account, iss);
        let trust = trust::web_identity_policy(&provider, &who.claims);
        return vec![Entry {
            profile: None,
            provider: Some(provider),
            trust,
            permissions: None,
        }];
    };
    let chosen = |p: &&Profile| args.for_profile.as_ref().is_none_or(|n| *n == p.name);
    let selected: Vec<&Profile> = config.order().into_iter().filter(chosen).collect();
    if let Some(name) = args.for_profile.as_deref() {
        unknown_profile(config, name, problems);
    }
    selected
        .into_iter()
        .map(|p| entry(p, config, who, args, problems))
        .collect()
}

/// `--for-profile NAME` names no profile: a problem listing them.
fn unknown_profile(config: &Config, name: &str, problems: &mut Problems) {
    if config.profile(name).is_some() {
        return;
    }
    let names: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
    problems.push(
        "--for-profile",
        format!(
            "\"{}\": no such profile; the profiles are {}",
            crate::text::printable(name),
            names.join(", ")
        ),
    );
}

/// One profile's policies; a flag that contradicts its role is a problem.
fn entry<'a>(
    p: &'a Profile,
    config: &Config,
    who: &Subject,
    args: &IssuerArgs,
    problems: &mut Problems,
) -> Entry<'a> {
    if p.source_profile.is_some() {
        let source = super::source_arn(p, config);
        return Entry {
            profile: Some(p),
            provider: None,
            trust: super::chained_policy(p, config),
            permissions: Some((source, trust::source_permissions(p))),
        };
    }
    let partition = p.role_arn.split(':').nth(1).unwrap_or_default();
    if args.partition.is_some() && partition != who.partition {
        problems.push(
            "--partition",
            format!(
                "{}: profile {}'s role is in partition {partition}",
                who.partition, p.name
            ),
        );
    }
    if let Some(account) = who.account.as_ref().filter(|a| *a != p.account()) {
        problems.push(
            "--account-id",
            format!(
                "{account}: profile {}'s role is in account {}, where its OIDC provider must be (leave --account-id out with profiles)",
                p.name,
                p.account()
            ),
        );
    }
    let iss = who.claims.iss.as_deref().unwrap_or_default();
    Entry {
        profile: Some(p),
        provider: Some(trust::provider_arn(p, iss)),
        trust: trust::trust_policy(p, &who.claims),
        permissions: None,
    }
}

/// The text for a person: the subject, then each role as `check` with a
/// token shows it, then the notes on modes.
fn text(config: Option<&Config>, claims: &Claims, entries: &[Entry]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "issuer: {}", claims.iss.as_deref().unwrap_or_default());
    let _ = writeln!(
        out,
        "subject: {}",
        claims.sub.as_deref().unwrap_or_default()
    );
    let _ = writeln!(out, "audience: {}", claims.aud.join(", "));
    out.push_str("(no token read, no STS call: the policies for this subject)\n");
    match config {
        Some(config) => {
            out.push_str(&super::describe_setup(config));
            for p in entries.iter().filter_map(|e| e.profile) {
                super::describe_profile(&mut out, p, config, claims);
            }
            out.push_str(&super::modes::text(config));
        }
        None => {
            for e in entries {
                let _ = writeln!(
                    out,
                    "\ntrust policy the role needs (IAM OIDC provider {} must exist):",
                    e.provider.as_deref().unwrap_or_default()
                );
                super::indented(&mut out, &e.trust);
            }
        }
    }
    out
}
