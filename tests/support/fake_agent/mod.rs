//! [`FakeAgent`]: an in-process EKS Pod Identity agent on loopback (or on
//! given addresses), answering `GET /v1/credentials` from a script of
//! [`Reply`]s the way the real agent does (design24 §1 F2, F3, F5-F8).
//!
//! What it reproduces of aws/eks-pod-identity-agent:
//! - the token is the raw `Authorization` value; an empty one gets 400
//!   "Service account token cannot be empty", one that is not a JWT 400
//!   "Service account token cannot be parsed: ..."; a token that is not the
//!   accepted one ([`accept_token_file`](FakeAgent::accept_token_file),
//!   [`accept_token`](FakeAgent::accept_token)) gets what EKS Auth sends,
//!   400 `(InvalidTokenException)`;
//! - the `Host` check, when [`require_agent_host`](FakeAgent::require_agent_host)
//!   turns it on: the host without port and brackets must be
//!   `169.254.170.23` or `fd00:ec2::23`, else 403 "Access Denied. Called
//!   agent through invalid address, ...". It comes first, as in the agent;
//! - error bodies are `text/plain` plus `\n` (Go's `http.Error`), EKS Auth's
//!   as `[request-id]: (XxxException): message, fault: client|server`;
//! - the answer is compact JSON `AccessKeyId`, `SecretAccessKey`, `Token`,
//!   `AccountId`, `Expiration` (RFC3339Nano: fractional seconds, trailing
//!   zeros trimmed), no role ARN, no `Code`;
//! - the rate limiter (`set_rate_limit`) sits in front of everything: a call
//!   over it gets 429 "Too Many Requests" whatever the script says;
//! - [`Reply::Cached`]: the same keys per token until the agent renews them.
//!
//! The token is never stored: calls record a [`token_digest`] of it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rolecall::clock::Clock;

use super::fake_sts::{CallOutcome, TokenBucket};
use super::lock;

mod moto;
mod server;

/// The two addresses the real agent answers for (F1, F3).
pub const AGENT_HOSTS: [&str; 2] = ["169.254.170.23", "fd00:ec2::23"];

/// The account of the fake agent's sessions ([`Reply::Ok`]).
pub const AGENT_ACCOUNT: &str = "111122223333";

/// A field of the agent's JSON answer, for [`Reply::Missing`] and
/// [`Reply::Empty`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    AccessKeyId,
    SecretAccessKey,
    Token,
    AccountId,
    Expiration,
}

impl Field {
    /// The JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Field::AccessKeyId => "AccessKeyId",
            Field::SecretAccessKey => "SecretAccessKey",
            Field::Token => "Token",
            Field::AccountId => "AccountId",
            Field::Expiration => "Expiration",
        }
    }
}

/// What [`FakeAgent`] does with one request that passed the rate limit,
/// the `Host` check and the token check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// 200 with fresh, unique credentials expiring `lifetime` from now (by
    /// the agent's clock), `Expiration` always with a fraction of a second.
    Ok { lifetime: Duration },
    /// 200 with the credentials cached for this token (F8): the same keys
    /// as the last `Cached` answer to the same token, until they have 15 s
    /// or less left or [`FakeAgent::renew`] is called; then fresh ones of
    /// `lifetime`.
    Cached { lifetime: Duration },
    /// 200 with a real moto session: `AssumeRole` of `role_arn` on moto at
    /// `endpoint`, with the six EKS session tags (the "accept" slice fills
    /// in `moto.rs`).
    Moto { endpoint: String, role_arn: String },
    /// This HTTP status with this text body (`\n` is appended, as Go's
    /// `http.Error` does). See [`Reply::eks_error`] and the helpers.
    Error { status: u16, body: String },
    /// 200, `application/json`, a body that is not JSON.
    Garbage,
    /// 200 with a valid answer padded (an unknown field) to `bytes` bytes.
    Huge { bytes: usize },
    /// 200 with a valid answer lacking this field.
    Missing(Field),
    /// 200 with a valid answer where this field is `""`.
    Empty(Field),
    /// 200 with credentials that expired `expired_ago` before now.
    Stale { expired_ago: Duration },
    /// Waits `delay` (on the serving runtime's clock), then answers like
    /// `Ok` with a one-hour session.
    Slow { delay: Duration },
    /// Reads the request, never answers (until the agent is dropped).
    Hang,
    /// Closes the connection with a TCP reset and no answer.
    Reset,
}

impl Reply {
    /// 200 with the agent's usual 6-hour session (F9).
    pub fn ok() -> Reply {
        Reply::ok_for(Duration::from_secs(6 * 3600))
    }

