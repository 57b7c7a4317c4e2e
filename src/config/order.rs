//! Stage 5, the order: the source_profile graph, walked here only. Cycles
//! are refused at load; a loaded configuration gives its profiles sources
//! first ([`Config::order`](super::Config::order)) and in layers that can
//! be assumed together ([`Config::waves`](super::Config::waves)).

use super::Profile;
use super::sources::RawProfiles;
use super::values::Problems;
use crate::text::printable;

/// One problem per profile on a source_profile cycle, naming the cycle from it.
pub(super) fn check_cycles(merged: &RawProfiles, problems: &mut Problems) {
    let source = |name: &str| {
        merged
            .get(name)
            .and_then(|(_, p)| p.source_profile.as_ref())
            .map(|s| s.value.as_str())
    };
    for (start, (origin, _)) in merged {
        let mut seen = vec![start.as_str()];
        let mut cur = start.as_str();
        while let Some(next) = source(cur) {
            if next == start {
                seen.push(next);
                let cycle: Vec<_> = seen.iter().map(|n| printable(n)).collect();
                let message = format!("source_profile cycle: {}", cycle.join(" -> "));
                problems.push(format!("{}.source_profile", origin.origin), message);
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

/// Whether `p`'s source (if it has one among `profiles`) is in `done`.
fn source_done(p: &Profile, profiles: &[Profile], done: &[&Profile]) -> bool {
    p.source_profile
        .as_ref()
        .is_none_or(|s| !profiles.iter().any(|q| &q.name == s) || done.iter().any(|q| &q.name == s))
}

/// Every profile once, each after its source: in name order, a profile is
/// taken as soon as its source has been (so a chain whose names sort in
/// order stays together).
pub(super) fn order(profiles: &[Profile]) -> Vec<&Profile> {
    let mut out: Vec<&Profile> = Vec::new();
    let mut rest: Vec<&Profile> = profiles.iter().collect();
    while !rest.is_empty() {
        let before = rest.len();
        rest.retain(|p| {
            let ready = source_done(p, profiles, &out);
            if ready {
                out.push(p);
            }
            !ready
        });
        if rest.len() == before {
            // Unreachable with a loaded configuration (no cycles).
            out.append(&mut rest);
        }
    }
    out
}

/// Layers of profiles, in name order within each: the first holds the
/// profiles without a source (or whose source is not configured), each
/// next one the profiles whose source is in an earlier layer.
pub(super) fn waves(profiles: &[Profile]) -> Vec<Vec<&Profile>> {
    let mut done: Vec<&Profile> = Vec::new();
    let mut out = Vec::new();
    let mut rest: Vec<&Profile> = profiles.iter().collect();
    while !rest.is_empty() {
        let (ready, waiting): (Vec<&Profile>, Vec<&Profile>) = rest
            .into_iter()
            .partition(|p| source_done(p, profiles, &done));
        if ready.is_empty() {
            // Unreachable with a loaded configuration (no cycles).
            out.push(waiting);
            break;
        }
        done.extend(&ready);
        out.push(ready);
        rest = waiting;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sources::RawProfile;
    use crate::config::values::src;

    fn profiles(specs: &[(&str, Option<&str>)]) -> Vec<Profile> {
        let mut out: Vec<Profile> = specs
            .iter()
            .map(|(n, s)| Profile {
                source_profile: s.map(Into::into),
                ..Profile::new(*n, "arn")
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn names(ps: &[&Profile]) -> Vec<String> {
        ps.iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn order_puts_each_source_first_and_keeps_name_order_otherwise() {
        let ps = profiles(&[("a", Some("z")), ("b", None), ("c", Some("b")), ("z", None)]);
        assert_eq!(names(&order(&ps)), ["b", "c", "z", "a"]);
        let ps = profiles(&[("a", None), ("b", Some("a")), ("c", None)]);
        assert_eq!(names(&order(&ps)), ["a", "b", "c"]);
    }

    #[test]
    fn waves_are_layers_sources_first() {
        let ps = profiles(&[
            ("a", None),
            ("b", Some("a")),
            ("c", None),
            ("d", Some("b")),
            ("e", Some("a")),
        ]);
        let w: Vec<Vec<String>> = waves(&ps).iter().map(|w| names(w)).collect();
        assert_eq!(w, [vec!["a", "c"], vec!["b", "e"], vec!["d"]]);
        assert!(waves(&[]).is_empty());
        // A source that is not configured does not hold a profile back.
        let ps = profiles(&[("x", Some("gone"))]);
        assert_eq!(waves(&ps).len(), 1);
    }

    #[test]
    fn a_cycle_is_one_problem_per_profile_on_it() {
        let mut merged = RawProfiles::new();
        for (name, source) in [
            ("a", Some("b")),
            ("b", Some("a")),
            ("c", Some("a")),
            ("d", None),
        ] {
            let mut raw = RawProfile::role(src("arn", name));
            if let Some(s) = source {
                raw.source_profile = Some(src(s, format!("{name}.source_profile")));
            }
            merged.insert(name.into(), (src(name, format!("p.{name}")), raw));
        }
        let mut p = Problems::default();
        check_cycles(&merged, &mut p);
        assert_eq!(
            p.lines(),
            [
                "p.a.source_profile: source_profile cycle: a -> b -> a",
                "p.b.source_profile: source_profile cycle: b -> a -> b",
            ]
        );
    }
}
