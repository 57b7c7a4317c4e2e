//! `make bench`: the real rolecall binary, measured where users feel it.
//!
//! Starts the binary named by `ROLECALL_BIN` (the static release build, see
//! `scripts/bench.sh`) as a child process against the in-process fake STS of
//! the integration tests (exact call counts) and, for start-up time, against
//! moto's STS (`$ROLECALL_VENV/bin/moto_server`). It reads the child's
//! `/proc` files, prints a markdown table (row, figure, target, met?, the
//! command that reproduces the row) and writes it to
//! `target/bench/results.md`. `docs/BENCHMARKS.md` explains every row.
//!
//! ```text
//! ROLECALL_BIN=target/x86_64-unknown-linux-gnu/release/rolecall ROLECALL_VENV=.venv \
//!     cargo bench --bench sidecar -- [ROW...]
//! ```
//!
//! Rows: `rss size startup rotation idle idle-layouts sts-calls burst
//! compare` (all by default). `ROLECALL_BENCH_IDLE_SECS` (default 60) and
//! `ROLECALL_BENCH_STS_SECS` (default 60) shorten the two long windows;
//! `ROLECALL_BENCH_LAYOUT_SECS` (default 20) is the window per token layout.
//!
//! Every wait is on a condition with a deadline; the only fixed sleeps are
//! the measurement windows themselves (2 s of quiet before reading memory,
//! the idle and schedule windows).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{FakeSts, Reply, TEST_AUDIENCE, TEST_ISSUER, TEST_SUBJECT, TokenDir, free_port};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "eu-west-1";
const SIGKILL: i32 = 9;
const SIGUSR1: i32 = 10;
const SIGTERM: i32 = 15;

const ROWS: &[&str] = &[
    "rss",
    "size",
    "startup",
    "rotation",
    "idle",
    "idle-layouts",
    "sts-calls",
    "burst",
    "compare",
];

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

/// One line of the results table.
struct Line {
    row: &'static str,
    what: String,
    figure: String,
    target: String,
    met: Option<bool>,
}

#[derive(Default)]
struct Report {
    lines: Vec<Line>,
    /// Detail sections printed after the table (markdown).
    details: Vec<String>,
}

impl Report {
    fn line(
        &mut self,
        row: &'static str,
        what: impl Into<String>,
        figure: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        let line = Line {
            row,
            what: what.into(),
            figure: figure.into(),
            target: target.into(),
            met,
        };
        eprintln!(
            "   {}: {} — {} (target {}; {})",
            line.row,
            line.what,
            line.figure,
            line.target,
            met_text(line.met)
        );
        self.lines.push(line);
    }
}

fn met_text(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**NO**",
        None => "—",
    }
}

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

struct Env {
    bin: PathBuf,
    venv: PathBuf,
    static_build: bool,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"))
}

fn env_secs(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number of seconds")),
        Err(_) => default,
    }
}

/// The first `model name` of /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// True if the ELF file has no PT_INTERP program header (no dynamic loader).
fn elf_is_static(path: &Path) -> Option<bool> {
    let b = std::fs::read(path).ok()?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().ok()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?);
        if p_type == 3 {
            return Some(false);
        }
    }
    Some(true)
}

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

/// The memory lines of /proc/PID/status, in kB.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    shmem: u64,
    threads: u64,
}

fn proc_mem(pid: u32) -> Mem {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let mut m = Mem::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let n: u64 = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match key {
            "VmRSS" => m.rss = n,
            "VmHWM" => m.hwm = n,
            "RssAnon" => m.anon = n,
            "RssFile" => m.file = n,
            "RssShmem" => m.shmem = n,
            "Threads" => m.threads = n,
            _ => {}
        }
    }
    m
}

/// Fields of /proc/PID/stat after the command name (field 3 is index 0).
fn proc_stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

fn clock_ticks_ms() -> u64 {
    // USER_HZ is 100 on every Linux architecture that matters here.
    10
}

/// utime + stime of the process (all threads, living and dead) in ms, at
/// clock-tick (10 ms) resolution.
fn proc_cpu_ticks_ms(pid: u32) -> u64 {
    let f = proc_stat_fields(pid).unwrap_or_default();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * clock_ticks_ms()
}

/// utime + stime + cutime + cstime (itself and every child it waited for), ms.
fn proc_cpu_with_children_ms(pid: u32) -> u64 {
    let f = proc_stat_fields(pid).unwrap_or_default();
    f.iter().skip(11).take(4).sum::<u64>() * clock_ticks_ms()
}

fn ppid(pid: u32) -> Option<u32> {
    proc_stat_fields(pid)?.get(1).map(|&p| p as u32)
}

/// `pid` and all its descendants, from a scan of /proc.
fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(parent) = ppid(pid) {
                children.entry(parent).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// Resident kB of one process from /proc/PID/statm (0 once it is gone).
fn statm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// Precise CPU time of a process: the sum of /proc/PID/task/*/schedstat
/// (nanoseconds on CPU per thread). Threads that exit between two samples
/// keep the value of their last sample, so sample often enough (once a
/// second is plenty: tokio's blocking threads idle 10 s before exiting).
struct CpuMeter {
    pid: u32,
    last: HashMap<u32, (u64, u64)>,
    dead: (u64, u64),
}

impl CpuMeter {
    fn new(pid: u32) -> CpuMeter {
        let mut m = CpuMeter {
            pid,
            last: HashMap::new(),
            dead: (0, 0),
        };
        m.sample();
        m
    }

    /// (ns on CPU, times scheduled in) since the first sample, all threads.
    fn sample(&mut self) -> (u64, u64) {
        let mut now = HashMap::new();
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) {
            for entry in dir.flatten() {
                let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
                    continue;
                };
                let f: Vec<u64> = text
                    .split_whitespace()
                    .map(|v| v.parse().unwrap_or(0))
                    .collect();
                if f.len() >= 3 {
                    now.insert(tid, (f[0], f[2]));
                }
            }
        }
        for (tid, v) in &self.last {
            if !now.contains_key(tid) {
                self.dead.0 += v.0;
                self.dead.1 += v.1;
            }
        }
        self.last = now;
        let live = self
            .last
            .values()
            .fold((0, 0), |acc, v| (acc.0 + v.0, acc.1 + v.1));
        (self.dead.0 + live.0, self.dead.1 + live.1)
    }
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn role(i: usize) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/p{i}")
}

fn roles(n: usize) -> Vec<String> {
    (1..=n).map(role).collect()
}

