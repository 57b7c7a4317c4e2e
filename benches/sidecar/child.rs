//! The sidecar under test as a child process, and moto's server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::*;
use crate::helpers::*;
use crate::procfs::*;
use crate::support::{TokenDir, free_port};
use crate::{REGION, SIGTERM, kill, send_signal};

pub(crate) struct Sidecar {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    pub(crate) out: tempfile::TempDir,
    pub(crate) health: SocketAddr,
    pub(crate) log: PathBuf,
    pub(crate) started: Instant,
}

/// A fresh, empty output directory for a [`Sidecar`].
pub(crate) fn output_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rolecall-bench-out-")
        .tempdir()
        .expect("output dir")
}

impl Sidecar {
    pub(crate) fn start(env: &Env, endpoint: &str, profiles: usize, token: &TokenDir) -> Sidecar {
        Sidecar::start_at(env, endpoint, profiles, &token.path())
    }

    /// [`Sidecar::start`] with the token at any path (any layout).
    pub(crate) fn start_at(env: &Env, endpoint: &str, profiles: usize, token: &Path) -> Sidecar {
        Sidecar::start_in(env, endpoint, profiles, token, output_dir())
    }

    /// [`Sidecar::start_at`] writing to `out` (from [`output_dir`]), which
    /// the caller may watch before the sidecar starts.
    pub(crate) fn start_in(
        env: &Env,
        endpoint: &str,
        profiles: usize,
        token: &Path,
        out: tempfile::TempDir,
    ) -> Sidecar {
        let log = out.path().with_extension("log");
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(&env.bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOSTNAME", "bench-pod")
            .env("ROLECALL_CONTROL_SOCKET", "")
            .arg("run")
            // File mode, as every row has measured it (the default, process
            // mode, also copies the binary into the output dir).
            .args(["--credentials", "file"])
            .arg("--token-file")
            .arg(token)
            .arg("--output-dir")
            .arg(out.path())
            .args(["--region", REGION, "--sts-endpoint", endpoint])
            .arg("--health-addr")
            .arg(health.to_string());
        for i in 1..=profiles {
            cmd.arg("--profile").arg(format!("p{i}={}", role(i)));
        }
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(&log).expect("log file"));
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", env.bin.display()));
        let pid = child.id();
        Sidecar {
            child,
            pid,
            out,
            health,
            log,
            started,
        }
    }

    pub(crate) fn credentials(&self) -> PathBuf {
        self.out.path().join("credentials")
    }

    pub(crate) fn keys(&self) -> BTreeMap<String, String> {
        keys_in(&self.credentials())
    }

    pub(crate) fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn fail(&mut self, what: &str) -> ! {
        let alive = self.alive();
        panic!(
            "{what} (rolecall pid {} alive: {alive}); its log:\n{}",
            self.pid,
            self.log_text()
        );
    }

    /// Waits until the credentials file holds `n` profiles; when it did.
    pub(crate) fn wait_written(&mut self, n: usize, every: Duration, limit: Duration) -> Instant {
        let path = self.credentials();
        let found = poll(limit, every, || {
            (keys_in(&path).len() >= n).then(Instant::now)
        });
        match found {
            Some(t) => t,
            None => self.fail(&format!("{n} profiles not written within {limit:?}")),
        }
    }

    /// Waits until every profile in `before` has a different access key.
    pub(crate) fn wait_all_changed(
        &mut self,
        before: &BTreeMap<String, String>,
        every: Duration,
        limit: Duration,
    ) -> Instant {
        let path = self.credentials();
        let found = poll(limit, every, || {
            let now = keys_in(&path);
            before
                .iter()
                .all(|(p, k)| now.get(p).is_some_and(|n| n != k))
                .then(Instant::now)
        });
        match found {
            Some(t) => t,
            None => self.fail(&format!("not every profile was rewritten within {limit:?}")),
        }
    }

    pub(crate) fn metrics(&mut self) -> String {
        match http_get(self.health, "/metrics") {
            Some(m) => m,
            None => self.fail("GET /metrics failed"),
        }
    }

    pub(crate) fn signal(&self, sig: i32) {
        send_signal(self.pid as i32, sig);
    }

    pub(crate) fn mem(&self) -> Mem {
        proc_mem(self.pid)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = send_signal_quiet(self.pid as i32, SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub(crate) fn send_signal_quiet(pid: i32, sig: i32) -> bool {
    // SAFETY: as in send_signal.
    unsafe { kill(pid, sig) == 0 }
}
