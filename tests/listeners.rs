//! The listeners under attack from the pod network: floods of slow and
//! unfinished requests, descriptor exhaustion, and bad endpoint tokens.
//!
//! Every case runs the real binary as a process (so its memory, descriptors
//! and log are its own and can be measured) against a [`FakeSts`] and a
//! kubelet-style [`TokenDir`], and checks what the issue promised: memory
//! stays bounded, the server closes slow connections by itself, `/livez`
//! keeps answering, refreshes keep working, and the log stays small.

mod support;

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

const ROLE: &str = "arn:aws:iam::111122223333:role/reader";
/// How long the server may take to close a slow connection by itself: the
/// header-read timeout (a few seconds) plus generous slack for a loaded CI
/// machine. Before the fix, nothing was ever closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(30);
/// Growth of the sidecar's resident memory allowed during a flood. Before
/// the fix, 300 connections of 400 KiB headers grew it by about 120 MiB.
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;

/// The floods open hundreds of sockets each; one at a time keeps the test
/// process under a 1024-descriptor limit and the 2-core CI machine sane.
static FLOODS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------
// The sidecar as a process
// ---------------------------------------------------------------------------

struct Sidecar {
    process: ChildSidecar,
    health: u16,
    endpoint: Option<u16>,
    log: PathBuf,
    out: PathBuf,
    _root: tempfile::TempDir,
}

struct Start {
    /// `RLIMIT_NOFILE` (soft and hard) for the sidecar.
    nofile: Option<u32>,
    endpoint: bool,
}

