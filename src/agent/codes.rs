//! The agent's answers and failures sorted like STS's: a class (how soon
//! to retry), a code (EKS Auth's exception name when the body names one,
//! else one of rolecall's), and a message with at most 200 printable
//! characters of the agent's text (error bodies only: a 200 body holds
//! keys and is never quoted).

use super::request::Failure;
use crate::codes::Code;
use crate::sts::{ErrorClass, StsError, codes::THROTTLING_EXCEPTION};

pub const ACCESS_DENIED: &str = "AccessDeniedException";
pub const EXPIRED_TOKEN: &str = "ExpiredTokenException";
pub const INVALID_TOKEN: &str = "InvalidTokenException";
pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFoundException";
pub const INTERNAL_SERVER: &str = "InternalServerException";
pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailableException";

/// The most of an error body a message quotes.
const EXCERPT_CHARS: usize = 200;

/// `s` cut to `max` characters, control characters and quotes escaped.
pub fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s
        .trim()
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if s.trim().chars().count() > max {
        out.push('…');
    }
    out
}

/// The EKS Auth exception the agent's text names, as
/// `[request-id]: (NameException): message, fault: client`.
pub fn exception_name(text: &str) -> Option<&str> {
    text.match_indices('(').find_map(|(i, _)| {
        let rest = &text[i + 1..];
        let name = &rest[..rest.find(')')?];
        (name.len() <= 64
            && name.ends_with("Exception")
            && name.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(name)
    })
}

/// The request id the agent's text starts with (`[id]: ...`).
fn request_id(text: &str) -> Option<String> {
    let id = text.strip_prefix('[')?.split_once(']')?.0;
    (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| id.to_owned())
}

/// A non-200 answer: its class and code by the status and the exception
/// the body names (design §2.4).
pub fn classify_status(status: u16, body: &[u8]) -> StsError {
    let text = String::from_utf8_lossy(body);
    let name = exception_name(&text);
    let (class, code) = match (status, name) {
        (_, Some(THROTTLING_EXCEPTION)) | (429, _) => (ErrorClass::Transient, THROTTLING_EXCEPTION),
        (_, Some(n @ (INTERNAL_SERVER | SERVICE_UNAVAILABLE))) => (ErrorClass::Transient, n),
        (500..=599, n) => (
            ErrorClass::Transient,
            n.unwrap_or(Code::AgentError.as_str()),
        ),
        (_, Some(n @ (EXPIRED_TOKEN | INVALID_TOKEN))) => (ErrorClass::Token, n),
        (403, None) => (ErrorClass::Configuration, Code::AgentHostRefused.as_str()),
        (400..=499, n) => (
            ErrorClass::Configuration,
            n.unwrap_or(Code::AgentError.as_str()),
        ),
        (_, n) => (
            ErrorClass::Transient,
            n.unwrap_or(Code::AgentError.as_str()),
        ),
    };
    StsError {
        class,
        code: code.to_owned(),
        message: format!(
            "the Pod Identity agent answered {status}: \"{}\"",
            excerpt(&text, EXCERPT_CHARS)
        ),
        request_id: request_id(&text),
    }
}

/// A call that got no whole answer.
pub fn classify_failure(failure: Failure, url: &str, attempt_s: u64) -> StsError {
    let (class, code, message) = match failure {
        Failure::Timeout => (
            ErrorClass::Transient,
            Code::Timeout,
            format!("the Pod Identity agent at {url} did not answer within {attempt_s} s"),
        ),
        Failure::Connection(e) => (
            ErrorClass::Transient,
            Code::ConnectionError,
            format!("the Pod Identity agent at {url} could not be reached: {e}"),
        ),
        Failure::Limit(limit, e) => (
            ErrorClass::Transient,
            limit.code(),
            format!("no connection to the Pod Identity agent at {url}: {e}"),
        ),
        Failure::TooLarge => (
            ErrorClass::Transient,
            Code::MalformedResponse,
            format!(
                "the Pod Identity agent's answer is larger than {} KiB; it was not used",
                super::request::MAX_RESPONSE_BYTES / 1024
            ),
        ),
        Failure::BadToken => (
            ErrorClass::Configuration,
            Code::InvalidRequest,
            "the Pod Identity token or agent URL cannot stand in an HTTP header".to_owned(),
        ),
    };
    StsError {
        class,
        code: code.into(),
        message,
        request_id: None,
    }
}

/// A failed call to a URL that is not the agent's form (the configuration
/// refuses such URLs first).
pub fn bad_url(url: &str, why: &str) -> StsError {
    StsError {
        class: ErrorClass::Configuration,
        code: Code::InvalidRequest.into(),
        message: format!(
            "pod_identity_endpoint \"{}\" cannot be called: {why}",
            excerpt(url, 80)
        ),
        request_id: None,
    }
}

/// A token refused by EKS Auth is the token's fault (re-read and retried)
/// unless its audience is not Pod Identity's: then no re-read helps, and
/// the operator must mount the right token.
pub fn with_audience(e: StsError, aud: &[String]) -> StsError {
    if e.class == ErrorClass::Token && !aud.iter().any(|a| a == super::AUDIENCE) {
        return StsError {
            class: ErrorClass::Configuration,
            ..e
        };
    }
    e
}

/// The `status` label of `rolecall_agent_responses_total` for an answer.
pub fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        403 => "403",
        404 => "404",
        429 => "429",
        500..=599 => "5xx",
        _ => "error",
    }
}
