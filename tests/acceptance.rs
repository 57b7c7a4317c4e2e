//! Acceptance tests: the real `rolecall` binary against moto's STS server, its
//! outputs read by real SDK readers (the AWS CLI v1 and boto3).
//!
//! They need the Python tools from `make venv`, so plain `cargo test` skips
//! them; `make test` runs them with
//! `ROLECALL_VENV=$PWD/.venv cargo test --test acceptance -- --ignored --test-threads=1`.
//! Without `ROLECALL_VENV` they look for `<crate>/.venv`.
//!
//! Plain std threads and processes; from tests/support only [`Moto`], the
//! venv paths, the blocking HTTP probe, [`TestCa`]/[`TlsFront`] for STS
//! over TLS, and the fake Pod Identity agent in its moto-backed mode.

mod support;

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{AgentReply, FakeAgent, Moto, TestCa, TlsFront, http_get_blocking, venv, venv_bin};

const ACCOUNT: &str = "111122223333";
const PROFILES: [&str; 3] = ["audit", "reader", "writer"];
const ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const SUBJECT: &str = "system:serviceaccount:acceptance:app";
/// The Pod Identity association's role, which the fake agent assumes on
/// moto (its `Reply::Moto`).
const ASSOCIATION_ROLE_ARN: &str = "arn:aws:iam::111122223333:role/pod-identity-association";

// ------------------------------------------------------------------ plumbing

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "rolecall-acceptance-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            eprintln!("killed {} (pid {})", self.what, self.child.id());
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(100));
    }
}

