//! Stage 5, the profiles: each merged profile checked and completed with
//! the defaults it inherits. An inherited default is checked once, when
//! the first profile inherits it (a bad default is one problem, and a
//! default no profile inherits is not checked).

use std::time::Duration;

use super::checks::{check_profile_name, parse_bool, word};
use super::options::{Layer, ROLE_ARN};
use super::sources::{RawProfile, RawProfiles};
use super::validate::{Globals, validate};
use super::values::{Problems, Sourced, join};
use super::{CredentialsMode, DEFAULT_DURATION, Profile};
use crate::aws::{
    MAX_CHAINED_DURATION, MAX_DURATION, MAX_POLICY_ARNS, check_duration, check_endpoint,
    check_external_id, check_policy, check_policy_arn, check_region, check_role_arn,
    check_session_name,
};
use crate::text::printable;

/// An inherited default, checked on first use.
struct Inherited<'a, T> {
    src: Option<&'a Sourced>,
    checked: Option<Option<T>>,
}

impl<'a, T: Clone> Inherited<'a, T> {
    fn new(src: &'a Option<Sourced>) -> Self {
        let src = src.as_ref();
        Inherited { src, checked: None }
    }

    /// A profile's `own` value, or else the default: `None` when neither is
    /// set, `Some(None)` when the one that applies is bad.
    fn pick(
        &mut self,
        own: &Option<Sourced>,
        problems: &mut Problems,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        if let Some(s) = own {
            return Some(validate(s, problems, check));
        }
        let s = self.src?;
        let checked = self
            .checked
            .get_or_insert_with(|| validate(s, problems, check));
        Some(checked.clone())
    }
}

/// The defaults every profile inherits, and what the profiles share.
struct Defaults<'a> {
    region: Inherited<'a, String>,
    sts_endpoint: Inherited<'a, String>,
    duration: Inherited<'a, u32>,
    session_name: Inherited<'a, String>,
    credentials: Inherited<'a, CredentialsMode>,
    fips: Inherited<'a, bool>,
    dualstack: Inherited<'a, bool>,
    region_missing_reported: bool,
    g: &'a Globals,
    merged: &'a RawProfiles,
    default_session: &'a str,
}

fn mode(v: &str) -> Result<CredentialsMode, String> {
    use CredentialsMode::{Endpoint, File, Process};
    let words = [File, Process, Endpoint].map(|m| (m.as_str(), m));
    word(
        v,
        &words,
        "is not a credentials mode: use file, process or endpoint",
    )
}

/// Checks and completes every profile (sorted by name); `values` are the
/// merged options (the defaults). `file_reported`: the configuration file
/// already has a problem, so its profiles are not "missing".
pub(super) fn resolve(
    merged: &RawProfiles,
    values: &Layer,
    g: &Globals,
    default_session: &str,
    file_reported: bool,
) -> (Vec<Profile>, Problems) {
    let mut problems = Problems::default();
    if merged.is_empty() && !file_reported {
        problems.push(
            "profiles",
            "no profiles configured: give --profile NAME=ROLE_ARN, ROLECALL_PROFILES, `profiles` in the config file, or AWS_ROLE_ARN",
        );
    }
    let mut d = Defaults {
        region: Inherited::new(&values.region),
        sts_endpoint: Inherited::new(&values.sts_endpoint),
        duration: Inherited::new(&values.duration),
        session_name: Inherited::new(&values.session_name),
        credentials: Inherited::new(&values.credentials),
        fips: Inherited::new(&values.use_fips_endpoint),
        dualstack: Inherited::new(&values.use_dualstack_endpoint),
        region_missing_reported: false,
        g,
        merged,
        default_session,
    };
    let profiles = merged
        .iter()
        .filter_map(|(name, (name_src, raw))| one(name, name_src, raw, &mut d, &mut problems))
        .collect::<Vec<_>>();
    super::order::check_cycles(merged, &mut problems);
    check_process_dir(&profiles, g, &mut problems);
    (profiles, problems)
}