/// A token whose content differs for every `n` (its `exp` does).
fn token_n(n: u64) -> String {
    support::jwt(
        TEST_ISSUER,
        TEST_SUBJECT,
        TEST_AUDIENCE,
        support::now_unix() + 24 * 3600 + n,
    )
}

fn median(v: &mut [f64]) -> f64 {
    assert!(!v.is_empty(), "median of nothing");
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn kib(kb: u64) -> String {
    format!("{kb} kB")
}

fn mib(kb: f64) -> String {
    format!("{:.2} MiB", kb / 1024.0)
}

/// Polls `f` every `every` until it returns `Some`, at most `limit`.
fn poll<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// `[section] -> aws_access_key_id` of a credentials file.
fn keys_in(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let mut section = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
        } else if let Some(value) = line.strip_prefix("aws_access_key_id")
            && let Some(s) = &section
        {
            out.insert(s.clone(), value.trim_start_matches([' ', '=']).to_owned());
        }
    }
    out
}

/// GET `path` from a plain HTTP/1.1 server; the body.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Sum of every sample of `name` (any labels) whose labels contain `filter`.
fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let base = series.split('{').next()?;
            (base == name && series.contains(filter)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// One raw AssumeRoleWithWebIdentity POST to `sts` over a new connection;
/// the time from connect to the last byte of the answer.
fn raw_sts_round_trip(sts: &FakeSts, token: &str) -> Duration {
    let body = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A{ACCOUNT}%3Arole%2Frtt\
         &RoleSessionName=rtt&WebIdentityToken={token}"
    );
    let t0 = Instant::now();
    let mut s = TcpStream::connect(sts.addr()).expect("connect to the fake STS");
    s.set_nodelay(true).ok();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        sts.addr(),
        body.len()
    )
    .expect("write to the fake STS");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read from the fake STS");
    let elapsed = t0.elapsed();
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "fake STS did not answer 200"
    );
    elapsed
}

// ---------------------------------------------------------------------------
// The sidecar under test
// ---------------------------------------------------------------------------

struct Sidecar {
    child: Child,
    pid: u32,
    out: tempfile::TempDir,
    health: SocketAddr,
    log: PathBuf,
    started: Instant,
}

impl Sidecar {
    fn start(env: &Env, endpoint: &str, profiles: usize, token: &TokenDir) -> Sidecar {
        Sidecar::start_at(env, endpoint, profiles, &token.path())
    }

