//! The HTTPS listener: TLS (rustls, the pair [`super::certs::Current`]
//! holds) in front of hyper's HTTP/1, bounded as the sidecar's listeners
//! are ([`crate::http`]'s head size, header timeout, connection lifetime,
//! connection cap and accept backoff), plus a handshake timeout, a body
//! cap ([`MAX_BODY`]) and a body timeout ([`BODY_TIMEOUT`]). Only
//! `POST /mutate` with a JSON body is answered.
//!
//! Stopping: `stop` ends the accept loop and asks every connection to
//! finish its request in flight and close; each connection holds a
//! sender of `alive`, so the caller sees when the last one closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::metrics::WebhookMetrics;
use super::review::{self, Answer, Outcome};
use crate::http::{HEADER_READ_TIMEOUT, LIFETIME_GRACE, MAX_CONNECTION_LIFETIME, MAX_CONNECTIONS};
use crate::ratelimit::{LOG_INTERVAL, LogLimit};
use crate::slots::{Slot, Slots};
use crate::sys::limits::Limit;

/// The largest body read: the API server's own request limit (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// Time a client has to send the whole body after its head.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The one path answered.
pub const PATH: &str = "/mutate";

/// What every connection shares.
pub struct Shared {
    pub opts: crate::inject::Options,
    pub metrics: WebhookMetrics,
    pub limits: crate::metrics::Metrics,
}

/// Accepts connections on `listener` until `stop`; each holds a clone of
/// `alive` until it closes. `hard` closes every connection at once.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stop: CancellationToken,
    hard: CancellationToken,
    alive: mpsc::Sender<()>,
) {
    let local = listener.local_addr().ok();
    let slots = Slots::new(MAX_CONNECTIONS);
    let accept_log = LogLimit::new(LOG_INTERVAL);
    let mut backoff = None;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.cancelled() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => {
                backoff = None;
                tcp
            }
            Err(e) => {
                let wait = crate::http::accept_backoff(backoff);
                backoff = Some(wait);
                let limit = Limit::of(&e);
                if let Some(limit) = limit {
                    shared.limits.count_limit_reached(limit, "webhook");
                }
                if let Some(suppressed) = accept_log.admit() {
                    tracing::warn!(error = %e, addr = ?local, suppressed, hint = limit.map(Limit::hint).as_deref(), "accept failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        let Some(admitted) = slots.admit(&hard) else {
            continue;
        };
        if admitted.closed_oldest {
            tracing::debug!(
                limit = slots.cap(),
                "connection limit reached; closed the oldest connection"
            );
        }
        let conn = Connection {
            acceptor: acceptor.clone(),
            shared: shared.clone(),
            slot: admitted.slot,
            stop: stop.clone(),
            _alive: alive.clone(),
        };
        tokio::spawn(conn.run(tcp));
    }
}

struct Connection {
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    slot: Slot,
    stop: CancellationToken,
    _alive: mpsc::Sender<()>,
}

impl Connection {
    /// The handshake (within the header timeout), then requests until the
    /// client closes, the slot is taken back, the lifetime ends or `stop`
    /// (both: the request in flight is finished first).
    async fn run(self, tcp: TcpStream) {
        let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, self.acceptor.accept(tcp));
        let tls = tokio::select! {
            r = handshake => match r {
                Ok(Ok(tls)) => tls,
                _ => return,
            },
            _ = self.slot.close.cancelled() => return,
        };
        let shared = self.shared.clone();
        let service = hyper::service::service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(req, &shared).await) }
        });
        let builder = crate::http::builder();
        let conn = builder.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(conn);
        let lifetime = tokio::time::sleep(MAX_CONNECTION_LIFETIME);
        tokio::pin!(lifetime);
        let mut closing = false;
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = self.slot.close.cancelled() => return,
                _ = &mut lifetime => {
                    if closing {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                    lifetime.as_mut().reset(Instant::now() + LIFETIME_GRACE);
                    closing = true;
                }
                _ = self.stop.cancelled(), if !closing => {
                    // The caller bounds the wait for requests in flight.
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    lifetime.as_mut().reset(Instant::now() + super::SHUTDOWN_GRACE);
                }
            }
        }
    }
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// One request: checked, its body read within the limits, reviewed,
/// counted and logged.
async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let answer = match refuse(&req) {
        Some(refusal) => Err(refusal),
        None => read_and_review(req, shared).await,
    };
    match answer {
        Ok(a) => {
            let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut r = Response::new(Full::new(Bytes::from(a.body.clone())));
            *r.status_mut() = status;
            let ct = if a.status == 200 {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(ct),
            );
            finish(shared, started, Some(&a), a.outcome, a.reason, &a.message);
            r
        }
        // Refused on its head, or its body: plain text, counted as invalid.
        Err((status, reason, message)) => {
            let invalid = Outcome::Invalid;
            finish(shared, started, None, invalid, Some(reason), &message);
            text(status, &message)
        }
    }
}

type Refusal = (StatusCode, &'static str, String);

/// The answer to a request refused on its head alone.
fn refuse(req: &Request<Incoming>) -> Option<Refusal> {
    if req.uri().path() != PATH {
        return Some((
            StatusCode::NOT_FOUND,
            "path",
            format!("only {PATH} is served"),
        ));
    }
    if req.method() != Method::POST {
        return Some((
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
            format!("{PATH} takes POST"),
        ));
    }
    if !is_json(req) {
        return Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "media_type",
            "the body must be Content-Type: application/json".into(),
        ));
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Some(too_large());
    }
    None
}

fn too_large() -> Refusal {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than {MAX_BODY} bytes"),
    )
}

async fn read_and_review(req: Request<Incoming>, shared: &Shared) -> Result<Answer, Refusal> {
    let body = Limited::new(req.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_) => {
            return Err((
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(_)) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "malformed",
                "the body could not be read".into(),
            ));
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    Ok(review::review(&bytes, &shared.opts))
}

/// Counts the request and writes its one log line (no pod content but
/// its name: never an env value).
fn finish(
    shared: &Shared,
    started: Instant,
    answer: Option<&Answer>,
    outcome: Outcome,
    reason: Option<&'static str>,
    message: &str,
) {
    let took = started.elapsed();
    shared.metrics.count_request(outcome.as_str(), reason, took);
    let (uid, namespace, pod) = answer.map_or(("", "", ""), |a| {
        (a.uid.as_str(), a.namespace.as_str(), a.pod.as_str())
    });
    let duration_ms = took.as_secs_f64() * 1000.0;
    let outcome = outcome.as_str();
    if reason.is_some() {
        tracing::warn!(
            uid,
            namespace,
            pod,
            outcome,
            reason,
            duration_ms,
            message,
            "admission request"
        );
    } else {
        tracing::info!(
            uid,
            namespace,
            pod,
            outcome,
            duration_ms,
            message,
            "admission request"
        );
    }
}
