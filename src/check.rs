//! `rolecall check`: what the token says and what each role's trust policy
//! must allow; with `--assume`, one STS call per profile (nothing written).

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::clock::Clock;
use crate::config::{Config, Profile};
use crate::session::{Session, format_time, unix_seconds};
use crate::sts::Sts;
use crate::token::{self, Claims, EXPIRY_GRACE, Token};
use crate::trust;

pub mod inputs;
pub mod issuer;
pub mod modes;
pub mod pod;
mod shapes;

/// What `check` found: the report to print and whether all is well.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub ok: bool,
}

/// The trust policy for a chained profile: its source role may assume it.
fn chained_policy(profile: &Profile, config: &Config) -> serde_json::Value {
    trust::chained_policy(profile, &source_arn(profile, config))
}

/// The role ARN of a chained profile's source profile (empty if none).
fn source_arn(profile: &Profile, config: &Config) -> String {
    profile
        .source_profile
        .as_deref()
        .and_then(|s| config.profile(s))
        .map(|s| s.role_arn.clone())
        .unwrap_or_default()
}

fn describe_token(claims: &Claims, now: SystemTime) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(out, "iss: {}", claims.iss.as_deref().unwrap_or("(none)"));
    let _ = writeln!(out, "sub: {}", claims.sub.as_deref().unwrap_or("(none)"));
    let _ = writeln!(
        out,
        "aud: {}",
        if claims.aud.is_empty() {
            "(none)".into()
        } else {
            claims.aud.join(", ")
        }
    );
    let mut ok = true;
    match claims.exp {
        Some(exp) => {
            let now_s = unix_seconds(now);
            let at = format_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(exp));
            if exp + EXPIRY_GRACE.as_secs() < now_s {
                ok = false;
                let _ = writeln!(
                    out,
                    "exp: {at} — the token expired {} minutes ago; kubelet should have rotated it (is the projected volume mounted, and the node clock right?)",
                    (now_s - exp) / 60
                );
            } else {
                let _ = writeln!(
                    out,
                    "exp: {at} (in {} minutes)",
                    exp.saturating_sub(now_s) / 60
                );
            }
        }
        None => {
            let _ = writeln!(out, "exp: (none)");
        }
    }
    if claims.iss.is_none() || claims.sub.is_none() {
        ok = false;
        out.push_str("The token has no iss or sub claim: STS will reject it.\n");
    }
    (out, ok)
}

/// With declared output sets, which set (container) gets which roles: one
/// line per set. Nothing without sets (every profile is in the output dir).
pub fn describe_sets(config: &Config) -> String {
    let mut out = String::new();
    if !config.declared_sets() {
        return out;
    }
    for s in &config.outputs {
        let _ = writeln!(
            out,
            "output set {} ({}): {}",
            s.name,
            s.dir.display(),
            s.profiles.join(", ")
        );
    }
    out
}

/// Builds the report at `clock`'s time; with `assume`, calls STS once per
/// profile.
pub async fn check(config: &Config, assume: bool, sts: &Sts, clock: Clock) -> Report {
    if let crate::config::Identity::PodIdentity(pod) = &config.identity {
        return pod::check(config, pod, assume, sts, clock).await;
    }
    let now = clock.now();
    let mut text = format!("token: {}\n", config.token_file.display());
    text.push_str(&describe_setup(config));
    let token = match token::read_unchecked(&config.token_file) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(text, "The token cannot be used: {e}.");
            return Report { text, ok: false };
        }
    };
    let (desc, mut ok) = describe_token(&token.claims, now);
    // The same rule as the sidecar's: more than a minute past `exp` is dead.
    let sendable = token::read(&config.token_file, now).is_ok();
    text.push_str(&desc);
    let mut sessions: Vec<(String, Session)> = Vec::new();
    for p in config.order() {
        describe_profile(&mut text, p, config, &token.claims);
        if assume {
            let call = Call {
                sts,
                token: &token,
                sendable,
            };
            ok &= call.assume(&mut text, p, &mut sessions).await;
        }
    }
    text.push_str(&modes::text(config));
    Report { text, ok }
}

