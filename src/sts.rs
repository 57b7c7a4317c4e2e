//! STS calls: `AssumeRoleWithWebIdentity` (unsigned, with the token) and
//! `AssumeRole` (signed with a source profile's session, for role chaining),
//! and the sorting of failures into what the operator must do.
//!
//! The SDK's own retries are off: rolecall owns the retry schedule (see
//! `schedule`) so that every STS call is counted and jittered in one
//! place. Each attempt has a timeout, so a hanging endpoint cannot stall a
//! profile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_sts::operation::RequestId;
use aws_sdk_sts::types::PolicyDescriptorType;

use crate::clock::Clock;
use crate::codes::Code;
use crate::config::Profile;
use crate::metrics::{Metrics, RefreshResult};
use crate::output::ini_safe;
use crate::session::{Secret, Session};
use crate::tls::CaBundle;

mod client;
pub mod codes;
mod dns;
mod guard;
pub mod tags;

use client::https_client;
use codes::classify;
pub use codes::classify_code;
use guard::ClockCheck;

/// Time allowed for one STS attempt, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of an STS answer that is read. A real one is 2-3 KiB; a larger
/// body (a misbehaving proxy, a hostile endpoint) is cut off and the attempt
/// fails as a malformed response instead of growing memory without limit.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// A difference between the local clock and STS's `Date` header beyond this
/// is logged: expiry is judged by the local clock.
pub const SKEW_WARNING: Duration = Duration::from_secs(60);

/// What kind of failure, and so how soon to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts, connection errors: back off and retry.
    Transient,
    /// STS rejected the token itself (expired or invalid): re-read it and
    /// retry with backoff.
    Token,
    /// The operator must change something (trust policy, role, policy,
    /// region): retry every few minutes, on token change and on reload.
    Configuration,
    /// STS answered with credentials that are already expired, or too close
    /// to expiry to be used, by the local clock: a clock far ahead, or an
    /// endpoint or proxy replaying an old answer. Not published; retried
    /// with backoff.
    Clock,
}

impl ErrorClass {
    /// The `result` label a failure of this class counts under.
    pub fn result(self) -> RefreshResult {
        match self {
            ErrorClass::Transient => RefreshResult::TransientError,
            ErrorClass::Token => RefreshResult::TokenError,
            ErrorClass::Configuration => RefreshResult::ConfigError,
            ErrorClass::Clock => RefreshResult::ClockError,
        }
    }

    /// The class as logs and metrics name it (`transient_error`...).
    pub fn as_str(self) -> &'static str {
        self.result().as_str()
    }
}

/// A failed STS call. Holds the error code and STS's message, never the
/// token or any credential.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct StsError {
    pub class: ErrorClass,
    /// The STS error code (`AccessDenied`) or a short label (`timeout`).
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

/// A successful call.
#[derive(Debug)]
pub struct Assumed {
    pub session: Session,
    pub request_id: Option<String>,
}

/// A profile's region, STS endpoint, FIPS and dual-stack choices: profiles
/// that share them share a client.
type ClientKey = (Option<String>, Option<String>, bool, bool);

/// STS clients, one per (region, endpoint), sharing one HTTPS connection
/// pool. Building a client per call would churn the allocator on every
/// refresh; chained calls reuse the same client with per-call credentials.
#[derive(Clone)]
pub struct Sts {
    http: aws_sdk_sts::config::SharedHttpClient,
    attempt_timeout: Duration,
    clients: Arc<Mutex<HashMap<ClientKey, aws_sdk_sts::Client>>>,
    clock: Arc<ClockCheck>,
    /// Local wall time, to compare STS's `Date` header with.
    wall: Clock,
    /// Where a call that fails at a limit of the process or node is
    /// counted (a registry of its own until [`Sts::with_metrics`]).
    metrics: Metrics,
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sts")
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

impl Sts {
    pub fn new(attempt_timeout: Duration) -> Sts {
        Sts {
            http: https_client(None, None),
            attempt_timeout,
            clients: Arc::default(),
            clock: Arc::default(),
            wall: Clock::system(),
            metrics: Metrics::default(),
        }
    }

    /// The same, trusting `bundle` besides the system's roots, and calling
    /// through `proxy` (with its bypass list) when given.
    pub fn with_network(
        self,
        bundle: Option<&CaBundle>,
        proxy: Option<aws_smithy_http_client::proxy::ProxyConfig>,
    ) -> Sts {
        Sts {
            http: https_client(bundle, proxy),
            clients: Arc::default(),
            ..self
        }
    }

    /// The same, comparing STS's `Date` header with `wall` instead of the
    /// system clock.
    pub fn with_clock(self, wall: Clock) -> Sts {
        Sts { wall, ..self }
    }

    /// The same, counting the calls that fail at a limit of the process
    /// or node (`rolecall_limit_reached_total{site="sts"}`) in `metrics`.
    pub fn with_metrics(self, metrics: Metrics) -> Sts {
        Sts { metrics, ..self }
    }

    /// STS's clock minus the local clock, in whole seconds, from the `Date`
    /// header of the last answer; `None` before any answer carried one.
    pub fn clock_skew(&self) -> Option<i64> {
        self.clock.skew()
    }

    /// `AssumeRoleWithWebIdentity` for `profile` with the JWT `token`.
    pub async fn assume_with_token(
        &self,
        profile: &Profile,
        token: &str,
    ) -> Result<Assumed, StsError> {
        let result = self
            .client(profile)
            .assume_role_with_web_identity()
            .role_arn(&profile.role_arn)
            .role_session_name(&profile.session_name)
            .web_identity_token(token)
            .duration_seconds(profile.duration.as_secs() as i32)
            .set_policy(profile.policy.clone())
            .set_policy_arns(descriptors(&profile.policy_arns))
            .send()
            .await;
        match result {
            Ok(out) => to_session(out.credentials(), out.assumed_role_user(), out.request_id()),
            Err(e) => Err(classify(e, &self.metrics)),
        }
    }

