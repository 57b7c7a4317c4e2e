use super::*;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[test]
fn accept_backoff_doubles_from_10_ms_to_a_1_s_cap() {
    let mut waits = Vec::new();
    let mut previous = None;
    for _ in 0..10 {
        let w = accept_backoff(previous);
        waits.push(w.as_millis());
        previous = Some(w);
    }
    assert_eq!(
        waits,
        [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000],
        "after a success the wait starts again at 10 ms"
    );
    assert_eq!(accept_backoff(None), ACCEPT_BACKOFF_MIN);
}

async fn ok_server(cap: usize, body: String) -> (SocketAddr, CancellationToken) {
    let stop = CancellationToken::new();
    let (addr, _task) = serve_with_cap(
        "127.0.0.1:0".parse().unwrap(),
        move |_req| crate::health::text(StatusCode::OK, body.clone()),
        crate::metrics::Metrics::new(),
        stop.clone(),
        cap,
    )
    .await
    .unwrap();
    (addr, stop)
}

async fn get(addr: SocketAddr, extra_header: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /livez HTTP/1.1\r\nHost: x\r\n{extra_header}Connection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn responses_larger_than_the_buffer_are_sent_whole() {
    let body = "x".repeat(100 * 1024);
    let (addr, stop) = ok_server(4, body.clone()).await;
    let got = get(addr, "").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{}", &got[..40]);
    assert!(got.ends_with(&body), "a 100 KiB body arrives whole");
    stop.cancel();
}

#[tokio::test]
async fn a_request_head_over_the_limit_gets_431() {
    let (addr, stop) = ok_server(4, "ok".into()).await;
    let pad = format!("X-Pad: {}\r\n", "a".repeat(MAX_BUF_SIZE));
    let got = get(addr, &pad).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    let fine = format!("X-Pad: {}\r\n", "a".repeat(4096));
    assert!(get(addr, &fine).await.starts_with("HTTP/1.1 200"));
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let (addr, stop) = ok_server(4, "ok".into()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /livez HTTP/1.1\r\nHost:").await.unwrap();
    let opened = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    // Paused time advances only when every task is idle: the read ends
    // when the server's header timer fires, not before.
    let n = s.read(&mut buf).await.unwrap_or(0);
    let waited = opened.elapsed();
    assert!(
        waited >= HEADER_READ_TIMEOUT && waited < HEADER_READ_TIMEOUT * 2,
        "closed after {waited:?}"
    );
    assert_eq!(n, 0, "closed without an answer");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let (addr, stop) = ok_server(4, "ok".into()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answered = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    let waited = answered.elapsed();
    assert!(
        waited >= IDLE_TIMEOUT && waited < IDLE_TIMEOUT * 2,
        "closed {waited:?} after the response"
    );
    stop.cancel();
}

#[tokio::test]
async fn when_full_a_new_connection_is_served_and_the_oldest_is_closed() {
    let (addr, stop) = ok_server(3, "ok".into()).await;
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /livez HTTP/1.1\r\n").await.unwrap();
        slow.push(s);
    }
    assert!(get(addr, "").await.starts_with("HTTP/1.1 200"));
    let mut buf = [0u8; 16];
    let first = slow[0].read(&mut buf).await;
    assert!(
        matches!(first, Ok(0) | Err(_)),
        "the oldest connection is closed: {first:?}"
    );
    stop.cancel();
}
