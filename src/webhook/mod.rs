//! `rolecall webhook`: a mutating admission webhook over the same core as
//! `rolecall inject` (docs/WEBHOOK.md). A Pod CREATE that
//! opted in with the `rolecall.dev/inject` label is answered with the JSON
//! Patch from the pod to [`crate::inject::inject`]'s pod.
//!
//! - `review` answers one AdmissionReview, `patch` writes the JSON Patch
//!   (both pure);
//! - `server` is the HTTPS listener, `certs` its certificate and key,
//!   reloaded when they change; `metrics` its Prometheus series, served
//!   with `/livez` and `/readyz` on the plain health listener.

mod certs;
mod metrics;
pub mod patch;
pub mod review;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::LogFormat;
use metrics::WebhookMetrics;

/// How long requests in flight may take to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Exit codes.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 64;
pub const EXIT_UNREADABLE: u8 = 66;

/// The webhook's flags, each also read from its environment variable.
#[derive(clap::Args, Debug)]
pub struct Flags {
    /// The HTTPS address of the admission endpoint (POST /mutate)
    #[arg(
        long,
        value_name = "ADDR",
        env = "ROLECALL_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: String,
    /// The serving certificate chain, PEM (reloaded when it changes)
    #[arg(long, value_name = "PATH", env = "ROLECALL_WEBHOOK_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The serving certificate's private key, PEM (reloaded when it changes)
    #[arg(long, value_name = "PATH", env = "ROLECALL_WEBHOOK_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// The plain HTTP address of /livez, /readyz and /metrics
    #[arg(
        long,
        value_name = "ADDR",
        env = "ROLECALL_WEBHOOK_HEALTH_ADDR",
        default_value = "0.0.0.0:9911"
    )]
    pub health_addr: String,
    /// The rolecall image injected, unless a pod's rolecall.dev/image names one [default: localhost/rolecall:dev]
    #[arg(long, value_name = "IMAGE", env = "ROLECALL_WEBHOOK_IMAGE")]
    pub image: Option<String>,
    /// Log format: text or json
    #[arg(
        long,
        value_name = "FORMAT",
        env = "ROLECALL_WEBHOOK_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: String,
}

/// The flags, checked.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub health_addr: SocketAddr,
    files: certs::Files,
    pub image: Option<String>,
    pub log_format: LogFormat,
}

/// Checks every flag; every problem at once.
pub fn check(flags: &Flags) -> Result<Settings, Vec<String>> {
    let mut problems = Vec::new();
    let mut addr = |flag: &str, text: &str| match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!("--{flag} {text:?} is not an address (IP:PORT)"));
            None
        }
    };
    let listen = addr("listen", &flags.listen);
    let health_addr = addr("health-addr", &flags.health_addr);
    if listen.is_some() && listen == health_addr {
        problems.push("--listen and --health-addr must differ".into());
    }
    let mut file = |flag: &str, env: &str, path: &Option<PathBuf>| match path {
        Some(p) if !p.as_os_str().is_empty() => Some(p.clone()),
        _ => {
            problems.push(format!("--{flag} (or {env}) is required"));
            None
        }
    };
    let cert = file(
        "tls-cert-file",
        "ROLECALL_WEBHOOK_TLS_CERT_FILE",
        &flags.tls_cert_file,
    );
    let key = file(
        "tls-key-file",
        "ROLECALL_WEBHOOK_TLS_KEY_FILE",
        &flags.tls_key_file,
    );
    let image = match flags.image.as_deref().map(str::trim) {
        Some("") => {
            problems.push("--image must not be empty".into());
            None
        }
        Some(i) if i.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            problems.push(format!("--image {i:?} is not an image reference"));
            None
        }
        i => i.map(String::from),
    };
    let log_format = match flags.log_format.as_str() {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        other => {
            problems.push(format!("--log-format {other:?} is neither text nor json"));
            None
        }
    };
    match (listen, health_addr, cert, key, log_format) {
        (Some(listen), Some(health_addr), Some(cert), Some(key), Some(log_format))
            if problems.is_empty() =>
        {
            Ok(Settings {
                listen,
                health_addr,
                files: certs::Files { cert, key },
                image,
                log_format,
            })
        }
        _ => Err(problems),
    }
}

