//! The agent's 200 answer: the container-credentials JSON
//! (`AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`, `AccountId`;
//! every field optional on the wire), read into a session. A 200 body is
//! never quoted: it holds the keys.

use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::Deserialize;

use crate::codes::Code;
use crate::session::{Secret, Session};
use crate::sts::{Assumed, ErrorClass, StsError};

/// What [`crate::output::ini_safe`] accepts (not imported: `output` reads
/// the state, which names the agent's role): printable ASCII, no spaces.
fn ini_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The wire form. No `Debug`: it holds the keys.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Wire {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    expiration: Option<String>,
    account_id: Option<String>,
}

/// A session read from the agent, with the account it belongs to (when
/// the agent said, as 12 digits).
pub struct Answer {
    pub assumed: Assumed,
    pub account_id: Option<String>,
}

/// Reads a 200 body. Fails as a transient `MalformedResponse`: not UTF-8,
/// not the JSON object, a key missing, empty or with spaces or control
/// characters, or an expiration that is not an RFC 3339 time.
pub fn parse(body: &[u8]) -> Result<Answer, StsError> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("is not UTF-8"))?;
    let wire: Wire = serde_json::from_str(text).map_err(|e| {
        malformed(&format!(
            "is not the credentials JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let key = |v: Option<String>, name: &str| match v {
        None => Err(malformed(&format!("has no {name}"))),
        Some(v) if v.is_empty() => Err(malformed(&format!("has an empty {name}"))),
        Some(v) if !ini_safe(&v) => Err(malformed(&format!(
            "has a {name} with spaces or control characters"
        ))),
        Some(v) => Ok(Secret::new(v)),
    };
    let access_key_id = key(wire.access_key_id, "AccessKeyId")?;
    let secret_access_key = key(wire.secret_access_key, "SecretAccessKey")?;
    let session_token = key(wire.token, "Token")?;
    let expiration = wire
        .expiration
        .as_deref()
        .ok_or_else(|| malformed("has no Expiration"))
        .and_then(expiration)?;
    let account_id = wire
        .account_id
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()));
    Ok(Answer {
        assumed: Assumed {
            session: Session {
                access_key_id,
                secret_access_key,
                session_token,
                expiration,
                assumed_role_arn: None,
            },
            request_id: None,
        },
        account_id,
    })
}

/// An RFC 3339 time (fractional seconds and an offset allowed).
fn expiration(s: &str) -> Result<SystemTime, StsError> {
    DateTime::from_str(s, Format::DateTimeWithOffset)
        .ok()
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or_else(|| {
            malformed(&format!(
                "has an Expiration that is not an RFC 3339 time: \"{}\"",
                super::codes::excerpt(s, 40)
            ))
        })
}

fn malformed(what: &str) -> StsError {
    StsError {
        class: ErrorClass::Transient,
        code: Code::MalformedResponse.into(),
        message: format!("the Pod Identity agent's answer {what}; it was not used"),
        request_id: None,
    }
}
