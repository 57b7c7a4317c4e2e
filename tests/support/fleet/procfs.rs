//! CPU and memory of processes and threads, from `/proc` (Linux only).

use std::path::Path;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime in ticks from the text of a `/proc/.../stat` file (fields
/// 14 and 15, counted after the parenthesised command name, which may
/// itself hold spaces or parentheses).
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds (user + system) used so far by process `pid`.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat_cpu_ticks(&stat)? as f64 / clk_tck())
}

/// `(Pss, Rss)` in KiB from the text of `/proc/PID/smaps_rollup`.
pub fn rollup_kib(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Pss:"), field("Rss:"))
}

/// `(Pss, Rss)` in KiB of process `pid`, if it is still there.
pub fn process_mem_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(rollup_kib(&text))
}

/// CPU seconds used so far by the threads of this process whose name
/// starts with `prefix` (the fake STS's threads are `fake-sts-*`).
pub fn own_threads_cpu_s(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0;
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            ticks += std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|s| stat_cpu_ticks(&s))
                .unwrap_or(0);
        }
    }
    ticks as f64 / clk_tck()
}

/// The machine: `nproc`, total memory in MiB, the binary's size in bytes.
pub fn machine(bin: &Path) -> (usize, u64, u64) {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024;
    let size = std::fs::metadata(bin).map_or(0, |m| m.len());
    (nproc, mem_mib, size)
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (a fleet
/// keeps a connection per sidecar open in the fake STS); the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}
