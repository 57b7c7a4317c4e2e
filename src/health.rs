//! `/livez`, `/readyz` and `/metrics` on the health listener.
//!
//! `/readyz` answers 200 once every profile holds an unexpired session
//! where the application reads it (the files of every output set that
//! holds it, as last written, or the endpoint) and the last write of the
//! outputs succeeded ([`Shared::not_ready`]), else 503 with one line per
//! profile that is not
//! ready (its last error, never a secret) — a `startupProbe` on it makes the
//! application container start only after its credentials exist.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::state::{Readiness, Shared};

/// The health server's view of the process.
pub struct Health {
    pub shared: Arc<Shared>,
    pub metrics: Metrics,
    /// True while the supervisor loop runs.
    pub live: Readiness,
    /// Wall time: which sessions are live.
    pub clock: Clock,
}

impl Health {
    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        match req.uri().path() {
            "/livez" | "/healthz" => {
                if self.live.get() {
                    text(StatusCode::OK, "ok\n".into())
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into())
                }
            }
            "/readyz" => {
                let not_ready = self.shared.not_ready(self.clock.now());
                if not_ready.is_empty() {
                    text(StatusCode::OK, "ready\n".into())
                } else {
                    let mut body = String::from("not ready:\n");
                    for (name, why) in not_ready {
                        body.push_str(&format!("{name}: {why}\n"));
                    }
                    text(StatusCode::SERVICE_UNAVAILABLE, body)
                }
            }
            "/metrics" => {
                // rolecall_ready: the same function /readyz answers.
                let ready = self.shared.not_ready(self.clock.now()).is_empty();
                let body = self.metrics.encode(ready);
                let mut r = text(StatusCode::OK, body);
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /livez, /readyz, /metrics\n".into(),
            ),
        }
    }
}

pub(crate) fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Binds `addr` now (so a bad address fails start-up), then serves until
/// `shutdown` in a background task.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let metrics = health.metrics.clone();
    crate::http::serve(addr, move |req| health.respond(req), metrics, shutdown).await
}
