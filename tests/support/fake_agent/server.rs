//! The HTTP side of [`FakeAgent`](super::FakeAgent): the accept loop, the
//! agent's checks and its answers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::super::fake_sts::CallOutcome;
use super::super::{BoxError, lock};
use super::{
    AGENT_ACCOUNT, AGENT_HOSTS, Accept, AgentCall, AgentCredentials, CREDENTIAL_COUNTER, Field,
    REQUEST_COUNTER, Reply, Shared, token_digest,
};

type Answer = Response<Full<Bytes>>;

pub(super) async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("FakeAgent: listener");
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                // A second descriptor for the same socket lets a `Reset`
                // reply set SO_LINGER=0 (so the close is an RST).
                let reset_fd = {
                    use std::os::fd::AsFd as _;
                    stream.as_fd().try_clone_to_owned().ok().map(std::net::TcpStream::from)
                };
                let reset_fd = Arc::new(Mutex::new(reset_fd));
                let shared = Arc::clone(&shared);
                let mut stop = shutdown.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(Arc::clone(&shared), Arc::clone(&reset_fd), req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    // A `Hang` on the test's runtime ends with the agent.
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        }
    }
}

/// `[request-id]` of an EKS Auth error.
pub(super) fn request_id() -> String {
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

/// Go's `http.Error`: text/plain, the message plus `\n`.
fn text(status: u16, msg: &str) -> Answer {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Full::new(Bytes::from(format!("{msg}\n"))))
        .expect("FakeAgent: response")
}

fn json(body: Vec<u8>) -> Answer {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("FakeAgent: response")
}

/// What the agent's own checks decide before the script is consulted.
enum Verdict {
    Throttled,
    Refused(u16, String),
    Scripted(Reply),
}

async fn handle(
    shared: Arc<Shared>,
    reset_fd: Arc<Mutex<Option<std::net::TcpStream>>>,
    req: Request<Incoming>,
) -> Result<Answer, BoxError> {
    let received = std::time::Instant::now();
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| *k != hyper::header::AUTHORIZATION)
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_owned(), v)
        })
        .collect();
    let digest = token.as_deref().map(token_digest);
    let claims = token.as_deref().and_then(claims_of);
    let mut call = AgentCall {
        at: received,
        received: tokio::time::Instant::now(),
        method: req.method().as_str().to_owned(),
        path: req.uri().path().to_owned(),
        host: host.clone(),
        token_digest: digest.clone(),
        headers,
        status: 0,
        outcome: CallOutcome::Other,
    };

    let verdict = {
        let mut state = lock(&shared.state);
        let now = state.clock.now();
        if state
            .limiter
            .as_mut()
            .is_some_and(|bucket| !bucket.try_take(received))
        {
            Verdict::Throttled
        } else if call.path != "/v1/credentials" {
            Verdict::Refused(404, "404 page not found".into())
        } else if let Some(refusal) = state
            .require_host
            .then(|| host_refusal(host.as_deref().unwrap_or("")))
            .flatten()
        {
            Verdict::Refused(403, refusal)
        } else if let Some(refusal) = token_refusal(token.as_deref(), claims.as_ref(), now) {
            Verdict::Refused(400, refusal)
        } else if !accepted(&state.accept, token.as_deref().unwrap_or("")) {
            Verdict::Scripted(Reply::invalid_token())
        } else if let Some(reply) = state.script.pop_front() {
            Verdict::Scripted(reply)
        } else {
            Verdict::Scripted(state.default.clone())
        }
    };

    let reply = match verdict {
        Verdict::Throttled => {
            call.outcome = CallOutcome::Throttled;
            call.status = 429;
            record(&shared, call);
            return Ok(text(429, "Too Many Requests"));
        }
        Verdict::Refused(status, msg) => {
            call.status = status;
            record(&shared, call);
            return Ok(text(status, &msg));
        }
        Verdict::Scripted(reply) => reply,
    };
    match reply {
        Reply::Moto { endpoint, role_arn } => {
            let answer = match super::moto::assume(&endpoint, &role_arn, claims.as_ref()).await {
                Ok(creds) => {
                    lock(&shared.state).issued.push(creds.clone());
                    json(render(&creds, None, None, 0))
                }
                Err(e) => match Reply::eks_error(500, "InternalServerException", &e) {
                    Reply::Error { status, body } => text(status, &body),
                    _ => unreachable!(),
                },
            };
            call.status = answer.status().as_u16();
            call.outcome = outcome_of(call.status);
            record(&shared, call);
            Ok(answer)
        }
        Reply::Hang | Reply::Reset => {
            record(&shared, call);
            if let Reply::Reset = reply {
                if let Some(fd) = lock(&reset_fd).take()
                    && let Ok(stream) = tokio::net::TcpStream::from_std(fd)
                {
                    // SO_LINGER is shared by both descriptors: hyper's
                    // close then sends an RST.
                    let _ = stream.set_zero_linger();
                }
                return Err("FakeAgent: scripted connection reset".into());
            }
            std::future::pending().await
        }
        Reply::Slow { delay } => {
            call.status = 200;
            call.outcome = CallOutcome::Accepted;
            record(&shared, call);
            tokio::time::sleep(delay).await;
            Ok(answer(
                &shared,
                digest.as_deref(),
                Reply::ok_for(Duration::from_secs(3600)),
            ))
        }
        reply => {
            let answer = answer(&shared, digest.as_deref(), reply);
            call.status = answer.status().as_u16();
            call.outcome = outcome_of(call.status);
            record(&shared, call);
            Ok(answer)
        }
    }
}

