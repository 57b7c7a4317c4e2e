//! Stage 5, the order: the source_profile graph, walked here only. Cycles
//! are refused at load; a loaded configuration gives its profiles sources
//! first ([`Config::order`](super::Config::order)) and in layers that can
//! be assumed together ([`Config::waves`](super::Config::waves)).

use super::Profile;
use super::profiles::RawProfiles;
use super::sources::{Problems, join, printable};

/// One problem per profile on a source_profile cycle, naming the cycle from it.
pub(super) fn check_cycles(merged: &RawProfiles, problems: &mut Problems) {
    let source = |name: &str| {
        merged
            .get(name)
            .and_then(|(_, p)| p.get("source_profile"))
            .map(|s| s.value.as_str())
    };
    for (start, (origin, _)) in merged {
        let mut seen = vec![start.as_str()];
        let mut cur = start.as_str();
        while let Some(next) = source(cur) {
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
