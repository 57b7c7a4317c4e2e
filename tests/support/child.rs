//! `rolecall run` as a child process: [`rolecall_run`] builds the command,
//! [`ChildSidecar`] runs it with its stderr collected (or logged to a file)
//! and kills it when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{FakeSts, TEST_MODE, TokenDir, base_args_with, lock, rolecall_command};

/// `rolecall run` against `sts` and `token`, writing to `out`, publishing
/// `profiles` (`(name, role ARN)`) in file mode ([`TEST_MODE`]), logging at
/// `info`; the caller adds the listeners and anything else.
pub fn rolecall_run<N: AsRef<str>, A: AsRef<str>>(
    sts: &FakeSts,
    token: &TokenDir,
    out: &Path,
    profiles: impl IntoIterator<Item = (N, A)>,
) -> Command {
    rolecall_run_with(sts, token, out, profiles, Some(TEST_MODE))
}

/// [`rolecall_run`] with `--credentials MODE`, or none (the default) for
/// `None`.
pub fn rolecall_run_with<N: AsRef<str>, A: AsRef<str>>(
    sts: &FakeSts,
    token: &TokenDir,
    out: &Path,
    profiles: impl IntoIterator<Item = (N, A)>,
    mode: Option<&str>,
) -> Command {
    let mut c = rolecall_command();
    c.env("RUST_LOG", "info")
        .arg("run")
        .args(base_args_with(sts, token, out, mode));
    for (name, arn) in profiles {
        c.args(["--profile", &format!("{}={}", name.as_ref(), arn.as_ref())]);
    }
    c
}

/// Sets `RLIMIT_NOFILE` (soft and hard) to `n` in the child before exec, as
/// `ulimit -n` or `prlimit --nofile=N:N` would: rolecall cannot raise it.
pub fn limit_open_files(cmd: &mut Command, n: u32) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    let limit = libc::rlimit {
        rlim_cur: libc::rlim_t::from(n),
        rlim_max: libc::rlim_t::from(n),
    };
    // SAFETY: setrlimit(2) is async-signal-safe and reads only `limit`,
    // which the closure owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}

/// Reads a pipe to its end on a thread; the bytes so far are readable at
/// any time (to wait for a log line of a process that is still running).
pub fn collect(
    mut pipe: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    let t = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            lock(&b).extend_from_slice(&chunk[..n]);
        }
    });
    (buf, t)
}

/// Sends `sig` to `pid`; panics if that fails.
pub fn signal_pid(pid: u32, sig: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Waits for `child` on the wall clock, killing it after `limit`; the
/// status and whether it had to be killed.
pub fn wait_exit(child: &mut Child, limit: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return (s, false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return (child.wait().expect("wait after kill"), true);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Where a [`ChildSidecar`]'s stderr goes.
enum Log {
    /// Collected in memory as it comes, by a reader thread that ends when
    /// the pipe does.
    Collected(
        Arc<Mutex<Vec<u8>>>,
        Mutex<Option<std::thread::JoinHandle<()>>>,
    ),
    /// Written to a file (a log that may run away).
    File(PathBuf),
}

/// A long-running rolecall child process (usually from [`rolecall_run`]),
/// standard output discarded; killed and reaped when dropped.
pub struct ChildSidecar {
    pub child: Child,
    log: Log,
}

impl ChildSidecar {
    /// Spawns `cmd` with its stderr collected in memory.
    pub fn spawn(cmd: &mut Command) -> ChildSidecar {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rolecall");
        let (log, reader) = collect(child.stderr.take().expect("stderr"));
        ChildSidecar {
            child,
            log: Log::Collected(log, Mutex::new(Some(reader))),
        }
    }

    /// Spawns `cmd` with its stderr written to the file `log`.
    pub fn spawn_logging_to(cmd: &mut Command, log: &Path) -> ChildSidecar {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).expect("log file"))
            .spawn()
            .expect("spawn rolecall");
        ChildSidecar {
            child,
            log: Log::File(log.to_owned()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        match &self.log {
            Log::Collected(buf, _) => String::from_utf8_lossy(&lock(buf)).into_owned(),
            Log::File(path) => std::fs::read_to_string(path).unwrap_or_default(),
        }
    }

    /// The log file, for a sidecar from [`spawn_logging_to`](Self::spawn_logging_to).
    pub fn log_path(&self) -> Option<&Path> {
        match &self.log {
            Log::Collected(..) => None,
            Log::File(path) => Some(path),
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends `sig` (e.g. `libc::SIGUSR1`); panics if that fails.
    pub fn signal(&self, sig: i32) {
        signal_pid(self.pid(), sig);
    }

    /// SIGTERM, then waits at most `limit`: the exit status, or `None` if it
    /// had to be killed. Everything it logged is in [`log`](Self::log) then.
    pub fn stop_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let (status, hung) = self.exit_within(limit);
        (!hung).then_some(status)
    }

    /// Waits for it to exit on its own, killing it after `limit` (see
    /// [`wait_exit`]); once it has exited, waits for the reader of its
    /// stderr to reach the end of the pipe, so [`log`](Self::log) holds its
    /// last lines too (the exit can be seen before the reader has read them).
    pub fn exit_within(&mut self, limit: Duration) -> (ExitStatus, bool) {
        let exited = wait_exit(&mut self.child, limit);
        if let Log::Collected(_, reader) = &self.log
            && let Some(reader) = lock(reader).take()
        {
            // The pipe ends with the process (rolecall starts no children
            // that could inherit it); bounded all the same.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        exited
    }
}

impl Drop for ChildSidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
