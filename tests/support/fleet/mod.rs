//! The fleet simulator of issue 14: N real `rolecall run` child processes,
//! P profiles each, against one [`FakeSts`] with an account-wide rate limit.
//!
//! Each sidecar has its own kubelet-style token directory ([`TokenDir`]), its
//! own output directory, profiles whose role ARNs name it
//! (`arn:aws:iam::111122223333:role/fleet-s{i}-p{j}`, see
//! [`stats::fleet_arn`]), no health listener (`ROLECALL_HEALTH_ADDR=""`), no
//! control socket, and logs at `info` to a file of its own (a thousand pipes
//! would need a thousand reader threads). The binary is
//! `ROLECALL_FLEET_BIN`, by default the debug build of this crate.
//!
//! Readiness is read from each sidecar's `status.json` (every profile has an
//! `expiration`), polled every [`POLL`]; a sidecar that exited (`try_wait`)
//! or logged a panic "gave up or crashed".
//!
//! Included by `tests/fleet.rs` only (`#[path]`), not by `support/mod.rs`,
//! so other test binaries do not compile it.
#![allow(dead_code)]

mod procfs;
mod report;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

pub use procfs::*;
pub use report::*;
pub use stats::*;

use crate::support::{
    CallOutcome, CallRecord, ChildSidecar, FakeSts, TokenDir, base_args, parse_utc, valid_jwt,
};

/// How often readiness and exits are polled (status.json of the sidecars
/// not yet ready: one small read each).
pub const POLL: Duration = Duration::from_millis(150);

/// The rolecall binary the fleet runs: `ROLECALL_FLEET_BIN`, or the debug
/// build Cargo made for this test.
pub fn fleet_bin() -> PathBuf {
    std::env::var_os("ROLECALL_FLEET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rolecall")))
}

/// How the sidecars are started, like a Deployment rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Every pod at once (a new Deployment, a node pool scaled up, `kubectl
    /// rollout restart` with a surge of 100%).
    AllAtOnce,
    /// A RollingUpdate with `maxSurge` new pods: at most `max_surge`
    /// sidecars are started and not yet ready; each time one becomes ready
    /// the next one starts (the controller creates a new pod as soon as one
    /// of the surge is Available). A sidecar that exits leaves the window
    /// too (the controller would replace the pod; here it is counted as
    /// crashed). `maxUnavailable` plays no part: old pods hold no STS calls.
    Rolling { max_surge: usize },
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::AllAtOnce => write!(f, "all at once"),
            Start::Rolling { max_surge } => write!(f, "rolling, maxSurge {max_surge}"),
        }
    }
}

/// One sidecar of the fleet.
pub struct Sidecar {
    pub index: usize,
    _token: TokenDir,
    pub out: PathBuf,
    pub proc: ChildSidecar,
    pub started: Instant,
    pub ready: Option<Instant>,
    /// Its exit status, once it exited.
    pub exited: Option<String>,
}

/// What a sidecar's status.json says, counted over its profiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Profiles with credentials that are still valid.
    pub valid: usize,
    /// Profiles whose last refresh failed.
    pub failing: usize,
}

/// The fleet; every sidecar is killed when it is dropped.
pub struct Fleet {
    pub sts: FakeSts,
    pub p: usize,
    pub bin: PathBuf,
    pub sidecars: Vec<Sidecar>,
    /// When the first sidecar was started (the origin of every figure).
    pub t0: Instant,
    root: tempfile::TempDir,
    logs: PathBuf,
}

/// How the start-up went.
#[derive(Clone, Debug, Default)]
pub struct Startup {
    pub n: usize,
    /// From the first start until every sidecar was ready (None: not all).
    pub all_ready: Option<Duration>,
    pub ready: usize,
    pub exited: usize,
    /// Per sidecar, from its own start until ready (seconds).
    pub ready_after: Vec<f64>,
}

impl Fleet {
    /// An empty fleet of sidecars with `p` profiles each against `sts`,
    /// logging into `logs` (emptied first).
    pub fn new(sts: FakeSts, p: usize, logs: &Path) -> Fleet {
        raise_nofile_limit();
        let _ = std::fs::remove_dir_all(logs);
        std::fs::create_dir_all(logs).expect("fleet: create log dir");
        Fleet {
            sts,
            p,
            bin: fleet_bin(),
            sidecars: Vec::new(),
            t0: Instant::now(),
            root: tempfile::Builder::new()
                .prefix("rolecall-fleet-")
                .tempdir()
                .expect("fleet: temp dir"),
            logs: logs.to_owned(),
        }
    }

