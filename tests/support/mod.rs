//! Shared support for rolecall's integration tests.
//!
//! Tests fake only the boundary (see STYLE.md, habit 10):
//!
//! - [`FakeSts`]: a real HTTP server on `127.0.0.1:0` that speaks the AWS
//!   Query protocol the way `aws-sdk-sts` sends it (`AssumeRoleWithWebIdentity`
//!   and `AssumeRole`), answers from a script of [`Reply`]s and records every
//!   request. It runs on its own thread with its own current-thread runtime,
//!   so it answers even while the test's runtime has paused time or is blocked.
//! - [`TokenDir`]: a temporary directory laid out the way kubelet's
//!   AtomicWriter lays out a projected service-account token volume, with
//!   AtomicWriter-style rotation.
//! - JWT helpers ([`jwt`], [`valid_jwt`], [`expired_jwt`], ...), time helpers
//!   ([`now_unix`], [`format_utc`], [`parse_utc`]), waiting helpers
//!   ([`wait_until`], [`wait_until_real`]), [`free_port`] and a strict
//!   [`parse_ini`] for asserting on rolecall's output files.
//!
//! Use it from a test file with `mod support;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Locks a mutex, ignoring poisoning: a panicking test thread must not turn
/// every later assertion into a confusing `PoisonError`.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Fake STS
// ---------------------------------------------------------------------------