fn outcome_of(status: u16) -> CallOutcome {
    if status == 200 {
        CallOutcome::Accepted
    } else {
        CallOutcome::Other
    }
}

fn record(shared: &Shared, call: AgentCall) {
    lock(&shared.state).calls.push(call);
    shared.notify.notify_waiters();
    shared.cond.notify_all();
}

/// The agent's `validateRequestTargetHost` (F3): port and brackets off,
/// then one of the two agent addresses exactly.
fn host_refusal(host: &str) -> Option<String> {
    let mut bare = host;
    if let Some(rest) = bare.strip_prefix('[') {
        // [v6] or [v6]:port
        if let Some(end) = rest.find(']') {
            bare = &rest[..end];
        }
    } else if let Some((h, port)) = bare.rsplit_once(':')
        && !h.contains(':')
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        bare = h;
    }
    if AGENT_HOSTS.contains(&bare) {
        return None;
    }
    Some(format!(
        "Access Denied. Called agent through invalid address, please use either [{}] address not {bare}",
        AGENT_HOSTS.join(" ")
    ))
}

/// The claims of a JWT-shaped token (`None` if it is not one).
fn claims_of(token: &str) -> Option<serde_json::Value> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&payload).ok()
}

/// The agent's `validateToken` (F2): non-empty, a parsable JWT, not expired.
fn token_refusal(
    token: Option<&str>,
    claims: Option<&serde_json::Value>,
    now: SystemTime,
) -> Option<String> {
    let token = token.unwrap_or("");
    if token.is_empty() {
        return Some("Service account token cannot be empty".into());
    }
    let Some(claims) = claims else {
        return Some(
            "Service account token cannot be parsed: token is malformed: token contains an invalid number of segments"
                .into(),
        );
    };
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match claims.get("exp").and_then(serde_json::Value::as_u64) {
        Some(exp) if exp <= now_s => Some(
            "Service account token failed basic claim validations: token has invalid claims: token is expired"
                .into(),
        ),
        _ => None,
    }
}

fn accepted(accept: &Accept, token: &str) -> bool {
    match accept {
        Accept::AnyJwt => true,
        Accept::File(path) => std::fs::read_to_string(path).is_ok_and(|t| t.trim() == token),
        Accept::Digests(digests) => digests.contains(&token_digest(token)),
    }
}

/// Fresh, unique credentials expiring at `expires`, recorded as issued.
fn mint(shared: &Shared, expires: SystemTime) -> AgentCredentials {
    let n = CREDENTIAL_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let creds = AgentCredentials {
        access_key_id: format!("ASIAPODID{n:011}"),
        secret_access_key: format!("podIdentitySecret/{n:012}/wJalrXUtnFEMIK7MDENG")
            .chars()
            .take(40)
            .collect(),
        session_token: format!(
            "IQoJb3JpZ2luX2VjEPodIdentity{n:012}//////////wEaCWV1LXdlc3QtMSJHMEUCIQDfake+pod+identity+{n:012}=="
        ),
        account_id: AGENT_ACCOUNT.into(),
        expiration: expires,
    };
    lock(&shared.state).issued.push(creds.clone());
    creds
}