/// Remove every variable of the caller's AWS / rolecall setup, so that only
/// what a test passes reaches the program under test.
fn clean_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("AWS_") || key.starts_with("ROLECALL_") {
            cmd.env_remove(&key);
        }
    }
    // No control socket in the host's /run (the tests that use one name it).
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("ROLECALL_CONTROL_SOCKET", "")
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn describe(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Run `cmd` to completion with its output captured in files (no pipe can
/// fill up), killing it after `timeout`.
fn run(cmd: &mut Command, scratch: &Path, timeout: Duration) -> Output {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let out_path = scratch.join(format!("cmd-{n}.stdout"));
    let err_path = scratch.join(format!("cmd-{n}.stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut guard = ChildGuard {
        child,
        what: format!("{cmd:?}"),
    };
    let status = guard
        .wait_timeout(timeout)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish within {timeout:?}"));
    Output {
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

// ------------------------------------------------------------------ token

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A JWT shaped like a projected service-account token. The signature is a
/// dummy: rolecall does not check it and moto accepts any token.
fn jwt(exp: u64) -> String {
    jwt_for("sts.amazonaws.com", exp)
}

/// [`jwt`] for audience `aud`: `pods.eks.amazonaws.com` is the Pod
/// Identity token EKS mounts at `eks-pod-identity-token`.
fn jwt_for(aud: &str, exp: u64) -> String {
    let now = now_secs();
    let header = r#"{"alg":"RS256","kid":"acceptance","typ":"JWT"}"#;
    let claims = format!(
        r#"{{"aud":["{aud}"],"exp":{exp},"iat":{now},"iss":"{ISSUER}","nbf":{now},"sub":"{SUBJECT}"}}"#
    );
    format!(
        "{}.{}.{}",
        base64url(header.as_bytes()),
        base64url(claims.as_bytes()),
        base64url(b"not-a-real-signature")
    )
}

/// A projected-token directory as kubelet's AtomicWriter keeps it:
/// `..TIMESTAMP/token`, `..data -> ..TIMESTAMP`, `token -> ..data/token`.
struct TokenDir {
    dir: PathBuf,
    generation: usize,
}

impl TokenDir {
    fn new(dir: PathBuf, token: &str) -> TokenDir {
        fs::create_dir_all(&dir).expect("token dir");
        let mut td = TokenDir { dir, generation: 0 };
        td.publish(token);
        symlink("..data/token", td.token_path()).expect("token symlink");
        td
    }

    fn token_path(&self) -> PathBuf {
        self.dir.join("token")
    }

    /// Publish a new token: a new timestamped directory, `..data_tmp` renamed
    /// over `..data` (one atomic swap), then the old directory removed.
    fn publish(&mut self, token: &str) {
        self.generation += 1;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("..{}_{:09}.{}", now_secs(), nanos, self.generation);
        let new_dir = self.dir.join(&name);
        fs::create_dir(&new_dir).expect("timestamped dir");
        fs::write(new_dir.join("token"), token).expect("write token");
        let data = self.dir.join("..data");
        let old = fs::read_link(&data).ok();
        let tmp = self.dir.join("..data_tmp");
        symlink(&name, &tmp).expect("..data_tmp symlink");
        fs::rename(&tmp, &data).expect("swap ..data");
        if let Some(old) = old {
            fs::remove_dir_all(self.dir.join(old)).expect("remove old token dir");
        }
    }
}

// ------------------------------------------------------------------ rolecall

fn rolecall() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolecall"));
    clean_env(&mut cmd);
    cmd
}

fn role_arn(profile: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{profile}")
}

/// Everything a test needs: moto, a token directory and an output directory.
struct Setup {
    moto: Moto,
    tokens: TokenDir,
    out: PathBuf,
    root: TempDir,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let moto = Moto::start(&venv());
        let root = TempDir::new(tag);
        let tokens = TokenDir::new(
            root.path().join("serviceaccount"),
            &jwt(now_secs() + 86_400),
        );
        let out = root.path().join("out");
        fs::create_dir_all(&out).expect("output dir");
        Setup {
            moto,
            tokens,
            out,
            root,
        }
    }

    /// `rolecall SUBCOMMAND` with the three profiles and everything pointed here.
    fn rolecall(&self, subcommand: &str) -> Command {
        self.rolecall_at(subcommand, &self.moto.endpoint())
    }

    /// The same, calling STS at `endpoint`, in file mode (these cases read
    /// the keys in `credentials`; the default, process mode, is
    /// [`run_with_no_mode_option_keeps_one_boto3_client_signing_with_the_new_keys`]'s).
    fn rolecall_at(&self, subcommand: &str, endpoint: &str) -> Command {
        let mut cmd = rolecall();
        cmd.arg(subcommand).args(["--credentials", "file"]);
        for p in PROFILES {
            cmd.arg("--profile").arg(format!("{p}={}", role_arn(p)));
        }
        cmd.arg("--token-file")
            .arg(self.tokens.token_path())
            .arg("--output-dir")
            .arg(&self.out)
            .args(["--region", "us-east-1", "--session-name", "acceptance"])
            .arg("--sts-endpoint")
            .arg(endpoint);
        cmd
    }

    fn credentials(&self) -> PathBuf {
        self.out.join("credentials")
    }

    fn config(&self) -> PathBuf {
        self.out.join("config")
    }

    /// A command for an SDK reader that sees only rolecall's output files.
    fn reader(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        clean_env(&mut cmd)
            .env("AWS_SHARED_CREDENTIALS_FILE", self.credentials())
            .env("AWS_CONFIG_FILE", self.config())
            .env("HOME", self.root.path());
        cmd
    }

    fn once(&self) {
        let out = run(
            &mut self.rolecall("once"),
            self.root.path(),
            Duration::from_secs(60),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "rolecall once\n{}",
            out.describe()
        );
    }

    /// `rolecall once` with `yaml` as its configuration file (and `extra`
    /// arguments) against moto, in file mode; asserts exit 0.
    fn once_with_config(&self, yaml: &str, extra: &[&std::ffi::OsStr]) {
        let config = self.root.path().join("rolecall.yaml");
        fs::write(&config, yaml).expect("config file");
        let mut cmd = rolecall();
        cmd.arg("once")
            .arg("--config")
            .arg(&config)
            .args(["--credentials", "file"])
            .arg("--token-file")
            .arg(self.tokens.token_path())
            .args(extra)
            .args(["--region", "us-east-1", "--session-name", "acceptance"])
            .arg("--sts-endpoint")
            .arg(self.moto.endpoint());
        let out = run(&mut cmd, self.root.path(), Duration::from_secs(60));
        assert_eq!(
            out.status.code(),
            Some(0),
            "rolecall once\n{}",
            out.describe()
        );
    }

    fn cli_caller_arn(&self, profile: &str) -> String {
        self.cli_caller_arn_at(profile, &self.moto.endpoint(), None)
    }

    /// The caller ARN the AWS CLI gets for `profile` from STS at
    /// `endpoint`, trusting `ca_bundle` (`AWS_CA_BUNDLE`) if given.
    fn cli_caller_arn_at(&self, profile: &str, endpoint: &str, ca_bundle: Option<&Path>) -> String {
        let mut reader = self.reader(&venv_bin("aws"));
        if let Some(ca) = ca_bundle {
            reader.env("AWS_CA_BUNDLE", ca);
        }
        let out = run(
            reader.args([
                "sts",
                "get-caller-identity",
                "--profile",
                profile,
                "--endpoint-url",
                endpoint,
                "--query",
                "Arn",
                "--output",
                "text",
            ]),
            self.root.path(),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "aws sts get-caller-identity --profile {profile}\n{}",
            out.describe()
        );
        out.stdout.trim().to_string()
    }
}

fn assert_assumed(profile: &str, arn: &str) {
    // moto answers with the role's account and the session name:
    // arn:aws:sts::111122223333:assumed-role/reader/acceptance
    let want = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{profile}/");
    assert!(
        arn.starts_with(&want),
        "profile {profile}: expected an ARN starting with {want}, got {arn:?}"
    );
}

/// `(section, aws_access_key_id)` for every section of a credentials file.
fn access_keys(credentials: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in credentials.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
        } else if let Some((key, value)) = line.split_once('=')
            && key.trim() == "aws_access_key_id"
        {
            keys.push((section.clone(), value.trim().to_string()));
        }
    }
    keys
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

// ------------------------------------------------------------------ tests

#[test]
#[ignore = "needs the Python tools: run by make test"]
fn once_writes_profiles_the_aws_cli_can_use() {
    let s = Setup::new("once-cli");
    s.once();

    let credentials = fs::read_to_string(s.credentials()).expect("credentials file");
    let sections: Vec<String> = access_keys(&credentials)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        sections, PROFILES,
        "one [NAME] section per profile, sorted by name"
    );
    let config = fs::read_to_string(s.config()).expect("config file");
    for p in PROFILES {
        assert!(
            config.contains(&format!("[profile {p}]")),
            "config has no [profile {p}]:\n{config}"
        );
    }

    for p in PROFILES {
        let arn = s.cli_caller_arn(p);
        assert_assumed(p, &arn);
    }
}

#[test]
#[ignore = "needs the Python tools: run by make test"]
fn boto3_reads_every_profile_by_name() {
    let s = Setup::new("once-boto3");
    s.once();

    let script = r#"
import sys
import boto3

endpoint = sys.argv[1]
for name in sys.argv[2:]:
    session = boto3.Session(profile_name=name)
    sts = session.client("sts", endpoint_url=endpoint)
    print(name, session.region_name, sts.get_caller_identity()["Arn"])
"#;
    let mut cmd = s.reader(&venv_bin("python"));
    cmd.args(["-c", script, &s.moto.endpoint()]).args(PROFILES);
    let out = run(&mut cmd, s.root.path(), Duration::from_secs(60));
    assert!(out.status.success(), "boto3 script\n{}", out.describe());

    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), PROFILES.len(), "{}", out.describe());
    for (line, p) in lines.iter().zip(PROFILES) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "unexpected line {line:?}");
        assert_eq!(fields[0], p);
        assert_eq!(
            fields[1], "us-east-1",
            "profile {p}: region from the config file"
        );
        assert_assumed(p, fields[2]);
    }
}

