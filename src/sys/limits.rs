//! The per-process open-file limit (`RLIMIT_NOFILE`), the node limits a
//! socket call can meet, and the limit on threads: what they are, whether an
//! error is one of them, and the sentence that tells the operator which
//! setting raises it.
//!
//! At start rolecall raises its soft open-file limit to the hard one, as Go's
//! runtime does since 1.19 and as systemd's documentation asks of programs
//! that need more than 1,024 descriptors (systemd keeps the soft limit at
//! 1,024 only for programs still using `select(2)`; rolecall does not). An
//! operation that still meets the limit fails as a transient error, says so
//! naming the setting, and counts in `rolecall_limit_reached_total`.
//!
//! Where rolecall opens descriptors: the standard streams; the runtime's
//! epoll and wake-up descriptors and the signal pipe; one inotify instance;
//! the health and endpoint listeners and each connection they accept (at
//! most the listener's cap each, the oldest closed beyond);
//! the control socket and its connections; one STS connection per call in
//! flight, kept alive in the SDK's pool for 90 s after it; the token, the
//! configuration file and the CA bundle while they are read; an output file
//! and its directory while one is written; the system's CA certificates,
//! once, when the first STS client is built.
//!
//! Threads. rolecall runs on one thread (tokio's current-thread runtime);
//! after start, a thread is started only for what cannot run there without
//! stopping everything else: a configuration reload's read and parse, and a
//! host-name lookup (`getaddrinfo` blocks). Both start their thread with
//! [`run_on_thread`], never on tokio's blocking pool, which panics when the
//! system refuses a thread (and the release build aborts on a panic). At the
//! pod's pids limit, `RLIMIT_NPROC` (`ulimit -u`, counted over every process
//! and thread of the uid) or `kernel.threads-max`, `pthread_create` fails
//! with `EAGAIN`: the work resolves to [`ThreadError::Unavailable`], and the
//! reload or the STS attempt fails as [`Limit::Threads`], transient,
//! counted and logged with the hint; nothing else stops. The file
//! watcher's one thread is started by notify, which ignores a failure to:
//! `watch::hub` detects it and the files are polled instead.

use std::io;

use crate::codes::Code;

/// A process's open-file limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: u64,
    pub hard: u64,
}

/// This process's open-file limits.
pub fn open_files() -> io::Result<OpenFiles> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit` into `r`, which lives for
    // the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OpenFiles {
        soft: r.rlim_cur,
        hard: r.rlim_max,
    })
}

fn set_open_files(l: OpenFiles) -> io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: l.soft,
        rlim_max: l.hard,
    };
    // SAFETY: setrlimit(2) only reads `r`, which lives for the whole call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one. Returns the limits
/// before and after (equal when there was nothing to raise or the kernel
/// refused).
pub fn raise_open_files() -> io::Result<(OpenFiles, OpenFiles)> {
    let before = open_files()?;
    if before.soft >= before.hard {
        return Ok((before, before));
    }
    let wanted = OpenFiles {
        soft: before.hard,
        hard: before.hard,
    };
    set_open_files(wanted)?;
    Ok((before, open_files()?))
}

/// The fewest descriptors rolecall starts with. It holds about 20 at rest
/// (standard streams, the runtime, signals, the watcher, listeners, the
/// control socket, a pooled STS connection); below this, the runtime or a
/// library could fail (tokio panics when it cannot create its signal
/// pipe), so rolecall refuses to start with a clear error instead.
pub const MIN_OPEN_FILES: u64 = 32;

/// Descriptors rolecall may hold at once with this many listeners (health,
/// credentials endpoint), each holding at most `connections_each` open
/// connections (the HTTP server's cap), and profiles (an STS connection
/// each, at worst, while they refresh together): the binary itself, its
/// runtime, the watcher, the control socket's connections and the files
/// being read or written take about 40.
pub fn open_files_needed(listeners: usize, connections_each: usize, profiles: usize) -> u64 {
    (40 + listeners * connections_each + profiles) as u64
}

/// Which limit an I/O error means, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `EMFILE`: this process's `RLIMIT_NOFILE`.
    ProcessOpenFiles,
    /// `ENFILE`: the node's `fs.file-max`.
    NodeOpenFiles,
    /// `EADDRNOTAVAIL` on connect: no free port in the node's (or the pod
    /// network namespace's) `net.ipv4.ip_local_port_range`.
    LocalPorts,
    /// A thread could not be started ([`ThreadError::Unavailable`]): the
    /// pod's pids limit, `RLIMIT_NPROC` or `kernel.threads-max`.
    Threads,
}

/// Work that [`run_on_thread`] could not carry out.
#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    /// No thread could be started: `pthread_create` failed, with `EAGAIN`
    /// at the pod's pids limit (the cgroup's `pids.max`), the uid's
    /// `RLIMIT_NPROC` or the node's `kernel.threads-max`.
    #[error("cannot start a thread for {what}: {error}")]
    Unavailable {
        /// What the thread was for (`the configuration reload`, `a
        /// host-name lookup`).
        what: &'static str,
        /// `pthread_create`'s error (shown in the message, so not a
        /// `source`: chains printed whole would say it twice).
        error: io::Error,
    },
    /// The thread ended without a result (it panicked; a release build
    /// aborts instead).
    #[error("the thread for {what} stopped without a result")]
    Stopped { what: &'static str },
}

