//! The token watcher in every layout a token file comes in, counting its
//! wake-ups (`rolecall_token_checks`) instead of timing it.
//!
//! Each test starts a [`TokenWatcher`], reads the token many times the way
//! refreshers do (the reads of a plain file raise inotify `IN_OPEN` and
//! `IN_CLOSE_NOWRITE` events in the watched directory), then makes one real
//! change and waits until the watcher has noticed it. inotify delivers events
//! in order, so by then every event of the reads has been handled too: the
//! number of re-reads counted shows whether the reads woke the watcher (before
//! the fix, the watcher's own read woke it again, forever: thousands).
//!
//! Layouts: kubelet's `..data` symlink swaps, a plain file written in place,
//! replaced by rename, deleted and recreated, the token's directory deleted
//! and recreated or replaced by rename, a directory whose other files change
//! often, a file bind-mounted alone and a symlink to a file elsewhere (no
//! events: the poll notices), and the sidecar end to end with a plain file.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rolecall::metrics::Metrics;
use rolecall::watch::TokenWatcher;
use support::*;
use tokio_util::sync::CancellationToken;

/// Re-reads one real change may cost: the events of one write (truncate,
/// write, close) or one rename, each of which may wake the watcher.
const MAX_CHECKS_PER_CHANGE: u64 = 3;
/// How often refreshers read the token in these tests.
const READS: usize = 50;
/// How long a change may take to be noticed (events: milliseconds; the
/// short polls below: under a second).
const NOTICE: Duration = Duration::from_secs(10);

/// A token whose `exp` is `now + 1 day + n`; its `exp`, to recognise it.
fn token(n: u64) -> (String, u64) {
    let exp = now_unix() + 24 * 3600 + n;
    (jwt(TEST_ISSUER, TEST_SUBJECT, TEST_AUDIENCE, exp), exp)
}

/// A running [`TokenWatcher`] and what it reports.
struct Watched {
    path: PathBuf,
    logs: Logs,
    _logging: tracing::subscriber::DefaultGuard,
    metrics: Metrics,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Watched {
    /// Starts watching `path` and waits for the first read, which found the
    /// token expiring at `exp` (the notify watch is set up before it).
    async fn start(path: &Path, poll_interval: Duration, exp: u64) -> Watched {
        let logs = Logs::default();
        let logging = logs.install();
        let metrics = Metrics::new();
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            TokenWatcher {
                token_file: path.to_owned(),
                poll_interval,
                changed: generation.clone(),
                metrics: metrics.clone(),
                clock: rolecall::clock::Clock::system(),
            }
            .run(stop.clone()),
        );
        let w = Watched {
            path: path.to_owned(),
            logs,
            _logging: logging,
            metrics,
            generation,
            stop,
            task,
        };
        assert!(
            wait_until(NOTICE, || w.exp() == exp).await,
            "the watcher did not read the initial token"
        );
        w
    }

    /// Times the watcher re-read the token after an event or a poll.
    fn checks(&self) -> u64 {
        self.metrics
            .value("rolecall_token_checks_total")
            .unwrap_or(0.0) as u64
    }

    /// The `exp` of the token the watcher last read.
    fn exp(&self) -> u64 {
        self.metrics
            .value("rolecall_token_expiry_timestamp_seconds")
            .unwrap_or(0.0) as u64
    }

    fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Reads the token [`READS`] times as refreshers do.
    fn read_like_refreshers(&self) {
        for i in 0..READS {
            if let Err(e) = rolecall::token::read(&self.path, SystemTime::now()) {
                panic!("read {i} of the token failed: {e}");
            }
        }
    }

    /// Waits until the watcher has read the token expiring at `exp` and
    /// announced it (the generation moved past `generation`).
    async fn wait_noticed(&self, exp: u64, generation: u64, what: &str) {
        assert!(
            wait_until(NOTICE, || self.exp() == exp
                && self.generation() > generation)
            .await,
            "{what}: not noticed within {NOTICE:?} (exp seen {}, want {exp}; generation {})",
            self.exp(),
            self.generation()
        );
    }

    /// How many times the watcher said the token cannot be read.
    fn said_gone(&self) -> usize {
        self.logs.count("token unavailable")
    }

    /// Waits until the watcher said (once more than `said`) that the token
    /// cannot be read, and checks that it woke nobody (`generation`).
    async fn wait_said_gone(&self, said: usize, generation: u64, what: &str) {
        assert!(
            wait_until(NOTICE, || self.said_gone() > said).await,
            "{what}: not noticed within {NOTICE:?}"
        );
        assert!(
            rolecall::token::read(&self.path, SystemTime::now()).is_err(),
            "{what}: the token is still readable"
        );
        assert_eq!(self.generation(), generation, "{what}: woke the refreshers");
    }

