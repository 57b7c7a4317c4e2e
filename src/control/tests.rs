use tokio::io::{AsyncReadExt, AsyncWriteExt};

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::answers::refresh;
use super::protocol::RefreshResult;
use super::*;
use crate::config::Profile;
use crate::refresher::{Asked, Manual, ManualOutcome};
use crate::session::format_time;
use crate::state::{Shared, current_profile};
use std::sync::Arc;

/// `handle` on one end of a socket pair; the other end for the test, and
/// the commands the supervisor would receive.
fn served() -> (
    UnixStream,
    mpsc::Receiver<Command>,
    tokio::task::JoinHandle<()>,
) {
    let (client, server) = UnixStream::pair().unwrap();
    let (tx, rx) = mpsc::channel(4);
    let slot = Slots::new(1).admit(&CancellationToken::new()).unwrap().slot;
    let task = tokio::spawn(handle(server, tx, slot));
    (client, rx, task)
}

async fn answer_of(mut client: UnixStream) -> Answer {
    let mut text = String::new();
    client.read_to_string(&mut text).await.unwrap();
    assert_eq!(text.lines().count(), 1, "{text:?}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_request_reaches_the_supervisor_and_its_answer_the_client() {
    let (mut client, mut commands, _task) = served();
    client.write_all(b"{\"op\":\"reload\"}\n").await.unwrap();
    let Some(Command::Reload(Some(reply))) = commands.recv().await else {
        panic!("expected a reload");
    };
    reply.send(Answer::refused(vec!["f: bad".into()])).unwrap();
    let a = answer_of(client).await;
    assert!(!a.ok && !a.usage);
    assert_eq!(a.problems, ["f: bad"]);
}

#[tokio::test]
async fn a_request_may_end_with_the_stream_instead_of_a_newline() {
    let (mut client, mut commands, _task) = served();
    client
        .write_all(br#"{"op":"refresh","profile":"a"}"#)
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    match commands.recv().await {
        Some(Command::Refresh {
            profile,
            reply: Some(reply),
        }) => {
            assert_eq!(profile.as_deref(), Some("a"));
            drop(reply);
        }
        other => panic!("{other:?}"),
    }
    let a = answer_of(client).await;
    assert_eq!(a.problems, ["the sidecar stopped before answering"]);
}

#[tokio::test]
async fn a_line_over_4_kib_and_a_bad_request_are_refused_as_usage_errors() {
    let (mut client, mut commands, task) = served();
    let long = vec![b' '; MAX_REQUEST_BYTES + 1];
    client.write_all(&long).await.unwrap();
    let a = answer_of(client).await;
    assert!(
        a.usage && a.problems[0].contains("longer than 4096 bytes"),
        "{a:?}"
    );
    task.await.unwrap();
    assert!(
        commands.try_recv().is_err(),
        "nothing reached the supervisor"
    );

    let (mut client, _commands, _task) = served();
    client.write_all(b"{\"op\":\"status\"}\n").await.unwrap();
    let a = answer_of(client).await;
    assert!(
        a.usage && a.problems[0].contains(r#"{"op":"reload"}"#),
        "{a:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_line_is_dropped_after_5_s() {
    let (mut client, mut commands, task) = served();
    client.write_all(b"{\"op\":").await.unwrap();
    tokio::time::timeout(READ_TIMEOUT + Duration::from_millis(10), task)
        .await
        .expect("dropped in time")
        .unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "no answer: {rest:?}");
    assert!(commands.try_recv().is_err());
}

fn refreshers(names: &[&str]) -> (BTreeMap<String, Manual>, Vec<mpsc::Receiver<Asked>>) {
    let mut map = BTreeMap::new();
    let mut rxs = Vec::new();
    for n in names {
        let (tx, rx) = crate::refresher::manual_channel();
        map.insert(n.to_string(), tx);
        rxs.push(rx);
    }
    (map, rxs)
}

/// The refreshers of `map`, as the supervisor hands them over.
fn each(map: &BTreeMap<String, Manual>) -> impl Iterator<Item = (&str, &Manual)> + Clone {
    map.iter().map(|(n, m)| (n.as_str(), m))
}

#[tokio::test]
async fn an_unknown_profile_is_a_usage_error_listing_the_configured_ones() {
    let (map, _rxs) = refreshers(&["a", "b"]);
    let (tx, rx) = oneshot::channel();
    refresh(each(&map), Some("c\n".into()), &Shared::new(), Some(tx));
    let a = rx.await.unwrap();
    assert!(a.usage && !a.ok);
    assert_eq!(a.problems, ["no profile c\\n; configured: a, b"]);
}

#[tokio::test]
async fn a_refresh_reports_each_profile_in_name_order() {
    let shared = Shared::new();
    let now = std::time::SystemTime::now();
    for n in ["a", "b", "c"] {
        let p = Arc::new(Profile::new(
            n,
            format!("arn:aws:iam::111122223333:role/{n}"),
        ));
        shared.register(p, None);
    }
    let expiry = now + Duration::from_secs(3600);
    shared.record_success(
        &current_profile(&shared, "a"),
        crate::session::Session {
            access_key_id: crate::session::Secret::new("ASIAKEY"),
            secret_access_key: crate::session::Secret::new("secret"),
            session_token: crate::session::Secret::new("sessiontoken"),
            expiration: expiry,
            assumed_role_arn: None,
        },
        crate::state::RefreshPlan {
            received: now,
            next_refresh: None,
        },
    );
    shared.record_failure(
        &current_profile(&shared, "b"),
        crate::metrics::RefreshResult::ConfigError,
        "AccessDenied: not authorized".into(),
        now,
    );
    let (map, mut rxs) = refreshers(&["a", "b", "c"]);
    let (tx, rx) = oneshot::channel();
    refresh(each(&map), None, &shared, Some(tx));
    let ok = crate::refresher::Outcome::Refreshed {
        next: Duration::ZERO,
    };
    let failed = crate::refresher::Outcome::Failed {
        class: crate::sts::ErrorClass::Configuration,
        next: Duration::ZERO,
    };
    rxs[0]
        .recv()
        .await
        .flatten()
        .unwrap()
        .send(ManualOutcome::Attempted(ok))
        .unwrap();
    rxs[1]
        .recv()
        .await
        .flatten()
        .unwrap()
        .send(ManualOutcome::Attempted(failed))
        .unwrap();
    rxs[2]
        .recv()
        .await
        .flatten()
        .unwrap()
        .send(ManualOutcome::Skipped("refreshed 2 s ago".into()))
        .unwrap();
    let a = rx.await.unwrap();
    assert!(!a.ok, "a failure makes the answer not ok");
    let p = a.profiles.unwrap();
    assert_eq!(p[0].result, RefreshResult::Refreshed);
    assert_eq!(p[0].expiration, Some(format_time(expiry)));
    assert_eq!(p[1].result, RefreshResult::Failed);
    assert_eq!(p[1].detail.as_deref(), Some("AccessDenied: not authorized"));
    assert_eq!(p[1].class.as_deref(), Some("config_error"));
    assert_eq!(p[0].class, None);
    assert_eq!(p[2].result, RefreshResult::Skipped);
    let line = Answer {
        profiles: Some(p),
        ..Answer::default()
    }
    .to_line();
    assert!(
        !line.contains("secret") && !line.contains("ASIAKEY") && !line.contains("sessiontoken"),
        "{line}"
    );
}

#[tokio::test]
async fn a_busy_answer_says_so_and_reaches_a_client_that_already_wrote() {
    let (mut client, server) = UnixStream::pair().unwrap();
    client.write_all(b"{\"op\":\"reload\"}\n").await.unwrap();
    // The listener reads the request only to drop it, once it is there.
    server.readable().await.unwrap();
    refuse_busy(&server);
    drop(server);
    let a = answer_of(client).await;
    assert!(a.busy && !a.ok && !a.usage, "{a:?}");
    assert!(
        a.problems[0].starts_with("the sidecar is busy: 4 requests are being carried out"),
        "{a:?}"
    );
}
