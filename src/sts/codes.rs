//! STS's own error codes, and the sorting of a failed call into an
//! [`ErrorClass`] with a code: STS's, or one of rolecall's own
//! ([`crate::codes::Code`]) for a failure that carries none.
//! [`classify_code`] sorts them by what the operator must do;
//! [`crate::trust::hint`] explains them.

use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::RequestId;
use aws_smithy_runtime_api::http::Response;

use super::{ErrorClass, StsError};
use crate::codes::Code;
use crate::metrics::Metrics;

// STS's codes.
pub const ACCESS_DENIED: &str = "AccessDenied";
pub const IDP_REJECTED_CLAIM: &str = "IDPRejectedClaim";
pub const IDP_COMMUNICATION_ERROR: &str = "IDPCommunicationError";
pub const INVALID_IDENTITY_TOKEN: &str = "InvalidIdentityToken";
pub const EXPIRED_TOKEN_EXCEPTION: &str = "ExpiredTokenException";
pub const EXPIRED_TOKEN: &str = "ExpiredToken";
pub const REGION_DISABLED: &str = "RegionDisabledException";
pub const MALFORMED_POLICY_DOCUMENT: &str = "MalformedPolicyDocument";
pub const PACKED_POLICY_TOO_LARGE: &str = "PackedPolicyTooLarge";
pub const VALIDATION_ERROR: &str = "ValidationError";
pub const THROTTLING: &str = "Throttling";
pub const THROTTLING_EXCEPTION: &str = "ThrottlingException";
pub const THROTTLED_EXCEPTION: &str = "ThrottledException";
pub const REQUEST_LIMIT_EXCEEDED: &str = "RequestLimitExceeded";
pub const TOO_MANY_REQUESTS: &str = "TooManyRequestsException";
pub const INTERNAL_FAILURE: &str = "InternalFailure";
pub const INTERNAL_ERROR: &str = "InternalError";
pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
pub const REQUEST_TIMEOUT: &str = "RequestTimeout";
pub const REQUEST_TIMEOUT_EXCEPTION: &str = "RequestTimeoutException";

/// Codes that mean "try again later".
pub const TRANSIENT: &[&str] = &[
    THROTTLING,
    THROTTLING_EXCEPTION,
    THROTTLED_EXCEPTION,
    REQUEST_LIMIT_EXCEEDED,
    TOO_MANY_REQUESTS,
    IDP_COMMUNICATION_ERROR,
    INTERNAL_FAILURE,
    INTERNAL_ERROR,
    SERVICE_UNAVAILABLE,
    REQUEST_TIMEOUT,
    REQUEST_TIMEOUT_EXCEPTION,
];

/// The transient codes that mean the account's rate limit was hit: they set
/// the pace of the sidecar's calls ([`crate::pacer`]).
pub const THROTTLED: &[&str] = &[
    THROTTLING,
    THROTTLING_EXCEPTION,
    THROTTLED_EXCEPTION,
    REQUEST_LIMIT_EXCEEDED,
    TOO_MANY_REQUESTS,
];

/// Whether `code` says the account's rate limit was hit.
pub fn is_throttling(code: &str) -> bool {
    THROTTLED.contains(&code)
}

/// Codes that mean STS rejected the token itself.
pub const TOKEN: &[&str] = &[
    INVALID_IDENTITY_TOKEN,
    EXPIRED_TOKEN_EXCEPTION,
    EXPIRED_TOKEN,
];

/// The class for an STS error code and HTTP status.
pub fn classify_code(code: &str, status: u16) -> ErrorClass {
    if TOKEN.contains(&code) {
        ErrorClass::Token
    } else if TRANSIENT.contains(&code) || status >= 500 || status == 429 {
        ErrorClass::Transient
    } else {
        ErrorClass::Configuration
    }
}

