//! Faults of the shared volume, injected under the real binary while a
//! reader checks every output continuously: a full disk, a volume remounted
//! read-only, the output directory removed and recreated, a symlink planted
//! at each output, and outputs chowned to another user.
//!
//! These tests mount tmpfs and change ownership, so they must run as root
//! (as `make test` and CI do). They fail, loudly, if they cannot: a fault
//! test that skips silently proves nothing.
//!
//! In every case: the previous files stay whole and parseable, a valid
//! session never disappears from `credentials` because of rolecall, and
//! rolecall repairs the outputs by itself once the fault is gone. The
//! per-case figures are written to `target/reliability/volume.txt`.
//!
//! One more test guards a bug this suite found: a partial write failure
//! followed by a restart during an STS outage used to publish old keys under
//! a newer expiry (keys and expiry were adopted from two files). rolecall now
//! adopts keys, role and expiry from one file.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use support::*;

/// Long enough that no scheduled refresh happens during a case: every
/// write rolecall makes is one the test caused, or one of its own retries.
const SESSION: Duration = Duration::from_secs(600);
/// The writer's retry backoff is capped at 60 s.
const RECOVERY_LIMIT: Duration = Duration::from_secs(75);
/// The writer re-checks its files every 30 s.
const RECHECK_LIMIT: Duration = Duration::from_secs(40);
/// `O_NOFOLLOW` on Linux (the same values as `src/output/atomic.rs` uses).
const O_NOFOLLOW: i32 = if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
    0o100000
} else {
    0o400000
};
/// `ELOOP`: what opening a symlink with `O_NOFOLLOW` fails with.
const ELOOP: i32 = 40;

fn roles(n: usize) -> BTreeMap<String, String> {
    (0..n)
        .map(|i| {
            (
                format!("p{i}"),
                format!("arn:aws:iam::111122223333:role/volume-fault-role-{i}"),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Root, mounts
// ---------------------------------------------------------------------------

fn uid_of(pid: &str) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("effective uid in /proc status")
}

fn require_root() {
    assert_eq!(
        uid_of("self"),
        0,
        "tests/volume_faults.rs mounts tmpfs and chowns files: run it as root \
         (make test and CI do); it does not skip"
    );
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
                path.to_str().unwrap(),
            ],
        );
        Tmpfs { path, _dir: dir }
    }

    fn remount(&self, opts: &str) {
        run(
            "mount",
            &[
                "-o",
                &format!("remount,{opts}"),
                self.path.to_str().unwrap(),
            ],
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let p = self.path.to_str().unwrap();
        let ok = Command::new("umount")
            .arg(p)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").args(["-l", p]).status();
        }
    }
}

// ---------------------------------------------------------------------------
// The sidecar
// ---------------------------------------------------------------------------

struct Sidecar {
    process: ChildSidecar,
    port: u16,
    out: PathBuf,
    roles: BTreeMap<String, String>,
}

