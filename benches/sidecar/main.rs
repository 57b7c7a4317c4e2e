//! `make bench`: the real rolecall binary, measured where users feel it.
//!
//! Starts the binary named by `ROLECALL_BIN` (the static release build, see
//! `scripts/bench.sh`) as a child process against the in-process fake STS of
//! the integration tests (exact call counts) and, for start-up time, against
//! moto's STS (`$ROLECALL_VENV/bin/moto_server`). It reads the child's
//! `/proc` files, prints a markdown table (row, figure, target, met?, the
//! command that reproduces the row) and writes it to
//! `target/bench/results.md`. `docs/BENCHMARKS.md` explains every row.
//!
//! One module a concern: [`report`] (the table), [`env`] (machine and
//! binary), [`procfs`] (memory and CPU from `/proc`), [`helpers`], [`child`]
//! (the sidecar and moto as child processes) and one module a group of rows
//! under `rows/`; the boto3 refresher of the `compare` row is
//! `boto3_refresher.py`.
//!
//! ```text
//! ROLECALL_BIN=target/x86_64-unknown-linux-gnu/release/rolecall ROLECALL_VENV=.venv \
//!     cargo bench --bench sidecar -- [ROW...]
//! ```
//!
//! Rows: `rss size startup rotation idle idle-layouts sts-calls burst
//! compare writes` (all by default). `ROLECALL_BENCH_IDLE_SECS` (default 60) and
//! `ROLECALL_BENCH_STS_SECS` (default 60) shorten the two long windows;
//! `ROLECALL_BENCH_LAYOUT_SECS` (default 20) is the window per token layout.
//!
//! Every wait is on a condition with a deadline; the only fixed sleeps are
//! the measurement windows themselves (2 s of quiet before reading memory,
//! the idle and schedule windows).

#[path = "../../tests/support/mod.rs"]
mod support;

mod child;
mod env;
mod helpers;
mod procfs;
mod report;
mod rows;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use env::*;
use report::*;
use rows::*;

pub(crate) const ACCOUNT: &str = "111122223333";
pub(crate) const REGION: &str = "eu-west-1";
pub(crate) const SIGKILL: i32 = 9;
pub(crate) const SIGUSR1: i32 = 10;
pub(crate) const SIGTERM: i32 = 15;

pub(crate) const ROWS: &[&str] = &[
    "rss",
    "size",
    "startup",
    "rotation",
    "idle",
    "idle-layouts",
    "sts-calls",
    "burst",
    "compare",
    "writes",
];

unsafe extern "C" {
    pub(crate) fn kill(pid: i32, sig: i32) -> i32;
}

pub(crate) fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

fn main() {
    // cargo passes `--bench`; anything else starting with '-' is ignored too.
    let mut selected: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .flat_map(|a| {
            a.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    if let Some(bad) = selected.iter().find(|s| !ROWS.contains(&s.as_str())) {
        eprintln!("unknown row {bad:?}; rows: {}", ROWS.join(" "));
        std::process::exit(2);
    }
    if selected.is_empty() {
        selected = ROWS.iter().map(|s| (*s).to_owned()).collect();
    }
    let want: HashSet<&str> = selected.iter().map(String::as_str).collect();

    let (bin, static_build) = match std::env::var_os("ROLECALL_BIN") {
        Some(b) => (PathBuf::from(b), true),
        None => (PathBuf::from(env!("CARGO_BIN_EXE_rolecall")), false),
    };
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    let venv = std::env::var_os("ROLECALL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".venv"));
    let env = Env {
        bin,
        venv,
        static_build,
    };
    if !env.static_build {
        eprintln!(
            "warning: ROLECALL_BIN is not set; measuring {} (not the static build: use make bench)",
            env.bin.display()
        );
    }

    let started = Instant::now();
    let mut r = Report::default();
    for row in ROWS.iter().filter(|r| want.contains(**r)) {
        eprintln!(">> {row}");
        let t = Instant::now();
        match *row {
            "rss" => {
                row_rss(&env, &mut r);
            }
            "size" => row_size(&env, &mut r),
            "startup" => row_startup(&env, &mut r),
            "rotation" => row_rotation(&env, &mut r),
            "idle" => row_idle(&env, &mut r),
            "idle-layouts" => row_idle_layouts(&env, &mut r),
            "sts-calls" => row_sts_calls(&env, &mut r),
            "burst" => row_burst(&env, &mut r),
            "compare" => row_compare(&env, &mut r),
            "writes" => row_writes(&env, &mut r),
            _ => unreachable!(),
        }
        eprintln!("   ({:.1} s)", t.elapsed().as_secs_f64());
    }

    let rows_arg = selected.join(" ");
    let mut md = String::new();
    let _ = writeln!(md, "## rolecall benchmark results\n");
    let _ = writeln!(
        md,
        "Machine: {} cores, {}, Linux {}. Binary: `{}` ({}). Rows: {}. Run time {:.0} s.\n",
        cores(),
        cpu_model(),
        kernel(),
        env.bin.display(),
        if env.static_build {
            "ROLECALL_BIN"
        } else {
            "not the static build"
        },
        rows_arg,
        started.elapsed().as_secs_f64()
    );
    md.push_str("| row | figure | target | met? | reproduce |\n|---|---|---|---|---|\n");
    for l in &r.lines {
        let _ = writeln!(
            md,
            "| {}: {} | {} | {} | {} | `make bench ROWS={}` |",
            l.row,
            l.what,
            l.figure,
            l.target,
            met_text(l.met),
            l.row
        );
    }
    let _ = writeln!(
        md,
        "\n`make bench ROWS=ROW` builds the static binary and the venv, then runs\n\
         `ROLECALL_BIN=target/x86_64-unknown-linux-gnu/release/rolecall ROLECALL_VENV=.venv \
         cargo bench --bench sidecar -- ROW`\n\
         (`ROLECALL_BENCH_IDLE_SECS` / `ROLECALL_BENCH_STS_SECS` shorten the 60 s windows).\n"
    );
    for d in &r.details {
        md.push_str(d);
        md.push('\n');
    }
    println!("{md}");
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join("results.md");
    std::fs::write(&path, &md).expect("write results.md");
    eprintln!("wrote {}", path.display());
    if r.lines.iter().any(|l| l.met == Some(false)) {
        eprintln!("some targets were missed (see the met? column)");
    }
}