/// Runs `f` on a new thread named `name` (for `what`, in errors) and
/// resolves to its result. Unlike tokio's blocking pool, which panics when
/// the system refuses a thread (and the release build aborts on a panic), a
/// refused thread resolves to [`ThreadError::Unavailable`], at once, for
/// the caller to report (see the module docs).
pub fn run_on_thread<T, F>(name: &str, what: &'static str, f: F) -> OnThread<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    // std's default stack (2 MiB, as tokio's blocking pool): the reload's
    // YAML parser recurses with the nesting it is given.
    let started = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        });
    OnThread {
        what,
        state: match started {
            Ok(_detached) => Some(Ok(rx)),
            Err(source) => Some(Err(source)),
        },
    }
}

/// The result of [`run_on_thread`], as a future.
#[derive(Debug)]
pub struct OnThread<T> {
    what: &'static str,
    /// The thread's answer to come, or why none will (taken when read).
    state: Option<Result<tokio::sync::oneshot::Receiver<T>, io::Error>>,
}

impl<T> std::future::Future for OnThread<T> {
    type Output = Result<T, ThreadError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let what = self.what;
        match self.state.as_mut() {
            Some(Ok(rx)) => match std::pin::Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => {
                    self.state = None;
                    Poll::Ready(r.map_err(|_| ThreadError::Stopped { what }))
                }
            },
            Some(Err(_)) => {
                let Some(Err(error)) = self.state.take() else {
                    unreachable!("matched above")
                };
                Poll::Ready(Err(ThreadError::Unavailable { what, error }))
            }
            None => Poll::Ready(Err(ThreadError::Stopped { what })),
        }
    }
}

impl Limit {
    /// The limit an error of this raw OS code means.
    pub fn of_errno(errno: i32) -> Option<Limit> {
        match errno {
            libc::EMFILE => Some(Limit::ProcessOpenFiles),
            libc::ENFILE => Some(Limit::NodeOpenFiles),
            libc::EADDRNOTAVAIL => Some(Limit::LocalPorts),
            _ => None,
        }
    }

    /// The limit `e` means, if any.
    pub fn of(e: &io::Error) -> Option<Limit> {
        e.raw_os_error().and_then(Limit::of_errno)
    }

