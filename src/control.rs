//! The control socket: `rolecall reload` and `rolecall refresh`, run with
//! `kubectl exec` in the rolecall container (whose image has no shell to
//! send a signal from), talk to the running sidecar through a Unix socket
//! in a directory only that container mounts (see [`socket`]).
//!
//! The listener is bounded like the HTTP ones: at most
//! [`MAX_CONNECTIONS`] at once, one request line of at most 4 KiB read
//! within [`READ_TIMEOUT`], and only a peer running as this user or root
//! (`SO_PEERCRED`) is answered. A new connection beyond the cap closes the
//! oldest *idle* one (connected, its request line not yet complete), as the
//! HTTP listeners close their oldest: clients that connect and say nothing
//! cannot keep `rolecall reload` out. Only when every connection is a
//! request being carried out is the new one refused, with a `busy` answer
//! ([`protocol::Answer::busy`]) that the client prints. The supervisor
//! carries a request out ([`Command`]) and answers on a oneshot channel;
//! the answer is one JSON line ([`protocol`]), then the connection closes.
//! The connections' table is the HTTP listeners' ([`crate::slots`]).
//!
//! The socket is a convenience: when it cannot be set up, one warning says
//! how to fix it and the sidecar runs on. `rolecall_control_socket_up`
//! tells whether it is up.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::ratelimit::{LOG_INTERVAL, LogLimit};
use crate::slots::{Slot, Slots};

pub(crate) mod answers;
pub mod client;
mod command;
pub mod protocol;
mod socket;

pub use command::{Command, Commands, Reply};
use protocol::{Answer, MAX_REQUEST_BYTES, Request};

/// Connections served at once. Beyond it, a new connection closes the
/// oldest idle one, or is answered `busy` when none is idle.
pub const MAX_CONNECTIONS: usize = 4;
/// How long a client has to send its request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refresh waits for the attempts it started.
pub const REFRESH_WAIT: Duration = Duration::from_secs(30);
/// How long a connection waits for the supervisor's answer (a refresh's
/// wait, and a reload's parse, fit in it).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(35);

/// Serves the socket at `path` until `stop`; then removes it. Never fails
/// the sidecar: a socket that cannot be set up is one warning.
pub(crate) async fn serve(
    path: std::path::PathBuf,
    metrics: Metrics,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
) {
    let (listener, bound) = match socket::bind(&path).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "control socket not available: rolecall reload and rolecall refresh will not work (signals still do)");
            metrics.record_control_socket(false);
            return;
        }
    };
    tracing::info!(path = %path.display(), "control socket listening");
    metrics.record_control_socket(true);
    let slots = Slots::new(MAX_CONNECTIONS);
    let uid = crate::sys::effective_uid();
    let refused = LogLimit::new(LOG_INTERVAL);
    let evicted_log = LogLimit::new(LOG_INTERVAL);
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    let limit = crate::sys::limits::Limit::of(&e);
                    if let Some(limit) = limit {
                        metrics.count_limit_reached(limit, "control_socket");
                    }
                    if let Some(suppressed) = refused.admit() {
                        let hint = limit.map(|l| l.hint());
                        tracing::warn!(error = %e, suppressed, hint = hint.as_deref(), "control socket: accept failed");
                    }
                    // EMFILE and the like: let the condition pass.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(why) = admit_peer(&stream, uid) {
            if let Some(suppressed) = refused.admit() {
                tracing::warn!(why = %why, suppressed, "control socket: connection refused");
            }
            continue;
        }
        let Some(admitted) = slots.admit(&stop) else {
            if let Some(suppressed) = refused.admit() {
                tracing::warn!(
                    suppressed,
                    "control socket: {MAX_CONNECTIONS} requests are being carried out; answered busy"
                );
            }
            refuse_busy(&stream);
            continue;
        };
        if admitted.closed_oldest
            && let Some(suppressed) = evicted_log.admit()
        {
            tracing::warn!(
                suppressed,
                "control socket: {MAX_CONNECTIONS} connections open; closed the oldest one that had not sent its request"
            );
        }
        let slot = admitted.slot;
        let commands = commands.clone();
        conns.spawn(handle(stream, commands, slot));
    }
    conns.shutdown().await;
    bound.remove();
    metrics.record_control_socket(false);
}

