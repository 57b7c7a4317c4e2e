//! Unsigned JWTs shaped like Kubernetes service-account tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Issuer used by [`valid_jwt`].
pub const TEST_ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE";
/// Subject used by [`valid_jwt`].
pub const TEST_SUBJECT: &str = "system:serviceaccount:default:app";
/// Audience used by [`valid_jwt`].
pub const TEST_AUDIENCE: &str = "sts.amazonaws.com";

const FAKE_SIGNATURE: &[u8] = b"fake-signature-never-verified-";

/// Seconds since the Unix epoch, wall clock.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A JWT-shaped token (RS256 header, `kid` "test", fake 40-char signature).
/// `iat` and `nbf` are now, or an hour before `exp` if that is earlier.
pub fn jwt(iss: &str, sub: &str, aud: &str, exp_unix: u64) -> String {
    let iat = now_unix().min(exp_unix.saturating_sub(3600));
    jwt_from_claims(&serde_json::json!({
        "iss": iss,
        "sub": sub,
        "aud": aud,
        "exp": exp_unix,
        "iat": iat,
        "nbf": iat,
    }))
}

/// A JWT-shaped token with arbitrary claims (e.g. `aud` as an array, or no
/// `exp`).
pub fn jwt_from_claims(claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"test"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(FAKE_SIGNATURE),
    )
}

/// A token like EKS issues, valid for 24 hours.
pub fn valid_jwt() -> String {
    valid_jwt_with_sub(TEST_SUBJECT)
}

/// [`valid_jwt`] with another `sub`.
pub fn valid_jwt_with_sub(sub: &str) -> String {
    jwt(TEST_ISSUER, sub, TEST_AUDIENCE, now_unix() + 24 * 3600)
}

/// [`valid_jwt`] that expired an hour ago.
pub fn expired_jwt() -> String {
    jwt(
        TEST_ISSUER,
        TEST_SUBJECT,
        TEST_AUDIENCE,
        now_unix().saturating_sub(3600),
    )
}

/// Decodes a JWT's payload (no signature check); panics if it is not a JWT.
pub fn decode_jwt_claims(token: &str) -> serde_json::Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT (want 3 parts): {token:?}");
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1])
        .unwrap_or_else(|e| panic!("JWT payload is not base64url: {e}"));
    serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("JWT payload is not JSON: {e}"))
}
