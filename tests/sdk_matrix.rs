//! The SDK matrix: for each SDK and each way rolecall publishes a profile,
//! ONE long-lived client (as an application keeps it) across three credential
//! refreshes, and whether it signs with the new keys.
//!
//! rolecall runs as the real binary against the in-process STS, which hands
//! out short sessions (so the SDKs' own refresh windows apply) and records the
//! key every `GetCallerIdentity` was signed with. Each cell writes its result
//! to `target/sdk-matrix/`; `scripts/sdk_matrix.py` renders the README table
//! from those files. The cells need the Python tools (AWS CLI, boto3), the
//! JavaScript SDK and the Go driver built against Debian's Go SDK
//! (`make sdk-deps`), so they are `#[ignore]`d in plain `cargo test` and run
//! by `make test`.
//!
//! The lag cells (`lag_*`) keep one client per SDK in process and endpoint
//! mode with REAL session lengths (one hour, so each SDK's own refresh
//! window applies as in production), force a refresh with `rolecall
//! refresh` shortly after the client's first call, and measure the wall
//! time until the client's first call signed with the new session: each must
//! be within [`LAG_BOUND`] (README: "The `Expiration` process mode and the
//! endpoint report"). They wait up to 17 minutes, mostly idle; `make test`
//! starts them in the background early and collects them at the end.
//!
//! The Pod Identity cells (`pod_identity_*`) are the same cells with the
//! profile chained from the EKS Pod Identity agent's session (issue 24):
//! the fake agent hands rolecall a short base session, every `AssumeRole`
//! for the profile must be signed with one of its keys, and the client must
//! follow the chained profile's refreshes as it does under web identity.
//! They run for the long-lived clients the issue names (the Rust SDK and
//! boto3) in process and endpoint mode; `scripts/sdk_matrix.py` shows them
//! as their own rows.
//!
//! Besides following refreshes, every cell that follows checks that its
//! client never signs with a key in the last [`LATE_MARGIN`] before that
//! key's real expiry while rolecall had already issued a newer one (issue 10,
//! item 3): a request in flight at expiry or a small clock skew would fail.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
/// Short sessions: every SDK's refresh window (5 to 15 minutes before
/// expiry, 10 s for Rust's lazy cache) is then always or soon open.
const LIFETIME: Duration = Duration::from_secs(16);
/// How long a client may take to pick up a new session.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(22);
const REFRESHES: usize = 3;
/// "The last minutes before expiry", scaled to the matrix's short sessions:
/// a sixteenth of the lifetime (1 s here; about 1 minute of a 15-minute
/// session, 3.75 minutes of an hour). rolecall reports an `Expiration` at
/// least a tenth of the lifetime (at most 5 minutes) before the real one
/// while newer keys are due (README: "The `Expiration` process mode and the
/// endpoint report"), so a client that keeps keys until the reported expiry
/// (Go v2's `credential_process` provider) stays outside this margin.
const LATE_MARGIN: Duration = Duration::from_secs(LIFETIME.as_secs() / 16);
/// Cells whose client is known to sign with keys in their last
/// [`LATE_MARGIN`] while newer ones exist. The check still runs for these
/// cells and must FAIL: when it passes, remove the cell from this list.
/// Empty since rolecall reports an expiry after its next planned refresh
/// (issue 10, item 3), which Go v2's process provider follows.
const SIGNS_LATE_EXPECTED: &[(Sdk, Mode)] = &[];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    File,
    Process,
    Endpoint,
}

/// Where the profile's session comes from: the web-identity token (every
/// cell before issue 24) or the Pod Identity agent's base session, which the
/// profile chains from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    WebIdentity,
    PodIdentity,
}

impl Source {
    /// The result file's suffix: none for web identity (the names the
    /// matrix always had), `-pod-identity` for the agent.
    fn suffix(self) -> &'static str {
        match self {
            Source::WebIdentity => "",
            Source::PodIdentity => "-pod-identity",
        }
    }
}

