//! What a reload changes, decided without a runtime: [`plan`] compares the
//! running configuration with the new one and lists the options that need a
//! restart and the profiles to stop and (re)start. The supervisor carries
//! the plan out, unless [`refused`] says the change needs a restart whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, Profile};

/// The changes a reload makes.
#[derive(Debug, Default, PartialEq)]
pub struct ReloadPlan {
    /// Process-wide options that changed: they take effect only after a
    /// restart, and the running values are kept.
    pub restart_needed: Vec<&'static str>,
    /// Running profiles that the new configuration no longer has.
    pub removed: Vec<String>,
    /// Profiles to start, in the new configuration's order: new ones, and
    /// changed ones (whose running task stops first).
    pub start: Vec<Start>,
}

/// A profile to start with its new settings.
#[derive(Debug, PartialEq)]
pub struct Start {
    pub profile: Profile,
    /// Whether a task for this profile is running (with other settings).
    pub replaces: bool,
    /// Whether the running session stays valid for the new settings (same
    /// role, source and permissions), so it is kept until the refresh.
    pub keep_session: bool,
}

impl ReloadPlan {
    /// Names of the new profiles, the changed ones and the removed ones, for
    /// the "configuration reloaded" log line.
    pub fn summary(&self) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
        let names = |replaces: bool| {
            self.start
                .iter()
                .filter(|s| s.replaces == replaces)
                .map(|s| s.profile.name.as_str())
                .collect()
        };
        (
            names(false),
            names(true),
            self.removed.iter().map(String::as_str).collect(),
        )
    }
}

/// The plan for replacing `old` (whose profiles run as `running`) with
/// `new`.
pub fn plan(old: &Config, new: &Config, running: &BTreeMap<String, Arc<Profile>>) -> ReloadPlan {
    let removed = running
        .keys()
        .filter(|name| new.profile(name).is_none())
        .cloned()
        .collect();
    let start = new
        .profiles
        .iter()
        .filter_map(|p| match running.get(&p.name) {
            Some(r) if **r == *p => None,
            r => Some(Start {
                profile: p.clone(),
                replaces: r.is_some(),
                keep_session: r.is_some_and(|r| r.same_identity(p)),
            }),
        })
        .collect();
    ReloadPlan {
        restart_needed: Config::restart_needed(old, new),
        removed,
        start,
    }
}