/// Sorts an SDK error into an [`ErrorClass`] with a code and message.
/// A call that failed at a limit of the process or node is counted in
/// `metrics`.
pub(super) fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E, Response>,
    metrics: &Metrics,
) -> StsError {
    match &err {
        SdkError::ServiceError(ctx) => service_error(
            ctx.err(),
            ctx.raw().status().as_u16(),
            err.meta().request_id(),
        ),
        SdkError::TimeoutError(_) => own(
            ErrorClass::Transient,
            Code::Timeout,
            "STS did not answer within the attempt timeout".into(),
        ),
        SdkError::DispatchFailure(_) => dispatch_failure(&err, metrics),
        SdkError::ResponseError(r) => own(
            ErrorClass::Transient,
            Code::MalformedResponse,
            format!(
                "STS sent a response that could not be read (HTTP {})",
                r.raw().status().as_u16()
            ),
        ),
        _ => own(
            ErrorClass::Configuration,
            Code::InvalidRequest,
            format!("the STS request could not be built: {}", source_chain(&err)),
        ),
    }
}

/// A failure rolecall names with one of its own codes (no request id:
/// STS did not answer).
fn own(class: ErrorClass, code: Code, message: String) -> StsError {
    StsError {
        class,
        code: code.into(),
        message,
        request_id: None,
    }
}

/// STS answered with an error: its code, message and request id.
fn service_error(
    err: &impl ProvideErrorMetadata,
    status: u16,
    request_id: Option<&str>,
) -> StsError {
    let Some(code) = err.code().map(str::to_owned) else {
        // No error code: not an STS error document (a proxy's page, a
        // truncated body). Treated as transient.
        return own(
            ErrorClass::Transient,
            Code::MalformedResponse,
            format!("STS sent a response that could not be read (HTTP {status})"),
        );
    };
    let message = err
        .message()
        .map(clean_message)
        .unwrap_or_else(|| format!("HTTP {status}"));
    StsError {
        class: classify_code(&code, status),
        code,
        message,
        request_id: request_id.map(str::to_owned),
    }
}

/// The request did not reach STS, or no answer came back: a refused
/// certificate, a limit of this process or node, a timeout, a refused
/// connection.
fn dispatch_failure<E: std::error::Error + 'static>(
    err: &SdkError<E, Response>,
    metrics: &Metrics,
) -> StsError {
    if let Some(problem) = crate::tls::refused_certificate(err) {
        return own(
            ErrorClass::Configuration,
            Code::CertificateRefused,
            format!("the STS endpoint's TLS certificate was refused: {problem}"),
        );
    }
    if let Some(limit) = crate::sys::limits::limit_in_chain(err) {
        // Counted here, where the SDK's error is read: once per call.
        metrics.count_limit_reached(limit, "sts");
        return own(
            ErrorClass::Transient,
            limit.code(),
            format!(
                "could not reach STS: {}: {}",
                limit.summary(),
                source_chain(err)
            ),
        );
    }
    let timeout = matches!(err, SdkError::DispatchFailure(d) if d.is_timeout());
    own(
        ErrorClass::Transient,
        if timeout {
            Code::Timeout
        } else {
            Code::ConnectionError
        },
        format!("could not reach STS: {}", source_chain(err)),
    )
}

/// One line, bounded length, no control characters.
fn clean_message(m: &str) -> String {
    m.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect()
}

