//! Node limits a fleet meets and a single test never does: every sidecar
//! on a node usually runs as the same user, and Linux allows that user 128
//! inotify instances by default (`fs.inotify.max_user_instances`). Here
//! another process of the sidecar's user holds every instance left, as 128
//! other sidecars would: rolecall still serves credentials, polls instead,
//! says once which sysctl to raise, and exports it as a metric.
//!
//! The same for the open-file limit (the child sidecar's `RLIMIT_NOFILE`
//! lowered, as `ulimit -n` would: clients of the credentials endpoint
//! exhaust it, or it is too low to start) and for ephemeral ports (a network
//! namespace of the test's own, whose `net.ipv4.ip_local_port_range` the
//! test fills with held connections to the fake STS; root only), and for
//! threads (the child's `RLIMIT_NPROC` lowered below the threads its user
//! runs, as a pod at its pids limit: a reload and a host-name lookup fail
//! and are retried, the sidecar lives on; root only).

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// The user of the examples' sidecars.
const UID: u32 = 65532;

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid() == 0
}

/// A process of user [`UID`] holding every inotify instance it can get;
/// returns it and how many it holds.
fn exhaust_inotify_instances() -> (std::process::Child, usize) {
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import ctypes, sys, time\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             n = 0\n\
             while libc.inotify_init1(0) >= 0:\n    n += 1\n\
             print(n, flush=True)\n\
             time.sleep(120)\n",
        ])
        .uid(UID)
        .gid(UID)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (holder, line.trim().parse().expect("a count"))
}

#[tokio::test]
async fn the_sidecar_past_the_inotify_instance_limit_polls_and_says_which_sysctl() {
    if !is_root() {
        eprintln!("skipped: only root can run the sidecar and the holder as user {UID}");
        return;
    }
    let _serial = USER_LIMITS.lock().await;
    let sts = FakeSts::granting(Duration::from_secs(3600));
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    // The user reads the token and writes the output dir, as in a pod.
    for d in [token.dir(), token.data_dir()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(out.path(), Some(UID), Some(UID)).unwrap();
    let (mut holder, held) = exhaust_inotify_instances();
    let port = free_port();
    let mut cmd = rolecall_run(
        &sts,
        &token,
        out.path(),
        [("reader", "arn:aws:iam::111122223333:role/reader")],
    );
    cmd.env("ROLECALL_HEALTH_ADDR", format!("127.0.0.1:{port}"))
        .uid(UID)
        .gid(UID);
    let mut sidecar = ChildSidecar::spawn(&mut cmd);
    let ready = wait_until_real(Duration::from_secs(20), || {
        http_get_blocking(port, "/readyz").is_some_and(|(code, _)| code == 200)
    })
    .await;
    let log = sidecar.log();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        ready,
        "not ready with no inotify instance left ({held} held):\n{log}"
    );
    assert!(out.path().join("credentials").is_file());
    let (_, metrics) = http_get_blocking(port, "/metrics").expect("metrics");
    assert!(
        metrics.contains("rolecall_watch_polling{file=\"token\"} 1"),
        "{metrics}"
    );
    let said = log.matches("fs.inotify.max_user_instances").count();
    assert!(said >= 1, "the sysctl is named:\n{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains("inotify")).count(),
        1,
        "said once:\n{log}"
    );
    assert!(
        log.contains("sysctl -w fs.inotify.max_user_instances="),
        "{log}"
    );
    assert!(sidecar.running());
    sidecar.signal(15);
    assert!(sidecar.stop_within(Duration::from_secs(5)).is_some());
}

/// The inotify instances a process holds (`anon_inode:inotify` descriptors).
fn inotify_instances(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().contains("inotify"))
        .count()
}

