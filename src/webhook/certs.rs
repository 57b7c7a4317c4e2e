//! The serving certificate: read from two PEM files (cert-manager's
//! Secret mount: kubelet's `..data` layout, followed through its symlinks),
//! handed to rustls through [`Current`], and swapped when the files change
//! ([`reload`]) without a restart. A new pair that does not load is logged
//! and counted, and the pair in use stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::metrics::WebhookMetrics;
use crate::fsread::{Change, Follow, ReadError, Tracker, read};
use crate::watch::{FileEvents, POLL_INTERVAL};

/// The largest certificate or key file read.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why a pair did not load.
#[derive(Debug)]
pub enum PairError {
    /// A file could not be read (exit 66 at start).
    Unreadable(String),
    /// The files were read but are not a usable pair (exit 64 at start).
    Invalid(String),
}

impl std::fmt::Display for PairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PairError::Unreadable(m) | PairError::Invalid(m) => f.write_str(m),
        }
    }
}

/// The two files.
#[derive(Clone, Debug)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, PairError> {
    read(path, MAX_PEM_BYTES, Follow::Yes)
        .map_err(|e: ReadError| PairError::Unreadable(format!("{what} {} {e}", path.display())))
}

/// Reads and loads the pair (at start).
pub fn load(files: &Files) -> Result<(Arc<CertifiedKey>, u64, u64), PairError> {
    let cert = read_file(&files.cert, "TLS certificate file")?;
    let key = read_file(&files.key, "TLS key file")?;
    let pair = parse(files, &cert, &key)?;
    Ok((
        pair,
        crate::fsread::digest(&cert),
        crate::fsread::digest(&key),
    ))
}

/// The certificate chain and key in PEM, checked to belong together.
/// Messages never hold the key's bytes.
pub fn parse(files: &Files, cert: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, PairError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            PairError::Invalid(format!(
                "TLS certificate file {} is not PEM: {e}",
                files.cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(PairError::Invalid(format!(
            "TLS certificate file {} holds no CERTIFICATE block",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
        PairError::Invalid(format!(
            "TLS key file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            files.key.display()
        ))
    })?;
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| {
            PairError::Invalid(format!(
                "TLS certificate {} and key {} do not make a pair: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })
}

/// The pair rustls serves: the latest that loaded.
#[derive(Debug)]
pub struct Current(RwLock<Arc<CertifiedKey>>);

impl Current {
    pub fn new(pair: Arc<CertifiedKey>) -> Arc<Current> {
        Arc::new(Current(RwLock::new(pair)))
    }

    fn set(&self, pair: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = pair;
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// rustls' configuration: TLS 1.2 and 1.3, HTTP/1.1, the pair [`Current`] holds.
pub fn server_config(current: Arc<Current>) -> Result<rustls::ServerConfig, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(current);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Watches both files' directories until `shutdown` and swaps the pair
/// in `current` when either file's bytes change and the new pair loads.
pub async fn reload(
    files: Files,
    digests: (u64, u64),
    current: Arc<Current>,
    metrics: WebhookMetrics,
    watch_metrics: crate::metrics::Metrics,
    shutdown: CancellationToken,
) {
    let mut cert_events = FileEvents::new(&files.cert, "tls_cert", watch_metrics.clone());
    let mut key_events = FileEvents::new(&files.key, "tls_key", watch_metrics);
    let mut trackers = (
        Tracker::starting_from(&files.cert, MAX_PEM_BYTES, Some(digests.0)),
        Tracker::starting_from(&files.key, MAX_PEM_BYTES, Some(digests.1)),
    );
    loop {
        let more = tokio::select! {
            m = cert_events.next(POLL_INTERVAL, &shutdown) => m,
            m = key_events.next(POLL_INTERVAL, &shutdown) => m,
        };
        if !more {
            return;
        }
        let changed = [look(&mut trackers.0), look(&mut trackers.1)];
        if changed.iter().any(|c| matches!(c, Look::Changed)) {
            swap(&files, &current, &metrics);
        } else if let Some(why) = changed.into_iter().find_map(Look::failure) {
            tracing::warn!(error = %why, "TLS certificate or key cannot be read; serving the pair loaded before");
            metrics.count_reload(false);
        }
    }
}

enum Look {
    Same,
    Changed,
    Failed(String),
}

impl Look {
    fn failure(self) -> Option<String> {
        match self {
            Look::Failed(why) => Some(why),
            _ => None,
        }
    }
}

fn look(t: &mut Tracker) -> Look {
    match t.check() {
        Change::None | Change::Restored => Look::Same,
        Change::Content(_) => Look::Changed,
        Change::Unreadable(e) => Look::Failed(format!("{} {e}", t.path().display())),
    }
}

/// Loads the pair as the files are now; keeps the old one if it fails.
fn swap(files: &Files, current: &Current, metrics: &WebhookMetrics) {
    match load(files) {
        Ok((pair, _, _)) => {
            current.set(pair.clone());
            metrics.count_reload(true);
            metrics.set_not_after(&pair);
            tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
        }
        Err(e) => {
            metrics.count_reload(false);
            tracing::warn!(error = %e, "new TLS certificate or key not loaded; serving the pair loaded before");
        }
    }
}
