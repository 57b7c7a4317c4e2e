//! The one way to ask the running sidecar for something: a [`Command`] on
//! the supervisor's one channel ([`Commands`]). SIGHUP and SIGUSR1
//! (`crate::signal`), the configuration watcher and the control socket all
//! send them; the supervisor carries them out in the order they come.

use tokio::sync::{mpsc, oneshot};

use super::protocol::Answer;

/// Where the answer to a command goes (the control socket's connection).
pub type Reply = oneshot::Sender<Answer>;

/// What the supervisor is asked to do.
#[derive(Debug)]
pub enum Command {
    /// Re-read the configuration: SIGHUP, a change of the configuration
    /// file, `rolecall reload`. One reload runs at a time; one asked
    /// during it runs after it (the file may have changed after it was
    /// read), and its `reply` gets that one's result.
    Reload(Option<Reply>),
    /// Refresh `profile`, or every profile (`None`), now: at most one
    /// attempt per profile every 5 s, never one that shortens a backoff.
    /// Without a reply (SIGUSR1) a profile refreshed less than 5 s ago
    /// refreshes when the 5 s are up; with one (`rolecall refresh`) the
    /// answer says what each profile did now, such a profile skipped.
    Refresh {
        profile: Option<String>,
        reply: Option<Reply>,
    },
    /// Name the output sets and their directories (`rolecall status`).
    Sets(Reply),
}

impl Command {
    /// A reload nobody waits for (SIGHUP, a change of the file).
    pub fn reload() -> Command {
        Command::Reload(None)
    }

    /// A refresh of every profile nobody waits for (SIGUSR1).
    pub fn refresh_all() -> Command {
        Command::Refresh {
            profile: None,
            reply: None,
        }
    }
}

/// Commands waiting in the channel: the control socket's
/// [`MAX_CONNECTIONS`](super::MAX_CONNECTIONS), each waiting for room, and
/// a burst of signals, which are dropped beyond it.
const CAPACITY: usize = 16;

/// The supervisor's one channel of commands: every source holds a
/// [`Commands::sender`]; [`crate::run`] takes the channel.
#[derive(Debug)]
pub struct Commands {
    tx: mpsc::Sender<Command>,
    rx: mpsc::Receiver<Command>,
}

impl Default for Commands {
    fn default() -> Self {
        Commands::new()
    }
}

impl Commands {
    pub fn new() -> Commands {
        let (tx, rx) = mpsc::channel(CAPACITY);
        Commands { tx, rx }
    }

    /// A sender of commands to the supervisor.
    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.tx.clone()
    }

    /// The channel's two ends.
    pub(crate) fn split(self) -> (mpsc::Sender<Command>, mpsc::Receiver<Command>) {
        (self.tx, self.rx)
    }
}
