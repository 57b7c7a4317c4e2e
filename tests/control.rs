//! Operations through `kubectl exec`: `rolecall reload` and `rolecall
//! refresh`, run as a second process (the built binary), against a running
//! sidecar's control socket; and the socket's bounds against hostile
//! clients and hostile files at its path.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rolecall::config::{Config, Env, Flags};
use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";
const WAIT: Duration = Duration::from_secs(10);

/// An in-process sidecar publishing `reader` and `writer`, its control
/// socket in a directory of its own.
struct Sidecar {
    sts: FakeSts,
    _token: TokenDir,
    out: tempfile::TempDir,
    run: tempfile::TempDir,
    sock: PathBuf,
    running: Running,
}

impl Sidecar {
    /// Started against `sts`, with `--control-socket run/rolecall/control.sock`
    /// (`sock` when given); `reload` names the file a reload reads (the
    /// running configuration comes from flags, so no watcher reloads it
    /// first).
    fn start(sts: FakeSts, sock: Option<PathBuf>, reload: Option<PathBuf>) -> Sidecar {
        Self::start_with(sts, sock, reload, |f| f)
    }

    fn start_with(
        sts: FakeSts,
        sock: Option<PathBuf>,
        reload: Option<PathBuf>,
        more: impl FnOnce(Flags) -> Flags,
    ) -> Sidecar {
        Self::start_gated(sts, sock, reload, more, None)
    }

    /// As [`start_with`](Self::start_with); with `gate`, each reload waits
    /// for a message on it (or for its sender to be dropped) before it
    /// reads the file: requests that stay in progress as long as the test
    /// wants.
    fn start_gated(
        sts: FakeSts,
        sock: Option<PathBuf>,
        reload: Option<PathBuf>,
        more: impl FnOnce(Flags) -> Flags,
        gate: Option<std::sync::mpsc::Receiver<()>>,
    ) -> Sidecar {
        let gate = gate.map(std::sync::Mutex::new);
        let token = TokenDir::new(&valid_jwt());
        let out = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let sock = sock.unwrap_or_else(|| run.path().join("rolecall/control.sock"));
        let flags = more(Flags {
            control_socket: Some(sock.display().to_string()),
            ..test_flags(
                &sts,
                &token,
                out.path(),
                &[&format!("reader={READER}"), &format!("writer={WRITER}")],
            )
        });
        let config = Config::load(&flags, &Env::new()).unwrap();
        let reload_flags = Flags {
            config: reload,
            profiles: Vec::new(),
            ..flags
        };
        let running = Running::start_with_reload(
            config,
            move || {
                if let Some(gate) = &gate {
                    let _ = gate.lock().unwrap().recv();
                }
                Config::load(&reload_flags, &Env::new())
            },
            test_options(),
        );
        Sidecar {
            sts,
            _token: token,
            out,
            run,
            sock,
            running,
        }
    }

    fn credentials(&self) -> String {
        std::fs::read_to_string(self.out.path().join("credentials")).unwrap_or_default()
    }

    /// Waits (on the wall clock) until `profiles` are all in `credentials`.
    async fn wait_for(&self, profiles: &[&str]) {
        let served = wait_until_real(WAIT, || {
            let c = self.credentials();
            profiles.iter().all(|p| c.contains(&format!("[{p}]")))
        })
        .await;
        assert!(served, "{profiles:?} not served:\n{}", self.credentials());
    }

    /// `rolecall ARGS --control-socket SOCK` as a second process.
    async fn rolecall(&self, args: &[&str]) -> Run {
        client(&self.sock, args).await
    }

    fn calls(&self) -> (usize, usize) {
        (
            self.sts.calls_for_role(READER),
            self.sts.calls_for_role(WRITER),
        )
    }
}

/// `rolecall ARGS --control-socket SOCK`, on the blocking pool (the sidecar
/// under test runs on this runtime; under paused time, the blocking task
/// also keeps the clock still while the client waits).
async fn client(sock: &Path, args: &[&str]) -> Run {
    let mut cmd = rolecall_piped();
    cmd.args(args).arg("--control-socket").arg(sock);
    tokio::task::spawn_blocking(move || run_for(&mut cmd, Duration::from_secs(60)))
        .await
        .unwrap()
}

