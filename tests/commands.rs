//! The supervisor driven with [`Command`]s directly, in-process: no signal,
//! no socket. What SIGHUP, SIGUSR1, the configuration watcher and the
//! control socket send is carried out the same way: reloads applied and
//! answered (one running, one queued), refreshes carried out and answered,
//! SIGUSR1's 5 s spacing kept, and a reload waking failing profiles with
//! its own wake-up (its own log line, not the token's).

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rolecall::Command;
use rolecall::clock::Clock;
use rolecall::config::{Config, Env};
use rolecall::control::protocol::{Answer, RefreshResult};
use support::*;
use tokio::sync::oneshot;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";

/// A sidecar's fake STS, token and output dir.
struct Setup {
    sts: FakeSts,
    token: TokenDir,
    out: tempfile::TempDir,
    clock: Clock,
}

impl Setup {
    /// For a test under paused time: STS on the test's runtime, both on
    /// tokio's clock.
    fn paused() -> Setup {
        let clock = Clock::tokio();
        let sts = FakeSts::start_local();
        sts.set_clock(clock);
        Setup {
            sts,
            token: TokenDir::new(&valid_jwt()),
            out: tempfile::tempdir().unwrap(),
            clock,
        }
    }

    fn real() -> Setup {
        Setup {
            sts: FakeSts::start(),
            token: TokenDir::new(&valid_jwt()),
            out: tempfile::tempdir().unwrap(),
            clock: Clock::system(),
        }
    }

    fn config(&self, profiles: &[&str]) -> Config {
        let flags = test_flags(&self.sts, &self.token, self.out.path(), profiles);
        Config::load(&flags, &Env::new()).expect("a valid configuration")
    }

    fn opts(&self) -> rolecall::Options {
        rolecall::Options {
            clock: self.clock,
            ..test_options()
        }
    }
}

fn reader() -> String {
    format!("reader={READER}")
}

fn writer() -> String {
    format!("writer={WRITER}")
}

/// Sends `command` built around a fresh reply; the answer to come.
async fn ask(
    r: &Running,
    command: impl FnOnce(rolecall::control::Reply) -> Command,
) -> oneshot::Receiver<Answer> {
    let (tx, rx) = oneshot::channel();
    r.controls.send(command(tx)).await.unwrap();
    rx
}

#[tokio::test]
async fn a_reload_is_answered_and_one_asked_during_it_gets_the_next_ones_result() {
    let s = Setup::real();
    let (gate, opened) = std::sync::mpsc::channel::<()>();
    let opened = Mutex::new(opened);
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let next = s.config(&[&reader(), &writer()]);
    let r = Running::start_with_reload(
        s.config(&[&reader()]),
        move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = opened.lock().unwrap().recv();
            Ok(next.clone())
        },
        s.opts(),
    );
    let first = ask(&r, |reply| Command::Reload(Some(reply))).await;
    assert!(wait_until_real(Duration::from_secs(5), || reads.load(Ordering::SeqCst) == 1).await);
    // Asked while the first one reads: all of them get the next one's result.
    let mut second = ask(&r, |reply| Command::Reload(Some(reply))).await;
    r.controls.send(Command::reload()).await.unwrap();
    let mut third = ask(&r, |reply| Command::Reload(Some(reply))).await;
    // Commands are carried out in order: once `Sets` is answered, the
    // three are with the reloader (else the first read's end could come
    // first, and the second ask start a reload of its own).
    ask(&r, Command::Sets).await.await.unwrap();

    gate.send(()).unwrap();
    let a = first.await.unwrap();
    assert!(a.ok, "{a:?}");
    assert_eq!(a.added, Some(vec!["writer".to_owned()]));
    assert!(second.try_recv().is_err() && third.try_recv().is_err());
    assert!(wait_until_real(Duration::from_secs(5), || reads.load(Ordering::SeqCst) == 2).await);

    gate.send(()).unwrap();
    for rx in [second, third] {
        let a = rx.await.unwrap();
        assert!(a.ok, "{a:?}");
        assert_eq!(a.added, Some(vec![]), "the second read changed nothing");
    }
    assert!(wait_until(Duration::from_secs(5), || s.sts.calls_for_role(WRITER) == 1).await);
    // Three asked during one reload cost one more read, not three: nothing
    // runs now, so a new one starts at once and one opening of the gate
    // answers it (behind a stray read it would wait for a second).
    let fourth = ask(&r, |reply| Command::Reload(Some(reply))).await;
    gate.send(()).unwrap();
    let a = tokio::time::timeout(Duration::from_secs(5), fourth)
        .await
        .expect("no reload ran before this one")
        .unwrap();
    assert!(a.ok, "{a:?}");
    assert_eq!(reads.load(Ordering::SeqCst), 3);
    r.stop().await;
}