    /// `AssumeRole` for `profile`, signed with the `source` session.
    /// `AssumeRole` for `profile`, signed with `source`, with its session
    /// tags (`kubernetes` holds the token's claims for `kubernetes_tags`)
    /// and source identity.
    pub async fn assume_with_session(
        &self,
        profile: &Profile,
        source: &Session,
        kubernetes: Option<&crate::token::KubernetesClaims>,
    ) -> Result<Assumed, StsError> {
        let (tags, transitive) = tags::session_tags(profile, kubernetes);
        let credentials = aws_credential_types::Credentials::new(
            source.access_key_id.expose(),
            source.secret_access_key.expose(),
            Some(source.session_token.expose().to_owned()),
            Some(source.expiration),
            "rolecall-source-profile",
        );
        let result = self
            .client(profile)
            .assume_role()
            .role_arn(&profile.role_arn)
            .role_session_name(&profile.session_name)
            .duration_seconds(profile.duration.as_secs() as i32)
            .set_external_id(profile.external_id.clone())
            .set_policy(profile.policy.clone())
            .set_policy_arns(descriptors(&profile.policy_arns))
            .set_tags(tags::sdk_tags(&tags))
            .set_transitive_tag_keys((!transitive.is_empty()).then_some(transitive))
            .set_source_identity(profile.source_identity.clone())
            .customize()
            .config_override(aws_sdk_sts::Config::builder().credentials_provider(credentials))
            .send()
            .await;
        match result {
            Ok(out) => to_session(out.credentials(), out.assumed_role_user(), out.request_id()),
            Err(e) => Err(classify(e, &self.metrics)),
        }
    }
}

/// The configured STS endpoints that would send the token unencrypted over
/// a network (see [`sends_token_in_clear`]), each once.
pub fn plaintext_endpoints(profiles: &[Profile]) -> Vec<&str> {
    let mut out: Vec<&str> = profiles
        .iter()
        .filter_map(|p| p.sts_endpoint.as_deref())
        .filter(|url| sends_token_in_clear(url))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Logs a warning for each endpoint of [`plaintext_endpoints`].
pub fn warn_plaintext_endpoints(profiles: &[Profile]) {
    for endpoint in plaintext_endpoints(profiles) {
        tracing::warn!(
            endpoint,
            "the STS endpoint is plain HTTP to a host that is not a loopback address: the service-account token would cross the network unencrypted; use https://"
        );
    }
}

/// Whether `url` sends requests (and so the token) unencrypted over a
/// network: plain `http://` to a host that is not a loopback address.
pub fn sends_token_in_clear(url: &str) -> bool {
    let Some(rest) = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

fn descriptors(arns: &[String]) -> Option<Vec<PolicyDescriptorType>> {
    if arns.is_empty() {
        return None;
    }
    Some(
        arns.iter()
            .map(|a| PolicyDescriptorType::builder().arn(a).build())
            .collect(),
    )
}

fn to_session(
    creds: Option<&aws_sdk_sts::types::Credentials>,
    user: Option<&aws_sdk_sts::types::AssumedRoleUser>,
    request_id: Option<&str>,
) -> Result<Assumed, StsError> {
    let request_id = request_id.map(str::to_owned);
    let assumed_role_arn = user.map(|u| u.arn().to_owned());
    let malformed = |what: &str| StsError {
        class: ErrorClass::Transient,
        code: Code::MalformedResponse.into(),
        message: format!("STS answered without {what}"),
        request_id: request_id.clone(),
    };
    let c = creds.ok_or_else(|| malformed("credentials"))?;
    let expiration =
        SystemTime::try_from(*c.expiration()).map_err(|_| malformed("a usable expiration"))?;
    for v in [c.access_key_id(), c.secret_access_key(), c.session_token()] {
        if !ini_safe(v) {
            return Err(StsError {
                class: ErrorClass::Transient,
                code: Code::MalformedResponse.into(),
                message: "STS returned a credential with spaces or control characters; it was not written".into(),
                request_id,
            });
        }
    }
    Ok(Assumed {
        session: Session {
            access_key_id: Secret::new(c.access_key_id()),
            secret_access_key: Secret::new(c.secret_access_key()),
            session_token: Secret::new(c.session_token()),
            expiration,
            assumed_role_arn: assumed_role_arn.filter(|a| ini_safe(a)),
        },
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_to_a_non_loopback_host_counts_as_sending_the_token_in_clear() {
        for url in [
            "http://sts.example.com",
            "HTTP://10.0.0.5:8080/",
            "http://user@sts.internal:80/path",
            "http://[fd00::1]:4566",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
        ] {
            assert!(sends_token_in_clear(url), "{url}");
        }
        for url in [
            "https://sts.eu-west-1.amazonaws.com",
            "http://127.0.0.1:4566",
            "http://127.9.9.9",
            "http://localhost:5000/",
            "http://LOCALHOST",
            "http://[::1]:4566",
            "",
            "sts.example.com",
        ] {
            assert!(!sends_token_in_clear(url), "{url}");
        }
        let mut a = Profile::new("a", "arn:aws:iam::111122223333:role/a");
        a.sts_endpoint = Some("http://sts.example.com".into());
        let mut b = a.clone();
        b.name = "b".into();
        let mut c = a.clone();
        c.sts_endpoint = Some("https://sts.example.com".into());
        assert_eq!(
            plaintext_endpoints(&[a, b, c]),
            vec!["http://sts.example.com"]
        );
    }
}