/// What [`FakeSts`] does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Success with fresh, unique credentials expiring `lifetime` from now
    /// (wall clock, truncated to whole seconds).
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
    /// Seconds added to the real time in every answer's `Date` header.
    date_offset_s: i64,
    requests: Vec<StsRequest>,
    issued: Vec<IssuedCredentials>,
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
            requests: Vec::new(),
            issued: Vec::new(),
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

    /// The reply used when both queues are empty (initially [`Reply::ok`]).
    /// Makes every answer's `Date` header `offset_s` seconds off the real
    /// time (STS's clock as a skewed caller sees it).
    pub fn set_date_offset(&self, offset_s: i64) {
        lock(&self.inner.shared.state).date_offset_s = offset_s;
    }

    pub fn set_default(&self, reply: Reply) {
        self.state().default = reply;
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

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("FakeSts: listener");
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                // A second descriptor for the same socket lets a `Reset` reply
                // set SO_LINGER=0 (so the close is an RST) after hyper owns it.
                let reset_fd = {
                    use std::os::fd::AsFd as _;
                    stream.as_fd().try_clone_to_owned().ok().map(std::net::TcpStream::from)
                };
                let reset_fd = Arc::new(Mutex::new(reset_fd));
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(Arc::clone(&shared), Arc::clone(&reset_fd), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` (percent escapes, `+` as space).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &[u8]) -> String {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < s.len() => {
                    let hex = std::str::from_utf8(&s[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (decode(&pair[..eq]), decode(&pair[eq + 1..])),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn request_id() -> String {
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        fastrand::u16(..0x1000),
        n
    )
}

fn xml_response(status: StatusCode, request_id: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .header("x-amzn-RequestId", request_id)
        .body(Full::new(Bytes::from(body)))
        .expect("FakeSts: response")
}

async fn handle(
    shared: Arc<Shared>,
    reset_fd: Arc<Mutex<Option<std::net::TcpStream>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = req.into_body().collect().await?.to_bytes();
    let params = parse_form(&body);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut policy_arns: Vec<(u64, String)> = params
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("PolicyArns.member.")?.strip_suffix(".arn")?;
            Some((n.parse().ok()?, v.clone()))
        })
        .collect();
    policy_arns.sort_by_key(|(n, _)| *n);
    let request = StsRequest {
        action: get("Action").unwrap_or_default(),
        role_arn: get("RoleArn").unwrap_or_default(),
        session_name: get("RoleSessionName").unwrap_or_default(),
        token: get("WebIdentityToken"),
        duration_seconds: get("DurationSeconds").and_then(|d| d.parse().ok()),
        policy: get("Policy"),
        policy_arns: policy_arns.into_iter().map(|(_, arn)| arn).collect(),
        external_id: get("ExternalId"),
        authorization,
        params: params.clone(),
        headers,
        received: tokio::time::Instant::now(),
    };

    if request.action == "GetCallerIdentity" {
        lock(&shared.state).requests.push(request.clone());
        shared.notify.notify_waiters();
        return Ok(caller_identity(&shared, &request, &request_id()));
    }
    let known = matches!(
        request.action.as_str(),
        "AssumeRoleWithWebIdentity" | "AssumeRole"
    );
    let reply = {
        let mut state = lock(&shared.state);
        state.requests.push(request.clone());
        if !known {
            Reply::error(
                400,
                "InvalidAction",
                &format!(
                    "Could not find operation {} for version 2011-06-15",
                    request.action
                ),
            )
        } else if let Some(reply) = state
            .per_role
            .get_mut(&request.role_arn)
            .and_then(VecDeque::pop_front)
        {
            reply
        } else if let Some(reply) = state.global.pop_front() {
            reply
        } else {
            state.default.clone()
        }
    };
    shared.notify.notify_waiters();

    let rid = request_id();
    let offset = lock(&shared.state).date_offset_s;
    let date = aws_smithy_types::DateTime::from(if offset >= 0 {
        SystemTime::now() + Duration::from_secs(offset as u64)
    } else {
        SystemTime::now() - Duration::from_secs(offset.unsigned_abs())
    })
    .fmt(aws_smithy_types::date_time::Format::HttpDate)
    .expect("FakeSts: date");
    let mut response = answer(&shared, &request, reply, &rid, &reset_fd).await?;
    response
        .headers_mut()
        .insert("date", date.parse().expect("FakeSts: date header"));
    Ok(response)
}

async fn answer(
    shared: &Shared,
    request: &StsRequest,
    reply: Reply,
    rid: &str,
    reset_fd: &Mutex<Option<std::net::TcpStream>>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    match reply {
        Reply::Ok { lifetime } => Ok(success(shared, request, SystemTime::now() + lifetime, rid)),
        Reply::Stale { expired_ago } => Ok(success(
            shared,
            request,
            SystemTime::now() - expired_ago,
            rid,
        )),
        Reply::Huge { bytes } => {
            let mut body = b"<AssumeRoleWithWebIdentityResponse><!--".to_vec();
            body.resize(bytes, b'x');
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/xml")
                .body(Full::new(Bytes::from(body)))
                .expect("FakeSts: response"))
        }
        Reply::Error {
            status,
            code,
            message,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = if status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            };
            let body = format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error>\
                 <RequestId>{rid}</RequestId></ErrorResponse>\n",
                xml_escape(&code),
                xml_escape(&message),
            );
            Ok(xml_response(status, rid, body))
        }
        Reply::Garbage => Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/xml")
            .header("x-amzn-RequestId", rid)
            .body(Full::new(Bytes::from_static(
                b"this is not XML at all {\"oops\": [1, 2, \n",
            )))
            .expect("FakeSts: response")),
        Reply::Hang => std::future::pending().await,
        Reply::Reset => {
            if let Some(fd) = lock(reset_fd).take() {
                // SO_LINGER is a property of the socket, shared by both
                // descriptors; the close of hyper's descriptor then sends RST.
                if let Ok(stream) = tokio::net::TcpStream::from_std(fd) {
                    let _ = stream.set_zero_linger();
                }
            }
            // A service error makes hyper drop the connection unanswered.
            Err("FakeSts: scripted connection reset".into())
        }
    }
}

fn success(
    shared: &Shared,
    req: &StsRequest,
    expires: SystemTime,
    rid: &str,
) -> Response<Full<Bytes>> {
    let n = CREDENTIAL_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let access_key_id = format!("ASIAFAKE{n:012}");
    let secret_access_key = format!("fakeSecret/{n:012}/{}", "wJalrXUtnFEMIK7MDENGbPxRfiCY")
        .chars()
        .take(40)
        .collect::<String>();
    let session_token = format!(
        "FQoGZXIvYXdzE{n:012}/fake+session+token/{}+{n:012}==",
        "IQoJb3JpZ2luX2VjEJr//////////wEaCWV1LXdlc3QtMSJHMEUCIQDfakeSessionTokenBodyPadding"
    );
    let expiration_secs = expires
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let expiration = UNIX_EPOCH + Duration::from_secs(expiration_secs);
    lock(&shared.state).issued.push(IssuedCredentials {
        role_arn: req.role_arn.clone(),
        access_key_id: access_key_id.clone(),
        secret_access_key: secret_access_key.clone(),
        session_token: session_token.clone(),
        expiration,
    });

    let account = req
        .role_arn
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .unwrap_or("111122223333");
    let role_name = req.role_arn.rsplit('/').next().unwrap_or("role");
    let session = &req.session_name;
    let web_identity = req.action == "AssumeRoleWithWebIdentity";
    let op = if web_identity {
        "AssumeRoleWithWebIdentity"
    } else {
        "AssumeRole"
    };
    let (prelude, postlude) = if web_identity {
        (
            "<SubjectFromWebIdentityToken>system:serviceaccount:default:app</SubjectFromWebIdentityToken>\n    \
             <Audience>sts.amazonaws.com</Audience>\n    ",
            "\n    <Provider>https://oidc.example</Provider>",
        )
    } else {
        ("", "")
    };
    let body = format!(
        "<{op}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  \
         <{op}Result>\n    \
         {prelude}<AssumedRoleUser>\
         <Arn>arn:aws:sts::{account}:assumed-role/{role}/{session}</Arn>\
         <AssumedRoleId>AROAFAKE:{session}</AssumedRoleId>\
         </AssumedRoleUser>\n    \
         <Credentials>\
         <AccessKeyId>{access_key_id}</AccessKeyId>\
         <SecretAccessKey>{secret}</SecretAccessKey>\
         <SessionToken>{token}</SessionToken>\
         <Expiration>{expiration}</Expiration>\
         </Credentials>{postlude}\n  \
         </{op}Result>\n  \
         <ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata>\n\
         </{op}Response>\n",
        account = xml_escape(account),
        role = xml_escape(role_name),
        session = xml_escape(session),
        secret = xml_escape(&secret_access_key),
        token = xml_escape(&session_token),
        expiration = format_utc(expiration),
    );
    xml_response(StatusCode::OK, rid, body)
}

/// The access key id a SigV4 `Authorization` header was signed with.
pub fn signing_key(authorization: &str) -> Option<&str> {
    authorization.split("Credential=").nth(1)?.split('/').next()
}

/// `GetCallerIdentity`, signed by an SDK with credentials rolecall
/// published: answers with the assumed role the key was issued for, so SDK
/// clients under test succeed, and the key they signed with is recorded.
fn caller_identity(shared: &Shared, req: &StsRequest, rid: &str) -> Response<Full<Bytes>> {
    let key = req
        .authorization
        .as_deref()
        .and_then(signing_key)
        .unwrap_or_default();
    let role = lock(&shared.state)
        .issued
        .iter()
        .find(|c| c.access_key_id == key)
        .map(|c| c.role_arn.clone());
    let Some(role) = role else {
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message>\
             </Error><RequestId>{rid}</RequestId></ErrorResponse>\n"
        );
        return xml_response(StatusCode::FORBIDDEN, rid, body);
    };
    let account = role.split(':').nth(4).unwrap_or("111122223333");
    let name = role.rsplit('/').next().unwrap_or("role");
    let body = format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <GetCallerIdentityResult><Arn>arn:aws:sts::{account}:assumed-role/{name}/sdk</Arn>\
         <UserId>AROAFAKE:sdk</UserId><Account>{account}</Account></GetCallerIdentityResult>\
         <ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></GetCallerIdentityResponse>\n",
        account = xml_escape(account),
        name = xml_escape(name),
    );
    xml_response(StatusCode::OK, rid, body)
}

/// A wall-clock deadline that registers no tokio timer (see
/// [`FakeSts::wait_for_calls`]). A helper thread sleeps on a channel and
/// exits as soon as the deadline is dropped.
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

// ---------------------------------------------------------------------------
// Kubelet-style projected token directory
// ---------------------------------------------------------------------------

static DATA_DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary directory laid out like kubelet's AtomicWriter output:
///
/// ```text
/// DIR/..2026_11_29_01_02_03.123456789/token   the data (mode 0644)
/// DIR/..data  -> ..2026_11_29_01_02_03.123456789
/// DIR/token   -> ..data/token                 what apps are given
/// ```
pub struct TokenDir {
    tmp: tempfile::TempDir,
    lock: Mutex<()>,
}

impl std::fmt::Debug for TokenDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenDir")
            .field("dir", &self.tmp.path())
            .finish()
    }
}

