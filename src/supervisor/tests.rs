//! The [`Reloader`] on its own: one reload at a time, one queued however
//! many are asked during it, and each reply answered with the result of a
//! reload that read the file after it was asked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::reloader::{Finished, Reloader};
use crate::config::{Config, ConfigError, Env, Flags};
use crate::control::protocol::Answer;

/// A reloader whose reads wait for the returned gate, counting them.
fn gated() -> (Reloader, std::sync::mpsc::Sender<()>, Arc<AtomicUsize>) {
    let (gate, opened) = std::sync::mpsc::channel::<()>();
    let opened = Mutex::new(opened);
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = reads.clone();
    let read = move || -> Result<Config, ConfigError> {
        counted.fetch_add(1, Ordering::SeqCst);
        let _ = opened.lock().unwrap().recv();
        let flags = Flags {
            profiles: vec!["a=arn:aws:iam::111122223333:role/a".into()],
            region: Some("eu-west-1".into()),
            control_socket: Some(String::new()),
            ..Flags::default()
        };
        Config::load(&flags, &Env::new())
    };
    (Reloader::new(Box::new(read)), gate, reads)
}

fn answer(f: Finished, text: &str) {
    assert!(matches!(f.read, Ok(Ok(_))), "the read succeeded");
    f.waiting.answer(&Answer::refused(vec![text.into()]));
}

// Paused: the waits that must time out do so at once (the reads run on
// threads of their own, on the wall clock).
#[tokio::test(start_paused = true)]
async fn reloads_asked_during_one_queue_one_more_and_wait_for_its_result() {
    let (mut reloader, gate, reads) = gated();
    let (first, mut first_rx) = oneshot::channel();
    let (second, mut second_rx) = oneshot::channel();
    let (third, mut third_rx) = oneshot::channel();
    reloader.ask(Some(first));
    reloader.ask(Some(second));
    reloader.ask(None);
    reloader.ask(Some(third));
    // The supervisor drops the wait whenever a command comes first.
    let waited = tokio::time::timeout(Duration::from_millis(20), reloader.finished()).await;
    assert!(waited.is_err(), "the first read waits for its gate");

    gate.send(()).unwrap();
    answer(reloader.finished().await, "first read");
    assert_eq!(first_rx.try_recv().unwrap().problems, ["first read"]);
    assert!(second_rx.try_recv().is_err() && third_rx.try_recv().is_err());

    gate.send(()).unwrap();
    answer(reloader.finished().await, "second read");
    assert_eq!(second_rx.try_recv().unwrap().problems, ["second read"]);
    assert_eq!(third_rx.try_recv().unwrap().problems, ["second read"]);

    // Nothing more runs: four asked, two reads.
    let idle = tokio::time::timeout(Duration::from_millis(50), reloader.finished()).await;
    assert!(idle.is_err(), "no third reload");
    assert_eq!(reads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_reload_asked_after_one_ended_starts_at_once_and_gets_its_own_result() {
    let (mut reloader, gate, reads) = gated();
    let (first, mut first_rx) = oneshot::channel();
    reloader.ask(Some(first));
    gate.send(()).unwrap();
    answer(reloader.finished().await, "first");
    assert_eq!(first_rx.try_recv().unwrap().problems, ["first"]);

    let (second, mut second_rx) = oneshot::channel();
    reloader.ask(Some(second));
    gate.send(()).unwrap();
    answer(reloader.finished().await, "second");
    assert_eq!(second_rx.try_recv().unwrap().problems, ["second"]);
    assert_eq!(reads.load(Ordering::SeqCst), 2);
}
