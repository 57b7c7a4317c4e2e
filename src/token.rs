//! Reading and decoding the projected service-account token.
//!
//! The token is re-read from its path for every STS call (kubelet rotates it
//! in place), capped in size, and its claims are decoded without checking the
//! signature: rolecall only needs `exp` to avoid sending a dead token, and
//! `iss`/`sub`/`aud` to tell the operator what a trust policy must allow.
//! STS verifies the signature.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Projected tokens are a few KiB; anything larger is not a token.
pub const MAX_TOKEN_BYTES: u64 = 64 * 1024;
/// A token whose `exp` is further in the past than this is not sent to STS.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(60);
/// The earliest `exp` accepted, in seconds since the Unix epoch: the
/// epoch itself (1970-01-01T00:00:00Z).
const MIN_EXP: f64 = 0.0;
/// The largest `exp` accepted, in seconds since the Unix epoch: the end of
/// year 9999 (9999-12-31T23:59:59Z), the last time RFC 3339 can write.
const MAX_EXP: f64 = 253_402_300_799.0;
/// The bytes a compact JWT may hold besides ASCII letters and digits: `-`
/// and `_` of the base64url alphabet, the `.` between its three parts, and
/// `=` padding, which some issuers leave in.
const JWT_EXTRA_BYTES: &[u8] = b"-_.=";

/// Why the token could not be used. Each variant names the path so the log
/// line tells the operator where to look; none carries the token itself.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token file {path} does not exist (is the projected service-account volume mounted?)")]
    Missing { path: PathBuf },
    #[error("token file {path} is a directory, not a file")]
    IsDirectory { path: PathBuf },
    #[error("token file {path} is not a regular file (a FIFO, socket or device?)")]
    NotRegular { path: PathBuf },
    #[error("token file {path} could not be read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("token file {path} is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("token file {path} does not hold a JWT: {reason}")]
    NotJwt { path: PathBuf, reason: &'static str },
    #[error("token in {path} expired at {exp} (unix time); kubelet should have rotated it")]
    Expired { path: PathBuf, exp: u64 },
}

/// The claims rolecall reads. `aud` may be a string or a list in a JWT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    pub exp: Option<u64>,
    /// The `kubernetes.io` claims of a projected service-account token
    /// (for `kubernetes_tags`); empty fields when absent.
    pub kubernetes: KubernetesClaims,
}

/// What a projected token says of its pod: namespace, service account and,
/// for a token bound to a pod, the pod's name and uid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct KubernetesClaims {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub serviceaccount: Option<NamedObject>,
    #[serde(default)]
    pub pod: Option<NamedObject>,
}

/// A Kubernetes object a token names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct NamedObject {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    exp: Option<f64>,
    /// Claims of another shape are ignored, not an error: only the tags
    /// that need them are left out.
    #[serde(default, rename = "kubernetes.io", deserialize_with = "lenient")]
    kubernetes: KubernetesClaims,
}

fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<KubernetesClaims, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A token as read from disk: the raw JWT (never printed) and its claims.
#[derive(Clone)]
pub struct Token {
    raw: String,
    pub claims: Claims,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("raw", &"** redacted **")
            .field("claims", &self.claims)
            .finish()
    }
}

impl Token {
    /// The JWT to send to STS. Deliberately not `Display`.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The token's expiry as a wall-clock time, if it has one (the fuzz
    /// target checks that no claim makes it panic).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.claims.exp.map(|e| UNIX_EPOCH + Duration::from_secs(e))
    }

    /// Decodes a JWT's claims without checking its signature (public for
    /// the fuzz target; the program reads tokens through [`read`] and
    /// [`decode`]).
    pub fn parse(raw: &str) -> Result<Token, &'static str> {
        let raw = raw.trim();
        let mut parts = raw.split('.');
        let (Some(_header), Some(payload), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected three dot-separated parts");
        };
        if raw
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || JWT_EXTRA_BYTES.contains(&b)))
        {
            return Err("contains characters outside base64url");
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| "payload is not base64url")?;
        let claims: RawClaims =
            serde_json::from_slice(&payload).map_err(|_| "payload is not a JSON claims object")?;
        if claims
            .exp
            .is_some_and(|e| !(MIN_EXP..=MAX_EXP).contains(&e))
        {
            return Err("the exp claim is not a time between 1970 and 9999");
        }
        let aud = match claims.aud {
            None => Vec::new(),
            Some(Audience::One(a)) => vec![a],
            Some(Audience::Many(v)) => v,
        };
        Ok(Token {
            raw: raw.to_owned(),
            claims: Claims {
                iss: claims.iss,
                sub: claims.sub,
                aud,
                exp: claims
                    .exp
                    .filter(|e| e.is_finite() && *e >= MIN_EXP)
                    .map(|e| e as u64),
                kubernetes: claims.kubernetes,
            },
        })
    }
}