/// The cause of `err`, said once: its sources from the outside in, each
/// without the text of the source it repeats (`a: b` followed by `b`),
/// and without the SDK's and hyper's wrappers that name no cause (`io
/// error`, `client error (Connect)`, `dispatch failure`). A connection
/// refused reads `tcp connect error: Connection refused (os error 111)`.
fn source_chain(err: &dyn std::error::Error) -> String {
    let mut texts = Vec::new();
    let mut cur = err.source();
    while let Some(e) = cur {
        texts.push(e.to_string());
        cur = e.source();
    }
    if texts.is_empty() {
        return clean_message(&err.to_string());
    }
    let mut kept: Vec<String> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let own = match texts.get(i + 1) {
            Some(next) => text
                .strip_suffix(next.as_str())
                .map(|t| t.trim_end_matches([':', ' ']))
                .unwrap_or(text),
            None => text,
        };
        let wrapper = own.is_empty()
            || ["io error", "client error (", "dispatch failure", "other"]
                .iter()
                .any(|w| own.starts_with(w));
        // The innermost is the cause itself: kept even if it reads like
        // a wrapper.
        if (!wrapper || i + 1 == texts.len()) && !kept.iter().any(|k| k == own) {
            kept.push(own.to_owned());
        }
    }
    clean_message(&kept.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_sts_error_codes_by_what_the_operator_must_do() {
        for code in ["Throttling", "IDPCommunicationError", "InternalFailure"] {
            assert_eq!(classify_code(code, 400), ErrorClass::Transient, "{code}");
        }
        assert_eq!(classify_code("Whatever", 503), ErrorClass::Transient);
        assert_eq!(classify_code("Whatever", 429), ErrorClass::Transient);
        for code in ["InvalidIdentityToken", "ExpiredTokenException"] {
            assert_eq!(classify_code(code, 400), ErrorClass::Token, "{code}");
        }
        for code in [
            "AccessDenied",
            "IDPRejectedClaim",
            "RegionDisabledException",
            "MalformedPolicyDocument",
            "PackedPolicyTooLarge",
            "ValidationError",
        ] {
            assert_eq!(
                classify_code(code, 400),
                ErrorClass::Configuration,
                "{code}"
            );
        }
    }

    fn failed_connect(errno: i32) -> StsError {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        // As hyper-util reports a failed connect: its ConnectError, whose
        // source is the io::Error.
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct ConnectError(#[source] std::io::Error);
        let io = ConnectError(std::io::Error::from_raw_os_error(errno));
        let err: SdkError<aws_sdk_sts::Error, aws_smithy_runtime_api::http::Response> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(io)));
        classify(err, &crate::metrics::Metrics::new())
    }

    #[test]
    fn a_connect_at_a_node_limit_is_transient_and_names_the_setting() {
        let e = failed_connect(libc::EADDRNOTAVAIL);
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(e.code, Code::LocalPortsExhausted.as_str());
        assert!(
            e.message
                .starts_with("could not reach STS: no free local port"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("net.ipv4.ip_local_port_range"),
            "{}",
            e.message
        );
        let hint = crate::trust::hint(
            &e.code,
            &crate::config::Profile::new("p", "arn:aws:iam::111122223333:role/r"),
            None,
        )
        .unwrap();
        assert!(
            hint.contains("net.ipv4.tcp_tw_reuse"),
            "the hint says what to raise: {hint}"
        );
        assert!(
            e.message.contains("tcp connect error"),
            "the SDK's chain follows: {}",
            e.message
        );
        for (errno, code) in [
            (libc::EMFILE, Code::TooManyOpenFiles),
            (libc::ENFILE, Code::FileTableFull),
        ] {
            let e = failed_connect(errno);
            assert_eq!(e.class, ErrorClass::Transient);
            assert_eq!(e.code, code.as_str());
        }
        assert!(failed_connect(libc::EMFILE).message.contains("ulimit -n"));
        let refused = failed_connect(libc::ECONNREFUSED);
        assert_eq!(refused.code, Code::ConnectionError.as_str());
        assert_eq!(refused.class, ErrorClass::Transient);
        assert_eq!(
            refused.message,
            "could not reach STS: tcp connect error: Connection refused (os error 111)",
            "the cause once, without the SDK's wrappers"
        );
    }

    #[test]
    fn a_chain_that_repeats_its_sources_says_each_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Layer(String, #[source] Option<Box<Layer>>);
        fn chain(texts: &[&str]) -> Layer {
            let (root, outer) = texts.split_last().unwrap();
            outer
                .iter()
                .rev()
                .fold(Layer((*root).into(), None), |inner, t| {
                    Layer((*t).into(), Some(Box::new(inner)))
                })
        }
        // Each layer's text repeats its source's, as hyper's and the
        // SDK's do.
        let root = "Connection refused (os error 111)";
        let connect = format!("tcp connect error: {root}");
        let client = format!("client error (Connect): {connect}");
        let io = format!("io error: {client}");
        let err = chain(&["dispatch failure", &io, &client, &connect, root]);
        assert_eq!(
            source_chain(&err),
            "tcp connect error: Connection refused (os error 111)"
        );
        // A source without sources of its own is said as it is.
        assert_eq!(source_chain(&chain(&["outer", "io error"])), "io error");
        assert_eq!(source_chain(&chain(&["alone"])), "alone");
    }

    #[test]
    fn messages_are_single_bounded_lines() {
        assert_eq!(clean_message("a\nb\rc"), "a b c");
        assert_eq!(clean_message(&"x".repeat(1000)).len(), 400);
    }
}
