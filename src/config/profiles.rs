//! Stage 4, the profiles: each merged profile checked and completed with
//! the defaults it inherits. An inherited default is checked once, when
//! the first profile inherits it (a bad default is one problem, and a
//! default no profile inherits is not checked).

use std::collections::BTreeMap;
use std::time::Duration;

use super::checks::{
    check_duration, check_endpoint, check_external_id, check_policy, check_policy_arn,
    check_profile_name, check_region, check_role_arn, check_session_name, parse_bool,
};
use super::options::{POLICY_ARNS, ROLE_ARN};
use super::sources::{Problems, RawProfile, Src, join, printable};
use super::validate::{Globals, validate};
use super::{
    CredentialsMode, DEFAULT_DURATION, MAX_CHAINED_DURATION, MAX_DURATION, MAX_POLICY_ARNS, Profile,
};

/// The merged profiles, by name, each with the source of its name.
pub(super) type RawProfiles = BTreeMap<String, (Src, RawProfile)>;

/// An inherited default, checked on first use.
struct Inherited<'a, T> {
    src: Option<&'a Src>,
    checked: Option<Option<T>>,
}

impl<'a, T: Clone> Inherited<'a, T> {
    fn new(g: &'a Globals, key: &str) -> Self {
        Inherited {
            src: g.inherited.get(key),
            checked: None,
        }
    }

    /// `None` when there is no default; `Some(None)` when it is bad.
    fn get(
        &mut self,
        problems: &mut Problems,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        let s = self.src?;
        Some(
            self.checked
                .get_or_insert_with(|| validate(s, problems, check))
                .clone(),
        )
    }
}

