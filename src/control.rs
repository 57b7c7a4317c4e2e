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
//!
//! The socket is a convenience: when it cannot be set up, one warning says
//! how to fix it and the sidecar runs on. `rolecall_control_socket_up`
//! tells whether it is up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::ratelimit::{LOG_INTERVAL, LogLimit};
use crate::refresher::{Manual, ManualOutcome, Outcome};
use crate::reload::ReloadPlan;
use crate::session::format_time;
use crate::state::Shared;

pub mod client;
pub mod protocol;
mod socket;

use protocol::{Answer, MAX_REQUEST_BYTES, ProfileResult, RefreshResult, Request};

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

/// A request for the supervisor, with where its answer goes.
#[derive(Debug)]
pub(crate) enum Command {
    Reload(oneshot::Sender<Answer>),
    Refresh {
        profile: Option<String>,
        reply: oneshot::Sender<Answer>,
    },
    Sets(oneshot::Sender<Answer>),
}

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
        let slot = match slots.admit(&stop) {
            Admitted::Open(slot) => slot,
            Admitted::ClosedIdle(slot) => {
                if let Some(suppressed) = evicted_log.admit() {
                    tracing::warn!(
                        suppressed,
                        "control socket: {MAX_CONNECTIONS} connections open; closed the oldest one that had not sent its request"
                    );
                }
                slot
            }
            Admitted::Busy => {
                if let Some(suppressed) = refused.admit() {
                    tracing::warn!(
                        suppressed,
                        "control socket: {MAX_CONNECTIONS} requests are being carried out; answered busy"
                    );
                }
                refuse_busy(&stream);
                continue;
            }
        };
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

/// The open connections, oldest first, and which of them are idle (their
/// request line not complete yet): those a new connection may close.
struct Slots {
    cap: usize,
    open: Mutex<SlotsInner>,
}

#[derive(Default)]
struct SlotsInner {
    next: u64,
    /// id → (idle, closes the connection).
    by_age: BTreeMap<u64, (bool, CancellationToken)>,
}

/// What [`Slots::admit`] made of a new connection.
enum Admitted {
    /// Served, in a free slot.
    Open(Slot),
    /// Served, in the slot of the oldest idle connection, now closed.
    ClosedIdle(Slot),
    /// Every slot holds a request being carried out.
    Busy,
}

/// One open connection; leaves [`Slots`] when dropped. `close` fires when a
/// newer connection needs its slot (only while idle) or at shutdown.
struct Slot {
    slots: Arc<Slots>,
    id: u64,
    close: CancellationToken,
}