    /// The `limit` label of `rolecall_limit_reached_total`.
    pub fn label(self) -> &'static str {
        match self {
            Limit::ProcessOpenFiles | Limit::NodeOpenFiles => "open_files",
            Limit::LocalPorts => "local_ports",
            Limit::Threads => "threads",
        }
    }

    /// The code a refresh that failed at this limit reports.
    pub fn code(self) -> Code {
        match self {
            Limit::ProcessOpenFiles => Code::TooManyOpenFiles,
            Limit::NodeOpenFiles => Code::FileTableFull,
            Limit::LocalPorts => Code::LocalPortsExhausted,
            Limit::Threads => Code::ThreadLimitReached,
        }
    }

    /// What happened, in a few words, with the limit's current value.
    pub fn summary(self) -> String {
        match self {
            Limit::ProcessOpenFiles => format!(
                "the process's open-file limit is reached (RLIMIT_NOFILE, `ulimit -n`: {})",
                current_open_files()
            ),
            Limit::NodeOpenFiles => format!(
                "the node's open-file table is full (fs.file-max: {})",
                proc_value("/proc/sys/fs/file-max")
            ),
            Limit::LocalPorts => format!(
                "no free local port (EADDRNOTAVAIL; net.ipv4.ip_local_port_range: {})",
                proc_value("/proc/sys/net/ipv4/ip_local_port_range")
            ),
            Limit::Threads => format!("no thread could be started ({})", thread_limits()),
        }
    }

    /// What happened and what the operator must raise, with the current
    /// value when it can be read.
    pub fn hint(self) -> String {
        match self {
            Limit::ProcessOpenFiles => {
                let now = current_open_files();
                format!(
                    "the process's open-file limit is reached (RLIMIT_NOFILE, `ulimit -n`: {now}); raise the container runtime's nofile ulimit (containerd/CRI-O: LimitNOFILE= in its systemd unit; Docker: --ulimit nofile=)"
                )
            }
            Limit::NodeOpenFiles => {
                let max = proc_value("/proc/sys/fs/file-max");
                format!(
                    "the node's open-file table is full (fs.file-max: {max}); raise it with sysctl -w fs.file-max=N or find what holds the files"
                )
            }
            Limit::LocalPorts => {
                let range = proc_value("/proc/sys/net/ipv4/ip_local_port_range");
                format!(
                    "no free local port for a connection (EADDRNOTAVAIL): the network namespace's ephemeral ports are exhausted, often by connections in TIME_WAIT (net.ipv4.ip_local_port_range: {range}); widen the range or set net.ipv4.tcp_tw_reuse=1 (in the pod's securityContext.sysctls or on the node)"
                )
            }
            Limit::Threads => format!(
                "no thread could be started ({}): the pod is at its pids limit, or its user at RLIMIT_NPROC (which counts every process and thread of the uid); find what in the pod holds them (a process or thread leak), or raise the kubelet's podPidsLimit or the container runtime's pids limit; rolecall retries",
                thread_limits()
            ),
        }
    }
}

/// `SOFT (hard HARD)`, or `unknown`.
fn current_open_files() -> String {
    open_files().map_or_else(
        |_| "unknown".to_owned(),
        |l| format!("{} (hard {})", l.soft, l.hard),
    )
}

/// The limits a refused thread can have met, with their values where they
/// can be read: the cgroup's `pids.max` (and `pids.current`), the
/// `RLIMIT_NPROC` soft limit, `kernel.threads-max`.
fn thread_limits() -> String {
    let nproc = nproc_limit().map_or_else(
        |_| "unknown".to_owned(),
        |(soft, hard)| {
            let show = |v: libc::rlim_t| {
                if v == libc::RLIM_INFINITY {
                    "unlimited".to_owned()
                } else {
                    v.to_string()
                }
            };
            format!("{} (hard {})", show(soft), show(hard))
        },
    );
    // The cgroup's files exist only where the container sees its own
    // cgroup (cgroup v2, as in a pod).
    let pids = match (
        std::fs::read_to_string("/sys/fs/cgroup/pids.max"),
        std::fs::read_to_string("/sys/fs/cgroup/pids.current"),
    ) {
        (Ok(max), Ok(current)) => format!(
            "the cgroup's pids.max: {}, pids.current: {}, ",
            max.trim(),
            current.trim()
        ),
        _ => String::new(),
    };
    format!(
        "EAGAIN; {pids}RLIMIT_NPROC `ulimit -u`: {nproc}, kernel.threads-max: {}",
        proc_value("/proc/sys/kernel/threads-max")
    )
}