impl Sidecar {
    fn start(
        sts: &FakeSts,
        token: &TokenDir,
        out: &Path,
        roles: &BTreeMap<String, String>,
        as_user: Option<u32>,
    ) -> Sidecar {
        let port = free_port();
        let mut c = rolecall_run(sts, token, out, roles);
        c.args(["--health-addr", &format!("127.0.0.1:{port}")])
            .args(["--file-mode", "0640"]);
        if let Some(uid) = as_user {
            c.uid(uid).gid(uid);
        }
        Sidecar {
            process: ChildSidecar::spawn(&mut c),
            port,
            out: out.to_path_buf(),
            roles: roles.clone(),
        }
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn log(&self) -> String {
        self.process.log()
    }

    fn usr1(&self) {
        self.process.signal(libc::SIGUSR1);
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get_blocking(self.port, path)
    }

    fn write_errors(&self) -> u64 {
        self.get("/metrics").map_or(0, |(_, body)| {
            body.lines()
                .filter(|l| l.starts_with("rolecall_write_errors_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        })
    }

    /// Whether `credentials` holds, for every profile, the last set STS
    /// issued for its role.
    fn current(&self, sts: &FakeSts) -> bool {
        let Ok(text) = read_nofollow(&self.out.join("credentials")) else {
            return false;
        };
        let Ok(sections) = try_parse_written_ini(&text) else {
            return false;
        };
        self.roles.iter().all(|(name, arn)| {
            let Some(want) = sts.last_issued_for_role(arn) else {
                return false;
            };
            sections.get(name).is_some_and(|keys| {
                keys.get("aws_access_key_id") == Some(&want.access_key_id)
                    && keys.get("aws_secret_access_key") == Some(&want.secret_access_key)
                    && keys.get("aws_session_token") == Some(&want.session_token)
            })
        })
    }

    /// Waits until every profile is published with its latest keys, the
    /// other outputs exist and `/readyz` answers 200.
    async fn wait_current(&self, sts: &FakeSts, limit: Duration) -> bool {
        wait_until(limit, || {
            self.current(sts)
                && ["config", "status.json"]
                    .iter()
                    .all(|f| read_nofollow(&self.out.join(f)).is_ok())
                && self.get("/readyz").is_some_and(|(s, _)| s == 200)
        })
        .await
    }

    fn stop(mut self) {
        match self.process.stop_within(Duration::from_secs(5)) {
            Some(status) => assert!(status.success(), "rolecall exited with {status}"),
            None => panic!("rolecall did not stop on SIGTERM within 5 s"),
        }
    }
}

/// STS granting [`SESSION`]-long sessions, a token, and a sidecar of
/// `profiles` profiles writing to `out`, once its outputs are current.
async fn start_current(
    out: &Path,
    profiles: usize,
    as_user: Option<u32>,
) -> (FakeSts, TokenDir, BTreeMap<String, String>, Sidecar) {
    let sts = FakeSts::granting(SESSION);
    let token = TokenDir::new(&valid_jwt());
    let roles = roles(profiles);
    let sc = Sidecar::start(&sts, &token, out, &roles, as_user);
    assert!(
        sc.wait_current(&sts, Duration::from_secs(15)).await,
        "not written at start:\n{}",
        sc.log()
    );
    (sts, token, roles, sc)
}

// ---------------------------------------------------------------------------
// Reading the outputs
// ---------------------------------------------------------------------------

/// Reads a file without following a symlink at its path (`ELOOP` if one is
/// planted there).
fn read_nofollow(path: &Path) -> io::Result<String> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(path)?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

#[derive(Debug, Default)]
struct Counts {
    faults: ReadFaults,
    /// No file at the path (only while a case has removed it).
    absent: AtomicU64,
    /// A symlink at the path (only while a case has planted one).
    symlink: AtomicU64,
}

struct Monitor {
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    fn start(dir: &Path, sts: &FakeSts, roles: &BTreeMap<String, String>) -> Monitor {
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, sts, roles) = (dir.to_path_buf(), sts.clone(), roles.clone());
        let (c, s) = (counts.clone(), stop.clone());
        let thread = std::thread::spawn(move || monitor(&dir, &sts, &roles, &c, &s));
        Monitor {
            counts,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Arc<Counts> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("monitor thread");
        }
        let c = self.counts.clone();
        let (torn, mixed, lost) = (
            c.faults.torn.load(Ordering::Relaxed),
            c.faults.mixed.load(Ordering::Relaxed),
            c.faults.lost.load(Ordering::Relaxed),
        );
        assert_eq!(
            torn + mixed + lost,
            0,
            "the reader saw {torn} torn, {mixed} mixed, {lost} lost:\n{}",
            c.faults.samples().join("\n")
        );
        assert!(
            c.faults.reads.load(Ordering::Relaxed) > 0,
            "the reader read nothing"
        );
        c
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn monitor(
    dir: &Path,
    sts: &FakeSts,
    roles: &BTreeMap<String, String>,
    c: &Counts,
    stop: &AtomicBool,
) {
    let mut issued: HashMap<String, IssuedCredentials> = HashMap::new();
    let mut last: BTreeMap<String, (String, SystemTime)> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        for file in ["credentials", "config", "status.json"] {
            let text = match read_nofollow(&dir.join(file)) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    c.absent.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(ELOOP) => {
                    c.symlink.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => {
                    c.faults.torn(format!("{file}: {e}"));
                    continue;
                }
            };
            let now = SystemTime::now();
            match file {
                "credentials" => {
                    c.faults.read();
                    let sections = match try_parse_written_ini(&text) {
                        Ok(s) => s,
                        Err(e) => {
                            c.faults.torn(format!("credentials: {e}: {text:?}"));
                            continue;
                        }
                    };
                    for (name, keys) in &sections {
                        let (Some(arn), Some(id), Some(secret), Some(token), 3) = (
                            roles.get(name),
                            keys.get("aws_access_key_id"),
                            keys.get("aws_secret_access_key"),
                            keys.get("aws_session_token"),
                            keys.len(),
                        ) else {
                            c.faults.torn(format!("credentials: [{name}] {keys:?}"));
                            continue;
                        };
                        if !issued.contains_key(id) {
                            issued.extend(
                                sts.issued()
                                    .into_iter()
                                    .map(|i| (i.access_key_id.clone(), i)),
                            );
                        }
                        match issued.get(id) {
                            Some(i)
                                if &i.secret_access_key == secret
                                    && &i.session_token == token
                                    && &i.role_arn == arn =>
                            {
                                last.insert(name.clone(), (id.clone(), i.expiration));
                            }
                            _ => c.faults.mixed(format!("credentials: [{name}] {id} mixed")),
                        }
                    }
                    for (name, (id, exp)) in &last {
                        if !sections.contains_key(name) && *exp > now {
                            c.faults.lost(format!("[{name}] {id} vanished while valid"));
                        }
                    }
                }
                "config" => {
                    let ok = try_parse_written_ini(&text).is_ok_and(|s| s.len() == roles.len());
                    if !ok {
                        c.faults.torn(format!("config: {text:?}"));
                    }
                }
                _ => {
                    let ok = serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| {
                        v["profiles"]
                            .as_array()
                            .is_some_and(|p| p.len() == roles.len())
                    });
                    if !ok {
                        c.faults.torn(format!("status.json: {text:?}"));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until no output has been replaced for [`QUIET`], so that the
/// writer has finished the passes a signal caused and the next pass is the
/// periodic re-check.
async fn wait_quiet(dir: &Path) {
    let inodes = || -> Vec<Option<u64>> {
        ["credentials", "config", "status.json"]
            .iter()
            .map(|f| fs::symlink_metadata(dir.join(f)).ok().map(|m| m.ino()))
            .collect()
    };
    let mut last = inodes();
    let mut since = Instant::now();
    let quiet = wait_until(Duration::from_secs(20), || {
        let now = inodes();
        if now != last {
            last = now;
            since = Instant::now();
        }
        since.elapsed() >= QUIET
    })
    .await;
    assert!(quiet, "the outputs kept changing without a fault");
}

/// See [`wait_quiet`].
const QUIET: Duration = Duration::from_secs(2);

/// How a repair without a signal came about, from how long it took.
fn by_what(took: Duration) -> &'static str {
    if took >= Duration::from_secs(20) {
        "by the periodic re-check"
    } else {
        "by a pending writer pass"
    }
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

/// `target/reliability/volume.txt`: one line per case, kept across runs
/// (each line says when it was measured), so a filtered run does not erase
/// the table.
static TABLE: Table = Table::new("volume.txt", "case\tinjected\ttimes\tlost\toutcome");

/// Records FAILED for a case whose test panics before it reports.
fn guard(case: &'static str, injected: &'static str) -> ReportGuard {
    ReportGuard::new(
        &TABLE,
        case,
        format!("{case}\t{injected}\t-\t-\tFAILED (see the test output)"),
    )
}

fn report(case: &'static str, injected: &str, times: usize, counts: &Counts, outcome: &str) {
    let line = format!(
        "{case}\t{injected}\t{times}\t{lost} valid sessions lost, {torn} torn, {mixed} mixed \
         ({reads} reads)\t{outcome}",
        lost = counts.faults.lost.load(Ordering::Relaxed),
        torn = counts.faults.torn.load(Ordering::Relaxed),
        mixed = counts.faults.mixed.load(Ordering::Relaxed),
        reads = counts.faults.reads.load(Ordering::Relaxed),
    );
    eprintln!("volume: {line}");
    TABLE.record(case, &line);
}

// ---------------------------------------------------------------------------
// Shared steps of a write fault (disk full, read-only)
// ---------------------------------------------------------------------------

/// While a write fault is in place: asks for new sessions (SIGUSR1) and
/// checks that the old files are kept whole and unchanged, the failure is
/// logged, counted in `/metrics`, and `/readyz` names the outputs.
async fn expect_write_failure(
    sc: &Sidecar,
    sts: &FakeSts,
    before: &BTreeMap<&str, String>,
    errors_before: u64,
    c: &WriteFaultCase,
) {
    let (case, os_error) = (c.case, c.error);
    let issued = sts.issued().len();
    sc.usr1();
    assert!(
        wait_until(Duration::from_secs(10), || sts.issued().len()
            >= issued + sc.roles.len())
        .await,
        "{case}: SIGUSR1 did not refresh every profile"
    );
    let logged = wait_until(Duration::from_secs(10), || {
        sc.log()
            .lines()
            .any(|l| l.contains("write failed") && l.contains(os_error))
    })
    .await;
    assert!(
        logged,
        "{case}: no `write failed` error naming {os_error:?} in the log:\n{}",
        sc.log()
    );
    assert!(
        wait_until(Duration::from_secs(5), || sc.write_errors() > errors_before).await,
        "{case}: rolecall_write_errors_total did not grow past {errors_before}"
    );
    let ready = sc.get("/readyz").expect("GET /readyz");
    assert_eq!(
        ready.0, 503,
        "{case}: /readyz during a write fault: {}",
        ready.1
    );
    assert!(
        ready.1.contains("outputs"),
        "{case}: /readyz does not name the outputs: {}",
        ready.1
    );
    for (file, old) in before {
        let now = read_nofollow(&sc.out.join(file))
            .unwrap_or_else(|e| panic!("{case}: the old file {file} is gone: {e}"));
        assert_eq!(&now, old, "{case}: {file} changed during the write fault");
    }
    assert!(
        !sc.current(sts),
        "{case}: the new sessions cannot have been written"
    );
    let tmp = temporaries(&sc.out);
    assert!(
        tmp.is_empty(),
        "{case}: failed writes left temporaries: {tmp:?}"
    );
}

fn snapshot(dir: &Path) -> BTreeMap<&'static str, String> {
    ["credentials", "config", "status.json"]
        .into_iter()
        .map(|f| (f, read_nofollow(&dir.join(f)).expect("output present")))
        .collect()
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

/// Fills the volume until a write fails with ENOSPC; returns the filler.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = fs::File::create(&filler).expect("create filler");
    let chunk = vec![0u8; 1024];
    loop {
        match f.write_all(&chunk).and_then(|()| f.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the volume: {e}"),
        }
    }
    filler
}

/// A fault that makes every write to the output volume fail until lifted.
#[derive(Clone, Copy, Debug)]
enum WriteFault {
    /// The tmpfs filled to ENOSPC; lifted by removing the filler.
    DiskFull,
    /// `mount -o remount,ro`; lifted by remounting read-write.
    ReadOnly,
}

impl WriteFault {
    /// Puts the fault in place; what [`lift`](Self::lift) needs.
    fn inject(self, vol: &Tmpfs) -> Option<PathBuf> {
        match self {
            WriteFault::DiskFull => Some(fill(&vol.path)),
            WriteFault::ReadOnly => {
                vol.remount("ro");
                None
            }
        }
    }

    fn lift(self, vol: &Tmpfs, filler: Option<PathBuf>) {
        match self {
            WriteFault::DiskFull => fs::remove_file(filler.expect("the filler")).unwrap(),
            WriteFault::ReadOnly => vol.remount("rw"),
        }
    }
}

/// One write-fault case of `target/reliability/volume.txt`.
struct WriteFaultCase {
    case: &'static str,
    /// The fault, as the FAILED line names it.
    injected: &'static str,
    /// The fault, as the report line names it.
    reported: &'static str,
    fault: WriteFault,
    tmpfs_size: &'static str,
    profiles: usize,
    /// What the log says about a failed write.
    error: &'static str,
    /// What lifting the fault is called in the messages.
    lifted: &'static str,
}

const WRITE_FAULTS: &[WriteFaultCase] = &[
    WriteFaultCase {
        case: "a-disk-full",
        injected: "tmpfs size=64k filled to ENOSPC + SIGUSR1",
        reported: "tmpfs size=64k filled to ENOSPC, then SIGUSR1 (8 profiles)",
        fault: WriteFault::DiskFull,
        tmpfs_size: "64k",
        profiles: 8,
        error: "No space left on device",
        lifted: "space was freed",
    },
    WriteFaultCase {
        case: "b-read-only",
        injected: "mount -o remount,ro + SIGUSR1",
        reported: "mount -o remount,ro on the output tmpfs, then SIGUSR1 (4 profiles)",
        fault: WriteFault::ReadOnly,
        tmpfs_size: "1m",
        profiles: 4,
        error: "Read-only file system",
        lifted: "remount rw",
    },
];

/// Twice: the fault while new sessions are asked for (the old files are
/// kept whole, see [`expect_write_failure`]), then lifted: the writer's own
/// retry, with no signal, must bring the new sessions out.
async fn write_fault_case(c: &'static WriteFaultCase) {
    const CYCLES: usize = 2;
    let case = c.case;
    let _guard = guard(case, c.injected);
    let vol = Tmpfs::mount(c.tmpfs_size);
    let (sts, _token, roles, sc) = start_current(&vol.path, c.profiles, None).await;
    let mon = Monitor::start(&vol.path, &sts, &roles);
    let mut recoveries = Vec::new();
    for _ in 0..CYCLES {
        let before = snapshot(&vol.path);
        let errors = sc.write_errors();
        let undo = c.fault.inject(&vol);
        expect_write_failure(&sc, &sts, &before, errors, c).await;
        c.fault.lift(&vol, undo);
        let lifted = Instant::now();
        assert!(
            sc.wait_current(&sts, RECOVERY_LIMIT).await,
            "{case}: writing did not resume within {RECOVERY_LIMIT:?} after {}:\n{}",
            c.lifted,
            sc.log()
        );
        recoveries.push(lifted.elapsed());
    }
    let counts = mon.finish();
    let errors = sc.write_errors();
    sc.stop();
    report(
        case,
        c.reported,
        CYCLES,
        &counts,
        &format!(
            "old files kept byte-identical; `write failed ... {}` logged; \
             rolecall_write_errors_total={errors}; /readyz 503 naming outputs; \
             resumed without a signal {recoveries:.1?} after {}",
            c.error, c.lifted
        ),
    );
}

#[tokio::test]
async fn write_faults_keep_the_old_files_whole_and_writing_resumes_by_itself() {
    run_cases_async(WRITE_FAULTS, |c| c.case, write_fault_case).await;
}

#[tokio::test]
async fn a_removed_and_recreated_output_dir_is_written_again_without_a_signal() {
    let _guard = guard("c-dir-recreated", "rm -rf output dir; mkdir");
    require_root();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("aws");
    let (sts, _token, roles, sc) = start_current(&out, 4, None).await;
    let mon = Monitor::start(&out, &sts, &roles);
    wait_quiet(&out).await;
    let calls = sts.calls();
    fs::remove_dir_all(&out).unwrap();
    fs::create_dir(&out).unwrap();
    let removed = Instant::now();
    // No signal: the writer's periodic re-check must notice.
    assert!(
        sc.wait_current(&sts, RECHECK_LIMIT).await,
        "the outputs were not written again within {RECHECK_LIMIT:?}:\n{}",
        sc.log()
    );
    let took = removed.elapsed();
    assert_eq!(
        sts.calls(),
        calls,
        "restored from memory, without STS calls"
    );
    let mode = fs::metadata(out.join("credentials"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o640);
    let counts = mon.finish();
    let absent = counts.absent.load(Ordering::Relaxed);
    sc.stop();
    report(
        "c-dir-recreated",
        "rm -rf of the output dir while running, recreated empty (4 profiles)",
        1,
        &counts,
        &format!(
            "all files written again {took:.1?} later {} (no signal, no STS call); \
             {absent} reads found no file in between (the injected removal)",
            by_what(took)
        ),
    );
}

#[tokio::test]
async fn a_planted_symlink_is_replaced_never_followed() {
    let _guard = guard("d-symlink", "symlink to a victim file at each output");
    require_root();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("aws");
    let elsewhere = tempfile::tempdir().unwrap();
    let (sts, _token, roles, sc) = start_current(&out, 4, None).await;
    let mon = Monitor::start(&out, &sts, &roles);
    let files = ["credentials", "config", "status.json"];
    let plant = |round: usize| -> Vec<(PathBuf, String)> {
        files
            .iter()
            .map(|f| {
                let victim = elsewhere.path().join(format!("victim-{round}-{f}"));
                let content = format!("precious {f} round {round}\n");
                fs::write(&victim, &content).unwrap();
                fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
                // Planted atomically, as an attacker racing the writer would.
                let tmp = out.join(format!("plant-{f}"));
                std::os::unix::fs::symlink(&victim, &tmp).unwrap();
                fs::rename(&tmp, out.join(f)).unwrap();
                (victim, content)
            })
            .collect()
    };
    let replaced = || {
        files
            .iter()
            .all(|f| fs::symlink_metadata(out.join(f)).is_ok_and(|m| m.file_type().is_file()))
    };
    let check_victims = |victims: &[(PathBuf, String)]| {
        for (victim, content) in victims {
            assert_eq!(
                &fs::read_to_string(victim).unwrap(),
                content,
                "{victim:?} was written"
            );
            let meta = fs::metadata(victim).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o7777,
                0o600,
                "{victim:?} chmodded"
            );
            assert_eq!(meta.uid(), 0, "{victim:?} chowned");
        }
    };
    // Round 1: the next write (SIGUSR1: new sessions).
    let victims = plant(1);
    sc.usr1();
    assert!(
        wait_until(Duration::from_secs(10), || replaced() && sc.current(&sts)).await,
        "the symlinks were not replaced by regular files:\n{}",
        sc.log()
    );
    check_victims(&victims);
    // Round 2: no signal, same content: the periodic re-check replaces them.
    wait_quiet(&out).await;
    let victims = plant(2);
    let planted = Instant::now();
    assert!(
        wait_until(RECHECK_LIMIT, replaced).await,
        "the re-check did not replace the symlinks within {RECHECK_LIMIT:?}"
    );
    let took = planted.elapsed();
    assert!(sc.wait_current(&sts, Duration::from_secs(5)).await);
    check_victims(&victims);
    let counts = mon.finish();
    let symlink_reads = counts.symlink.load(Ordering::Relaxed);
    sc.stop();
    report(
        "d-symlink",
        "symlink to a victim file outside the dir planted at credentials, config and status.json",
        2,
        &counts,
        &format!(
            "victims unchanged (content, mode, owner); each output a regular file again: \
             on the next write (SIGUSR1), and {took:.1?} later {} without a signal; \
             {symlink_reads} reads met the planted symlink",
            by_what(took)
        ),
    );
}

#[tokio::test]
async fn outputs_chowned_to_another_user_are_replaced_with_its_own() {
    const APP_UID: u32 = 65532;
    const OTHER: u32 = 65534;
    let _guard = guard("e-ownership", "chown 65534:65534, chmod 0600");
    require_root();
    // rolecall runs as a non-root user, like the image does.
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = work.path().join("aws");
    fs::create_dir(&out).unwrap();
    run(
        "chown",
        &[&format!("{APP_UID}:{APP_UID}"), out.to_str().unwrap()],
    );
    let sts = FakeSts::granting(SESSION);
    let token = TokenDir::new(&valid_jwt());
    fs::set_permissions(token.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let roles = roles(4);
    let sc = Sidecar::start(&sts, &token, &out, &roles, Some(APP_UID));
    assert!(
        sc.wait_current(&sts, Duration::from_secs(15)).await,
        "{}",
        sc.log()
    );
    let own = uid_of(&sc.pid().to_string());
    assert_eq!(own, APP_UID);
    let mon = Monitor::start(&out, &sts, &roles);
    let files = ["credentials", "config", "status.json"];
    let sabotage = || {
        for f in files {
            let p = out.join(f);
            std::os::unix::fs::chown(&p, Some(OTHER), Some(OTHER)).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
    };
    let repaired = || {
        files.iter().all(|f| {
            fs::symlink_metadata(out.join(f)).is_ok_and(|m| {
                m.file_type().is_file()
                    && m.uid() == own
                    && m.permissions().mode() & 0o7777 == 0o640
            })
        })
    };
    // Round 1: the next write (SIGUSR1: new sessions).
    sabotage();
    sc.usr1();
    assert!(
        wait_until(Duration::from_secs(10), || repaired() && sc.current(&sts)).await,
        "outputs not replaced with uid {own} mode 0640:\n{}",
        sc.log()
    );
    // Round 2: no signal, same content: the periodic re-check.
    wait_quiet(&out).await;
    sabotage();
    let at = Instant::now();
    assert!(
        wait_until(RECHECK_LIMIT, repaired).await,
        "the re-check did not repair ownership and mode within {RECHECK_LIMIT:?}:\n{}",
        sc.log()
    );
    let took = at.elapsed();
    // A scheduled refresh may be between STS's answer and its (debounced)
    // write right now: wait for the files to catch up, as round 1 does.
    assert!(
        wait_until(Duration::from_secs(5), || sc.current(&sts)).await,
        "the outputs do not hold the last sessions STS issued:\n{}",
        sc.log()
    );
    let counts = mon.finish();
    sc.stop();
    report(
        "e-ownership",
        "outputs chowned to 65534:65534 mode 0600 under rolecall running as uid 65532 (4 profiles)",
        2,
        &counts,
        &format!(
            "replaced by files of uid {own}, mode 0640: on the next write (SIGUSR1), and \
             {took:.1?} later {} without a signal",
            by_what(took)
        ),
    );
}

/// Regression test for a bug this suite found (see docs/RELIABILITY.md):
/// with the disk nearly full, the larger `credentials` fails to write while the
/// smaller `status.json` succeeds, so `status.json` carries the NEW expiry
/// next to the OLD keys. A restart during an STS outage adopts the pair:
/// old keys, new expiry. rolecall then reported ready and published keys
/// that STS had already expired (in process mode it would hand SDKs an
/// `Expiration` later than the keys' real one).
#[tokio::test]
async fn a_partial_write_failure_never_pairs_old_keys_with_a_new_expiry() {
    const PAGE: u64 = 4096;
    let vol = Tmpfs::mount("64k");
    let sts = FakeSts::granting(Duration::from_secs(600));
    let token = TokenDir::new(&valid_jwt());
    // 12 profiles: credentials needs two pages, status.json one.
    let roles = roles(12);
    let a = Sidecar::start(&sts, &token, &vol.path, &roles, None);
    assert!(
        a.wait_current(&sts, Duration::from_secs(15)).await,
        "{}",
        a.log()
    );
    let pages = |f: &str| fs::metadata(vol.path.join(f)).unwrap().len().div_ceil(PAGE);
    assert!(
        pages("credentials") > pages("status.json"),
        "precondition: credentials must need more pages than status.json"
    );
    let status_before = fs::read_to_string(vol.path.join("status.json")).unwrap();
    // Fill the volume, then free exactly one page.
    let filler = vol.path.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; PAGE as usize];
    while f.write_all(&chunk).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len - len % PAGE - PAGE).unwrap();
    drop(f);
    // New sessions that cannot all be written.
    sts.set_default(Reply::ok_for(Duration::from_secs(3600)));
    let issued = sts.issued().len();
    a.usr1();
    assert!(
        wait_until(Duration::from_secs(10), || sts.issued().len()
            >= issued + roles.len())
        .await
    );
    assert!(
        wait_until(Duration::from_secs(10), || a.log().contains("write failed")).await,
        "{}",
        a.log()
    );
    // Today status.json gets ahead of credentials here; a fix may prevent it.
    let _ = wait_until(Duration::from_secs(3), || {
        fs::read_to_string(vol.path.join("status.json")).is_ok_and(|s| s != status_before)
    })
    .await;
    drop(a); // SIGKILL
    fs::remove_file(&filler).unwrap();
    sts.set_default(Reply::server_error()); // STS is down when rolecall restarts
    let b = Sidecar::start(&sts, &token, &vol.path, &roles, None);
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(vol.path.join("status.json"))
                .is_ok_and(|s| s.matches("InternalFailure").count() == roles.len())
        })
        .await,
        "{}",
        b.log()
    );
    // Whatever B publishes, the expiry it reports must be the keys' own.
    let status: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(vol.path.join("status.json")).unwrap()).unwrap();
    let creds = parse_ini(&fs::read_to_string(vol.path.join("credentials")).unwrap());
    let issued = sts.issued();
    let mut wrong = Vec::new();
    for p in status["profiles"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let Some(keys) = creds.get(name) else {
            continue;
        };
        let real = issued
            .iter()
            .find(|c| c.access_key_id == keys["aws_access_key_id"])
            .expect("published keys were issued");
        let claimed = p["expiration"].as_str().map(parse_utc);
        if claimed != Some(real.expiration) {
            wrong.push(format!(
                "{name}: publishes {} (expires {}) but reports expiry {:?}",
                real.access_key_id,
                format_utc(real.expiration),
                p["expiration"].as_str()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "rolecall adopted old keys with a newer expiry after a partial write:\n{}",
        wrong.join("\n")
    );
}
