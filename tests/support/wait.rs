//! Waiting on a condition (never a bare sleep) and picking a free port.

use std::time::Duration;

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