/// Why a reload from `old` to `new` is refused as a whole, if it is: a
/// change of `identity` changes every profile's source while the running
/// agent client and token watcher stay, so only a restart applies it.
pub fn refused(old: &Config, new: &Config) -> Option<String> {
    let (was, is) = (old.identity.name(), new.identity.name());
    (was != is).then(|| {
        format!(
            "identity changed ({was} \u{2192} {is}): only a restart applies it; the running configuration is kept"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, Flags};

    fn config(yaml: &str) -> Config {
        let name = std::path::Path::new("config.yaml");
        Config::load_text(&Flags::default(), &Env::new(), name, yaml.as_bytes()).unwrap()
    }

    fn running(c: &Config) -> BTreeMap<String, Arc<Profile>> {
        c.profiles
            .iter()
            .map(|p| (p.name.clone(), Arc::new(p.clone())))
            .collect()
    }

    const BASE: &str = "region: eu-west-1
profiles:
  a: { role_arn: 'arn:aws:iam::111122223333:role/a' }
  b: { role_arn: 'arn:aws:iam::111122223333:role/b', duration_seconds: 900 }
  c: { role_arn: 'arn:aws:iam::111122223333:role/c' }
";

    #[test]
    fn an_unchanged_configuration_plans_nothing() {
        let old = config(BASE);
        let p = plan(&old, &config(BASE), &running(&old));
        assert_eq!(p, ReloadPlan::default());
    }

    #[test]
    fn added_changed_and_removed_profiles_are_planned_in_order() {
        let old = config(BASE);
        let new = config(
            "region: eu-west-1
profiles:
  d: { role_arn: 'arn:aws:iam::111122223333:role/d' }
  b: { role_arn: 'arn:aws:iam::111122223333:role/b', duration_seconds: 1800 }
  c: { role_arn: 'arn:aws:iam::111122223333:role/other' }
",
        );
        let p = plan(&old, &new, &running(&old));
        assert_eq!(p.removed, ["a"]);
        let (added, changed, removed) = p.summary();
        assert_eq!(added, ["d"]);
        assert_eq!(changed, ["b", "c"]);
        assert_eq!(removed, ["a"]);
        let keep: BTreeMap<&str, bool> = p
            .start
            .iter()
            .map(|s| (s.profile.name.as_str(), s.keep_session))
            .collect();
        // A longer duration keeps the session; another role does not; a new
        // profile has none to keep.
        assert_eq!(
            keep,
            BTreeMap::from([("b", true), ("c", false), ("d", false)])
        );
        assert!(p.restart_needed.is_empty());
    }

    #[test]
    fn process_wide_changes_are_listed_as_needing_a_restart() {
        let old = config(BASE);
        let new = config(&format!(
            "output_dir: /elsewhere\nlog_format: json\nhealth_addr: 127.0.0.1:1\n{BASE}"
        ));
        let p = plan(&old, &new, &running(&old));
        assert_eq!(
            p.restart_needed,
            ["output_dir", "health_addr", "log_format"]
        );
        assert!(p.start.is_empty() && p.removed.is_empty());
    }

    #[test]
    fn a_set_s_members_are_a_reload_s_but_its_dir_needs_a_restart() {
        let sets = |app: &str, dir: &str| {
            format!(
                "{BASE}outputs:\n  app: {{ dir: /a, profiles: [{app}] }}\n  ship: {{ dir: {dir}, profiles: [c] }}\n"
            )
        };
        let old = config(&sets("a, b", "/s"));
        let moved = config(&sets("a, b, c", "/s"));
        let p = plan(&old, &moved, &running(&old));
        assert_eq!(p, ReloadPlan::default(), "membership is no profile change");
        let p = plan(&old, &config(&sets("a, b", "/elsewhere")), &running(&old));
        assert_eq!(p.restart_needed, ["outputs"]);
    }

    const POD: &str = "identity: pod-identity
region: eu-west-1
profiles:
  a: { role_arn: 'arn:aws:iam::111122223333:role/a' }
  b: { role_arn: 'arn:aws:iam::111122223333:role/b' }
";

    #[test]
    fn a_change_of_identity_is_refused_whole() {
        let (web, pod) = (config(BASE), config(POD));
        assert_eq!(
            refused(&web, &pod).as_deref(),
            Some(
                "identity changed (web-identity \u{2192} pod-identity): only a restart applies it; the running configuration is kept"
            )
        );
        assert!(
            refused(&pod, &web)
                .unwrap()
                .contains("(pod-identity \u{2192} web-identity)")
        );
        assert_eq!(refused(&pod, &pod), None);
        assert_eq!(
            refused(
                &web,
                &config(POD.replace("pod-identity", "web-identity").as_str())
            ),
            None
        );
    }

    #[test]
    fn the_agent_and_its_token_need_a_restart_and_the_published_name_is_a_plan() {
        let old = config(POD);
        let new = config(&format!(
            "pod_identity_endpoint: 'http://127.0.0.1:8080/v1/credentials'\npod_identity_token_file: /t\n{POD}"
        ));
        let p = plan(&old, &new, &running(&old));
        assert_eq!(
            p.restart_needed,
            ["pod_identity_endpoint", "pod_identity_token_file"]
        );
        assert!(p.start.is_empty() && p.removed.is_empty());
        // Publishing the base under a name renames it: every chained
        // profile changes source, and keeps no session.
        let new = config(&format!("pod_identity_profile: node\n{POD}"));
        let p = plan(&old, &new, &running(&old));
        assert!(p.restart_needed.is_empty() && refused(&old, &new).is_none());
        assert_eq!(p.removed, ["pod-identity"]);
        let start: Vec<_> = p
            .start
            .iter()
            .map(|s| (s.profile.name.as_str(), s.keep_session))
            .collect();
        assert_eq!(start, [("a", false), ("b", false), ("node", false)]);
        // Published under the internal name: the same profiles, no plan.
        let new = config(&format!("pod_identity_profile: pod-identity\n{POD}"));
        assert_eq!(plan(&old, &new, &running(&old)), ReloadPlan::default());
        // A role profile added: started after its source, nothing else.
        let new = config(&format!(
            "{POD}  c: {{ role_arn: 'arn:aws:iam::111122223333:role/c' }}\n"
        ));
        let p = plan(&old, &new, &running(&old));
        assert_eq!(p.summary(), (vec!["c"], vec![], vec![]));
    }
}
