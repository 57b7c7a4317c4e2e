//! TLS trust for STS calls: the platform's roots (read by
//! `rustls-native-certs`: `/etc/ssl/certs`, or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`), plus the certificates of an optional CA bundle
//! (`ca_bundle`, `AWS_CA_BUNDLE`) for a TLS-inspecting proxy or a private
//! STS endpoint; and naming a refused server certificate so the operator
//! knows what to fix.
//!
//! The bundle is read and checked when the configuration loads, exactly as
//! the HTTP client will use it (each PEM `CERTIFICATE` parsed and added to a
//! rustls root store): the client only parses it on its first connection,
//! and a bundle it cannot parse would stop the process there instead of
//! being a configuration error.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::fsread::{self, Follow, ReadError};

/// The largest bundle read: the whole Mozilla set is about 220 KB.
pub const MAX_CA_BUNDLE_BYTES: u64 = 1 << 20;

/// A checked CA bundle: its path, its PEM text and how many certificates it
/// holds. Public certificates only: nothing in it is secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub path: PathBuf,
    pem: Vec<u8>,
    pub certificates: usize,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

impl CaBundle {
    /// Reads and checks the bundle at `path` (followed if a symlink, as a
    /// ConfigMap or Secret mount is; a regular file only; capped at
    /// [`MAX_CA_BUNDLE_BYTES`]). The error says what is wrong.
    pub fn load(path: &Path) -> Result<CaBundle, String> {
        let pem = fsread::read(path, MAX_CA_BUNDLE_BYTES, Follow::Yes).map_err(|e| match e {
            ReadError::TooLarge { .. } => format!(
                "the CA bundle is larger than {} KiB: is this a CA bundle?",
                MAX_CA_BUNDLE_BYTES / 1024
            ),
            e => format!("cannot read the CA bundle: it {e}"),
        })?;
        let certificates = check_pem(&pem)?;
        Ok(CaBundle {
            path: path.to_owned(),
            pem,
            certificates,
        })
    }

    /// The PEM text, for the HTTP client's trust store.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

/// Checks `pem` as the HTTP client will read it; returns the number of
/// certificates.
pub fn check_pem(pem: &[u8]) -> Result<usize, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the CA bundle is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(
            "the CA bundle holds no certificate (expected PEM blocks beginning with -----BEGIN CERTIFICATE-----)"
                .into(),
        );
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            format!(
                "certificate {} of the CA bundle cannot be used as a trust anchor: {e}",
                i + 1
            )
        })?;
    }
    Ok(roots.len())
}

/// The certificate problem in `err`'s chain when the STS endpoint's
/// certificate was refused (an unknown issuer, an expired certificate, a
/// name that does not match), as rustls names it.
pub fn refused_certificate(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(rustls::Error::InvalidCertificate(c)) = e.downcast_ref::<rustls::Error>() {
            return Some(format!("{c:?}"));
        }
        // An `io::Error`'s payload is not its `source()`: hyper-rustls
        // nests the rustls error two `io::Error`s deep.
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_is_not_a_certificate_is_refused_with_the_reason() {
        assert!(check_pem(b"").unwrap_err().contains("no certificate"));
        assert!(
            check_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err()
                .contains("no certificate")
        );
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(
            check_pem(garbage)
                .unwrap_err()
                .contains("certificate 1 of the CA bundle"),
            "{:?}",
            check_pem(garbage)
        );
        let unterminated = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(check_pem(unterminated).is_err());
    }

    #[test]
    fn a_certificate_error_is_found_inside_nested_io_errors() {
        let rejection = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = std::io::Error::other(std::io::Error::other(rejection));
        assert_eq!(
            refused_certificate(&nested).as_deref(),
            Some("UnknownIssuer")
        );
        let other = std::io::Error::other(rustls::Error::DecryptError);
        assert_eq!(refused_certificate(&other), None);
        assert_eq!(refused_certificate(&std::io::Error::other("reset")), None);
    }

    #[test]
    fn a_missing_or_special_file_is_refused() {
        let e = CaBundle::load(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(e.starts_with("cannot read the CA bundle"), "{e}");
        let e = CaBundle::load(Path::new("/dev/null")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
