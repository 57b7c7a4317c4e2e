//! The reload in flight. One runs at a time, on a thread of its own (not
//! tokio's blocking pool, which panics when no thread can be started: see
//! `sys::limits`): reading and parsing a file must not stop the probes,
//! the refreshers or shutdown (the runtime has one thread). A reload asked
//! during it queues one more (the file may have changed after it was
//! read), however many were asked. A reload that could not start its
//! thread is answered as failed and tried again after
//! [`RELOAD_THREAD_RETRY`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, ConfigError};
use crate::control::Reply;
use crate::control::protocol::Answer;
use crate::sys::limits::{OnThread, ThreadError, run_on_thread};

/// When a reload could not start its thread (the pod's pids limit), how
/// long until it is tried again.
pub(super) const RELOAD_THREAD_RETRY: Duration = Duration::from_secs(5);
/// How often a reload that keeps failing at the thread limit is logged
/// (the first failure always is).
pub(super) const THREAD_LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Reads and validates the configuration again (`Config::load`).
pub(super) type ReadConfig = Box<dyn Fn() -> Result<Config, ConfigError> + Send>;

/// What a reload's thread returns.
pub(super) type Read = Result<Result<Config, ConfigError>, ThreadError>;

/// The reload running, the one queued after it, and who waits for each.
pub(super) struct Reloader {
    read: Arc<Mutex<ReadConfig>>,
    running: Option<OnThread<Result<Config, ConfigError>>>,
    /// One more reload after the running one.
    again: bool,
    /// When a reload whose thread could not start is tried again.
    retry: Option<Instant>,
    /// Who waits for the running reload's result.
    waiting: Vec<Reply>,
    /// Who asked during it: they get the next one's.
    waiting_next: Vec<Reply>,
}

/// A reload that ended: its result, and who waits for it.
pub(super) struct Finished {
    pub read: Read,
    pub waiting: Waiting,
}

/// Those a reload owes its answer.
pub(super) struct Waiting(Vec<Reply>);

impl Waiting {
    /// Answers everyone who waited for the reload.
    pub fn answer(self, answer: &Answer) {
        for r in self.0 {
            let _ = r.send(answer.clone());
        }
    }
}

impl Reloader {
    pub fn new(read: ReadConfig) -> Reloader {
        Reloader {
            read: Arc::new(Mutex::new(read)),
            running: None,
            again: false,
            retry: None,
            waiting: Vec::new(),
            waiting_next: Vec::new(),
        }
    }

    /// Asks for a reload: one starts now, or after the one running;
    /// `reply` gets the result of the one that starts now, or of the next.
    pub fn ask(&mut self, reply: Option<Reply>) {
        let queued = self.running.is_some();
        if let Some(reply) = reply {
            if queued {
                self.waiting_next.push(reply);
            } else {
                self.waiting.push(reply);
            }
        }
        if queued {
            self.again = true;
        } else {
            self.running = Some(self.start());
        }
    }

    fn start(&self) -> OnThread<Result<Config, ConfigError>> {
        let read = self.read.clone();
        run_on_thread("rolecall-reload", "the configuration reload", move || {
            (read.lock().unwrap_or_else(|e| e.into_inner()))()
        })
    }

    /// Completes when the running reload ends, the queued one (if any)
    /// started; starts the retry of a reload whose thread could not start
    /// when it is due. Pending while nothing runs or waits. Cancel-safe:
    /// what it changed before being dropped stands.
    pub async fn finished(&mut self) -> Finished {
        loop {
            let (running, retry) = (self.running.is_some(), self.retry);
            let thread = &mut self.running;
            tokio::select! {
                read = async { thread.as_mut().expect("guarded").await }, if running => {
                    return self.end(read);
                }
                () = async { tokio::time::sleep_until(retry.expect("guarded")).await }, if retry.is_some() => {
                    self.retry = None;
                    self.ask(None);
                }
                else => std::future::pending().await,
            }
        }
    }

    /// The running reload ended with `read`: the queued one starts.
    fn end(&mut self, read: Read) -> Finished {
        if matches!(read, Err(ThreadError::Unavailable { .. })) {
            self.retry = Some(Instant::now() + RELOAD_THREAD_RETRY);
        }
        self.running = None;
        if std::mem::take(&mut self.again) {
            self.running = Some(self.start());
        }
        let next = std::mem::take(&mut self.waiting_next);
        let waiting = Waiting(std::mem::replace(&mut self.waiting, next));
        Finished { read, waiting }
    }
}
