//! Why a refresh attempt failed, and the check that refuses an answer that
//! cannot be used.

use std::time::{Duration, SystemTime};

use crate::codes::Code;
use crate::metrics::RefreshResult;
use crate::schedule;
use crate::session::format_time;
use crate::sts::{Assumed, ErrorClass, StsError, codes};
use crate::sys::limits::Limit;
use crate::token::TokenError;

/// A failed attempt: before STS (the token, the source session) or from it.
/// Holds no token and no credential.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The projected token could not be read or used; no call was made.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A chained profile's source has no valid session; no call was made.
    #[error("source profile {source_profile} has no valid session yet")]
    SourceUnavailable { source_profile: String },
    /// STS refused, failed, or answered with something unusable.
    #[error(transparent)]
    Sts(#[from] StsError),
}

impl RefreshError {
    /// What kind of failure, and so how soon to retry.
    pub fn class(&self) -> ErrorClass {
        match self {
            // Not the token's fault: the process ran out of descriptors.
            RefreshError::Token(_) if self.limit().is_some() => ErrorClass::Transient,
            RefreshError::Token(_) => ErrorClass::Token,
            RefreshError::SourceUnavailable { .. } => ErrorClass::Transient,
            RefreshError::Sts(e) => e.class,
        }
    }

    /// The code logs, `status.json` and `/readyz` show (`CODE: message`).
    pub fn code(&self) -> &str {
        match self {
            RefreshError::Token(_) if let Some(limit) = self.limit() => limit.code().as_str(),
            RefreshError::Token(_) => Code::TokenUnavailable.as_str(),
            RefreshError::SourceUnavailable { .. } => Code::SourceUnavailable.as_str(),
            RefreshError::Sts(e) => &e.code,
        }
    }

    /// The open-file limit a token read met (`EMFILE`, `ENFILE`), if any.
    /// (STS calls that meet a limit say so in their own code.)
    pub fn limit(&self) -> Option<Limit> {
        match self {
            RefreshError::Token(TokenError::Unreadable { source, .. }) => Limit::of(source),
            _ => None,
        }
    }

    /// The `result` label the failure counts under.
    pub fn result(&self) -> RefreshResult {
        self.class().result()
    }

    /// STS's request id, when STS answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            RefreshError::Sts(e) => e.request_id.as_deref(),
            _ => None,
        }
    }

    /// Whether the failure says STS itself is failing ([`sts_is_down`]).
    pub fn says_sts_is_down(&self) -> bool {
        matches!(self, RefreshError::Sts(e) if sts_is_down(e))
    }

    /// Whether STS was called (its duration is then measured).
    pub fn called_sts(&self) -> bool {
        matches!(self, RefreshError::Sts(_))
    }
}

/// Whether a failed STS call says that STS (the endpoint, or the way to
/// it) is failing for every profile, not for this one: a transient failure
/// that is not throttling (the account's rate, [`crate::pacer`]'s other
/// half), not `IDPCommunicationError` (STS answered; the identity provider
/// behind it did not), and not a limit of this process or node on files,
/// ports or threads. That leaves server errors (any 5xx, `InternalFailure`,
/// `ServiceUnavailable`...), `RequestTimeout`, no answer within the attempt
/// timeout, refused or reset connections and failed DNS lookups
/// (`ConnectionError`), and answers that cannot be read
/// (`MalformedResponse`: a proxy's error page, a cut body). Every profile
/// calling the same endpoint would meet the same, so the sidecar sends one
/// probe at a time for all of them ([`crate::pacer::Paced::Down`]).
/// Refusals (`AccessDenied`, a rejected token...) are answers about one
/// profile, and never count.
pub fn sts_is_down(e: &StsError) -> bool {
    e.class == ErrorClass::Transient
        && !codes::is_throttling(&e.code)
        && ![
            codes::IDP_COMMUNICATION_ERROR,
            Code::LocalPortsExhausted.as_str(),
            Code::TooManyOpenFiles.as_str(),
            Code::FileTableFull.as_str(),
            Code::ThreadLimitReached.as_str(),
        ]
        .contains(&e.code.as_str())
}