/// This process's `RLIMIT_NPROC`: soft, hard.
fn nproc_limit() -> io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit` into `r`, which lives for
    // the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// A sysctl's value from /proc, on one line (tabs become spaces), or
/// `unknown`. (A small procfs file: read directly.)
fn proc_value(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(
        |_| "unknown".to_owned(),
        |s| s.split_whitespace().collect::<Vec<_>>().join(" "),
    )
}

/// The limit behind an error anywhere in its chain, looking through the
/// payloads of `io::Error`s (which are not their `source()`).
pub fn limit_in_chain(err: &(dyn std::error::Error + 'static)) -> Option<Limit> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(ThreadError::Unavailable { .. }) = e.downcast_ref::<ThreadError>() {
            return Some(Limit::Threads);
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(l) = Limit::of(io) {
                return Some(l);
            }
            if let Some(inner) = io.get_ref() {
                cur = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        // Raising the test process's own soft limit harms no other test.
        let before = open_files().unwrap();
        assert!(before.soft <= before.hard);
        let (was, now) = raise_open_files().unwrap();
        assert_eq!(was, before);
        assert_eq!(now.soft, before.hard, "soft raised to the hard limit");
        assert_eq!(now.hard, before.hard, "the hard limit is left alone");
        assert_eq!(
            raise_open_files().unwrap(),
            (now, now),
            "nothing left to raise"
        );
    }

    #[test]
    fn the_descriptors_needed_grow_with_listeners_and_profiles() {
        assert_eq!(open_files_needed(0, 64, 0), 40);
        assert_eq!(open_files_needed(2, 64, 3), 40 + 128 + 3);
    }

    #[test]
    fn errors_at_a_limit_are_recognised_through_the_chain() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(Limit::of(&emfile), Some(Limit::ProcessOpenFiles));
        assert_eq!(
            Limit::of(&io::Error::from_raw_os_error(libc::ENFILE)),
            Some(Limit::NodeOpenFiles)
        );
        assert_eq!(Limit::of(&io::Error::other("reset")), None);
        // As hyper-util nests a connect error: a wrapper whose source is an
        // io::Error, itself inside an io::Error's payload.
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Connect(#[source] io::Error);
        let nested = io::Error::other(Connect(io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)));
        assert_eq!(limit_in_chain(&nested), Some(Limit::LocalPorts));
        assert_eq!(limit_in_chain(&io::Error::other("refused")), None);
        assert_eq!(Limit::LocalPorts.label(), "local_ports");
        assert_eq!(Limit::NodeOpenFiles.label(), "open_files");
    }

    #[tokio::test]
    async fn work_on_a_thread_returns_its_result_and_a_refused_thread_is_the_thread_limit() {
        let name = run_on_thread("rolecall-test", "a test", || {
            std::thread::current().name().map(str::to_owned)
        })
        .await
        .unwrap();
        assert_eq!(name.as_deref(), Some("rolecall-test"));
        // As the STS client nests a failed lookup: the resolver's error
        // inside an io::Error's payload.
        let refused = ThreadError::Unavailable {
            what: "a host-name lookup",
            error: io::Error::from_raw_os_error(libc::EAGAIN),
        };
        assert_eq!(
            refused.to_string(),
            "cannot start a thread for a host-name lookup: Resource temporarily unavailable (os error 11)"
        );
        let nested = io::Error::other(refused);
        assert_eq!(limit_in_chain(&nested), Some(Limit::Threads));
        // EAGAIN alone (a non-blocking read) is no limit.
        let eagain = io::Error::from_raw_os_error(libc::EAGAIN);
        assert_eq!(limit_in_chain(&eagain), None);
        assert_eq!(Limit::Threads.label(), "threads");
        assert_eq!(Limit::Threads.code().as_str(), "ThreadLimitReached");
        let h = Limit::Threads.hint();
        assert!(h.contains("RLIMIT_NPROC `ulimit -u`: "), "{h}");
        assert!(h.contains("kernel.threads-max: "), "{h}");
        assert!(
            h.contains("pids limit") && h.contains("podPidsLimit"),
            "{h}"
        );
    }

    #[test]
    fn each_hint_names_the_setting_and_its_value() {
        let h = Limit::ProcessOpenFiles.hint();
        let l = open_files().unwrap();
        assert!(h.contains("ulimit -n"), "{h}");
        assert!(h.contains("LimitNOFILE"), "{h}");
        assert!(h.contains(&format!("{} (hard {})", l.soft, l.hard)), "{h}");
        let h = Limit::LocalPorts.hint();
        assert!(h.contains("net.ipv4.ip_local_port_range: "), "{h}");
        assert!(h.contains("net.ipv4.tcp_tw_reuse"), "{h}");
        assert!(!h.contains("unknown"), "the range is read: {h}");
        assert!(Limit::NodeOpenFiles.hint().contains("fs.file-max"));
    }
}
