//! [`FakeSts`]: an in-process AWS STS on `127.0.0.1:0`, answering from a
//! script of [`Reply`]s and recording every request.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rolecall::clock::Clock;

use super::lock;

mod limit;
mod server;

#[allow(unused_imports)]
pub use limit::{CallOutcome, CallRecord, TokenBucket};
use server::serve;
#[allow(unused_imports)]
pub use server::{parse_form, signing_key};

/// What [`FakeSts`] does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Success with fresh, unique credentials expiring `lifetime` from now
    /// (by the server's clock, see [`FakeSts::set_clock`]; truncated to whole
    /// seconds).
    Ok { lifetime: Duration },
    /// An AWS Query `ErrorResponse` with this HTTP status and error code.
    Error {
        status: u16,
        code: String,
        message: String,
    },
    /// Success whose credentials expired `expired_ago` before now (a clock
    /// far ahead at the caller, or an endpoint replaying an old answer).
    Stale { expired_ago: Duration },
    /// HTTP 200 with a body of `bytes` bytes that never becomes a valid
    /// answer (a hostile or broken endpoint).
    Huge { bytes: usize },
    /// HTTP 200 whose body is not XML.
    Garbage,
    /// Read the request, never answer (until the server is dropped).
    Hang,
    /// Close the connection with a TCP reset and no response at all.
    Reset,
}

impl Reply {
    /// Success with a one-hour session.
    pub fn ok() -> Reply {
        Reply::Ok {
            lifetime: Duration::from_secs(3600),
        }
    }

    /// Success with a session of `lifetime`.
    pub fn ok_for(lifetime: Duration) -> Reply {
        Reply::Ok { lifetime }
    }

    /// Any AWS Query error.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::Error {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    /// 400 `Throttling` "Rate exceeded" (transient; the SDK retries it too).
    pub fn throttle() -> Reply {
        Reply::error(400, "Throttling", "Rate exceeded")
    }

    /// 403 `AccessDenied` as STS sends it when the trust policy does not match.
    pub fn access_denied() -> Reply {
        Reply::error(
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        )
    }

    /// 500 `InternalFailure`.
    pub fn server_error() -> Reply {
        Reply::error(
            500,
            "InternalFailure",
            "An internal error occurred. Try again.",
        )
    }
}

/// One request as [`FakeSts`] received it, form already decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsRequest {
    /// `Action`, e.g. `AssumeRoleWithWebIdentity` or `AssumeRole`.
    pub action: String,
    pub role_arn: String,
    pub session_name: String,
    /// `WebIdentityToken` (absent for `AssumeRole`).
    pub token: Option<String>,
    pub duration_seconds: Option<u64>,
    pub policy: Option<String>,
    /// `PolicyArns.member.N.arn`, ordered by N.
    pub policy_arns: Vec<String>,
    pub external_id: Option<String>,
    /// The `Authorization` header (SigV4 for a signed `AssumeRole`).
    pub authorization: Option<String>,
    /// Every form parameter, decoded, in the order sent.
    pub params: Vec<(String, String)>,
    /// Every HTTP header (names lower-case), in the order sent.
    pub headers: Vec<(String, String)>,
    /// When the request arrived, on the serving runtime's clock (paused
    /// time for a server from [`FakeSts::start_local`]).
    pub received: tokio::time::Instant,
}

impl StsRequest {
    /// The first form parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One credential set handed out by [`FakeSts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCredentials {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Exactly the `Expiration` sent (whole seconds).
    pub expiration: SystemTime,
}

struct State {
    global: VecDeque<Reply>,
    per_role: HashMap<String, VecDeque<Reply>>,
    default: Reply,
    /// Seconds added to the clock's time in every answer's `Date` header.
    date_offset_s: i64,
    /// Where expirations and the `Date` header take "now" from.
    clock: Clock,
    requests: Vec<StsRequest>,
    issued: Vec<IssuedCredentials>,
    /// The account-wide rate limit ([`FakeSts::set_rate_limit`]).
    limiter: Option<TokenBucket>,
    /// Every `AssumeRole*` call with its outcome ([`FakeSts::call_log`]).
    call_log: Vec<CallRecord>,
}

struct Shared {
    state: Mutex<State>,
    /// Woken (`notify_waiters`) after every recorded request.
    notify: tokio::sync::Notify,
}

/// Owned by the `FakeSts` clones only (never by the server thread), so that
/// dropping the last clone runs `Drop` and stops the server.
struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(lock(&self.shutdown).take());
        if let Some(thread) = lock(&self.thread).take() {
            // The server thread only has to leave its accept loop and drop its
            // runtime (which cancels hanging connections), so this is quick.
            let _ = thread.join();
        }
    }
}

