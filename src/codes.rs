//! rolecall's own error codes: the labels it gives failures that carry no
//! code from STS (no answer, a refused certificate, a limit of the node, a
//! token that could not be read...). They fill the same `code` as STS's own
//! codes ([`crate::sts::codes`]) in log lines, `status.json`'s `last_error`
//! and `/readyz`, so none is spelled like one of STS's. A leaf: it names
//! the codes; [`crate::sts::codes`] sorts them and [`crate::trust::hint`]
//! explains them.

use std::fmt;

/// One of rolecall's own error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// No answer within the attempt timeout.
    Timeout,
    /// STS could not be reached.
    ConnectionError,
    /// The STS endpoint's TLS certificate was refused (an unknown issuer,
    /// an expired certificate, another name): the operator must trust its
    /// CA.
    CertificateRefused,
    /// No free local port to connect from (`EADDRNOTAVAIL`): the node's
    /// `net.ipv4.ip_local_port_range` is exhausted.
    LocalPortsExhausted,
    /// A file or connection could not be opened at the process's open-file
    /// limit (`EMFILE`).
    TooManyOpenFiles,
    /// A file or connection could not be opened: the node's file table is
    /// full (`ENFILE`).
    FileTableFull,
    /// A thread the call needed (a host-name lookup) could not be started:
    /// the pod's pids limit, `RLIMIT_NPROC` or `kernel.threads-max`.
    ThreadLimitReached,
    /// An answer that could not be read, or without usable credentials.
    MalformedResponse,
    /// The SDK could not build the request.
    InvalidRequest,
    /// Credentials that expire before they can be used, by the local clock.
    ExpiredOnArrival,
    /// The projected token could not be read (no STS call was made).
    TokenUnavailable,
    /// A chained profile's source has no valid session (no STS call was
    /// made).
    SourceUnavailable,
    /// STS is down for the profile's endpoint and the profile waits for the
    /// sidecar's probe (no STS call was made; [`crate::pacer`]).
    StsDown,
    /// The Pod Identity agent answered with an error that carries no EKS
    /// Auth exception name.
    AgentError,
    /// The Pod Identity agent refused the request for its `Host`: it
    /// answers only calls addressed to 169.254.170.23 or [fd00:ec2::23].
    AgentHostRefused,
}

impl Code {
    /// Every code, in the order above.
    pub const ALL: [Code; 15] = [
        Code::Timeout,
        Code::ConnectionError,
        Code::CertificateRefused,
        Code::LocalPortsExhausted,
        Code::TooManyOpenFiles,
        Code::FileTableFull,
        Code::ThreadLimitReached,
        Code::MalformedResponse,
        Code::InvalidRequest,
        Code::ExpiredOnArrival,
        Code::TokenUnavailable,
        Code::SourceUnavailable,
        Code::StsDown,
        Code::AgentError,
        Code::AgentHostRefused,
    ];

    /// The code as logs, `status.json` and `/readyz` show it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Timeout => "Timeout",
            Code::ConnectionError => "ConnectionError",
            Code::CertificateRefused => "CertificateRefused",
            Code::LocalPortsExhausted => "LocalPortsExhausted",
            Code::TooManyOpenFiles => "TooManyOpenFiles",
            Code::FileTableFull => "FileTableFull",
            Code::ThreadLimitReached => "ThreadLimitReached",
            Code::MalformedResponse => "MalformedResponse",
            Code::InvalidRequest => "InvalidRequest",
            Code::ExpiredOnArrival => "ExpiredOnArrival",
            Code::TokenUnavailable => "TokenUnavailable",
            Code::SourceUnavailable => "SourceUnavailable",
            Code::StsDown => "StsDown",
            Code::AgentError => "AgentError",
            Code::AgentHostRefused => "AgentHostRefused",
        }
    }

    /// The code spelled `code`, if it is one of rolecall's.
    pub fn parse(code: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Code> for String {
    fn from(code: Code) -> String {
        code.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_reads_back_from_its_spelling() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert_eq!(code.to_string(), code.as_str());
            assert_eq!(String::from(code), code.as_str());
        }
        assert_eq!(Code::parse("AccessDenied"), None);
        assert_eq!(Code::parse("timeout"), None, "spelled exactly");
    }
}