/// Runs blocking socket I/O off the runtime the sidecar under test runs on.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn reload_applies_the_changed_file_and_says_what_changed_or_why_it_refused() {
    let cfg = tempfile::tempdir().unwrap();
    let file = cfg.path().join("rolecall.yaml");
    let s = Sidecar::start(
        FakeSts::granting(Duration::from_secs(3600)),
        None,
        Some(file.clone()),
    );
    s.wait_for(&["reader", "writer"]).await;
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);

    // writer removed, ops added.
    std::fs::write(
        &file,
        format!("profiles:\n  reader: {{role_arn: '{READER}'}}\n  ops: {{role_arn: '{WRITER}'}}\n"),
    )
    .unwrap();
    let r = s.rolecall(&["reload"]).await;
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert_eq!(
        r.stdout,
        "configuration reloaded: added ops; changed -; removed writer\n",
        "{}",
        r.describe()
    );
    s.wait_for(&["reader", "ops"]).await;
    assert!(!s.credentials().contains("[writer]"));

    // The same file again: nothing to do, as the raw answer says.
    let r = s.rolecall(&["reload", "--json"]).await;
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let answer: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"ok": true, "added": [], "changed": [], "removed": [], "restart_needed": []})
    );

    // An invalid file is refused with its problems; nothing changes.
    std::fs::write(&file, "profiles:\n  reader: {role_arn: 'not-an-arn'}\n").unwrap();
    let r = s.rolecall(&["reload"]).await;
    r.assert_says(
        1,
        &[
            "reload refused; the running configuration is kept:",
            "profiles.reader.role_arn: \"not-an-arn\" is not an IAM role ARN",
        ],
        "an invalid file",
    );
    let r = s.rolecall(&["reload", "--json"]).await;
    assert_eq!(r.code, Some(1), "{}", r.describe());
    let answer: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(answer["ok"], false);
    assert!(
        answer["problems"][0]
            .as_str()
            .unwrap()
            .contains("not-an-arn")
    );
    s.wait_for(&["reader", "ops"]).await;
    s.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refresh_calls_sts_once_per_profile_at_most_every_5_s_and_once_for_the_one_named() {
    let s = Sidecar::start(FakeSts::start_local(), None, None);
    s.wait_for(&["reader", "writer"]).await;
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);
    // Past the 5 s spacing after the start's attempts.
    tokio::time::advance(Duration::from_secs(6)).await;

    let (reader, writer) = s.calls();
    let r = s.rolecall(&["refresh"]).await;
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.describe());
    assert!(
        lines[0].starts_with("reader: refreshed, expires 20"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("writer: refreshed, expires 20"),
        "{lines:?}"
    );
    assert_eq!(s.calls(), (reader + 1, writer + 1), "one call per profile");

    // 2 s later: inside the spacing, no call, and the answer says so; not
    // refreshed is exit 1.
    tokio::time::advance(Duration::from_secs(2)).await;
    let r = s.rolecall(&["refresh"]).await;
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert_eq!(
        r.stderr,
        "reader: skipped: refreshed 2 s ago (at most once per profile every 5 s)\n\
         writer: skipped: refreshed 2 s ago (at most once per profile every 5 s)\n"
    );
    assert_eq!(s.calls(), (reader + 1, writer + 1), "no call");

    // One profile: one call, for it only.
    tokio::time::advance(Duration::from_secs(4)).await;
    let r = s
        .rolecall(&["refresh", "--profile", "writer", "--json"])
        .await;
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let answer: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["profiles"].as_array().unwrap().len(), 1);
    assert_eq!(answer["profiles"][0]["profile"], "writer");
    assert_eq!(answer["profiles"][0]["result"], "refreshed");
    assert!(
        !r.stdout.contains("Secret") && !r.stdout.contains("ASIA"),
        "no key: {}",
        r.stdout
    );
    assert_eq!(s.calls(), (reader + 1, writer + 2));

    // A refusal is reported as status shows it, exit 1.
    tokio::time::advance(Duration::from_secs(6)).await;
    s.sts.push_for_role(WRITER, Reply::access_denied());
    let r = s.rolecall(&["refresh", "--profile", "writer"]).await;
    r.assert_says(1, &["writer: FAILED: AccessDenied: "], "a refused refresh");
    tokio::time::advance(Duration::from_secs(6)).await;
    s.sts.push_for_role(WRITER, Reply::access_denied());
    let r = s
        .rolecall(&["refresh", "--profile", "writer", "--json"])
        .await;
    assert_eq!(r.code, Some(1), "{}", r.describe());
    let answer: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(answer["profiles"][0]["result"], "failed");
    assert_eq!(answer["profiles"][0]["class"], "config_error");
    assert_eq!(s.calls(), (reader + 1, writer + 4));

    // An unknown profile is a usage error that lists the configured ones.
    let r = s.rolecall(&["refresh", "--profile", "nope"]).await;
    r.assert_says(
        64,
        &["no profile nope; configured: reader, writer"],
        "unknown",
    );
    assert_eq!(s.calls(), (reader + 1, writer + 4));
    s.running.stop().await;
}

