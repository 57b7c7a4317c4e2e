//! TLS on loopback: [`TestCa`], a certificate authority made for the test
//! with the `openssl` command (its certificate, and a server certificate for
//! `localhost` and `127.0.0.1` that it signed), and [`TlsFront`], a TLS
//! terminator on `127.0.0.1:0` in front of any plain server (the fake STS,
//! moto), so rolecall's real HTTPS client, rustls and its trust store, runs
//! in the tests exactly as it does against AWS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA and a server certificate it signed, in a temporary directory.
pub struct TestCa {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (make test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new CA (`ca.pem`) and a server certificate (`server.pem`,
    /// `server.key`) for `localhost` and `127.0.0.1`, valid for a day;
    /// `subject` names the CA (two CAs of one test differ by it).
    pub fn new(subject: &str) -> TestCa {
        TestCa::for_names(subject, &[])
    }

    /// [`TestCa::new`] whose server certificate also names `names` (hosts a
    /// test proxy maps to loopback, such as STS's FIPS host).
    pub fn for_names(subject: &str, names: &[&str]) -> TestCa {
        let dir = tempfile::tempdir().expect("tempdir");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca_subject = format!("/CN={subject}");
        let mut args = vec!["req", "-x509", "-days", "1", "-subj", &ca_subject];
        args.extend(ec);
        args.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir.path(), &args);
        let mut args = vec!["req", "-subj", "/CN=localhost"];
        args.extend(ec);
        args.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(dir.path(), &args);
        std::fs::write(
            dir.path().join("server.ext"),
            format!(
                "subjectAltName=DNS:localhost,IP:127.0.0.1{}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                names
                    .iter()
                    .map(|n| format!(",DNS:{n}"))
                    .collect::<String>()
            ),
        )
        .unwrap();
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        TestCa { dir }
    }

    /// The CA's certificate (PEM): what `ca_bundle` points at.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM) the CA signed: what a TLS server of
    /// the test serves (the webhook's `--tls-cert-file`).
    pub fn server_pem(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server certificate's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    fn server_config(&self) -> rustls::ServerConfig {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.dir.path().join("server.pem"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(self.dir.path().join("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate")
    }
}

/// TLS on `127.0.0.1:0`, each connection decrypted and relayed to
/// `backend`, on its own thread (so it serves while a test's runtime is
/// paused or blocked). Stops when dropped.
pub struct TlsFront {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TlsFront {
    pub fn start(backend: SocketAddr, ca: &TestCa) -> TlsFront {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                        _ = &mut stopped => return,
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        // A refused handshake (the client does not trust the
                        // CA) just ends the connection, as a real server's.
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        TlsFront {
            addr,
            stop: Some(stop),
        }
    }

    /// `https://localhost:PORT`, for `--sts-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
