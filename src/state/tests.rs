use super::*;
use crate::session::Secret;
use std::time::Duration;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn session(key: &str, expiration: SystemTime) -> Session {
    Session {
        access_key_id: Secret::new(format!("ASIA{key}")),
        secret_access_key: Secret::new("s"),
        session_token: Secret::new("t"),
        expiration,
        assumed_role_arn: None,
    }
}

fn profile(name: &str) -> Arc<Profile> {
    Arc::new(Profile::new(
        name,
        format!("arn:aws:iam::111122223333:role/{name}"),
    ))
}

fn state(error: Option<&str>, plan: Option<RefreshPlan>) -> (ProfileState, Session) {
    let session = session("X", t0() + secs(3600));
    let mut s = ProfileState::new(profile("p"));
    s.session = Some(session.clone());
    s.last_error = error.map(str::to_owned);
    s.plan = plan;
    (s, session)
}

/// A `Shared` whose outputs are written, with `names` registered.
fn shared_with(names: &[&str]) -> Arc<Shared> {
    let shared = Shared::new();
    for name in names {
        shared.register(profile(name), None);
    }
    shared.record_write(WritePass::default(), true);
    shared
}

fn refreshes(shared: &Shared, name: &str, result: RefreshResult) -> u64 {
    let series = format!(
        "rolecall_refresh_total{{profile=\"{name}\",result=\"{}\"}}",
        result.as_str()
    );
    shared.metrics.value(&series).unwrap_or(0.0) as u64
}

/// Readiness at `t0()`, as `/readyz` computes it.
fn ready(shared: &Shared) -> bool {
    shared.not_ready(t0()).is_empty()
}

#[test]
fn reports_the_rule_while_healthy_and_the_real_expiry_otherwise() {
    let received = t0();
    let plan = RefreshPlan {
        received,
        next_refresh: Some(received + secs(1800)),
    };
    let min = |m: u64| received + secs(m * 60);
    // Healthy: 17 minutes from now, under the cap (55 min); the file's
    // fixed value for older helpers, 16 minutes after the planned refresh.
    let (s, session) = state(None, Some(plan));
    assert_eq!(s.slide_cap(&session), Some(min(55)));
    for now in [received, min(30)] {
        assert_eq!(s.reported_expiry(&session, now), now + secs(17 * 60));
    }
    assert_eq!(s.reported_expiry(&session, min(45)), min(55));
    for now in [received, min(30), min(45)] {
        assert_eq!(s.planned_expiry(&session, now), min(46));
    }
    // The last refresh failed (an STS outage): the real expiry, no cap.
    let (s, session) = state(Some("InternalFailure: down"), Some(plan));
    assert_eq!(s.slide_cap(&session), None);
    assert_eq!(s.reported_expiry(&session, received), min(60));
    assert_eq!(s.planned_expiry(&session, received), min(60));
    // Adopted at a restart, no refresh planned yet: the real expiry.
    let (s, session) = state(None, None);
    assert_eq!(s.slide_cap(&session), None);
    assert_eq!(s.reported_expiry(&session, received), min(60));
    // The cap passed without the refresh (a wall-clock step, a stuck
    // refresher): the real expiry, never one in the past.
    let (s, session) = state(None, Some(plan));
    assert_eq!(s.reported_expiry(&session, min(55)), min(60));
    assert_eq!(s.reported_expiry(&session, min(59)), min(60));
    assert_eq!(s.planned_expiry(&session, min(46)), min(60));
}

#[test]
fn readiness_flag_is_shared_by_its_clones() {
    let live = Readiness::new(true);
    let seen = live.clone();
    assert!(seen.get());
    live.set(false);
    assert!(!seen.get());
    assert!(!Readiness::default().get());
}

