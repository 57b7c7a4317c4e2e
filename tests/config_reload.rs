//! Live configuration reload: a change of the configuration file (a
//! ConfigMap `..data` swap, an edit in place, a rename over it, a delete and
//! recreate) is applied like `SIGHUP`'s reload, without a restart; an
//! invalid file is refused (metrics and status say so) while the running
//! profiles keep being served.

mod support;

use std::future::Future;
use std::time::Duration;

use rolecall::config::{Config, Env};
use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";
const WAIT: Duration = Duration::from_secs(10);

fn yaml(profiles: &[(&str, &str)]) -> String {
    let mut s = String::from("profiles:\n");
    for (name, arn) in profiles {
        s.push_str(&format!("  {name}: {{role_arn: '{arn}'}}\n"));
    }
    s
}

/// The sidecar in-process, started with `--config dir.path()` and a health
/// listener; a reload reads the file as `rolecall run` does.
struct Sidecar {
    sb: Sandbox,
    port: u16,
    running: Running,
}

impl Sidecar {
    async fn start(dir: &ConfigDir) -> Sidecar {
        Sidecar::start_with(dir, false).await
    }

    /// With `token_from_env`, the web identity's token is given as the
    /// IRSA webhook gives it (`AWS_WEB_IDENTITY_TOKEN_FILE`), not by a flag.
    async fn start_with(dir: &ConfigDir, token_from_env: bool) -> Sidecar {
        let sb = Sandbox::granting(Duration::from_secs(3600));
        let port = free_port();
        let mut flags = rolecall::config::Flags {
            config: Some(dir.path()),
            health_addr: Some(format!("127.0.0.1:{port}")),
            ..test_flags(&sb.sts, &sb.token, sb.out.path(), &[])
        };
        let mut env = Env::new();
        if token_from_env {
            let token = flags.token_file.take().expect("test_flags names the token");
            env.insert("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token);
        }
        let config = Config::load(&flags, &env).expect("the first configuration");
        let running =
            Running::start_with_reload(config, move || Config::load(&flags, &env), test_options());
        let s = Sidecar { sb, port, running };
        assert!(wait_until(WAIT, || s.key_of("reader").is_some()).await);
        s
    }

    fn key_of(&self, profile: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.sb.out.path().join("credentials")).ok()?;
        parse_ini(&text)
            .get(profile)
            .and_then(|s| s.get("aws_access_key_id").cloned())
    }

    fn status_json(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.sb.out.path().join("status.json")).expect("status.json");
        serde_json::from_str(&text).expect("status.json is JSON")
    }

    /// The value of the metric series `series` (name and labels), or 0.
    async fn metric(&self, series: &str) -> f64 {
        let (_, body) = http_get(self.port, "/metrics", None).await;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    async fn reloads(&self, result: &str) -> f64 {
        self.metric(&format!(
            "rolecall_config_reloads_total{{result=\"{result}\"}}"
        ))
        .await
    }
}

/// Polls the async condition `f` every 10 ms; false after `timeout`.
async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Starts with `reader`, applies `change` (which adds `writer`), and checks
/// that it is served without a restart, `reader`'s session kept.
async fn applies(dir: ConfigDir, change: impl FnOnce(&ConfigDir, &str)) {
    let s = Sidecar::start(&dir).await;
    let reader_key = s.key_of("reader");
    change(&dir, &yaml(&[("reader", READER), ("writer", WRITER)]));
    assert!(
        wait_until(WAIT, || s.key_of("writer").is_some()).await,
        "the new profile is served"
    );
    assert_eq!(
        s.key_of("reader"),
        reader_key,
        "an unchanged profile is kept"
    );
    assert!(eventually(WAIT, || async { s.reloads("success").await == 1.0 }).await);
    assert_eq!(s.reloads("invalid").await, 0.0);
    assert!(
        s.metric("rolecall_config_last_reload_success_timestamp_seconds")
            .await
            > 0.0
    );
    s.running.stop().await;
}