    fn command(&self, token: &TokenDir, out: &Path, i: usize) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOSTNAME", format!("fleet-{i}"))
            .env("ROLECALL_CONTROL_SOCKET", "")
            .env("ROLECALL_HEALTH_ADDR", "")
            .env("RUST_LOG", "info")
            .arg("run")
            .args(base_args(&self.sts, token, out));
        for j in 0..self.p {
            c.args(["--profile", &format!("p{j}={}", fleet_arn(i, j))]);
        }
        c
    }

    fn spawn_next(&mut self) {
        let i = self.sidecars.len();
        if i == 0 {
            self.t0 = Instant::now();
        }
        let token = TokenDir::new(&valid_jwt());
        let out = self.root.path().join(format!("s{i}"));
        std::fs::create_dir_all(&out).expect("fleet: output dir");
        let log = self.logs.join(format!("s{i}.log"));
        let proc = ChildSidecar::spawn_logging_to(&mut self.command(&token, &out, i), &log);
        self.sidecars.push(Sidecar {
            index: i,
            _token: token,
            out,
            proc,
            started: Instant::now(),
            ready: None,
            exited: None,
        });
    }

    /// Starts `n` sidecars as `start` says and waits until every one is
    /// ready, or none can become ready any more, or `limit` has passed.
    pub fn start(&mut self, n: usize, start: Start, limit: Duration) -> Startup {
        let window = match start {
            Start::AllAtOnce => n,
            Start::Rolling { max_surge } => max_surge.max(1),
        };
        let deadline = Instant::now() + limit;
        loop {
            let pending = self
                .sidecars
                .iter()
                .filter(|s| s.ready.is_none() && s.exited.is_none())
                .count();
            for _ in pending..window {
                if self.sidecars.len() < n {
                    self.spawn_next();
                }
            }
            self.poll();
            let done = self.sidecars.len() == n
                && self
                    .sidecars
                    .iter()
                    .all(|s| s.ready.is_some() || s.exited.is_some());
            if done || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        let ready_at: Vec<Instant> = self.sidecars.iter().filter_map(|s| s.ready).collect();
        let ready = ready_at.len();
        Startup {
            n,
            all_ready: (ready == n)
                .then(|| ready_at.iter().max().map(|t| *t - self.t0))
                .flatten(),
            ready,
            exited: self.exited(),
            ready_after: self
                .sidecars
                .iter()
                .filter_map(|s| s.ready.map(|r| (r - s.started).as_secs_f64()))
                .collect(),
        }
    }

    /// Notes exits, and readiness of the sidecars not yet ready.
    pub fn poll(&mut self) {
        let p = self.p;
        for s in &mut self.sidecars {
            if s.exited.is_none()
                && let Ok(Some(status)) = s.proc.child.try_wait()
            {
                s.exited = Some(status.to_string());
            }
            if s.ready.is_none() && s.exited.is_none() && health(&s.out).valid == p {
                s.ready = Some(Instant::now());
            }
        }
    }

    /// Sidecars that exited so far.
    pub fn exited(&self) -> usize {
        self.sidecars.iter().filter(|s| s.exited.is_some()).count()
    }

    /// Every sidecar's [`Health`], summed: profiles with valid credentials
    /// and profiles whose last refresh failed.
    pub fn health(&self) -> Health {
        self.sidecars
            .iter()
            .map(|s| health(&s.out))
            .fold(Health::default(), |a, h| Health {
                valid: a.valid + h.valid,
                failing: a.failing + h.failing,
            })
    }

    /// CPU seconds and `(Pss, Rss)` KiB summed over the live sidecars, and
    /// how many are alive.
    pub fn resources(&self) -> Resources {
        let mut r = Resources::default();
        for s in &self.sidecars {
            if s.exited.is_some() {
                continue;
            }
            let pid = s.proc.pid();
            if let (Some(cpu), Some((pss, rss))) = (process_cpu_s(pid), process_mem_kib(pid)) {
                r.alive += 1;
                r.cpu_s += cpu;
                r.pss_kib += pss;
                r.rss_kib += rss;
            }
        }
        r.sts_cpu_s = own_threads_cpu_s("fake-sts");
        r.test_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        r
    }

    /// How many lines each sidecar has logged so far, in sidecar order:
    /// the difference of two calls is what it logged in between.
    pub fn log_lines(&self) -> Vec<usize> {
        self.sidecars
            .iter()
            .map(|s| s.proc.log().lines().count())
            .collect()
    }

    /// What the logs say: WARN and ERROR lines, panics, and the most
    /// frequent WARN/ERROR messages (timestamps and fields stripped).
    pub fn logs(&self) -> LogSummary {
        let mut sum = LogSummary::default();
        let mut messages = std::collections::BTreeMap::<String, usize>::new();
        for s in &self.sidecars {
            let text = s.proc.log();
            for line in text.lines() {
                let level = if line.contains(" WARN ") {
                    &mut sum.warn
                } else if line.contains(" ERROR ") {
                    &mut sum.error
                } else {
                    if line.contains("panicked") {
                        sum.panics += 1;
                    }
                    continue;
                };
                *level += 1;
                *messages.entry(message_shape(line)).or_default() += 1;
            }
        }
        let mut top: Vec<(String, usize)> = messages.into_iter().collect();
        top.sort_by_key(|m| std::cmp::Reverse(m.1));
        top.truncate(6);
        sum.top = top;
        sum
    }
}

