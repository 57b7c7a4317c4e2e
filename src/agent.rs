//! The EKS Pod Identity agent (`identity: pod-identity`): the node-local
//! HTTP service that exchanges the pod's Pod Identity token for the
//! association role's session, the base every role profile chains from.
//!
//! One plain-HTTP `GET` per call on a connection of its own (calls are
//! hours apart), to an IP literal (no DNS lookup) and never through a
//! proxy; `Host` is the URL's authority exactly, since the agent refuses
//! any other (`AgentHostRefused`). The answer is read into a session
//! ([`answer`]) or sorted like an STS failure ([`codes`]).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::sts::{Assumed, StsError};

mod answer;
pub mod codes;
mod hint;
mod request;

pub use answer::Answer;
pub use codes::with_audience;
pub use hint::hint;
pub use request::MAX_RESPONSE_BYTES;
use request::Target;

/// The agent's default URL, the default token and its audience.
pub use crate::aws::{
    POD_IDENTITY_AUDIENCE as AUDIENCE, POD_IDENTITY_ENDPOINT as DEFAULT_ENDPOINT,
    POD_IDENTITY_TOKEN_FILE as DEFAULT_TOKEN_FILE,
};

/// Time allowed for the connection to the agent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for one call, connection included: the agent may wait
/// about 2 s for a concurrent request and then call EKS Auth.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The role the base profile shows where role ARNs are shown: the agent's
/// answer names none.
pub const ROLE_SHOWN: &str = "(Pod Identity association)";

/// The role `p` shows in logs and tables: its ARN, or [`ROLE_SHOWN`] for
/// the base profile.
pub fn role_shown(p: &crate::config::Profile) -> &str {
    if p.pod_identity {
        ROLE_SHOWN
    } else {
        &p.role_arn
    }
}

/// A client of one agent URL (validated by the configuration).
pub struct Agent {
    url: String,
    target: Result<Target, &'static str>,
    connect_timeout: Duration,
    attempt_timeout: Duration,
    metrics: Metrics,
}

impl Agent {
    pub fn new(url: &str) -> Agent {
        Agent {
            url: url.to_owned(),
            target: Target::parse(url),
            connect_timeout: CONNECT_TIMEOUT,
            attempt_timeout: ATTEMPT_TIMEOUT,
            metrics: Metrics::default(),
        }
    }

    /// The same, with other timeouts (tests).
    pub fn with_timeouts(self, connect: Duration, attempt: Duration) -> Agent {
        Agent {
            connect_timeout: connect,
            attempt_timeout: attempt,
            ..self
        }
    }

    /// The same, counting its calls in `metrics`
    /// (`rolecall_agent_responses_total`,
    /// `rolecall_agent_request_duration_seconds`).
    pub fn with_metrics(self, metrics: Metrics) -> Agent {
        Agent { metrics, ..self }
    }

    /// The agent's URL: also the pacer gate its calls go through.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `Host` header this client sends (`None` for a URL it cannot
    /// call).
    pub fn host(&self) -> Option<&str> {
        self.target.as_ref().ok().map(|t| t.host.as_str())
    }

    /// One `GET` with the raw token as `Authorization`: the base session,
    /// or the failure classified like an STS failure.
    pub async fn fetch(&self, token: &str) -> Result<Assumed, StsError> {
        self.fetch_answer(token).await.map(|a| a.assumed)
    }

    /// The same, with the account the agent named (`AccountId`).
    pub async fn fetch_answer(&self, token: &str) -> Result<Answer, StsError> {
        let target = match &self.target {
            Ok(t) => t,
            Err(why) => return Err(codes::bad_url(&self.url, why)),
        };
        let started = Instant::now();
        let result = request::call(target, token, self.connect_timeout, self.attempt_timeout).await;
        self.metrics.record_agent_call(started.elapsed());
        match result {
            Ok((200, body)) => {
                self.metrics.count_agent_response("200");
                answer::parse(&body)
            }
            Ok((status, body)) => {
                self.metrics
                    .count_agent_response(codes::status_label(status));
                Err(codes::classify_status(status, &body))
            }
            Err(failure) => {
                self.metrics.count_agent_response("error");
                Err(codes::classify_failure(
                    failure,
                    &self.url,
                    self.attempt_timeout.as_secs_f64().ceil() as u64,
                ))
            }
        }
    }
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("url", &self.url)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests;