/// "Now + lifetime", always with a fraction of a second (RFC3339Nano drops
/// a zero fraction, and the fake must exercise the parser): a whole-second
/// instant is moved 250 ms earlier.
fn expiry(now: SystemTime, lifetime: Duration) -> SystemTime {
    let t = now + lifetime;
    let whole = t
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() == 0);
    if whole {
        t - Duration::from_millis(250)
    } else {
        t
    }
}

fn answer(shared: &Shared, digest: Option<&str>, reply: Reply) -> Answer {
    let now = lock(&shared.state).clock.now();
    match reply {
        Reply::Ok { lifetime } => json(render(&mint(shared, expiry(now, lifetime)), None, None, 0)),
        Reply::Cached { lifetime } => {
            let key = digest.unwrap_or_default().to_owned();
            let cached = lock(&shared.state).cache.get(&key).cloned().filter(|c| {
                c.expiration
                    .duration_since(now)
                    .is_ok_and(|left| left > Duration::from_secs(15))
            });
            let creds = cached.unwrap_or_else(|| {
                let fresh = mint(shared, expiry(now, lifetime));
                lock(&shared.state).cache.insert(key, fresh.clone());
                fresh
            });
            json(render(&creds, None, None, 0))
        }
        Reply::Stale { expired_ago } => {
            json(render(&mint(shared, now - expired_ago), None, None, 0))
        }
        Reply::Missing(field) => json(render(
            &mint(shared, expiry(now, Duration::from_secs(3600))),
            Some(field),
            None,
            0,
        )),
        Reply::Empty(field) => json(render(
            &mint(shared, expiry(now, Duration::from_secs(3600))),
            None,
            Some(field),
            0,
        )),
        Reply::Huge { bytes } => json(render(
            &mint(shared, expiry(now, Duration::from_secs(3600))),
            None,
            None,
            bytes,
        )),
        Reply::Garbage => json(b"this is not JSON {\"AccessKeyId\": [1, 2, \n".to_vec()),
        Reply::Error { status, body } => text(status, &body),
        Reply::Moto { .. } | Reply::Slow { .. } | Reply::Hang | Reply::Reset => {
            unreachable!("handled by the caller")
        }
    }
}

/// The agent's JSON (Go's `json.Marshal` of `EksCredentialsResponse`:
/// compact, in this key order), without `missing`, with `empty` as `""`,
/// padded with an unknown field to `pad_to` bytes.
pub(super) fn render(
    creds: &AgentCredentials,
    missing: Option<Field>,
    empty: Option<Field>,
    pad_to: usize,
) -> Vec<u8> {
    let expiration = rfc3339_nano(creds.expiration);
    let fields = [
        (Field::AccessKeyId, creds.access_key_id.as_str()),
        (Field::SecretAccessKey, creds.secret_access_key.as_str()),
        (Field::Token, creds.session_token.as_str()),
        (Field::AccountId, creds.account_id.as_str()),
        (Field::Expiration, expiration.as_str()),
    ];
    let mut parts: Vec<String> = fields
        .iter()
        .filter(|(f, _)| Some(*f) != missing)
        .map(|(f, v)| {
            let v = if Some(*f) == empty { "" } else { v };
            format!("\"{}\":{}", f.key(), serde_json::Value::from(v))
        })
        .collect();
    let plain = format!("{{{}}}", parts.join(","));
    if pad_to > plain.len() {
        let overhead = ",\"Padding\":\"\"".len();
        let n = pad_to.saturating_sub(plain.len() + overhead);
        parts.push(format!("\"Padding\":\"{}\"", "x".repeat(n)));
        return format!("{{{}}}", parts.join(",")).into_bytes();
    }
    plain.into_bytes()
}

/// Go's `time.RFC3339Nano` in UTC: `2026-12-08T03:04:05.12345Z`
/// (fraction with trailing zeros trimmed, none when zero).
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).expect("time after 1970");
    let whole = super::super::format_utc(UNIX_EPOCH + Duration::from_secs(d.as_secs()));
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return whole;
    }
    let frac = format!("{nanos:09}");
    let frac = frac.trim_end_matches('0');
    format!("{}.{frac}Z", whole.trim_end_matches('Z'))
}
