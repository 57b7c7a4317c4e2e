//! The text of `check` under pod-identity: the agent, the token, the
//! association, each profile's policies, and the notes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use super::{ACCOUNT, CLUSTER, Known, ROLE_NAME, Setup, is_agent_address, pod_actions, subject};
use crate::check::indented;
use crate::config::Profile;
use crate::token::Claims;
use crate::trust::{self, POD_IDENTITY_SERVICE, POD_IDENTITY_TAG_KEYS};

impl Setup<'_> {
    /// The agent, the token's path, and a warning for an address the real
    /// agent refuses.
    pub(in crate::check) fn head(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "identity: pod-identity");
        let _ = writeln!(out, "agent: {}", self.pod.endpoint);
        if !is_agent_address(&self.pod.endpoint) {
            let _ = writeln!(
                out,
                "warning: the agent URL is not addressed to 169.254.170.23 or [fd00:ec2::23]: the EKS Pod Identity agent answers 403 to any other Host (a test agent may not)"
            );
        }
        let _ = writeln!(out, "token: {}", self.config.token_file.display());
        out
    }

    /// The association: the command, and its role's trust policy.
    pub(in crate::check) fn association_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nassociation: the pod's service account needs an EKS Pod Identity association:\n  {}",
            self.command()
        );
        let _ = writeln!(
            out,
            "association role {}: its trust policy must allow sts:AssumeRole and sts:TagSession by the service {POD_IDENTITY_SERVICE}:",
            self.association
        );
        indented(&mut out, &trust::association_trust());
        out
    }

    /// One profile: the base (the association's session) or a role with
    /// the trust policy it needs and its principal's permissions.
    pub(in crate::check) fn describe(&self, text: &mut String, p: &Profile) {
        if p.pod_identity {
            let _ = writeln!(
                text,
                "\nprofile {} -> {} ({})",
                p.name,
                crate::agent::ROLE_SHOWN,
                if self.pod.published {
                    "published"
                } else {
                    "internal: not published; set pod_identity_profile to publish it"
                }
            );
            let _ = writeln!(
                text,
                "  the association role's session, from the agent: every other profile is chained from it"
            );
            return;
        }
        let _ = writeln!(text, "\nprofile {} -> {}", p.name, p.role_arn);
        if let Ok(url) = crate::config::endpoint_for(p) {
            let _ = writeln!(text, "  STS endpoint: {url}");
        }
        let entry = self.entry(p);
        let (principal, permissions) = entry.permissions.unwrap_or_default();
        let source = p.source_profile.as_deref().unwrap_or_default();
        let from = if principal == self.association {
            format!("the Pod Identity session (profile {source})")
        } else {
            format!("profile {source}")
        };
        let _ = writeln!(
            text,
            "  chained from {from}: the role's trust policy must allow {} by {principal}, with the pod's namespace and service account (the session tags EKS set):",
            pod_actions(p)
        );
        indented(text, &entry.trust);
        let _ = writeln!(text, "  permissions policy the role {principal} needs:");
        indented(text, &permissions);
    }

    /// The notes on what Pod Identity changes: the association role's name,
    /// the one-hour cap, the transitive tags, `kubernetes_tags` and tag
    /// keys the session already has.
    pub(in crate::check) fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let how = format!(
            "aws eks list-pod-identity-associations --cluster-name {CLUSTER} --namespace {} --service-account {}, then describe-pod-identity-association",
            self.namespace, self.service_account
        );
        match self.known {
            Known::Given => {}
            Known::Agent => out.push(format!(
                "note: the account is the agent's AccountId; the agent does not name the role: replace {ROLE_NAME} ({how}) or pass --association-role ARN"
            )),
            Known::Roles => out.push(format!(
                "note: the account is the roles' account, a guess: the association's role is in the cluster's account; replace {ROLE_NAME} ({how}) or pass --association-role ARN"
            )),
            Known::Nothing => out.push(format!(
                "note: replace {ACCOUNT} with the cluster's account and {ROLE_NAME} with the association's role ({how}) or pass --association-role ARN"
            )),
        }
        out.push(
            "note: every profile is chained from the Pod Identity session: its sessions last at most 1 hour (IAM's limit for role chaining), whatever the role's MaxSessionDuration".into(),
        );
        out.push(format!(
            "note: the Pod Identity session carries six transitive session tags ({}): a role chained from it must allow sts:TagSession, and the tags count against each call's packed policy size (PackedPolicyTooLarge); an association with disableSessionTags sets none: then drop the aws:RequestTag conditions (they would refuse every call)",
            POD_IDENTITY_TAG_KEYS.join(", ")
        ));
        out.extend(self.tag_notes());
        out
    }

    /// `kubernetes_tags` and `tags:` keys the Pod Identity session already
    /// carries: STS refuses a session tag key that an inherited one has.
    pub(in crate::check) fn tag_notes(&self) -> Vec<String> {
        let roles = self.config.profiles.iter().filter(|p| !p.pod_identity);
        let k8s: Vec<&str> = roles
            .clone()
            .filter(|p| p.kubernetes_tags)
            .map(|p| p.name.as_str())
            .collect();
        let mut out = Vec::new();
        if !k8s.is_empty() {
            out.push(format!(
                "note: kubernetes_tags ({}): the Pod Identity session already carries these keys as transitive tags unless the association sets disableSessionTags, and STS refuses a tag key the session inherits; use kubernetes_tags only with disableSessionTags",
                k8s.join(", ")
            ));
        }
        for p in roles {
            for (key, _) in &p.tags {
                if POD_IDENTITY_TAG_KEYS
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(key))
                {
                    out.push(format!(
                        "note: profile {}'s tag {key}: the Pod Identity session already carries this key as a transitive tag unless the association sets disableSessionTags, and STS refuses a tag key the session inherits",
                        p.name
                    ));
                }
            }
        }
        out
    }

    /// The whole text, with the agent's and STS's answers per profile
    /// (`--assume`). Without `now`, the claims are the flags' (no token
    /// was read).
    pub(in crate::check) fn text(
        &self,
        claims: &Claims,
        now: Option<SystemTime>,
        answers: &HashMap<String, String>,
    ) -> (String, bool) {
        let mut text = self.head();
        text.push_str(&crate::check::describe_setup(self.config));
        let mut ok = true;
        match now {
            Some(now) => {
                let (desc, token_ok) = crate::check::describe_token(claims, now);
                text.push_str(&desc);
                ok = token_ok & self.judge_claims(&mut text, claims);
            }
            None => {
                let _ = writeln!(
                    text,
                    "service account: {}/{} (from --namespace and --service-account; no token read)",
                    self.namespace, self.service_account
                );
            }
        }
        text.push_str(&self.association_text());
        for p in self.config.order() {
            self.describe(&mut text, p);
            if let Some(a) = answers.get(&p.name) {
                text.push_str(a);
            }
        }
        let _ = writeln!(text, "\n{}", self.notes().join("\n"));
        text.push_str(&crate::check::modes::text(self.config));
        (text, ok)
    }

    /// The audience and the subject: warnings, and whether they can work.
    pub(in crate::check) fn judge_claims(&self, text: &mut String, claims: &Claims) -> bool {
        let mut ok = true;
        if !claims.aud.iter().any(|a| a == POD_IDENTITY_SERVICE) {
            ok = false;
            let _ = writeln!(
                text,
                "warning: the token's audience is not {POD_IDENTITY_SERVICE}: EKS Auth refuses it; pod_identity_token_file (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) must be the Pod Identity token"
            );
        }
        if subject(claims).is_none() {
            ok = false;
            let _ = writeln!(
                text,
                "warning: the token's sub is not system:serviceaccount:NAMESPACE:NAME: the namespace and service account below are placeholders"
            );
        }
        ok
    }
}
