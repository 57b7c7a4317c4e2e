//! kill -9 torture: the real binary is killed at random moments, hundreds of
//! times, while it refreshes 20 profiles every ~1.4 s and is flooded with
//! SIGUSR1, and a reader parses every output file as fast as it can.
//!
//! What must hold: a reader never sees a partial file or a section whose
//! key, secret and token come from different STS answers; a profile never
//! disappears from `credentials` while the session last seen for it is
//! still valid; temporary files left by a killed process are removed by the
//! next start, and none remain after a clean start and stop.
//!
//! `ROLECALL_CRASH_KILLS` sets the number of kills (default 200). The figures
//! are printed and written to `target/reliability/crash.txt`.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use support::*;

const PROFILES: usize = 20;
const DEFAULT_KILLS: usize = 200;
/// The kill loop stops here even if fewer kills were done (slow machine).
const TIME_CAP: Duration = Duration::from_secs(75);
/// Below this many kills the run proves too little: fail.
const MIN_KILLS: usize = 50;
/// SIGUSR1 is signal 10: bit 9 of `SigCgt` in /proc/PID/status.
const SIGUSR1_BIT: u64 = 1 << 9;

fn role(i: usize) -> String {
    format!("arn:aws:iam::111122223333:role/p{i}")
}

fn profile_roles() -> BTreeMap<String, String> {
    (0..PROFILES).map(|i| (format!("p{i}"), role(i))).collect()
}

fn spawn(sts: &FakeSts, token: &TokenDir, out: &Path, log: &File) -> Child {
    rolecall_run(sts, token, out, profile_roles())
        .args(["--health-addr", ""])
        .stdout(Stdio::null())
        .stderr(log.try_clone().expect("clone log file"))
        .spawn()
        .expect("spawn rolecall")
}

/// Whether the process has installed its SIGUSR1 handler (before that, the
/// default action of SIGUSR1 is to terminate, which is not the fault under
/// test here).
fn catches_usr1(pid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| mask & SIGUSR1_BIT != 0)
}

