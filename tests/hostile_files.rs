//! Hostile files where rolecall reads and writes (issue 9, items 3 and 5):
//! symlinks to devices and FIFOs planted at output paths and at the
//! configuration path, a directory named like a temporary file, huge or
//! deeply nested configuration files, unsafe file modes, a replaced
//! credential_process helper, and terminal escapes in what `rolecall status`
//! and the helper print.
//!
//! Most cases run the real binary as a process, each with a deadline so that
//! a hang fails the test instead of hanging it; two run the sidecar
//! in-process ([`Running`]) to watch it while a reload is in progress and to
//! drive its 30 s re-check with paused time.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rolecall::config::{Config, Env, Flags};
use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
/// Longest a one-shot command may take before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(30);

fn reader() -> [String; 2] {
    ["--profile".into(), format!("reader={READER}")]
}

fn run(cmd: &mut Command) -> Run {
    run_for(cmd, LIMIT)
}

fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

fn is_regular(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The sidecar as a process, with its stderr collected as it runs and its
/// health listener on a free port.
struct Sidecar {
    process: ChildSidecar,
    port: u16,
}

impl Sidecar {
    fn start(args: &[String]) -> Sidecar {
        let port = free_port();
        let process = ChildSidecar::spawn(
            rolecall_piped()
                .arg("run")
                .args(args)
                .args(["--health-addr", &format!("127.0.0.1:{port}")]),
        );
        Sidecar { process, port }
    }

    fn logs(&self) -> String {
        self.process.log()
    }

    async fn livez(&self) -> u16 {
        tokio::time::timeout(Duration::from_secs(2), http_get(self.port, "/livez", None))
            .await
            .map_or(0, |(status, _)| status)
    }

    /// SIGTERM; the exit code, or `None` if it did not stop within 3 s.
    fn stop(mut self) -> Option<i32> {
        self.process
            .stop_within(Duration::from_secs(3))
            .and_then(|status| status.code())
    }
}

// ---------------------------------------------------------------------------
// Item 3: readers follow symlinks and open FIFOs
// ---------------------------------------------------------------------------

#[test]
fn links_to_dev_zero_at_the_outputs_are_replaced_not_read() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    for name in ["credentials", "credential-process.json", "status.json"] {
        std::os::unix::fs::symlink("/dev/zero", out.path().join(name)).unwrap();
    }
    // Reading /dev/zero to its end would grow without bound: under a 1 GiB
    // address-space limit that ends the process instead of the machine.
    let mut cmd = rolecall_piped();
    cmd.arg("once")
        .args(base_args(&sts, &token, out.path()))
        .args(reader());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let r = run(&mut cmd);
    // The planted link is logged.
    assert_credentials_replaced(&r, out.path(), &["symbolic link", "credentials"]);
    assert!(is_regular(&out.path().join("status.json")));
    // The process-mode file is not used by this configuration: removed.
    assert!(std::fs::symlink_metadata(out.path().join("credential-process.json")).is_err());
}

#[test]
fn a_fifo_at_credentials_does_not_hang_once() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    mkfifo(&out.path().join("credentials"));
    mkfifo(&out.path().join("credential-process.json"));
    let r = run(rolecall_piped()
        .arg("once")
        .args(base_args(&sts, &token, out.path()))
        .args(reader()));
    assert!(!r.hung, "{}", r.describe());
    assert_credentials_replaced(&r, out.path(), &["not a regular file"]);
}

/// `once` succeeded, saying each of `logged`, and replaced what was planted
/// at `out/credentials` with a regular file holding `reader`.
fn assert_credentials_replaced(r: &Run, out: &Path, logged: &[&str]) {
    r.assert_says(0, logged, "once");
    let creds = out.join("credentials");
    assert!(is_regular(&creds), "{}", r.describe());
    assert!(
        std::fs::read_to_string(&creds)
            .unwrap()
            .contains("[reader]")
    );
}