    /// 200 with a session of `lifetime`.
    pub fn ok_for(lifetime: Duration) -> Reply {
        Reply::Ok { lifetime }
    }

    /// [`Reply::Cached`] with the agent's usual 6-hour session.
    pub fn cached() -> Reply {
        Reply::Cached {
            lifetime: Duration::from_secs(6 * 3600),
        }
    }

    /// A raw error: `status` with `body` (plus `\n`).
    pub fn error(status: u16, body: &str) -> Reply {
        Reply::Error {
            status,
            body: body.to_owned(),
        }
    }

    /// An EKS Auth error as the agent passes it on (F6):
    /// `[request-id]: (EXCEPTION): MESSAGE, fault: client` (`server` for 5xx).
    pub fn eks_error(status: u16, exception: &str, message: &str) -> Reply {
        let fault = if status >= 500 { "server" } else { "client" };
        Reply::error(
            status,
            &format!(
                "[{}]: ({exception}): {message}, fault: {fault}",
                server::request_id()
            ),
        )
    }

    /// 404 `ResourceNotFoundException`: no association for the service
    /// account.
    pub fn no_association() -> Reply {
        Reply::eks_error(
            404,
            "ResourceNotFoundException",
            "No Pod Identity Association found for the pod's service account",
        )
    }

    /// 400 `AccessDeniedException`: EKS Auth may not assume the role.
    pub fn access_denied() -> Reply {
        Reply::eks_error(
            400,
            "AccessDeniedException",
            "Failed to assume role: the role's trust policy does not allow pods.eks.amazonaws.com",
        )
    }

    /// 400 `InvalidTokenException` (also what a token that is not the
    /// accepted one gets).
    pub fn invalid_token() -> Reply {
        Reply::eks_error(
            400,
            "InvalidTokenException",
            "Failed to validate the service account token",
        )
    }

    /// 400 `ExpiredTokenException`.
    pub fn expired_token() -> Reply {
        Reply::eks_error(
            400,
            "ExpiredTokenException",
            "The service account token has expired",
        )
    }

    /// 429 "Too Many Requests", the agent's own rate limiter.
    pub fn throttle() -> Reply {
        Reply::error(429, "Too Many Requests")
    }

    /// 429 `ThrottlingException` from EKS Auth, passed through.
    pub fn eks_throttle() -> Reply {
        Reply::eks_error(429, "ThrottlingException", "Rate exceeded")
    }

    /// 500 `InternalServerException`.
    pub fn server_error() -> Reply {
        Reply::eks_error(500, "InternalServerException", "An internal error occurred")
    }

    /// 503 `ServiceUnavailableException`.
    pub fn unavailable() -> Reply {
        Reply::eks_error(
            503,
            "ServiceUnavailableException",
            "The service is unavailable",
        )
    }
}

/// The 64-bit FNV-1a digest of a token, in hex: what the agent records
/// instead of the token ([`FakeAgent::calls_with_token`]).
pub fn token_digest(token: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// One request as [`FakeAgent`] received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentCall {
    /// When it arrived (wall-clock monotonic).
    pub at: std::time::Instant,
    /// When it arrived on the serving runtime's clock (paused time for an
    /// agent from [`FakeAgent::start_local`]).
    pub received: tokio::time::Instant,
    pub method: String,
    pub path: String,
    /// The `Host` header as sent (`None` when absent).
    pub host: Option<String>,
    /// [`token_digest`] of `Authorization` (`None` when absent).
    pub token_digest: Option<String>,
    /// Every header but `Authorization` (names lower-case).
    pub headers: Vec<(String, String)>,
    /// The status answered (0 for `Hang` and `Reset`).
    pub status: u16,
    /// Accepted (a 200), throttled (the rate limit), or other.
    pub outcome: CallOutcome,
}

/// One credential set handed out by [`FakeAgent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub account_id: String,
    /// Exactly the `Expiration` sent.
    pub expiration: SystemTime,
}

/// Which tokens the agent takes.
#[derive(Clone, Debug, Default)]
enum Accept {
    /// Any non-empty JWT-shaped token (the agent's own checks only).
    #[default]
    AnyJwt,
    /// The current content of this file (whitespace-trimmed).
    File(PathBuf),
    /// One of these digests.
    Digests(Vec<String>),
}

struct State {
    script: VecDeque<Reply>,
    default: Reply,
    accept: Accept,
    require_host: bool,
    clock: Clock,
    limiter: Option<TokenBucket>,
    calls: Vec<AgentCall>,
    issued: Vec<AgentCredentials>,
    /// [`Reply::Cached`]: token digest -> the credentials it gets.
    cache: HashMap<String, AgentCredentials>,
}