    /// Waits until the watcher read the token back, unchanged, and checks
    /// that it woke nobody (`generation`).
    async fn wait_back_unchanged(&self, said: usize, generation: u64, what: &str) {
        let back = || self.logs.count("token readable again and unchanged");
        assert!(
            wait_until(NOTICE, || back() > said).await,
            "{what}: not noticed within {NOTICE:?}"
        );
        assert_eq!(self.generation(), generation, "{what}: woke the refreshers");
    }

    /// Asserts that at most `max` re-reads happened since `before`.
    fn assert_checks(&self, before: u64, max: u64, what: &str) {
        let n = self.checks() - before;
        assert!(
            n <= max,
            "{what}: the watcher re-read the token {n} times (at most {max} expected): \
             it woke up for events that cannot change the token (its own reads?)"
        );
    }

    /// Reads like refreshers, runs `change`, waits until the token expiring
    /// at `exp` is noticed, and checks that it cost few re-reads.
    async fn change_and_count(&self, exp: u64, what: &str, change: impl FnOnce()) {
        let (c0, g0) = (self.checks(), self.generation());
        self.read_like_refreshers();
        self.count_change(c0, g0, exp, what, change).await;
    }

    /// Runs `change`, waits until the token expiring at `exp` is noticed,
    /// and checks that at most a change's worth of re-reads happened since
    /// `c0` (the generation was `g0`).
    async fn count_change(&self, c0: u64, g0: u64, exp: u64, what: &str, change: impl FnOnce()) {
        change();
        self.wait_noticed(exp, g0, what).await;
        self.assert_checks(c0, MAX_CHECKS_PER_CHANGE, what);
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("the watcher task");
    }
}

/// Writes `content` to `path` through a temporary file and a rename.
fn replace_by_rename(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A temporary directory holding `sa/token`, a plain file.
fn plain_layout(content: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::Builder::new()
        .prefix("rolecall-layout-")
        .tempdir()
        .unwrap();
    let dir = root.path().join("sa");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, content).unwrap();
    (root, path)
}

#[tokio::test]
async fn kubelet_symlink_swaps_are_noticed_and_reads_do_not_wake_the_watcher() {
    let (t0, exp0) = token(0);
    let dir = TokenDir::new(&t0);
    let w = Watched::start(&dir.path(), watch_poll(), exp0).await;
    for n in 1..=3 {
        let (t, exp) = token(n);
        w.change_and_count(exp, &format!("rotation {n}"), || dir.rotate(&t))
            .await;
    }
    w.stop().await;
}

#[tokio::test]
async fn a_plain_file_written_in_place_is_noticed_and_reads_do_not_wake_the_watcher() {
    let (t0, exp0) = token(0);
    let (_root, path) = plain_layout(&t0);
    let w = Watched::start(&path, watch_poll(), exp0).await;
    // Idle: many reads and nothing else. Noticing the next change proves
    // the read events were handled (inotify keeps order).
    for n in 1..=3 {
        let (t, exp) = token(n);
        w.change_and_count(exp, &format!("write {n}"), || {
            std::fs::write(&path, &t).unwrap()
        })
        .await;
    }
    w.stop().await;
}

#[tokio::test]
async fn a_plain_file_replaced_by_rename_is_noticed_and_reads_do_not_wake_the_watcher() {
    let (t0, exp0) = token(0);
    let (_root, path) = plain_layout(&t0);
    let w = Watched::start(&path, watch_poll(), exp0).await;
    for n in 1..=3 {
        let (t, exp) = token(n);
        w.change_and_count(exp, &format!("rename {n}"), || replace_by_rename(&path, &t))
            .await;
    }
    w.stop().await;
}

#[tokio::test]
async fn a_plain_file_deleted_and_recreated_wakes_the_refreshers_only_with_new_bytes() {
    let (t0, exp0) = token(0);
    let (_root, path) = plain_layout(&t0);
    let w = Watched::start(&path, watch_poll(), exp0).await;
    let mut current = t0;
    for n in 1..=2 {
        // Deleted: said once, nobody woken (a refresher's own read fails
        // with the reason; its backoff retries).
        let (c0, g0, said) = (w.checks(), w.generation(), w.said_gone());
        w.read_like_refreshers();
        std::fs::remove_file(&path).unwrap();
        w.wait_said_gone(said, g0, "delete").await;
        w.assert_checks(c0, MAX_CHECKS_PER_CHANGE, "delete");
        // Recreated with the same bytes: no change.
        std::fs::write(&path, &current).unwrap();
        w.wait_back_unchanged(n as usize - 1, g0, "recreated with the same token")
            .await;
        // Deleted again and recreated with a new token: a change.
        std::fs::remove_file(&path).unwrap();
        w.wait_said_gone(said + 1, g0, "delete again").await;
        let (t, exp) = token(n);
        let c1 = w.checks();
        w.count_change(c1, g0, exp, "recreate", || {
            std::fs::write(&path, &t).unwrap()
        })
        .await;
        current = t;
    }
    w.stop().await;
}