fn send(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------
// The reader
// ---------------------------------------------------------------------------

/// Access key id -> (what STS issued, its position in the issue order).
struct IssuedIndex {
    sts: FakeSts,
    by_key: HashMap<String, (IssuedCredentials, usize)>,
}

impl IssuedIndex {
    fn new(sts: FakeSts) -> IssuedIndex {
        IssuedIndex {
            sts,
            by_key: HashMap::new(),
        }
    }

    /// A key in a file was issued before the file was written, so one
    /// reload on a miss is enough.
    fn get(&mut self, key: &str) -> Option<(IssuedCredentials, usize)> {
        if !self.by_key.contains_key(key) {
            for (i, c) in self.sts.issued().into_iter().enumerate() {
                self.by_key.entry(c.access_key_id.clone()).or_insert((c, i));
            }
        }
        self.by_key.get(key).cloned()
    }
}

enum Bad {
    /// Not a whole file as rolecall writes it.
    Torn(String),
    /// Whole, but a section's values are not one issued credential set of
    /// that section's role.
    Mixed(String),
}

/// Per profile: (access key id, expiry, issue position).
type Seen = BTreeMap<String, (String, SystemTime, usize)>;

fn check_credentials(
    text: &str,
    roles: &BTreeMap<String, String>,
    issued: &mut IssuedIndex,
) -> Result<Seen, Bad> {
    if !text.starts_with("# Written by rolecall") || !text.ends_with('\n') {
        return Err(Bad::Torn(format!(
            "does not start with the header or end with a newline ({} bytes)",
            text.len()
        )));
    }
    let sections = try_parse_written_ini(text).map_err(Bad::Torn)?;
    let mut seen = Seen::new();
    for (name, keys) in sections {
        let Some(arn) = roles.get(&name) else {
            return Err(Bad::Torn(format!("unknown section [{name}]")));
        };
        let get = |k: &str| keys.get(k).map(String::as_str);
        let (Some(id), Some(secret), Some(token), 3) = (
            get("aws_access_key_id"),
            get("aws_secret_access_key"),
            get("aws_session_token"),
            keys.len(),
        ) else {
            return Err(Bad::Torn(format!("[{name}] has keys {keys:?}")));
        };
        let Some((c, pos)) = issued.get(id) else {
            return Err(Bad::Mixed(format!("[{name}]: key {id} was never issued")));
        };
        if c.secret_access_key != secret || c.session_token != token || &c.role_arn != arn {
            return Err(Bad::Mixed(format!(
                "[{name}]: key {id} with a secret/token/role of another set"
            )));
        }
        seen.insert(name, (id.to_owned(), c.expiration, pos));
    }
    Ok(seen)
}

#[derive(Debug, Default)]
struct Stats {
    faults: ReadFaults,
    missing: AtomicU64,
    config_reads: AtomicU64,
    status_reads: AtomicU64,
    versions: AtomicU64,
}

fn read_opt(path: &Path) -> Result<Option<String>, String> {
    match fs::read(path) {
        Ok(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| format!("{}: not UTF-8", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads and checks the three outputs in a loop until `stop`.
fn reader(dir: PathBuf, sts: FakeSts, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let roles = profile_roles();
    let mut issued = IssuedIndex::new(sts);
    // The last credential seen per profile, to detect a valid one vanishing.
    let mut last: Seen = Seen::new();
    let mut last_text = String::new();
    let want_config: BTreeSet<String> = roles.keys().map(|n| format!("profile {n}")).collect();
    while !stop.load(Ordering::Relaxed) {
        // credentials
        match read_opt(&dir.join("credentials")) {
            Ok(None) => {
                stats.missing.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => stats.faults.torn(e),
            Ok(Some(text)) => {
                let now = SystemTime::now();
                stats.faults.read();
                match check_credentials(&text, &roles, &mut issued) {
                    Err(Bad::Torn(e)) => stats.faults.torn(format!("credentials torn: {e}")),
                    Err(Bad::Mixed(e)) => stats.faults.mixed(format!("credentials mixed: {e}")),
                    Ok(seen) => {
                        if text != last_text {
                            stats.versions.fetch_add(1, Ordering::Relaxed);
                            last_text = text;
                        }
                        for (name, (id, exp, _)) in &last {
                            if !seen.contains_key(name) && *exp > now {
                                stats.faults.lost(format!(
                                    "[{name}] ({id}, still valid) vanished from credentials"
                                ));
                            }
                        }
                        for (name, v) in seen {
                            // Keep the newest seen (a restarted process never
                            // publishes an older one, but be exact anyway).
                            let newer = last.get(&name).is_none_or(|old| v.2 >= old.2);
                            if newer {
                                last.insert(name, v);
                            }
                        }
                    }
                }
            }
        }
        // config
        match read_opt(&dir.join("config")) {
            Ok(None) => {}
            Err(e) => stats.faults.torn(e),
            Ok(Some(text)) => {
                stats.config_reads.fetch_add(1, Ordering::Relaxed);
                let ok = text.ends_with('\n')
                    && try_parse_written_ini(&text).is_ok_and(|s| {
                        s.len() == PROFILES
                            && s.iter().all(|(name, keys)| {
                                want_config.contains(name)
                                    && keys.len() == 1
                                    && keys.get("region").map(String::as_str) == Some("eu-west-1")
                            })
                    });
                if !ok {
                    stats.faults.torn(format!("config torn: {text:?}"));
                }
            }
        }
        // status.json
        match read_opt(&dir.join("status.json")) {
            Ok(None) => {}
            Err(e) => stats.faults.torn(e),
            Ok(Some(text)) => {
                stats.status_reads.fetch_add(1, Ordering::Relaxed);
                let ok = serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| {
                    v["profiles"]
                        .as_array()
                        .is_some_and(|p| p.len() == PROFILES)
                });
                if !ok {
                    stats.faults.torn(format!("status.json torn: {text:?}"));
                }
            }
        }
        std::thread::yield_now();
    }
}

/// Sum of `removed=N` over rolecall's "removed temporary files" log lines.
fn removed_per_log(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("removed temporary files"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("removed="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

#[tokio::test]
async fn kill_9_at_random_moments_loses_nothing_and_tears_nothing() {
    let kills_wanted: usize = std::env::var("ROLECALL_CRASH_KILLS")
        .ok()
        .map(|v| v.parse().expect("ROLECALL_CRASH_KILLS: a number"))
        .unwrap_or(DEFAULT_KILLS);
    let sts = FakeSts::start();
    sts.set_default(Reply::ok_for(Duration::from_secs(3)));
    let token = TokenDir::new(&valid_jwt());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let log_path = work.path().join("rolecall.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reader_thread = {
        let (dir, sts, stats, stop) = (out.clone(), sts.clone(), stats.clone(), stop.clone());
        std::thread::spawn(move || reader(dir, sts, stats, stop))
    };

    let started = Instant::now();
    let mut kills = 0usize;
    let mut usr1_sent = 0u64;
    let mut runs_that_wrote = 0u64;
    let mut left_by_kills = 0usize;
    let mut verified_cleaned = 0usize;
    let mut pending: BTreeSet<String> = BTreeSet::new();
    while kills < kills_wanted && started.elapsed() < TIME_CAP {
        let calls_before = sts.calls();
        let versions_before = stats.versions.load(Ordering::Relaxed);
        let mut child = spawn(&sts, &token, &out, &log);
        let pid = child.id();
        let kill_at = Instant::now() + Duration::from_millis(fastrand::u64(5..=300));
        // The fault schedule: SIGUSR1 bursts at random moments, then SIGKILL.
        loop {
            let left = kill_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_millis(fastrand::u64(5..40)))).await;
            if Instant::now() < kill_at && catches_usr1(pid) {
                for _ in 0..fastrand::usize(1..=3) {
                    if send(pid, "USR1") {
                        usr1_sent += 1;
                    }
                }
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        kills += 1;
        if stats.versions.load(Ordering::Relaxed) > versions_before {
            runs_that_wrote += 1;
        }
        let now_left = temporaries(&out);
        // This run got past its start-up clean-up if it called STS: the
        // temporaries an earlier kill left must be gone (names hold the pid,
        // so this run cannot have re-created them).
        if sts.calls() > calls_before {
            let survived: Vec<_> = pending.intersection(&now_left).cloned().collect();
            assert!(
                survived.is_empty(),
                "kill {kills}: a restart left stale temporaries in place: {survived:?}"
            );
            verified_cleaned += pending.len();
            pending.clear();
        }
        let new: Vec<String> = now_left.difference(&pending).cloned().collect();
        left_by_kills += new.len();
        pending.extend(new);
    }
    let kill_seconds = started.elapsed().as_secs_f64();

    // A clean start: it must publish fresh sessions for every profile and
    // remove whatever the kills left; a clean stop must leave no temporary.
    let issued_before = sts.issued().len();
    let mut child = spawn(&sts, &token, &out, &log);
    let creds = out.join("credentials");
    let mut index = IssuedIndex::new(sts.clone());
    let roles = profile_roles();
    let fresh = wait_until(Duration::from_secs(20), || {
        fs::read_to_string(&creds).is_ok_and(|t| {
            check_credentials(&t, &roles, &mut index).is_ok_and(|seen| {
                seen.len() == PROFILES && seen.values().all(|(_, _, pos)| *pos >= issued_before)
            })
        })
    })
    .await;
    assert!(
        fresh,
        "the final clean start did not publish fresh sessions for all {PROFILES} profiles"
    );
    let stale: Vec<_> = temporaries(&out)
        .into_iter()
        .filter(|n| !n.contains(&format!("{TMP_MARKER}{}-", child.id())))
        .collect();
    assert!(
        stale.is_empty(),
        "stale temporaries after a clean start: {stale:?}"
    );
    verified_cleaned += pending.len();
    assert!(send(child.id(), "TERM"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "rolecall did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(status.success(), "clean stop: {status:?}");
    let left = temporaries(&out);
    assert!(left.is_empty(), "temporaries after a clean stop: {left:?}");

    stop.store(true, Ordering::Relaxed);
    reader_thread.join().expect("reader thread");
    let log_text = fs::read_to_string(&log_path).unwrap_or_default();
    let removed_logged = removed_per_log(&log_text);

    let reads = stats.faults.reads.load(Ordering::Relaxed);
    let torn = stats.faults.torn.load(Ordering::Relaxed);
    let mixed = stats.faults.mixed.load(Ordering::Relaxed);
    let lost = stats.faults.lost.load(Ordering::Relaxed);
    let summary = format!(
        "crash: {kills} kills, {reads} reads, {torn} torn, {mixed} mixed, {left_by_kills} stale temporaries cleaned\n\
         crash: details: {PROFILES} profiles, 3 s sessions, {usr1} SIGUSR1 sent, {calls} STS calls, \
         {versions} distinct credentials files seen, {runs_that_wrote} of {kills} runs seen publishing before being killed, \
         {missing} reads before the first write, {config} config reads, {status} status.json reads, \
         {lost} valid sessions vanished, {verified_cleaned} temporaries verified removed by the next start \
         ({removed_logged} per rolecall's log), kill loop {kill_seconds:.1} s{cap}\n",
        usr1 = usr1_sent,
        calls = sts.calls(),
        versions = stats.versions.load(Ordering::Relaxed),
        missing = stats.missing.load(Ordering::Relaxed),
        config = stats.config_reads.load(Ordering::Relaxed),
        status = stats.status_reads.load(Ordering::Relaxed),
        cap = if kills < kills_wanted {
            format!(" (time cap hit: {kills} of {kills_wanted} kills)")
        } else {
            String::new()
        },
    );
    eprint!("{summary}");
    fs::write(reliability_dir().join("crash.txt"), &summary).expect("write crash.txt");

    let samples = stats.faults.samples();
    assert_eq!(
        torn + mixed + lost,
        0,
        "faults seen by the reader:\n{}",
        samples.join("\n")
    );
    assert!(
        kills >= MIN_KILLS.min(kills_wanted),
        "only {kills} kills in {TIME_CAP:?}"
    );
    assert!(reads > 0, "the reader never saw a credentials file");
    assert!(
        runs_that_wrote > 0,
        "no killed run ever published: the kills did not hit the write path"
    );
}

/// The reader's checks are not vacuous: a file cut short, a section whose
/// token belongs to another set, and a section of another role are caught.
#[test]
fn the_reader_catches_torn_and_mixed_files() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let log = File::create(out.path().join("log")).unwrap();
    let mut child = spawn(&sts, &token, &out.path().join("o"), &log);
    let creds = out.path().join("o/credentials");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read_to_string(&creds)
        .is_ok_and(|t| t.matches("aws_session_token").count() == PROFILES)
    {
        assert!(Instant::now() < deadline, "rolecall never wrote");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = fs::read_to_string(&creds).unwrap();
    let roles = profile_roles();
    let mut index = IssuedIndex::new(sts.clone());
    assert!(check_credentials(&text, &roles, &mut index).is_ok());
    // Cut anywhere: torn (or, cut inside a value, mixed).
    for cut in [
        text.len() - 1,
        text.len() / 2,
        text.find("aws_session_token").unwrap() + 30,
    ] {
        assert!(
            check_credentials(&text[..cut], &roles, &mut index).is_err(),
            "cut at {cut}"
        );
    }
    // Cut exactly at a line end: the missing keys or the missing newline.
    let line_end = text[..text.len() - 2].rfind('\n').unwrap() + 1;
    assert!(check_credentials(&text[..line_end], &roles, &mut index).is_err());
    // p0's token inside p1's section: mixed.
    let issued = sts.issued();
    let (a, b) = (
        issued.iter().rev().find(|c| c.role_arn == role(0)).unwrap(),
        issued.iter().rev().find(|c| c.role_arn == role(1)).unwrap(),
    );
    let swapped = text.replace(&b.session_token, &a.session_token);
    assert!(matches!(
        check_credentials(&swapped, &roles, &mut index),
        Err(Bad::Mixed(_))
    ));
    // p0's whole set under [p1]: mixed (wrong role).
    let moved = text
        .replace(&b.access_key_id, &a.access_key_id)
        .replace(&b.secret_access_key, &a.secret_access_key)
        .replace(&b.session_token, &a.session_token);
    assert!(matches!(
        check_credentials(&moved, &roles, &mut index),
        Err(Bad::Mixed(_))
    ));
}