impl TokenDir {
    /// Creates the directory holding `initial_token`.
    pub fn new(initial_token: &str) -> TokenDir {
        let tmp = tempfile::Builder::new()
            .prefix("rolecall-token-")
            .tempdir()
            .expect("TokenDir: create temp dir");
        let this = TokenDir {
            tmp,
            lock: Mutex::new(()),
        };
        let dir = this.dir();
        let data = this.write_data_dir(initial_token);
        symlink(&data, dir.join("..data")).expect("TokenDir: symlink ..data");
        this.ensure_user_visible();
        this
    }

    /// `DIR/token`, the path an app (or rolecall) is given.
    pub fn path(&self) -> PathBuf {
        self.dir().join("token")
    }

    /// `DIR`, the directory rolecall should watch.
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().to_path_buf()
    }

    /// The timestamped directory `..data` currently points at.
    pub fn data_dir(&self) -> PathBuf {
        let target = std::fs::read_link(self.dir().join("..data")).expect("TokenDir: ..data");
        self.dir().join(target)
    }

    /// The token currently visible through [`path`](Self::path).
    pub fn read(&self) -> String {
        std::fs::read_to_string(self.path()).expect("TokenDir: read token")
    }

    /// Replaces the token exactly like AtomicWriter: new timestamped dir,
    /// `..data_tmp -> new`, `rename(..data_tmp, ..data)`, remove the old dir.
    pub fn rotate(&self, new_token: &str) {
        let _guard = lock(&self.lock);
        let dir = self.dir();
        let old = std::fs::read_link(dir.join("..data")).ok();
        let new = self.write_data_dir(new_token);
        let tmp_link = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp_link);
        symlink(&new, &tmp_link).expect("TokenDir: symlink ..data_tmp");
        std::fs::rename(&tmp_link, dir.join("..data")).expect("TokenDir: rename ..data_tmp");
        self.ensure_user_visible();
        if let Some(old) = old.filter(|old| *old != new) {
            std::fs::remove_dir_all(dir.join(old)).expect("TokenDir: remove old data dir");
        }
    }

    /// Removes the token file inside the current data dir, so `DIR/token`
    /// dangles (reads fail with `NotFound`). A later [`rotate`](Self::rotate)
    /// brings it back.
    pub fn remove_token(&self) {
        let _guard = lock(&self.lock);
        let file = self.data_dir().join("token");
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("TokenDir: remove {}: {e}", file.display()),
        }
    }

    /// Writes `..<UTC timestamp>.<unique digits>/token`; returns the
    /// directory's name (relative to `DIR`).
    fn write_data_dir(&self, token: &str) -> PathBuf {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let (y, mo, d, h, mi, s) = civil_parts(now.as_secs());
        let mut suffix = u64::from(now.subsec_nanos());
        loop {
            // The counter keeps names unique even within one nanosecond.
            let unique =
                (suffix + DATA_DIR_COUNTER.fetch_add(1, Ordering::Relaxed)) % 1_000_000_000;
            let name = format!("..{y:04}_{mo:02}_{d:02}_{h:02}_{mi:02}_{s:02}.{unique:09}");
            let path = self.dir().join(&name);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .expect("TokenDir: chmod data dir");
                    let file = path.join("token");
                    std::fs::write(&file, token).expect("TokenDir: write token");
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                        .expect("TokenDir: chmod token");
                    return PathBuf::from(name);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => suffix += 1,
                Err(e) => panic!("TokenDir: create {}: {e}", path.display()),
            }
        }
    }

    /// `DIR/token -> ..data/token`, created once like kubelet does.
    fn ensure_user_visible(&self) {
        let link = self.path();
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join("token"), &link).expect("TokenDir: symlink token");
        }
    }
}