#[test]
#[ignore = "needs the Python tools: run by make test"]
fn run_refreshes_after_token_rotation_and_stops_on_sigterm() {
    let mut s = Setup::new("run");
    let port = free_port();
    let health = SocketAddr::from(([127, 0, 0, 1], port));
    let log = s.root.path().join("rolecall.log");
    let child = s
        .rolecall("run")
        .arg("--health-addr")
        .arg(health.to_string())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).expect("log"))
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start rolecall run");
    let mut rc = ChildGuard {
        child,
        what: "rolecall run".into(),
    };
    let show_log = || fs::read_to_string(&log).unwrap_or_default();

    // Ready: every profile holds credentials.
    let ready = wait_until(Duration::from_secs(60), || {
        rc.exited().is_none() && matches!(http_get_blocking(port, "/readyz"), Some((200, _)))
    });
    assert!(
        ready,
        "no 200 from /readyz within 60 s (exited: {:?}); log:\n{}",
        rc.exited(),
        show_log()
    );
    let before = fs::read_to_string(s.credentials()).expect("credentials after ready");
    let old_keys = access_keys(&before);
    assert_eq!(old_keys.len(), PROFILES.len(), "credentials:\n{before}");

    // kubelet rotates the token; then SIGUSR1 refreshes every profile with it.
    let new_exp = now_secs() + 2 * 86_400;
    s.tokens.publish(&jwt(new_exp));
    let status = Command::new("kill")
        .args(["-USR1", &rc.pid().to_string()])
        .status()
        .expect("kill -USR1");
    assert!(status.success());

    let mut now_keys = Vec::new();
    let changed = wait_until(Duration::from_secs(30), || {
        now_keys = fs::read_to_string(s.credentials())
            .map(|c| access_keys(&c))
            .unwrap_or_default();
        now_keys.len() == old_keys.len()
            && now_keys
                .iter()
                .all(|(_, key)| old_keys.iter().all(|(_, old)| old != key))
    });
    assert!(
        changed,
        "access keys did not all change within 30 s of SIGUSR1: before {old_keys:?}, now {now_keys:?}; log:\n{}",
        show_log()
    );

    // The refresh used the rotated token.
    let mut seen = None;
    let rotated = wait_until(Duration::from_secs(10), || {
        seen = http_get_blocking(port, "/metrics")
            .and_then(|(_, body)| metric(&body, "rolecall_token_expiry_timestamp_seconds"));
        seen == Some(new_exp as f64)
    });
    assert!(
        rotated,
        "rolecall_token_expiry_timestamp_seconds is {seen:?}, want {new_exp} (the rotated token)"
    );

    // The rewritten files still work for a reader.
    assert_assumed("writer", &s.cli_caller_arn("writer"));

    // SIGTERM: exit 0 within 2 s, files left in place.
    let status = Command::new("kill")
        .args(["-TERM", &rc.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = rc.wait_timeout(Duration::from_secs(2));
    assert!(
        exit.is_some(),
        "rolecall still running 2 s after SIGTERM; log:\n{}",
        show_log()
    );
    assert_eq!(
        exit.and_then(|e| e.code()),
        Some(0),
        "exit status after SIGTERM: {exit:?}; log:\n{}",
        show_log()
    );
    let after = fs::read_to_string(s.credentials()).expect("credentials kept after SIGTERM");
    assert_eq!(
        access_keys(&after).len(),
        PROFILES.len(),
        "credentials:\n{after}"
    );
    assert!(s.config().exists(), "config kept after SIGTERM");
}

#[test]
#[ignore = "needs the Python tools: run by make test"]
fn config_errors_exit_64_listing_every_problem() {
    let dir = TempDir::new("config-errors");
    let mut cmd = rolecall();
    cmd.args(["once", "--profile", "bad name=notanarn", "--duration", "5"])
        .arg("--token-file")
        .arg(dir.path().join("token"))
        .arg("--output-dir")
        .arg(dir.path().join("out"));
    let out = run(&mut cmd, dir.path(), Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(64), "{}", out.describe());

    let stderr = out.stderr.to_lowercase();
    let problems = [
        (
            "the profile name",
            stderr.contains("bad name") || stderr.contains("name"),
        ),
        (
            "the role ARN",
            stderr.contains("notanarn") || stderr.contains("arn") || stderr.contains("role"),
        ),
        ("the duration", stderr.contains("duration")),
        ("the missing region", stderr.contains("region")),
    ];
    let missing: Vec<&str> = problems
        .iter()
        .filter(|(_, found)| !found)
        .map(|(what, _)| *what)
        .collect();
    assert!(
        missing.is_empty(),
        "stderr does not mention {missing:?}\n{}",
        out.describe()
    );
    assert!(
        !dir.path().join("out").join("credentials").exists(),
        "nothing is written on a configuration error"
    );
}

#[test]
#[ignore = "needs the Python tools: run by make test"]
fn sts_over_tls_with_a_private_ca_is_trusted_only_through_the_ca_bundle() {
    let s = Setup::new("tls");
    let ca = TestCa::new("rolecall acceptance CA");
    let front = TlsFront::start(SocketAddr::from(([127, 0, 0, 1], s.moto.port())), &ca);
    let endpoint = front.endpoint();

    // Without the bundle: refused before any request, naming the reason.
    let out = run(
        &mut s.rolecall_at("once", &endpoint),
        s.root.path(),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    for needle in ["CertificateRefused", "UnknownIssuer", "ca_bundle"] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.describe());
    }
    let written = fs::read_to_string(s.credentials()).unwrap_or_default();
    assert!(access_keys(&written).is_empty(), "nothing was assumed");

    // With AWS_CA_BUNDLE, as the AWS CLI and boto3 read it too.
    let out = run(
        s.rolecall_at("once", &endpoint)
            .env("AWS_CA_BUNDLE", ca.ca_pem()),
        s.root.path(),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.describe());
    for p in PROFILES {
        let arn = s.cli_caller_arn_at(p, &endpoint, Some(&ca.ca_pem()));
        assert_assumed(p, &arn);
    }
}