/// The proxy, the output sets and the endpoints that would send the token
/// in clear.
fn describe_setup(config: &Config) -> String {
    let mut text = String::new();
    if let Some(proxy) = &config.proxy {
        let _ = writeln!(
            text,
            "proxy: {} (not for: {}{})",
            proxy.shown(),
            config
                .no_proxy
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(|n| format!("{n},"))
                .unwrap_or_default(),
            crate::proxy::LOOPBACK
        );
    }
    text.push_str(&describe_sets(config));
    for endpoint in crate::sts::plaintext_endpoints(&config.profiles) {
        let _ = writeln!(
            text,
            "warning: STS endpoint {endpoint} is plain HTTP to a host that is not a loopback address: the token would cross the network unencrypted (use https://)"
        );
    }
    text
}

/// A profile's role, STS endpoint and the trust policy its role needs.
fn describe_profile(text: &mut String, p: &Profile, config: &Config, claims: &Claims) {
    let _ = writeln!(text, "\nprofile {} -> {}", p.name, p.role_arn);
    // The SDK's resolver, as the calls use it (checked at load).
    if let Ok(url) = crate::config::endpoint_for(p) {
        let _ = writeln!(text, "  STS endpoint: {url}");
    }
    let policy = if p.source_profile.is_some() {
        let _ = writeln!(
            text,
            "  chained from profile {}: the role's trust policy must allow sts:AssumeRole by the source role:",
            p.source_profile.as_deref().unwrap_or_default()
        );
        let extra = p.extra_trust_actions();
        if !extra.is_empty() {
            let _ = writeln!(
                text,
                "  it sends {}: the trust policy must also allow {}",
                [
                    (!p.tags.is_empty() || p.kubernetes_tags).then_some("session tags"),
                    p.source_identity.as_ref().map(|_| "a source identity"),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and "),
                extra.join(" and ")
            );
        }
        chained_policy(p, config)
    } else {
        let iss = claims.iss.clone().unwrap_or_default();
        let _ = writeln!(
            text,
            "  trust policy the role needs (IAM OIDC provider {} must exist):",
            trust::provider_arn(p, &iss)
        );
        trust::trust_policy(p, claims)
    };
    indented(text, &policy);
    if p.source_profile.is_some() {
        let _ = writeln!(
            text,
            "  permissions policy the source role {} needs:",
            source_arn(p, config)
        );
        indented(text, &trust::source_permissions(p));
    }
}

/// `doc` as pretty JSON, each line indented by two spaces.
fn indented(text: &mut String, doc: &serde_json::Value) {
    let pretty = serde_json::to_string_pretty(doc).expect("serialisable");
    for line in pretty.lines() {
        let _ = writeln!(text, "  {line}");
    }
}

/// What `--assume` calls STS with.
struct Call<'a> {
    sts: &'a Sts,
    token: &'a Token,
    /// Whether the token may be sent (not expired).
    sendable: bool,
}

impl Call<'_> {
    /// Assumes `p`'s role once (a chained profile with its source's session
    /// from `sessions`, which it joins) and says how it went; whether it
    /// did.
    async fn assume(
        &self,
        text: &mut String,
        p: &Profile,
        sessions: &mut Vec<(String, Session)>,
    ) -> bool {
        let claims = &self.token.claims;
        let result = match &p.source_profile {
            Some(src) => match sessions.iter().find(|(n, _)| n == src) {
                Some((_, s)) => {
                    self.sts
                        .assume_with_session(p, s, Some(&claims.kubernetes))
                        .await
                }
                None => {
                    let _ = writeln!(
                        text,
                        "  assume: skipped, source profile {src} could not be assumed"
                    );
                    return false;
                }
            },
            None if !self.sendable => {
                let _ = writeln!(
                    text,
                    "  assume: skipped, an expired token is never sent to STS"
                );
                return false;
            }
            None => self.sts.assume_with_token(p, self.token.expose()).await,
        };
        match result {
            Ok(a) => {
                let _ = writeln!(
                    text,
                    "  assume: OK as {} until {} (request {})",
                    a.session.assumed_role_arn.as_deref().unwrap_or("?"),
                    format_time(a.session.expiration),
                    a.request_id.as_deref().unwrap_or("-")
                );
                sessions.push((p.name.clone(), a.session));
                true
            }
            Err(e) => {
                let _ = writeln!(text, "  assume: FAILED {}: {}", e.code, e.message);
                if let Some(h) = trust::hint(&e.code, p, Some(claims)) {
                    let _ = writeln!(text, "  fix: {h}");
                }
                false
            }
        }
    }
}