    /// [`Sidecar::start`] with the token at any path (any layout).
    fn start_at(env: &Env, endpoint: &str, profiles: usize, token: &Path) -> Sidecar {
        let out = tempfile::Builder::new()
            .prefix("rolecall-bench-out-")
            .tempdir()
            .expect("output dir");
        let log = out.path().with_extension("log");
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(&env.bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOSTNAME", "bench-pod")
            .arg("run")
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

    fn credentials(&self) -> PathBuf {
        self.out.path().join("credentials")
    }

    fn keys(&self) -> BTreeMap<String, String> {
        keys_in(&self.credentials())
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn fail(&mut self, what: &str) -> ! {
        let alive = self.alive();
        panic!(
            "{what} (rolecall pid {} alive: {alive}); its log:\n{}",
            self.pid,
            self.log_text()
        );
    }

    /// Waits until the credentials file holds `n` profiles; when it did.
    fn wait_written(&mut self, n: usize, every: Duration, limit: Duration) -> Instant {
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
    fn wait_all_changed(
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

    fn metrics(&mut self) -> String {
        match http_get(self.health, "/metrics") {
            Some(m) => m,
            None => self.fail("GET /metrics failed"),
        }
    }

    fn signal(&self, sig: i32) {
        send_signal(self.pid as i32, sig);
    }

    fn mem(&self) -> Mem {
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

fn send_signal_quiet(pid: i32, sig: i32) -> bool {
    // SAFETY: as in send_signal.
    unsafe { kill(pid, sig) == 0 }
}

/// moto's server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Moto {
    fn start(env: &Env) -> Moto {
        let bin = env.venv.join("bin/moto_server");
        let port = free_port();
        let log = std::env::temp_dir().join(format!("rolecall-bench-moto-{port}.log"));
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("moto log"))
            .stderr(std::fs::File::create(&log).expect("moto log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {} (run make venv): {e}", bin.display()));
        let mut moto = Moto { child, port, log };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let up = poll(Duration::from_secs(30), Duration::from_millis(50), || {
            if moto.child.try_wait().ok().flatten().is_some() {
                return Some(false);
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| true)
        });
        if up != Some(true) {
            panic!(
                "moto_server did not listen on {addr} within 30 s; log:\n{}",
                std::fs::read_to_string(&moto.log).unwrap_or_default()
            );
        }
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

/// Steady resident memory with 1, 10, 100 and 1000 profiles.
fn row_rss(env: &Env, r: &mut Report) -> BTreeMap<usize, Mem> {
    let sts = FakeSts::start();
    let token = TokenDir::new(&support::valid_jwt());
    let mut mems = BTreeMap::new();
    let mut detail = String::from(
        "### Resident memory (kB, /proc/PID/status after every profile is written and 2 s of quiet)\n\n\
         | profiles | VmRSS | VmHWM | RssAnon | RssFile | threads | start to all written |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for n in [1usize, 10, 100, 1000] {
        let mut sc = Sidecar::start(env, &sts.endpoint(), n, &token);
        let limit = Duration::from_secs(120);
        let written = sc.wait_written(n, Duration::from_millis(10), limit);
        let took = written - sc.started;
        // Quiet: every profile written, nothing due for an hour.
        std::thread::sleep(Duration::from_secs(2));
        if !sc.alive() {
            sc.fail("rolecall exited");
        }
        let m = sc.mem();
        let _ = writeln!(
            detail,
            "| {n} | {} | {} | {} | {} | {} | {:.0} ms |",
            m.rss,
            m.hwm,
            m.anon,
            m.file,
            m.threads,
            ms(took)
        );
        let target = if n == 10 {
            "≤ 6 MiB (6144 kB)"
        } else {
            "—"
        };
        let met = (n == 10).then_some(m.rss <= 6144);
        r.line(
            "rss",
            format!("steady RSS, {n} profile{}", if n == 1 { "" } else { "s" }),
            format!(
                "{} (HWM {}, anon {}, file {})",
                kib(m.rss),
                m.hwm,
                m.anon,
                m.file
            ),
            target,
            met,
        );
        mems.insert(n, m);
    }
    let (m10, m1000) = (mems[&10], mems[&1000]);
    let per = (m1000.rss as f64 - m10.rss as f64) / 990.0;
    let per_anon = (m1000.anon as f64 - m10.anon as f64) / 990.0;
    r.line(
        "rss",
        "cost per extra profile, (RSS(1000) − RSS(10)) / 990",
        format!("{per:.1} KiB (RssAnon alone: {per_anon:.1} KiB)"),
        "≤ 16 KiB",
        Some(per <= 16.0),
    );
    let _ = writeln!(
        detail,
        "\nCost per extra profile: {per:.2} KiB of VmRSS, {per_anon:.2} KiB of RssAnon \
         ((1000 − 10) profiles). RssFile is the binary's own pages (a static binary maps no \
         libraries); RssAnon is heap, stacks and data.",
    );
    r.details.push(detail);
    mems
}

/// Binary size and runtime image size.
fn row_size(env: &Env, r: &mut Report) {
    let bytes = std::fs::metadata(&env.bin).map(|m| m.len()).unwrap_or(0);
    let st = match elf_is_static(&env.bin) {
        Some(true) => "static",
        Some(false) => "DYNAMIC (not the static build)",
        None => "not an ELF file?",
    };
    r.line(
        "size",
        "binary size",
        format!("{bytes} bytes ({:.2} MiB, {st})", bytes as f64 / 1048576.0),
        "—",
        None,
    );
    match image_size() {
        Some((size, created, id)) => {
            let bin_mtime = std::fs::metadata(&env.bin)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let stale = if created > 0 && bin_mtime > created {
                "; built before this binary: run make image-test to rebuild"
            } else {
                ""
            };
            r.line(
                "size",
                "runtime image localhost/rolecall:dev (uncompressed: config + layers)",
                format!(
                    "{size} bytes ({:.2} MiB), image {id}{stale}",
                    size as f64 / 1048576.0
                ),
                "≤ 8 MiB",
                Some(size <= 8 * 1024 * 1024),
            );
        }
        None => r.line(
            "size",
            "runtime image localhost/rolecall:dev",
            "no image: run make image-test",
            "≤ 8 MiB",
            None,
        ),
    }
}

/// (bytes, created unix seconds, short id) of localhost/rolecall:dev from
/// `buildah inspect`: the config blob plus every layer in the manifest.
fn image_size() -> Option<(u64, u64, String)> {
    let image = "localhost/rolecall:dev";
    for driver in [None, Some("vfs")] {
        let mut cmd = Command::new("buildah");
        if let Some(d) = driver {
            cmd.args(["--storage-driver", d]);
        }
        let out = cmd
            .args(["inspect", "--type", "image", image])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let manifest: serde_json::Value =
            serde_json::from_str(v.get("Manifest")?.as_str()?).ok()?;
        let config = manifest.pointer("/config/size")?.as_u64()?;
        let layers: u64 = manifest
            .get("layers")?
            .as_array()?
            .iter()
            .filter_map(|l| l.get("size")?.as_u64())
            .sum();
        let id: String = v
            .get("FromImageID")
            .and_then(|i| i.as_str())
            .unwrap_or("")
            .chars()
            .take(12)
            .collect();
        let created = v
            .pointer("/OCIv1/created")
            .and_then(|c| c.as_str())
            .map(|c| {
                let whole = c.split('.').next().unwrap_or(c).trim_end_matches('Z');
                support::parse_utc(&format!("{whole}Z"))
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            })
            .unwrap_or(0);
        return Some((config + layers, created, id));
    }
    None
}

/// Time from start to every profile written, against one STS endpoint.
fn startup_times(env: &Env, endpoint: &str, runs: usize) -> Vec<f64> {
    let token = TokenDir::new(&support::valid_jwt());
    // One discarded warm-up start (page cache, moto's lazy imports).
    let mut sc = Sidecar::start(env, endpoint, 10, &token);
    sc.wait_written(10, Duration::from_millis(1), Duration::from_secs(60));
    drop(sc);
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut sc = Sidecar::start(env, endpoint, 10, &token);
        let t = sc.wait_written(10, Duration::from_millis(1), Duration::from_secs(30));
        times.push(ms(t - sc.started));
    }
    times
}

fn row_startup(env: &Env, r: &mut Report) {
    let sts = FakeSts::start();
    let mut fake = startup_times(env, &sts.endpoint(), 10);
    let (lo, hi) = min_max(&fake);
    r.line(
        "startup",
        "start to all 10 profiles written, fake STS (median of 10)",
        format!("{:.1} ms (min {lo:.1}, max {hi:.1})", median(&mut fake)),
        "—",
        None,
    );
    let moto = Moto::start(env);
    let mut m = startup_times(env, &moto.endpoint(), 10);
    let (lo, hi) = min_max(&m);
    r.line(
        "startup",
        "start to all 10 profiles written, moto STS (median of 10)",
        format!("{:.1} ms (min {lo:.1}, max {hi:.1})", median(&mut m)),
        "—",
        None,
    );
}

/// Time from a token rotation to the failing profiles rewritten.
fn row_rotation(env: &Env, r: &mut Report) {
    const N: usize = 10;
    const ROUNDS: usize = 20;
    let sts = FakeSts::start();
    let token = TokenDir::new(&token_n(0));
    let mut sc = Sidecar::start(env, &sts.endpoint(), N, &token);
    sc.wait_written(N, Duration::from_millis(5), Duration::from_secs(30));
    let arns = roles(N);
    let (mut total, mut detect, mut sts_rtt, mut raw_rtt) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        // Re-arm: every profile's next call is refused; SIGUSR1 makes them call.
        let before = sc.keys();
        assert_eq!(before.len(), N);
        let calls0 = sts.calls();
        let m = sc.metrics();
        let errors0 = metric_sum(&m, "rolecall_refresh_total", "config_error");
        for arn in &arns {
            sts.push_for_role(arn, Reply::access_denied());
        }
        sc.signal(SIGUSR1);
        let failed = poll(Duration::from_secs(10), Duration::from_millis(2), || {
            (sts.calls() >= calls0 + N
                && metric_sum(
                    &http_get(sc.health, "/metrics").unwrap_or_default(),
                    "rolecall_refresh_total",
                    "config_error",
                ) >= errors0 + N as f64)
                .then_some(())
        });
        if failed.is_none() {
            sc.fail("the re-armed profiles did not fail with AccessDenied within 10 s");
        }
        let requests = sts.requests();
        for arn in &arns {
            let n = requests[calls0..]
                .iter()
                .filter(|q| &q.role_arn == arn)
                .count();
            assert_eq!(n, 1, "{arn}: {n} calls after SIGUSR1, want 1");
        }
        assert_eq!(sc.keys(), before, "a failed refresh changed the file");
        let m = sc.metrics();
        let (sum0, count0) = (
            metric_sum(&m, "rolecall_sts_request_duration_seconds_sum", ""),
            metric_sum(&m, "rolecall_sts_request_duration_seconds_count", ""),
        );
        sts.set_default(Reply::ok());
        let calls1 = sts.calls();
        let t0 = Instant::now();
        token.rotate(&token_n(round as u64 + 1));
        let t1 = sc.wait_all_changed(&before, Duration::from_millis(1), Duration::from_secs(10));
        total.push(ms(t1 - t0));
        let first = sts.requests()[calls1..]
            .iter()
            .map(|q| q.received.into_std())
            .min()
            .expect("calls after the rotation");
        detect.push(ms(first.saturating_duration_since(t0)));
        let m = sc.metrics();
        let (sum1, count1) = (
            metric_sum(&m, "rolecall_sts_request_duration_seconds_sum", ""),
            metric_sum(&m, "rolecall_sts_request_duration_seconds_count", ""),
        );
        if count1 > count0 {
            sts_rtt.push((sum1 - sum0) / (count1 - count0) * 1000.0);
        }
        raw_rtt.push(ms(raw_sts_round_trip(&sts, &token.read())));
    }
    // Start: N; per round: N refused, N after the rotation, 1 raw round trip.
    let extra_calls = sts.calls() as i64 - (N + ROUNDS * (2 * N + 1)) as i64;
    let (lo, hi) = min_max(&total);
    let total_med = median(&mut total);
    let rtt_med = median(&mut sts_rtt);
    let raw_med = median(&mut raw_rtt);
    let detect_med = median(&mut detect);
    r.line(
        "rotation",
        "token rotation to all 10 failing profiles rewritten (median of 20)",
        format!(
            "{total_med:.1} ms (min {lo:.1}, max {hi:.1}); rotation to first STS request {detect_med:.1} ms"
        ),
        format!("≤ 100 ms + STS round trip = {:.1} ms", 100.0 + rtt_med),
        Some(total_med <= 100.0 + rtt_med),
    );
    r.line(
        "rotation",
        "STS round trip",
        format!(
            "{rtt_med:.2} ms as rolecall saw it (mean of rolecall_sts_request_duration_seconds \
             per rotation, median); {raw_med:.2} ms raw HTTP from the harness; {extra_calls} \
             unexpected calls"
        ),
        "—",
        None,
    );
}

/// What a sidecar cost during an idle window.
struct Idle {
    window: f64,
    cpu_ms: f64,
    per10: f64,
    wakes_per10: f64,
    ticks_ms: u64,
    sts_calls: usize,
    /// Growth of `rolecall_token_checks_total` (`None`: not exported).
    token_checks: Option<f64>,
}

/// Lets `sc` idle for `secs` after 5 s of settling, sampling its CPU time
/// every second.
fn idle_window(sc: &mut Sidecar, sts: &FakeSts, secs: u64) -> Idle {
    std::thread::sleep(Duration::from_secs(5)); // settle
    let token_checks = |sc: &mut Sidecar| {
        let m = sc.metrics();
        m.contains("rolecall_token_checks_total")
            .then(|| metric_sum(&m, "rolecall_token_checks_total", ""))
    };
    let checks0 = token_checks(sc);
    let calls0 = sts.calls();
    let mut meter = CpuMeter::new(sc.pid);
    let (ns0, wakes0) = meter.sample();
    let ticks0 = proc_cpu_ticks_ms(sc.pid);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1).min(end - Instant::now()));
        meter.sample();
    }
    let (ns1, wakes1) = meter.sample();
    let window = t0.elapsed().as_secs_f64();
    let ticks1 = proc_cpu_ticks_ms(sc.pid);
    if !sc.alive() {
        sc.fail("rolecall exited while idle");
    }
    let checks1 = token_checks(sc);
    let cpu_ms = (ns1 - ns0) as f64 / 1e6;
    Idle {
        window,
        cpu_ms,
        per10: cpu_ms * 10.0 / window,
        wakes_per10: (wakes1 - wakes0) as f64 * 10.0 / window,
        ticks_ms: ticks1 - ticks0,
        sts_calls: sts.calls() - calls0,
        token_checks: checks0.zip(checks1).map(|(a, b)| b - a),
    }
}

/// CPU while idle: 10 healthy profiles, nothing due.
fn row_idle(env: &Env, r: &mut Report) {
    let secs = env_secs("ROLECALL_BENCH_IDLE_SECS", 60).max(1);
    let sts = FakeSts::start();
    let token = TokenDir::new(&support::valid_jwt());
    let mut sc = Sidecar::start(env, &sts.endpoint(), 10, &token);
    sc.wait_written(10, Duration::from_millis(5), Duration::from_secs(30));
    let i = idle_window(&mut sc, &sts, secs);
    r.line(
        "idle",
        format!(
            "CPU while idle, 10 healthy profiles, {:.0} s window",
            i.window
        ),
        format!(
            "{:.3} ms per 10 s ({:.2} ms in {:.0} s from schedstat; {} ms \
             from /proc/PID/stat ticks; {:.1} wake-ups per 10 s; {} STS calls)",
            i.per10, i.cpu_ms, i.window, i.ticks_ms, i.wakes_per10, i.sts_calls
        ),
        "< 2 ms per 10 s",
        Some(i.per10 < 2.0),
    );
}

/// The token layouts of `idle-layouts`.
const LAYOUTS: &[&str] = &[
    "kubelet ..data symlink",
    "plain file",
    "symlink to a plain file elsewhere",
    "file bind-mounted alone",
    "plain file, neighbour files churning",
];

/// Unmounts a bind mount when dropped.
struct BindMount(PathBuf);

impl BindMount {
    /// `mount --bind source target`; the error when it fails (not root?).
    fn new(source: &Path, target: &Path) -> Result<BindMount, String> {
        let out = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount --bind failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(BindMount(target.to_owned()))
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Rewrites, renames and deletes files next to the token until dropped,
/// `per_second` times a second (what a busy shared directory does).
struct Churn {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, Duration)>>,
}

impl Churn {
    fn start(dir: PathBuf, per_second: u32) -> Churn {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let other = dir.join(format!("neighbour-{}", n % 4));
                std::fs::write(&other, format!("churn {n}")).expect("write a neighbour");
                let tmp = dir.join("ca.crt.tmp");
                std::fs::write(&tmp, format!("cert {n}")).expect("write a neighbour");
                std::fs::rename(&tmp, dir.join("ca.crt")).expect("rename a neighbour");
                if n % 2 == 1 {
                    let _ = std::fs::remove_file(&other);
                }
                n += 1;
                std::thread::sleep(Duration::from_secs(1) / per_second);
            }
            (n, started.elapsed())
        });
        Churn {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; how many rounds of changes were made, in how long.
    fn stop(mut self) -> (u64, Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .map_or((0, Duration::ZERO), |t| t.join().expect("the churn thread"))
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU while idle with the token in each layout a token file comes in.
fn row_idle_layouts(env: &Env, r: &mut Report) {
    const N: usize = 10;
    const CHURN_PER_SECOND: u32 = 20;
    let secs = env_secs("ROLECALL_BENCH_LAYOUT_SECS", 20).max(1);
    let sts = FakeSts::start();
    for &layout in LAYOUTS {
        let root = tempfile::Builder::new()
            .prefix("rolecall-bench-layout-")
            .tempdir()
            .expect("layout dir");
        let mut kubelet = None;
        let mut _mount = None;
        let mut churn = None;
        let sa = root.path().join("sa");
        std::fs::create_dir(&sa).expect("token dir");
        let jwt = support::valid_jwt();
        let path = match layout {
            "kubelet ..data symlink" => kubelet.insert(TokenDir::new(&jwt)).path(),
            "plain file" | "plain file, neighbour files churning" => {
                std::fs::write(sa.join("token"), &jwt).expect("token");
                sa.join("token")
            }
            "symlink to a plain file elsewhere" => {
                let elsewhere = root.path().join("elsewhere");
                std::fs::create_dir(&elsewhere).expect("dir");
                std::fs::write(elsewhere.join("token"), &jwt).expect("token");
                std::os::unix::fs::symlink(elsewhere.join("token"), sa.join("token"))
                    .expect("symlink");
                sa.join("token")
            }
            "file bind-mounted alone" => {
                let source = root.path().join("source");
                std::fs::create_dir(&source).expect("dir");
                std::fs::write(source.join("token"), &jwt).expect("token");
                std::fs::write(sa.join("token"), "").expect("mount point");
                match BindMount::new(&source.join("token"), &sa.join("token")) {
                    Ok(m) => _mount = Some(m),
                    Err(e) => {
                        r.line(
                            "idle-layouts",
                            format!("CPU while idle, {layout}"),
                            format!("not measured: {e} (run as root)"),
                            "< 2 ms per 10 s",
                            None,
                        );
                        continue;
                    }
                }
                sa.join("token")
            }
            _ => unreachable!(),
        };
        let mut sc = Sidecar::start_at(env, &sts.endpoint(), N, &path);
        sc.wait_written(N, Duration::from_millis(5), Duration::from_secs(30));
        if layout.contains("churning") {
            churn = Some(Churn::start(sa.clone(), CHURN_PER_SECOND));
        }
        let i = idle_window(&mut sc, &sts, secs);
        let churned = churn.take().map(Churn::stop);
        let checks = i
            .token_checks
            .map_or("not exported".to_owned(), |c| format!("{c:.0}"));
        // With churning neighbours the kernel reports every change in the
        // directory; what must not happen is a re-read of the token for them.
        let (target, met) = match churned {
            None => ("< 2 ms per 10 s".to_owned(), i.per10 < 2.0),
            Some(_) => (
                "0 token re-reads (the CPU follows the neighbours' event rate)".to_owned(),
                i.token_checks == Some(0.0),
            ),
        };
        let churned = churned.map_or(String::new(), |(n, took)| {
            format!(
                "; neighbours changed {:.1} times a second (a write, a write + rename, every \
                 other time a delete: about 11 inotify events each)",
                n as f64 / took.as_secs_f64()
            )
        });
        r.line(
            "idle-layouts",
            format!(
                "CPU while idle, {layout}, {N} profiles, {:.0} s window",
                i.window
            ),
            format!(
                "{:.3} ms per 10 s ({:.2} ms in {:.0} s; {:.1} wake-ups per 10 s; token re-reads \
                 (rolecall_token_checks_total): {checks}; {} STS calls{churned})",
                i.per10, i.cpu_ms, i.window, i.wakes_per10, i.sts_calls
            ),
            target,
            Some(met),
        );
        drop(sc);
    }
    r.details.push(format!(
        "### Idle CPU per token layout\n\n\
         The same sidecar (10 healthy profiles, nothing due) idles {secs} s after 5 s of settling \
         with its token in each layout: kubelet's projected volume (`token -> ..data/token`, \
         `..data -> ..TIMESTAMP`), a plain file, a symlink to a plain file in another directory, \
         a file bind-mounted alone onto the token path (`mount --bind`, as a `subPath` mount does; \
         needs root), and a plain file whose neighbours are rewritten, renamed and deleted \
         {CHURN_PER_SECOND} times a second. CPU from /proc/PID/task/*/schedstat. \
         `ROLECALL_BENCH_LAYOUT_SECS` sets the window.\n"
    ));
}

/// STS calls per profile per refresh with 20-second sessions.
fn row_sts_calls(env: &Env, r: &mut Report) {
    const N: usize = 10;
    const LIFETIME: f64 = 20.0;
    let secs = env_secs("ROLECALL_BENCH_STS_SECS", 60).max(10);
    let sts = FakeSts::start();
    sts.set_default(Reply::ok_for(Duration::from_secs(LIFETIME as u64)));
    let token = TokenDir::new(&support::valid_jwt());
    let mut sc = Sidecar::start(env, &sts.endpoint(), N, &token);
    let window = Duration::from_secs(secs);
    let end = sc.started + window;
    while Instant::now() < end {
        std::thread::sleep((end - Instant::now()).min(Duration::from_secs(1)));
        if !sc.alive() {
            sc.fail("rolecall exited");
        }
    }
    let requests = sts.requests();
    // The schedule: refresh at half the lifetime, up to 5 % of the lifetime
    // earlier: every 9 s at the earliest for a 20 s session (the fake
    // truncates expiry to whole seconds, so it may be 8.55 s for 19.x s).
    let minimum = 1 + secs / 9;
    let mut counts = vec![];
    let mut min_gap = f64::INFINITY;
    let mut max_gap: f64 = 0.0;
    for arn in roles(N) {
        let times: Vec<Instant> = requests
            .iter()
            .filter(|q| q.role_arn == arn)
            .map(|q| q.received.into_std())
            .filter(|t| *t <= end)
            .collect();
        counts.push(times.len());
        for w in times.windows(2) {
            let gap = (w[1] - w[0]).as_secs_f64();
            min_gap = min_gap.min(gap);
            max_gap = max_gap.max(gap);
        }
    }
    let (lo, hi) = (
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    let total: usize = counts.iter().sum();
    r.line(
        "sts-calls",
        format!("STS calls per profile, 20 s sessions, {secs} s"),
        format!(
            "{lo}–{hi} calls per profile ({total} in all; gaps {min_gap:.2}–{max_gap:.2} s); \
             minimum 1 + ⌊{secs}/9⌋ = {minimum}"
        ),
        "exactly the minimum, no gap < 8.55 s",
        Some(lo == minimum as usize && hi == minimum as usize && min_gap >= 0.45 * 19.0),
    );
}

/// Extra STS calls caused by bursts of token events while healthy.
fn row_burst(env: &Env, r: &mut Report) {
    const ROTATIONS: u64 = 50;
    const FILES: usize = 200;
    let sts = FakeSts::start();
    let token = TokenDir::new(&token_n(0));
    let mut sc = Sidecar::start(env, &sts.endpoint(), 10, &token);
    sc.wait_written(10, Duration::from_millis(5), Duration::from_secs(30));
    let calls0 = sts.calls();
    let mut meter = CpuMeter::new(sc.pid);
    let (ns0, _) = meter.sample();
    let mut last = String::new();
    for i in 1..=ROTATIONS {
        last = token_n(i);
        token.rotate(&last);
    }
    for i in 0..FILES {
        let p = token.dir().join(format!("junk-{i}"));
        std::fs::write(&p, b"x").expect("create junk file");
        std::fs::remove_file(&p).expect("remove junk file");
    }
    // The watcher has caught up when it reports the last token's exp.
    let exp = support::decode_jwt_claims(&last)["exp"]
        .as_u64()
        .expect("exp") as f64;
    let seen = poll(Duration::from_secs(10), Duration::from_millis(10), || {
        let m = http_get(sc.health, "/metrics").unwrap_or_default();
        (metric_sum(&m, "rolecall_token_expiry_timestamp_seconds", "") == exp).then_some(())
    });
    if seen.is_none() {
        sc.fail("the watcher did not see the last rotation within 10 s");
    }
    // Give any refresher that would react 2 s to do so.
    std::thread::sleep(Duration::from_secs(2));
    let (ns1, _) = meter.sample();
    let changes = sc.log_text().matches("token changed").count();
    let delta = sts.calls() - calls0;
    r.line(
        "burst",
        format!("extra STS calls: {ROTATIONS} rotations + {FILES} files created/removed, healthy"),
        format!(
            "{delta} calls ({changes} token changes logged; {:.1} ms CPU for the burst)",
            (ns1 - ns0) as f64 / 1e6
        ),
        "0",
        Some(delta == 0),
    );
}

// ----------------------------------------------------------- without rolecall

const BOTO3_REFRESHER: &str = r#"
import json, os, resource, sys, time

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

import boto3

endpoint, region, token_file, out = sys.argv[1:5]
arns = sys.argv[5:]
sts = boto3.client("sts", endpoint_url=endpoint, region_name=region)

def refresh():
    with open(token_file) as f:
        token = f.read().strip()
    lines = []
    for i, arn in enumerate(arns, 1):
        c = sts.assume_role_with_web_identity(
            RoleArn=arn, RoleSessionName="bench", WebIdentityToken=token
        )["Credentials"]
        lines += [
            f"[p{i}]",
            f"aws_access_key_id = {c['AccessKeyId']}",
            f"aws_secret_access_key = {c['SecretAccessKey']}",
            f"aws_session_token = {c['SessionToken']}",
            "",
        ]
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, out)

c0, t0 = cpu(), time.monotonic()
refresh()
print(json.dumps({"cpu": cpu(), "round_cpu": cpu() - c0, "wall": time.monotonic() - t0}), flush=True)
for _ in sys.stdin:
    c0, t0 = cpu(), time.monotonic()
    refresh()
    print(json.dumps({"cpu": cpu(), "round_cpu": cpu() - c0, "wall": time.monotonic() - t0}), flush=True)
"#;

fn tool_env(cmd: &mut Command, env: &Env, home: &Path) {
    let path = format!(
        "{}:{}",
        env.venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("LANG", "C.UTF-8");
}

struct Side {
    steady_kb: f64,
    peak_kb: f64,
    /// CPU of one refresh round of 10 profiles, ms.
    round_ms: f64,
    /// CPU from process start to the first round done, ms.
    cold_ms: f64,
    wall_ms: f64,
    note: String,
}

/// (a) A shell loop around the AWS CLI: one round of 10 profiles.
fn cli_loop(env: &Env, sts: &FakeSts, token: &TokenDir) -> Side {
    const N: usize = 10;
    let home = tempfile::tempdir().expect("home");
    let done = home.path().join("round-done");
    let profiles: Vec<String> = (1..=N).map(|i| format!("p{i}")).collect();
    let script = format!(
        r#"for p in {profiles}; do
  aws sts assume-role-with-web-identity --role-arn "arn:aws:iam::{ACCOUNT}:role/$p" \
    --role-session-name bench --web-identity-token "$(cat {token})" \
    --endpoint-url {endpoint} --region {REGION} --output json > {out}/$p.json
done
: > {done}
sleep 60 & wait"#,
        profiles = profiles.join(" "),
        token = token.path().display(),
        endpoint = sts.endpoint(),
        out = home.path().display(),
        done = done.display(),
    );
    let calls0 = sts.calls();
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]);
    tool_env(&mut cmd, env, home.path());
    let errors = home.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).expect("stderr file"))
        .process_group(0);
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("start bash");
    let pid = child.id();
    let mut peak_tree = 0u64;
    let mut peak_single = 0u64;
    let deadline = t0 + Duration::from_secs(180);
    while !done.exists() {
        let tree = process_tree(pid);
        let rss: Vec<u64> = tree.iter().map(|&p| statm_rss_kb(p)).collect();
        peak_tree = peak_tree.max(rss.iter().sum());
        peak_single = peak_single.max(rss.iter().copied().max().unwrap_or(0));
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            send_signal_quiet(-(pid as i32), SIGKILL);
            let _ = child.wait();
            let err = std::fs::read_to_string(&errors).unwrap_or_default();
            panic!("the AWS CLI loop did not finish within 180 s:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = t0.elapsed();
    let cpu = proc_cpu_with_children_ms(pid);
    // Between rounds: bash waiting on sleep.
    std::thread::sleep(Duration::from_secs(2));
    let steady: u64 = process_tree(pid).iter().map(|&p| statm_rss_kb(p)).sum();
    send_signal_quiet(-(pid as i32), SIGKILL);
    let _ = child.wait();
    let calls = sts.calls() - calls0;
    let err = std::fs::read_to_string(&errors).unwrap_or_default();
    assert_eq!(
        calls, N,
        "the AWS CLI loop made {calls} STS calls, want {N}:\n{err}"
    );
    for p in &profiles {
        let text =
            std::fs::read_to_string(home.path().join(format!("{p}.json"))).unwrap_or_default();
        assert!(
            text.contains("AccessKeyId"),
            "aws wrote no credentials for {p}"
        );
    }
    Side {
        steady_kb: steady as f64,
        peak_kb: peak_tree as f64,
        round_ms: cpu as f64,
        cold_ms: cpu as f64,
        wall_ms: ms(wall),
        note: format!(
            "peak of one process {peak_single} kB; every round starts 10 Python interpreters"
        ),
    }
}

/// (b) A small boto3 refresher: one client, one round, then sleeping.
fn boto3_refresher(env: &Env, sts: &FakeSts, token: &TokenDir) -> Side {
    const N: usize = 10;
    let home = tempfile::tempdir().expect("home");
    let script = home.path().join("refresher.py");
    std::fs::write(&script, BOTO3_REFRESHER).expect("write refresher.py");
    let out = home.path().join("credentials");
    let calls0 = sts.calls();
    let mut cmd = Command::new(env.venv.join("bin/python"));
    cmd.arg(&script)
        .arg(sts.endpoint())
        .arg(REGION)
        .arg(token.path())
        .arg(&out)
        .args(roles(N));
    tool_env(&mut cmd, env, home.path());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("start the boto3 refresher");
    let pid = child.id();
    let mut stdin: ChildStdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let read = |child: &mut Child, what: &str| -> serde_json::Value {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => serde_json::from_str(&line).expect("refresher JSON"),
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the boto3 refresher did not finish {what} within 120 s:\n{err}");
            }
        }
    };
    let first = read(&mut child, "its first round");
    let first_wall = t0.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let steady = proc_mem(pid);
    writeln!(stdin, "refresh").expect("write to the refresher");
    let second = read(&mut child, "a second round");
    let m = proc_mem(pid);
    drop(stdin);
    let _ = poll(Duration::from_secs(5), Duration::from_millis(10), || {
        child.try_wait().ok().flatten()
    });
    let _ = child.kill();
    let _ = child.wait();
    let calls = sts.calls() - calls0;
    assert_eq!(
        calls,
        2 * N,
        "the boto3 refresher made {calls} STS calls, want {}",
        2 * N
    );
    assert_eq!(
        keys_in(&out).len(),
        N,
        "the boto3 refresher's credentials file"
    );
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0) * 1000.0;
    Side {
        steady_kb: steady.rss as f64,
        peak_kb: m.hwm as f64,
        round_ms: f(&second, "round_cpu"),
        cold_ms: f(&first, "cpu"),
        wall_ms: f(&second, "wall"),
        note: format!(
            "first round (with interpreter start and imports) {:.0} ms wall",
            ms(first_wall)
        ),
    }
}

