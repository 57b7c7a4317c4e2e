//! Memory and CPU of a process (and its children) from `/proc`.

use std::collections::HashMap;

/// The memory lines of /proc/PID/status, in kB.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mem {
    pub(crate) rss: u64,
    pub(crate) hwm: u64,
    pub(crate) anon: u64,
    pub(crate) file: u64,
    pub(crate) shmem: u64,
    pub(crate) threads: u64,
}

pub(crate) fn proc_mem(pid: u32) -> Mem {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let mut m = Mem::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let n: u64 = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match key {
            "VmRSS" => m.rss = n,
            "VmHWM" => m.hwm = n,
            "RssAnon" => m.anon = n,
            "RssFile" => m.file = n,
            "RssShmem" => m.shmem = n,
            "Threads" => m.threads = n,
            _ => {}
        }
    }
    m
}

/// Fields of /proc/PID/stat after the command name (field 3 is index 0).
pub(crate) fn proc_stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

pub(crate) fn clock_ticks_ms() -> u64 {
    // USER_HZ is 100 on every Linux architecture that matters here.
    10
}

/// utime + stime of the process (all threads, living and dead) in ms, at
/// clock-tick (10 ms) resolution.
pub(crate) fn proc_cpu_ticks_ms(pid: u32) -> u64 {
    let f = proc_stat_fields(pid).unwrap_or_default();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * clock_ticks_ms()
}

/// utime + stime + cutime + cstime (itself and every child it waited for), ms.
pub(crate) fn proc_cpu_with_children_ms(pid: u32) -> u64 {
    let f = proc_stat_fields(pid).unwrap_or_default();
    f.iter().skip(11).take(4).sum::<u64>() * clock_ticks_ms()
}

pub(crate) fn ppid(pid: u32) -> Option<u32> {
    proc_stat_fields(pid)?.get(1).map(|&p| p as u32)
}

/// `pid` and all its descendants, from a scan of /proc.
pub(crate) fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(parent) = ppid(pid) {
                children.entry(parent).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// Resident kB of one process from /proc/PID/statm (0 once it is gone).
pub(crate) fn statm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// Precise CPU time of a process: the sum of /proc/PID/task/*/schedstat
/// (nanoseconds on CPU per thread). Threads that exit between two samples
/// keep the value of their last sample, so sample often enough (once a
/// second is plenty: tokio's blocking threads idle 10 s before exiting).
pub(crate) struct CpuMeter {
    pub(crate) pid: u32,
    pub(crate) last: HashMap<u32, (u64, u64)>,
    pub(crate) dead: (u64, u64),
}

impl CpuMeter {
    pub(crate) fn new(pid: u32) -> CpuMeter {
        let mut m = CpuMeter {
            pid,
            last: HashMap::new(),
            dead: (0, 0),
        };
        m.sample();
        m
    }

    /// (ns on CPU, times scheduled in) since the first sample, all threads.
    pub(crate) fn sample(&mut self) -> (u64, u64) {
        let mut now = HashMap::new();
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) {
            for entry in dir.flatten() {
                let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
                    continue;
                };
                let f: Vec<u64> = text
                    .split_whitespace()
                    .map(|v| v.parse().unwrap_or(0))
                    .collect();
                if f.len() >= 3 {
                    now.insert(tid, (f[0], f[2]));
                }
            }
        }
        for (tid, v) in &self.last {
            if !now.contains_key(tid) {
                self.dead.0 += v.0;
                self.dead.1 += v.1;
            }
        }
        self.last = now;
        let live = self
            .last
            .values()
            .fold((0, 0), |acc, v| (acc.0 + v.0, acc.1 + v.1));
        (self.dead.0 + live.0, self.dead.1 + live.1)
    }
}