#[tokio::test]
async fn no_sidecar_at_the_socket_is_exit_1_with_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let r = client(&dir.path().join("control.sock"), &["refresh"]).await;
    r.assert_says(
        1,
        &[
            "no rolecall sidecar answers at ",
            "is this the rolecall container, and is ",
            " an emptyDir mounted in it?",
        ],
        "no sidecar",
    );
    // Bad usage of the client itself is 64, as everywhere.
    let r = client(
        &dir.path().join("control.sock"),
        &["refresh", "--profil", "a"],
    )
    .await;
    assert_eq!(r.code, Some(64), "{}", r.describe());
}

#[tokio::test]
async fn status_asks_the_sidecar_for_its_output_dir_and_falls_back_to_the_default() {
    let s = Sidecar::start(FakeSts::granting(Duration::from_secs(3600)), None, None);
    s.wait_for(&["reader", "writer"]).await;
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);
    // Without --output-dir: the sidecar's one (default) set, as --output-dir
    // would show it, with no set header.
    let asked = client(&s.sock, &["status"]).await;
    assert_eq!(asked.code, Some(0), "{}", asked.describe());
    assert!(!asked.stdout.contains("output set"), "{}", asked.stdout);
    let mut cmd = rolecall_piped();
    cmd.args(["status", "--output-dir"]).arg(s.out.path());
    let direct = blocking(move || run_for(&mut cmd, Duration::from_secs(30))).await;
    let rows = |t: &str| {
        t.lines()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&asked.stdout), rows(&direct.stdout));
    s.running.stop().await;
    // No sidecar answers: the output dir of the environment, as before.
    let gone = tempfile::tempdir().unwrap();
    let mut cmd = rolecall_piped();
    cmd.arg("status")
        .arg("--control-socket")
        .arg(gone.path().join("control.sock"))
        .env("ROLECALL_OUTPUT_DIR", s.out.path());
    let fallback = blocking(move || run_for(&mut cmd, Duration::from_secs(30))).await;
    assert_eq!(fallback.code, Some(0), "{}", fallback.describe());
    assert_eq!(rows(&fallback.stdout), rows(&direct.stdout));
}

#[tokio::test]
async fn the_socket_is_0600_in_a_private_directory_and_removed_at_a_clean_stop() {
    let s = Sidecar::start(FakeSts::granting(Duration::from_secs(3600)), None, None);
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);
    assert_eq!(mode(&s.sock), 0o600, "the socket");
    assert_eq!(
        mode(s.sock.parent().unwrap()),
        0o700,
        "the directory it created"
    );
    let sock = s.sock.clone();
    let run = s.run.path().to_owned();
    s.running.stop().await;
    assert!(!sock.exists(), "removed at shutdown");
    assert!(run.exists());
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_regular_file_is_never_deleted() {
    let run = tempfile::tempdir().unwrap();
    let sock = run.path().join("control.sock");
    // A killed run's socket: bound, its process gone.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let s = Sidecar::start(
        FakeSts::granting(Duration::from_secs(3600)),
        Some(sock.clone()),
        None,
    );
    s.wait_for(&["reader"]).await;
    let answered = wait_until_real(WAIT, || UnixStream::connect(&sock).is_ok()).await;
    assert!(answered, "the stale socket was replaced by a live one");
    let r = s.rolecall(&["refresh", "--profile", "nope"]).await;
    assert_eq!(r.code, Some(64), "{}", r.describe());
    s.running.stop().await;

    std::fs::write(&sock, "not a socket").unwrap();
    let port = free_port();
    let s = Sidecar::start_with(
        FakeSts::granting(Duration::from_secs(3600)),
        Some(sock.clone()),
        None,
        |f| Flags {
            health_addr: Some(format!("127.0.0.1:{port}")),
            ..f
        },
    );
    s.wait_for(&["reader", "writer"]).await;
    let (status, _) = http_get(port, "/readyz", None).await;
    assert_eq!(status, 200, "ready without its control socket");
    let (_, metrics) = http_get(port, "/metrics", None).await;
    assert!(
        metrics.contains("rolecall_control_socket_up 0"),
        "{metrics}"
    );
    s.running.stop().await;
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "not a socket");
}

