//! Readiness never runs ahead of the files (issue 20, item 4): `/readyz`
//! is sampled in a tight loop, each sample followed by a read of
//! `credentials`, across the three moments where a profile's first session
//! arrives in a running sidecar: the recovery from a failing STS, a reload
//! that adds a profile, and a reload that changes a profile's role (from a
//! denied one to an allowed one). No sample may find `/readyz` 200 while a
//! profile the configuration requires is missing from `credentials`,
//! expired there, or there under another role.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rolecall::config::{Config, Env, Flags};
use rolecall::control::protocol::Request;
use support::*;

const A: &str = "arn:aws:iam::111122223333:role/a";
const B: &str = "arn:aws:iam::111122223333:role/b";
const B2: &str = "arn:aws:iam::111122223333:role/b2";
const WAIT: Duration = Duration::from_secs(15);
/// The most samples one scenario takes (a few seconds of sampling).
const MAX_SAMPLES: usize = 40_000;

/// A profile the configuration requires, from some moment on: its name and
/// the role its keys in `credentials` must be for.
type Required = Vec<(&'static str, &'static str)>;

fn yaml(profiles: &[(&str, &str)]) -> String {
    let mut s = String::from("profiles:\n");
    for (name, arn) in profiles {
        s.push_str(&format!("  {name}: {{role_arn: '{arn}'}}\n"));
    }
    s
}

/// `credentials`' sections: name to (role, expiry), from the `# ROLE
/// expires TIME` line rolecall writes above each.
fn sections(text: &str) -> BTreeMap<String, (String, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut comment: Option<(String, SystemTime)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ")
            && let Some((role, time)) = rest.split_once(" expires ")
            && let Some(t) = rolecall::session::parse_time(time)
        {
            comment = Some((role.to_owned(), t));
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']'))
            && let Some(c) = comment.take()
        {
            out.insert(name.to_owned(), c);
        }
    }
    out
}

/// What the sampler found.
#[derive(Debug, Default)]
struct Samples {
    total: usize,
    ready: usize,
    not_ready: usize,
    /// Samples with `/readyz` 200 and a required profile missing, expired
    /// or under another role in `credentials`: each described.
    violations: Vec<String>,
}

/// Samples `/readyz` then `credentials`, as fast as it can, until told to
/// stop (or [`MAX_SAMPLES`]). The profiles required are the last entry of
/// `required` whose instant is before the sample started (a reload's
/// requirement starts when its answer came).
struct Sampler {
    stop: Arc<AtomicBool>,
    required: Arc<Mutex<Vec<(Instant, Required)>>>,
    thread: std::thread::JoinHandle<Samples>,
}

impl Sampler {
    fn start(port: u16, out: PathBuf, first: Required) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let required = Arc::new(Mutex::new(vec![(Instant::now(), first)]));
        let (s, r) = (stop.clone(), required.clone());
        let thread = std::thread::spawn(move || {
            let mut samples = Samples::default();
            while !s.load(Ordering::Acquire) && samples.total < MAX_SAMPLES {
                let started = Instant::now();
                let need: Required = {
                    let r = r.lock().unwrap();
                    r.iter()
                        .rev()
                        .find(|(from, _)| *from <= started)
                        .map(|(_, req)| req.clone())
                        .unwrap_or_default()
                };
                let Some((status, _)) = http_get_blocking(port, "/readyz") else {
                    continue;
                };
                let text = std::fs::read_to_string(out.join("credentials")).unwrap_or_default();
                let now = SystemTime::now();
                samples.total += 1;
                if status != 200 {
                    samples.not_ready += 1;
                    continue;
                }
                samples.ready += 1;
                let found = sections(&text);
                for (name, role) in &need {
                    let why = match found.get(*name) {
                        None => "missing".to_owned(),
                        Some((_, exp)) if *exp <= now => "expired".to_owned(),
                        Some((r, _)) if r != role => format!("under role {r}"),
                        Some(_) => continue,
                    };
                    samples.violations.push(format!(
                        "sample {}: /readyz 200, {name} {why}",
                        samples.total
                    ));
                }
            }
            samples
        });
        Sampler {
            stop,
            required,
            thread,
        }
    }

    /// From now on, `req` is required.
    fn require(&self, req: Required) {
        self.required.lock().unwrap().push((Instant::now(), req));
    }

    fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("the sampler")
    }
}

/// An in-process sidecar reading its configuration from `dir`, with a
/// health listener and a control socket.
struct Sidecar {
    sts: FakeSts,
    _token: TokenDir,
    out: tempfile::TempDir,
    _run: tempfile::TempDir,
    sock: PathBuf,
    port: u16,
    running: Running,
}