/// Output sets: the AWS CLI reading set `app`'s dir finds reader and writer
/// and can use them; `audit`, which only set `ops` holds, is not there.
#[test]
#[ignore = "needs the Python tools: run by make test"]
fn the_aws_cli_reading_one_set_s_dir_finds_only_that_set_s_profiles() {
    let s = Setup::new("sets-cli");
    let (app, ops) = (s.root.path().join("app"), s.root.path().join("ops"));
    let yaml = format!(
        "profiles:\n  reader: {}\n  writer: {}\n  audit: {}\noutputs:\n  app: {{ dir: {}, profiles: [reader, writer] }}\n  ops: {{ dir: {}, profiles: [audit] }}\n",
        role_arn("reader"),
        role_arn("writer"),
        role_arn("audit"),
        app.display(),
        ops.display()
    );
    s.once_with_config(&yaml, &[]);

    let reader = |program: &Path, dir: &Path, args: &[&str]| {
        let mut cmd = Command::new(program);
        clean_env(&mut cmd)
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"))
            .env("AWS_CONFIG_FILE", dir.join("config"))
            .env("HOME", s.root.path())
            .args(args);
        run(&mut cmd, s.root.path(), Duration::from_secs(60))
    };
    let cli = |dir: &Path, args: &[&str]| reader(&venv_bin("aws"), dir, args);
    // botocore's own list of the profiles it finds in the two files.
    let listed = reader(
        &venv_bin("python"),
        &app,
        &[
            "-c",
            "import botocore.session; print(' '.join(sorted(botocore.session.Session().available_profiles)))",
        ],
    );
    assert!(listed.status.success(), "{}", listed.describe());
    assert_eq!(
        listed.stdout.trim(),
        "reader writer",
        "{}",
        listed.describe()
    );
    let endpoint = s.moto.endpoint();
    let identity = |dir: &Path, profile: &str| {
        cli(
            dir,
            &[
                "sts",
                "get-caller-identity",
                "--profile",
                profile,
                "--endpoint-url",
                &endpoint,
                "--query",
                "Arn",
                "--output",
                "text",
            ],
        )
    };
    let ok = identity(&app, "reader");
    assert!(ok.status.success(), "{}", ok.describe());
    assert_assumed("reader", ok.stdout.trim());
    let refused = identity(&app, "audit");
    assert!(!refused.status.success(), "{}", refused.describe());
    assert!(
        refused.stderr.contains("audit") && refused.stderr.contains("could not be found"),
        "{}",
        refused.describe()
    );
    let ops_ok = identity(&ops, "audit");
    assert!(ops_ok.status.success(), "{}", ops_ok.describe());
    assert!(!identity(&ops, "writer").status.success());
}