impl Slots {
    fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            cap: cap.max(1),
            open: Mutex::new(SlotsInner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotsInner> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection: a free one, else the oldest idle
    /// connection's (closing it), else none.
    fn admit(self: &Arc<Slots>, shutdown: &CancellationToken) -> Admitted {
        let mut inner = self.lock();
        let mut closed = false;
        if inner.by_age.len() >= self.cap {
            let oldest_idle = inner
                .by_age
                .iter()
                .find(|(_, (idle, _))| *idle)
                .map(|(id, _)| *id);
            let Some(id) = oldest_idle else {
                return Admitted::Busy;
            };
            if let Some((_, close)) = inner.by_age.remove(&id) {
                close.cancel();
            }
            closed = true;
        }
        let id = inner.next;
        inner.next += 1;
        let close = shutdown.child_token();
        inner.by_age.insert(id, (true, close.clone()));
        let slot = Slot {
            slots: self.clone(),
            id,
            close,
        };
        if closed {
            Admitted::ClosedIdle(slot)
        } else {
            Admitted::Open(slot)
        }
    }
}

impl Slot {
    /// The request line is complete: the connection is no longer idle, so
    /// no newer one closes it. False when it was closed meanwhile.
    fn working(&self) -> bool {
        match self.slots.lock().by_age.get_mut(&self.id) {
            Some((idle, _)) => {
                *idle = false;
                true
            }
            None => false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().by_age.remove(&self.id);
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
        Request::Reload => Command::Reload(reply),
        Request::Refresh { profile } => Command::Refresh { profile, reply },
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

/// The answer to `sets`: each writer's set and directory.
pub(crate) fn sets_answer<'a>(writers: impl Iterator<Item = &'a crate::output::Writer>) -> Answer {
    let mut sets: Vec<protocol::SetDir> = writers
        .map(|w| protocol::SetDir {
            name: w.set.clone(),
            dir: w.dir.display().to_string(),
        })
        .collect();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    Answer {
        ok: true,
        sets: Some(sets),
        ..Answer::default()
    }
}

/// The answer to a reload that applied `plan`.
pub(crate) fn reload_applied(plan: &ReloadPlan) -> Answer {
    let (added, changed, removed) = plan.summary();
    let own = |v: Vec<&str>| Some(v.into_iter().map(str::to_owned).collect());
    Answer {
        ok: true,
        added: own(added),
        changed: own(changed),
        removed: own(removed),
        restart_needed: own(plan.restart_needed.clone()),
        ..Answer::default()
    }
}

/// Who waits for the result of a reload: those of the reload running, and
/// those that asked during it (the file may have changed after it was
/// read, so they get the next one's).
#[derive(Debug, Default)]
pub(crate) struct ReloadWaiters {
    running: Vec<oneshot::Sender<Answer>>,
    next: Vec<oneshot::Sender<Answer>>,
}

impl ReloadWaiters {
    /// Adds `reply` to the reload that starts now, or (`in_flight`) to the
    /// one after the reload running.
    pub fn wait(&mut self, reply: oneshot::Sender<Answer>, in_flight: bool) {
        if in_flight {
            self.next.push(reply);
        } else {
            self.running.push(reply);
        }
    }

    /// Answers the reload that finished; the next one's waiters move up.
    pub fn answer(&mut self, answer: &Answer) {
        for w in self.running.drain(..) {
            let _ = w.send(answer.clone());
        }
        self.running = std::mem::take(&mut self.next);
    }
}

/// Carries out a refresh of `profile` (or all of `refreshers`, by name):
/// asks each refresher, then answers, on a task of its own, once every
/// attempt it started ended or [`REFRESH_WAIT`] passed.
pub(crate) fn refresh(
    refreshers: BTreeMap<String, Manual>,
    profile: Option<String>,
    shared: Arc<Shared>,
    reply: oneshot::Sender<Answer>,
) {
    let targets: Vec<(String, Manual)> = match profile {
        None => refreshers.into_iter().collect(),
        Some(name) => match refreshers.get(&name) {
            Some(m) => vec![(name, m.clone())],
            None => {
                let names: Vec<&str> = refreshers.keys().map(String::as_str).collect();
                let _ = reply.send(Answer::bad_request(format!(
                    "no profile {}; configured: {}",
                    crate::config::printable(&name),
                    names.join(", ")
                )));
                return;
            }
        },
    };
    let asked: Vec<(String, Result<oneshot::Receiver<ManualOutcome>, ()>)> = targets
        .into_iter()
        .map(|(name, manual)| {
            let (tx, rx) = oneshot::channel();
            let sent = manual.try_send(tx).map(|()| rx).map_err(|_| ());
            (name, sent)
        })
        .collect();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        let mut results = Vec::new();
        for (name, asked) in asked {
            let outcome = match asked {
                Err(()) => Some(ManualOutcome::Skipped(
                    "a refresh of this profile was already asked for".into(),
                )),
                Ok(rx) => tokio::time::timeout_at(deadline, rx)
                    .await
                    .ok()
                    .and_then(Result::ok),
            };
            results.push(profile_result(&shared, name, outcome));
        }
        let ok = results
            .iter()
            .all(|r| matches!(r.result, RefreshResult::Refreshed | RefreshResult::Skipped));
        let _ = reply.send(Answer {
            ok,
            profiles: Some(results),
            ..Answer::default()
        });
    });
}

/// One profile's line of a refresh's answer, from what its refresher said
/// (`None`: no word in time) and its state.
fn profile_result(shared: &Shared, name: String, outcome: Option<ManualOutcome>) -> ProfileResult {
    let state = shared.get(&name);
    let mut class = None;
    let (result, expiration, detail) = match outcome {
        Some(ManualOutcome::Attempted(Outcome::Refreshed { .. })) => (
            RefreshResult::Refreshed,
            state
                .and_then(|s| s.session)
                .map(|s| format_time(s.expiration)),
            None,
        ),
        Some(ManualOutcome::Attempted(Outcome::Failed { class: c, .. })) => {
            class = Some(c.as_str().to_owned());
            (
                RefreshResult::Failed,
                None,
                Some(
                    state
                        .and_then(|s| s.last_error)
                        .unwrap_or_else(|| "the refresh failed; see the sidecar's logs".into()),
                ),
            )
        }
        Some(ManualOutcome::Skipped(why)) => (RefreshResult::Skipped, None, Some(why)),
        None => (
            RefreshResult::Pending,
            None,
            Some(format!(
                "no result within {} s; see rolecall status and the sidecar's logs",
                REFRESH_WAIT.as_secs()
            )),
        ),
    };
    ProfileResult {
        profile: name,
        result,
        expiration,
        detail,
        class,
    }
}

#[cfg(test)]
mod tests;