/// One profile, checked in the order its problems are listed; `None` when
/// a value it cannot go without is bad.
fn one(
    name: &str,
    name_src: &Sourced,
    raw: &RawProfile,
    d: &mut Defaults<'_>,
    p: &mut Problems,
) -> Option<Profile> {
    let ok_name = check_profile_name(&name_src.value)
        .map_err(|e| p.at(name_src, e))
        .ok();
    let role_arn = match &raw.role_arn {
        Some(s) => validate(s, p, check_role_arn),
        None => {
            p.push(join(&name_src.origin, ROLE_ARN), "missing role_arn");
            None
        }
    };
    let (own_region, own_endpoint) = (&raw.own.region, &raw.own.sts_endpoint);
    if own_region.as_ref().or(d.region.src).is_none()
        && own_endpoint.as_ref().or(d.sts_endpoint.src).is_none()
        && !std::mem::replace(&mut d.region_missing_reported, true)
    {
        p.push(
            "region",
            "no AWS region: set --region, AWS_REGION or `region` in the config file (or an STS endpoint with --sts-endpoint)",
        );
    }
    let region = d.region.pick(own_region, p, check_region).flatten();
    let sts_endpoint = d.sts_endpoint.pick(own_endpoint, p, check_endpoint);
    let chained = raw.source_profile.is_some();
    let duration = duration(&raw.own.duration, chained, d, p);
    let own = &raw.own;
    let use_fips = d.fips.pick(&own.use_fips_endpoint, p, parse_bool);
    let use_dualstack = d.dualstack.pick(&own.use_dualstack_endpoint, p, parse_bool);
    let session_name = (d
        .session_name
        .pick(&own.session_name, p, check_session_name))
    .unwrap_or_else(|| Some(d.default_session.to_owned()));
    let credentials = credentials(name, &own.credentials, d, p);
    let settings = own_settings(name_src, raw, d.merged, chained, p);
    let (Some(()), Some(role_arn), Some(duration), Some(session_name), Some(credentials)) =
        (ok_name, role_arn, duration, session_name, credentials)
    else {
        return None;
    };
    let (Some(use_fips), Some(use_dualstack)) = (
        use_fips.unwrap_or(Some(false)),
        use_dualstack.unwrap_or(Some(false)),
    ) else {
        return None;
    };
    let profile = Profile {
        name: name.to_owned(),
        role_arn,
        region,
        sts_endpoint: sts_endpoint.flatten(),
        use_fips,
        use_dualstack,
        duration: Duration::from_secs(duration.into()),
        session_name,
        credentials,
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
    chained: bool,
    d: &mut Defaults<'_>,
    p: &mut Problems,
) -> Option<u32> {
    let max = if chained {
        MAX_CHAINED_DURATION
    } else {
        MAX_DURATION
    };
    match own {
        Some(own) => validate(own, p, |v| check_duration(v, max)),
        None => match d
            .duration
            .pick(&None, p, |v| check_duration(v, MAX_DURATION))
        {
            Some(d) => d.map(|d| d.min(max)),
            None => Some(DEFAULT_DURATION),
        },
    }
}

/// The profile's credentials mode (`own`, else the default, else file);
/// endpoint mode needs the endpoint.
fn credentials(
    name: &str,
    own: &Option<Sourced>,
    d: &mut Defaults<'_>,
    p: &mut Problems,
) -> Option<CredentialsMode> {
    let credentials = d.credentials.pick(own, p, mode);
    let credentials = credentials.unwrap_or(Some(CredentialsMode::File));
    if credentials == Some(CredentialsMode::Endpoint)
        && !d.g.endpoint_set
        && let Some(s) = own.as_ref().or(d.credentials.src)
    {
        p.at(
            s,
            format!(
                "profile \"{name}\" uses credentials: endpoint, which only the credentials endpoint serves: set endpoint_addr (--endpoint-addr 127.0.0.1:PORT), or use file or process"
            ),
        );
    }
    credentials
}

/// The profile's own settings (policies, source, external id, tags), each
/// checked; the name, role and inherited fields are left to the caller.
fn own_settings(
    name_src: &Sourced,
    raw: &RawProfile,
    merged: &RawProfiles,
    chained: bool,
    p: &mut Problems,
) -> Profile {
    let policy = raw
        .policy
        .as_ref()
        .and_then(|s| validate(s, p, check_policy));
    let arns = raw.policy_arns.iter();
    let policy_arns = arns
        .filter_map(|s| validate(s, p, check_policy_arn))
        .collect();
    if raw.policy_arns.len() > MAX_POLICY_ARNS {
        p.push(
            join(&name_src.origin, "policy_arns"),
            format!("at most {MAX_POLICY_ARNS} managed session policies are allowed"),
        );
    }
    let source_profile = raw.source_profile.as_ref().and_then(|s| {
        if merged.contains_key(&s.value) {
            return Some(s.value.clone());
        }
        let message = format!("unknown source_profile \"{}\"", printable(&s.value));
        p.at(s, message);
        None
    });
    let external_id = raw.external_id.as_ref();
    let external_id = external_id.and_then(|s| validate(s, p, check_external_id));
    let tags = super::tags::resolve(raw, &name_src.origin, chained, p);
    Profile {
        policy,
        policy_arns,
        source_profile,
        external_id,
        tags: tags.tags,
        transitive_tag_keys: tags.transitive,
        source_identity: tags.source_identity,
        kubernetes_tags: tags.kubernetes,
        ..Profile::new("", "")
    }
}

/// The SDKs split the credential_process line on spaces, and several run
/// it with `sh -c`: only characters that mean nothing to a shell.
fn check_process_dir(profiles: &[Profile], g: &Globals, problems: &mut Problems) {
    let dir = g.config.app_output_dir.to_string_lossy();
    let shell_safe = |c: char| c.is_ascii_alphanumeric() || "/._+,=@%:-".contains(c);
    if profiles
        .iter()
        .any(|p| p.credentials == CredentialsMode::Process)
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
