//! The loopback credentials endpoint: `GET /v1/credentials/NAME` answers in
//! the container-credentials format (`AccessKeyId`, `SecretAccessKey`,
//! `Token`, `Expiration`) to requests whose `Authorization` header equals the
//! content of `<dir>/endpoint-token`. SDKs use it through
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, and refresh by themselves; it
//! needs no shell in the application image (unlike `credential_process`,
//! which Go and the Rust SDK run through `sh -c`).

use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::health::text;
use crate::output::{WriteError, Writer, atomic};
use crate::ratelimit::{LOG_INTERVAL, LogLimit};
use crate::session::format_time;
use crate::state::Shared;

pub const TOKEN_FILE: &str = "endpoint-token";
const PREFIX: &str = "/v1/credentials/";

/// Rejected requests are logged at most once per [`LOG_INTERVAL`] (a loop in
/// the app could otherwise fill the log), and all counted in
/// `rolecall_endpoint_rejected_requests_total`.
static REJECTED_LOG: LogLimit = LogLimit::new(LOG_INTERVAL);

/// A fresh random authorization token (64 hex characters) from the kernel's
/// CSPRNG, written to `<dir>/endpoint-token` without a trailing newline.
pub fn write_token(writer: &Writer) -> Result<String, WriteError> {
    let err = |source| WriteError {
        file: TOKEN_FILE,
        path: writer.dir.join(TOKEN_FILE),
        source,
    };
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(err)?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    atomic::replace(&writer.dir, TOKEN_FILE, token.as_bytes(), writer.mode).map_err(err)?;
    Ok(token)
}

/// Equality that takes the same time wherever the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The endpoint's view of the process.
pub struct Endpoint {
    pub shared: Arc<Shared>,
    pub token: String,
}

impl Endpoint {
    pub fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        let Some(name) = req.uri().path().strip_prefix(PREFIX) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("not found: try {PREFIX}PROFILE\n"),
            );
        };
        let rejected = match req.headers().get(hyper::header::AUTHORIZATION) {
            None => Some("missing_token"),
            Some(v) if !constant_time_eq(v.as_bytes(), self.token.as_bytes()) => {
                Some("wrong_token")
            }
            Some(_) => None,
        };
        if let Some(reason) = rejected {
            self.shared.metrics.count_endpoint_rejection(reason);
            if let Some(suppressed) = REJECTED_LOG.admit() {
                // Debug escapes control characters in a name from the request.
                let profile: String = name.chars().take(64).collect();
                tracing::warn!(
                    profile = ?profile,
                    reason,
                    suppressed,
                    "credentials endpoint: request without the right Authorization header"
                );
            }
            return text(
                StatusCode::UNAUTHORIZED,
                "the Authorization header must hold the content of endpoint-token\n".into(),
            );
        }
        let map = self.shared.lock();
        let Some(state) = map.get(name) else {
            return text(StatusCode::NOT_FOUND, "no such profile\n".into());
        };
        let Some(s) = state.live_session(SystemTime::now()) else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("profile {name} has no valid credentials yet\n"),
            );
        };
        let body = json!({
            "AccessKeyId": s.access_key_id.expose(),
            "SecretAccessKey": s.secret_access_key.expose(),
            "Token": s.session_token.expose(),
            "Expiration": format_time(state.reported_expiry(s, SystemTime::now())),
        });
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
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

    #[test]
    fn tokens_are_random_hex_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer {
            dir: dir.path().to_owned(),
            app_dir: dir.path().to_owned(),
            mode: 0o640,
        };
        let a = write_token(&w).unwrap();
        let b = write_token(&w).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap(),
            b
        );
    }
}