#[tokio::test]
async fn a_refused_reload_is_answered_with_its_problems() {
    let s = Setup::real();
    let r = Running::start_with_reload(
        s.config(&[&reader()]),
        || {
            let flags = rolecall::config::Flags {
                profiles: vec!["reader=not-an-arn".into()],
                ..rolecall::config::Flags::default()
            };
            Config::load(&flags, &Env::new())
        },
        s.opts(),
    );
    let a = ask(&r, |reply| Command::Reload(Some(reply)))
        .await
        .await
        .unwrap();
    assert!(!a.ok && !a.usage, "{a:?}");
    assert!(a.problems.iter().any(|p| p.contains("not-an-arn")), "{a:?}");
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refresh_with_a_reply_says_what_each_profile_did_and_keeps_the_5_s_spacing() {
    let s = Setup::paused();
    let r = Running::start(s.config(&[&reader(), &writer()]), s.opts());
    assert!(s.sts.wait_for_calls(2, Duration::from_secs(5)).await);

    // Both were just assumed: skipped, and the answer says why.
    let a = ask(&r, |reply| Command::Refresh {
        profile: None,
        reply: Some(reply),
    })
    .await
    .await
    .unwrap();
    assert!(a.ok, "skipped is not a failure: {a:?}");
    let p = a.profiles.unwrap();
    assert_eq!(
        p.iter().map(|p| p.profile.as_str()).collect::<Vec<_>>(),
        ["reader", "writer"]
    );
    for p in &p {
        assert_eq!(p.result, RefreshResult::Skipped, "{p:?}");
        assert!(
            p.detail
                .as_deref()
                .unwrap()
                .contains("at most once per profile every 5 s"),
            "{p:?}"
        );
    }

    tokio::time::sleep(Duration::from_secs(5)).await;
    let a = ask(&r, |reply| Command::Refresh {
        profile: Some("reader".into()),
        reply: Some(reply),
    })
    .await
    .await
    .unwrap();
    assert!(a.ok, "{a:?}");
    let p = a.profiles.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].result, RefreshResult::Refreshed);
    assert!(p[0].expiration.is_some());
    assert_eq!(s.sts.calls_for_role(READER), 2);
    assert_eq!(s.sts.calls_for_role(WRITER), 1, "only the one named");

    let a = ask(&r, |reply| Command::Refresh {
        profile: Some("audit".into()),
        reply: Some(reply),
    })
    .await
    .await
    .unwrap();
    assert!(a.usage && !a.ok, "{a:?}");
    assert_eq!(a.problems, ["no profile audit; configured: reader, writer"]);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refreshes_of_every_profile_without_a_reply_are_spaced_5_s_and_coalesced() {
    let s = Setup::paused();
    let r = Running::start(s.config(&[&reader(), &writer()]), s.opts());
    assert!(s.sts.wait_for_calls(2, Duration::from_secs(5)).await);
    let started = tokio::time::Instant::now();
    // What a burst of SIGUSR1 sends, within 5 s of the first attempts.
    for _ in 0..3 {
        r.controls.send(Command::refresh_all()).await.unwrap();
    }
    assert!(s.sts.wait_for_calls(4, Duration::from_secs(10)).await);
    let waited = started.elapsed();
    assert!(waited <= Duration::from_secs(6), "{waited:?}");
    let reqs = s.sts.requests();
    let held = reqs[2].received - reqs[0].received;
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(6)).contains(&held),
        "held {held:?} after the first attempt"
    );
    // The burst cost one call per profile.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(s.sts.calls_for_role(READER), 2);
    assert_eq!(s.sts.calls_for_role(WRITER), 2);
    r.stop().await;
}

/// A refresh of one profile's answer: its result and detail.
async fn refresh_one(r: &Running, name: &str) -> (RefreshResult, String) {
    let a = ask(r, |reply| Command::Refresh {
        profile: Some(name.into()),
        reply: Some(reply),
    })
    .await
    .await
    .unwrap();
    let p = a.profiles.unwrap().remove(0);
    (p.result, p.detail.unwrap_or_default())
}

