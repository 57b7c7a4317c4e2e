//! Stage 5, the profiles: each merged profile checked and completed with
//! the defaults it inherits.

use std::time::Duration;

use super::checks::{check_profile_name, parse_bool, word};
use super::options::{Layer, ROLE_ARN};
use super::sources::{RawProfile, RawProfiles};
use super::validate::{Globals, validate};
use super::values::{Problems, Sourced};
use super::{CredentialsMode, DEFAULT_DURATION, Profile};
use crate::aws::{
    MAX_CHAINED_DURATION, MAX_DURATION, MAX_POLICY_ARNS, check_duration, check_endpoint,
    check_external_id, check_policy, check_policy_arn, check_region, check_role_arn,
    check_session_name,
};
use crate::text::printable;

fn mode(v: &str) -> Result<CredentialsMode, String> {
    use CredentialsMode::{Endpoint, File, Process};
    let words = [File, Process, Endpoint].map(|m| (m.as_str(), m));
    word(
        v,
        &words,
        "is not a credentials mode: use file, process or endpoint",
    )
}

/// `s` checked, or `default` when it is not set; `None` when it is bad.
fn or<T>(
    s: &Option<Sourced>,
    p: &mut Problems,
    check: impl FnOnce(&str) -> Result<T, String>,
    default: T,
) -> Option<T> {
    s.as_ref().map_or(Some(default), |s| validate(s, p, check))
}

/// The problem of a configuration that names no profile.
pub(super) const NO_PROFILES: &str = "no profiles configured: give --profile NAME=ROLE_ARN, ROLECALL_PROFILES, `profiles` in the config file, or AWS_ROLE_ARN";

/// Checks and completes every profile (sorted by name); `values` are the
/// merged options (the defaults). When the configuration file already
/// has a problem, its profiles are not "missing".
pub(super) fn resolve(
    merged: &RawProfiles,
    values: &Layer,
    g: &Globals,
    default_session: &str,
    problems: &mut Problems,
) -> Vec<Profile> {
    let base = g.config.identity.pod();
    let published = base.is_some_and(|b| b.published);
    if merged.is_empty() && !problems.touch_file() && !published {
        let none = if base.is_some() {
            NO_ROLE_PROFILES
        } else {
            NO_PROFILES
        };
        problems.push("profiles", none);
    }
    let mut profiles = merged
        .values()
        .filter_map(|(name, raw)| one(name, raw, values, g, merged, default_session, problems))
        .collect::<Vec<_>>();
    super::order::check_cycles(merged, problems);
    if let Some(b) = base {
        super::pod::reserved(b, values, merged, problems);
        profiles.push(base_profile(b, values, g, default_session, problems));
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
    }
    check_process_dir(&profiles, g, problems);
    profiles
}

/// The problem of a pod-identity configuration with no role to chain to.
const NO_ROLE_PROFILES: &str = "no profiles configured: give --profile NAME=ROLE_ARN, ROLECALL_PROFILES or `profiles` in the config file (with identity: pod-identity each role chains from the agent's session; AWS_ROLE_ARN is the web identity's role and is not used), or set pod_identity_profile to publish the agent's session alone";

/// The problem of a profile without a region (the SDKs need one).
const NO_REGION: &str = "no AWS region: set --region, AWS_REGION or `region` in the config file (or an STS endpoint with --sts-endpoint)";

/// The synthesized base profile of `identity: pod-identity`: the agent's
/// session, with the global region and credentials mode (used when it
/// is published, and only then needed) and no STS settings.
fn base_profile(
    b: &super::PodIdentity,
    l: &Layer,
    g: &Globals,
    default_session: &str,
    p: &mut Problems,
) -> Profile {
    // The same whether published or not, so that publishing it (a
    // reload) does not replace it.
    let region = validate(&l.region, p, check_region);
    let mode = or(&l.credentials, p, mode, CredentialsMode::Process);
    let credentials = mode.unwrap_or_default();
    if b.published {
        if l.region.is_none() && l.sts_endpoint.is_none() {
            p.push("region", NO_REGION);
        }
        endpoint_needed(&b.profile, credentials, &l.credentials, g, p);
    }
    Profile {
        region,
        credentials,
        pod_identity: true,
        session_name: default_session.to_owned(),
        ..Profile::new(&b.profile, "")
    }
}

/// `credentials: endpoint` needs the endpoint's listener.
fn endpoint_needed(
    name: &str,
    mode: CredentialsMode,
    at: &Option<Sourced>,
    g: &Globals,
    p: &mut Problems,
) {
    if mode == CredentialsMode::Endpoint
        && !g.endpoint_set
        && let Some(s) = at
    {
        p.at(
            s,
            format!(
                "profile \"{name}\" uses credentials: endpoint, which only the credentials endpoint serves: set endpoint_addr (--endpoint-addr 127.0.0.1:PORT), or use file or process"
            ),
        );
    }
}

