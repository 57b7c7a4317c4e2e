//! The webhook's test harness: [`Webhook`] (the real binary on loopback),
//! [`CertDir`] (a Secret volume as kubelet lays it out: `tls.crt` and
//! `tls.key` links into `..data`, swapped atomically), [`https`] (a raw
//! HTTP/1.1 request over rustls) and [`apply`] (a small RFC 6902 applier
//! over ordered values, so key order is compared too).

use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::support::{ChildSidecar, TestCa, free_port, http_get, rolecall_command};

/// A Secret volume with `tls.crt` and `tls.key`.
pub struct CertDir {
    dir: tempfile::TempDir,
    generation: std::cell::Cell<u32>,
}

impl CertDir {
    pub fn new(ca: &TestCa) -> CertDir {
        let d = CertDir {
            dir: tempfile::tempdir().unwrap(),
            generation: std::cell::Cell::new(0),
        };
        d.rotate(ca);
        symlink("..data/tls.crt", d.cert()).unwrap();
        symlink("..data/tls.key", d.key()).unwrap();
        d
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Publishes `ca`'s server certificate and key.
    pub fn rotate(&self, ca: &TestCa) {
        let cert = std::fs::read(ca.server_pem()).unwrap();
        let key = std::fs::read(ca.server_key()).unwrap();
        self.rotate_raw(&cert, &key);
    }

    /// Publishes these bytes, as kubelet's AtomicWriter: a new data
    /// directory, `..data_tmp` pointing at it, renamed over `..data`.
    pub fn rotate_raw(&self, cert: &[u8], key: &[u8]) {
        let n = self.generation.get() + 1;
        self.generation.set(n);
        let data = format!("..2026_12_07_20_00_00.{n}");
        let dir = self.dir.path();
        std::fs::create_dir(dir.join(&data)).unwrap();
        std::fs::write(dir.join(&data).join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join(&data).join("tls.key"), key).unwrap();
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    }
}

/// `rolecall webhook` on two free loopback ports, ready.
pub struct Webhook {
    pub child: ChildSidecar,
    pub addr: SocketAddr,
    pub health: u16,
    pub certs: CertDir,
    ca_pem: PathBuf,
    _ca: Option<TestCa>,
}

/// The command line of `rolecall webhook` for `certs`, on `listen` and
/// `health` (JSON logs).
pub fn command(certs: &CertDir, listen: u16, health: u16) -> std::process::Command {
    let mut c = rolecall_command();
    c.env("RUST_LOG", "info").args([
        "webhook",
        &format!("--listen=127.0.0.1:{listen}"),
        &format!("--health-addr=127.0.0.1:{health}"),
        "--log-format=json",
    ]);
    c.arg("--tls-cert-file").arg(certs.cert());
    c.arg("--tls-key-file").arg(certs.key());
    c
}

impl Webhook {
    /// With a CA of its own.
    pub fn start() -> Webhook {
        let ca = TestCa::new("webhook test CA");
        let certs = CertDir::new(&ca);
        let mut hook = Webhook::start_with(certs, &ca);
        hook._ca = Some(ca);
        hook
    }