#[tokio::test(start_paused = true)]
async fn a_refresh_of_every_profile_and_one_of_a_profile_take_one_path_and_share_its_spacing() {
    let s = Setup::paused();
    let r = Running::start(s.config(&[&reader(), &writer()]), s.opts());
    assert!(s.sts.wait_for_calls(2, Duration::from_secs(5)).await);
    let calls = || (s.sts.calls_for_role(READER), s.sts.calls_for_role(WRITER));
    // SIGUSR1 within the first 5 s: both refresh when the 5 s are up.
    r.controls.send(Command::refresh_all()).await.unwrap();
    assert!(s.sts.wait_for_calls(4, Duration::from_secs(10)).await);
    // The socket's refresh of one right after: the signal's attempt counts.
    let (result, detail) = refresh_one(&r, "reader").await;
    assert_eq!(result, RefreshResult::Skipped, "{detail}");
    assert!(detail.starts_with("refreshed 0 s ago"), "{detail}");
    assert_eq!(calls(), (2, 2));
    // 5 s later it runs, for the profile named alone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(refresh_one(&r, "reader").await.0, RefreshResult::Refreshed);
    assert_eq!(calls(), (3, 2));
    // Then SIGUSR1: the writer at once, the reader when the 5 s since the
    // socket's attempt are up.
    r.controls.send(Command::refresh_all()).await.unwrap();
    assert!(s.sts.wait_for_calls(7, Duration::from_secs(10)).await);
    let reader = s.sts.requests_for_role(READER);
    let writer = s.sts.requests_for_role(WRITER);
    let spaced = reader[3].received - reader[2].received;
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(6)).contains(&spaced),
        "{spaced:?}"
    );
    assert!(writer[2].received < reader[3].received);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(calls(), (4, 3), "one call per request and profile, no more");
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_refreshes_of_every_profile_never_blocks_the_supervisor_and_costs_one_call_each()
{
    let s = Setup::paused();
    let r = Running::start(s.config(&[&reader(), &writer()]), s.opts());
    assert!(s.sts.wait_for_calls(2, Duration::from_secs(5)).await);
    let started = tokio::time::Instant::now();
    // What a storm of SIGUSR1 sends: never waiting for room (a full
    // channel drops the signal), the supervisor running in between.
    let mut taken = 0;
    for i in 0..10_000 {
        if r.controls.try_send(Command::refresh_all()).is_ok() {
            taken += 1;
        }
        if i % 8 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(taken > 1_000, "the supervisor kept taking them: {taken}");
    // It still answers at once: no time passed (paused time moves only
    // when every task waits for a timer).
    let sets = ask(&r, Command::Sets).await.await.unwrap();
    assert!(sets.ok);
    assert_eq!(started.elapsed(), Duration::ZERO);
    // The whole storm: one call per profile, when its 5 s are up.
    assert!(s.sts.wait_for_calls(4, Duration::from_secs(10)).await);
    assert!(started.elapsed() <= Duration::from_secs(6));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(s.sts.calls_for_role(READER), 2);
    assert_eq!(s.sts.calls_for_role(WRITER), 2);
    r.stop().await;
}

#[tokio::test]
async fn sets_are_answered_with_their_dirs() {
    let s = Setup::real();
    let r = Running::start(s.config(&[&reader()]), s.opts());
    let a = ask(&r, Command::Sets).await.await.unwrap();
    assert!(a.ok, "{a:?}");
    let sets = a.sets.unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].name, rolecall::config::DEFAULT_SET);
    assert_eq!(sets[0].dir, s.out.path().display().to_string());
    r.stop().await;
}

/// Every log line of this test binary (a global subscriber: scoped ones
/// miss events whose call sites other tests' threads reach first). A test
/// reads the lines of its own profiles.
#[derive(Clone)]
struct Logs(Arc<Mutex<Vec<u8>>>);

static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();

impl Logs {
    fn capture() -> &'static Logs {
        LOGS.get_or_init(|| {
            use tracing_subscriber::prelude::*;
            let logs = Logs(Arc::default());
            let writer = logs.clone();
            let _ = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(move || writer.clone())
                        .with_filter(rolecall::logging::filter("rolecall=info")),
                )
                .try_init();
            logs
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_reload_wakes_a_failing_profile_with_its_own_wake_up_not_the_tokens() {
    let logs = Logs::capture();
    let s = Setup::paused();
    // Profiles of their own, whose lines no other test writes.
    const FAILING: &str = "arn:aws:iam::111122223333:role/failing";
    for _ in 0..3 {
        s.sts.push_for_role(FAILING, Reply::access_denied());
    }
    let profiles = [format!("healthy={READER}"), format!("failing={FAILING}")];
    let r = Running::start(s.config(&[&profiles[0], &profiles[1]]), s.opts());
    assert!(s.sts.wait_for_calls(2, Duration::from_secs(5)).await);
    assert_eq!(s.sts.calls_for_role(FAILING), 1);

    // AccessDenied waits five minutes; a reload (of the same file) retries
    // the failing profile now, and leaves the healthy one alone.
    // The read runs on a thread tokio does not see: wait for it on the
    // wall clock, or the paused clock would jump to the next timer.
    let asked = tokio::time::Instant::now();
    let mut answer = ask(&r, |reply| Command::Reload(Some(reply))).await;
    let mut a = None;
    assert!(
        wait_until_real(Duration::from_secs(5), || {
            a = answer.try_recv().ok();
            a.is_some()
        })
        .await
    );
    assert!(a.unwrap().ok);
    assert!(
        wait_until(Duration::from_secs(300), || s.sts.calls_for_role(FAILING)
            == 2)
        .await
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        s.sts.calls_for_role(READER),
        1,
        "a healthy profile keeps its schedule"
    );
    r.stop().await;

    let text = logs.text();
    let woken: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("retrying now") && l.contains("profile=failing"))
        .collect();
    assert_eq!(woken.len(), 1, "{text}");
    assert!(
        woken[0].contains("configuration reloaded; retrying now"),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("profile=healthy") && l.contains("retrying now")),
        "{text}"
    );
}