#[tokio::test]
async fn a_fifo_at_credentials_does_not_hang_run_and_sigterm_stops_it() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    mkfifo(&out.path().join("credentials"));
    let mut args = base_args(&sts, &token, out.path());
    args.extend(reader());
    let sidecar = Sidecar::start(&args);
    let mut live = false;
    for _ in 0..100 {
        if sidecar.livez().await == 200 {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live, "/livez never answered:\n{}", sidecar.logs());
    let creds = out.path().join("credentials");
    assert!(
        wait_until(Duration::from_secs(10), || {
            is_regular(&creds)
                && std::fs::read_to_string(&creds).is_ok_and(|c| c.contains("[reader]"))
        })
        .await,
        "the FIFO was not replaced:\n{}",
        sidecar.logs()
    );
    assert_eq!(sidecar.stop(), Some(0), "SIGTERM did not stop it in 3 s");
}

/// Something hostile where a read-only command (`status`, the helper)
/// reads: refused at once, never waited on nor followed.
struct PlantedRead {
    case: &'static str,
    /// The file in the output dir.
    file: &'static str,
    plant: fn(&Path),
    command: &'static [&'static str],
    phrase: &'static str,
}

const PLANTED_READS: &[PlantedRead] = &[
    PlantedRead {
        case: "a FIFO at status.json, `status`",
        file: "status.json",
        plant: mkfifo,
        command: &["status"],
        phrase: "not a regular file",
    },
    // A link to a file elsewhere is refused, not followed.
    PlantedRead {
        case: "a link at status.json to a file elsewhere, `status`",
        file: "status.json",
        plant: |path| {
            let elsewhere = path.with_file_name("elsewhere.json");
            std::fs::write(&elsewhere, r#"{"version":1,"profiles":[]}"#).unwrap();
            std::os::unix::fs::symlink(&elsewhere, path).unwrap();
        },
        command: &["status"],
        phrase: "symbolic link",
    },
    PlantedRead {
        case: "a FIFO at credential-process.json, the helper",
        file: "credential-process.json",
        plant: mkfifo,
        command: &["credential-process", "--profile", "reader"],
        phrase: "not a regular file",
    },
];

#[test]
fn a_fifo_or_a_link_where_status_or_the_helper_reads_does_not_hang_it() {
    run_cases(
        PLANTED_READS,
        |c| c.case,
        |c| {
            let case = c.case;
            let out = tempfile::tempdir().unwrap();
            (c.plant)(&out.path().join(c.file));
            let r = run_for(
                rolecall_piped()
                    .args(c.command)
                    .arg("--output-dir")
                    .arg(out.path()),
                Duration::from_secs(10),
            );
            assert!(!r.hung, "{case}: {}", r.describe());
            r.assert_says(1, &[c.phrase], case);
        },
    );
}

#[tokio::test]
async fn a_fifo_at_the_config_path_and_sighup_do_not_hang_the_sidecar() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("rolecall.yaml");
    std::fs::write(
        &cfg,
        format!("profiles:\n  reader: {{role_arn: '{READER}'}}\n"),
    )
    .unwrap();
    let mut args = base_args(&sts, &token, out.path());
    args.extend(["--config".into(), cfg.display().to_string()]);
    let sidecar = Sidecar::start(&args);
    let creds = out.path().join("credentials");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&creds)
            .is_ok_and(|c| c.contains("[reader]")))
        .await,
        "{}",
        sidecar.logs()
    );
    mkfifo(&cfg);
    sidecar.process.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || sidecar
            .logs()
            .contains("reload refused"))
        .await,
        "no refusal logged:\n{}",
        sidecar.logs()
    );
    let logs = sidecar.logs();
    assert!(logs.contains("not a regular file"), "{logs}");
    assert_eq!(sidecar.livez().await, 200, "{logs}");
    assert_eq!(sidecar.stop(), Some(0), "SIGTERM did not stop it in 3 s");
}

// ---------------------------------------------------------------------------
// Item 5: smaller findings
// ---------------------------------------------------------------------------

