//! [`Moto`]: moto's STS server (`make venv` installs it) on a free loopback
//! port, for the tests and benchmarks that run against a real STS
//! implementation.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The Python virtualenv with moto, the AWS CLI and boto3: `$ROLECALL_VENV`,
/// or `.venv` in the repository.
pub fn venv() -> PathBuf {
    match std::env::var_os("ROLECALL_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"),
    }
}

/// `venv()/bin/NAME`; panics, saying to run `make venv`, when it is missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make venv` (or set ROLECALL_VENV) first",
        path.display()
    );
    path
}

/// moto's server on a free loopback port, its log in a temporary
/// directory; killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `venv/bin/moto_server` and waits (at most 30 s) until it listens.
    pub fn start(venv: &Path) -> Moto {
        let bin = venv.join("bin/moto_server");
        let dir = tempfile::Builder::new()
            .prefix("rolecall-moto-")
            .tempdir()
            .expect("moto temp dir");
        let log = dir.path().join("moto.log");
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(File::create(&log).expect("moto log"))
            .stderr(File::create(&log).expect("moto log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {} (run make venv): {e}", bin.display()));
        let mut moto = Moto {
            child,
            port,
            log,
            _dir: dir,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let exited = moto.child.try_wait().ok().flatten();
            if exited.is_none()
                && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            {
                return moto;
            }
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "moto_server did not listen on {addr} within 30 s (exited: {exited:?}); log:\n{}",
                    std::fs::read_to_string(&moto.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("moto_server pid {} on port {}", self.child.id(), self.port);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