#[tokio::test]
async fn a_kubelet_swap_republishing_the_same_token_wakes_nobody() {
    // AtomicWriter rewrites the whole volume when another of its files
    // (`ca.crt`, `namespace`) changes: a new `..data`, the same token.
    let (t0, exp0) = token(0);
    let dir = TokenDir::new(&t0);
    let w = Watched::start(&dir.path(), watch_poll(), exp0).await;
    let g0 = w.generation();
    for _ in 0..3 {
        dir.rotate(&t0);
    }
    // Noticing the next real change proves the swaps were handled first
    // (inotify keeps order): they moved nothing.
    let (t1, exp1) = token(1);
    let c0 = w.checks();
    dir.rotate(&t1);
    w.wait_noticed(exp1, g0, "a new token after the swaps")
        .await;
    assert_eq!(
        w.generation(),
        g0 + 1,
        "only the new token woke the refreshers"
    );
    assert!(w.checks() > c0);
    w.stop().await;
}

#[tokio::test]
async fn the_token_directory_deleted_and_recreated_is_watched_again() {
    let (t0, exp0) = token(0);
    let (_root, path) = plain_layout(&t0);
    let dir = path.parent().unwrap().to_owned();
    // The default poll (a minute): re-watching must not wait for it.
    let w = Watched::start(&path, rolecall::watch::POLL_INTERVAL, exp0).await;
    for n in 1..=2 {
        let (g0, said) = (w.generation(), w.said_gone());
        w.read_like_refreshers();
        std::fs::remove_dir_all(&dir).unwrap();
        w.wait_said_gone(said, g0, "directory deleted").await;
        let (t, exp) = token(n);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(&path, &t).unwrap();
        w.wait_noticed(exp, g0, "directory recreated").await;
        // And the new directory is watched: a change is noticed by its event.
        let (t, exp) = token(n + 10);
        w.change_and_count(exp, "write in the new directory", || {
            std::fs::write(&path, &t).unwrap()
        })
        .await;
    }
    w.stop().await;
}

#[tokio::test]
async fn the_token_directory_replaced_by_rename_is_watched_again() {
    let (t0, exp0) = token(0);
    let (root, path) = plain_layout(&t0);
    let dir = path.parent().unwrap().to_owned();
    let w = Watched::start(&path, rolecall::watch::POLL_INTERVAL, exp0).await;
    // A tool that prepares a new directory and swaps it in: the old one
    // (still watched by inode) moves away and is deleted.
    let (t1, exp1) = token(1);
    let g0 = w.generation();
    let new = root.path().join("sa.new");
    std::fs::create_dir(&new).unwrap();
    std::fs::write(new.join("token"), &t1).unwrap();
    std::fs::rename(&dir, root.path().join("sa.old")).unwrap();
    std::fs::rename(&new, &dir).unwrap();
    std::fs::remove_dir_all(root.path().join("sa.old")).unwrap();
    w.wait_noticed(exp1, g0, "directory swapped").await;
    let (t2, exp2) = token(2);
    w.change_and_count(exp2, "write in the swapped-in directory", || {
        std::fs::write(&path, &t2).unwrap()
    })
    .await;
    w.stop().await;
}

#[tokio::test]
async fn other_files_changing_in_the_directory_do_not_wake_the_watcher() {
    let (t0, exp0) = token(0);
    let (_root, path) = plain_layout(&t0);
    let dir = path.parent().unwrap().to_owned();
    let w = Watched::start(&path, watch_poll(), exp0).await;
    let (t1, exp1) = token(1);
    w.change_and_count(exp1, "neighbours churn, then the token changes", || {
        for i in 0..200 {
            let other = dir.join(format!("other-{}", i % 5));
            std::fs::write(&other, format!("neighbour {i}")).unwrap();
            replace_by_rename(&dir.join("ca.crt"), &format!("cert {i}"));
            if i % 2 == 0 {
                std::fs::remove_file(&other).unwrap();
            }
            let _ = std::fs::read(&other);
        }
        std::fs::write(&path, &t1).unwrap();
    })
    .await;
    w.stop().await;
}

/// Unmounts a bind mount when dropped (declare it after the temporary
/// directory, so that it drops first).
struct BindMount(PathBuf);