/// The agent's base sessions in the Pod Identity cells: short too, so the
/// base is renewed during a cell as well and the profile is re-chained from
/// the new base (a real agent's are 6 h or 59 min, design24 F9).
const AGENT_LIFETIME: Duration = Duration::from_secs(30);

/// In the app's home, the endpoint token an operator supplies with
/// `--endpoint-token-file`, for SDKs that take the token's value.
const SUPPLIED_TOKEN_FILE: &str = "supplied-endpoint-token";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sdk {
    Cli,
    Boto3,
    Js,
    Rust,
    /// The AWS SDK for Go v2 as Debian packages it (1.17), which predates
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
    Go,
}

impl Sdk {
    /// The variable that hands the endpoint token to this SDK.
    fn endpoint_token_var(self) -> &'static str {
        match self {
            Sdk::Go => "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            _ => "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> PathBuf {
    std::env::var_os("ROLECALL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv"))
}

/// The environment an application container would have in this mode.
fn app_env(
    sdk: Sdk,
    mode: Mode,
    out: &Path,
    endpoint_port: u16,
    home: &Path,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".into(), home.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ];
    let p = |f: &str| out.join(f).display().to_string();
    match mode {
        Mode::File => {
            env.push(("AWS_SHARED_CREDENTIALS_FILE".into(), p("credentials")));
            env.push(("AWS_CONFIG_FILE".into(), p("config")));
            env.push(("AWS_PROFILE".into(), "reader".into()));
        }
        Mode::Process => {
            env.push((
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                home.join("none").display().to_string(),
            ));
            env.push(("AWS_CONFIG_FILE".into(), p("config")));
            env.push(("AWS_PROFILE".into(), "reader".into()));
        }
        Mode::Endpoint => {
            env.push((
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                home.join("none").display().to_string(),
            ));
            env.push((
                "AWS_CONFIG_FILE".into(),
                home.join("none").display().to_string(),
            ));
            env.push((
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                format!("http://127.0.0.1:{endpoint_port}/v1/credentials/reader"),
            ));
            let token = match sdk.endpoint_token_var() {
                // The value itself, as an app whose SDK predates the file
                // variable takes it from the Secret that rolecall reads
                // with --endpoint-token-file (see `cell`).
                "AWS_CONTAINER_AUTHORIZATION_TOKEN" => {
                    std::fs::read_to_string(home.join(SUPPLIED_TOKEN_FILE)).expect("supplied token")
                }
                _ => p("endpoint-token"),
            };
            env.push((sdk.endpoint_token_var().into(), token));
        }
    }
    env
}

/// A long-lived SDK client driven over stdin, or the CLI (a new process per
/// call, which is how the CLI is used).
enum Client {
    Driver {
        child: Child,
        stdin: ChildStdin,
        stdout: BufReader<ChildStdout>,
    },
    Cli {
        env: Vec<(String, String)>,
        endpoint: String,
    },
}

impl Client {
    fn start(sdk: Sdk, env: Vec<(String, String)>, endpoint: &str) -> Client {
        let mut cmd = match sdk {
            Sdk::Cli => {
                return Client::Cli {
                    env,
                    endpoint: endpoint.to_owned(),
                };
            }
            Sdk::Boto3 => {
                let mut c = Command::new(venv().join("bin/python"));
                c.arg(root().join("tests/sdk/boto3_driver.py"));
                c
            }
            Sdk::Js => {
                let mut c = Command::new("node");
                c.arg(root().join("tests/sdk/node/driver.mjs"));
                c
            }
            Sdk::Rust => {
                let bin = Path::new(env!("CARGO_BIN_EXE_rolecall"))
                    .with_file_name("examples")
                    .join("sdk_driver");
                assert!(
                    bin.exists(),
                    "{} is missing: `cargo build --examples`",
                    bin.display()
                );
                Command::new(bin)
            }
            Sdk::Go => {
                // Built by `make sdk-deps` next to the profile directories.
                let bin = Path::new(env!("CARGO_BIN_EXE_rolecall"))
                    .parent()
                    .and_then(Path::parent)
                    .expect("target dir")
                    .join("sdk-driver-go");
                assert!(
                    bin.exists(),
                    "{} is missing: `make sdk-deps` builds it",
                    bin.display()
                );
                Command::new(bin)
            }
        };
        let mut child = cmd
            .arg(endpoint)
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SDK driver");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "driver did not start: {line:?}");
        Client::Driver {
            child,
            stdin,
            stdout,
        }
    }