/// Session tags on a chained hop: moto accepts the `AssumeRole` with tags,
/// transitive keys, a source identity and the Kubernetes tags, and the AWS
/// CLI uses the session it gave.
#[test]
#[ignore = "needs the Python tools: run by make test"]
fn a_tagged_chained_session_is_assumed_and_works() {
    let s = Setup::new("tags");
    let yaml = format!(
        "profiles:\n  reader: {}\n  tagged:\n    role_arn: {}\n    source_profile: reader\n    \
         tags: {{team: shop, cost-center: '1234'}}\n    transitive_tag_keys: [team]\n    \
         source_identity: acceptance-test\n    kubernetes_tags: true\n",
        role_arn("reader"),
        role_arn("tagged"),
    );
    s.once_with_config(&yaml, &["--output-dir".as_ref(), s.out.as_os_str()]);
    assert_assumed("tagged", &s.cli_caller_arn("tagged"));
}

/// One boto3 client, kept alive as an application keeps it, signing with
/// each key it uses: a line on stdin makes one `GetCallerIdentity` call and
/// prints `ok ACCESS_KEY_ID ARN` (the key read from the request's
/// `Authorization` header, as sent) or `err NAME MESSAGE`.
const BOTO3_KEPT_ALIVE: &str = r#"
import sys
import boto3

