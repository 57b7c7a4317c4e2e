//! `check -o json|trust-policy` under pod-identity, and its text with
//! `--association-role`: no call, the namespace and service account from
//! the token.

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::Setup;
use crate::check::inputs;
use crate::check::issuer::{Entry, Format, IssuerArgs, Refused};
use crate::config::{Config, PodIdentity, Problem};
use crate::token::{self, Claims};
use crate::trust;

/// `check -o json|trust-policy` (and text with `--association-role`) under
/// pod-identity: the namespace and service account from the token, no
/// call. Refuses `--issuer`: no OIDC provider is involved.
pub(in crate::check) fn render(
    config: &Config,
    pod: &PodIdentity,
    args: &IssuerArgs,
) -> Result<(String, bool), Refused> {
    let mut problems = Vec::new();
    let mut problem = |origin: &str, message: String| {
        problems.push(Problem {
            origin: origin.into(),
            message,
        })
    };
    if args.issuer.is_some() {
        problem(
            "--issuer",
            "identity is pod-identity: the roles trust the association's role, not an IAM OIDC provider; run rolecall check without --issuer (it reads the Pod Identity token for the namespace and service account)".into(),
        );
    }
    let given = args.association_role.as_deref();
    if let Some(Err(e)) = given.map(crate::aws::check_role_arn) {
        problem("--association-role", e);
    }
    if let Some(name) = args
        .for_profile
        .as_deref()
        .filter(|n| config.profile(n).is_none())
    {
        let names: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
        problem(
            "--for-profile",
            format!(
                "\"{}\": no such profile; the profiles are {}",
                crate::text::printable(name),
                names.join(", ")
            ),
        );
    }
    let claims = claims(config, args, &mut problem);
    let Some(claims) = claims.filter(|_| problems.is_empty()) else {
        return Err(Refused(problems));
    };
    let setup = Setup::new(config, pod, &claims, given, None);
    match args.output {
        Format::Text => {
            let now = args.namespace.is_none().then(SystemTime::now);
            Ok(setup.text(&claims, now, &HashMap::new()))
        }
        Format::Json => {
            let doc = setup.to_json(&claims, args.for_profile.as_deref());
            Ok((
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&doc).expect("serialisable")
                ),
                true,
            ))
        }
        Format::TrustPolicy => {
            crate::check::shapes::one_policy(&setup.entries(args.for_profile.as_deref()))
                .map(|s| (s, true))
        }
    }
}

/// Who the pod is: the Pod Identity token's claims, or before the first
/// deploy (no token yet) the ones `--namespace` and `--service-account` give.
fn claims(
    config: &Config,
    args: &IssuerArgs,
    problem: &mut impl FnMut(&str, String),
) -> Option<Claims> {
    if let (Some(ns), Some(sa)) = (&args.namespace, &args.service_account) {
        let ns = inputs::namespace(ns).map_err(|e| problem("--namespace", e));
        let sa = inputs::service_account(sa).map_err(|e| problem("--service-account", e));
        let (ns, sa) = (ns.ok()?, sa.ok()?);
        return Some(Claims {
            sub: Some(format!("system:serviceaccount:{ns}:{sa}")),
            aud: vec![trust::POD_IDENTITY_SERVICE.to_owned()],
            ..Claims::default()
        });
    }
    match token::read_unchecked(&config.token_file) {
        Ok(t) => Some(t.claims),
        Err(e) => {
            problem(
                "pod_identity_token_file",
                format!(
                    "the Pod Identity token {} cannot be used ({e}): the namespace and service account come from it, or from --namespace and --service-account",
                    config.token_file.display()
                ),
            );
            None
        }
    }
}

impl Setup<'_> {
    /// The role profiles' entries, or the one `--for-profile` names (the
    /// base's: the association role's trust).
    pub(in crate::check) fn entries<'p>(&'p self, only: Option<&str>) -> Vec<Entry<'p>> {
        self.config
            .order()
            .into_iter()
            .filter(|p| match only {
                Some(name) => p.name == name,
                None => !p.pod_identity,
            })
            .map(|p| self.entry(p))
            .collect()
    }

    /// `-o json`: one object.
    pub(in crate::check) fn to_json(&self, claims: &Claims, only: Option<&str>) -> Value {
        let entries = self.entries(only);
        let profiles: Vec<Value> = entries
            .iter()
            .filter_map(|e| {
                let p = e.profile?;
                Some(json!({
                    "name": p.name,
                    "role_arn": if p.pod_identity { Value::Null } else { json!(p.role_arn) },
                    "source_profile": p.source_profile,
                    "credentials": p.credentials.as_str(),
                    "trust_policy": e.trust,
                    "permissions_policy_role_arn": e.permissions.as_ref().map(|(arn, _)| arn),
                    "permissions_policy": e.permissions.as_ref().map(|(_, doc)| doc),
                }))
            })
            .collect();
        let mut trusts: Vec<&Value> = Vec::new();
        for e in &entries {
            if !trusts.contains(&&e.trust) {
                trusts.push(&e.trust);
            }
        }
        let mut notes = self.notes();
        notes.extend(crate::check::modes::notes(self.config));
        json!({
            "identity": "pod-identity",
            "agent": self.pod.endpoint,
            "token_file": self.config.token_file.display().to_string(),
            "issuer": claims.iss,
            "subject": claims.sub,
            "audience": claims.aud.first(),
            "namespace": self.namespace,
            "service_account": self.service_account,
            "base_profile": { "name": self.pod.profile, "published": self.pod.published },
            "association_role_arn": self.association,
            "association_command": self.command(),
            "association_trust_policy": trust::association_trust(),
            "trust_policy": match trusts[..] { [one] => one.clone(), _ => Value::Null },
            "profiles": profiles,
            "notes": notes,
        })
    }
}
