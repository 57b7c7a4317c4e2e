//! Reliability tables: one line per case in `target/reliability/FILE`, kept
//! across runs, so that a filtered run updates its cases and erases no other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{format_utc, lock};

/// `target/reliability`, created if missing.
pub fn reliability_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    std::fs::create_dir_all(&dir).expect("create target/reliability");
    dir
}

/// One table: a tab-separated file whose first column names the case and
/// whose last says when the line was measured.
pub struct Table {
    file: &'static str,
    header: &'static str,
    lines: Mutex<Option<BTreeMap<String, String>>>,
}

impl Table {
    /// A table in `target/reliability/file` with this header line (without
    /// its final `measured` column).
    pub const fn new(file: &'static str, header: &'static str) -> Table {
        Table {
            file,
            header,
            lines: Mutex::new(None),
        }
    }

    /// Sets the line of `case` (`line` starts with the case's name), with
    /// the time of measurement appended.
    pub fn record(&self, case: &str, line: &str) {
        let path = reliability_dir().join(self.file);
        let mut guard = lock(&self.lines);
        let lines = guard.get_or_insert_with(|| {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| Some((l.split('\t').next()?.to_owned(), l.to_owned())))
                .collect()
        });
        lines.insert(
            case.to_owned(),
            format!("{line}\t{}", format_utc(SystemTime::now())),
        );
        let mut text = format!("{}\tmeasured\n", self.header);
        for line in lines.values() {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// `s` on one line: newlines, tabs and other control characters escaped.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' => "\\n".to_owned(),
            '\r' => "\\r".to_owned(),
            '\t' => "\\t".to_owned(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Records a case's FAILED line if its test panics before it records.
pub struct ReportGuard {
    table: &'static Table,
    case: String,
    failed: String,
}

impl ReportGuard {
    /// `failed` is the whole line recorded on a panic.
    pub fn new(table: &'static Table, case: &str, failed: String) -> ReportGuard {
        ReportGuard {
            table,
            case: case.to_owned(),
            failed,
        }
    }

    /// Records `line` for the case (the test passed).
    pub fn pass(self, line: &str) {
        self.table.record(&self.case, line);
        std::mem::forget(self);
    }
}

impl Drop for ReportGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.table.record(&self.case, &self.failed);
        }
    }
}
