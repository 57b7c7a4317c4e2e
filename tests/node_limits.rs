//! Node limits a fleet meets and a single test never does: every sidecar
//! on a node usually runs as the same user, and Linux allows that user 128
//! inotify instances by default (`fs.inotify.max_user_instances`). Here
//! another process of the sidecar's user holds every instance left, as 128
//! other sidecars would: rolecall still serves credentials, polls instead,
//! says once which sysctl to raise, and exports it as a metric.

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
