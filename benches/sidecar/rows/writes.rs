//! Row `writes`: how many times one refresh round of 10 profiles replaces
//! `credentials` and `status.json`.
//!
//! rolecall replaces a file by renaming a temporary over it, so every
//! replacement is one `IN_MOVED_TO` (or, for a file that did not exist yet,
//! `IN_CREATE`) on the output directory, which a notify watcher counts. A
//! round is one SIGUSR1 (the one at start is shown apart): it ends when
//! every profile holds new keys and the directory has been quiet for
//! [`QUIET`]. How many writes a round costs depends on how the answers of
//! STS spread out: the writer renders what is pending each time it wakes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::SIGUSR1;
use crate::child::*;
use crate::env::*;
use crate::helpers::*;
use crate::report::*;
use crate::support::FakeSts;
use crate::support::TokenDir;

/// The files counted.
const FILES: [&str; 2] = ["credentials", "status.json"];
/// Profiles refreshed together in every round.
const N: usize = 10;
/// SIGUSR1 rounds after the one at start.
const ROUNDS: usize = 5;
/// No event for this long ends a round (the measurement window).
const QUIET: Duration = Duration::from_millis(1500);

/// Counts the replacements of [`FILES`] in one directory.
struct Replacements {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<(Instant, PathBuf)>,
}

impl Replacements {
    fn watch(dir: &Path) -> Replacements {
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            let replaced = matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To))
            );
            if replaced && let Some(path) = event.paths.first() {
                let _ = tx.send((Instant::now(), path.clone()));
            }
        })
        .expect("start a notify watcher");
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .expect("watch the output directory");
        Replacements {
            _watcher: watcher,
            events,
        }
    }

    /// Replacements per file until nothing has happened for [`QUIET`].
    fn until_quiet(&self) -> BTreeMap<&'static str, usize> {
        let mut counts: BTreeMap<&'static str, usize> = FILES.iter().map(|f| (*f, 0)).collect();
        while let Ok((_, path)) = self.events.recv_timeout(QUIET) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(count) = counts.get_mut(name) {
                *count += 1;
            }
        }
        counts
    }
}

pub(crate) fn row_writes(env: &Env, r: &mut Report) {
    let sts = FakeSts::start();
    let token = TokenDir::new(&token_n(0));
    let out = output_dir();
    let watch = Replacements::watch(out.path());
    let mut sc = Sidecar::start_in(env, &sts.endpoint(), N, &token.path(), out);
    sc.wait_written(N, Duration::from_millis(5), Duration::from_secs(30));
    let start = watch.until_quiet();
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let before = sc.keys();
        sc.signal(SIGUSR1);
        // SIGUSR1 refreshes a profile at most every 5 s: allow for that.
        sc.wait_all_changed(&before, Duration::from_millis(5), Duration::from_secs(30));
        rounds.push(watch.until_quiet());
    }
    let per_round = |file: &str| -> String {
        let counts: Vec<usize> = rounds.iter().map(|c| c[file]).collect();
        let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
        format!("{file} {mean:.1} {counts:?}")
    };
    // Batched: every round writes each file once (a round whose answers
    // straddle the debounce may take two).
    let mean =
        |file: &str| rounds.iter().map(|c| c[file]).sum::<usize>() as f64 / rounds.len() as f64;
    let batched = FILES.iter().all(|f| mean(f) <= 1.5);
    r.line(
        "writes",
        format!("files replaced per refresh round of {N} profiles (SIGUSR1, {ROUNDS} rounds)"),
        format!(
            "{}, {} per round (the first round at start: {} and {})",
            per_round(FILES[0]),
            per_round(FILES[1]),
            start[FILES[0]],
            start[FILES[1]],
        ),
        "≤ 1.5 each (one write per round; 3–4 before batching)",
        Some(batched),
    );
}
