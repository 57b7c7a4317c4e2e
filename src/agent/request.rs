//! The agent's URL, taken apart for one plain-HTTP call (no DNS lookup,
//! no proxy), and the call itself: one connection, one `GET`, closed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::header::{ACCEPT, AUTHORIZATION, CONNECTION, HOST, HeaderValue, USER_AGENT};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use tokio::net::TcpStream;

/// The most of an answer that is read: a real one is under 2 KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Where one agent URL sends its calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The address connected to (an IP literal; `localhost` is 127.0.0.1).
    pub addr: SocketAddr,
    /// The `Host` header: the URL's authority exactly as written (the
    /// agent compares it with its own addresses).
    pub host: String,
    /// The path (and nothing else: no query, no fragment).
    pub path: String,
}

impl Target {
    /// `http://HOST[:PORT]/PATH` with HOST an IP literal (`[v6]`) or
    /// `localhost`; anything else is refused with the reason.
    pub fn parse(url: &str) -> Result<Target, &'static str> {
        let rest = url
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or("not an http:// URL")?;
        if rest.contains(['?', '#']) {
            return Err("a query or fragment");
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("user information in the URL");
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (ip, after) = v6.split_once(']').ok_or("an unclosed [")?;
                let ip = ip.parse::<IpAddr>().map_err(|_| "not an IPv6 address")?;
                (ip, after)
            }
            None => {
                let (name, after) = match authority.find(':') {
                    Some(i) => (&authority[..i], &authority[i..]),
                    None => (authority, ""),
                };
                let ip = if name.eq_ignore_ascii_case("localhost") {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    name.parse::<Ipv4Addr>()
                        .map(IpAddr::V4)
                        .map_err(|_| "a host that is not an IP address")?
                };
                (ip, after)
            }
        };
        let port = match port {
            "" => 80,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or("not a port")?,
        };
        Ok(Target {
            addr: SocketAddr::new(host, port),
            host: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// How one call failed before an answer was read whole.
#[derive(Debug)]
pub enum Failure {
    /// No connection within the connect timeout, or no whole answer within
    /// the attempt timeout.
    Timeout,
    /// The connection was refused, reset or closed early.
    Connection(String),
    /// A limit of the process or node (`EMFILE`...): no connection.
    Limit(crate::sys::limits::Limit, String),
    /// The answer's body was larger than [`MAX_RESPONSE_BYTES`].
    TooLarge,
    /// The token cannot stand in a header (the token reader refuses such
    /// tokens first).
    BadToken,
}

/// One `GET` of `target` with `token` as `Authorization`: the status and
/// the body (at most [`MAX_RESPONSE_BYTES`]), within `attempt` (and the
/// connection within `connect`).
pub async fn call(
    target: &Target,
    token: &str,
    connect: Duration,
    attempt: Duration,
) -> Result<(u16, Bytes), Failure> {
    match tokio::time::timeout(attempt, exchange(target, token, connect)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

async fn exchange(
    target: &Target,
    token: &str,
    connect: Duration,
) -> Result<(u16, Bytes), Failure> {
    let mut authorization = HeaderValue::from_str(token).map_err(|_| Failure::BadToken)?;
    authorization.set_sensitive(true);
    let host = HeaderValue::from_str(&target.host).map_err(|_| Failure::BadToken)?;
    let request = http::Request::get(target.path.as_str())
        .header(HOST, host)
        .header(AUTHORIZATION, authorization)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("rolecall/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| Failure::BadToken)?;
    let stream = match tokio::time::timeout(connect, TcpStream::connect(target.addr)).await {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(e)) => return Err(io_failure(&e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| Failure::Connection(e.to_string()))?;
    let answer = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Connection(e.to_string()))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    Failure::TooLarge
                } else {
                    Failure::Connection(e.to_string())
                }
            })?;
        Ok((status, body.to_bytes()))
    };
    // The connection is driven here, beside the exchange, until the answer
    // is read whole: once it ends (closed by the agent after the answer,
    // or failed), the exchange ends too, with the body or the error.
    tokio::pin!(conn, answer);
    let mut driving = true;
    loop {
        tokio::select! {
            result = &mut answer => return result,
            _ = &mut conn, if driving => driving = false,
        }
    }
}

fn io_failure(e: &std::io::Error) -> Failure {
    match crate::sys::limits::Limit::of(e) {
        Some(limit) => Failure::Limit(limit, e.to_string()),
        None => Failure::Connection(e.to_string()),
    }
}