impl BindMount {
    fn new(source: &Path, target: &Path) -> BindMount {
        let status = std::process::Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .status()
            .expect("run mount (this test needs root and mount(8))");
        assert!(
            status.success(),
            "mount --bind {} {} failed ({status}): this test needs root",
            source.display(),
            target.display()
        );
        BindMount(target.to_owned())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_file_bind_mounted_alone_raises_no_events_and_the_poll_notices_changes() {
    let (t0, exp0) = token(0);
    let (root, path) = plain_layout("placeholder");
    let source_dir = root.path().join("source");
    std::fs::create_dir(&source_dir).unwrap();
    let source = source_dir.join("token");
    std::fs::write(&source, &t0).unwrap();
    let _mount = BindMount::new(&source, &path);
    let poll = Duration::from_millis(500);
    let w = Watched::start(&path, poll, exp0).await;
    // The file's events go to its own directory, not to the mount point's:
    // a change (written in place, as a bind mount shows the same inode) is
    // only seen by the poll. Reads cost nothing; each poll costs one check.
    for n in 1..=2 {
        let (t, exp) = token(n);
        w.change_and_count(exp, &format!("bind-mounted write {n}"), || {
            std::fs::write(&source, &t).unwrap()
        })
        .await;
    }
    w.stop().await;
}

#[tokio::test]
async fn a_symlink_to_a_file_in_another_directory_is_polled() {
    let (t0, exp0) = token(0);
    let (root, path) = plain_layout("placeholder");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = elsewhere.join("real-token");
    std::fs::write(&target, &t0).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let w = Watched::start(&path, Duration::from_millis(500), exp0).await;
    let (t1, exp1) = token(1);
    w.change_and_count(exp1, "target written in place", || {
        std::fs::write(&target, &t1).unwrap()
    })
    .await;
    w.stop().await;
}

/// The poll of the event-driven layouts: long enough never to tick while a
/// test runs, so that every re-read counted comes from an event.
fn watch_poll() -> Duration {
    Duration::from_secs(3600)
}

const ROLE: &str = "arn:aws:iam::111122223333:role/app";

/// `rolecall_token_checks_total` from a `/metrics` text.
fn token_checks_in(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("rolecall_token_checks_total "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn the_sidecar_with_a_plain_token_file_idles_and_retries_a_failing_profile_on_change() {
    use rolecall::config::{Config, Env, Flags};
    let sts = FakeSts::start();
    sts.push(Reply::access_denied());
    let (t0, _) = token(0);
    let (_root, path) = plain_layout(&t0);
    let out = tempfile::tempdir().unwrap();
    let health = free_port();
    let flags = Flags {
        profiles: vec![format!("app={ROLE}")],
        token_file: Some(path.display().to_string()),
        output_dir: Some(out.path().display().to_string()),
        region: Some("eu-west-1".into()),
        sts_endpoint: Some(sts.endpoint()),
        session_name: Some("rolecall-test".into()),
        health_addr: Some(format!("127.0.0.1:{health}")),
        control_socket: Some(String::new()), // no socket in the host's /run
        credentials: Some(TEST_MODE.into()), // not the default: see TEST_MODE
        ..Flags::default()
    };
    let config = Config::load(&flags, &Env::new()).expect("valid test configuration");
    let r = Running::start(config, rolecall::Options::default());
    assert!(sts.wait_for_calls(1, NOTICE).await, "no STS call at start");
    let checks = || async {
        let (status, body) = http_get(health, "/metrics", None).await;
        assert_eq!(status, 200, "/metrics: {body}");
        assert!(
            body.contains(
                "# HELP rolecall_token_checks times the token watcher re-read the token \
                 after a file event or poll"
            ),
            "{body}"
        );
        token_checks_in(&body).expect("rolecall_token_checks_total in /metrics")
    };
    assert!(
        wait_until(NOTICE, || std::fs::metadata(out.path().join("status.json"))
            .is_ok())
        .await
    );
    let c0 = checks().await;
    for _ in 0..READS {
        rolecall::token::read(&path, SystemTime::now()).unwrap();
    }
    // AccessDenied waits minutes, unless the token changes.
    let (t1, _) = token(1);
    std::fs::write(&path, &t1).unwrap();
    assert!(
        sts.wait_for_calls(2, NOTICE).await,
        "the token change did not retry the failing profile"
    );
    assert_eq!(
        sts.requests()[1].token.as_deref(),
        Some(t1.as_str()),
        "the retry sent the new token"
    );
    // The new session is written: the runtime went round many times since
    // the change (a watcher woken by its own reads would have spun all along).
    assert!(
        wait_until(NOTICE, || std::fs::read_to_string(
            out.path().join("credentials")
        )
        .is_ok_and(|c| c.contains("[app]")))
        .await,
        "the retried profile was not written"
    );
    let n = checks().await - c0;
    assert!(
        n <= MAX_CHECKS_PER_CHANGE,
        "the watcher re-read the token {n} times for one change"
    );
    r.stop().await;
}