#[tokio::test]
async fn one_sidecar_watching_its_token_and_its_configuration_holds_one_inotify_instance() {
    let sts = FakeSts::granting(Duration::from_secs(3600));
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let cfg = ConfigDir::configmap("profiles:\n  reader: arn:aws:iam::111122223333:role/reader\n");
    let port = free_port();
    let mut cmd = rolecall_run(&sts, &token, out.path(), std::iter::empty::<(&str, &str)>());
    cmd.env("ROLECALL_HEALTH_ADDR", format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(cfg.path());
    let mut sidecar = ChildSidecar::spawn(&mut cmd);
    let ready = wait_until_real(Duration::from_secs(20), || {
        http_get_blocking(port, "/readyz").is_some_and(|(code, _)| code == 200)
    })
    .await;
    assert!(ready, "{}", sidecar.log());
    let (_, metrics) = http_get_blocking(port, "/metrics").expect("metrics");
    for file in ["token", "configuration"] {
        assert!(
            metrics.contains(&format!("rolecall_watch_polling{{file=\"{file}\"}} 0")),
            "{file} watched: {metrics}"
        );
    }
    // Two watched files (in two directories), one instance: a node's
    // fs.inotify.max_user_instances counts each sidecar once.
    assert_eq!(inotify_instances(sidecar.pid()), 1);
    sidecar.signal(15);
    assert!(sidecar.stop_within(Duration::from_secs(5)).is_some());
}

/// `RLIMIT_NOFILE` (soft and hard) of the sidecar in the open-file tests:
/// enough to start and serve (it holds about 20 at rest), far below the
/// 40 + 64 per listener it may need.
const NOFILE: u32 = 48;
const ROLE: &str = "arn:aws:iam::111122223333:role/reader";

/// The `suppressed=N` of a rate-limited log line.
fn suppressed(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("suppressed="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no suppressed= in {line}"))
}

#[tokio::test]
async fn at_its_open_file_limit_the_sidecar_keeps_its_credentials_names_the_limit_and_recovers() {
    let sts = FakeSts::granting(Duration::from_secs(3600));
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let (health, endpoint) = (free_port(), free_port());
    let mut cmd = rolecall_run(&sts, &token, out.path(), [("reader", ROLE)]);
    cmd.env("ROLECALL_HEALTH_ADDR", format!("127.0.0.1:{health}"))
        .args(["--endpoint-addr", &format!("127.0.0.1:{endpoint}")]);
    limit_open_files(&mut cmd, NOFILE);
    let mut sidecar = ChildSidecar::spawn(&mut cmd);
    let ready = wait_until_real(Duration::from_secs(20), || {
        http_get_blocking(health, "/readyz").is_some_and(|(code, _)| code == 200)
    })
    .await;
    assert!(
        ready,
        "not ready at {NOFILE} descriptors:\n{}",
        sidecar.log()
    );
    assert!(
        sidecar.log().contains("the open-file limit (RLIMIT_NOFILE, `ulimit -n`) is below what this configuration may hold open"),
        "the low limit is said at start:\n{}",
        sidecar.log()
    );
    let credentials = std::fs::read(out.path().join("credentials")).unwrap();
    let at_rest = std::fs::read_dir(format!("/proc/{}/fd", sidecar.pid()))
        .unwrap()
        .count();
    assert!(at_rest < 32, "{at_rest} descriptors at rest");

    // A hundred clients of the credentials endpoint hold a connection each:
    // more than the descriptors left, so accept fails with EMFILE.
    let started = std::time::Instant::now();
    let held: Vec<_> = (0..100)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", endpoint)).unwrap())
        .collect();
    let accept_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("accept failed"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let said = wait_until_real(Duration::from_secs(30), || {
        !accept_lines(&sidecar.log()).is_empty()
    })
    .await;
    assert!(said, "no accept failure logged:\n{}", sidecar.log());
    let first = accept_lines(&sidecar.log())[0].clone();
    assert!(
        first.contains(&format!("`ulimit -n`: {NOFILE} (hard {NOFILE})")),
        "names the limit and its value: {first}"
    );
    assert!(first.contains("LimitNOFILE"), "{first}");
    assert!(sidecar.running());
    // No hot loop: the next line comes a rate-limiting interval (10 s)
    // later and counts the failed accepts in between, which back off to
    // one a second (a spinning loop would make hundreds of thousands).
    let again = wait_until_real(Duration::from_secs(40), || {
        accept_lines(&sidecar.log()).len() >= 2
    })
    .await;
    assert!(
        again,
        "the connections kept the limit reached:\n{}",
        sidecar.log()
    );
    let second = accept_lines(&sidecar.log())[1].clone();
    assert!(suppressed(&second) < 200, "{second}");
    assert_eq!(
        std::fs::read(out.path().join("credentials")).unwrap(),
        credentials,
        "the credentials stay published"
    );

    // The clients go away: the sidecar accepts again, on both listeners.
    drop(held);
    let recovered = wait_until_real(Duration::from_secs(30), || {
        http_get_blocking(health, "/readyz").is_some_and(|(code, _)| code == 200)
    })
    .await;
    assert!(recovered, "{}", sidecar.log());
    let endpoint_token = std::fs::read_to_string(out.path().join("endpoint-token")).unwrap();
    let (code, body) = http_get(endpoint, "/v1/credentials/reader", Some(&endpoint_token)).await;
    assert_eq!(code, 200, "the endpoint serves again: {body}");
    let (_, metrics) = http_get_blocking(health, "/metrics").expect("metrics");
    let counted: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("rolecall_limit_reached_total{limit=\"open_files\",site=\"listener\"} ")
        })
        .unwrap_or_else(|| panic!("no listener series: {metrics}"))
        .parse()
        .unwrap();
    assert!(counted >= 1, "{metrics}");
    let log = sidecar.log();
    let lines = accept_lines(&log).len() as u64;
    let allowed = started.elapsed().as_secs() / 10 + 2;
    assert!(
        lines <= allowed,
        "{lines} accept-failure lines, {allowed} allowed:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    sidecar.signal(15);
    assert!(sidecar.stop_within(Duration::from_secs(5)).is_some());
}

#[tokio::test]
async fn with_too_few_descriptors_to_start_the_sidecar_exits_1_naming_the_limit() {
    let sts = FakeSts::granting(Duration::from_secs(3600));
    let token = TokenDir::new(&valid_jwt());
    // 3 are stdin, stdout and stderr; under 32, tokio's runtime, the
    // signal handlers or the first write would fail (tokio by a panic), so
    // rolecall refuses to start.
    for n in [4u32, 6, 16, 31] {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = rolecall_run(&sts, &token, out.path(), [("reader", ROLE)]);
        cmd.env("ROLECALL_HEALTH_ADDR", format!("127.0.0.1:{}", free_port()));
        limit_open_files(&mut cmd, n);
        let mut sidecar = ChildSidecar::spawn(&mut cmd);
        let (status, hung) = sidecar.exit_within(Duration::from_secs(20));
        let log = sidecar.log();
        assert!(!hung, "still running at {n} descriptors:\n{log}");
        assert_eq!(status.code(), Some(1), "at {n} descriptors:\n{log}");
        assert!(
            log.contains(&format!(
                "`ulimit -n`: {n} (hard {n})) is below the 32 descriptors rolecall needs to start"
            )),
            "names the limit at {n}:\n{log}"
        );
        assert!(log.contains("LimitNOFILE"), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}

/// Runs `body` on a thread of its own in a new network namespace with
/// loopback up (a namespace is per thread: whatever the thread creates,
/// sockets, threads and child processes, lives in it). Root only.
fn in_own_netns(body: impl std::future::Future<Output = ()> + Send + 'static) {
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare(2) takes a flag and touches no memory; it moves
        // only this thread to a new network namespace.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "{}",
            std::io::Error::last_os_error()
        );
        run_ok(Command::new("ip").args(["link", "set", "lo", "up"]));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body);
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sets the ephemeral port range of the calling thread's namespace.
fn set_port_range(range: &str) {
    run_ok(Command::new("sysctl").args(["-w", &format!("net.ipv4.ip_local_port_range={range}")]));
}

/// Connections to `to` from every local port of the range, held by the
/// test (as connections in TIME_WAIT hold them on a busy node); then shows
/// that one more fails with EADDRNOTAVAIL.
fn hold_every_port(to: std::net::SocketAddr, ports: usize) -> Vec<std::net::TcpStream> {
    let held: Vec<_> = (0..ports)
        .map(|_| std::net::TcpStream::connect(to).expect("a port of the range"))
        .collect();
    let e = std::net::TcpStream::connect(to).expect_err("the range is exhausted");
    assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{e}");
    held
}

/// Closes `s` with a reset, so that its port is free at once (a normal
/// close would leave it in TIME_WAIT).
fn close_with_reset(s: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt(2) reads `linger`, which outlives the call, on a
    // descriptor `s` owns.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(s);
}

fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn without_a_free_local_port_sts_calls_fail_as_transient_naming_the_sysctl_and_keep_the_credentials()
 {
    if !is_root() {
        eprintln!("skipped: only root can make a network namespace and set its port range");
        return;
    }
    in_own_netns(async {
        let sts = FakeSts::granting(Duration::from_secs(3600));
        // After the fake STS took its port: a listener's port (bound to
        // port 0) comes from the same range and blocks it for connects.
        set_port_range("40000 40001");
        let token = TokenDir::new(&valid_jwt());
        let out = tempfile::tempdir().unwrap();
        let health = free_port();
        let mut cmd = rolecall_run(&sts, &token, out.path(), [("reader", ROLE)]);
        // A run of the same failure is logged once a minute at info; its
        // every retry (`refresh failed again`) at debug.
        cmd.env("ROLECALL_HEALTH_ADDR", format!("127.0.0.1:{health}"))
            .env("ROLECALL_CONTROL_SOCKET", "")
            .env("RUST_LOG", "info,rolecall::refresher=debug");

        // 1. Every port of the range is taken when the sidecar starts.
        let mut held = hold_every_port(sts.addr(), 2);
        let mut sidecar = ChildSidecar::spawn(&mut cmd);
        let failed = wait_until_real(Duration::from_secs(20), || {
            lines_with(&sidecar.log(), "code=LocalPortsExhausted") >= 2
        })
        .await;
        let log = sidecar.log();
        assert!(failed, "no LocalPortsExhausted failure, twice:\n{log}");
        let line = log
            .lines()
            .find(|l| l.contains("code=LocalPortsExhausted"))
            .unwrap();
        for said in [
            "class=\"transient_error\"",
            "no free local port (EADDRNOTAVAIL; net.ipv4.ip_local_port_range: 40000 40001)",
            "Cannot assign requested address",
            "sysctl",
            "net.ipv4.tcp_tw_reuse",
            "retry_in_s=",
        ] {
            assert!(line.contains(said), "{said:?} missing: {line}");
        }
        assert_eq!(sts.calls(), 0, "no call reached STS");
        assert!(sidecar.running());
        let (code, _) = http_get_blocking(health, "/readyz").expect("readyz");
        assert_eq!(code, 503, "not ready without credentials");
        let (_, metrics) = http_get_blocking(health, "/metrics").expect("metrics");
        assert!(
            metrics.contains("rolecall_limit_reached_total{limit=\"local_ports\",site=\"sts\"} "),
            "{metrics}"
        );
        assert!(
            metrics
                .contains("rolecall_refresh_total{profile=\"reader\",result=\"transient_error\"} "),
            "{metrics}"
        );

        // 2. A port frees up: the next retry gets credentials.
        close_with_reset(held.pop().unwrap());
        let ready = wait_until_real(Duration::from_secs(60), || {
            http_get_blocking(health, "/readyz").is_some_and(|(code, _)| code == 200)
        })
        .await;
        assert!(ready, "{}", sidecar.log());
        let creds_path = out.path().join("credentials");
        let written = wait_until_real(Duration::from_secs(10), || {
            std::fs::read_to_string(&creds_path).is_ok_and(|c| c.contains("[reader]"))
        })
        .await;
        assert!(written, "{}", sidecar.log());
        let credentials = std::fs::read(&creds_path).unwrap();

        // 3. Ready, with its pooled connection to STS on a port of the old
        // range. A new range, every port of it held: when STS resets the
        // pooled connection, the refresh that follows finds no port. The
        // published credentials stay.
        set_port_range("40100 40101");
        let _held_too = hold_every_port(sts.addr(), 2);
        let failures_before = lines_with(&sidecar.log(), "code=LocalPortsExhausted");
        let calls = sts.calls();
        sts.push(Reply::Reset);
        // SIGUSR1 refreshes now, at most once per 5 s a profile.
        let called = wait_until_real(Duration::from_secs(20), || {
            sidecar.signal(libc::SIGUSR1);
            sts.calls() > calls
        })
        .await;
        assert!(called, "{}", sidecar.log());
        let failed_again = wait_until_real(Duration::from_secs(30), || {
            lines_with(&sidecar.log(), "code=LocalPortsExhausted") > failures_before
        })
        .await;
        assert!(failed_again, "{}", sidecar.log());
        assert_eq!(
            std::fs::read(out.path().join("credentials")).unwrap(),
            credentials,
            "the credentials stay published"
        );
        let status_path = out.path().join("status.json");
        let reported = wait_until_real(Duration::from_secs(10), || {
            std::fs::read_to_string(&status_path).is_ok_and(|s| s.contains("LocalPortsExhausted"))
        })
        .await;
        assert!(
            reported,
            "status.json: {:?}",
            std::fs::read_to_string(&status_path)
        );
        let (code, _) = http_get_blocking(health, "/readyz").expect("readyz");
        assert_eq!(code, 200, "still ready on the kept credentials");
        assert!(!sidecar.log().contains("panicked"));
        sidecar.signal(15);
        assert!(sidecar.stop_within(Duration::from_secs(5)).is_some());
    });
}

/// Held by each test that runs processes as user [`UID`] and brings that
/// user to one of its limits (tasks, inotify instances): two at once would
/// count each other's tasks, or one's sidecar would find the inotify
/// instances the other's holder exhausted (and poll for the wrong reason).
static USER_LIMITS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The tasks (processes and threads) user [`UID`] runs: what
/// `RLIMIT_NPROC` counts.
fn uid_tasks() -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        if field("Uid:").split_whitespace().next() == Some(&UID.to_string()) {
            n += field("Threads:").parse::<u64>().unwrap_or(1);
        }
    }
    n
}

/// Sets `RLIMIT_NPROC` (soft and hard) to `n` in the child, after it
/// became its user and before exec, as `ulimit -u` in a pod would.
fn limit_tasks(cmd: &mut Command, n: u64) -> &mut Command {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit(2) is async-signal-safe and reads only `limit`,
    // which the closure owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NPROC, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}

/// The threads of `pid` beyond its resting two (the runtime's and the
/// file watcher's), by name.
fn transient_threads(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|c| c.trim().to_owned())
                .filter(|c| c != "rolecall" && !c.starts_with("notify-rs"))
                .collect()
        })
        .unwrap_or_default()
}