impl Sidecar {
    fn start(sts: &FakeSts, token: &TokenDir, how: Start) -> Sidecar {
        let root = tempfile::tempdir().expect("temp dir");
        let out = root.path().join("aws");
        let log = root.path().join("rolecall.log");
        let health = free_port();
        let endpoint = how.endpoint.then(free_port);
        let mut c = rolecall_run(sts, token, &out, [("reader", ROLE)]);
        c.args(["--health-addr", &format!("0.0.0.0:{health}")])
            .args(["--log-format", "json"]);
        if let Some(port) = endpoint {
            c.args(["--endpoint-addr", &format!("127.0.0.1:{port}")]);
        }
        if let Some(n) = how.nofile {
            limit_open_files(&mut c, n);
        }
        Sidecar {
            process: ChildSidecar::spawn_logging_to(&mut c, &log),
            health,
            endpoint,
            log,
            out,
            _root: root,
        }
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    async fn wait_ready(&mut self) {
        let health = self.health;
        let mut ready = false;
        for _ in 0..3000 {
            if http_get(health, "/readyz", None).await.0 == 200 {
                ready = true;
                break;
            }
            assert!(
                self.process.running(),
                "rolecall exited before it was ready; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ready, "not ready within 30 s; log:\n{}", self.log_text());
    }

    /// The log (capped for messages; a runaway log can be huge).
    fn log_text(&self) -> String {
        let text = fs::read(&self.log).unwrap_or_default();
        let tail = &text[text.len().saturating_sub(8192)..];
        format!(
            "({} bytes; last 8 KiB)\n{}",
            text.len(),
            String::from_utf8_lossy(tail)
        )
    }

    /// Log lines whose message contains `needle`, counted without loading
    /// a runaway log into memory.
    fn count_log_lines(&self, needle: &str) -> usize {
        use std::io::BufRead as _;
        let f = File::open(&self.log).expect("open log");
        std::io::BufReader::new(f)
            .split(b'\n')
            .map_while(Result::ok)
            .filter(|line| {
                serde_json::from_slice::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(|m| m.contains(needle)))
                    .unwrap_or(false)
            })
            .count()
    }

    fn log_bytes(&self) -> u64 {
        fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Resident memory, KiB.
    fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    fn open_descriptors(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn sigusr1(&self) {
        self.process.signal(libc::SIGUSR1);
    }

    fn access_key(&self) -> Option<String> {
        let text = fs::read_to_string(self.out.join("credentials")).ok()?;
        try_parse_ini(&text)
            .ok()?
            .get("reader")?
            .get("aws_access_key_id")
            .cloned()
    }

    /// Sends SIGUSR1 and waits until STS issued new credentials and they
    /// are in the credentials file: a whole refresh, token read and file
    /// write included.
    async fn assert_refreshes(&self, sts: &FakeSts, while_what: &str) {
        let calls = sts.calls();
        self.sigusr1();
        assert!(
            sts.wait_for_calls(calls + 1, CLOSE_WITHIN).await,
            "{while_what}: SIGUSR1 made no STS call; log:\n{}",
            self.log_text()
        );
        let mut published = false;
        for _ in 0..3000 {
            let issued = sts.last_issued_for_role(ROLE).map(|c| c.access_key_id);
            if issued.is_some() && issued == self.access_key() && sts.issued().len() > calls {
                published = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            published,
            "{while_what}: the refreshed credentials were not written within 30 s; log:\n{}",
            self.log_text()
        );
    }

    async fn assert_livez(&self, while_what: &str) {
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            http_get(self.health, "/livez", None),
        )
        .await;
        assert!(
            matches!(got, Ok((200, _))),
            "{while_what}: /livez did not answer 200 within 5 s: {got:?}; log:\n{}",
            self.log_text()
        );
    }
}

async fn start(how: Start) -> (FakeSts, TokenDir, Sidecar) {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let mut sc = Sidecar::start(&sts, &token, how);
    sc.wait_ready().await;
    (sts, token, sc)
}

/// The value of one sample in a Prometheus exposition (`name{labels}`).
fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------
// Attack connections
// ---------------------------------------------------------------------------

/// Connections the test holds open; each has a task that reads until the
/// server closes it (EOF or reset), counted in `closed`.
struct Attack {
    closed: Arc<AtomicUsize>,
    count: usize,
    /// The write halves, kept open: dropping one would send FIN, and the
    /// server would close for that reason rather than by its own limits.
    writers: Vec<tokio::task::JoinHandle<tokio::net::tcp::OwnedWriteHalf>>,
}

impl Attack {
    fn new() -> Attack {
        Attack {
            closed: Arc::new(AtomicUsize::new(0)),
            count: 0,
            writers: Vec::new(),
        }
    }

    /// Opens a connection and writes `first`, then `filler` in 16 KiB
    /// writes, and never finishes the request.
    async fn open(&mut self, port: u16, first: &'static [u8], filler: usize) {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the listener");
        let (mut r, mut w) = s.into_split();
        let closed = self.closed.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        });
        self.writers.push(tokio::spawn(async move {
            if w.write_all(first).await.is_err() {
                return w;
            }
            let chunk = vec![b'a'; 16 * 1024];
            let mut sent = 0;
            while sent < filler {
                let n = chunk.len().min(filler - sent);
                if w.write_all(&chunk[..n]).await.is_err() {
                    break;
                }
                sent += n;
            }
            w
        }));
        self.count += 1;
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits until every writer has sent all it could (the server read it,
    /// or refused it), sampling `sample` meanwhile.
    async fn wait_written(&mut self, mut sample: impl FnMut()) -> bool {
        let deadline = tokio::time::Instant::now() + CLOSE_WITHIN;
        while self.writers.iter().any(|w| !w.is_finished()) {
            sample();
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sample();
        true
    }

    /// Waits until the server has closed every connection.
    async fn wait_all_closed(&self) -> bool {
        wait_until(CLOSE_WITHIN, || self.closed() == self.count).await
    }
}

/// Headers that are never finished: each connection sends 400 KiB of a
/// header value (just under hyper's default buffer limit) and no CRLFCRLF.
const HUGE_HEADER_START: &[u8] = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Pad: ";
/// A request cut off in the middle of its headers.
const HALF_SENT: &[u8] = b"GET /livez HTTP/1.1\r\nHost: x\r\nUser-Agent: slow";
/// A whole request on a kept-alive connection, after which the client idles.
const KEPT_ALIVE: &[u8] = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n";

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_flood_of_huge_unfinished_headers_keeps_memory_bounded_and_probes_answering() {
    let _one_at_a_time = FLOODS.lock().await;
    let (sts, _token, sc) = start(Start {
        nofile: None,
        endpoint: false,
    })
    .await;
    let base = sc.rss_kib();
    let mut peak = base;

    let mut attack = Attack::new();
    for _ in 0..300 {
        attack.open(sc.health, HUGE_HEADER_START, 400 * 1024).await;
    }
    let written = attack.wait_written(|| peak = peak.max(sc.rss_kib())).await;
    assert!(
        written,
        "300 writers of 400 KiB did not finish within {CLOSE_WITHIN:?} (the server neither read nor closed)"
    );
    sc.assert_livez("during 300 huge unfinished headers").await;
    // The writers are done when the kernel holds their data, perhaps before
    // the server read it: keep measuring until the server closed them all.
    let closed = wait_until(CLOSE_WITHIN, || {
        peak = peak.max(sc.rss_kib());
        attack.closed() == attack.count
    })
    .await;
    println!("RSS {base} KiB before, {peak} KiB at the peak of the flood");
    assert!(
        peak - base < RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {base} KiB to {peak} KiB during 300 unfinished 400 KiB headers (limit {RSS_GROWTH_LIMIT_KIB} KiB)"
    );
    assert!(
        closed,
        "the server closed only {} of {} connections with unfinished headers within {CLOSE_WITHIN:?}",
        attack.closed(),
        attack.count
    );
    sc.assert_refreshes(&sts, "after the flood").await;
    assert!(
        sc.rss_kib() - base < RSS_GROWTH_LIMIT_KIB,
        "RSS stayed high after the flood: {} KiB, was {base} KiB",
        sc.rss_kib()
    );
}

#[tokio::test]
async fn idle_and_half_sent_requests_are_closed_while_probes_and_refreshes_keep_working() {
    let _one_at_a_time = FLOODS.lock().await;
    let (sts, _token, sc) = start(Start {
        nofile: None,
        endpoint: false,
    })
    .await;

    let mut attack = Attack::new();
    let opened = std::time::Instant::now();
    for i in 0..300 {
        match i % 3 {
            0 => attack.open(sc.health, HALF_SENT, 0).await,
            1 => attack.open(sc.health, b"", 0).await,
            _ => attack.open(sc.health, KEPT_ALIVE, 0).await,
        }
    }
    assert!(
        attack.wait_written(|| {}).await,
        "the writes did not finish"
    );

    // The connections are held (the server has not timed them out yet, or
    // has; either way the probe and a refresh must work now).
    sc.assert_livez("with 300 idle and half-sent requests open")
        .await;
    sc.assert_refreshes(&sts, "with 300 idle and half-sent requests open")
        .await;
    let closed = attack.wait_all_closed().await;
    println!(
        "{} of {} idle or half-sent connections closed by the server after {:?}",
        attack.closed(),
        attack.count,
        opened.elapsed()
    );
    assert!(
        closed,
        "the server closed only {} of {} idle or half-sent connections within {CLOSE_WITHIN:?}",
        attack.closed(),
        attack.count
    );
    sc.assert_livez("after the idle connections were closed")
        .await;
}

#[tokio::test]
async fn at_a_low_open_file_limit_accept_failures_are_logged_boundedly_and_the_sidecar_recovers() {
    let _one_at_a_time = FLOODS.lock().await;
    let (sts, _token, sc) = start(Start {
        nofile: Some(48),
        endpoint: false,
    })
    .await;
    let base_fds = sc.open_descriptors();
    assert!(base_fds < 40, "{base_fds} descriptors open at start");

    // More connections than descriptors left: the accept loop hits EMFILE.
    let mut attack = Attack::new();
    let started = std::time::Instant::now();
    for _ in 0..60 {
        attack.open(sc.health, HALF_SENT, 0).await;
    }
    let saw_emfile = wait_until(CLOSE_WITHIN, || sc.count_log_lines("accept failed") > 0).await;
    assert!(
        saw_emfile,
        "no accept failure logged with 60 connections at 48 descriptors ({} open); log:\n{}",
        sc.open_descriptors(),
        sc.log_text()
    );
    // The server closes the slow connections by itself, accepting the ones
    // waiting in the backlog as descriptors free up.
    let all_closed = attack.wait_all_closed().await;
    let failures = sc.count_log_lines("accept failed");
    let bytes = sc.log_bytes();
    println!(
        "{} of {} connections closed by the server after {:?}; {failures} accept-failure lines, {bytes} bytes of log",
        attack.closed(),
        attack.count,
        started.elapsed()
    );
    assert!(
        all_closed,
        "the server closed only {} of {} connections within {CLOSE_WITHIN:?} at 48 descriptors",
        attack.closed(),
        attack.count
    );
    // At most one line per 10 s, and one at the start.
    let allowed = started.elapsed().as_secs() as usize / 10 + 2;
    assert!(
        failures <= allowed,
        "{failures} accept-failure lines ({bytes} bytes of log) at the descriptor limit, {allowed} allowed"
    );
    assert!(bytes < 64 * 1024, "the log grew to {bytes} bytes");

    sc.assert_livez("after the descriptor flood").await;
    sc.assert_refreshes(&sts, "after the descriptor flood")
        .await;
}

#[tokio::test]
async fn bad_endpoint_tokens_are_all_counted_but_warned_about_at_a_bounded_rate() {
    let (_sts, _token, sc) = start(Start {
        nofile: None,
        endpoint: true,
    })
    .await;
    let port = sc.endpoint.expect("endpoint port");
    let good = fs::read_to_string(sc.out.join("endpoint-token")).expect("endpoint-token");
    let started = std::time::Instant::now();
    for i in 0..1000 {
        let auth = (i % 2 == 1)
            .then_some("0000000000000000000000000000000000000000000000000000000000000000");
        let (status, _) = http_get(port, "/v1/credentials/reader", auth).await;
        let expected = if auth.is_some() { 403 } else { 401 };
        assert_eq!(status, expected, "bad request {i}");
    }
    let (status, body) = http_get(port, "/v1/credentials/reader", Some(&good)).await;
    assert_eq!(status, 200, "the right token still works: {body}");

    let (_, metrics) = http_get(sc.health, "/metrics", None).await;
    let missing = metric(
        &metrics,
        "rolecall_endpoint_rejected_requests_total{reason=\"missing_token\"}",
    );
    let wrong = metric(
        &metrics,
        "rolecall_endpoint_rejected_requests_total{reason=\"wrong_token\"}",
    );
    let warnings = sc.count_log_lines("request without the right Authorization header");
    println!(
        "1,000 bad requests in {:?}: {warnings} WARN lines; counted {missing:?} missing, {wrong:?} wrong",
        started.elapsed()
    );
    // At most one line per 10 s, and one at the start.
    let allowed = started.elapsed().as_secs() as usize / 10 + 2;
    assert!(
        (1..=allowed).contains(&warnings),
        "{warnings} WARN lines for 1,000 bad requests; log:\n{}",
        sc.log_text()
    );
    assert_eq!(
        (missing, wrong),
        (Some(500.0), Some(500.0)),
        "every rejection is counted, by reason:\n{metrics}"
    );
    assert!(
        !fs::read_to_string(&sc.log).unwrap().contains(&good),
        "the endpoint token reached the log"
    );
}