signed = []
def record(request, **_):
    auth = request.headers.get("Authorization", b"")
    auth = auth.decode() if isinstance(auth, bytes) else auth
    signed.append(auth.split("Credential=", 1)[1].split("/", 1)[0])

client = boto3.session.Session().client("sts", endpoint_url=sys.argv[1])
client.meta.events.register("before-send.sts", record)
for _ in sys.stdin:
    try:
        arn = client.get_caller_identity()["Arn"]
        print("ok", signed[-1], arn, flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported to the test
        print("err", type(e).__name__, " ".join(str(e).split()), flush=True)
"#;

/// The default publication (issue 23, item 3): `rolecall run` with no mode
/// option, so process mode; ONE boto3 client built before a refresh keeps
/// signing, and after `rolecall refresh` signs with the new keys (the
/// helper's), not the first session's. 15-minute sessions (moto honours
/// `--duration 900`): the expiry the helper reports is inside botocore's
/// 15-minute refresh window, so the client asks the helper again on its
/// next call, as it would late in a one-hour session.
#[test]
#[ignore = "needs the Python tools: run by make test"]
fn run_with_no_mode_option_keeps_one_boto3_client_signing_with_the_new_keys() {
    use std::io::{BufRead, BufReader, Write};

    let s = Setup::new("default-mode");
    let sock = s.root.path().join("control.sock");
    let log = s.root.path().join("rolecall.log");
    let mut cmd = rolecall();
    cmd.args([
        "run",
        "--profile",
        &format!("reader={}", role_arn("reader")),
    ])
    .arg("--token-file")
    .arg(s.tokens.token_path())
    .arg("--output-dir")
    .arg(&s.out)
    .args(["--region", "us-east-1", "--session-name", "acceptance"])
    .args(["--duration", "900", "--health-addr", ""])
    .arg("--sts-endpoint")
    .arg(s.moto.endpoint())
    .arg("--control-socket")
    .arg(&sock)
    .stdin(Stdio::null())
    .stdout(fs::File::create(&log).expect("log"))
    .stderr(fs::File::create(&log).expect("log"));
    let _rc = ChildGuard {
        child: cmd.spawn().expect("start rolecall run"),
        what: "rolecall run".into(),
    };
    let show_log = || fs::read_to_string(&log).unwrap_or_default();
    // The key the helper hands out now, as the SDK runs it.
    let helper_key = || {
        let out = Command::new(s.out.join("rolecall"))
            .args(["credential-process", "--profile", "reader"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["AccessKeyId"].as_str().map(str::to_owned)
    };
    let mut first = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            first = helper_key();
            first.is_some()
        }),
        "no credentials from the helper within 60 s; log:\n{}",
        show_log()
    );
    let first = first.unwrap();
    let config = fs::read_to_string(s.config()).expect("config");
    assert!(
        config.contains(&format!(
            "credential_process = {}/rolecall credential-process --profile reader",
            s.out.display()
        )),
        "no mode option: process mode\n{config}"
    );
    let credentials = fs::read_to_string(s.credentials()).unwrap_or_default();
    assert!(access_keys(&credentials).is_empty(), "{credentials}");

    let mut app = s.reader(&venv_bin("python"));
    app.args(["-c", BOTO3_KEPT_ALIVE, &s.moto.endpoint()])
        .env("AWS_PROFILE", "reader")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = app.spawn().expect("start python");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _app = ChildGuard {
        child,
        what: "the boto3 client".into(),
    };
    let mut call = || {
        writeln!(stdin, "call").expect("write to the client");
        let line = lines.next().expect("an answer").expect("a line");
        let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        assert_eq!(fields.len(), 3, "the client answered {line:?}");
        assert_eq!(fields[0], "ok", "the client answered {line:?}");
        assert_assumed("reader", &fields[2]);
        fields[1].clone()
    };
    assert_eq!(call(), first, "the first call signs with the first session");

    // rolecall refresh (skipped within 5 s of the first session: asked
    // again until the helper hands out another key).
    let mut new_key = None;
    for _ in 0..10 {
        let out = run(
            rolecall()
                .args(["refresh", "--profile", "reader", "--control-socket"])
                .arg(&sock),
            s.root.path(),
            Duration::from_secs(30),
        );
        if wait_until(Duration::from_secs(3), || {
            new_key = helper_key().filter(|k| *k != first);
            new_key.is_some()
        }) {
            break;
        }
        eprintln!("refresh: {}", out.describe());
    }
    let new_key = new_key.unwrap_or_else(|| {
        panic!(
            "the helper still hands out the first key after rolecall refresh; log:\n{}",
            show_log()
        )
    });
    let signed = call();
    assert_eq!(
        signed,
        new_key,
        "the kept-alive client signs with the new session's key (first {first}); log:\n{}",
        show_log()
    );
}

