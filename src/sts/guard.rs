//! What rolecall checks on every STS answer before the SDK reads it: the
//! `Date` header against the local clock, and the size of the body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::SystemTime;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeDeserializationInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::date_time::{DateTime, Format};

use super::{MAX_RESPONSE_BYTES, SKEW_WARNING};
use crate::clock::Clock;

/// What the `Date` headers of STS answers say about the local clock.
#[derive(Debug, Default)]
pub(super) struct ClockCheck {
    known: AtomicBool,
    skew_s: AtomicI64,
    /// Whether the last measured skew was over [`SKEW_WARNING`].
    warned: AtomicBool,
}

impl ClockCheck {
    pub(super) fn skew(&self) -> Option<i64> {
        self.known
            .load(Ordering::Acquire)
            .then(|| self.skew_s.load(Ordering::Acquire))
    }

    /// Records one answer's `Date`; logs when the skew crosses
    /// [`SKEW_WARNING`] either way (not on every answer).
    fn record(&self, sts_time: SystemTime, local: SystemTime) {
        let skew = match sts_time.duration_since(local) {
            Ok(ahead) => ahead.as_secs() as i64,
            Err(behind) => -(behind.duration().as_secs() as i64),
        };
        self.skew_s.store(skew, Ordering::Release);
        self.known.store(true, Ordering::Release);
        let over = skew.unsigned_abs() > SKEW_WARNING.as_secs();
        if over != self.warned.swap(over, Ordering::AcqRel) {
            if over {
                tracing::warn!(
                    clock_skew_s = skew,
                    "the local clock differs from STS's (its Date header) by more than a minute; credential expiry is judged by the local clock: check the node's time sync (NTP)"
                );
            } else {
                tracing::info!(clock_skew_s = skew, "the local clock agrees with STS again");
            }
        }
    }
}

/// Reads each STS answer's `Date` header into [`ClockCheck`] and caps the
/// body at [`MAX_RESPONSE_BYTES`] before the SDK reads it.
#[derive(Debug)]
pub(super) struct ResponseGuard {
    pub(super) clock: Arc<ClockCheck>,
    /// The local wall time the `Date` header is compared with.
    pub(super) wall: Clock,
}

impl Intercept for ResponseGuard {
    fn name(&self) -> &'static str {
        "rolecall-response-guard"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(|d| DateTime::from_str(d, Format::HttpDate).ok())
            .and_then(|d| SystemTime::try_from(d).ok());
        if let Some(date) = date {
            self.clock.record(date, self.wall.now());
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        let body = response.take_body();
        *response.body_mut() =
            SdkBody::from_body_1_x(http_body_util::Limited::new(body, MAX_RESPONSE_BYTES));
        Ok(())
    }
}