#[tokio::test]
async fn a_silent_client_is_dropped_and_blocks_no_other() {
    let s = Sidecar::start(FakeSts::granting(Duration::from_secs(3600)), None, None);
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);
    let mut silent = UnixStream::connect(&s.sock).unwrap();
    silent.write_all(b"{\"op\":").unwrap();
    let r = s.rolecall(&["refresh", "--profile", "nope"]).await;
    assert_eq!(r.code, Some(64), "answered meanwhile: {}", r.describe());
    // Dropped, without an answer, after the 5 s the request line may take.
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let rest = blocking(move || {
        let mut rest = Vec::new();
        silent.read_to_end(&mut rest).map(|_| rest)
    })
    .await;
    assert!(rest.as_ref().is_ok_and(Vec::is_empty), "{rest:?}");
    s.running.stop().await;
}

#[tokio::test]
async fn a_1_mib_line_is_refused() {
    let s = Sidecar::start(FakeSts::granting(Duration::from_secs(3600)), None, None);
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);
    let mut stream = UnixStream::connect(&s.sock).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        // The sidecar stops reading after 4 KiB: this write ends in EPIPE.
        let _ = writer.write_all(&vec![b'x'; 1024 * 1024]);
    });
    // The answer, then the end: a reset (the sidecar closed with the flood
    // unread) may follow the answer, so bytes are kept as they come.
    let answer = blocking(move || {
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut chunk) {
            answer.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(answer).unwrap()
    })
    .await;
    flood.join().unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["ok"], false);
    assert!(
        answer["problems"][0]
            .as_str()
            .unwrap()
            .contains("longer than 4096 bytes"),
        "{answer}"
    );
    s.running.stop().await;
}

/// A configuration file with the profiles the test sidecar starts with.
fn same_file(dir: &Path) -> PathBuf {
    let file = dir.join("rolecall.yaml");
    std::fs::write(
        &file,
        format!("profiles:\n  reader: {READER}\n  writer: {WRITER}\n"),
    )
    .unwrap();
    file
}

/// The bytes `s` wrote that the peer has not read yet (`SIOCOUTQ`: a Unix
/// socket's sent data counts against the sender until it is read).
fn unread(s: &UnixStream) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: ioctl(2) SIOCOUTQ writes one int into `n`, which outlives the
    // call, for a descriptor `s` owns.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    n
}

#[tokio::test]
async fn idle_connections_cannot_keep_reload_out() {
    let cfg = tempfile::tempdir().unwrap();
    let s = Sidecar::start(
        FakeSts::granting(Duration::from_secs(3600)),
        None,
        Some(same_file(cfg.path())),
    );
    s.wait_for(&["reader", "writer"]).await;
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);
    // Clients of the sidecar's own user that connect and say nothing, as
    // many as the socket serves, reconnecting as soon as one is closed.
    let mut idle: Vec<UnixStream> = Vec::new();
    let mut closed = 0;
    let open = |c: &UnixStream| {
        let mut b = [0u8; 1];
        c.set_nonblocking(true).unwrap();
        // Closed by the sidecar: reads the end at once.
        !matches!((&*c).read(&mut b), Ok(0))
    };
    for round in 0..5 {
        let before = idle.len();
        idle.retain(open);
        closed += before - idle.len();
        while idle.len() < 4 {
            idle.push(UnixStream::connect(&s.sock).unwrap());
        }
        let r = s.rolecall(&["reload"]).await;
        assert_eq!(r.code, Some(0), "round {round}: {}", r.describe());
        assert!(
            r.stdout.starts_with("configuration reloaded"),
            "round {round}: {}",
            r.describe()
        );
    }
    let before = idle.len();
    idle.retain(open);
    closed += before - idle.len();
    assert!(
        closed >= 5,
        "each reload took an idle one's slot: {closed} closed"
    );
    s.running.stop().await;
}

