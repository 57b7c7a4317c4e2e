//! One attempt's STS call: the token or the source session, the sidecar's
//! pace ([`crate::pacer`]), and what the answer does to that pace.

use std::time::Duration;

use tokio::time::Instant;

use super::{RefreshError, Refresher, sts_is_down, usable_from};
use crate::codes::Code;
use crate::pacer::{Change, Gate, Paced, Permit};
use crate::state::Lookup;
use crate::sts::{Assumed, ErrorClass, StsError, codes};
use crate::token::{self, Claims};

impl Refresher {
    /// Reads the token (or takes the source session), calls STS when the
    /// sidecar's [`crate::pacer`] allows, and checks that the answer can be
    /// used. Also returns the token's claims, for the hint of a failure,
    /// and how long the STS call took. The `first` call of this refresher
    /// does not wait for a closed gate's probe ([`crate::pacer::Pacer::acquire_first`]).
    pub(super) async fn obtain(
        &mut self,
        first: bool,
    ) -> (Result<Assumed, RefreshError>, Option<Claims>, Duration) {
        let pacer = self.ctx.pacer.clone();
        let permit = if first {
            pacer.acquire_first(&self.endpoint).await
        } else {
            // (A profile whose own last call failed is marked already.)
            if self.failures == 0 && pacer.is_down(&self.endpoint) {
                self.waits_for_probe();
            }
            pacer.acquire(&self.endpoint).await
        };
        let started = Instant::now();
        let p = self.profile.clone();
        let mut claims = None;
        let result = match &p.source_profile {
            _ if p.pod_identity => match self.ask_agent().await {
                Ok((result, c)) => {
                    claims = Some(c);
                    result
                }
                Err(e) => return (Err(e), None, Duration::ZERO),
            },
            Some(source) => match self
                .ctx
                .shared
                .credentials_for(source, self.ctx.clock.now())
            {
                Lookup::Live { session: s, .. } => {
                    // kubernetes_tags: the pod's claims tag the session; a
                    // token that cannot be read fails the attempt (nothing
                    // is sent untagged).
                    let kubernetes = if p.kubernetes_tags {
                        match token::read_unchecked(&self.ctx.token_file) {
                            Ok(t) => Some(t.claims.kubernetes),
                            Err(e) => return (Err(e.into()), None, Duration::ZERO),
                        }
                    } else {
                        None
                    };
                    self.source_used = Some(s.clone());
                    self.ctx
                        .sts
                        .assume_with_session(&p, &s, kubernetes.as_ref())
                        .await
                }
                Lookup::NotReady { .. } | Lookup::Unknown => {
                    let source_profile = source.clone();
                    return (
                        Err(RefreshError::SourceUnavailable { source_profile }),
                        None,
                        Duration::ZERO,
                    );
                }
            },
            None => match token::read(&self.ctx.token_file, self.ctx.clock.now()) {
                Ok(t) => {
                    claims = Some(t.claims.clone());
                    self.ctx.sts.assume_with_token(&p, t.expose()).await
                }
                Err(e) => return (Err(e.into()), None, Duration::ZERO),
            },
        };
        let took = started.elapsed();
        self.pace(permit, &result);
        let skew = self.ctx.sts.clock_skew();
        if let Some(skew) = skew {
            self.ctx.metrics.record_clock_skew(skew);
        }
        let from = if p.pod_identity {
            "the Pod Identity agent"
        } else {
            "STS"
        };
        let result = result.and_then(|a| usable_from(from, a, self.ctx.clock.now(), skew));
        (result.map_err(RefreshError::from), claims, took)
    }

    /// The base profile's session from the Pod Identity agent, with the
    /// token's claims: the token is read and checked first (nothing is
    /// sent when it cannot be used). A token refused with an audience
    /// other than Pod Identity's is a configuration error.
    async fn ask_agent(&self) -> Result<(Result<Assumed, StsError>, Claims), RefreshError> {
        let Some(agent) = self.ctx.agent.clone() else {
            return Err(StsError {
                class: ErrorClass::Configuration,
                code: Code::InvalidRequest.into(),
                message: "identity: pod-identity, but no Pod Identity agent is set up".into(),
                request_id: None,
            }
            .into());
        };
        let t = token::read(&self.ctx.token_file, self.ctx.clock.now())?;
        let result = agent.fetch(t.expose()).await;
        let result = result.map_err(|e| crate::agent::with_audience(e, &t.claims.aud));
        Ok((result, t.claims.clone()))
    }