// ------------------------------------------------------------------ Pod Identity

/// Pod Identity end to end against moto (issue 24): the fake agent answers
/// with a real moto session of the association role (the six EKS tags,
/// transitive), rolecall chains `reader` and `writer` from it with
/// `AssumeRole` signed by that session, and the AWS CLI and boto3 use the
/// chained profiles; the base, published as `node`, is the association
/// role's session. Then kubelet rotates the token (the agent accepts only
/// the file's current content) and every profile is refreshed with it.
#[test]
#[ignore = "needs the Python tools: run by make test"]
fn pod_identity_chained_profiles_work_for_the_aws_cli_and_boto3() {
    let mut s = Setup::new("pod-identity");
    let pod_aud = "pods.eks.amazonaws.com";
    let first_token = jwt_for(pod_aud, now_secs() + 86_400);
    s.tokens.publish(&first_token);
    let agent = FakeAgent::start();
    agent.accept_token_file(&s.tokens.token_path());
    agent.set_default(AgentReply::Moto {
        endpoint: s.moto.endpoint(),
        role_arn: ASSOCIATION_ROLE_ARN.to_owned(),
    });

    let config = s.root.path().join("rolecall.yaml");
    let yaml = format!(
        "identity: pod-identity\npod_identity_endpoint: {}\npod_identity_token_file: {}\n\
         pod_identity_profile: node\nprofiles:\n  reader: {}\n  writer: {}\n",
        agent.url(),
        s.tokens.token_path().display(),
        role_arn("reader"),
        role_arn("writer"),
    );
    fs::write(&config, yaml).expect("config file");
    let port = free_port();
    let log = s.root.path().join("rolecall.log");
    let mut cmd = rolecall();
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--credentials", "file", "--output-dir"])
        .arg(&s.out)
        .args(["--region", "us-east-1", "--session-name", "acceptance"])
        .arg("--sts-endpoint")
        .arg(s.moto.endpoint())
        .arg("--health-addr")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).expect("log"))
        .stderr(fs::File::create(&log).expect("log"));
    let mut rc = ChildGuard {
        child: cmd.spawn().expect("start rolecall run"),
        what: "rolecall run (pod-identity)".into(),
    };
    let show_log = || fs::read_to_string(&log).unwrap_or_default();
    let ready = wait_until(Duration::from_secs(60), || {
        rc.exited().is_none() && matches!(http_get_blocking(port, "/readyz"), Some((200, _)))
    });
    assert!(
        ready,
        "no 200 from /readyz within 60 s (exited: {:?}); log:\n{}",
        rc.exited(),
        show_log()
    );

    // The files: the two chained profiles and the published base.
    let before = access_keys(&fs::read_to_string(s.credentials()).expect("credentials"));
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["node", "reader", "writer"], "{before:?}");
    let base_key = &before[0].1;
    assert!(
        agent.issued().contains(base_key),
        "node holds the agent's session {:?}, not {base_key}",
        agent.issued()
    );

    // The AWS CLI: each chained profile is its role, the base the
    // association role's EKS session.
    for p in ["reader", "writer"] {
        assert_assumed(p, &s.cli_caller_arn(p));
    }
    let base_arn = s.cli_caller_arn("node");
    assert!(
        base_arn.starts_with(&format!(
            "arn:aws:sts::{ACCOUNT}:assumed-role/pod-identity-association/eks-acceptance-"
        )),
        "the published base is the association's session: {base_arn}"
    );

    // boto3 by profile name.
    let script = r#"