impl Sidecar {
    fn start(sts: FakeSts, dir: &ConfigDir) -> Sidecar {
        let token = TokenDir::new(&valid_jwt());
        let out = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let sock = run.path().join("control.sock");
        let port = free_port();
        let flags = Flags {
            config: Some(dir.path()),
            health_addr: Some(format!("127.0.0.1:{port}")),
            control_socket: Some(sock.display().to_string()),
            ..test_flags(&sts, &token, out.path(), &[])
        };
        let config = Config::load(&flags, &Env::new()).expect("the configuration");
        let running = Running::start_with_reload(
            config,
            move || Config::load(&flags, &Env::new()),
            test_options(),
        );
        Sidecar {
            sts,
            _token: token,
            out,
            _run: run,
            sock,
            port,
            running,
        }
    }

    fn out(&self) -> &Path {
        self.out.path()
    }

    fn sampler(&self, first: Required) -> Sampler {
        Sampler::start(self.port, self.out().to_owned(), first)
    }

    /// `rolecall reload`, answered once the reload is applied.
    async fn reload(&self) {
        let sock = self.sock.clone();
        let (answer, line) = tokio::task::spawn_blocking(move || {
            rolecall::control::client::call(&sock, &Request::Reload)
        })
        .await
        .unwrap()
        .expect("the reload is answered");
        assert_eq!(rolecall::control::client::exit_code(&answer), 0, "{line}");
    }

    fn has(&self, name: &str, role: &str) -> bool {
        let text = std::fs::read_to_string(self.out().join("credentials")).unwrap_or_default();
        sections(&text).get(name).is_some_and(|(r, _)| r == role)
    }

    async fn ready(&self) -> bool {
        http_get(self.port, "/readyz", None).await.0 == 200
    }
}

/// Waits until `/readyz` answers 200 and `credentials` holds `want`, then
/// lets the sampler run a little longer, and checks what it found: samples
/// on both sides of the change, and no 200 ahead of the file.
async fn settle_and_check(s: &Sidecar, sampler: Sampler, want: &[(&str, &str)]) {
    assert!(
        wait_until(WAIT, || want.iter().all(|(n, r)| s.has(n, r))).await,
        "the profiles reach credentials"
    );
    let mut ok = false;
    for _ in 0..500 {
        if s.ready().await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok, "the sidecar becomes ready");
    // A few hundred more samples while ready.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let samples = sampler.finish();
    eprintln!(
        "samples: {} ({} ready, {} not ready)",
        samples.total, samples.ready, samples.not_ready
    );
    assert!(
        samples.ready > 0,
        "some samples saw the sidecar ready: {samples:?}"
    );
    assert!(
        samples.not_ready > 0,
        "some samples saw it not ready: {samples:?}"
    );
    assert!(
        samples.violations.is_empty(),
        "{} of {} samples found /readyz 200 ahead of credentials; first: {:?}",
        samples.violations.len(),
        samples.total,
        &samples.violations[..samples.violations.len().min(5)]
    );
}

#[tokio::test]
async fn readiness_waits_for_the_files_after_a_failing_start() {
    let sts = FakeSts::start();
    sts.set_default(Reply::server_error());
    let dir = ConfigDir::plain(&yaml(&[("a", A), ("b", B)]));
    let s = Sidecar::start(sts, &dir);
    let sampler = s.sampler(vec![("a", A), ("b", B)]);
    // Both first attempts fail; the retries (a second later) succeed.
    assert!(s.sts.wait_for_calls(2, WAIT).await);
    s.sts.set_default(Reply::ok());
    settle_and_check(&s, sampler, &[("a", A), ("b", B)]).await;
    s.running.stop().await;
}

#[tokio::test]
async fn readiness_waits_for_the_files_after_a_reload_that_adds_a_profile() {
    let dir = ConfigDir::plain(&yaml(&[("a", A)]));
    let s = Sidecar::start(FakeSts::granting(Duration::from_secs(3600)), &dir);
    let sampler = s.sampler(vec![("a", A)]);
    assert!(wait_until(WAIT, || s.has("a", A)).await);
    dir.edit_in_place(&yaml(&[("a", A), ("b", B)]));
    s.reload().await;
    sampler.require(vec![("a", A), ("b", B)]);
    settle_and_check(&s, sampler, &[("a", A), ("b", B)]).await;
    s.running.stop().await;
}

#[tokio::test]
async fn readiness_waits_for_the_files_after_a_role_change() {
    let sts = FakeSts::granting(Duration::from_secs(3600));
    // The first role is refused: `b` never has keys until its role changes.
    for _ in 0..10 {
        sts.push_for_role(B, Reply::access_denied());
    }
    let dir = ConfigDir::plain(&yaml(&[("a", A), ("b", B)]));
    let s = Sidecar::start(sts, &dir);
    let sampler = s.sampler(vec![("a", A), ("b", B)]);
    assert!(wait_until(WAIT, || s.has("a", A) && s.sts.calls_for_role(B) >= 1).await);
    dir.edit_in_place(&yaml(&[("a", A), ("b", B2)]));
    s.reload().await;
    sampler.require(vec![("a", A), ("b", B2)]);
    settle_and_check(&s, sampler, &[("a", A), ("b", B2)]).await;
    s.running.stop().await;
}