// ---------------------------------------------------------------------------
// JWTs
// ---------------------------------------------------------------------------

/// Issuer used by [`valid_jwt`].
pub const TEST_ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE";
/// Subject used by [`valid_jwt`].
pub const TEST_SUBJECT: &str = "system:serviceaccount:default:app";
/// Audience used by [`valid_jwt`].
pub const TEST_AUDIENCE: &str = "sts.amazonaws.com";

const FAKE_SIGNATURE: &[u8] = b"fake-signature-never-verified-";

/// Seconds since the Unix epoch, wall clock.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A JWT-shaped token (RS256 header, `kid` "test", fake 40-char signature).
/// `iat` and `nbf` are now, or an hour before `exp` if that is earlier.
pub fn jwt(iss: &str, sub: &str, aud: &str, exp_unix: u64) -> String {
    let iat = now_unix().min(exp_unix.saturating_sub(3600));
    jwt_from_claims(&serde_json::json!({
        "iss": iss,
        "sub": sub,
        "aud": aud,
        "exp": exp_unix,
        "iat": iat,
        "nbf": iat,
    }))
}

/// A JWT-shaped token with arbitrary claims (e.g. `aud` as an array, or no
/// `exp`).
pub fn jwt_from_claims(claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"test"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(FAKE_SIGNATURE),
    )
}

