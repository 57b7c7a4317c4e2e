//! The small HTTP/1 server behind the health listener and the loopback
//! credentials endpoint.
//!
//! The health listener is reachable from the whole pod network, so every
//! connection is bounded (see docs/OPERATIONS.md, "Listener limits"):
//!
//! - a request's head must fit in [`MAX_BUF_SIZE`] bytes (else 431 and
//!   close), and arrive within [`HEADER_READ_TIMEOUT`] of the connection
//!   opening or going idle ([`IDLE_TIMEOUT`]); a connection lives at most
//!   [`MAX_CONNECTION_LIFETIME`];
//! - at most [`MAX_CONNECTIONS`] connections are open per listener. A new
//!   connection beyond that closes the *oldest* one: slow clients cannot lock
//!   out the kubelet's probes, whose requests are answered within
//!   milliseconds of connecting and so are never the oldest for long;
//! - the accept loop backs off on errors (at the descriptor limit, `accept`
//!   fails until a connection closes) from [`ACCEPT_BACKOFF_MIN`] to
//!   [`ACCEPT_BACKOFF_MAX`], and logs them once per
//!   [`LOG_INTERVAL`](crate::ratelimit::LOG_INTERVAL) with a count; a
//!   failure at the open-file limit names it (`hint`) and counts in
//!   `rolecall_limit_reached_total{site="listener"}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::ratelimit::{LOG_INTERVAL, LogLimit};
use crate::slots::{Slot, Slots};
use crate::sys::limits::Limit;

/// Largest request head (request line and headers) read, in bytes: hyper's
/// minimum buffer. Probes, scrapes and SDK calls to the endpoint send well
/// under 1 KiB; hyper answers 431 to more.
pub const MAX_BUF_SIZE: usize = 8192;
/// Time a client has to send a whole request head, from the moment its
/// connection is accepted.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a kept-alive connection may wait for its next request. hyper 1.x
/// restarts the header-read timer as soon as a response is sent (see
/// `State::idle` in hyper's `proto/h1/conn.rs`), so this is the same timer.
/// (Named for the tests and the docs; the code sets only the header timer.)
#[cfg_attr(not(test), allow(dead_code))]
pub const IDLE_TIMEOUT: Duration = HEADER_READ_TIMEOUT;
/// Longest life of one connection, whatever it does: bounds a client that
/// keeps a connection busy, or stops reading its responses. At the end, a
/// connection finishes the response it is writing, for at most
/// [`LIFETIME_GRACE`].
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// See [`MAX_CONNECTION_LIFETIME`].
pub const LIFETIME_GRACE: Duration = Duration::from_secs(1);
/// Connections open at once, per listener. Each costs a descriptor and at
/// most a few tens of KiB; the process needs about 20 descriptors besides.
pub const MAX_CONNECTIONS: usize = 64;
/// First wait after a failed `accept`; doubled on each failure in a row.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait after a failed `accept`.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The wait after a failed `accept`, given the previous wait in this run of
/// failures (`None` after a success).
pub fn accept_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(ACCEPT_BACKOFF_MIN, |p| (p * 2).min(ACCEPT_BACKOFF_MAX))
}

/// hyper's settings for every connection: see the module docs (also the
/// webhook's HTTPS listener's).
pub(crate) fn builder() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE);
    b
}

/// Binds `addr` now (so a bad address fails start-up), then answers every
/// request with `handler` until `shutdown`, in a background task, within the
/// limits of the module docs. An accept that fails at a limit of the
/// process or node is counted in `metrics`.
pub async fn serve<H>(
    addr: SocketAddr,
    handler: H,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    H: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    serve_with_cap(addr, handler, metrics, shutdown, MAX_CONNECTIONS).await
}

async fn serve_with_cap<H>(
    addr: SocketAddr,
    handler: H,
    metrics: Metrics,
    shutdown: CancellationToken,
    cap: usize,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    H: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handler = Arc::new(handler);
    let builder = Arc::new(builder());
    let slots = Slots::new(cap);
    let task = tokio::spawn(async move {
        let accept_log = LogLimit::new(LOG_INTERVAL);
        let evict_log = LogLimit::new(LOG_INTERVAL);
        let mut backoff = None;
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.cancelled() => return,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => {
                    backoff = None;
                    stream
                }
                Err(e) => {
                    let wait = accept_backoff(backoff);
                    backoff = Some(wait);
                    let limit = Limit::of(&e);
                    if let Some(limit) = limit {
                        metrics.count_limit_reached(limit, "listener");
                    }
                    if let Some(suppressed) = accept_log.admit() {
                        let hint = limit.map(Limit::hint);
                        tracing::warn!(
                            error = %e,
                            addr = %local,
                            suppressed,
                            retry_in_ms = wait.as_millis() as u64,
                            open_connections = slots.len(),
                            hint = hint.as_deref(),
                            "accept failed"
                        );
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            // HTTP connections never call `working`: one is always closable.
            let Some(admitted) = slots.admit(&shutdown) else {
                continue;
            };
            let slot = admitted.slot;
            if admitted.closed_oldest
                && let Some(suppressed) = evict_log.admit()
            {
                tracing::warn!(
                    addr = %local,
                    limit = slots.cap(),
                    suppressed,
                    "connection limit reached; closed the oldest connection"
                );
            }
            tokio::spawn(serve_connection(
                stream,
                handler.clone(),
                builder.clone(),
                slot,
            ));
        }
    });
    Ok((local, task))
}

/// Serves one connection until it ends, its slot is taken back (the
/// connection limit) or it reaches [`MAX_CONNECTION_LIFETIME`] (then a
/// graceful shutdown of at most [`LIFETIME_GRACE`]).
async fn serve_connection<H>(
    stream: tokio::net::TcpStream,
    handler: Arc<H>,
    builder: Arc<hyper::server::conn::http1::Builder>,
    slot: Slot,
) where
    H: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let r = handler(&req);
        async move { Ok::<_, Infallible>(r) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = slot.close.cancelled() => {}
        _ = tokio::time::sleep(MAX_CONNECTION_LIFETIME) => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = slot.close.cancelled() => {}
                _ = tokio::time::sleep(LIFETIME_GRACE) => {}
            }
        }
    }
    drop(slot);
}

#[cfg(test)]
mod tests;
