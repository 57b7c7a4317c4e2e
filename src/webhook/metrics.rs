//! The webhook's Prometheus series (its own registry: the sidecar's are
//! not served here). Labels are outcome and reason classes only: never a
//! pod's name, annotation or env value.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rustls::sign::CertifiedKey;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

struct Families {
    registry: Mutex<Registry>,
    requests: Family<OutcomeLabel, Counter>,
    refusals: Family<ReasonLabel, Counter>,
    latency: Histogram,
    reloads: Family<ResultLabel, Counter>,
    not_after: Gauge,
    ready: Gauge,
}

/// The webhook's series; clones share them.
#[derive(Clone)]
pub struct WebhookMetrics(Arc<Families>);

impl Default for WebhookMetrics {
    fn default() -> Self {
        WebhookMetrics::new()
    }
}

impl WebhookMetrics {
    pub fn new() -> WebhookMetrics {
        let f = Families {
            registry: Mutex::new(Registry::default()),
            requests: Family::default(),
            refusals: Family::default(),
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            reloads: Family::default(),
            not_after: Gauge::default(),
            ready: Gauge::default(),
        };
        {
            let mut r = f.registry.lock().unwrap_or_else(|e| e.into_inner());
            r.register(
                "rolecall_webhook_requests",
                "Admission requests answered, by outcome (injected, unchanged, refused, invalid)",
                f.requests.clone(),
            );
            r.register(
                "rolecall_webhook_refusals",
                "Requests not allowed (refused) or not answered (invalid), by reason",
                f.refusals.clone(),
            );
            r.register(
                "rolecall_webhook_request_duration_seconds",
                "Time from a request's head to its answer",
                f.latency.clone(),
            );
            r.register(
                "rolecall_webhook_certificate_reloads",
                "Reloads of the TLS certificate and key after they changed, by result (ok, failed)",
                f.reloads.clone(),
            );
            r.register(
                "rolecall_webhook_certificate_expiry_timestamp_seconds",
                "The serving certificate's notAfter, in Unix seconds",
                f.not_after.clone(),
            );
            r.register(
                "rolecall_webhook_ready",
                "1 while the webhook serves a certificate and is not stopping",
                f.ready.clone(),
            );
        }
        WebhookMetrics(Arc::new(f))
    }

    /// One answered request: its outcome, reason and time.
    pub fn count_request(
        &self,
        outcome: &'static str,
        reason: Option<&'static str>,
        took: Duration,
    ) {
        self.0
            .requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        if let Some(reason) = reason {
            self.0.refusals.get_or_create(&ReasonLabel { reason }).inc();
        }
        self.0.latency.observe(took.as_secs_f64());
    }

    pub fn count_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.0.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// The serving certificate's notAfter (0 if it cannot be read).
    pub fn set_not_after(&self, pair: &CertifiedKey) {
        let t = pair.cert.first().and_then(|c| not_after(c.as_ref()));
        self.0.not_after.set(t.unwrap_or(0));
    }

    pub fn set_ready(&self, ready: bool) {
        self.0.ready.set(i64::from(ready));
    }

    pub fn ready(&self) -> bool {
        self.0.ready.get() == 1
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.0.registry.lock().unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &r)
            .expect("writing to a String cannot fail");
        out
    }
}

/// One DER element: its tag, its contents and what follows it.
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A certificate's notAfter in Unix seconds: Certificate → tbsCertificate
/// → (version) serial, signature, issuer, validity → notAfter.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (_, _, after) = tlv(validity)?;
    let (tag, time, _) = tlv(after)?;
    let time = std::str::from_utf8(time).ok().filter(|t| t.is_ascii())?;
    let full = match (tag, time.len()) {
        (0x17, 13) => {
            let yy: u32 = time[..2].parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{time}")
        }
        (0x18, 15) => time.to_owned(),
        _ => return None,
    };
    let t = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    let t = crate::session::parse_time(&t)?;
    i64::try_from(crate::session::unix_seconds(t)).ok()
}