/// A token like EKS issues, valid for 24 hours.
pub fn valid_jwt() -> String {
    valid_jwt_with_sub(TEST_SUBJECT)
}

/// [`valid_jwt`] with another `sub`.
pub fn valid_jwt_with_sub(sub: &str) -> String {
    jwt(TEST_ISSUER, sub, TEST_AUDIENCE, now_unix() + 24 * 3600)
}

/// [`valid_jwt`] that expired an hour ago.
pub fn expired_jwt() -> String {
    jwt(
        TEST_ISSUER,
        TEST_SUBJECT,
        TEST_AUDIENCE,
        now_unix().saturating_sub(3600),
    )
}

/// Decodes a JWT's payload (no signature check); panics if it is not a JWT.
pub fn decode_jwt_claims(token: &str) -> serde_json::Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT (want 3 parts): {token:?}");
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1])
        .unwrap_or_else(|e| panic!("JWT payload is not base64url: {e}"));
    serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("JWT payload is not JSON: {e}"))
}

// ---------------------------------------------------------------------------
// Time formatting (no chrono)
// ---------------------------------------------------------------------------

/// (year, month, day) for days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_parts(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `2026-11-29T01:02:03Z` (UTC, whole seconds), as STS formats `Expiration`.
pub fn format_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_secs();
    let (y, m, d, h, mi, s) = civil_parts(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` (what rolecall and
/// STS write); panics on anything else. Fractions are truncated.
pub fn parse_utc(s: &str) -> SystemTime {
    let fail = || -> ! { panic!("not a UTC RFC 3339 timestamp: {s:?}") };
    let rest = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or_else(|| fail());
    let (date, time) = rest.split_once('T').unwrap_or_else(|| fail());
    let time = time.split_once('.').map_or(time, |(whole, frac)| {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            fail()
        }
        whole
    });
    let num = |part: &str, len: usize| -> u64 {
        if part.len() != len || !part.bytes().all(|b| b.is_ascii_digit()) {
            fail()
        }
        part.parse().unwrap_or_else(|_| fail())
    };
    let date: Vec<&str> = date.split('-').collect();
    let time: Vec<&str> = time.split(':').collect();
    if date.len() != 3 || time.len() != 3 {
        fail()
    }
    let (y, m, d) = (num(date[0], 4), num(date[1], 2), num(date[2], 2));
    let (h, mi, sec) = (num(time[0], 2), num(time[1], 2), num(time[2], 2));
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        fail()
    }
    let days = days_from_civil(y as i64, m as u32, d as u32);
    let days = u64::try_from(days).unwrap_or_else(|_| fail());
    UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + sec)
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

/// Polls `f` every 10 ms until it holds; `false` after `timeout`.
///
/// Uses tokio time for both the poll interval and the deadline: under
/// `start_paused` both are virtual, so the paused clock advances while
/// waiting (use this to wait for timer-driven behaviour). To wait for
/// something that happens in real time outside the runtime (a file written
/// by a child process, a request to [`FakeSts`]) in a paused test, use
/// [`wait_until_real`].
pub async fn wait_until<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_until`], but on the wall clock, sleeping on the blocking
/// pool: under `start_paused` the paused clock does not auto-advance while
/// this waits (tokio holds auto-advance while a blocking task runs).
pub async fn wait_until_real<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(10)))
            .await
            .expect("wait_until_real: sleep task");
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    // Below Linux's ephemeral range (32768-60999 by default), so that no
    // outgoing connection of a parallel test can take the port between this
    // check and the bind of the program under test; random, so that parallel
    // tests rarely pick the same one.
    for _ in 0..1000 {
        let port = fastrand::u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("free_port: no free port in 20000..32000");
}