/// Runs the webhook until SIGTERM/SIGINT; the exit code.
pub fn run(settings: Settings) -> u8 {
    let rust_log = std::env::var("RUST_LOG").ok();
    crate::logging::init(settings.log_format, rust_log.as_deref());
    let (pair, dc, dk) = match certs::load(&settings.files) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("rolecall: {e}");
            return match e {
                certs::PairError::Unreadable(_) => EXIT_UNREADABLE,
                certs::PairError::Invalid(_) => EXIT_USAGE,
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rolecall: cannot start the runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    runtime.block_on(async move {
        match serve(settings, pair, (dc, dk)).await {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("rolecall: {e}");
                EXIT_FAILURE
            }
        }
    })
}

async fn serve(
    s: Settings,
    pair: Arc<rustls::sign::CertifiedKey>,
    digests: (u64, u64),
) -> Result<(), String> {
    let metrics = WebhookMetrics::new();
    metrics.set_not_after(&pair);
    let limits = crate::metrics::Metrics::new();
    let current = certs::Current::new(pair);
    let config = certs::server_config(current.clone())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = stop_on_signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let hard = CancellationToken::new();
    let (health, shared_limits) = (metrics.clone(), limits.clone());
    let (health_addr, _) = crate::http::serve(
        s.health_addr,
        move |req| health_answer(req, &health, &shared_limits),
        limits.clone(),
        hard.clone(),
    )
    .await
    .map_err(|e| format!("cannot listen on {}: {e}", s.health_addr))?;
    tokio::spawn(certs::reload(
        s.files.clone(),
        digests,
        current,
        metrics.clone(),
        limits.clone(),
        hard.clone(),
    ));
    let shared = Arc::new(server::Shared {
        opts: crate::inject::Options { image: s.image },
        metrics: metrics.clone(),
        limits,
    });
    let (alive, mut closed) = mpsc::channel::<()>(1);
    let accept = tokio::spawn(server::serve(
        listener,
        acceptor,
        shared,
        stop.clone(),
        hard.clone(),
        alive,
    ));
    metrics.set_ready(true);
    tracing::info!(listen = %listen, health_addr = %health_addr, "webhook serving");
    stop.cancelled().await;
    metrics.set_ready(false);
    let _ = accept.await;
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, closed.recv())
        .await
        .is_ok();
    hard.cancel();
    if finished {
        tracing::info!("webhook stopped");
    } else {
        tracing::warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "webhook stopped; requests still in flight were cut"
        );
    }
    Ok(())
}

/// A token cancelled by the first SIGTERM or SIGINT.
fn stop_on_signals() -> std::io::Result<CancellationToken> {
    use futures_util::StreamExt;
    use signal_hook::consts::signal::{SIGINT, SIGTERM};
    let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT])?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        if let Some(sig) = signals.next().await {
            tracing::info!(signal = sig, "stopping");
            token.cancel();
        }
    });
    Ok(stop)
}

/// The webhook's series, with the two of the sidecar's registry that its
/// listeners and watchers feed: `rolecall_limit_reached_total` and
/// `rolecall_watch_polling`.
fn exposition(m: &WebhookMetrics, limits: &crate::metrics::Metrics) -> String {
    let mut out = m.encode();
    let shared: String = limits
        .encode(false)
        .lines()
        .filter(|l| l.contains("rolecall_limit_reached") || l.contains("rolecall_watch_polling"))
        .map(|l| format!("{l}\n"))
        .collect();
    match out.rfind("# EOF") {
        Some(at) => out.insert_str(at, &shared),
        None => out.push_str(&shared),
    }
    out
}

/// `/livez`, `/readyz` (ready while a certificate is served and the
/// webhook is not stopping) and `/metrics`.
fn health_answer(
    req: &Request<hyper::body::Incoming>,
    m: &WebhookMetrics,
    limits: &crate::metrics::Metrics,
) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/livez" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if m.ready() => (StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
        "/metrics" => (StatusCode::OK, exposition(m, limits)),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests;