#[tokio::test]
async fn with_four_requests_in_progress_a_fifth_is_answered_busy_and_status_says_so() {
    let cfg = tempfile::tempdir().unwrap();
    let (open, gate) = std::sync::mpsc::channel();
    let s = Sidecar::start_gated(
        FakeSts::granting(Duration::from_secs(3600)),
        None,
        Some(same_file(cfg.path())),
        |f| f,
        Some(gate),
    );
    s.wait_for(&["reader", "writer"]).await;
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);
    // Four reloads in progress: the first waits at the gate, the others
    // for the one after it.
    let four: Vec<UnixStream> = (0..4)
        .map(|_| {
            let mut c = UnixStream::connect(&s.sock).unwrap();
            c.write_all(b"{\"op\":\"reload\"}\n").unwrap();
            c
        })
        .collect();
    let read = wait_until_real(WAIT, || four.iter().all(|c| unread(c) == 0)).await;
    assert!(read, "the sidecar read the four requests");

    let r = s.rolecall(&["reload"]).await;
    r.assert_says(
        1,
        &[
            "the sidecar is busy: 4 requests are being carried out",
            "try again",
        ],
        "a fifth reload",
    );
    assert!(!r.stderr.contains("reload refused"), "{}", r.describe());
    let mut cmd = rolecall_piped();
    cmd.arg("status")
        .arg("--control-socket")
        .arg(&s.sock)
        .env("ROLECALL_OUTPUT_DIR", s.out.path());
    let status = blocking(move || run_for(&mut cmd, Duration::from_secs(30))).await;
    assert!(
        status.stderr.contains(&format!(
            "the sidecar at {} is busy and did not name its output sets",
            s.sock.display()
        )),
        "{}",
        status.describe()
    );
    assert!(
        status
            .stderr
            .contains(&format!("showing {} only", s.out.path().display())),
        "{}",
        status.describe()
    );
    assert!(status.stdout.contains("reader"), "{}", status.describe());

    // The gate opens: the four are answered.
    drop(open);
    for mut c in four {
        c.set_read_timeout(Some(WAIT)).unwrap();
        let answer = blocking(move || {
            let mut a = String::new();
            c.read_to_string(&mut a).map(|_| a)
        })
        .await
        .unwrap();
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["ok"], true, "{answer}");
    }
    s.running.stop().await;
}

#[tokio::test]
async fn another_user_cannot_use_the_socket() {
    if rolecall_uid() != 0 {
        // Only root can run the client as another user.
        return;
    }
    let s = Sidecar::start(FakeSts::granting(Duration::from_secs(3600)), None, None);
    s.wait_for(&["reader", "writer"]).await;
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);
    // The directory is traversable, so that only the socket's mode decides.
    let dir = s.sock.parent().unwrap();
    std::fs::set_permissions(s.run.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = rolecall_piped();
    std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
    cmd.args(["refresh", "--control-socket"]).arg(&s.sock);
    let calls = s.calls();
    let r = tokio::task::spawn_blocking(move || run_for(&mut cmd, Duration::from_secs(60)))
        .await
        .unwrap();
    r.assert_says(1, &["permission denied"], "another user");
    assert_eq!(s.calls(), calls, "no refresh");
    s.running.stop().await;
}

fn rolecall_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid()
}

#[tokio::test]
async fn an_unwritable_directory_is_one_warning_and_the_sidecar_is_ready() {
    let sb = Sandbox::granting(Duration::from_secs(3600));
    let port = free_port();
    let blocked = tempfile::tempdir().unwrap();
    // A regular file where a directory should be: no directory can be made
    // under it, even by root (as on a read-only root file system).
    std::fs::write(blocked.path().join("file"), "").unwrap();
    let sock = blocked.path().join("file/rolecall/control.sock");
    let mut child = ChildSidecar::spawn(
        rolecall_run(&sb.sts, &sb.token, sb.out.path(), [("reader", READER)])
            .args(["--health-addr", &format!("127.0.0.1:{port}")])
            .arg("--control-socket")
            .arg(&sock),
    );
    let ready = wait_until_real(WAIT, || {
        http_get_blocking(port, "/readyz").is_some_and(|(status, _)| status == 200)
    })
    .await;
    assert!(ready, "not ready:\n{}", child.log());
    assert!(child.running());
    let log = child.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("control socket not available"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("mount an emptyDir at") && warnings[0].contains("to silence this"),
        "{}",
        warnings[0]
    );
    assert_eq!(
        child.stop_within(Duration::from_secs(5)).map(|s| s.code()),
        Some(Some(0))
    );
}

#[tokio::test]
async fn status_through_the_socket_exits_1_while_a_profile_has_no_session() {
    let sts = FakeSts::granting(Duration::from_secs(3600));
    // The writer's role refuses (a configuration error: it backs off).
    for _ in 0..5 {
        sts.push_for_role(WRITER, Reply::access_denied());
    }
    let s = Sidecar::start(sts, None, None);
    s.wait_for(&["reader"]).await;
    assert!(wait_until_real(WAIT, || s.sock.exists()).await);
    let status = s.out.path().join("status.json");
    let failed = wait_until_real(WAIT, || {
        std::fs::read_to_string(&status).is_ok_and(|t| t.contains("AccessDenied"))
    })
    .await;
    assert!(failed, "the writer's refusal is in status.json");
    for args in [&["status"][..], &["status", "--json"]] {
        let r = client(&s.sock, args).await;
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.describe());
        assert_eq!(
            r.stderr, "rolecall: not ready: writer (no session)\n",
            "{args:?}"
        );
        assert!(
            r.stdout.contains("reader"),
            "the status still prints: {}",
            r.describe()
        );
    }
    s.running.stop().await;
}