/// Parses an INI file strictly: `[section]` headers, `key = value` lines,
/// blank lines and `#`/`;` comment lines. Panics (with the line) on a key
/// outside a section, a duplicate section or key, or any other line.
pub fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    try_parse_ini(text).unwrap_or_else(|e| panic!("INI {e}"))
}

/// [`try_parse_ini`] for a file as rolecall writes it, for readers that race
/// the writer and count what they find: also refuses a missing final newline
/// and empty values (rolecall writes neither), the marks of a torn file.
pub fn try_parse_written_ini(
    text: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    let sections = try_parse_ini(text)?;
    match sections
        .iter()
        .find(|(_, keys)| keys.values().any(String::is_empty))
    {
        Some((name, _)) => Err(format!("empty value in [{name}]")),
        None => Ok(sections),
    }
}

/// [`parse_ini`] that reports instead of panicking.
pub fn try_parse_ini(text: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("line {lineno}: unterminated section: {raw:?}"))?
                .trim();
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(format!("line {lineno}: bad section name: {raw:?}"));
            }
            if out.insert(name.to_owned(), BTreeMap::new()).is_some() {
                return Err(format!("line {lineno}: duplicate section [{name}]"));
            }
            current = Some(name.to_owned());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {lineno}: expected `key = value`: {raw:?}"))?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("line {lineno}: bad key: {raw:?}"));
        }
        let section = current
            .as_ref()
            .ok_or_else(|| format!("line {lineno}: key outside any section: {raw:?}"))?;
        let keys = out.get_mut(section).expect("section exists");
        if keys.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!(
                "line {lineno}: duplicate key {key:?} in [{section}]"
            ));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The sidecar in-process, and HTTP probes
// ---------------------------------------------------------------------------

