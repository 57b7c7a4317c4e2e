//! Role sessions and the secret type that keeps them out of logs.

use std::fmt;
use std::time::SystemTime;

/// A string that must never be printed: `Debug` shows `** redacted **` and
/// there is no `Display`. Call [`Secret::expose`] only where the value is
/// written to its destination (an output file, an STS request).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("** redacted **")
    }
}

/// Temporary credentials for one role, as STS returned them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Not secret on its own (it appears in CloudTrail), but kept out of logs
    /// anyway except for its first characters.
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expiration: SystemTime,
    /// The assumed-role ARN STS reported, for logs and `status`.
    pub assumed_role_arn: Option<String>,
}

impl Session {
    /// True once the session can no longer be used at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expiration <= now
    }
}

/// RFC 3339 UTC with seconds, as the AWS SDKs expect in `Expiration`.
pub fn format_time(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// Parses what [`format_time`] writes (RFC 3339).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let dt = aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime)
        .ok()?;
    SystemTime::try_from(dt).ok()
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn debug_redacts_every_secret_field() {
        let s = Session {
            access_key_id: Secret::new("ASIAEXAMPLEKEY000001"),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: Secret::new("FQoGZXIvYXdzEJr//////////wEaDOKEN"),
            expiration: SystemTime::UNIX_EPOCH,
            assumed_role_arn: None,
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("ASIAEXAMPLEKEY"));
        assert!(!dbg.contains("wJalr"));
        assert!(!dbg.contains("FQoG"));
    }

    #[test]
    fn formats_expiration_as_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_time(t), "2023-11-14T22:13:20Z");
    }
}