/// [`Fleet::resources`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Resources {
    pub alive: usize,
    pub cpu_s: f64,
    pub pss_kib: u64,
    pub rss_kib: u64,
    /// CPU of the fake STS's threads in the test process.
    pub sts_cpu_s: f64,
    /// Open descriptors of the test process (mostly the fake STS's
    /// keep-alive connections).
    pub test_fds: usize,
}

/// [`Fleet::logs`].
#[derive(Clone, Debug, Default)]
pub struct LogSummary {
    pub warn: usize,
    pub error: usize,
    pub panics: usize,
    pub top: Vec<(String, usize)>,
}

/// A log line without its timestamp and with `key=value` fields cut at
/// the first one, so that equal messages of different sidecars count once.
fn message_shape(line: &str) -> String {
    let rest = line.split_once(' ').map_or(line, |(_, r)| r).trim_start();
    let cut = rest
        .find('=')
        .map_or(rest.len(), |eq| rest[..eq].rfind(' ').unwrap_or(eq));
    rest[..cut].chars().take(160).collect()
}

/// What the status.json in `out` says (nothing yet: all zero).
pub fn health(out: &Path) -> Health {
    let Ok(status) = rolecall::status::read(out) else {
        return Health::default();
    };
    let now = SystemTime::now();
    let mut h = Health::default();
    for p in &status.profiles {
        if p.expiration.as_deref().is_some_and(|e| parse_utc(e) > now) {
            h.valid += 1;
        }
        if p.last_error.is_some() {
            h.failing += 1;
        }
    }
    h
}

/// The figures of the calls in `log` received in `[from, to)` seconds
/// after `t0`, for a fleet of `n` sidecars.
#[derive(Clone, Debug, Default)]
pub struct Calls {
    pub total: usize,
    pub accepted: usize,
    pub throttled: usize,
    pub other: usize,
    /// Calls (any outcome) per sidecar.
    pub per_sidecar: Spread,
    /// Attempts (accepted or not) in 1-s and 10-s bins.
    pub rate_1s: Rate,
    pub rate_10s: Rate,
    /// Accepted calls only, 1-s and 10-s bins.
    pub accepted_1s: Rate,
    pub accepted_10s: Rate,
}

impl Calls {
    pub fn of(log: &[CallRecord], t0: Instant, from: f64, to: f64, n: usize) -> Calls {
        let secs = |c: &CallRecord| c.at.saturating_duration_since(t0).as_secs_f64();
        let window: Vec<&CallRecord> = log
            .iter()
            .filter(|c| {
                let t = secs(c);
                t >= from && t < to && c.at >= t0
            })
            .collect();
        let mut per = vec![0u64; n];
        for c in &window {
            if let Some((i, _)) = parse_fleet_arn(&c.role_arn)
                && i < n
            {
                per[i] += 1;
            }
        }
        let all: Vec<f64> = window.iter().map(|c| secs(c)).collect();
        let ok: Vec<f64> = window
            .iter()
            .filter(|c| c.outcome == CallOutcome::Accepted)
            .map(|c| secs(c))
            .collect();
        let count = |o| window.iter().filter(|c| c.outcome == o).count();
        Calls {
            total: window.len(),
            accepted: count(CallOutcome::Accepted),
            throttled: count(CallOutcome::Throttled),
            other: count(CallOutcome::Other),
            per_sidecar: Spread::of(&per),
            rate_1s: Rate::of(&bins(&all, 1.0, from, to), 1.0),
            rate_10s: Rate::of(&bins(&all, 10.0, from, to), 10.0),
            accepted_1s: Rate::of(&bins(&ok, 1.0, from, to), 1.0),
            accepted_10s: Rate::of(&bins(&ok, 10.0, from, to), 10.0),
        }
    }
}