struct Shared {
    state: Mutex<State>,
    /// Woken (`notify_waiters`) after every recorded request.
    notify: tokio::sync::Notify,
    /// Woken (`notify_all`) after every recorded request, for plain threads.
    cond: std::sync::Condvar,
}

/// Owned by the clones only, so dropping the last clone stops the server.
struct Inner {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    shutdown: Mutex<Option<tokio::sync::watch::Sender<bool>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(lock(&self.shutdown).take());
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

/// A fake EKS Pod Identity agent; see the module docs. Cheap to clone; the
/// server stops (and hanging connections close) with the last clone.
#[derive(Clone)]
pub struct FakeAgent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAgent")
            .field("url", &self.url())
            .field("calls", &self.calls())
            .finish()
    }
}

static CREDENTIAL_COUNTER: AtomicU64 = AtomicU64::new(0);
static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn listeners(addrs: &[SocketAddr]) -> Vec<std::net::TcpListener> {
    addrs
        .iter()
        .map(|addr| {
            let l = std::net::TcpListener::bind(addr)
                .unwrap_or_else(|e| panic!("FakeAgent: bind {addr}: {e}"));
            l.set_nonblocking(true).expect("FakeAgent: set_nonblocking");
            l
        })
        .collect()
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        state: Mutex::new(State {
            script: VecDeque::new(),
            default: Reply::ok(),
            accept: Accept::default(),
            require_host: false,
            clock: Clock::system(),
            limiter: None,
            calls: Vec::new(),
            issued: Vec::new(),
            cache: HashMap::new(),
        }),
        notify: tokio::sync::Notify::new(),
        cond: std::sync::Condvar::new(),
    })
}

impl FakeAgent {
    /// Binds `127.0.0.1:0` and serves on a task of the current tokio
    /// runtime (for tests under paused time, like
    /// [`FakeSts::start_local`](super::FakeSts::start_local)); outside a
    /// runtime it serves on its own thread, as [`start`](Self::start).
    /// On a current-thread runtime, a test that blocks its thread (waiting
    /// on a child process) starves the agent: use `start` there.
    pub fn start_local() -> FakeAgent {
        if tokio::runtime::Handle::try_current().is_err() {
            return FakeAgent::start();
        }
        let addrs = [SocketAddr::from(([127, 0, 0, 1], 0))];
        let listeners = listeners(&addrs);
        let bound = listeners.iter().map(local_addr).collect();
        let shared = shared();
        let (tx, rx) = tokio::sync::watch::channel(false);
        for l in listeners {
            tokio::spawn(server::serve(l, Arc::clone(&shared), rx.clone()));
        }
        FakeAgent::from_parts(shared, bound, tx, None)
    }

    /// Binds `127.0.0.1:0` and serves on a dedicated thread.
    pub fn start() -> FakeAgent {
        FakeAgent::start_on(&[SocketAddr::from(([127, 0, 0, 1], 0))])
    }

