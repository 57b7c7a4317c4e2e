//! The session tags and transitive keys of a chained profile's
//! `AssumeRole`: its own `tags`, plus, with `kubernetes_tags`, the token's
//! `kubernetes.io` claims under the keys EKS Pod Identity uses.

use aws_sdk_sts::types::Tag;

use crate::aws::KUBERNETES_TAG_KEYS;
use crate::config::Profile;
use crate::token::KubernetesClaims;

/// The tags to send (by key) and the transitive keys among them. A
/// Kubernetes tag whose claim the token lacks (a token not bound to a pod
/// has no pod name or uid) is left out, and so is its transitive key.
pub fn session_tags(
    profile: &Profile,
    claims: Option<&KubernetesClaims>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut tags = profile.tags.clone();
    if profile.kubernetes_tags
        && let Some(k) = claims
    {
        let values = [
            k.namespace.as_deref(),
            k.serviceaccount.as_ref().and_then(|s| s.name.as_deref()),
            k.pod.as_ref().and_then(|p| p.name.as_deref()),
            k.pod.as_ref().and_then(|p| p.uid.as_deref()),
        ];
        for (key, value) in KUBERNETES_TAG_KEYS.iter().zip(values) {
            if let Some(v) = value.filter(|v| valid_value(v)) {
                tags.push(((*key).to_owned(), v.to_owned()));
            }
        }
    }
    tags.sort();
    let transitive = profile
        .transitive_tag_keys
        .iter()
        .filter(|t| tags.iter().any(|(k, _)| k.eq_ignore_ascii_case(t)))
        .cloned()
        .collect();
    (tags, transitive)
}

/// A claim fit to be a tag value (Kubernetes names and uids always are; a
/// token with anything else is not trusted to tag a session).
fn valid_value(v: &str) -> bool {
    v.len() <= 256
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:/=+-@".contains(c))
}

/// `tags` as the SDK sends them; `None` when there are none.
pub(super) fn sdk_tags(tags: &[(String, String)]) -> Option<Vec<Tag>> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::NamedObject;

    fn chained() -> Profile {
        Profile {
            source_profile: Some("base".into()),
            tags: vec![("team".into(), "shop".into())],
            transitive_tag_keys: vec!["team".into()],
            ..Profile::new("p", "arn:aws:iam::111122223333:role/p")
        }
    }

    fn claims(pod: bool) -> KubernetesClaims {
        KubernetesClaims {
            namespace: Some("shop".into()),
            serviceaccount: Some(NamedObject {
                name: Some("cart".into()),
                uid: Some("sa-uid".into()),
            }),
            pod: pod.then(|| NamedObject {
                name: Some("cart-7f9c".into()),
                uid: Some("0b6e1c2a-5d1f-4c3e-9a87-1d2e3f4a5b6c".into()),
            }),
        }
    }

    #[test]
    fn kubernetes_claims_become_pod_identitys_tags_when_present() {
        let mut p = chained();
        p.kubernetes_tags = true;
        p.transitive_tag_keys
            .extend(KUBERNETES_TAG_KEYS.map(str::to_owned));
        let (tags, transitive) = session_tags(&p, Some(&claims(true)));
        assert_eq!(
            tags,
            [
                ("kubernetes-namespace", "shop"),
                ("kubernetes-pod-name", "cart-7f9c"),
                ("kubernetes-pod-uid", "0b6e1c2a-5d1f-4c3e-9a87-1d2e3f4a5b6c"),
                ("kubernetes-service-account", "cart"),
                ("team", "shop"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(transitive.len(), 5);
        // A token bound to no pod: no pod tags, nor their transitive keys.
        let (tags, transitive) = session_tags(&p, Some(&claims(false)));
        assert_eq!(tags.len(), 3);
        assert!(!transitive.iter().any(|t| t.starts_with("kubernetes-pod")));
        // Off: the claims are not read into tags.
        assert_eq!(session_tags(&chained(), Some(&claims(true))).0.len(), 1);
    }
}
