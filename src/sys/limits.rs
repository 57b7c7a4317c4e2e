//! The per-process open-file limit (`RLIMIT_NOFILE`) and the node limits a
//! socket call can meet: what they are, whether an error is one of them, and
//! the sentence that tells the operator which setting raises it.
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
//! most [`crate::http::MAX_CONNECTIONS`] each, the oldest closed beyond);
//! the control socket and its connections; one STS connection per call in
//! flight, kept alive in the SDK's pool for 90 s after it; the token, the
//! configuration file and the CA bundle while they are read; an output file
//! and its directory while one is written; the system's CA certificates,
//! once, when the first STS client is built.

use std::io;

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
/// credentials endpoint: at most [`crate::http::MAX_CONNECTIONS`] each) and
/// profiles (an STS connection each, at worst, while they refresh together):
/// the binary itself, its runtime, the watcher, the control socket's
/// connections and the files being read or written take about 40.
pub fn open_files_needed(listeners: usize, profiles: usize) -> u64 {
    (40 + listeners * crate::http::MAX_CONNECTIONS + profiles) as u64
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
        }
    }

    /// The code a refresh that failed at this limit reports.
    pub fn code(self) -> &'static str {
        use crate::sts::codes;
        match self {
            Limit::ProcessOpenFiles => codes::TOO_MANY_OPEN_FILES,
            Limit::NodeOpenFiles => codes::FILE_TABLE_FULL,
            Limit::LocalPorts => codes::LOCAL_PORTS_EXHAUSTED,
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
        assert_eq!(open_files_needed(0, 0), 40);
        assert_eq!(open_files_needed(2, 3), 40 + 128 + 3);
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