/// `rolecall::run` on a task of the current runtime, with the handles that
/// drive it: control messages (what SIGHUP and SIGUSR1 send) and shutdown.
/// The rolecall binary with an empty environment (but `PATH` and a
/// `HOSTNAME`) and no standard input.
pub fn rolecall_command() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rolecall"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOSTNAME", "test-pod")
        .stdin(std::process::Stdio::null());
    c
}

/// [`rolecall_command`] with the health listener off and both output pipes
/// captured, for [`run_for`].
pub fn rolecall_piped() -> std::process::Command {
    let mut c = rolecall_command();
    c.env("ROLECALL_HEALTH_ADDR", "")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// `--token-file`, `--output-dir`, `--region eu-west-1` and
/// `--sts-endpoint` for a run against `sts` and `token`.
pub fn base_args(sts: &FakeSts, token: &TokenDir, out: &Path) -> Vec<String> {
    vec![
        "--token-file".into(),
        token.path().display().to_string(),
        "--output-dir".into(),
        out.display().to_string(),
        "--region".into(),
        "eu-west-1".into(),
        "--sts-endpoint".into(),
        sts.endpoint(),
    ]
}

/// The flags of an in-process sidecar against `sts` and `token`, writing to
/// `out`, publishing `profiles` (`NAME=ROLE_ARN`), region `eu-west-1`, no
/// health listener; tests override the rest with struct update syntax.
pub fn test_flags(
    sts: &FakeSts,
    token: &TokenDir,
    out: &Path,
    profiles: &[&str],
) -> rolecall::config::Flags {
    rolecall::config::Flags {
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        token_file: Some(token.path().display().to_string()),
        output_dir: Some(out.display().to_string()),
        region: Some("eu-west-1".into()),
        sts_endpoint: Some(sts.endpoint()),
        health_addr: Some(String::new()),
        ..rolecall::config::Flags::default()
    }
}

/// What one run of the binary did.
pub struct Run {
    /// `None` when killed by a signal (a panic with `panic = "abort"`) or
    /// after the limit.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Killed because it outlived the limit.
    pub hung: bool,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {:?}{}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            if self.hung { " (killed: hung)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` (with piped stdout and stderr, as [`rolecall_piped`] sets
/// them) to completion on the wall clock, killing it after `limit`.
pub fn run_for(cmd: &mut std::process::Command, limit: Duration) -> Run {
    use std::io::Read as _;
    let mut child = cmd.spawn().expect("spawn rolecall");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + limit;
    let mut hung = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            hung = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        hung,
    }
}

pub struct Running {
    pub controls: tokio::sync::mpsc::Sender<rolecall::Control>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), rolecall::RunError>>,
}

impl Running {
    /// Starts the sidecar; a reload re-applies the same configuration.
    pub fn start(config: rolecall::config::Config, opts: rolecall::Options) -> Running {
        let reload_config = config.clone();
        Self::start_with_reload(config, move || Ok(reload_config.clone()), opts)
    }

    /// Starts the sidecar; `reload` is what a SIGHUP reads.
    pub fn start_with_reload(
        config: rolecall::config::Config,
        reload: impl Fn() -> Result<rolecall::config::Config, rolecall::config::ConfigError>
        + Send
        + 'static,
        opts: rolecall::Options,
    ) -> Running {
        let (controls, rx) = tokio::sync::mpsc::channel(4);
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            rolecall::run(config, reload, opts, rx, s.cancelled_owned()).await
        });
        Running {
            controls,
            stop,
            task,
        }
    }

    /// Stops it as SIGTERM would; returns how long that took.
    pub async fn stop(self) -> Duration {
        let started = std::time::Instant::now();
        self.stop.cancel();
        self.task
            .await
            .expect("the sidecar task")
            .expect("the sidecar stops cleanly");
        started.elapsed()
    }
}

/// `GET path` on 127.0.0.1:`port` with an optional `Authorization` header;
/// `(status, body)`, or `(0, "")` when nothing listens.
pub async fn http_get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