/// rolecall doing the same job: 10 profiles, one SIGUSR1 round.
fn rolecall_side(env: &Env, sts: &FakeSts, token: &TokenDir) -> Side {
    let mut sc = Sidecar::start(env, &sts.endpoint(), 10, token);
    let mut meter = CpuMeter::new(sc.pid);
    sc.wait_written(10, Duration::from_millis(1), Duration::from_secs(30));
    let cold = meter.sample().0 as f64 / 1e6;
    std::thread::sleep(Duration::from_secs(2));
    let steady = sc.mem();
    let before = sc.keys();
    let (ns0, _) = meter.sample();
    let t0 = Instant::now();
    sc.signal(SIGUSR1);
    let t1 = sc.wait_all_changed(&before, Duration::from_millis(1), Duration::from_secs(10));
    // Let the round finish (status.json, metrics) before reading the CPU.
    std::thread::sleep(Duration::from_millis(500));
    let (ns1, _) = meter.sample();
    let m = sc.mem();
    Side {
        steady_kb: steady.rss as f64,
        peak_kb: m.hwm as f64,
        round_ms: (ns1 - ns0) as f64 / 1e6,
        cold_ms: cold,
        wall_ms: ms(t1 - t0),
        note: "SIGUSR1: refresh every profile now".into(),
    }
}