    /// One GetCallerIdentity call; "ok ARN" or "err ...".
    fn call(&mut self) -> String {
        match self {
            Client::Driver { stdin, stdout, .. } => {
                writeln!(stdin, "call").unwrap();
                stdin.flush().unwrap();
                let mut line = String::new();
                stdout.read_line(&mut line).unwrap();
                line.trim().to_owned()
            }
            Client::Cli { env, endpoint } => {
                let o = Command::new(venv().join("bin/aws"))
                    .args([
                        "sts",
                        "get-caller-identity",
                        "--output",
                        "text",
                        "--query",
                        "Arn",
                    ])
                    .args(["--endpoint-url", endpoint, "--region", "eu-west-1"])
                    .env_clear()
                    .envs(env.iter().cloned())
                    .output()
                    .unwrap();
                if o.status.success() {
                    format!("ok {}", String::from_utf8_lossy(&o.stdout).trim())
                } else {
                    format!(
                        "err {}",
                        String::from_utf8_lossy(&o.stderr)
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                }
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Client::Driver { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// What one cell measured.
struct Outcome {
    /// How many of the refreshes the client followed.
    followed: usize,
    /// Calls signed with a key in its last [`LATE_MARGIN`] while a newer key
    /// had already been issued, described for the failure message.
    late: Vec<String>,
}

/// Makes one call and notes every key it signed with that was inside its
/// last [`LATE_MARGIN`] while rolecall had already issued a newer key.
fn checked_call(client: &mut Client, sts: &FakeSts, late: &mut Vec<String>) -> String {
    let started = SystemTime::now();
    let issued_before = sts.issued().len();
    let signed_before = sts.signed_with().len();
    let answer = client.call();
    let issued = sts.issued();
    for key in &sts.signed_with()[signed_before..] {
        let Some(at) = issued.iter().position(|c| &c.access_key_id == key) else {
            continue;
        };
        let newer_exists = issued_before > at + 1;
        let left = issued[at]
            .expiration
            .duration_since(started)
            .unwrap_or(Duration::ZERO);
        if newer_exists && left < LATE_MARGIN {
            late.push(format!(
                "key #{at} signed {:.1} s before its expiry while key #{} existed",
                left.as_secs_f64(),
                issued_before - 1
            ));
        }
    }
    answer
}

/// `rolecall run` publishing profile `reader` chained from the Pod Identity
/// agent's session: the agent at `agent`, its token in `token`, STS at
/// `sts`, in `credentials` mode.
fn pod_identity_run(
    sts: &FakeSts,
    agent: &FakeAgent,
    token: &TokenDir,
    out: &Path,
    credentials: &str,
) -> Command {
    let mut c = rolecall_command();
    c.env("RUST_LOG", "info")
        .args(["run", "--identity", "pod-identity"])
        .args(["--pod-identity-endpoint", &agent.url()])
        .arg("--pod-identity-token-file")
        .arg(token.path())
        .arg("--output-dir")
        .arg(out)
        .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
        .args(["--credentials", credentials])
        .args(["--profile", &format!("reader={READER}")]);
    c
}

/// Starts the sidecar for one cell, publishing profile `reader`, from the
/// web-identity token or, with `agent`, chained from the Pod Identity
/// agent's session.
#[allow(clippy::too_many_arguments)]
fn start_sidecar(
    sdk: Sdk,
    mode: Mode,
    sts: &FakeSts,
    token: &TokenDir,
    agent: Option<&FakeAgent>,
    out: &Path,
    home: &Path,
    endpoint_port: u16,
) -> Sidecar {
    // Each cell names its mode (endpoint mode: the profile also in file
    // mode, as before process mode became the default).
    let credentials = match mode {
        Mode::File | Mode::Endpoint => "file",
        Mode::Process => "process",
    };
    let mut cmd = match agent {
        None => rolecall_run_with(sts, token, out, [("reader", READER)], Some(credentials)),
        Some(agent) => pod_identity_run(sts, agent, token, out, credentials),
    };
    cmd.args(["--health-addr", ""])
        .args([
            "--control-socket",
            &control_socket(home).display().to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    match mode {
        Mode::File | Mode::Process => {}
        Mode::Endpoint => {
            cmd.args(["--endpoint-addr", &format!("127.0.0.1:{endpoint_port}")]);
            if sdk.endpoint_token_var() == "AWS_CONTAINER_AUTHORIZATION_TOKEN" {
                // A token the operator supplies (a mounted Secret in a pod),
                // so the app can take its value: see `app_env`.
                let secret = home.join(SUPPLIED_TOKEN_FILE);
                std::fs::write(
                    &secret,
                    "rolecall-sdk-matrix-0123456789abcdef0123456789abcdef",
                )
                .unwrap();
                cmd.args(["--endpoint-token-file", &secret.display().to_string()]);
            }
        }
    }
    Sidecar(cmd.spawn().unwrap())
}

/// The sidecar's control socket, in the app's home (a test's own dir).
fn control_socket(home: &Path) -> PathBuf {
    home.join("control.sock")
}

/// The session length of the lag cells: what STS grants by default, so the
/// SDKs' windows (5 to 15 minutes, 10 s for Rust) apply as in production.
const LAG_LIFETIME: Duration = Duration::from_secs(3600);
/// The documented bound (README, "The `Expiration` process mode and the
/// endpoint report"): a long-lived client signs with the session a forced
/// refresh obtained within 17 minutes (`schedule::REPORT_SLIDE`, the
/// sliding reported expiry), less its own refresh window.
const LAG_BOUND: Duration = Duration::from_secs(17 * 60);
/// How often the lag cells' clients call: the resolution of the figures.
const LAG_CALL_EVERY: Duration = Duration::from_secs(2);

/// Runs one lag cell: the wall time from `rolecall refresh` to the start of
/// the first call signed with the new session, and the resolution of that
/// figure (the time between two calls' starts); `None` if that did not
/// happen within [`LAG_BOUND`] and a minute.
async fn lag_cell(sdk: Sdk, mode: Mode) -> Option<(Duration, Duration)> {
    let sts = FakeSts::granting(LAG_LIFETIME);
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let endpoint_port = free_port();
    let _sidecar = start_sidecar(
        sdk,
        mode,
        &sts,
        &token,
        None,
        out.path(),
        home.path(),
        endpoint_port,
    );
    assert!(wait_until(Duration::from_secs(10), || !sts.issued().is_empty()).await);
    assert!(
        wait_until(Duration::from_secs(5), || {
            control_socket(home.path()).exists()
                && match mode {
                    Mode::Process => {
                        std::fs::read_to_string(out.path().join("credential-process.json"))
                            .is_ok_and(|c| c.contains(&sts.issued()[0].access_key_id))
                    }
                    _ => std::net::TcpStream::connect(("127.0.0.1", endpoint_port)).is_ok(),
                }
        })
        .await
    );
    let mut client = Client::start(
        sdk,
        app_env(sdk, mode, out.path(), endpoint_port, home.path()),
        &sts.endpoint(),
    );
    let answer = client.call();
    assert!(answer.starts_with("ok "), "{sdk:?}/{mode:?}: {answer}");

    // The operator's forced refresh, a moment into the client's session;
    // `rolecall refresh` skips a profile refreshed under 5 s ago (the
    // start's refresh), as it tells the operator, who runs it again.
    let refresh = || {
        let o = Command::new(env!("CARGO_BIN_EXE_rolecall"))
            .args(["refresh", "--control-socket"])
            .arg(control_socket(home.path()))
            .output()
            .unwrap();
        // Exit 0: refreshed; 1 with "skipped": not yet.
        let said = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            o.status.success() || (o.status.code() == Some(1) && err.contains("skipped")),
            "rolecall refresh: {said}{err}"
        );
        o.status.success()
    };
    let tries = Instant::now();
    let (before, forced) = loop {
        let (before, forced) = (sts.issued().len(), Instant::now());
        if refresh() {
            break (before, forced);
        }
        assert!(
            tries.elapsed() < Duration::from_secs(10),
            "rolecall refresh kept skipping the profile"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        sts.issued().len() > before,
        "rolecall refresh answered before its new session"
    );
    let new_keys = |key: &str| {
        sts.issued()[before..]
            .iter()
            .any(|c| c.access_key_id == key)
    };
    // The lag is taken when the call that signs with the new session
    // starts: the client asked for credentials within that call. Its
    // resolution is the time between two calls' starts (the pause and the
    // longest call so far, which a loaded machine stretches).
    let mut slowest = Duration::ZERO;
    while forced.elapsed() < LAG_BOUND + Duration::from_secs(60) {
        let (lag, started) = (forced.elapsed(), Instant::now());
        let answer = client.call();
        slowest = slowest.max(started.elapsed());
        assert!(answer.starts_with("ok "), "{sdk:?}/{mode:?}: {answer}");
        if sts.signed_with().last().is_some_and(|k| new_keys(k)) {
            record_lag(sdk, mode, Some(lag));
            return Some((lag, LAG_CALL_EVERY + slowest));
        }
        tokio::time::sleep(LAG_CALL_EVERY).await;
    }
    record_lag(sdk, mode, None);
    None
}

/// Writes `lag SECONDS` (or `lag none`) to `target/sdk-matrix/SDK-MODE-lag`
/// for `scripts/sdk_matrix.py`.
fn record_lag(sdk: Sdk, mode: Mode, lag: Option<Duration>) {
    let dir = root().join("target/sdk-matrix");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("{sdk:?}-{mode:?}-lag").to_lowercase();
    let value = lag.map_or("none".to_owned(), |l| l.as_secs().to_string());
    std::fs::write(
        dir.join(name),
        format!("lag {value}\nbound {}\n", LAG_BOUND.as_secs()),
    )
    .unwrap();
}

macro_rules! lag_cells {
    ($($name:ident: $sdk:ident, $mode:ident;)*) => {$(
        #[tokio::test]
        #[ignore = "needs the AWS CLI, boto3, the JavaScript SDK and the Go driver, and up to 18 minutes: run by make test"]
        async fn $name() {
            let (sdk, mode) = (Sdk::$sdk, Mode::$mode);
            let lag = lag_cell(sdk, mode).await;
            let (lag, resolution) = lag.unwrap_or_else(|| {
                panic!("{sdk:?}/{mode:?} still signed with the old session {LAG_BOUND:?} and a minute after rolecall refresh")
            });
            // The bound, plus the time between two of the client's calls.
            assert!(
                lag <= LAG_BOUND + resolution,
                "{sdk:?}/{mode:?} took {lag:?} to sign with the new session, over the documented {LAG_BOUND:?}"
            );
        }
    )*};
}

// One long-lived client per SDK and mode, one-hour sessions, a forced
// refresh: how long until it signs with the new session (README's table).
lag_cells! {
    lag_cli_process: Cli, Process;
    lag_cli_endpoint: Cli, Endpoint;
    lag_boto3_process: Boto3, Process;
    lag_boto3_endpoint: Boto3, Endpoint;
    lag_js_process: Js, Process;
    lag_js_endpoint: Js, Endpoint;
    lag_rust_process: Rust, Process;
    lag_rust_endpoint: Rust, Endpoint;
    lag_go_process: Go, Process;
    lag_go_endpoint: Go, Endpoint;
}

/// A projected Pod Identity token (audience `pods.eks.amazonaws.com`),
/// valid for a day like the one EKS mounts.
fn pod_identity_jwt() -> String {
    jwt(
        TEST_ISSUER,
        TEST_SUBJECT,
        "pods.eks.amazonaws.com",
        now_unix() + 24 * 3600,
    )
}

/// The fake Pod Identity agent of a Pod Identity cell: it accepts only the
/// token in `token` and hands out sessions of [`AGENT_LIFETIME`].
fn start_agent(token: &TokenDir) -> FakeAgent {
    let agent = FakeAgent::start();
    agent.accept_token_file(&token.path());
    agent.set_default(AgentReply::Ok {
        lifetime: AGENT_LIFETIME,
    });
    agent
}

/// Runs one cell.
async fn cell(sdk: Sdk, mode: Mode, source: Source) -> Outcome {
    let sts = FakeSts::granting(LIFETIME);
    let token = TokenDir::new(&match source {
        Source::WebIdentity => valid_jwt(),
        Source::PodIdentity => pod_identity_jwt(),
    });
    let agent = (source == Source::PodIdentity).then(|| start_agent(&token));
    let out = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let endpoint_port = free_port();
    let sidecar = start_sidecar(
        sdk,
        mode,
        &sts,
        &token,
        agent.as_ref(),
        out.path(),
        home.path(),
        endpoint_port,
    );
    let published = |key: &str| match mode {
        Mode::File => {
            std::fs::read_to_string(out.path().join("credentials")).is_ok_and(|c| c.contains(key))
        }
        Mode::Process => std::fs::read_to_string(out.path().join("credential-process.json"))
            .is_ok_and(|c| c.contains(key)),
        Mode::Endpoint => {
            out.path().join("endpoint-token").is_file()
                && std::net::TcpStream::connect(("127.0.0.1", endpoint_port)).is_ok()
        }
    };
    assert!(wait_until(Duration::from_secs(10), || !sts.issued().is_empty()).await);
    let first = sts.issued()[0].access_key_id.clone();
    assert!(wait_until(Duration::from_secs(5), || published(&first)).await);

    let mut late = Vec::new();
    let mut client = Client::start(
        sdk,
        app_env(sdk, mode, out.path(), endpoint_port, home.path()),
        &sts.endpoint(),
    );
    let answer = checked_call(&mut client, &sts, &mut late);
    assert!(
        answer.starts_with("ok arn:aws:sts::111122223333:assumed-role/reader/"),
        "{sdk:?}/{mode:?}: {answer}"
    );

    let mut followed = 0;
    for round in 1..=REFRESHES {
        // Ask for a refresh now; every key issued from here on is "new".
        let before = sts.issued().len();
        let _ = Command::new("kill")
            .args(["-USR1", &sidecar.0.id().to_string()])
            .status();
        // SIGUSR1 refreshes a profile at most every 5 s: allow for that.
        assert!(wait_until(Duration::from_secs(10), || sts.issued().len() > before).await);
        // Under Pod Identity the profile may be assumed twice (refreshed,
        // then re-chained from the base's new session): any new key will do.
        assert!(
            wait_until(Duration::from_secs(5), || sts.issued()[before..]
                .iter()
                .any(|c| published(&c.access_key_id)))
            .await,
            "round {round}: not published"
        );
        let new_keys = |key: &str| {
            sts.issued()[before..]
                .iter()
                .any(|c| c.access_key_id == key)
        };
        let started = Instant::now();
        let mut ok = false;
        while started.elapsed() < FOLLOW_TIMEOUT {
            let answer = checked_call(&mut client, &sts, &mut late);
            assert!(
                answer.starts_with("ok "),
                "{sdk:?}/{mode:?} round {round}: {answer}"
            );
            if sts.signed_with().last().is_some_and(|k| new_keys(k)) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if !ok {
            break;
        }
        followed += 1;
    }
    drop(client);
    drop(sidecar);
    if let Some(agent) = &agent {
        assert_chained_from_agent(&sts, agent);
    }
    let outcome = Outcome { followed, late };
    record(sdk, mode, source, &outcome);
    outcome
}

/// Every STS call of a Pod Identity cell was an `AssumeRole` for the
/// profile signed with a key the agent issued (no web identity anywhere),
/// and the agent was asked again during the cell (its short sessions and
/// the refreshes renew the base as well).
fn assert_chained_from_agent(sts: &FakeSts, agent: &FakeAgent) {
    let issued = agent.issued();
    assert!(
        agent.calls() >= 2,
        "the base session was never renewed: {} agent call(s)",
        agent.calls()
    );
    let requests = sts.requests();
    let assumes: Vec<_> = requests
        .iter()
        .filter(|r| r.action != "GetCallerIdentity")
        .collect();
    assert!(!assumes.is_empty(), "no AssumeRole call reached STS");
    for r in assumes {
        assert_eq!(
            r.action, "AssumeRole",
            "the profile is chained from the agent's session"
        );
        assert_eq!(r.role_arn, READER);
        let key = r
            .authorization
            .as_deref()
            .and_then(signing_key)
            .unwrap_or_else(|| panic!("an unsigned {} call", r.action));
        assert!(
            issued.iter().any(|k| k == key),
            "AssumeRole signed with {key}, not a key the agent issued ({issued:?})"
        );
    }
}

/// Writes `FOLLOWED/REFRESHES`, then `late N` (calls signed late) and
/// `token-var NAME` (endpoint mode: how the SDK got the endpoint token), for
/// `scripts/sdk_matrix.py`, to `target/sdk-matrix/SDK-MODE` (web identity)
/// or `SDK-MODE-pod-identity`.
fn record(sdk: Sdk, mode: Mode, source: Source, outcome: &Outcome) {
    let dir = root().join("target/sdk-matrix");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("{sdk:?}-{mode:?}{}", source.suffix()).to_lowercase();
    let mut text = format!(
        "{}/{REFRESHES}\nlate {}\n",
        outcome.followed,
        outcome.late.len()
    );
    if mode == Mode::Endpoint {
        text.push_str(&format!("token-var {}\n", sdk.endpoint_token_var()));
    }
    std::fs::write(dir.join(name), text).unwrap();
}

/// What a client says when the endpoint refuses it: it asks for profile
/// `nope`, which rolecall does not publish (404 `UnknownProfile`).
async fn error_cell(sdk: Sdk) -> String {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let endpoint_port = free_port();
    let _sidecar = start_sidecar(
        sdk,
        Mode::Endpoint,
        &sts,
        &token,
        None,
        out.path(),
        home.path(),
        endpoint_port,
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            out.path().join("endpoint-token").is_file()
                && std::net::TcpStream::connect(("127.0.0.1", endpoint_port)).is_ok()
        })
        .await
    );
    let env = app_env(sdk, Mode::Endpoint, out.path(), endpoint_port, home.path())
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI" => (
                k,
                v.replace("/v1/credentials/reader", "/v1/credentials/nope"),
            ),
            _ => (k, v),
        })
        .collect();
    let mut client = Client::start(sdk, env, &sts.endpoint());
    client.call()
}

macro_rules! error_cells {
    ($($name:ident: $sdk:ident, $shows:expr;)*) => {$(
        #[tokio::test]
        #[ignore = "needs the AWS CLI, boto3, the JavaScript SDK and the Go driver: run by make test"]
        async fn $name() {
            let answer = error_cell(Sdk::$sdk).await;
            assert!(answer.starts_with("err "), "{answer}");
            let shown: &str = $shows;
            assert!(
                answer.contains(shown),
                "{:?} should show {shown:?} of the endpoint's answer; it said: {answer}",
                Sdk::$sdk
            );
        }
    )*};
}

// What each client shows of the endpoint's JSON error (README: "Endpoint
// mode"): rolecall's message where the SDK reads the body. JavaScript v3
// attaches `Code`/`Message` to its HTTP provider's error, which the default
// chain then replaces with a generic one; the Rust SDK reports the status
// only. Neither can be changed from the endpoint's side.
error_cells! {
    cli_endpoint_error_is_readable: Cli, "is configured in rolecall";
    boto3_endpoint_error_is_readable: Boto3, "is configured in rolecall";
    js_endpoint_error_is_generic: Js, "Could not load credentials from any providers";
    rust_endpoint_error_shows_the_status: Rust, "404";
    go_endpoint_error_is_readable: Go, "is configured in rolecall";
}

macro_rules! cells {
    ($($name:ident: $sdk:ident, $mode:ident, $follows:expr;)*) => {
        cells! { $($name: $sdk, $mode, WebIdentity, $follows;)* }
    };
    ($($name:ident: $sdk:ident, $mode:ident, $source:ident, $follows:expr;)*) => {$(
        #[tokio::test]
        #[ignore = "needs the AWS CLI, boto3, the JavaScript SDK and the Go driver: run by make test"]
        async fn $name() {
            let (sdk, mode) = (Sdk::$sdk, Mode::$mode);
            let Outcome { followed, late } = cell(sdk, mode, Source::$source).await;
            if $follows {
                assert_eq!(followed, REFRESHES, "a long-lived client must follow every refresh");
                if SIGNS_LATE_EXPECTED.contains(&(sdk, mode)) {
                    assert!(
                        !late.is_empty(),
                        "{sdk:?}/{mode:?} no longer signs with keys in their last {LATE_MARGIN:?}: \
                         remove it from SIGNS_LATE_EXPECTED (issue 10, item 3) and run make sdk-matrix"
                    );
                } else {
                    assert!(
                        late.is_empty(),
                        "{sdk:?}/{mode:?} signed with keys in their last {LATE_MARGIN:?} while newer ones existed: {late:#?}"
                    );
                }
            } else {
                assert_eq!(followed, 0, "expected this client not to re-read the file (update the README if the SDK changed)");
            }
        }
    )*};
}

cells! {
    cli_process: Cli, Process, true;
    cli_endpoint: Cli, Endpoint, true;
    cli_file: Cli, File, true;
    boto3_process: Boto3, Process, true;
    boto3_endpoint: Boto3, Endpoint, true;
    boto3_file: Boto3, File, false;
    js_process: Js, Process, true;
    js_endpoint: Js, Endpoint, true;
    js_file: Js, File, false;
    rust_process: Rust, Process, true;
    rust_endpoint: Rust, Endpoint, true;
    rust_file: Rust, File, false;
    go_process: Go, Process, true;
    go_endpoint: Go, Endpoint, true;
    go_file: Go, File, false;
}

// The long-lived clients with the profile chained from the Pod Identity
// agent's session (issue 24): the source must change nothing downstream.
cells! {
    pod_identity_boto3_process: Boto3, Process, PodIdentity, true;
    pod_identity_boto3_endpoint: Boto3, Endpoint, PodIdentity, true;
    pod_identity_rust_process: Rust, Process, PodIdentity, true;
    pod_identity_rust_endpoint: Rust, Endpoint, PodIdentity, true;
}
