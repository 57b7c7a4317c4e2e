//! The machine-readable outputs of `check --issuer`: `-o json` (one
//! object) and `-o trust-policy` (one document, or refused when the roles
//! need several).

use serde_json::{Value, json};

use super::issuer::{Entry, Refused};
use crate::config::Problem;
use crate::token::Claims;

/// The distinct values of `items`, in order.
fn distinct<'a>(items: impl Iterator<Item = &'a Value>) -> Vec<&'a Value> {
    let mut out: Vec<&Value> = Vec::new();
    for v in items {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// `-o json`: one object; `trust_policy` and `oidc_provider_arn` at the
/// top when every role printed shares one (else null).
pub(super) fn to_json(claims: &Claims, entries: &[Entry], notes: &[String]) -> Value {
    let trusts = distinct(entries.iter().map(|e| &e.trust));
    let providers: Vec<Value> = entries
        .iter()
        .filter_map(|e| e.provider.clone().map(Value::from))
        .collect();
    let providers = distinct(providers.iter());
    let profiles: Vec<Value> = entries
        .iter()
        .filter_map(|e| {
            let p = e.profile?;
            Some(json!({
                "name": p.name,
                "role_arn": p.role_arn,
                "source_profile": p.source_profile,
                "credentials": p.credentials.as_str(),
                "oidc_provider_arn": e.provider,
                "trust_policy": e.trust,
                "permissions_policy_role_arn": e.permissions.as_ref().map(|(arn, _)| arn),
                "permissions_policy": e.permissions.as_ref().map(|(_, doc)| doc),
            }))
        })
        .collect();
    json!({
        "issuer": claims.iss,
        "subject": claims.sub,
        "audience": claims.aud.first(),
        "oidc_provider_arn": match providers[..] { [one] => one.clone(), _ => Value::Null },
        "trust_policy": match trusts[..] { [one] => one.clone(), _ => Value::Null },
        "profiles": profiles,
        "notes": notes,
    })
}

/// `-o trust-policy`: the one document every role printed needs; refused
/// when they need different ones.
pub(super) fn one_policy(entries: &[Entry]) -> Result<String, Refused> {
    let trusts = distinct(entries.iter().map(|e| &e.trust));
    if let [one] = trusts[..] {
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(one).expect("serialisable")
        ));
    }
    let groups: Vec<String> = trusts
        .iter()
        .map(|t| {
            entries
                .iter()
                .filter(|e| e.trust == **t)
                .filter_map(|e| e.profile.map(|p| p.name.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    let mut names: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.profile.map(|p| p.name.as_str()))
        .collect();
    names.sort_unstable();
    Err(Refused(vec![Problem {
        origin: "--output trust-policy".into(),
        message: format!(
            "the roles need {} different trust policies ({}): pass --for-profile NAME, one of {}, or use -o json",
            trusts.len(),
            groups.join(" | "),
            names.join(", ")
        ),
    }]))
}