/// A profile's own value, or else the default it inherits: `None` when
/// neither is set, `Some(None)` when the one that applies is bad.
fn own_or_inherited<T: Clone>(
    own: Option<&Src>,
    inherited: &mut Inherited<'_, T>,
    problems: &mut Problems,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Option<Option<T>> {
    match own {
        Some(s) => Some(validate(s, problems, check)),
        None => inherited.get(problems, check),
    }
}

fn mode(v: &str) -> Result<CredentialsMode, String> {
    match v {
        "file" => Ok(CredentialsMode::File),
        "process" => Ok(CredentialsMode::Process),
        "endpoint" => Ok(CredentialsMode::Endpoint),
        _ => Err(format!(
            "\"{}\" is not a credentials mode: use file, process or endpoint",
            printable(v)
        )),
    }
}

/// Checks and completes every profile (sorted by name). `file_reported`:
/// the configuration file already has a problem, so its profiles are not
/// "missing".
pub(super) fn resolve(
    merged: &RawProfiles,
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
    let mut region_default = Inherited::new(g, "region");
    let mut sts_endpoint_default = Inherited::new(g, "sts_endpoint");
    let mut duration_default = Inherited::new(g, "duration_seconds");
    let mut session_name_default = Inherited::new(g, "role_session_name");
    let mut credentials_default = Inherited::new(g, "credentials");
    let mut fips_default = Inherited::new(g, "use_fips_endpoint");
    let mut dualstack_default = Inherited::new(g, "use_dualstack_endpoint");
    let mut region_missing_reported = false;
    let mut profiles = Vec::new();
    for (name, (name_src, raw)) in merged {
        let p = &mut problems;
        let ok_name = check_profile_name(&name_src.value)
            .map_err(|e| p.at(name_src, e))
            .ok();
        let role_arn = match raw.get(ROLE_ARN) {
            Some(s) => validate(s, p, check_role_arn),
            None => {
                p.push(join(&name_src.origin, ROLE_ARN), "missing role_arn");
                None
            }
        };
        let own_region = raw.get("region");
        let own_endpoint = raw.get("sts_endpoint");
        if own_region.or(region_default.src).is_none()
            && own_endpoint.or(sts_endpoint_default.src).is_none()
            && !region_missing_reported
        {
            region_missing_reported = true;
            p.push(
                "region",
                "no AWS region: set --region, AWS_REGION or `region` in the config file (or an STS endpoint with --sts-endpoint)",
            );
        }
        let region = own_or_inherited(own_region, &mut region_default, p, check_region).flatten();
        let sts_endpoint =
            own_or_inherited(own_endpoint, &mut sts_endpoint_default, p, check_endpoint).flatten();
        // A chained profile's own duration_seconds may not exceed one hour
        // (AWS's limit for role chaining); an inherited default is capped.
        let chained = raw.get("source_profile").is_some();
        let duration = match raw.get("duration_seconds") {
            Some(own) => validate(own, p, |v| {
                check_duration(
                    v,
                    if chained {
                        MAX_CHAINED_DURATION
                    } else {
                        MAX_DURATION
                    },
                )
            }),
            None => match duration_default.get(p, |v| check_duration(v, MAX_DURATION)) {
                Some(d) if chained => d.map(|d| d.min(MAX_CHAINED_DURATION)),
                Some(d) => d,
                None => Some(DEFAULT_DURATION),
            },
        }
        .map(|s| Duration::from_secs(s.into()));
        let use_fips = own_or_inherited(
            raw.get("use_fips_endpoint"),
            &mut fips_default,
            p,
            parse_bool,
        )
        .unwrap_or(Some(false));
        let use_dualstack = own_or_inherited(
            raw.get("use_dualstack_endpoint"),
            &mut dualstack_default,
            p,
            parse_bool,
        )
        .unwrap_or(Some(false));
        let session_name = own_or_inherited(
            raw.get("role_session_name"),
            &mut session_name_default,
            p,
            check_session_name,
        )
        .unwrap_or_else(|| Some(default_session.to_owned()));
        let mode_src = raw.get("credentials").or(credentials_default.src);
        let credentials =
            own_or_inherited(raw.get("credentials"), &mut credentials_default, p, mode)
                .unwrap_or(Some(CredentialsMode::File));
        if credentials == Some(CredentialsMode::Endpoint)
            && !g.endpoint_set
            && let Some(s) = mode_src
        {
            p.at(
                s,
                format!(
                    "profile \"{name}\" uses credentials: endpoint, which only the credentials endpoint serves: set endpoint_addr (--endpoint-addr 127.0.0.1:PORT), or use file or process"
                ),
            );
        }
        let policy = raw.get("policy").and_then(|s| validate(s, p, check_policy));
        let policy_arns: Vec<String> = raw
            .policy_arns
            .iter()
            .filter_map(|s| validate(s, p, check_policy_arn))
            .collect();
        if raw.policy_arns.len() > MAX_POLICY_ARNS {
            p.push(
                join(&name_src.origin, POLICY_ARNS),
                format!("at most {MAX_POLICY_ARNS} managed session policies are allowed"),
            );
        }
        let source_profile = raw.get("source_profile").and_then(|s| {
            if merged.contains_key(&s.value) {
                Some(s.value.clone())
            } else {
                p.at(
                    s,
                    format!("unknown source_profile \"{}\"", printable(&s.value)),
                );
                None
            }
        });
        let external_id = raw
            .get("external_id")
            .and_then(|s| validate(s, p, check_external_id));
        let tags = super::tags::resolve(raw, &name_src.origin, chained, p);
        if let (
            Some(()),
            Some(role_arn),
            Some(duration),
            Some(session_name),
            Some(credentials),
            Some(use_fips),
            Some(use_dualstack),
        ) = (
            ok_name,
            role_arn,
            duration,
            session_name,
            credentials,
            use_fips,
            use_dualstack,
        ) {
            let profile = Profile {
                name: name.clone(),
                role_arn,
                region,
                sts_endpoint,
                use_fips,
                use_dualstack,
                duration,
                session_name,
                credentials,
                policy,
                policy_arns,
                source_profile,
                external_id,
                tags: tags.tags,
                transitive_tag_keys: tags.transitive,
                source_identity: tags.source_identity,
                kubernetes_tags: tags.kubernetes,
            };
            // Resolved now by the SDK's own rules, so a combination it
            // refuses (FIPS with a custom endpoint, a partition without
            // dual-stack) is a configuration error, not a failed call.
            if let Err(e) = crate::sts::endpoint_for(&profile) {
                p.push(
                    name_src.origin.clone(),
                    format!("the STS endpoint cannot be resolved: {e}"),
                );
            }
            profiles.push(profile);
        }
    }
    super::order::check_cycles(merged, &mut problems);
    check_process_dir(&profiles, g, &mut problems);
    (profiles, problems)
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
mod tests {
    use super::*;
    use crate::config::sources::src;
    use crate::config::validate::globals;

    const ARN: &str = "arn:aws:iam::111122223333:role/r";

    fn raw(name: &str, keys: &[(&'static str, &str)]) -> (String, (Src, RawProfile)) {
        let mut p = RawProfile::role(src(ARN, format!("p.{name}")));
        for (k, v) in keys {
            p.keys.insert(*k, src(*v, format!("p.{name}.{k}")));
        }
        (name.to_owned(), (src(name, format!("p.{name}")), p))
    }

    fn with_defaults(pairs: &[(&'static str, &str)]) -> Globals {
        let values = pairs
            .iter()
            .map(|(k, v)| (*k, src(*v, format!("--{k}"))))
            .collect();
        globals(&values).0
    }

    #[test]
    fn a_bad_default_is_one_problem_and_one_nobody_inherits_is_none() {
        let g = with_defaults(&[("region", "BAD"), ("role_session_name", "x")]);
        let merged = RawProfiles::from([
            raw("a", &[("role_session_name", "own-name")]),
            raw("b", &[("role_session_name", "own-name")]),
        ]);
        let (ps, p) = resolve(&merged, &g, "host", false);
        assert_eq!(
            p.lines(),
            ["--region: \"BAD\" is not an AWS region such as eu-west-1"]
        );
        assert_eq!(ps.len(), 2, "a bad region does not drop the profile");
        assert_eq!(ps[0].session_name, "own-name");
    }

    #[test]
    fn profiles_inherit_and_override_the_defaults() {
        let g = with_defaults(&[
            ("region", "eu-west-1"),
            ("duration_seconds", "7200"),
            ("credentials", "process"),
        ]);
        let merged = RawProfiles::from([
            raw("a", &[("region", "us-east-1")]),
            raw("b", &[("source_profile", "a")]),
            raw("c", &[("credentials", "file"), ("duration_seconds", "900")]),
        ]);
        let (ps, p) = resolve(&merged, &g, "rolecall-host", false);
        assert!(p.lines().is_empty());
        let [a, b, c] = &ps[..] else { panic!("{ps:?}") };
        assert_eq!(a.region.as_deref(), Some("us-east-1"));
        assert_eq!(b.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.duration, Duration::from_secs(7200));
        assert_eq!(b.duration, Duration::from_secs(3600), "chained: capped");
        assert_eq!(c.duration, Duration::from_secs(900));
        assert_eq!(
            (a.credentials, c.credentials),
            (CredentialsMode::Process, CredentialsMode::File)
        );
        assert_eq!(a.session_name, "rolecall-host");
        assert_eq!(b.source_profile.as_deref(), Some("a"));
    }

    #[test]
    fn a_missing_region_is_said_once_and_no_profiles_unless_the_file_was_reported() {
        let g = with_defaults(&[]);
        let merged = RawProfiles::from([raw("a", &[]), raw("b", &[])]);
        let (_, p) = resolve(&merged, &g, "h", false);
        let m = p.lines();
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].starts_with("region: no AWS region"));
        let (_, p) = resolve(&RawProfiles::new(), &g, "h", false);
        assert!(p.lines()[0].starts_with("profiles: no profiles configured"));
        let (_, p) = resolve(&RawProfiles::new(), &g, "h", true);
        assert!(p.lines().is_empty());
    }

    #[test]
    fn each_profile_s_own_problems_name_it() {
        let g = with_defaults(&[("region", "eu-west-1"), ("credentials", "endpoint")]);
        let mut merged = RawProfiles::from([raw("a", &[("source_profile", "nope")])]);
        merged.get_mut("a").unwrap().1.keys.remove(ROLE_ARN);
        let (ps, p) = resolve(&merged, &g, "h", false);
        assert!(ps.is_empty());
        let m = p.lines();
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0], "p.a.role_arn: missing role_arn");
        assert!(m[1].starts_with("--credentials: profile \"a\" uses credentials: endpoint"));
        assert_eq!(m[2], "p.a.source_profile: unknown source_profile \"nope\"");
    }

    #[test]
    fn process_mode_needs_a_shell_safe_app_output_dir() {
        let g = with_defaults(&[
            ("region", "eu-west-1"),
            ("credentials", "process"),
            ("app_output_dir", "/a$b"),
        ]);
        let (_, p) = resolve(&RawProfiles::from([raw("a", &[])]), &g, "h", false);
        let m = p.lines();
        assert!(
            m.len() == 1 && m[0].starts_with("app_output_dir: process mode"),
            "{m:?}"
        );
    }
}