/// Reads and decodes the token at `path`, refusing one that expired more than
/// [`EXPIRY_GRACE`] before `now`.
pub fn read(path: &Path, now: SystemTime) -> Result<Token, TokenError> {
    decode(path, &read_capped(path)?, now)
}

/// Decodes the token `bytes` read from `path` as [`read`] does: the
/// watcher decodes the bytes it read to notice a change.
pub fn decode(path: &Path, bytes: &[u8], now: SystemTime) -> Result<Token, TokenError> {
    let token = decode_unchecked(path, bytes)?;
    if let Some(exp) = token.claims.exp {
        let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if exp.saturating_add(EXPIRY_GRACE.as_secs()) < now_s {
            return Err(TokenError::Expired {
                path: path.to_owned(),
                exp,
            });
        }
    }
    Ok(token)
}

/// Reads and decodes the token at `path` whatever its expiry (for `check`).
pub fn read_unchecked(path: &Path) -> Result<Token, TokenError> {
    decode_unchecked(path, &read_capped(path)?)
}

fn decode_unchecked(path: &Path, bytes: &[u8]) -> Result<Token, TokenError> {
    let text = std::str::from_utf8(bytes).map_err(|_| TokenError::NotJwt {
        path: path.to_owned(),
        reason: "not UTF-8 text",
    })?;
    if text.trim().is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    Token::parse(text).map_err(|reason| TokenError::NotJwt {
        path: path.to_owned(),
        reason,
    })
}

/// The raw bytes of the file, at most [`MAX_TOKEN_BYTES`]. Read with
/// `fsread`: the path may be kubelet's `..data` symlink (followed), but the
/// file must be a regular file, and it is opened non-blocking.
fn read_capped(path: &Path) -> Result<Vec<u8>, TokenError> {
    crate::fsread::read(path, MAX_TOKEN_BYTES, crate::fsread::Follow::Yes)
        .map_err(|e| TokenError::unreadable(path, e))
}

