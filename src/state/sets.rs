//! Output-set membership: which profiles each set (each application
//! container's directory) gets. Kept in one place, read by the writers and
//! the endpoint, and changed by a reload (that is how an operator gives a
//! container a role: by editing the ConfigMap).

use super::{ProfileState, Shared};

impl Shared {
    /// Sets the profiles of output set `set` (replacing its earlier list)
    /// and asks the writers to render.
    pub fn set_members(&self, set: &str, profiles: impl IntoIterator<Item = String>) {
        self.lock()
            .members
            .insert(set.to_owned(), profiles.into_iter().collect());
        self.writes.request();
    }

    /// The profiles of output set `set`; `None` for a set never given
    /// members (a lone writer in tests: every profile).
    #[cfg(test)]
    pub(crate) fn members(&self, set: &str) -> Option<std::collections::BTreeSet<String>> {
        self.lock().members.get(set).cloned()
    }

    /// Whether `profile` is in output set `set` (a set without members
    /// holds every profile).
    pub fn in_set(&self, set: &str, profile: &str) -> bool {
        self.lock()
            .members
            .get(set)
            .is_none_or(|m| m.contains(profile))
    }

    /// A copy of the state of the profiles in output set `set`, in name
    /// order, to render.
    pub fn snapshot_of(&self, set: &str) -> Vec<ProfileState> {
        let state = self.lock();
        let members = state.members.get(set);
        state
            .profiles
            .values()
            .filter(|s| members.is_none_or(|m| m.contains(&s.profile.name)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Profile;

    #[test]
    fn a_set_renders_only_its_members_and_a_reload_can_move_one() {
        let shared = Shared::new();
        for n in ["a", "b", "c"] {
            let p = Arc::new(Profile::new(
                n,
                format!("arn:aws:iam::111122223333:role/{n}"),
            ));
            shared.register(p, None);
        }
        let names = |set: &str| -> Vec<String> {
            shared
                .snapshot_of(set)
                .into_iter()
                .map(|s| s.profile.name.clone())
                .collect()
        };
        assert_eq!(names("lone"), ["a", "b", "c"], "no members: every profile");
        assert!(shared.in_set("lone", "anything"));
        shared.set_members("x", ["a".to_owned(), "c".to_owned()]);
        shared.set_members("y", ["b".to_owned()]);
        assert_eq!(names("x"), ["a", "c"]);
        assert_eq!(names("y"), ["b"]);
        assert!(shared.in_set("x", "a") && !shared.in_set("x", "b"));
        shared.set_members("x", ["a".to_owned()]);
        shared.set_members("y", ["b".to_owned(), "c".to_owned()]);
        assert_eq!(
            (names("x"), names("y")),
            (vec!["a".to_owned()], vec!["b".to_owned(), "c".to_owned()])
        );
        assert_eq!(shared.members("x").unwrap().len(), 1);
        assert!(shared.members("z").is_none());
    }
}