#[test]
fn a_directory_named_like_a_temporary_file_does_not_stop_start() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let planted = out
        .path()
        .join(".credentials.rolecall-tmp-1-0000000000000abc");
    std::fs::create_dir(&planted).unwrap();
    std::fs::write(planted.join("inside"), b"x").unwrap();
    let stale = out.path().join(".config.rolecall-tmp-2-0000000000000def");
    std::fs::write(&stale, b"left by a killed run").unwrap();
    let r = run(rolecall_piped()
        .arg("once")
        .args(base_args(&sts, &token, out.path()))
        .args(reader()));
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(
        r.stderr.contains("WARN") && r.stderr.contains(&planted.display().to_string()),
        "the directory is named in a warning:\n{}",
        r.describe()
    );
    assert!(planted.join("inside").exists(), "its content is left alone");
    assert!(!stale.exists(), "a real stale temporary is still removed");
}

#[test]
fn a_huge_or_deeply_nested_config_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "flow",
            format!("profiles: {}{}\n", "[".repeat(5000), "]".repeat(5000)),
            "nests deeper than",
        ),
        (
            "block",
            (0..200)
                .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
                .collect::<String>(),
            "nests deeper than",
        ),
        (
            "dashes",
            format!("profiles:\n  x:\n    {}a\n", "- ".repeat(200)),
            "nests deeper than",
        ),
        (
            "huge",
            format!(
                "{}profiles:\n  reader: {{role_arn: '{READER}'}}\n",
                "# padding padding padding padding padding padding padding\n".repeat(6000)
            ),
            "larger than",
        ),
    ];
    for (case, text, needle) in cases {
        let cfg = dir.path().join(format!("{case}.yaml"));
        std::fs::write(&cfg, &text).unwrap();
        let r = run(rolecall_piped()
            .args(["check", "--region", "eu-west-1", "--config"])
            .arg(&cfg));
        r.assert_says(64, &[&cfg.display().to_string(), needle], case);
    }
}

#[test]
fn unsafe_file_modes_are_refused_unless_world_reading_is_allowed() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let once = |extra: &[&str], env: &[(&str, &str)]| {
        let mut c = rolecall_piped();
        c.arg("once")
            .args(base_args(&sts, &token, out.path()))
            .args(reader())
            .args(extra);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    };
    for mode in ["0644", "0604"] {
        let r = once(&["--file-mode", mode], &[]);
        // The error says what to do.
        r.assert_says(64, &["--file-mode", "0640", "--allow-world-readable"], mode);
    }
    for mode in ["0666", "0777", "0660", "0602"] {
        for allow in [&[][..], &["--allow-world-readable"][..]] {
            let mut args = vec!["--file-mode", mode];
            args.extend(allow);
            let r = once(&args, &[]);
            r.assert_says(64, &["writable"], &format!("{mode} {allow:?}"));
        }
    }
    assert_eq!(sts.calls(), 0, "nothing was assumed with a refused mode");

    let r = once(&["--file-mode", "0644", "--allow-world-readable"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert_eq!(mode_of(&out.path().join("credentials")), 0o644);
    let r = once(
        &["--file-mode", "0604"],
        &[("ROLECALL_ALLOW_WORLD_READABLE", "true")],
    );
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert_eq!(mode_of(&out.path().join("credentials")), 0o604);
    // The flag beats the environment.
    let r = once(
        &["--file-mode", "0644", "--allow-world-readable=false"],
        &[("ROLECALL_ALLOW_WORLD_READABLE", "true")],
    );
    assert_eq!(r.code, Some(64), "{}", r.describe());
    let r = once(&[], &[("ROLECALL_ALLOW_WORLD_READABLE", "maybe")]);
    r.assert_says(
        64,
        &["environment ROLECALL_ALLOW_WORLD_READABLE"],
        "ROLECALL_ALLOW_WORLD_READABLE=maybe",
    );

    // The YAML key, and a bad value for it.
    let cfg = out.path().join("..rolecall.yaml");
    std::fs::write(&cfg, "file_mode: \"0644\"\nallow_world_readable: true\n").unwrap();
    let r = once(&["--config", &cfg.display().to_string()], &[]);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    std::fs::write(&cfg, "allow_world_readable: [yes]\n").unwrap();
    let r = once(&["--config", &cfg.display().to_string()], &[]);
    r.assert_says(64, &["allow_world_readable"], "allow_world_readable: [yes]");
}

#[test]
fn the_output_dir_rolecall_creates_ignores_the_umask() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let parent = tempfile::tempdir().unwrap();
    let existing = parent.path().join("mounted");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (dir, mode, expected) in [
        (parent.path().join("created"), "0640", 0o750),
        (parent.path().join("created-600"), "0600", 0o700),
        (existing.clone(), "0640", 0o700),
    ] {
        let mut c = rolecall_piped();
        c.arg("once")
            .args(base_args(&sts, &token, &dir))
            .args(reader())
            .args(["--file-mode", mode]);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0o077);
                Ok(())
            });
        }
        let r = run(&mut c);
        assert_eq!(r.code, Some(0), "{}", r.describe());
        assert_eq!(
            mode_of(&dir),
            expected,
            "{}: {:o}",
            dir.display(),
            mode_of(&dir)
        );
        assert_eq!(
            mode_of(&dir.join("credentials")),
            u32::from_str_radix(mode, 8).unwrap()
        );
    }
}