    /// Records that this profile's refresh waits for the probe of an STS
    /// that is down: in `status.json` and `/readyz` (for when its session
    /// expires) the profile is failing, with [`Code::StsDown`]; process
    /// mode and the endpoint report its real expiry, as after a failed
    /// refresh (nothing newer can come before STS answers); and its next
    /// session's first refresh is spread, as after any run of failures.
    /// No line is logged: the sidecar's `STS is not answering` says it.
    fn waits_for_probe(&mut self) {
        self.failures = self.failures.saturating_add(1);
        self.ctx.shared.record_failure(
            &self.profile,
            ErrorClass::Transient.result(),
            format!(
                "{}: {} is not answering; this profile waits for the sidecar's next call to it",
                Code::StsDown,
                if self.profile.pod_identity {
                    "the Pod Identity agent"
                } else {
                    "STS"
                }
            ),
            self.ctx.clock.now(),
        );
    }

    /// Ends a paced STS call: a throttled one slows the whole sidecar down,
    /// an answered one speeds it up again. Logs when the sidecar starts
    /// being throttled and when that ends.
    fn pace(&self, permit: Permit<'_>, result: &Result<Assumed, StsError>) {
        let agent = self.profile.pod_identity;
        let how = match result {
            Ok(_) => Paced::Answered,
            // The agent's 429 (its own per-node limit, or EKS Auth's)
            // closes only the agent's gate: the sidecar's STS calls, which
            // draw on the account's STS rate, go on at their pace.
            Err(e) if codes::is_throttling(&e.code) && agent => Paced::Down,
            Err(e) if codes::is_throttling(&e.code) => Paced::Throttled,
            Err(e) if sts_is_down(e) => Paced::Down,
            Err(e) if e.class == ErrorClass::Transient => Paced::Failed,
            Err(_) => Paced::Answered,
        };
        if result
            .as_ref()
            .is_err_and(|e| codes::is_throttling(&e.code))
        {
            self.ctx.metrics.count_throttled();
        }
        let target = if agent {
            "the Pod Identity agent"
        } else {
            "STS"
        };
        let (change, gate) = permit.finish(how, self.ctx.jitter);
        match gate {
            // One failed call is usually a blip: the first probe follows
            // within a second. Two in a row, and STS is down.
            Gate::Down { level: 2, pause } => tracing::warn!(
                endpoint = %self.endpoint,
                code = result.as_ref().err().map_or("-", |e| e.code.as_str()),
                next_probe_in_s = pause.as_secs_f64().ceil() as u64,
                "{target} is not answering (or is throttling): this sidecar now sends it one call at a time for all its profiles (a probe), with a growing pause between probes, until it answers; the other profiles wait and keep their credentials",
            ),
            Gate::Down { level, pause } => tracing::debug!(
                endpoint = %self.endpoint,
                level,
                next_probe_in_s = pause.as_secs_f64().ceil() as u64,
                "{target} still not answering",
            ),
            Gate::Up { calls, down_for } if calls >= 2 => tracing::info!(
                endpoint = %self.endpoint,
                failed_calls = calls,
                down_for_s = down_for.as_secs(),
                "{target} answers again: the profiles that waited refresh now",
            ),
            Gate::Up { .. } | Gate::None => {}
        }
        match change {
            Change::Throttled { level: 1, pause } => tracing::warn!(
                profile = %self.profile.name,
                pause_s = pause.as_secs_f64().ceil() as u64,
                "STS is throttling this account: this sidecar now makes one STS call at a time, with a pause between calls (rolecall_sts_throttled_total counts the throttled calls)",
            ),
            Change::Throttled { level, pause } => tracing::debug!(
                profile = %self.profile.name,
                level,
                pause_s = pause.as_secs_f64().ceil() as u64,
                "throttled again",
            ),
            Change::Recovered => tracing::info!("STS calls are no longer throttled"),
            Change::None => {}
        }
    }
}