fn row_compare(env: &Env, r: &mut Report) {
    let sts = FakeSts::start();
    let token = TokenDir::new(&support::valid_jwt());
    eprintln!("   compare: rolecall");
    let rc = rolecall_side(env, &sts, &token);
    eprintln!("   compare: AWS CLI loop");
    let cli = cli_loop(env, &sts, &token);
    eprintln!("   compare: boto3 refresher");
    let boto = boto3_refresher(env, &sts, &token);
    let ratio = |x: f64, base: f64| {
        if base > 0.0 {
            format!("{:.1}×", x / base)
        } else {
            "∞".into()
        }
    };
    let mut d = String::from(
        "### The same job without rolecall (10 profiles, same fake STS, same run)\n\n\
         | | rolecall | AWS CLI loop (bash + aws) | boto3 refresher (one client) |\n\
         |---|---:|---:|---:|\n",
    );
    let _ = writeln!(
        d,
        "| resident between rounds | {} | {} ({}) | {} ({}) |",
        mib(rc.steady_kb),
        mib(cli.steady_kb),
        ratio(cli.steady_kb, rc.steady_kb),
        mib(boto.steady_kb),
        ratio(boto.steady_kb, rc.steady_kb)
    );
    let _ = writeln!(
        d,
        "| peak resident (process tree) | {} | {} ({}) | {} ({}) |",
        mib(rc.peak_kb),
        mib(cli.peak_kb),
        ratio(cli.peak_kb, rc.peak_kb),
        mib(boto.peak_kb),
        ratio(boto.peak_kb, rc.peak_kb)
    );
    let _ = writeln!(
        d,
        "| CPU for one refresh round | {:.1} ms | {:.0} ms ({}) | {:.1} ms ({}) |",
        rc.round_ms,
        cli.round_ms,
        ratio(cli.round_ms, rc.round_ms),
        boto.round_ms,
        ratio(boto.round_ms, rc.round_ms)
    );
    let _ = writeln!(
        d,
        "| CPU from start to the first round done | {:.1} ms | {:.0} ms ({}) | {:.0} ms ({}) |",
        rc.cold_ms,
        cli.cold_ms,
        ratio(cli.cold_ms, rc.cold_ms),
        boto.cold_ms,
        ratio(boto.cold_ms, rc.cold_ms)
    );
    let _ = writeln!(
        d,
        "| wall time of one round | {:.1} ms | {:.0} ms | {:.1} ms |",
        rc.wall_ms, cli.wall_ms, boto.wall_ms
    );
    let _ = writeln!(
        d,
        "\nrolecall: {}. AWS CLI loop: {}; between rounds only bash and `sleep` stay. \
         boto3: {}. CPU: rolecall from /proc/PID/task/*/schedstat, the CLI loop from bash's \
         utime+stime+cutime+cstime (10 ms ticks), boto3 from its own getrusage.",
        rc.note, cli.note, boto.note
    );
    r.details.push(d);
    r.line(
        "compare",
        "AWS CLI loop vs rolecall, one round of 10 profiles",
        format!(
            "the CLI loop uses {} the peak memory and {} the CPU per round ({} vs {}; {:.0} ms \
             vs {:.1} ms); between rounds bash + sleep hold {} ({})",
            ratio(cli.peak_kb, rc.peak_kb),
            ratio(cli.round_ms, rc.round_ms),
            mib(cli.peak_kb),
            mib(rc.peak_kb),
            cli.round_ms,
            rc.round_ms,
            mib(cli.steady_kb),
            ratio(cli.steady_kb, rc.steady_kb),
        ),
        "rolecall leads",
        Some(cli.peak_kb > rc.peak_kb && cli.round_ms > rc.round_ms),
    );
    r.line(
        "compare",
        "boto3 refresher vs rolecall, 10 profiles",
        format!(
            "the boto3 refresher uses {} the memory and {} the CPU per round ({} vs {}; {:.1} ms vs {:.1} ms)",
            ratio(boto.steady_kb, rc.steady_kb),
            ratio(boto.round_ms, rc.round_ms),
            mib(boto.steady_kb),
            mib(rc.steady_kb),
            boto.round_ms,
            rc.round_ms
        ),
        "rolecall leads",
        Some(boto.steady_kb > rc.steady_kb && boto.round_ms > rc.round_ms),
    );
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

fn main() {
    // cargo passes `--bench`; anything else starting with '-' is ignored too.
    let mut selected: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .flat_map(|a| {
            a.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    if let Some(bad) = selected.iter().find(|s| !ROWS.contains(&s.as_str())) {
        eprintln!("unknown row {bad:?}; rows: {}", ROWS.join(" "));
        std::process::exit(2);
    }
    if selected.is_empty() {
        selected = ROWS.iter().map(|s| (*s).to_owned()).collect();
    }
    let want: HashSet<&str> = selected.iter().map(String::as_str).collect();

    let (bin, static_build) = match std::env::var_os("ROLECALL_BIN") {
        Some(b) => (PathBuf::from(b), true),
        None => (PathBuf::from(env!("CARGO_BIN_EXE_rolecall")), false),
    };
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    let venv = std::env::var_os("ROLECALL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".venv"));
    let env = Env {
        bin,
        venv,
        static_build,
    };
    if !env.static_build {
        eprintln!(
            "warning: ROLECALL_BIN is not set; measuring {} (not the static build: use make bench)",
            env.bin.display()
        );
    }

    let started = Instant::now();
    let mut r = Report::default();
    for row in ROWS.iter().filter(|r| want.contains(**r)) {
        eprintln!(">> {row}");
        let t = Instant::now();
        match *row {
            "rss" => {
                row_rss(&env, &mut r);
            }
            "size" => row_size(&env, &mut r),
            "startup" => row_startup(&env, &mut r),
            "rotation" => row_rotation(&env, &mut r),
            "idle" => row_idle(&env, &mut r),
            "idle-layouts" => row_idle_layouts(&env, &mut r),
            "sts-calls" => row_sts_calls(&env, &mut r),
            "burst" => row_burst(&env, &mut r),
            "compare" => row_compare(&env, &mut r),
            _ => unreachable!(),
        }
        eprintln!("   ({:.1} s)", t.elapsed().as_secs_f64());
    }

    let rows_arg = selected.join(" ");
    let mut md = String::new();
    let _ = writeln!(md, "## rolecall benchmark results\n");
    let _ = writeln!(
        md,
        "Machine: {} cores, {}, Linux {}. Binary: `{}` ({}). Rows: {}. Run time {:.0} s.\n",
        cores(),
        cpu_model(),
        kernel(),
        env.bin.display(),
        if env.static_build {
            "ROLECALL_BIN"
        } else {
            "not the static build"
        },
        rows_arg,
        started.elapsed().as_secs_f64()
    );
    md.push_str("| row | figure | target | met? | reproduce |\n|---|---|---|---|---|\n");
    for l in &r.lines {
        let _ = writeln!(
            md,
            "| {}: {} | {} | {} | {} | `make bench ROWS={}` |",
            l.row,
            l.what,
            l.figure,
            l.target,
            met_text(l.met),
            l.row
        );
    }
    let _ = writeln!(
        md,
        "\n`make bench ROWS=ROW` builds the static binary and the venv, then runs\n\
         `ROLECALL_BIN=target/x86_64-unknown-linux-gnu/release/rolecall ROLECALL_VENV=.venv \
         cargo bench --bench sidecar -- ROW`\n\
         (`ROLECALL_BENCH_IDLE_SECS` / `ROLECALL_BENCH_STS_SECS` shorten the 60 s windows).\n"
    );
    for d in &r.details {
        md.push_str(d);
        md.push('\n');
    }
    println!("{md}");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join("results.md");
    std::fs::write(&path, &md).expect("write results.md");
    eprintln!("wrote {}", path.display());
    if r.lines.iter().any(|l| l.met == Some(false)) {
        eprintln!("some targets were missed (see the met? column)");
    }
}