#[test]
fn status_and_the_helper_escape_terminal_control_characters() {
    let out = tempfile::tempdir().unwrap();
    let evil = "evil\u{1b}]0;pwned\u{7}\u{9b}2J";
    std::fs::write(
        out.path().join("status.json"),
        serde_json::json!({
            "version": 1,
            "profiles": [{
                "name": evil,
                "role_arn": "arn:aws:iam::111122223333:role/x\u{1b}[31m",
                "credentials": "file",
                "region": null,
                "expiration": "2030-01-01T00:00:00Z\u{1b}[2J",
                "last_refresh": null,
                "last_error": "first line\nsecond line\r\u{1b}[2K",
            }]
        })
        .to_string(),
    )
    .unwrap();
    let raw = |s: &str| s.chars().any(|c| c.is_control() && c != '\n');
    let r = run(rolecall_piped()
        .args(["status", "--output-dir"])
        .arg(out.path()));
    // The tampered expiry is no valid session: not ready, exit 1, the
    // name escaped on stderr too.
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(!raw(&r.stdout), "{:?}", r.stdout);
    assert!(!raw(&r.stderr), "{:?}", r.stderr);
    assert!(r.stderr.contains("not ready: evil\\u{1b}"), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 2, "{:?}", r.stdout);
    assert!(
        r.stdout.contains("evil\\u{1b}]0;pwned\\u{7}"),
        "{}",
        r.stdout
    );
    let r = run(rolecall_piped()
        .args(["status", "--json", "--output-dir"])
        .arg(out.path()));
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(!raw(&r.stdout), "{:?}", r.stdout);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["profiles"][0]["name"], evil, "--json keeps the value");

    // The helper: an unknown profile named with escapes, and a tampered
    // file whose profile names and expiry hold escapes.
    std::fs::write(
        out.path().join("credential-process.json"),
        serde_json::json!({"profiles": {evil: {
            "role_arn": "arn:aws:iam::111122223333:role/x",
            "credentials": {"Version": 1, "AccessKeyId": "A", "SecretAccessKey": "S",
                "SessionToken": "T", "Expiration": "2001-01-01T00:00:00Z\u{1b}[2J"}
        }}})
        .to_string(),
    )
    .unwrap();
    for profile in ["nope\u{1b}[2J\nforged line", evil] {
        let r = run(rolecall_piped()
            .args(["credential-process", "--profile", profile, "--output-dir"])
            .arg(out.path()));
        assert_eq!(r.code, Some(1), "{}", r.describe());
        let line = r.stderr.trim_end_matches('\n');
        assert!(!raw(line) && !line.contains('\n'), "{:?}", r.stderr);
        assert!(line.contains("\\u{1b}"), "{:?}", r.stderr);
    }
}

