//! The HTTP side of [`FakeSts`](super::FakeSts): the accept loop, the AWS
//! Query form decoding and the XML answers.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::super::{BoxError, format_utc, lock};
use super::{
    CREDENTIAL_COUNTER, CallOutcome, CallRecord, IssuedCredentials, REQUEST_COUNTER, Reply, Shared,
    StsRequest,
};

pub(super) async fn serve(
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
    let received = std::time::Instant::now();
    let reply = {
        let mut state = lock(&shared.state);
        state.requests.push(request.clone());
        let scripted = if !known {
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
        };
        // The rate limit (FakeSts::set_rate_limit): only a would-be success
        // takes a token; scripted errors (an outage) win.
        let succeeds = matches!(scripted, Reply::Ok { .. } | Reply::Stale { .. });
        let throttled = succeeds
            && state
                .limiter
                .as_mut()
                .is_some_and(|bucket| !bucket.try_take(received));
        if known {
            let outcome = match (succeeds, throttled) {
                (_, true) => CallOutcome::Throttled,
                (true, false) => CallOutcome::Accepted,
                (false, false) => CallOutcome::Other,
            };
            let role_arn = request.role_arn.clone();
            state.call_log.push(CallRecord {
                at: received,
                role_arn,
                outcome,
            });
        }
        if throttled {
            Reply::throttle()
        } else {
            scripted
        }
    };
    shared.notify.notify_waiters();

    let rid = request_id();
    let (offset, now) = {
        let state = lock(&shared.state);
        (state.date_offset_s, state.clock.now())
    };
    let date = aws_smithy_types::DateTime::from(if offset >= 0 {
        now + Duration::from_secs(offset as u64)
    } else {
        now - Duration::from_secs(offset.unsigned_abs())
    })
    .fmt(aws_smithy_types::date_time::Format::HttpDate)
    .expect("FakeSts: date");
    let mut response = answer(&shared, &request, reply, now, &rid, &reset_fd).await?;
    response
        .headers_mut()
        .insert("date", date.parse().expect("FakeSts: date header"));
    Ok(response)
}

async fn answer(
    shared: &Shared,
    request: &StsRequest,
    reply: Reply,
    now: SystemTime,
    rid: &str,
    reset_fd: &Mutex<Option<std::net::TcpStream>>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    match reply {
        Reply::Ok { lifetime } => Ok(success(shared, request, now + lifetime, rid)),
        Reply::Stale { expired_ago } => Ok(success(shared, request, now - expired_ago, rid)),
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
