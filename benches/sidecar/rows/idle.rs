//! Rows `idle` (CPU and wake-ups while nothing happens) and `idle-layouts`
//! (the same for each token layout).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::child::*;
use crate::env::*;
use crate::helpers::*;
use crate::procfs::*;
use crate::report::*;
use crate::support::{self, FakeSts, TokenDir};

pub(crate) struct Idle {
    pub(crate) window: f64,
    pub(crate) cpu_ms: f64,
    pub(crate) per10: f64,
    pub(crate) wakes_per10: f64,
    pub(crate) ticks_ms: u64,
    pub(crate) sts_calls: usize,
    /// Growth of `rolecall_token_checks_total` (`None`: not exported).
    pub(crate) token_checks: Option<f64>,
}

/// Lets `sc` idle for `secs` after 5 s of settling, sampling its CPU time
/// every second.
pub(crate) fn idle_window(sc: &mut Sidecar, sts: &FakeSts, secs: u64) -> Idle {
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
pub(crate) fn row_idle(env: &Env, r: &mut Report) {
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
pub(crate) const LAYOUTS: &[&str] = &[
    "kubelet ..data symlink",
    "plain file",
    "symlink to a plain file elsewhere",
    "file bind-mounted alone",
    "plain file, neighbour files churning",
];

/// Unmounts a bind mount when dropped.
pub(crate) struct BindMount(pub(crate) PathBuf);

impl BindMount {
    /// `mount --bind source target`; the error when it fails (not root?).
    pub(crate) fn new(source: &Path, target: &Path) -> Result<BindMount, String> {
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
pub(crate) struct Churn {
    pub(crate) stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(crate) thread: Option<std::thread::JoinHandle<(u64, Duration)>>,
}

impl Churn {
    pub(crate) fn start(dir: PathBuf, per_second: u32) -> Churn {
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
    pub(crate) fn stop(mut self) -> (u64, Duration) {
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
pub(crate) fn row_idle_layouts(env: &Env, r: &mut Report) {
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
