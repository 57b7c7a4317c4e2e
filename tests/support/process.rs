//! The rolecall binary as a child process: the command builder, one-shot
//! runs with a time limit.

use std::path::Path;
use std::time::Duration;

use super::{FakeSts, TokenDir};

/// The rolecall binary with an empty environment (but `PATH`, a `HOSTNAME`
/// and no control socket: parallel sidecars would share its default path)
/// and no standard input.
pub fn rolecall_command() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rolecall"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOSTNAME", "test-pod")
        .env("ROLECALL_CONTROL_SOCKET", "")
        .stdin(std::process::Stdio::null());
    c
}

/// [`rolecall_command`] with the health listener off and both output pipes
/// captured, for [`run_for`].
pub fn rolecall_piped() -> std::process::Command {
    let mut c = rolecall_command();
    c.env("ROLECALL_HEALTH_ADDR", "")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// The publication mode of a test that does not choose one: `file`, which
/// writes text files only. The default (`process`) also copies the rolecall
/// binary into the output dir as the helper, 164 MB in a debug build: tests
/// that check the default, or process mode, ask for it
/// ([`base_args_with`], [`rolecall_run_with`](super::rolecall_run_with)).
pub const TEST_MODE: &str = "file";

/// `--token-file`, `--output-dir`, `--region eu-west-1`, `--sts-endpoint`
/// and `--credentials file` ([`TEST_MODE`]) for a run against `sts` and
/// `token`.
pub fn base_args(sts: &FakeSts, token: &TokenDir, out: &Path) -> Vec<String> {
    base_args_with(sts, token, out, Some(TEST_MODE))
}

/// [`base_args`] with `--credentials MODE`, or none (the default) for `None`.
pub fn base_args_with(
    sts: &FakeSts,
    token: &TokenDir,
    out: &Path,
    mode: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        "--token-file".into(),
        token.path().display().to_string(),
        "--output-dir".into(),
        out.display().to_string(),
        "--region".into(),
        "eu-west-1".into(),
        "--sts-endpoint".into(),
        sts.endpoint(),
    ];
    if let Some(mode) = mode {
        args.extend(["--credentials".into(), mode.into()]);
    }
    args
}

/// What one run of the binary did.
pub struct Run {
    /// `None` when killed by a signal (a panic with `panic = "abort"`) or
    /// after the limit.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Killed because it outlived the limit.
    pub hung: bool,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Asserts the exit code, and that stderr says every one of `needles`;
    /// `what` names the case in the failure message.
    pub fn assert_says(&self, code: i32, needles: &[&str], what: &str) {
        assert_eq!(self.code, Some(code), "{what}: {}", self.describe());
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "{what}: stderr does not say {needle:?}:\n{}",
                self.describe()
            );
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {:?}{}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            if self.hung { " (killed: hung)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` (with piped stdout and stderr, as [`rolecall_piped`] sets
/// them) to completion on the wall clock, killing it after `limit`.
pub fn run_for(cmd: &mut std::process::Command, limit: Duration) -> Run {
    use std::io::Read as _;
    let mut child = cmd.spawn().expect("spawn rolecall");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + limit;
    let mut hung = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            hung = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        hung,
    }
}