    /// Serving `certs`, whose certificate `ca` signed.
    pub fn start_with(certs: CertDir, ca: &TestCa) -> Webhook {
        for _ in 0..5 {
            let listen = free_port();
            let health = std::iter::repeat_with(free_port)
                .find(|p| *p != listen)
                .unwrap();
            let mut child = ChildSidecar::spawn(&mut command(&certs, listen, health));
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while child.running() && std::time::Instant::now() < deadline {
                if child.log().contains("webhook serving") {
                    return Webhook {
                        child,
                        addr: SocketAddr::from(([127, 0, 0, 1], listen)),
                        health,
                        certs,
                        ca_pem: ca.ca_pem(),
                        _ca: None,
                    };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // A port taken meanwhile: try others.
            assert!(child.log().contains("cannot listen"), "{}", child.log());
        }
        panic!("the webhook never started");
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.ca_pem.clone()
    }

    pub fn log(&self) -> String {
        self.child.log()
    }

    /// A series' value as /metrics shows it (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let port = self.health;
        let text = std::thread::spawn(move || {
            crate::support::http_get_blocking(port, "/metrics").map(|(_, body)| body)
        })
        .join()
        .unwrap()
        .unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// `GET path` on the health listener.
    pub async fn health_get(&self, path: &str) -> (u16, String) {
        http_get(self.health, path, None).await
    }
}

/// Waits (on the wall clock: the webhook is another process) until `f`.
pub async fn wait_for(mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: webhook\r\nConnection: close\r\n\r\n").into_bytes()
}

/// What a request over TLS got.
#[derive(Debug)]
pub struct Reply {
    /// 0 when the handshake failed or nothing came back.
    pub status: u16,
    pub body: Vec<u8>,
    /// The server's certificate (DER).
    pub peer: Vec<u8>,
}

pub fn connector(cas: &[PathBuf]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The TLS stream to `addr`, trusting `cas`; `None` if the handshake fails.
pub async fn tls(
    addr: SocketAddr,
    cas: &[PathBuf],
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector(cas).connect(name, tcp).await.ok()
}

/// Sends `request` (raw bytes) over TLS and reads the answer to its end.
pub async fn https(addr: SocketAddr, cas: &[PathBuf], request: &[u8]) -> Reply {
    let Some(mut s) = tls(addr, cas).await else {
        return Reply {
            status: 0,
            body: Vec::new(),
            peer: Vec::new(),
        };
    };
    let peer = s
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let _ = s.write_all(request).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "no answer within 30 s");
    let (status, body) = parse(&raw);
    Reply {
        status,
        body,
        peer: peer.unwrap_or_default(),
    }
}

/// A raw HTTP/1.1 response's status and body.
pub fn parse(raw: &[u8]) -> (u16, Vec<u8>) {
    let status = std::str::from_utf8(raw.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| raw[i + 4..].to_vec())
        .unwrap_or_default();
    (status, body)
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Applies an RFC 6902 patch (add, remove, replace) to `doc`.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, String> {
    let mut doc = doc.clone();
    for op in patch.as_sequence().ok_or("a patch is an array")? {
        let kind = op["op"].as_str().ok_or("op")?;
        let path = op["path"].as_str().ok_or("path")?;
        let (parent, last) = match path.rsplit_once('/') {
            Some(split) => split,
            None if path.is_empty() && kind == "replace" => {
                doc = op["value"].clone();
                continue;
            }
            None => return Err(format!("bad path {path:?}")),
        };
        let mut target = &mut doc;
        for token in parent.split('/').skip(1) {
            let token = unescape(token);
            target = match target {
                Value::Mapping(m) => m.get_mut(token.as_str()).ok_or(format!("no {path}"))?,
                Value::Sequence(s) => {
                    let i: usize = token.parse().map_err(|_| format!("index {token}"))?;
                    s.get_mut(i).ok_or(format!("no {path}"))?
                }
                _ => return Err(format!("{path}: not a container")),
            };
        }
        let last = unescape(last);
        let value = op.get("value").cloned();
        match (target, kind) {
            (Value::Mapping(m), "add") => {
                m.insert(Value::String(last), value.ok_or("add without value")?);
            }
            (Value::Mapping(m), "replace") => {
                let slot = m
                    .get_mut(last.as_str())
                    .ok_or(format!("replace of missing {path}"))?;
                *slot = value.ok_or("replace without value")?;
            }
            (Value::Mapping(m), "remove") => {
                m.shift_remove(last.as_str())
                    .ok_or(format!("remove of missing {path}"))?;
            }
            (Value::Sequence(s), op) => {
                let v = value.clone();
                let i = if last == "-" {
                    s.len()
                } else {
                    last.parse().map_err(|_| "index")?
                };
                match op {
                    "add" if i <= s.len() => s.insert(i, v.ok_or("value")?),
                    "replace" if i < s.len() => s[i] = v.ok_or("value")?,
                    "remove" if i < s.len() => {
                        s.remove(i);
                    }
                    _ => return Err(format!("{op} {path}: out of range")),
                }
            }
            (_, op) => return Err(format!("{op} {path}: unsupported")),
        }
    }
    Ok(doc)
}
