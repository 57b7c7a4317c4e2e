//! rolecall's output directory as readers see it: its temporary files, and
//! the tally of readers racing the writer ([`ReadFaults`]).

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::lock;

/// What marks rolecall's temporary files (`.NAME.rolecall-tmp-PID-N`).
pub const TMP_MARKER: &str = ".rolecall-tmp-";

/// Names of rolecall's temporary files in `dir` (none if `dir` does not
/// exist yet).
pub fn temporaries(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(TMP_MARKER))
                .collect()
        })
        .unwrap_or_default()
}

/// What a reader racing rolecall's writer found: whole reads, torn files,
/// mixed sets (a key with another set's secret or token), valid sessions
/// lost; and the first ten faults, described.
#[derive(Debug, Default)]
pub struct ReadFaults {
    pub reads: AtomicU64,
    pub torn: AtomicU64,
    pub mixed: AtomicU64,
    pub lost: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl ReadFaults {
    /// One whole read.
    pub fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn torn(&self, what: String) {
        self.note(&self.torn, what);
    }

    pub fn mixed(&self, what: String) {
        self.note(&self.mixed, what);
    }

    pub fn lost(&self, what: String) {
        self.note(&self.lost, what);
    }

    /// The first ten faults found.
    pub fn samples(&self) -> Vec<String> {
        lock(&self.samples).clone()
    }

    fn note(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut samples = lock(&self.samples);
        if samples.len() < 10 {
            samples.push(what);
        }
    }
}