    /// Binds every one of `addrs` (port 0 picks one) and serves them all,
    /// with one state, on a dedicated thread. [`url`](Self::url) names the
    /// first.
    pub fn start_on(addrs: &[SocketAddr]) -> FakeAgent {
        assert!(!addrs.is_empty(), "FakeAgent: no address");
        let listeners = listeners(addrs);
        let bound: Vec<SocketAddr> = listeners.iter().map(local_addr).collect();
        let shared = shared();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fake-agent-{}", bound[0].port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("FakeAgent: build runtime");
                rt.block_on(async move {
                    let tasks: Vec<_> = listeners
                        .into_iter()
                        .map(|l| {
                            tokio::spawn(server::serve(l, Arc::clone(&server_shared), rx.clone()))
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                // Dropping `rt` cancels every connection task (`Hang`).
            })
            .expect("FakeAgent: spawn thread");
        FakeAgent::from_parts(shared, bound, tx, Some(thread))
    }

    fn from_parts(
        shared: Arc<Shared>,
        addrs: Vec<SocketAddr>,
        shutdown: tokio::sync::watch::Sender<bool>,
        thread: Option<std::thread::JoinHandle<()>>,
    ) -> FakeAgent {
        FakeAgent {
            inner: Arc::new(Inner {
                shared,
                addrs,
                shutdown: Mutex::new(Some(shutdown)),
                thread: Mutex::new(thread),
            }),
        }
    }

    /// `http://ADDR/v1/credentials` for the first bound address (`:80` is
    /// left out, as EKS writes the URL).
    pub fn url(&self) -> String {
        FakeAgent::url_for(self.inner.addrs[0])
    }

    /// `http://ADDR/v1/credentials` for `addr` (IPv6 in brackets, no `:80`).
    pub fn url_for(addr: SocketAddr) -> String {
        let host = match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        if addr.port() == 80 {
            format!("http://{host}/v1/credentials")
        } else {
            format!("http://{host}:{}/v1/credentials", addr.port())
        }
    }

    /// The bound addresses, in the order given.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.inner.addrs.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.shared.state)
    }

    /// Takes only the current content of `path` (re-read at every request,
    /// whitespace-trimmed), as after a kubelet rotation only the new token
    /// is valid; any other token gets 400 `(InvalidTokenException)`.
    pub fn accept_token_file(&self, path: &Path) {
        self.state().accept = Accept::File(path.to_owned());
    }

    /// Takes only these tokens (their digests are kept, not them).
    pub fn accept_tokens(&self, tokens: &[&str]) {
        self.state().accept = Accept::Digests(tokens.iter().map(|t| token_digest(t)).collect());
    }

    /// Takes only `token`.
    pub fn accept_token(&self, token: &str) {
        self.accept_tokens(&[token]);
    }

    /// Turns the agent's `Host` check on (403 for any other host).
    pub fn require_agent_host(&self) {
        self.state().require_host = true;
    }

    /// Queues replies for the next requests (FIFO, one per request that
    /// gets past the limiter and the checks).
    pub fn script(&self, replies: Vec<Reply>) {
        self.state().script.extend(replies);
    }

    /// Queues one reply.
    pub fn push(&self, reply: Reply) {
        self.state().script.push_back(reply);
    }

    /// The reply once the script is used up (initially [`Reply::ok`]).
    pub fn set_default(&self, reply: Reply) {
        self.state().default = reply;
    }

    /// Takes "now" from `clock` (a [`Clock::tokio`] for paused tests).
    pub fn set_clock(&self, clock: Clock) {
        self.state().clock = clock;
    }

    /// The agent's per-node limiter: `rate_per_s` with bursts of `burst`
    /// (full when set); every request takes a token, before any check, and
    /// one over the limit gets 429 "Too Many Requests".
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

    /// Forgets every cached answer ([`Reply::Cached`]): the agent renewed.
    pub fn renew(&self) {
        self.state().cache.clear();
    }

    /// Requests received so far (every outcome).
    pub fn calls(&self) -> usize {
        self.state().calls.len()
    }

    /// Every request so far, in order.
    pub fn call_log(&self) -> Vec<AgentCall> {
        self.state().calls.clone()
    }

    /// Requests whose token had this [`token_digest`].
    pub fn calls_with_token(&self, digest: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.token_digest.as_deref() == Some(digest))
            .count()
    }

    /// The statuses answered, in order (0: no answer).
    pub fn statuses(&self) -> Vec<u16> {
        self.state().calls.iter().map(|c| c.status).collect()
    }

    /// Requests refused by the rate limit.
    pub fn throttled(&self) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.outcome == CallOutcome::Throttled)
            .count()
    }

    /// The distinct `Host` headers seen, in order of first appearance.
    pub fn hosts_seen(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for host in self.state().calls.iter().filter_map(|c| c.host.clone()) {
            if !seen.contains(&host) {
                seen.push(host);
            }
        }
        seen
    }

    /// The access key ids handed out, in order (a key the cache hands out
    /// again is listed once).
    pub fn issued(&self) -> Vec<String> {
        self.issued_credentials()
            .into_iter()
            .map(|c| c.access_key_id)
            .collect()
    }

    /// Every credential set handed out, in order.
    pub fn issued_credentials(&self) -> Vec<AgentCredentials> {
        self.state().issued.clone()
    }

    /// Waits until [`calls`](Self::calls) `>= n`; `false` after `timeout`
    /// on the wall clock (no tokio timer: see
    /// [`FakeSts::wait_for_calls`](super::FakeSts::wait_for_calls)).
    pub async fn wait_for_calls(&self, n: usize, timeout: Duration) -> bool {
        let notify = &self.inner.shared.notify;
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        let (fire, mut fired) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(timeout)
            {
                let _ = fire.send(());
            }
        });
        let _cancel = cancel;
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.calls() >= n {
                return true;
            }
            tokio::select! {
                _ = notified => {}
                _ = &mut fired => return self.calls() >= n,
            }
        }
    }

    /// [`wait_for_calls`](Self::wait_for_calls) from a plain thread.
    pub fn wait_for_calls_blocking(&self, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let shared = &self.inner.shared;
        let mut state = lock(&shared.state);
        while state.calls.len() < n {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            state = match shared.cond.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

fn local_addr(l: &std::net::TcpListener) -> SocketAddr {
    l.local_addr().expect("FakeAgent: local_addr")
}