/// One profile, checked in the order its problems are listed; `None` when
/// a value it cannot go without is bad. An inherited option is the
/// profile's own value, else the default; a bad default is checked again
/// at each profile that inherits it, the same problem, listed once (and a
/// default that no profile inherits is not checked).
fn one(
    name_src: &Sourced,
    raw: &RawProfile,
    values: &Layer,
    g: &Globals,
    merged: &RawProfiles,
    default_session: &str,
    p: &mut Problems,
) -> Option<Profile> {
    let name = &name_src.value;
    let ok_name = check_profile_name(name).map_err(|e| p.at(name_src, e)).ok();
    if raw.role_arn.is_none() {
        p.push(
            format!("{}.{ROLE_ARN}", name_src.origin),
            "missing role_arn",
        );
    }
    let role_arn = validate(&raw.role_arn, p, check_role_arn);
    let l = values.clone().under(raw.own.clone());
    if l.region.is_none() && l.sts_endpoint.is_none() {
        p.push("region", NO_REGION);
    }
    let region = validate(&l.region, p, check_region);
    let sts_endpoint = validate(&l.sts_endpoint, p, check_endpoint);
    // Under pod-identity every role profile chains from the base.
    let base = g.config.identity.pod().map(|b| b.profile.as_str());
    let chained = raw.source_profile.is_some() || base.is_some();
    let duration = duration(&raw.own.duration, &values.duration, chained, p);
    let use_fips = or(&l.use_fips_endpoint, p, parse_bool, false);
    let use_dualstack = or(&l.use_dualstack_endpoint, p, parse_bool, false);
    let default_session = default_session.to_owned();
    let session_name = or(&l.session_name, p, check_session_name, default_session);
    let credentials = or(&l.credentials, p, mode, CredentialsMode::Process);
    if let Some(mode) = credentials {
        endpoint_needed(name, mode, &l.credentials, g, p);
    }
    let settings = own_settings(name_src, raw, merged, base, p);
    ok_name?;
    let profile = Profile {
        name: name.clone(),
        role_arn: role_arn?,
        region,
        sts_endpoint,
        use_fips: use_fips?,
        use_dualstack: use_dualstack?,
        duration: Duration::from_secs(duration?.into()),
        session_name: session_name?,
        credentials: credentials?,
        ..settings
    };
    // Resolved now by the SDK's own rules, so a combination it refuses
    // (FIPS with a custom endpoint, a partition without dual-stack) is a
    // configuration error, not a failed call.
    if let Err(e) = super::endpoint_for(&profile) {
        let message = format!("the STS endpoint cannot be resolved: {e}");
        p.push(name_src.origin.clone(), message);
    }
    Some(profile)
}

/// The session's duration: a chained profile's own duration_seconds may
/// not exceed one hour (AWS's limit for role chaining); an inherited
/// default is capped.
fn duration(
    own: &Option<Sourced>,
    default: &Option<Sourced>,
    chained: bool,
    p: &mut Problems,
) -> Option<u32> {
    let max = if chained {
        MAX_CHAINED_DURATION
    } else {
        MAX_DURATION
    };
    match (own, default) {
        (Some(own), _) => validate(own, p, |v| check_duration(v, max)),
        (None, Some(d)) => validate(d, p, |v| check_duration(v, MAX_DURATION)).map(|d| d.min(max)),
        (None, None) => Some(DEFAULT_DURATION),
    }
}

/// The profile's own settings (policies, source, external id, tags), each
/// checked; the name, role and inherited fields are left to the caller.
fn own_settings(
    name_src: &Sourced,
    raw: &RawProfile,
    merged: &RawProfiles,
    base: Option<&str>,
    p: &mut Problems,
) -> Profile {
    let chained = raw.source_profile.is_some() || base.is_some();
    let policy = validate(&raw.policy, p, check_policy);
    let arns = raw.policy_arns.iter();
    let policy_arns = arns
        .filter_map(|s| validate(s, p, check_policy_arn))
        .collect();
    if raw.policy_arns.len() > MAX_POLICY_ARNS {
        p.push(
            format!("{}.policy_arns", name_src.origin),
            format!("at most {MAX_POLICY_ARNS} managed session policies are allowed"),
        );
    }
    let source_profile = raw.source_profile.as_ref().and_then(|s| {
        if merged.contains_key(&s.value) || base == Some(s.value.as_str()) {
            return Some(s.value.clone());
        }
        let message = format!("unknown source_profile \"{}\"", printable(&s.value));
        p.at(s, message);
        None
    });
    let source_profile = source_profile.or(base.map(str::to_owned));
    let external_id = validate(&raw.external_id, p, check_external_id);
    Profile {
        policy,
        policy_arns,
        source_profile,
        external_id,
        ..super::tags::resolve(raw, &name_src.origin, chained, p)
    }
}

/// The SDKs split the credential_process line on spaces, and several run
/// it with `sh -c`: only characters that mean nothing to a shell.
fn check_process_dir(profiles: &[Profile], g: &Globals, problems: &mut Problems) {
    let dir = g.config.app_output_dir.to_string_lossy();
    let shell_safe = |c: char| c.is_ascii_alphanumeric() || "/._+,=@%:-".contains(c);
    // An unpublished base (pod-identity) is written nowhere.
    let published = g.config.identity.pod().is_none_or(|b| b.published);
    if profiles
        .iter()
        .any(|p| p.credentials == CredentialsMode::Process && (published || !p.pod_identity))
        && !dir.chars().all(shell_safe)
    {
        problems.push(
            "app_output_dir",
            format!(
                "process mode writes `credential_process = DIR/rolecall ...` into config, which the SDKs split on spaces and run with `sh -c`: \"{}\" cannot be used; give --app-output-dir (where the app mounts the volume) using only A-Z a-z 0-9 / . _ + , = @ % : -",
                printable(&dir)
            ),
        );
    }
}

#[cfg(test)]
mod tests;