/// [`usable_from`] for an answer from STS.
#[cfg(test)]
fn usable(assumed: Assumed, now: SystemTime, skew_s: Option<i64>) -> Result<Assumed, StsError> {
    usable_from("STS", assumed, now, skew_s)
}

/// Refuses a session that expires before it can be used: already past by
/// the local clock, or with less than [`schedule::MIN_USEFUL_LIFETIME`] left
/// — or less than half of what STS granted, when STS grants less than twice
/// that (only test endpoints do). What STS granted is measured from STS's
/// own clock (its `Date` header, as `skew_s`); without one, only a session
/// already past is refused. Publishing such a session would replace a better
/// one (or none) with credentials the SDKs discard at once, and its refresh
/// would come seconds later, again and again.
///
/// `from` names who answered in the message: `STS`, or the Pod Identity
/// agent (its answers are judged by the same clocks).
pub(super) fn usable_from(
    from: &str,
    assumed: Assumed,
    now: SystemTime,
    skew_s: Option<i64>,
) -> Result<Assumed, StsError> {
    let expiration = assumed.session.expiration;
    let left = expiration.duration_since(now).unwrap_or_default();
    let sts_now = match skew_s {
        Some(s) if s >= 0 => now + Duration::from_secs(s as u64),
        Some(s) => now - Duration::from_secs(s.unsigned_abs()),
        None => now,
    };
    let granted = expiration.duration_since(sts_now).unwrap_or_default();
    if !left.is_zero() && left >= schedule::MIN_USEFUL_LIFETIME.min(granted / 2) {
        return Ok(assumed);
    }
    let when = match expiration.duration_since(now) {
        Ok(d) => format!("{} s from now", d.as_secs()),
        Err(e) => format!("{} s ago", e.duration().as_secs()),
    };
    let skew = skew_s.map_or_else(
        || "STS sent no Date header".to_owned(),
        |s| format!("STS's clock is {s} s ahead of the local clock by its Date header"),
    );
    Err(StsError {
        class: ErrorClass::Clock,
        code: Code::ExpiredOnArrival.into(),
        message: format!(
            "{from} returned credentials expiring at {} ({when} by the local clock; {skew}); too little is left to use them, so they were not published",
            format_time(expiration),
        ),
        request_id: assumed.request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Session;

    fn assumed(expiration: SystemTime) -> Assumed {
        use crate::session::Secret;
        Assumed {
            session: Session {
                access_key_id: Secret::new("ASIAX"),
                secret_access_key: Secret::new("s3cr3t"),
                session_token: Secret::new("tok"),
                expiration,
                assumed_role_arn: None,
            },
            request_id: Some("rid".into()),
        }
    }

    #[test]
    fn a_session_that_expires_before_it_can_be_used_is_refused_as_a_clock_error() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let secs = Duration::from_secs;
        // Healthy: an hour left, clocks agree (or no Date header).
        assert!(usable(assumed(now + secs(3600)), now, Some(0)).is_ok());
        assert!(usable(assumed(now + secs(3600)), now, None).is_ok());
        // Already past, with or without a Date header.
        for skew in [Some(0), None, Some(-4000)] {
            let e = usable(assumed(now - secs(60)), now, skew).unwrap_err();
            assert_eq!(e.class, ErrorClass::Clock);
            assert_eq!(e.code, "ExpiredOnArrival");
            assert!(e.message.contains("60 s ago"), "{}", e.message);
            assert_eq!(e.request_id.as_deref(), Some("rid"));
        }
        // The local clock 3400 s ahead of STS: an hour's session has 200 s
        // left here, under the five minutes an application needs.
        let e = usable(assumed(now + secs(200)), now, Some(-3400)).unwrap_err();
        assert!(e.message.contains("200 s from now"), "{}", e.message);
        assert!(e.message.contains("-3400 s"), "{}", e.message);
        assert!(!e.message.contains("s3cr3t") && !format!("{e:?}").contains("s3cr3t"));
        // A test endpoint granting 4 s sessions: usable while half is left.
        assert!(usable(assumed(now + secs(4)), now, Some(0)).is_ok());
        assert!(usable(assumed(now + secs(1)), now, Some(-3)).is_err());
    }

    #[test]
    fn only_failures_of_sts_itself_say_it_is_down() {
        let e = |class, code: &str| StsError {
            class,
            code: code.into(),
            message: "m".into(),
            request_id: None,
        };
        use ErrorClass::*;
        for code in [
            "InternalFailure",
            "ServiceUnavailable",
            "SomethingNewWith503",
            "Timeout",
            "RequestTimeout",
            "ConnectionError",
            "MalformedResponse",
        ] {
            assert!(sts_is_down(&e(Transient, code)), "{code}");
        }
        for (class, code) in [
            (Transient, "Throttling"),
            (Transient, "RequestLimitExceeded"),
            (Transient, "IDPCommunicationError"),
            (Transient, "LocalPortsExhausted"),
            (Transient, "TooManyOpenFiles"),
            (Transient, "FileTableFull"),
            (Transient, "ThreadLimitReached"),
            (Configuration, "AccessDenied"),
            (Configuration, "CertificateRefused"),
            (Token, "InvalidIdentityToken"),
            (Clock, "ExpiredOnArrival"),
        ] {
            assert!(!sts_is_down(&e(class, code)), "{code}");
        }
        let token = RefreshError::from(TokenError::Empty {
            path: "/var/run/token".into(),
        });
        assert!(!token.says_sts_is_down(), "no STS call was made");
        assert!(RefreshError::from(e(Transient, "InternalFailure")).says_sts_is_down());
    }

    #[test]
    fn each_failure_has_its_class_code_and_label() {
        let token = RefreshError::from(TokenError::Empty {
            path: "/var/run/token".into(),
        });
        assert_eq!(token.class(), ErrorClass::Token);
        assert_eq!(token.code(), "TokenUnavailable");
        assert_eq!(token.result(), RefreshResult::TokenError);
        assert!(!token.called_sts());
        let no_fd = RefreshError::from(TokenError::Unreadable {
            path: "/var/run/token".into(),
            source: std::io::Error::from_raw_os_error(libc::EMFILE),
        });
        assert_eq!(
            no_fd.class(),
            ErrorClass::Transient,
            "not the token's fault"
        );
        assert_eq!(no_fd.code(), "TooManyOpenFiles");
        assert_eq!(no_fd.result(), RefreshResult::TransientError);
        let unreadable = RefreshError::from(TokenError::Unreadable {
            path: "/var/run/token".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        });
        assert_eq!(unreadable.class(), ErrorClass::Token);
        assert_eq!(unreadable.code(), "TokenUnavailable");
        let source = RefreshError::SourceUnavailable {
            source_profile: "reader".into(),
        };
        assert_eq!(source.class(), ErrorClass::Transient);
        assert_eq!(source.code(), "SourceUnavailable");
        assert_eq!(
            source.to_string(),
            "source profile reader has no valid session yet"
        );
        assert_eq!(source.request_id(), None);
        let sts = RefreshError::from(StsError {
            class: ErrorClass::Configuration,
            code: "AccessDenied".into(),
            message: "Not authorized".into(),
            request_id: Some("rid".into()),
        });
        assert_eq!(sts.class(), ErrorClass::Configuration);
        assert_eq!(sts.code(), "AccessDenied");
        assert_eq!(sts.result(), RefreshResult::ConfigError);
        assert_eq!(sts.to_string(), "Not authorized");
        assert_eq!(sts.request_id(), Some("rid"));
        assert!(sts.called_sts());
    }
}