// ---------------------------------------------------------------------------
// In-process: a reload off the async workers, the helper re-check
// ---------------------------------------------------------------------------

fn flags(sts: &FakeSts, token: &TokenDir, out: &Path) -> Flags {
    test_flags(sts, token, out, &[&format!("reader={READER}")])
}

#[tokio::test]
async fn livez_answers_while_a_reload_is_in_progress() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut f = flags(&sts, &token, out.path());
    f.health_addr = Some(format!("127.0.0.1:{port}"));
    let config = Config::load(&f, &Env::new()).unwrap();
    // The reload holds until the test has seen /livez answer (as a slow
    // parse would hold), at most 5 s; it records whether it was released.
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = released.clone();
    let reload_config = config.clone();
    let sidecar = Running::start_with_reload(
        config,
        move || {
            let _ = started_tx.lock().unwrap().send(());
            let ok = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(5))
                .is_ok();
            r.store(ok, std::sync::atomic::Ordering::SeqCst);
            Ok(reload_config.clone())
        },
        rolecall::Options::default(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            out.path().join("credentials")
        )
        .is_ok_and(|c| c.contains("[reader]")))
        .await
    );
    sidecar
        .controls
        .send(rolecall::Command::reload())
        .await
        .unwrap();
    assert!(
        wait_until_real(Duration::from_secs(10), || started_rx.try_recv().is_ok()).await,
        "the reload never started"
    );
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(8), http_get(port, "/livez", None))
            .await
            .unwrap_or((0, String::new()));
    let _ = release_tx.send(());
    assert_eq!(status, 200, "/livez during the reload: {body}");
    assert!(
        wait_until(Duration::from_secs(10), || released
            .load(std::sync::atomic::Ordering::SeqCst))
        .await,
        "the reload held the runtime: /livez was only answered after it gave up"
    );
    sidecar.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_replaced_helper_is_restored_by_the_recheck() {
    let sts = FakeSts::start_local();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let mut f = flags(&sts, &token, out.path());
    f.credentials = Some("process".into());
    let config = Config::load(&f, &Env::new()).unwrap();
    let binary = env!("CARGO_BIN_EXE_rolecall");
    let sidecar = Running::start(
        config,
        rolecall::Options {
            helper_binary: Some(binary.into()),
            jitter: || 1.0,
            spread: || 0.0,
            ..rolecall::Options::default()
        },
    );
    let helper = out.path().join("rolecall");
    let process = out.path().join("credential-process.json");
    assert!(
        wait_until(Duration::from_secs(30), || process.exists()).await,
        "the sidecar never published"
    );
    let expected = std::fs::read(binary).unwrap();
    // The size first: the binary is large, and this is polled.
    let installed = || {
        std::fs::metadata(&helper).is_ok_and(|m| m.len() == expected.len() as u64)
            && std::fs::read(&helper).is_ok_and(|b| b == expected)
    };
    assert!(installed());

    // Replaced by a script that would print someone else's keys.
    std::fs::remove_file(&helper).unwrap();
    std::fs::write(&helper, "#!/bin/sh\necho '{\"Version\":1}'\n").unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o750)).unwrap();
    assert!(
        wait_until(Duration::from_secs(90), installed).await,
        "the helper was not restored by the re-check"
    );
    assert_eq!(mode_of(&helper), 0o750);
    // Modified in place (same inode).
    std::fs::OpenOptions::new()
        .append(true)
        .open(&helper)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"junk"))
        .unwrap();
    assert!(!installed());
    assert!(
        wait_until(Duration::from_secs(90), installed).await,
        "a helper changed in place was not restored"
    );
    sidecar.stop().await;
}
