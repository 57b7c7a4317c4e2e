//! Turns Unix signals into control messages and a shutdown token.
//!
//! SIGTERM/SIGINT cancel the returned token (clean stop, files left in
//! place); SIGHUP asks for a configuration reload; SIGUSR1 for an immediate
//! refresh of every profile.

use futures_util::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Control;

/// Installs the handlers and spawns the task that forwards signals.
pub fn install() -> std::io::Result<(mpsc::Receiver<Control>, CancellationToken)> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    let (tx, rx) = mpsc::channel(8);
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
                    let _ = tx.try_send(Control::Reload);
                }
                SIGUSR1 => {
                    let _ = tx.try_send(Control::RefreshNow);
                }
                _ => {}
            }
        }
    });
    Ok((rx, stop))
}