/// Only a process of this user (`uid`) or root is answered.
fn admit_peer(stream: &UnixStream, uid: u32) -> Result<(), String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    match cred.uid() {
        u if u == uid || u == 0 => Ok(()),
        u => Err(format!(
            "peer runs as uid {u}, neither this user ({uid}) nor root"
        )),
    }
}

/// Answers `busy` on a connection the listener has no slot for, without
/// waiting: what the client already sent is read first (so that closing
/// does not reset its read of the answer), then the answer goes into the
/// socket's buffer, and the connection closes.
fn refuse_busy(stream: &UnixStream) {
    let mut sink = [0u8; 4096];
    // Bounded: a request is one line of at most 4 KiB.
    for _ in 0..2 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = stream.try_write(Answer::busy(MAX_CONNECTIONS).to_line().as_bytes());
}

/// Reads one request, has it carried out, writes the answer, closes. An
/// idle connection whose slot a newer one takes is closed without an
/// answer.
async fn handle(stream: UnixStream, commands: mpsc::Sender<Command>, slot: Slot) {
    let (rd, mut wr) = stream.into_split();
    let read = tokio::select! {
        r = tokio::time::timeout(READ_TIMEOUT, read_line(rd)) => r,
        _ = slot.close.cancelled() => return,
    };
    let answer = match read {
        // Too slow, or gone: dropped without an answer.
        Err(_) | Ok(Err(LineError::Io)) => return,
        _ if !slot.working() => return,
        Ok(Err(LineError::TooLong)) => Answer::bad_request(format!(
            "the request is longer than {MAX_REQUEST_BYTES} bytes"
        )),
        Ok(Ok(line)) => match Request::parse(&line) {
            Ok(req) => {
                tokio::select! {
                    a = carry_out(req, &commands) => a,
                    _ = slot.close.cancelled() => return,
                }
            }
            Err(e) => Answer::bad_request(e),
        },
    };
    let reply = async {
        wr.write_all(answer.to_line().as_bytes()).await?;
        wr.shutdown().await
    };
    let _ = tokio::time::timeout(READ_TIMEOUT, reply).await;
}

enum LineError {
    TooLong,
    Io,
}

/// One line of at most [`MAX_REQUEST_BYTES`] (newline included), without
/// its newline; the end of the stream also ends it.
async fn read_line(rd: impl tokio::io::AsyncRead + Unpin) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    let mut capped = BufReader::new(rd).take(MAX_REQUEST_BYTES as u64 + 1);
    capped
        .read_until(b'\n', &mut line)
        .await
        .map_err(|_| LineError::Io)?;
    match line.last() {
        Some(b'\n') => {
            line.pop();
            Ok(line)
        }
        _ if line.len() > MAX_REQUEST_BYTES => Err(LineError::TooLong),
        _ => Ok(line),
    }
}

/// Sends `req` to the supervisor and waits (bounded) for its answer.
async fn carry_out(req: Request, commands: &mpsc::Sender<Command>) -> Answer {
    let (reply, answer) = oneshot::channel();
    let cmd = match req {
        Request::Reload => Command::Reload(Some(reply)),
        Request::Refresh { profile } => Command::Refresh {
            profile,
            reply: Some(reply),
        },
        Request::Sets => Command::Sets(reply),
    };
    if commands.send(cmd).await.is_err() {
        return Answer::refused(vec!["the sidecar is stopping".into()]);
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(a)) => a,
        Ok(Err(_)) => Answer::refused(vec!["the sidecar stopped before answering".into()]),
        Err(_) => Answer::refused(vec![format!(
            "no answer within {} s; see the sidecar's logs and rolecall status",
            ANSWER_TIMEOUT.as_secs()
        )]),
    }
}

#[cfg(test)]
mod tests;