#[test]
fn register_seeds_the_adopted_session_and_readiness_follows() {
    let shared = Shared::new();
    shared.register(profile("a"), Some(session("A", t0() + secs(600))));
    shared.register(profile("b"), None);
    assert_eq!(
        shared.not_ready(t0()),
        vec![
            ("b".to_owned(), "no credentials yet".to_owned()),
            (
                "outputs".to_owned(),
                "the output files are not written".to_owned()
            ),
        ]
    );
    assert!(!ready(&shared));
    shared.record_success(
        &current_profile(&shared, "b"),
        session("B", t0() + secs(900)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    shared.record_write(WritePass::default(), true);
    assert!(ready(&shared));
    // Time alone makes a session expire: a probe sees it at once.
    assert_eq!(
        shared.not_ready(t0() + secs(600)),
        vec![("a".to_owned(), "credentials expired".to_owned())]
    );
}

#[test]
fn record_success_publishes_the_session_and_clears_the_error() {
    let shared = shared_with(&["p"]);
    shared.record_failure(
        &current_profile(&shared, "p"),
        RefreshResult::TransientError,
        "Throttling: slow".into(),
        t0(),
    );
    let s = session("NEW", t0() + secs(3600));
    shared.record_success(
        &current_profile(&shared, "p"),
        s.clone(),
        RefreshPlan {
            received: t0(),
            next_refresh: Some(t0() + secs(1800)),
        },
    );
    let st = shared.get("p").unwrap();
    assert_eq!(st.session, Some(s));
    assert_eq!(st.last_refresh(), Some(t0()));
    assert_eq!(st.last_error, None);
    assert_eq!(
        st.plan,
        Some(RefreshPlan {
            received: t0(),
            next_refresh: Some(t0() + secs(1800))
        })
    );
    assert_eq!(refreshes(&shared, "p", RefreshResult::Success), 1);
    let expiry = shared
        .metrics
        .value(r#"rolecall_credentials_expiry_timestamp_seconds{profile="p"}"#);
    assert_eq!(
        expiry,
        Some(crate::session::unix_seconds(t0() + secs(3600)) as f64)
    );
    // Unplanned (a one-shot run): received, no refresh planned.
    shared.record_success(
        &current_profile(&shared, "p"),
        session("ONCE", t0() + secs(60)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    assert_eq!(
        shared.get("p").unwrap().plan.map(|p| p.next_refresh),
        Some(None)
    );
    // A profile removed meanwhile is not brought back.
    shared.record_success(
        &current_profile(&shared, "gone"),
        session("G", t0() + secs(60)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    assert!(shared.get("gone").is_none());
    assert_eq!(refreshes(&shared, "gone", RefreshResult::Success), 0);
}

#[test]
fn record_failure_keeps_the_last_good_session_and_says_until_when() {
    let shared = shared_with(&["p"]);
    let until = t0() + secs(600);
    assert_eq!(
        shared.record_failure(
            &current_profile(&shared, "p"),
            RefreshResult::ConfigError,
            "AccessDenied: no".into(),
            t0()
        ),
        None,
        "nothing to keep yet"
    );
    shared.record_success(
        &current_profile(&shared, "p"),
        session("OK", until),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    let kept = shared.record_failure(
        &current_profile(&shared, "p"),
        RefreshResult::TransientError,
        "Timeout: slow".into(),
        t0(),
    );
    assert_eq!(kept, Some(until));
    let st = shared.get("p").unwrap();
    assert_eq!(st.last_error.as_deref(), Some("Timeout: slow"));
    assert!(st.session.is_some());
    assert!(ready(&shared), "a live session is still ready");
    assert_eq!(refreshes(&shared, "p", RefreshResult::TransientError), 1);
    assert_eq!(refreshes(&shared, "p", RefreshResult::ConfigError), 1);
    // Once the session expired, the error is the reason.
    assert_eq!(
        shared.not_ready(until),
        vec![("p".to_owned(), "Timeout: slow".to_owned())]
    );
    assert_eq!(
        shared.record_failure(
            &current_profile(&shared, "nope"),
            RefreshResult::TokenError,
            "x".into(),
            t0()
        ),
        None
    );
}

#[test]
fn the_plan_passed_with_a_session_decides_what_the_endpoint_reports() {
    let shared = shared_with(&["p"]);
    let s = session("A", t0() + secs(3600));
    let plan = |next_refresh| RefreshPlan {
        received: t0(),
        next_refresh,
    };
    shared.record_success(&current_profile(&shared, "p"), s.clone(), plan(None));
    let real = Lookup::Live {
        session: s.clone(),
        expiration: s.expiration,
    };
    assert_eq!(
        shared.credentials_for("p", t0()),
        real,
        "one-shot: the real expiry"
    );
    shared.record_success(
        &current_profile(&shared, "p"),
        s.clone(),
        plan(Some(t0() + secs(1800))),
    );
    assert_ne!(
        shared.credentials_for("p", t0()),
        real,
        "planned: the sliding expiry"
    );
}

#[test]
fn credentials_for_gives_only_a_live_session() {
    let shared = shared_with(&["src"]);
    let live = |at| match shared.credentials_for("src", at) {
        Lookup::Live { session, .. } => Some(session),
        _ => None,
    };
    assert_eq!(live(t0()), None);
    let s = session("S", t0() + secs(60));
    shared.record_success(
        &current_profile(&shared, "src"),
        s.clone(),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    assert_eq!(live(t0()), Some(s));
    assert_eq!(live(t0() + secs(60)), None, "expired");
    assert_eq!(shared.credentials_for("other", t0()), Lookup::Unknown);
}

#[test]
fn upsert_keeps_the_session_as_its_own_only_for_the_same_identity() {
    let shared = shared_with(&["p"]);
    let s = session("A", t0() + secs(3600));
    shared.record_success(
        &current_profile(&shared, "p"),
        s.clone(),
        RefreshPlan {
            received: t0(),
            next_refresh: Some(t0() + secs(1800)),
        },
    );
    shared.record_failure(
        &current_profile(&shared, "p"),
        RefreshResult::TransientError,
        "x: y".into(),
        t0(),
    );
    shared.upsert(profile("p"), true);
    let st = shared.get("p").unwrap();
    assert_eq!(st.session, Some(s.clone()), "same role: kept");
    assert_eq!(
        (st.last_refresh(), st.last_error, st.plan, st.superseded),
        (None, None, None, None)
    );
    shared.upsert(profile("new"), true);
    assert_eq!(shared.get("new").unwrap().session, None);
}

#[test]
fn a_changed_role_serves_the_old_session_until_its_first_success() {
    let shared = shared_with(&["p"]);
    let old = session("A", t0() + secs(3600));
    shared.record_success(
        &current_profile(&shared, "p"),
        old.clone(),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    let mut seen = shared.subscribe("p");
    seen.borrow_and_update();
    let moved = Arc::new(Profile::new("p", "arn:aws:iam::111122223333:role/other"));
    shared.upsert(moved.clone(), false);
    let st = shared.get("p").unwrap();
    assert_eq!(st.session, Some(old.clone()), "no gap in any file");
    assert_eq!(st.session_role(), "arn:aws:iam::111122223333:role/p");
    assert!(ready(&shared), "still ready on the old session");
    assert!(
        !seen.has_changed().unwrap(),
        "the same session is not re-announced"
    );
    // Changed again before its first attempt: still the first role's.
    shared.upsert(moved.clone(), true);
    assert_eq!(
        shared.get("p").unwrap().session_role(),
        "arn:aws:iam::111122223333:role/p"
    );
    let new = session("B", t0() + secs(3600));
    shared.record_success(
        &current_profile(&shared, "p"),
        new.clone(),
        RefreshPlan {
            received: t0() + secs(1),
            next_refresh: None,
        },
    );
    let st = shared.get("p").unwrap();
    assert_eq!(st.session_role(), "arn:aws:iam::111122223333:role/other");
    assert_eq!((st.session, st.superseded), (Some(new), None));
}

#[test]
fn a_changed_role_drops_the_old_session_when_its_first_attempt_fails() {
    let shared = shared_with(&["p"]);
    shared.record_success(
        &current_profile(&shared, "p"),
        session("A", t0() + secs(3600)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    let mut seen = shared.subscribe("p");
    seen.borrow_and_update();
    let moved = Arc::new(Profile::new("p", "arn:aws:iam::111122223333:role/other"));
    shared.upsert(moved, false);
    let kept = shared.record_failure(
        &current_profile(&shared, "p"),
        RefreshResult::ConfigError,
        "AccessDenied: no".into(),
        t0(),
    );
    assert_eq!(kept, None, "the old role's keys are not kept");
    let st = shared.get("p").unwrap();
    assert_eq!((st.session, st.superseded), (None, None));
    assert!(!ready(&shared));
    assert!(
        seen.has_changed().unwrap(),
        "chained profiles learn it is gone"
    );
}

#[test]
fn remove_forgets_the_profile_and_its_metric_series() {
    let shared = shared_with(&["a", "b"]);
    shared.record_success(
        &current_profile(&shared, "a"),
        session("A", t0() + secs(60)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    shared.record_failure(
        &current_profile(&shared, "a"),
        RefreshResult::ClockError,
        "x: y".into(),
        t0(),
    );
    shared.record_success(
        &current_profile(&shared, "b"),
        session("B", t0() + secs(60)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    shared.remove("a");
    assert!(shared.get("a").is_none());
    let text = shared.metrics.encode(ready(&shared));
    assert!(!text.contains(r#"profile="a""#), "{text}");
    assert!(text.contains(r#"profile="b""#), "{text}");
    assert!(ready(&shared), "the remaining profile is ready");
}

#[test]
fn a_snapshot_holds_every_profile_in_name_order_with_its_live_session() {
    let shared = shared_with(&["b", "a", "c"]);
    shared.record_success(
        &current_profile(&shared, "a"),
        session("A", t0() + secs(60)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    shared.record_success(
        &current_profile(&shared, "b"),
        session("B", t0() + secs(30)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    let names: Vec<String> = shared
        .snapshot_of("every profile")
        .iter()
        .map(|s| s.profile.name.clone())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let live = |at: SystemTime| -> Vec<String> {
        shared
            .snapshot_of("every profile")
            .iter()
            .filter(|s| s.live_session(at).is_some())
            .map(|s| s.profile.name.clone())
            .collect()
    };
    assert_eq!(live(t0()), ["a", "b"]);
    assert_eq!(live(t0() + secs(30)), ["a"], "the expired one is not live");
    assert!(live(t0() + secs(60)).is_empty());
}

#[test]
fn a_failed_write_pass_feeds_readiness() {
    let shared = shared_with(&["p"]);
    shared.record_success(
        &current_profile(&shared, "p"),
        session("A", t0() + secs(60)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    assert!(ready(&shared) && shared.outputs_written());
    shared.record_write(WritePass::default(), false);
    assert!(!ready(&shared) && !shared.outputs_written());
    assert_eq!(
        shared.not_ready(t0()),
        vec![(
            "outputs".to_owned(),
            "the output files are not written".to_owned()
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_request_wakes_the_writer_once() {
    let shared = Shared::new();
    shared.writes().request();
    shared.writes().request();
    tokio::time::timeout(secs(1), shared.writes().requested())
        .await
        .expect("a pending request completes at once");
    assert!(
        tokio::time::timeout(secs(1), shared.writes().requested())
            .await
            .is_err(),
        "requests before the wait coalesce into one"
    );
}

#[test]
fn credentials_for_answers_unknown_not_ready_or_live() {
    let shared = shared_with(&["p"]);
    assert_eq!(shared.credentials_for("x", t0()), Lookup::Unknown);
    shared.record_failure(
        &current_profile(&shared, "p"),
        RefreshResult::ConfigError,
        "AccessDenied: no".into(),
        t0(),
    );
    assert_eq!(
        shared.credentials_for("p", t0()),
        Lookup::NotReady {
            last_error: Some("AccessDenied: no".into())
        }
    );
    let s = session("A", t0() + secs(3600));
    shared.record_success(
        &current_profile(&shared, "p"),
        s.clone(),
        RefreshPlan {
            received: t0(),
            next_refresh: Some(t0() + secs(1800)),
        },
    );
    assert_eq!(
        shared.credentials_for("p", t0()),
        Lookup::Live {
            session: s,
            expiration: t0() + secs(17 * 60),
        },
        "the reported expiry, not the real one"
    );
}

#[test]
fn subscribers_see_their_source_session_change_and_survive_a_reload() {
    let shared = shared_with(&["src", "other"]);
    let exp = t0() + secs(3600);
    let (a, b, c) = (session("A", exp), session("B", exp), session("C", exp));
    shared.record_success(
        &current_profile(&shared, "src"),
        a.clone(),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    let mut rx = shared.subscribe("src");
    assert_eq!(*rx.borrow_and_update(), Some(a), "the current session");
    // Another profile's session does not wake it.
    shared.record_success(
        &current_profile(&shared, "other"),
        session("O", exp),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    assert!(!rx.has_changed().unwrap());
    // A new session with the same expiry (issued in the same second) does.
    shared.record_success(
        &current_profile(&shared, "src"),
        b.clone(),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), Some(b));
    // A reload that keeps the session changes nothing for it.
    shared.upsert(profile("src"), true);
    assert!(!rx.has_changed().unwrap());
    // Removed and added back (a reload that replaces the source): the same
    // subscription sees both.
    shared.remove("src");
    assert_eq!(*rx.borrow_and_update(), None);
    shared.register(profile("src"), None);
    shared.record_success(
        &current_profile(&shared, "src"),
        c.clone(),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    assert_eq!(*rx.borrow_and_update(), Some(c));
    // A source nobody listens to any more is dropped with the profile.
    drop(rx);
    shared.remove("src");
    assert!(!shared.lock().sessions.contains_key("src"));
    // Subscribing before the source exists works too.
    let mut early = shared.subscribe("later");
    assert_eq!(*early.borrow_and_update(), None);
    let l = session("L", exp);
    shared.register(profile("later"), Some(l.clone()));
    assert_eq!(*early.borrow_and_update(), Some(l));
}

#[tokio::test(start_paused = true)]
async fn an_adopted_session_expires_under_paused_time_on_the_injected_clock() {
    let clock = crate::clock::Clock::tokio();
    let shared = Shared::new();
    let start = clock.now();
    shared.register(profile("p"), Some(session("OLD", start + secs(3600))));
    shared.record_write(WritePass::default(), true);
    assert!(shared.not_ready(clock.now()).is_empty());
    tokio::time::sleep(secs(3599)).await;
    assert!(matches!(
        shared.credentials_for("p", clock.now()),
        Lookup::Live { .. }
    ));
    tokio::time::sleep(secs(1)).await;
    let now = clock.now();
    assert_eq!(
        shared.not_ready(now),
        vec![("p".to_owned(), "credentials expired".to_owned())]
    );
    assert_eq!(
        shared.credentials_for("p", now),
        Lookup::NotReady { last_error: None }
    );
}

#[test]
fn readiness_follows_what_each_set_s_files_hold() {
    let shared = shared_with(&[]);
    let p = profile("p");
    shared.set_members("app", ["p".to_owned()]);
    shared.set_members("other", ["q".to_owned()]);
    shared.register(p.clone(), None);
    // The first write, before any session: the header only.
    set_written(&shared, "app", []);
    shared.record_success(
        &current_profile(&shared, "p"),
        session("A", t0() + secs(600)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    assert_eq!(
        shared.not_ready(t0()),
        vec![(
            "p".to_owned(),
            "its session is not in output set app's files yet".to_owned()
        )],
        "a session in memory only is not ready"
    );
    set_written(&shared, "other", []);
    assert!(!ready(&shared), "another set's write does not count");
    set_written(
        &shared,
        "app",
        [("p".to_owned(), p.clone(), t0() + secs(600))],
    );
    assert!(ready(&shared));
    // A changed role: the old session, in the files, still serves.
    let moved = Arc::new(Profile::new("p", "arn:aws:iam::111122223333:role/other"));
    shared.upsert(moved.clone(), false);
    assert!(
        ready(&shared),
        "the old role's keys serve until the new ones come"
    );
    // The new role's session is ready once the files hold it.
    shared.record_success(
        &current_profile(&shared, "p"),
        session("B", t0() + secs(900)),
        RefreshPlan {
            received: t0(),
            next_refresh: None,
        },
    );
    assert!(!ready(&shared), "the files still hold the old role's keys");
    set_written(&shared, "app", [("p".to_owned(), moved, t0() + secs(900))]);
    assert!(ready(&shared));
    // An expired copy in the files is not ready, whatever memory holds.
    set_written(&shared, "app", [("p".to_owned(), p, t0() + secs(1))]);
    assert!(!shared.not_ready(t0() + secs(2)).is_empty());
    // Moved to another set: that set's files must hold it.
    shared.set_members("app", []);
    shared.set_members("other", ["p".to_owned()]);
    assert!(!shared.not_ready(t0()).is_empty());
}

/// Records a successful write pass in which output set `set`'s files were
/// written with `sessions`.
fn set_written(
    shared: &Shared,
    set: &str,
    sessions: impl IntoIterator<Item = (String, Arc<Profile>, SystemTime)>,
) {
    let mut pass = WritePass::default();
    pass.wrote(set, sessions);
    shared.record_write(pass, true);
}