import sys
import boto3

for name in sys.argv[2:]:
    sts = boto3.Session(profile_name=name).client("sts", endpoint_url=sys.argv[1])
    print(name, sts.get_caller_identity()["Arn"])
"#;
    let mut cmd = s.reader(&venv_bin("python"));
    cmd.args(["-c", script, &s.moto.endpoint(), "reader", "writer"]);
    let out = run(&mut cmd, s.root.path(), Duration::from_secs(60));
    assert!(out.status.success(), "boto3 script\n{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.describe());
    for (line, p) in lines.iter().zip(["reader", "writer"]) {
        let (name, arn) = line.split_once(' ').expect("NAME ARN");
        assert_eq!(name, p);
        assert_assumed(p, arn);
    }

    // kubelet rotates the token; the agent now refuses the old one. SIGUSR1
    // refreshes the base with the new token, then the chained profiles.
    let calls = agent.calls();
    let new_exp = now_secs() + 2 * 86_400;
    let second_token = jwt_for(pod_aud, new_exp);
    s.tokens.publish(&second_token);
    let status = Command::new("kill")
        .args(["-USR1", &rc.pid().to_string()])
        .status()
        .expect("kill -USR1");
    assert!(status.success());
    let mut now_keys = Vec::new();
    let changed = wait_until(Duration::from_secs(30), || {
        now_keys = fs::read_to_string(s.credentials())
            .map(|c| access_keys(&c))
            .unwrap_or_default();
        now_keys.len() == before.len()
            && now_keys
                .iter()
                .all(|(_, key)| before.iter().all(|(_, old)| old != key))
    });
    assert!(
        changed,
        "access keys did not all change within 30 s of SIGUSR1: before {before:?}, now {now_keys:?}; log:\n{}",
        show_log()
    );
    assert!(agent.calls() > calls, "the base was not asked again");
    assert!(
        agent.issued().contains(&now_keys[0].1),
        "node holds the agent's new session"
    );
    let mut seen = None;
    let rotated = wait_until(Duration::from_secs(10), || {
        seen = http_get_blocking(port, "/metrics")
            .and_then(|(_, body)| metric(&body, "rolecall_token_expiry_timestamp_seconds"));
        seen == Some(new_exp as f64)
    });
    assert!(
        rotated,
        "rolecall_token_expiry_timestamp_seconds is {seen:?}, want {new_exp} (the rotated token)"
    );
    for p in ["reader", "writer"] {
        assert_assumed(p, &s.cli_caller_arn(p));
    }
    let logged = show_log();
    for (which, token) in [("first", &first_token), ("rotated", &second_token)] {
        assert!(
            !logged.contains(token.as_str()),
            "the {which} token reached the log"
        );
    }
    for c in agent.issued_credentials() {
        assert!(
            !logged.contains(&c.secret_access_key) && !logged.contains(&c.session_token),
            "a secret of the agent's session {} reached the log",
            c.access_key_id
        );
    }

    let status = Command::new("kill")
        .args(["-TERM", &rc.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = rc.wait_timeout(Duration::from_secs(2));
    assert_eq!(
        exit.and_then(|e| e.code()),
        Some(0),
        "exit status after SIGTERM: {exit:?}; log:\n{}",
        show_log()
    );
}
