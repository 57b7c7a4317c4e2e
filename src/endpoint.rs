//! The loopback credentials endpoint: `GET /v1/credentials/NAME` answers in
//! the container-credentials format (`AccessKeyId`, `SecretAccessKey`,
//! `Token`, `Expiration`) to requests whose `Authorization` header equals the
//! content of `<dir>/endpoint-token`. SDKs use it through
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, and refresh by themselves; it
//! needs no shell in the application image (unlike `credential_process`,
//! which Go and the Rust SDK run through `sh -c`).
//!
//! The token ([`EndpointToken`]) is kept across restarts, or supplied by the
//! operator (`--endpoint-token-file`, e.g. a Secret that older SDKs read
//! through `AWS_CONTAINER_AUTHORIZATION_TOKEN`) and re-read when it changes.
//! Every refusal is a JSON object with `code` and `message` ([`error`]).
//!
//! Each output set has its own token (in its own dir): the token a request
//! carries picks the set, and a profile outside it is refused with a 403
//! when the configuration declares sets ([`sets`]).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::output::Sets;
use crate::ratelimit::{LOG_INTERVAL, LogLimit};
use crate::session::format_time;
use crate::state::{Lookup, Shared};

mod sets;
mod token;

pub use sets::start_tokens;
pub use token::{EndpointToken, TOKEN_FILE, TokenError};

const PREFIX: &str = "/v1/credentials/";
/// The `Retry-After` of a 503 (no valid session yet), in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Rejected requests are logged at most once per [`LOG_INTERVAL`] (a loop in
/// the app could otherwise fill the log), and all counted in
/// `rolecall_endpoint_rejected_requests_total`.
static REJECTED_LOG: LogLimit = LogLimit::new(LOG_INTERVAL);
/// Requests for a profile rolecall does not have are logged as rarely:
/// several SDKs (the Rust SDK, JS v3's default chain) show their user only
/// the status or a generic message, so this line is where the operator
/// finds rolecall's answer.
static UNKNOWN_LOG: LogLimit = LogLimit::new(LOG_INTERVAL);

/// Equality that takes the same time wherever the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error answer in the container-credentials format: a JSON object with
/// `code` and `message`. Go v2 decodes `code`/`message` (case-insensitively)
/// and shows both; JS v3 reads `Code`/`Message` from 4xx answers; botocore
/// shows the whole body. Both spellings are sent, with the same values.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "code": code,
        "message": message,
        "Code": code,
        "Message": message,
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Requests for a profile outside the token's output set, logged as rarely.
static NOT_IN_SET_LOG: LogLimit = LogLimit::new(LOG_INTERVAL);

/// The endpoint's view of the process.
pub struct Endpoint {
    pub shared: Arc<Shared>,
    /// Counts refused requests.
    pub metrics: Metrics,
    /// Wall time: which sessions are live, what expiry to report.
    pub clock: Clock,
    /// One token per output set ([`sets::start_tokens`]): the token a
    /// request carries picks its set.
    pub tokens: Vec<Arc<EndpointToken>>,
    /// The running output sets: when they are declared
    /// ([`Sets::declared`]), a profile outside the token's set is refused
    /// (403 `ProfileNotInSet`).
    pub sets: Sets,
}

impl Endpoint {
    pub fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the credentials endpoint only answers GET",
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return r;
        }
        let Some(name) = req.uri().path().strip_prefix(PREFIX) else {
            return error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no such path: credentials are at {PREFIX}PROFILE"),
            );
        };
        let (rejected, set) = match req.headers().get(hyper::header::AUTHORIZATION) {
            None => (Some("missing_token"), None),
            Some(v) => match sets::token_set(&self.tokens, v.as_bytes()) {
                Some(set) => (None, Some(set)),
                None => (Some("wrong_token"), None),
            },
        };
        // Debug escapes control characters in a name from the request.
        let shown: String = name.chars().take(64).collect();
        if let Some(reason) = rejected {
            return self.refuse(reason, &shown);
        }
        if let Some(set) = set
            .as_deref()
            .filter(|set| self.sets.declared() && !self.shared.in_set(set, name))
        {
            return sets::not_in_set(&self.metrics, &shown, set);
        }
        self.credentials(name, &shown)
    }

    /// The answer for profile `name` (`shown` in log lines): its live
    /// session, or why there is none.
    fn credentials(&self, name: &str, shown: &str) -> Response<Full<Bytes>> {
        let now = self.clock.now();
        let (s, expiration) = match self.shared.credentials_for(name, now) {
            Lookup::Live {
                session,
                expiration,
            } => (session, expiration),
            Lookup::Unknown => {
                if let Some(suppressed) = UNKNOWN_LOG.admit() {
                    tracing::warn!(
                        profile = ?shown,
                        suppressed,
                        "credentials endpoint: request for a profile that is not configured (check the app's AWS_CONTAINER_CREDENTIALS_FULL_URI)"
                    );
                }
                return error(
                    StatusCode::NOT_FOUND,
                    "UnknownProfile",
                    &format!("no profile {shown:?} is configured in rolecall"),
                );
            }
            Lookup::NotReady { last_error } => {
                let why = last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                let mut r = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "CredentialsNotReady",
                    &format!(
                        "profile {name} has no valid credentials yet{why}; rolecall keeps retrying, try again in {RETRY_AFTER_SECS} s"
                    ),
                );
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                return r;
            }
        };
        let body = json!({
            "AccessKeyId": s.access_key_id.expose(),
            "SecretAccessKey": s.secret_access_key.expose(),
            "Token": s.session_token.expose(),
            "Expiration": format_time(expiration),
        });
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }

    /// Counts, logs (rarely) and answers a request without the right
    /// `Authorization` header: `reason` is `missing_token` or `wrong_token`.
    fn refuse(&self, reason: &'static str, shown: &str) -> Response<Full<Bytes>> {
        self.metrics.count_endpoint_rejection(reason);
        if let Some(suppressed) = REJECTED_LOG.admit() {
            tracing::warn!(
                profile = ?shown,
                reason,
                suppressed,
                "credentials endpoint: request without the right Authorization header"
            );
        }
        if reason == "missing_token" {
            error(
                StatusCode::UNAUTHORIZED,
                "MissingToken",
                "no Authorization header: send the content of rolecall's endpoint-token (set AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE to it, or AWS_CONTAINER_AUTHORIZATION_TOKEN for SDKs that predate the file variable)",
            )
        } else {
            error(
                StatusCode::FORBIDDEN,
                "InvalidToken",
                "the Authorization header does not match rolecall's endpoint-token (a token copied before the endpoint token file was rotated?)",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_in_constant_time_and_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
