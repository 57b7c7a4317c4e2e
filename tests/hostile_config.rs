//! Hostile configurations (issue 20, item 6): a YAML file that would make
//! the parser build gigabytes (aliases of a big anchor) or spend minutes
//! (deep flow brackets after an apostrophe that fooled the old nesting
//! scan), and proxy URLs whose password a malformed form used to echo. Each
//! is refused with exit 64 at start, and a reload that meets one keeps the
//! running configuration, with no password in any answer, log line, file or
//! `rolecall status`.
//!
//! The real binary runs as a child under an address-space limit
//! ([`AS_LIMIT`], as a pod's memory limit would bound it), each run with a
//! deadline so that a hang fails the test instead of hanging it.

mod support;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";
/// Longest a one-shot command may take before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(15);
/// The child's address space: a sidecar uses a few hundred MiB of it
/// (thread stacks and allocator arenas are reserved, not used); the alias
/// bomb below needs hundreds of GiB.
const AS_LIMIT: u64 = 1 << 30;

/// Sets `RLIMIT_AS` (soft and hard) to `bytes` in the child before exec, as
/// `prlimit --as=BYTES` would.
fn limit_address_space(cmd: &mut Command, bytes: u64) -> &mut Command {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit(2) is async-signal-safe and reads only `limit`,
    // which the closure owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}

fn profiles(names: &[(&str, &str)]) -> String {
    let mut s = String::from("profiles:\n");
    for (name, arn) in names {
        s.push_str(&format!("  {name}: {{role_arn: '{arn}'}}\n"));
    }
    s
}

/// Issue 20's file: a valid configuration, then 40,000 aliases to one
/// 60,000-element anchor, 234 KiB (2.4 billion values once loaded), within
/// the 256 KiB size limit.
fn alias_bomb() -> String {
    let text = format!(
        "{}x: &a [{}]\ny: [{}]\n",
        profiles(&[("reader", READER)]),
        vec!["1"; 60_000].join(","),
        vec!["*a"; 40_000].join(",")
    );
    assert!(
        text.len() > 200 * 1024 && text.len() < 256 * 1024,
        "{}",
        text.len()
    );
    text
}

/// A plain scalar holding an apostrophe, then 120,000 levels of flow
/// brackets: the old scan took the apostrophe for a quote and let the
/// parser spend minutes on them.
fn deep_after_apostrophe() -> String {
    format!(
        "{}x: a:'b\ny: {}{}\n",
        profiles(&[("reader", READER)]),
        "[".repeat(120_000),
        "]".repeat(120_000)
    )
}

/// Each hostile file, and what the refusal must say.
fn hostile_files() -> [(&'static str, String, &'static str); 3] {
    [
        (
            "alias bomb",
            alias_bomb(),
            "the file holds more than 100000 values, counting what its aliases (*name) repeat",
        ),
        (
            "apostrophe then 120,000 levels",
            deep_after_apostrophe(),
            "the file nests deeper than 32 levels",
        ),
        (
            // Deeper than rolecall's limit, not than serde_yaml_ng's own
            // (128): refused by the parser's measure with the same words.
            "33 levels of mappings",
            (0..33).map(|i| format!("{}k:\n", "  ".repeat(i))).collect(),
            "the file nests deeper than 32 levels (a rolecall configuration needs 4)",
        ),
    ]
}

#[test]
fn a_hostile_file_at_start_exits_64_naming_the_file_and_the_limit() {
    let sb = Sandbox::granting(Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rolecall.yaml");
    // The same limit leaves room for a real configuration.
    std::fs::write(&file, profiles(&[("reader", READER)])).unwrap();
    let r = run_for(
        limit_address_space(rolecall_piped().arg("once"), AS_LIMIT)
            .args(base_args(&sb.sts, &sb.token, sb.out.path()))
            .arg("--config")
            .arg(&file),
        LIMIT,
    );
    assert_eq!(r.code, Some(0), "a valid file: {}", r.describe());
    for (case, text, says) in hostile_files() {
        std::fs::write(&file, &text).unwrap();
        for command in ["check", "once", "run"] {
            let r = run_for(
                limit_address_space(rolecall_piped().arg(command), AS_LIMIT)
                    .args(base_args(&sb.sts, &sb.token, sb.out.path()))
                    .arg("--config")
                    .arg(&file),
                LIMIT,
            );
            let what = format!("{case}, {command}");
            assert!(!r.hung, "{what}: no answer within {LIMIT:?}");
            r.assert_says(64, &[&format!("{}: {says}", file.display())], &what);
            assert!(
                !r.all().contains("memory allocation"),
                "{what}: {}",
                r.describe()
            );
        }
    }
    assert_eq!(sb.sts.calls(), 1, "only the valid file's run called STS");
}

/// `rolecall run --config FILE` as a child under [`AS_LIMIT`], with a
/// control socket and a health listener.
struct Sidecar {
    sb: Sandbox,
    _dir: tempfile::TempDir,
    file: PathBuf,
    sock: PathBuf,
    port: u16,
    process: ChildSidecar,
}

impl Sidecar {
    async fn start(yaml: &str) -> Sidecar {
        let sb = Sandbox::granting(Duration::from_secs(3600));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rolecall.yaml");
        std::fs::write(&file, yaml).unwrap();
        let sock = dir.path().join("control.sock");
        let port = free_port();
        let mut cmd = rolecall_command();
        cmd.env("RUST_LOG", "info")
            .arg("run")
            .args(base_args(&sb.sts, &sb.token, sb.out.path()))
            .arg("--config")
            .arg(&file)
            .arg("--control-socket")
            .arg(&sock)
            .args(["--health-addr", &format!("127.0.0.1:{port}")]);
        let process = ChildSidecar::spawn(limit_address_space(&mut cmd, AS_LIMIT));
        let s = Sidecar {
            sb,
            _dir: dir,
            file,
            sock,
            port,
            process,
        };
        assert!(
            wait_until_real(WAIT, || s.has("reader") && s.sock.exists()).await,
            "the sidecar did not start:\n{}",
            s.process.log()
        );
        s
    }

    fn credentials(&self) -> String {
        std::fs::read_to_string(self.sb.out.path().join("credentials")).unwrap_or_default()
    }

    fn has(&self, profile: &str) -> bool {
        self.credentials().contains(&format!("[{profile}]"))
    }

    fn status_json(&self) -> String {
        std::fs::read_to_string(self.sb.out.path().join("status.json")).unwrap_or_default()
    }

    /// `rolecall ARGS` as a second process, off the runtime.
    async fn rolecall(&self, args: &[&str], control: bool) -> Run {
        let mut cmd = rolecall_piped();
        cmd.args(args);
        if control {
            cmd.arg("--control-socket").arg(&self.sock);
        } else {
            cmd.arg("--output-dir").arg(self.sb.out.path());
        }
        tokio::task::spawn_blocking(move || run_for(&mut cmd, Duration::from_secs(60)))
            .await
            .unwrap()
    }

    async fn livez(&self) -> u16 {
        tokio::time::timeout(Duration::from_secs(5), http_get(self.port, "/livez", None))
            .await
            .map_or(0, |(status, _)| status)
    }
}

#[tokio::test]
async fn a_refused_hostile_file_keeps_the_running_configuration() {
    let mut s = Sidecar::start(&profiles(&[("reader", READER)])).await;
    let key = s.credentials();
    for (case, text, says) in hostile_files() {
        std::fs::write(&s.file, &text).unwrap();
        let r = s.rolecall(&["reload"], true).await;
        assert!(
            !r.hung,
            "{case}: the reload did not answer:\n{}",
            r.describe()
        );
        r.assert_says(
            1,
            &["reload refused; the running configuration is kept:", says],
            case,
        );
        assert!(
            s.process.running(),
            "{case}: the sidecar died:\n{}",
            s.process.log()
        );
        assert_eq!(s.livez().await, 200, "{case}");
        assert_eq!(s.credentials(), key, "{case}: the served session is kept");
        // status.json is rewritten by the writer after its debounce, which
        // may come after the reload's answer.
        assert!(
            wait_until(Duration::from_secs(10), || s.status_json().contains(says)).await,
            "{case}: {}",
            s.status_json()
        );
    }
    // A good file is applied after them.
    std::fs::write(&s.file, profiles(&[("reader", READER), ("writer", WRITER)])).unwrap();
    let r = s.rolecall(&["reload"], true).await;
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(wait_until_real(WAIT, || s.has("writer")).await);
    assert!(s.process.running());
}

// ---------------------------------------------------------------------------
// Proxy URLs
// ---------------------------------------------------------------------------

/// The password in every malformed form below; none of its pieces may
/// appear anywhere.
const PIECES: [&str; 3] = ["Hunt3r", "pwfrag", "s3cRet"];

/// Malformed proxy URLs carrying a password: no scheme, a raw `/`, `?`,
/// `#` or `@` inside the password, a bad escape, a space, a control
/// character, another scheme, a path, a query, no host, a bad port.
const MALFORMED: &[&str] = &[
    "adv-user:Hunt3r@pwfrag.example/s3cRet@proxy.corp:3128",
    "adv-user:Hunt3rpwfrags3cRet@proxy.corp:3128",
    "//adv-user:Hunt3rpwfrags3cRet@proxy.corp:3128",
    "http:/adv-user:Hunt3rpwfrags3cRet@proxy.corp:3128",
    "http://adv-user:Hunt3r/pwfrag/s3cRet@proxy.corp:3128",
    "http://adv-user:Hunt3r?pwfrag=s3cRet@proxy.corp:3128",
    "http://adv-user:Hunt3r#pwfrag#s3cRet@proxy.corp:3128",
    "http://adv-user:Hunt3r@pwfrag@s3cRet@proxy.corp:3128",
    "http://adv-user:Hunt3r@pwfrag.example/s3cRet@proxy.corp:3128",
    "http://adv-user:Hunt3r%zzpwfrags3cRet@proxy.corp:3128",
    "http://adv-user:Hunt3r pwfrag s3cRet@proxy.corp:3128",
    "http://adv-user:Hunt3r\tpwfrag\ts3cRet@proxy.corp:3128",
    "http://adv-user:Hunt3rpwfrags3cRet@proxy.corp:3128/path",
    "http://adv-user:Hunt3rpwfrags3cRet@proxy.corp:3128?x=1",
    "http://adv-user:Hunt3rpwfrags3cRet@proxy.corp:3128#f",
    "http://adv-user:Hunt3rpwfrags3cRet@",
    "http://adv-user:Hunt3rpwfrags3cRet@proxy.corp:port",
    "socks5://adv-user:Hunt3r/pwfrag/s3cRet@proxy.corp:1080",
    "ftp://adv-user:Hunt3rpwfrags3cRet@proxy.corp:21",
    "http://adv-user:Hunt3rpwfrags3cRet",
    "adv-user:Hunt3r://pwfrags3cRet@proxy.corp:3128",
];

fn assert_no_password(what: &str, text: &str) {
    for piece in PIECES {
        assert!(!text.contains(piece), "{what} shows {piece:?}:\n{text}");
    }
}

#[test]
fn a_malformed_proxy_url_exits_64_without_its_password() {
    let sb = Sandbox::granting(Duration::from_secs(3600));
    for url in MALFORMED {
        let base = || {
            let mut cmd = rolecall_piped();
            cmd.arg("check")
                .args(base_args(&sb.sts, &sb.token, sb.out.path()))
                .args(["--profile", &format!("reader={READER}")]);
            cmd
        };
        for (how, cmd) in [
            ("--proxy", base().args(["--proxy", url])),
            ("HTTPS_PROXY", base().env("HTTPS_PROXY", url)),
            ("https_proxy", base().env("https_proxy", url)),
        ] {
            let r = run_for(cmd, LIMIT);
            let what = format!("{how} {url:?}");
            r.assert_says(64, &[how, "is not a proxy URL"], &what);
            assert_no_password(&what, &r.all());
        }
    }
    assert_eq!(sb.sts.calls(), 0);
}

#[tokio::test]
async fn a_reload_refused_for_its_proxy_shows_no_password() {
    let s = Sidecar::start(&profiles(&[("reader", READER)])).await;
    let url = "http://adv-user:Hunt3r@pwfrag.example/s3cRet@proxy.corp:3128";
    std::fs::write(
        &s.file,
        format!("proxy: '{url}'\n{}", profiles(&[("reader", READER)])),
    )
    .unwrap();
    let r = s.rolecall(&["reload"], true).await;
    r.assert_says(
        1,
        &[
            "reload refused",
            "proxy",
            "is not a proxy URL",
            "***@proxy.corp:3128",
        ],
        "the reload answer",
    );
    assert_no_password("the reload answer", &r.all());
    let r = s.rolecall(&["reload", "--json"], true).await;
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert_no_password("the reload --json answer", &r.all());
    assert!(
        wait_until_real(WAIT, || s.status_json().contains("is not a proxy URL")).await,
        "{}",
        s.status_json()
    );
    assert_no_password("status.json", &s.status_json());
    for args in [&["status"][..], &["status", "--json"]] {
        let r = s.rolecall(args, false).await;
        assert!(r.stdout.contains("is not a proxy URL"), "{}", r.describe());
        assert_no_password("rolecall status", &r.all());
    }
    assert!(
        s.process.log().contains("is not a proxy URL"),
        "{}",
        s.process.log()
    );
    assert_no_password("the log", &s.process.log());
}

/// A valid URL's credentials are not shown either: `check` prints it with
/// the whole userinfo masked.
#[test]
fn check_shows_a_valid_proxy_without_its_credentials() {
    let sb = Sandbox::granting(Duration::from_secs(3600));
    let r = run_for(
        rolecall_piped()
            .arg("check")
            .args(base_args(&sb.sts, &sb.token, sb.out.path()))
            .args(["--profile", &format!("reader={READER}")])
            .args([
                "--proxy",
                "http://adv-user:Hunt3r%40pwfrag.example%2Fs3cRet@proxy.corp:3128",
            ]),
        LIMIT,
    );
    assert!(
        r.stdout.contains("proxy: http://***@proxy.corp:3128"),
        "{}",
        r.describe()
    );
    assert_no_password("check", &r.all());
    assert!(!r.all().contains("adv-user"), "{}", r.describe());
}