/// A process of user [`UID`] that starts threads until the user is at
/// `limit` tasks (the other processes of a pod at its pids limit), and
/// holds them, taking any task that frees up (every 5 ms); returns it and
/// how many it started at first.
fn exhaust_tasks(limit: u64) -> (std::process::Child, u64) {
    let mut holder = Command::new("python3");
    holder
        .args([
            "-c",
            "import sys, threading, time\n\
             threading.stack_size(128 * 1024)\n\
             stop = threading.Event()\n\
             n = 0\n\
             while True:\n    \
                 try:\n        threading.Thread(target=stop.wait, daemon=True).start()\n    \
                 except RuntimeError:\n        break\n    \
                 n += 1\n\
             print(n, flush=True)\n\
             deadline = time.time() + 300\n\
             while time.time() < deadline:\n    \
                 time.sleep(0.005)\n    \
                 try:\n        threading.Thread(target=stop.wait, daemon=True).start()\n    \
                 except RuntimeError:\n        pass\n",
        ])
        .uid(UID)
        .gid(UID)
        .stdout(Stdio::piped());
    limit_tasks(&mut holder, limit);
    let mut holder = holder.spawn().expect("python3");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (holder, line.trim().parse().expect("a count"))
}

/// `rolecall_limit_reached_total{limit="threads",site}`, 0 without a series.
fn threads_reached(metrics: &str, site: &str) -> u64 {
    let series = format!("rolecall_limit_reached_total{{limit=\"threads\",site=\"{site}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn at_its_thread_limit_the_sidecar_survives_a_reload_and_a_lookup_keeps_its_credentials_and_recovers()
 {
    if !is_root() {
        eprintln!(
            "skipped: only root can run the sidecar as user {UID} and lower its RLIMIT_NPROC"
        );
        return;
    }
    let _serial = USER_LIMITS.lock().await;
    let sts = FakeSts::granting(Duration::from_secs(3600));
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    for d in [token.dir(), token.data_dir(), cfg.path().to_path_buf()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(out.path(), Some(UID), Some(UID)).unwrap();
    let file = cfg.path().join("rolecall.yaml");
    std::fs::write(&file, format!("profiles:\n  reader: {ROLE}\n")).unwrap();
    let health = free_port();
    // A host name, not an address: each new connection to STS looks it up.
    let by_name = sts.endpoint().replace("127.0.0.1", "localhost");
    assert_ne!(by_name, sts.endpoint());
    // The user's tasks may grow this much (the sidecar's two threads, its
    // lookups and reloads) before the limit.
    let limit = uid_tasks() + 16;
    let mut cmd = rolecall_command();
    limit_tasks(&mut cmd, limit);
    cmd.env("RUST_LOG", "info")
        .env("ROLECALL_HEALTH_ADDR", format!("127.0.0.1:{health}"))
        .args(base_args(&sts, &token, out.path()).iter().map(|a| {
            if *a == sts.endpoint() {
                by_name.clone()
            } else {
                a.clone()
            }
        }))
        .arg("--config")
        .arg(&file)
        .uid(UID)
        .gid(UID);
    let mut sidecar = ChildSidecar::spawn(&mut cmd);
    let creds_path = out.path().join("credentials");
    let ready = wait_until_real(Duration::from_secs(20), || {
        http_get_blocking(health, "/readyz").is_some_and(|(code, _)| code == 200)
            && std::fs::read_to_string(&creds_path).is_ok_and(|c| c.contains("[reader]"))
    })
    .await;
    assert!(ready, "{}", sidecar.log());
    let credentials = std::fs::read(&creds_path).unwrap();
    // At rest: no thread left from the start's lookups (tokio's blocking
    // pool keeps an idle thread 10 s, and a task queued behind a live one
    // would not need a new thread).
    let pid = sidecar.pid();
    let at_rest = wait_until_real(Duration::from_secs(30), || {
        transient_threads(pid).is_empty()
    })
    .await;
    assert!(at_rest, "threads: {:?}", transient_threads(pid));

    // The pod is at its pids limit: another process of the user holds
    // every task left, so no thread of the sidecar can start.
    let (mut holder, held) = exhaust_tasks(limit);
    assert!(held > 0, "the holder started no thread");

    // 1. A refresh: STS resets the pooled connection, so the retry opens a
    // new one, whose lookup of `localhost` needs a thread.
    let calls = sts.calls();
    sts.push(Reply::Reset);
    // SIGUSR1 refreshes now, at most once per 5 s a profile.
    let called = wait_until_real(Duration::from_secs(20), || {
        sidecar.signal(libc::SIGUSR1);
        sts.calls() > calls
    })
    .await;
    assert!(called, "{}", sidecar.log());
    let failed = wait_until_real(Duration::from_secs(30), || {
        lines_with(&sidecar.log(), "code=ThreadLimitReached") >= 1
    })
    .await;
    let log = sidecar.log();
    assert!(failed, "no ThreadLimitReached failure:\n{log}");
    assert!(sidecar.running(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("code=ThreadLimitReached"))
        .unwrap();
    for said in [
        "refresh failed",
        "class=\"transient_error\"",
        "cannot start a thread for a host-name lookup",
        &format!("RLIMIT_NPROC `ulimit -u`: {limit} (hard {limit})"),
        "pids limit",
        "retry_in_s=",
    ] {
        assert!(line.contains(said), "{said:?} missing: {line}");
    }
    assert_eq!(sts.calls(), calls + 1, "only the reset call reached STS");

    // 2. A reload (SIGHUP; the edit alone asks for one too) that adds a
    // profile: its thread cannot start either.
    std::fs::write(
        &file,
        format!("profiles:\n  reader: {ROLE}\n  writer: arn:aws:iam::111122223333:role/writer\n"),
    )
    .unwrap();
    sidecar.signal(libc::SIGHUP);
    let refused = wait_until_real(Duration::from_secs(20), || {
        lines_with(&sidecar.log(), "reload not carried out") >= 1
    })
    .await;
    let log = sidecar.log();
    assert!(refused, "no failed reload:\n{log}");
    assert!(sidecar.running(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("reload not carried out"))
        .unwrap();
    for said in [
        "cannot start a thread for the configuration reload",
        "RLIMIT_NPROC",
        "retry_in_s=5",
    ] {
        assert!(line.contains(said), "{said:?} missing: {line}");
    }
    // Retried every 5 s while the limit holds: each retry is counted, and
    // the log says it once a minute, not at each retry.
    let retried = wait_until_real(Duration::from_secs(20), || {
        http_get_blocking(health, "/metrics")
            .is_some_and(|(_, metrics)| threads_reached(&metrics, "reload") >= 3)
    })
    .await;
    let log = sidecar.log();
    assert!(retried, "the reload was not retried:\n{log}");
    assert_eq!(
        lines_with(&log, "reload not carried out;"),
        1,
        "a retry that failed again was logged before the minute:\n{log}"
    );
    let (code, metrics) = http_get_blocking(health, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(threads_reached(&metrics, "sts") >= 1, "{metrics}");
    assert!(threads_reached(&metrics, "reload") >= 1, "{metrics}");
    let (code, _) = http_get_blocking(health, "/readyz").expect("readyz");
    assert_eq!(code, 200, "still ready on the kept credentials");
    assert_eq!(
        std::fs::read(&creds_path).unwrap(),
        credentials,
        "the credentials stay published"
    );

    // 3. The holder goes away: the refresh's retry and the reload's retry
    // both go through, with no restart.
    let _ = holder.kill();
    let _ = holder.wait();
    let recovered = wait_until_real(Duration::from_secs(60), || {
        let c = std::fs::read_to_string(&creds_path).unwrap_or_default();
        c.contains("[writer]") && sts.calls_for_role(ROLE) > calls + 1
    })
    .await;
    let log = sidecar.log();
    assert!(recovered, "not recovered:\n{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(sidecar.running());
    sidecar.signal(15);
    assert!(sidecar.stop_within(Duration::from_secs(5)).is_some());
}

#[tokio::test]
async fn started_at_its_thread_limit_the_sidecar_polls_instead_of_watching_and_serves() {
    if !is_root() {
        eprintln!(
            "skipped: only root can run the sidecar as user {UID} and lower its RLIMIT_NPROC"
        );
        return;
    }
    let _serial = USER_LIMITS.lock().await;
    let sts = FakeSts::granting(Duration::from_secs(3600));
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    for d in [token.dir(), token.data_dir()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(out.path(), Some(UID), Some(UID)).unwrap();
    // The pod is already at its pids limit when the sidecar (re)starts:
    // not even the file watcher's thread can start. (The STS endpoint is an
    // address: no lookup.)
    let limit = uid_tasks() + 16;
    let (mut holder, held) = exhaust_tasks(limit);
    assert!(held > 0, "the holder started no thread");
    let health = free_port();
    let mut cmd = rolecall_run(&sts, &token, out.path(), [("reader", ROLE)]);
    limit_tasks(&mut cmd, limit);
    cmd.env("ROLECALL_HEALTH_ADDR", format!("127.0.0.1:{health}"))
        .uid(UID)
        .gid(UID);
    let mut sidecar = ChildSidecar::spawn(&mut cmd);
    let creds_path = out.path().join("credentials");
    let ready = wait_until_real(Duration::from_secs(20), || {
        http_get_blocking(health, "/readyz").is_some_and(|(code, _)| code == 200)
            && std::fs::read_to_string(&creds_path).is_ok_and(|c| c.contains("[reader]"))
    })
    .await;
    let log = sidecar.log();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(ready, "not ready at the thread limit:\n{log}");
    assert_eq!(
        lines_with(&log, "cannot start the file watcher's thread"),
        1,
        "said once:\n{log}"
    );
    assert!(log.contains("RLIMIT_NPROC `ulimit -u`: "), "{log}");
    let (_, metrics) = http_get_blocking(health, "/metrics").expect("metrics");
    assert!(
        metrics.contains("rolecall_watch_polling{file=\"token\"} 1"),
        "{metrics}"
    );
    assert!(threads_reached(&metrics, "watch") >= 1, "{metrics}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(sidecar.running());
    sidecar.signal(15);
    assert!(sidecar.stop_within(Duration::from_secs(5)).is_some());
}