/// A fake AWS STS endpoint; see the module docs. Cheap to clone; the server
/// stops (and hanging connections close) when the last clone is dropped.
#[derive(Clone)]
pub struct FakeSts {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeSts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSts")
            .field("endpoint", &self.endpoint())
            .field("calls", &self.calls())
            .finish()
    }
}

/// Process-wide counter so credentials are unique even across several
/// `FakeSts` instances in one test binary.
static CREDENTIAL_COUNTER: AtomicU64 = AtomicU64::new(0);
static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A listener on `127.0.0.1:0` and fresh, empty state.
fn bind() -> (std::net::TcpListener, SocketAddr, Arc<Shared>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("FakeSts: bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("FakeSts: set_nonblocking");
    let addr = listener.local_addr().expect("FakeSts: local_addr");
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            global: VecDeque::new(),
            per_role: HashMap::new(),
            default: Reply::ok(),
            date_offset_s: 0,
            clock: Clock::system(),
            requests: Vec::new(),
            issued: Vec::new(),
            limiter: None,
            call_log: Vec::new(),
        }),
        notify: tokio::sync::Notify::new(),
    });
    (listener, addr, shared)
}

impl FakeSts {
    /// Binds `127.0.0.1:0` and serves on a task of the *current* runtime
    /// instead of a thread: for tests under paused time, where a server on
    /// another thread would let the paused clock jump ahead while a request
    /// is in flight. Loopback I/O between tasks of one runtime keeps it busy,
    /// so the clock only advances when both sides are idle.
    pub fn start_local() -> FakeSts {
        let (listener, addr, shared) = bind();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(listener, Arc::clone(&shared), shutdown_rx));
        FakeSts {
            inner: Arc::new(Inner {
                shared,
                addr,
                shutdown: Mutex::new(Some(shutdown_tx)),
                thread: Mutex::new(None),
            }),
        }
    }

    /// Forgets the requests and credentials recorded so far (long soak
    /// tests read them periodically, then clear them to keep memory flat).
    pub fn clear_history(&self) {
        let mut state = self.state();
        state.requests = Vec::new();
        state.issued = Vec::new();
        state.call_log = Vec::new();
    }

    /// [`start`](Self::start), answering by default with sessions of
    /// `lifetime` ([`Reply::ok_for`]).
    pub fn granting(lifetime: Duration) -> FakeSts {
        let sts = FakeSts::start();
        sts.set_default(Reply::ok_for(lifetime));
        sts
    }

    /// Binds `127.0.0.1:0` and starts serving on a dedicated thread.
    pub fn start() -> FakeSts {
        let (listener, addr, shared) = bind();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fake-sts-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("FakeSts: build runtime");
                rt.block_on(serve(listener, server_shared, shutdown_rx));
                // Dropping `rt` here cancels every connection task (`Hang`).
            })
            .expect("FakeSts: spawn thread");
        FakeSts {
            inner: Arc::new(Inner {
                shared,
                addr,
                shutdown: Mutex::new(Some(shutdown_tx)),
                thread: Mutex::new(Some(thread)),
            }),
        }
    }

    /// `http://127.0.0.1:PORT`, for `--sts-endpoint` / `AWS_ENDPOINT_URL_STS`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.shared.state)
    }

    /// Queues a reply for the next request (FIFO, one per request).
    pub fn push(&self, reply: Reply) {
        self.state().global.push_back(reply);
    }

    /// Queues a reply for the next request for `role_arn`; these take
    /// precedence over the global queue.
    pub fn push_for_role(&self, role_arn: &str, reply: Reply) {
        self.state()
            .per_role
            .entry(role_arn.to_owned())
            .or_default()
            .push_back(reply);
    }

    /// Makes every answer's `Date` header `offset_s` seconds off the
    /// server's clock (STS's clock as a skewed caller sees it).
    pub fn set_date_offset(&self, offset_s: i64) {
        self.state().date_offset_s = offset_s;
    }

    /// Takes "now" (for expirations and the `Date` header) from `clock`
    /// instead of the system clock: give it the [`Clock::tokio`] that the
    /// sidecar under paused time runs on, and sessions expire in simulated
    /// time. Meant for [`start_local`](Self::start_local), whose server runs
    /// on the test's (paused) runtime.
    pub fn set_clock(&self, clock: Clock) {
        self.state().clock = clock;
    }

    /// "Now" by the server's clock.
    pub fn now(&self) -> SystemTime {
        self.state().clock.now()
    }

    /// The reply used when both queues are empty (initially [`Reply::ok`]).
    pub fn set_default(&self, reply: Reply) {
        self.state().default = reply;
    }

    /// Limits the whole "account" to `rate_per_s` successful calls per
    /// second with bursts of `burst` (a token bucket, full when set): a
    /// call over the limit gets what real STS sends, HTTP 400
    /// `<Code>Throttling</Code>` "Rate exceeded" ([`Reply::throttle`]).
    ///
    /// Scripted replies win: only a call whose reply would be a success
    /// ([`Reply::Ok`] or [`Reply::Stale`]) takes a token, so an outage
    /// (`set_default(Reply::server_error())`) answers 500 to everyone and
    /// leaves the bucket to refill, as a broken STS would not count calls
    /// it never served. A success popped from a queue and then throttled is
    /// used up all the same.
    pub fn set_rate_limit(&self, rate_per_s: f64, burst: u32) {
        self.state().limiter = Some(TokenBucket::new(
            rate_per_s,
            burst,
            std::time::Instant::now(),
        ));
    }

    /// Removes the rate limit.
    pub fn clear_rate_limit(&self) {
        self.state().limiter = None;
    }

    /// Every `AssumeRole*` call so far: when it arrived, its role, and
    /// whether it was accepted, throttled or answered otherwise.
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.state().call_log.clone()
    }

    /// The calls of [`call_log`](Self::call_log) refused by the rate limit.
    pub fn throttled(&self) -> usize {
        self.state()
            .call_log
            .iter()
            .filter(|c| c.outcome == CallOutcome::Throttled)
            .count()
    }

    /// Number of requests received so far (every request, every outcome).
    pub fn calls(&self) -> usize {
        self.state().requests.len()
    }

    /// Number of requests received so far for `role_arn`.
    pub fn calls_for_role(&self, role_arn: &str) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|r| r.role_arn == role_arn)
            .count()
    }

    /// The access key ids that `GetCallerIdentity` requests were signed
    /// with, in order (what SDK clients under test really used).
    pub fn signed_with(&self) -> Vec<String> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.action == "GetCallerIdentity")
            .filter_map(|r| {
                r.authorization
                    .as_deref()
                    .and_then(signing_key)
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<StsRequest> {
        self.state().requests.clone()
    }

    /// Requests received for `role_arn`, in order.
    pub fn requests_for_role(&self, role_arn: &str) -> Vec<StsRequest> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.role_arn == role_arn)
            .cloned()
            .collect()
    }

    /// Every credential set handed out, in order.
    pub fn issued(&self) -> Vec<IssuedCredentials> {
        self.state().issued.clone()
    }

    /// The most recent credential set handed out for `role_arn`.
    pub fn last_issued_for_role(&self, role_arn: &str) -> Option<IssuedCredentials> {
        self.state()
            .issued
            .iter()
            .rev()
            .find(|c| c.role_arn == role_arn)
            .cloned()
    }

    /// Waits until [`calls`](Self::calls) `>= n`; `false` on timeout.
    ///
    /// Woken by a `Notify` on every request. The timeout is measured on the
    /// wall clock and registers no tokio timer, so under `start_paused` it
    /// neither fires early nor stops the paused clock from auto-advancing to
    /// the program's own timers (a refresh scheduled for "in 30 minutes" still
    /// happens while a test waits here).
    pub async fn wait_for_calls(&self, n: usize, timeout: Duration) -> bool {
        let mut deadline = RealDeadline::new(timeout);
        let notify = &self.inner.shared.notify;
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.calls() >= n {
                return true;
            }
            tokio::select! {
                _ = notified => {}
                _ = deadline.elapsed() => return self.calls() >= n,
            }
        }
    }
}

/// exits as soon as the deadline is dropped.
/// A wall-clock deadline that registers no tokio timer (see
/// [`FakeSts::wait_for_calls`]). A helper thread sleeps on a channel and
struct RealDeadline {
    _cancel: std::sync::mpsc::Sender<()>,
    fired: tokio::sync::oneshot::Receiver<()>,
    done: bool,
}

impl RealDeadline {
    fn new(timeout: Duration) -> RealDeadline {
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        let (fire, fired) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(timeout)
            {
                let _ = fire.send(());
            }
        });
        RealDeadline {
            _cancel: cancel,
            fired,
            done: false,
        }
    }

    /// Resolves once the deadline has passed (immediately ever after).
    async fn elapsed(&mut self) {
        if !self.done {
            let _ = (&mut self.fired).await;
            self.done = true;
        }
    }
}