impl TokenError {
    /// Why the token file at `path` could not be read.
    pub fn unreadable(path: &Path, e: crate::fsread::ReadError) -> TokenError {
        use crate::fsread::ReadError;
        let path = path.to_owned();
        match e {
            ReadError::Missing => TokenError::Missing { path },
            ReadError::IsDirectory => TokenError::IsDirectory { path },
            ReadError::NotRegular | ReadError::Symlink => TokenError::NotRegular { path },
            ReadError::TooLarge { .. } => TokenError::TooLarge { path },
            ReadError::Io(source) => TokenError::Unreadable { path, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn write(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join("token");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn kubernetes_claims_are_read_and_any_other_shape_is_left_empty() {
        let t = Token::parse(&jwt(
            r#"{"sub":"s","kubernetes.io":{"namespace":"shop","serviceaccount":{"name":"cart","uid":"u1"},"pod":{"name":"p","uid":"u2"},"extra":1}}"#,
        ))
        .unwrap();
        let k = &t.claims.kubernetes;
        assert_eq!(k.namespace.as_deref(), Some("shop"));
        assert_eq!(
            k.serviceaccount.as_ref().and_then(|s| s.name.as_deref()),
            Some("cart")
        );
        assert_eq!(k.pod.as_ref().and_then(|p| p.uid.as_deref()), Some("u2"));
        for odd in [
            r#"{"sub":"s","kubernetes.io":"shop"}"#,
            r#"{"sub":"s","kubernetes.io":{"namespace":7}}"#,
            r#"{"sub":"s","kubernetes.io":null}"#,
            r#"{"sub":"s"}"#,
        ] {
            let t = Token::parse(&jwt(odd)).expect("still a token");
            assert_eq!(t.claims.kubernetes, KubernetesClaims::default(), "{odd}");
            assert_eq!(t.claims.sub.as_deref(), Some("s"));
        }
    }

    #[test]
    fn decodes_claims_with_a_string_or_list_audience() {
        let t = Token::parse(&jwt(
            r#"{"iss":"https://oidc.example/id/X","sub":"system:serviceaccount:ns:sa","aud":"sts.amazonaws.com","exp":2000000000}"#,
        ))
        .unwrap();
        assert_eq!(t.claims.iss.as_deref(), Some("https://oidc.example/id/X"));
        assert_eq!(t.claims.sub.as_deref(), Some("system:serviceaccount:ns:sa"));
        assert_eq!(t.claims.aud, vec!["sts.amazonaws.com"]);
        assert_eq!(t.claims.exp, Some(2_000_000_000));
        let t = Token::parse(&jwt(r#"{"aud":["a","b"]}"#)).unwrap();
        assert_eq!(t.claims.aud, vec!["a", "b"]);
    }

    #[test]
    fn trailing_newline_is_ignored() {
        let t = Token::parse(&format!("{}\n", jwt(r#"{"sub":"x"}"#))).unwrap();
        assert!(!t.expose().ends_with('\n'));
    }

    #[test]
    fn rejects_what_is_not_a_jwt() {
        assert!(Token::parse("abc").is_err());
        assert!(Token::parse("a.b.c.d").is_err());
        assert!(Token::parse("a.!!!.c").is_err());
        assert!(Token::parse(&format!("x.{}.y", URL_SAFE_NO_PAD.encode("[1,2]"))).is_err());
        assert!(Token::parse("a b.c.d").is_err());
        assert!(Token::parse(&jwt(r#"{"exp":1e300}"#)).is_err());
        assert!(Token::parse(&jwt(r#"{"exp":-5}"#)).is_err());
        assert!(Token::parse(&jwt(r#"{"exp":253402300799}"#)).is_ok());
        assert!(Token::parse(&jwt(r#"{"exp":253402300800}"#)).is_err());
        assert!(Token::parse(&jwt(r#"{"exp":0}"#)).is_ok());
    }

    #[test]
    fn a_fifo_at_the_token_path_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        crate::sys::mkfifo(&p, 0o600).expect("mkfifo");
        assert!(matches!(
            read(&p, SystemTime::now()),
            Err(TokenError::NotRegular { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let raw = jwt(r#"{"sub":"x"}"#);
        let t = Token::parse(&raw).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(&raw));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn reports_missing_empty_huge_binary_and_directory_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let missing = dir.path().join("nope");
        assert!(matches!(
            read(&missing, now),
            Err(TokenError::Missing { .. })
        ));
        assert!(matches!(
            read(dir.path(), now),
            Err(TokenError::IsDirectory { .. })
        ));
        let p = write(&dir, b"  \n");
        assert!(matches!(read(&p, now), Err(TokenError::Empty { .. })));
        let p = write(&dir, &vec![b'a'; MAX_TOKEN_BYTES as usize + 1]);
        assert!(matches!(read(&p, now), Err(TokenError::TooLarge { .. })));
        let p = write(&dir, &[0xff, 0xfe, 0x00, 0x01]);
        assert!(matches!(read(&p, now), Err(TokenError::NotJwt { .. })));
    }

    #[test]
    fn an_expired_token_is_refused_after_a_minute_of_grace() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, jwt(r#"{"exp":1000}"#).as_bytes());
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert!(read(&p, at(1000)).is_ok());
        assert!(read(&p, at(1060)).is_ok());
        assert!(matches!(
            read(&p, at(1061)),
            Err(TokenError::Expired { exp: 1000, .. })
        ));
        assert!(read_unchecked(&p).is_ok());
    }

    #[test]
    fn errors_never_echo_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "eyJzZWNyZXQiOiJ0b2tlbiJ9";
        let p = write(&dir, format!("{secret}.{secret}").as_bytes());
        let err = read(&p, SystemTime::now()).unwrap_err();
        assert!(!err.to_string().contains(secret));
        assert!(!format!("{err:?}").contains(secret));
    }
}
