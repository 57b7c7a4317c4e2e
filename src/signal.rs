//! Turns Unix signals into commands and a shutdown token.
//!
//! SIGTERM/SIGINT cancel the returned token (clean stop, files left in
//! place); SIGHUP sends [`Command::Reload`]; SIGUSR1 a refresh of every
//! profile ([`Command::refresh_all`]). Neither waits: a signal that finds
//! the supervisor's channel full is dropped.

use futures_util::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::Command;

/// Installs the handlers and spawns the task that forwards signals to
/// `commands`.
pub fn install(commands: mpsc::Sender<Command>) -> std::io::Result<CancellationToken> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        while let Some(sig) = signals.next().await {
            match sig {
                SIGTERM | SIGINT => {
                    tracing::info!(signal = sig, "stopping");
                    token.cancel();
                }
                SIGHUP => {
                    let _ = commands.try_send(Command::reload());
                }
                SIGUSR1 => {
                    let _ = commands.try_send(Command::refresh_all());
                }
                _ => {}
            }
        }
    });
    Ok(stop)
}