#[tokio::test]
async fn a_configmap_swap_is_applied_without_a_restart() {
    applies(
        ConfigDir::configmap(&yaml(&[("reader", READER)])),
        |d, y| d.swap(y),
    )
    .await;
}

#[tokio::test]
async fn an_edit_in_place_is_applied() {
    applies(ConfigDir::plain(&yaml(&[("reader", READER)])), |d, y| {
        d.edit_in_place(y)
    })
    .await;
}

#[tokio::test]
async fn a_file_renamed_over_is_applied() {
    applies(ConfigDir::plain(&yaml(&[("reader", READER)])), |d, y| {
        d.rename_over(y)
    })
    .await;
}

#[tokio::test]
async fn a_deleted_and_recreated_file_is_applied() {
    applies(ConfigDir::plain(&yaml(&[("reader", READER)])), |d, y| {
        d.remove();
        d.edit_in_place(y);
    })
    .await;
}

/// A change is the file's bytes differing from the last bytes read: the
/// same bytes deleted and recreated, or republished by a ConfigMap swap,
/// reload nothing; the next real change is applied.
#[tokio::test]
async fn the_same_bytes_deleted_and_recreated_or_swapped_in_again_reload_nothing() {
    let logs = Logs::default();
    let _logging = logs.install();
    let first = yaml(&[("reader", READER)]);
    let plain = ConfigDir::plain(&first);
    let s = Sidecar::start(&plain).await;
    plain.remove();
    assert!(
        wait_until(WAIT, || logs.count("the configuration file cannot be read")
            == 1)
        .await
    );
    plain.edit_in_place(&first);
    let back = "the configuration file can be read again and is unchanged";
    assert!(wait_until(WAIT, || logs.count(back) == 1).await);
    assert_eq!(logs.count("configuration file changed; reloading"), 0);
    plain.edit_in_place(&yaml(&[("reader", READER), ("writer", WRITER)]));
    assert!(wait_until(WAIT, || s.key_of("writer").is_some()).await);
    assert_eq!(logs.count("configuration file changed; reloading"), 1);
    assert!(eventually(WAIT, || async { s.reloads("success").await == 1.0 }).await);
    s.running.stop().await;

    let configmap = ConfigDir::configmap(&first);
    let s = Sidecar::start(&configmap).await;
    // Swapped in again with the same bytes (another key changed), then
    // with new ones: one reload in all.
    configmap.swap(&first);
    configmap.swap(&yaml(&[("reader", READER), ("writer", WRITER)]));
    assert!(wait_until(WAIT, || s.key_of("writer").is_some()).await);
    assert_eq!(logs.count("configuration file changed; reloading"), 2);
    s.running.stop().await;
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_shown_until_a_fixed_one_is_applied() {
    let dir = ConfigDir::configmap(&yaml(&[("reader", READER)]));
    let s = Sidecar::start(&dir).await;
    let reader_key = s.key_of("reader");

    dir.swap("profiles:\n  reader: {role_arn: 'not-an-arn'}\n  writer: {}\n");
    assert!(eventually(WAIT, || async { s.reloads("invalid").await == 1.0 }).await);
    assert!(
        wait_until(WAIT, || s.status_json()["rejected_config"].is_array()).await,
        "status.json shows the refused file"
    );
    let problems = s.status_json()["rejected_config"].clone();
    let problems: Vec<&str> = problems
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems.iter().any(|p| p.contains("role_arn")),
        "{problems:?}"
    );
    assert!(problems.len() >= 2, "every problem: {problems:?}");
    // The running configuration is still good: ready, and served.
    assert_eq!(http_get(s.port, "/readyz", None).await.0, 200);
    assert_eq!(s.key_of("reader"), reader_key);
    assert_eq!(s.reloads("success").await, 0.0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rolecall"))
        .args(["status", "--output-dir"])
        .arg(s.sb.out.path())
        .output()
        .expect("rolecall status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("configuration change was refused"), "{text}");
    assert!(text.contains("role_arn"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rolecall"))
        .args(["status", "--json", "--output-dir"])
        .arg(s.sb.out.path())
        .output()
        .expect("rolecall status --json");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(json["rejected_config"][0].is_string(), "{json}");

    dir.swap(&yaml(&[("reader", READER), ("writer", WRITER)]));
    assert!(wait_until(WAIT, || s.key_of("writer").is_some()).await);
    assert!(eventually(WAIT, || async { s.reloads("success").await == 1.0 }).await);
    assert!(
        wait_until(WAIT, || s.status_json().get("rejected_config").is_none()).await,
        "a successful reload clears the refused file's problems"
    );
    assert_eq!(s.reloads("invalid").await, 1.0);
    s.running.stop().await;
}

/// Issue 24: switching `identity` changes every profile's source while the
/// running agent client and token watcher stay: refused whole, counted and
/// shown like an invalid file, the running profiles kept and served.
#[tokio::test]
async fn a_change_of_identity_is_refused_whole_and_the_running_configuration_kept() {
    let dir = ConfigDir::configmap(&yaml(&[("reader", READER)]));
    let s = Sidecar::start_with(&dir, true).await;
    let reader_key = s.key_of("reader");
    let profiles = yaml(&[("reader", READER), ("writer", WRITER)]);
    dir.swap(&format!("identity: pod-identity\n{profiles}"));
    assert!(eventually(WAIT, || async { s.reloads("invalid").await == 1.0 }).await);
    assert!(wait_until(WAIT, || s.status_json()["rejected_config"].is_array()).await);
    assert_eq!(
        s.status_json()["rejected_config"],
        serde_json::json!([
            "identity changed (web-identity \u{2192} pod-identity): only a restart applies it; the running configuration is kept"
        ])
    );
    assert_eq!(
        s.key_of("writer"),
        None,
        "nothing of the refused file applies"
    );
    assert_eq!(s.key_of("reader"), reader_key);
    assert_eq!(http_get(s.port, "/readyz", None).await.0, 200);
    // Back to web-identity with the new profile: applied as usual.
    dir.swap(&profiles);
    assert!(wait_until(WAIT, || s.key_of("writer").is_some()).await);
    assert!(eventually(WAIT, || async { s.reloads("success").await == 1.0 }).await);
    s.running.stop().await;
}

#[tokio::test]
async fn a_burst_of_changes_collapses_into_a_few_reloads() {
    let dir = ConfigDir::plain(&yaml(&[("reader", READER)]));
    let s = Sidecar::start(&dir).await;
    let reader_key = s.key_of("reader");
    // 50 different valid files in a row, the last one adding `writer`.
    for i in 0..49 {
        dir.rename_over(&format!("# edit {i}\n{}", yaml(&[("reader", READER)])));
    }
    dir.rename_over(&yaml(&[("reader", READER), ("writer", WRITER)]));
    assert!(wait_until(WAIT, || s.key_of("writer").is_some()).await);
    assert!(eventually(WAIT, || async { s.reloads("success").await >= 1.0 }).await);
    let reloads = s.reloads("success").await + s.reloads("invalid").await;
    assert!(reloads <= 5.0, "50 changes made {reloads} reloads");
    assert_eq!(s.key_of("reader"), reader_key);
    s.running.stop().await;
}

#[tokio::test]
async fn sighup_reloads_are_counted_like_watched_ones() {
    let dir = ConfigDir::plain(&yaml(&[("reader", READER)]));
    let s = Sidecar::start(&dir).await;
    s.running
        .controls
        .send(rolecall::Command::reload())
        .await
        .unwrap();
    assert!(eventually(WAIT, || async { s.reloads("success").await == 1.0 }).await);
    assert_eq!(s.reloads("invalid").await, 0.0);
    s.running.stop().await;
}

const WRITER_2: &str = "arn:aws:iam::111122223333:role/writer-2";

/// The `credentials` section of `profile`'s role comment (`# ARN expires`).
fn role_of(s: &Sidecar, profile: &str) -> Option<String> {
    let text = std::fs::read_to_string(s.sb.out.path().join("credentials")).ok()?;
    let at = text.find(&format!("[{profile}]\n"))?;
    let comment = text[..at].trim_end().lines().last()?;
    Some(comment.strip_prefix("# ")?.split(' ').next()?.to_owned())
}

#[tokio::test]
async fn a_changed_role_keeps_the_old_keys_until_the_new_ones_arrive() {
    let dir = ConfigDir::configmap(&yaml(&[("reader", READER), ("writer", WRITER)]));
    let s = Sidecar::start(&dir).await;
    assert!(wait_until(WAIT, || s.key_of("writer").is_some()).await);
    let old = s.key_of("writer");
    dir.swap(&yaml(&[("reader", READER), ("writer", WRITER_2)]));
    // Every look at the file until the new keys are there finds keys: the
    // old role's, then the new role's; never none.
    let mut gaps = 0;
    let replaced = wait_until(WAIT, || {
        let now = s.key_of("writer");
        gaps += usize::from(now.is_none());
        now.is_some() && now != old
    })
    .await;
    assert!(replaced, "the new role's keys are published");
    assert_eq!(gaps, 0, "the profile was missing from credentials");
    assert_eq!(role_of(&s, "writer").as_deref(), Some(WRITER_2));
    assert_eq!(s.sb.sts.calls_for_role(WRITER_2), 1);
    s.running.stop().await;
}

#[tokio::test]
async fn a_changed_role_serves_the_old_keys_during_the_call_and_drops_them_if_it_fails() {
    let dir = ConfigDir::configmap(&yaml(&[("reader", READER), ("writer", WRITER)]));
    let s = Sidecar::start(&dir).await;
    assert!(wait_until(WAIT, || s.key_of("writer").is_some()).await);
    let old = s.key_of("writer");
    s.sb.sts.push_for_role(WRITER_2, Reply::Hang);
    s.sb.sts.push_for_role(WRITER_2, Reply::access_denied());
    dir.swap(&yaml(&[("reader", READER), ("writer", WRITER_2)]));
    assert!(wait_until(WAIT, || s.sb.sts.calls_for_role(WRITER_2) == 1).await);
    // The new role's call is in flight: the old keys are still served,
    // marked as the old role's (a restart would not adopt them for the new).
    assert_eq!(s.key_of("writer"), old);
    assert_eq!(role_of(&s, "writer").as_deref(), Some(WRITER));
    // It times out, then is refused: the old role's keys are not kept for
    // a profile that now names another role, and status says why.
    assert!(wait_until(WAIT, || s.sb.sts.calls_for_role(WRITER_2) >= 2).await);
    assert!(wait_until(WAIT, || s.key_of("writer").is_none()).await);
    assert!(
        wait_until(WAIT, || {
            s.status_json()["profiles"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "writer"))
                .is_some_and(|p| {
                    p["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("AccessDenied"))
                })
        })
        .await
    );
    assert!(s.key_of("reader").is_some(), "other profiles are untouched");
    s.running.stop().await;
}

#[tokio::test]
async fn a_change_made_while_starting_is_applied() {
    // The configuration is read, then the ConfigMap changes before the
    // watcher is up (kubelet does not wait for rolecall to start).
    let dir = ConfigDir::configmap(&yaml(&[("reader", READER)]));
    let sb = Sandbox::granting(Duration::from_secs(3600));
    let flags = rolecall::config::Flags {
        config: Some(dir.path()),
        ..test_flags(&sb.sts, &sb.token, sb.out.path(), &[])
    };
    let config = Config::load(&flags, &Env::new()).expect("the first configuration");
    dir.swap(&yaml(&[("reader", READER), ("writer", WRITER)]));
    let running = Running::start_with_reload(
        config,
        move || Config::load(&flags, &Env::new()),
        test_options(),
    );
    let writer = || {
        std::fs::read_to_string(sb.out.path().join("credentials"))
            .is_ok_and(|t| parse_ini(&t).contains_key("writer"))
    };
    assert!(wait_until(WAIT, writer).await, "the change was missed");
    running.stop().await;
}

/// An attempt for the old role whose STS answer arrives after the reload
/// that changed the role (a refresher cancelled by the reload while its
/// call was in flight), made deterministic by driving the old and the new
/// configuration's refreshers by hand: `late_first` says whether the old
/// role's answer lands before or after the new role's refusal. Returns
/// the old role's keys and what the outputs hold afterwards.
async fn late_answer_for_a_replaced_role(late_first: bool) {
    use std::sync::Arc;

    use rolecall::config::Profile;
    use rolecall::refresher::{Context, Refresher};
    use rolecall::state::{Lookup, Shared};
    use tokio::sync::watch;

    let sts = FakeSts::granting(Duration::from_secs(3600));
    sts.push_for_role(WRITER_2, Reply::access_denied());
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let shared = Shared::with_metrics(rolecall::metrics::Metrics::new());
    let old = Arc::new(Profile {
        sts_endpoint: Some(sts.endpoint()),
        region: Some("eu-west-1".into()),
        ..Profile::new("writer", WRITER)
    });
    let now = std::time::SystemTime::now;
    shared.register(old.clone(), None);
    let ctx = Context {
        shared: shared.clone(),
        metrics: rolecall::metrics::Metrics::new(),
        pacer: Default::default(),
        sts: rolecall::sts::Sts::new(Duration::from_secs(5)),
        agent: None,
        token_file: token.path(),
        jitter: || 1.0,
        spread: || 0.0,
        token_changed: watch::channel(0u64).1,
        config_reloaded: watch::channel(0u64).1,
        clock: rolecall::clock::Clock::system(),
        once: false,
    };
    let writer = rolecall::output::Writer {
        set: rolecall::config::DEFAULT_SET.into(),
        dir: out.path().to_owned(),
        app_dir: out.path().to_owned(),
        mode: 0o640,
        jitter: || 1.0,
        clock: rolecall::clock::Clock::system(),
        metrics: rolecall::metrics::Metrics::new(),
    };
    let mut before = Refresher::new(old.clone(), ctx.clone());
    assert!(before.attempt().await.is_success());
    writer.write(&shared, now()).unwrap();
    // The reload: the profile now names another role (as the supervisor
    // applies it: the old refresher is cancelled, the state replaced).
    let new = Arc::new(Profile {
        role_arn: WRITER_2.into(),
        ..(*old).clone()
    });
    shared.upsert(new.clone(), false);
    let mut after = Refresher::new(new, ctx);
    if late_first {
        before.attempt().await;
        assert!(!after.attempt().await.is_success());
    } else {
        assert!(!after.attempt().await.is_success());
        before.attempt().await;
    }
    assert_eq!(sts.calls_for_role(WRITER), 2, "the late answer was sent");
    writer.write(&shared, now()).unwrap();
    let old_keys: Vec<String> = sts
        .issued()
        .iter()
        .filter(|c| c.role_arn == WRITER)
        .map(|c| c.access_key_id.clone())
        .collect();
    assert_eq!(old_keys.len(), 2);
    let mut outputs = String::new();
    for f in ["credentials", "config", "status.json"] {
        outputs += &std::fs::read_to_string(out.path().join(f)).unwrap_or_default();
    }
    for key in &old_keys {
        assert!(
            !outputs.contains(key.as_str()),
            "the old role's keys are still in the files:\n{outputs}"
        );
    }
    assert!(
        matches!(
            shared.credentials_for("writer", now()),
            Lookup::NotReady { .. }
        ),
        "the endpoint serves nothing for the profile"
    );
    assert!(shared.not_ready(now()).iter().any(|(n, _)| n == "writer"));
}

#[tokio::test]
async fn a_late_answer_for_a_replaced_role_is_not_published_before_the_refusal() {
    late_answer_for_a_replaced_role(true).await;
}

#[tokio::test]
async fn a_late_answer_for_a_replaced_role_is_not_published_after_the_refusal() {
    late_answer_for_a_replaced_role(false).await;
}
