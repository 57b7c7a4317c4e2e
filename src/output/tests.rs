use super::render::HEADER;
use super::*;
use crate::config::CredentialsMode;
use crate::config::Profile;
use crate::session::{Secret, Session};
use crate::state::{ProfileState, Shared};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;

fn profile(name: &str, mode: CredentialsMode, region: Option<&str>) -> Arc<Profile> {
    Arc::new(Profile {
        region: region.map(str::to_owned),
        credentials: mode,
        ..Profile::new(name, format!("arn:aws:iam::111122223333:role/{name}"))
    })
}

fn session(key: &str, expires: SystemTime) -> Session {
    Session {
        access_key_id: Secret::new(format!("ASIA{key}")),
        secret_access_key: Secret::new(format!("secret/{key}")),
        session_token: Secret::new(format!("token+{key}=")),
        expiration: expires,
        assumed_role_arn: None,
    }
}

fn state(p: Arc<Profile>, s: Option<Session>) -> ProfileState {
    let mut st = ProfileState::new(p);
    st.session = s;
    st
}

#[test]
fn renders_sorted_sections_with_live_sessions_only() {
    let now = SystemTime::now();
    let later = now + Duration::from_secs(3600);
    let states = [
        state(
            profile("default", CredentialsMode::File, Some("eu-west-1")),
            Some(session("AAA", later)),
        ),
        state(
            profile("reader", CredentialsMode::File, None),
            Some(session("BBB", later)),
        ),
        state(
            profile("stale", CredentialsMode::File, Some("us-east-1")),
            Some(session("CCC", now - Duration::from_secs(1))),
        ),
        state(
            profile("waiting", CredentialsMode::File, Some("us-east-1")),
            None,
        ),
    ];
    let refs: Vec<&ProfileState> = states.iter().collect();
    let r = render(&refs, &[], Path::new("/aws"), now);
    assert!(r.credentials.contains("[default]\naws_access_key_id = ASIAAAA\naws_secret_access_key = secret/AAA\naws_session_token = token+AAA=\n"));
    assert!(
        r.credentials
            .contains("[reader]\naws_access_key_id = ASIABBB\n")
    );
    assert!(
        !r.credentials.contains("CCC"),
        "expired sessions are removed"
    );
    assert!(!r.credentials.contains("[waiting]"));
    assert!(r.credentials.find("[default]") < r.credentials.find("[reader]"));
    assert_eq!(
        r.config,
        format!(
            "{HEADER}\n[default]\nregion = eu-west-1\n\n[profile reader]\n\n[profile stale]\nregion = us-east-1\n\n[profile waiting]\nregion = us-east-1\n"
        )
    );
}

#[test]
fn process_mode_profiles_go_to_config_not_credentials() {
    let now = SystemTime::now();
    let states = [state(
        profile("svc", CredentialsMode::Process, Some("eu-west-1")),
        Some(session("PPP", now + Duration::from_secs(60))),
    )];
    let refs: Vec<&ProfileState> = states.iter().collect();
    let r = render(&refs, &[], Path::new("/aws"), now);
    assert!(!r.credentials.contains("PPP"));
    assert!(r.config.contains("[profile svc]\nregion = eu-west-1\ncredential_process = /aws/rolecall credential-process --profile svc\n"));
}

#[test]
fn the_process_file_carries_the_slide_cap_while_healthy_and_does_not_change_with_the_clock() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let min = |m: u64| t0 + Duration::from_secs(m * 60);
    let mut st = state(
        profile("svc", CredentialsMode::Process, None),
        Some(session("PPP", min(60))),
    );
    st.plan = Some(crate::state::RefreshPlan {
        received: t0,
        next_refresh: Some(min(30)),
    });
    let entry = |st: &ProfileState, now: SystemTime| {
        let r = render(&[st], &[], Path::new("/aws"), now);
        let text = r.process.unwrap();
        let file: ProcessFile = serde_json::from_str(&text).unwrap();
        (text, file.profiles["svc"].clone())
    };
    let (text, e) = entry(&st, t0);
    assert_eq!(e.slide_until.as_deref(), Some("2033-05-18T04:28:20Z"));
    assert_eq!(e.real_expiration.as_deref(), Some("2033-05-18T04:33:20Z"));
    // The fixed value an older helper prints: 16 minutes after the refresh.
    assert_eq!(e.credentials.expiration, "2033-05-18T04:19:20Z");
    // The writer re-renders every 30 s: the same bytes all along, since
    // the slide is computed by whoever reads the file.
    for m in [1, 10, 29, 45] {
        assert_eq!(entry(&st, min(m)).0, text, "rewritten at {m} min");
    }
    // A failed refresh: no cap, the real expiry for every helper.
    st.last_error = Some("InternalFailure: down".into());
    let (_, e) = entry(&st, min(31));
    assert_eq!(e.slide_until, None);
    assert_eq!(e.credentials.expiration, "2033-05-18T04:33:20Z");
}

#[test]
fn only_printable_ascii_without_spaces_is_ini_safe() {
    assert!(ini_safe("ASIA123/+="));
    assert!(!ini_safe(""));
    assert!(!ini_safe("a b"));
    assert!(!ini_safe("a\nb"));
    assert!(!ini_safe("a\rb"));
    assert!(!ini_safe("é"));
}

#[test]
fn a_session_value_with_a_newline_is_never_rendered() {
    let now = SystemTime::now();
    let mut s = session("X", now + Duration::from_secs(60));
    s.session_token = Secret::new("tok\n[evil]\naws_access_key_id = stolen");
    let states = [state(profile("a", CredentialsMode::File, None), Some(s))];
    let refs: Vec<&ProfileState> = states.iter().collect();
    let r = render(&refs, &[], Path::new("/aws"), now);
    assert!(!r.credentials.contains("evil"));
    assert!(!r.credentials.contains("[a]"));
}

#[test]
fn writes_both_files_and_reports_a_failure_without_touching_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::new();
    let p = profile("reader", CredentialsMode::File, Some("eu-west-1"));
    shared.register(
        p,
        Some(session("W1", SystemTime::now() + Duration::from_secs(600))),
    );
    let w = Writer::for_dir(dir.path());
    w.prepare().unwrap();
    w.write(&shared, SystemTime::now()).unwrap();
    let creds = std::fs::read_to_string(dir.path().join("credentials")).unwrap();
    assert!(creds.contains("ASIAW1"));
    assert!(shared.outputs_written());
    // Make the directory unwritable for the temporary file: root ignores
    // permissions, so replace the directory path with a file instead.
    let broken = Writer {
        dir: dir.path().join("credentials"),
        ..Writer::for_dir(dir.path())
    };
    let e = broken.write(&shared, SystemTime::now()).unwrap_err();
    assert!(e.to_string().contains("previous file is kept"), "{e}");
    assert!(!e.to_string().contains("ASIAW1"));
    assert!(!shared.outputs_written());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("credentials")).unwrap(),
        creds
    );
}

fn mkfifo(p: &Path) {
    crate::sys::mkfifo(p, 0o640).expect("mkfifo");
}

fn writer(dir: &Path) -> Writer {
    Writer::for_dir(dir)
}

#[test]
fn adopt_ignores_fifos_and_symlinks_without_blocking_or_following() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let file_p = profile("reader", CredentialsMode::File, None);
    let proc_p = profile("svc", CredentialsMode::Process, None);
    // A previous run's valid outputs, elsewhere.
    let states = [
        state(
            file_p.clone(),
            Some(session("F", now + Duration::from_secs(3600))),
        ),
        state(
            proc_p.clone(),
            Some(session("P", now + Duration::from_secs(3600))),
        ),
    ];
    let refs: Vec<&ProfileState> = states.iter().collect();
    let r = render(&refs, &[], elsewhere.path(), now);
    std::fs::write(elsewhere.path().join(CREDENTIALS_FILE), &r.credentials).unwrap();
    std::fs::write(elsewhere.path().join(PROCESS_FILE), r.process.unwrap()).unwrap();
    let profiles = [file_p, proc_p];
    assert_eq!(adopt(elsewhere.path(), &profiles, now).len(), 2);

    // Linked from the output dir: not followed.
    for name in [CREDENTIALS_FILE, PROCESS_FILE] {
        std::os::unix::fs::symlink(elsewhere.path().join(name), dir.path().join(name)).unwrap();
    }
    assert!(adopt(dir.path(), &profiles, now).is_empty());
    // FIFOs: refused without blocking.
    for name in [CREDENTIALS_FILE, PROCESS_FILE] {
        std::fs::remove_file(dir.path().join(name)).unwrap();
        mkfifo(&dir.path().join(name));
    }
    assert!(adopt(dir.path(), &profiles, now).is_empty());
}

#[test]
fn an_output_dir_rolecall_creates_gets_an_exact_mode_and_an_existing_one_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    for (file_mode, dir_mode) in [
        (0o640, 0o750),
        (0o600, 0o700),
        (0o644, 0o755),
        (0o440, 0o750),
    ] {
        let dir = parent.path().join(format!("out-{file_mode:o}"));
        let w = Writer {
            mode: file_mode,
            ..writer(&dir)
        };
        assert_eq!(w.dir_mode(), dir_mode);
        w.prepare().unwrap();
        assert_eq!(mode(&dir), dir_mode, "{file_mode:o}");
    }
    let existing = parent.path().join("mounted");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o777)).unwrap();
    writer(&existing).prepare().unwrap();
    assert_eq!(mode(&existing), 0o777);
}

#[test]
fn check_helper_restores_a_changed_helper_and_leaves_an_intact_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let binary = src.path().join("rolecall-binary");
    std::fs::write(&binary, b"\x7fELF the real helper").unwrap();
    let w = writer(dir.path());
    let helper = Helper::default();
    assert!(!w.check_helper(&helper).unwrap(), "nothing installed yet");
    assert!(w.install_tracked_helper(&binary, &helper).unwrap());
    let installed = dir.path().join(HELPER_FILE);
    assert!(!w.check_helper(&helper).unwrap());
    // Replaced, removed, changed in place, re-moded: each restored.
    std::fs::remove_file(&installed).unwrap();
    std::fs::write(&installed, b"#!/bin/sh\necho evil\n").unwrap();
    assert!(w.check_helper(&helper).unwrap());
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        b"\x7fELF the real helper"
    );
    std::fs::remove_file(&installed).unwrap();
    assert!(w.check_helper(&helper).unwrap());
    std::fs::write(&installed, b"\x7fELF the real helpex").unwrap();
    assert!(w.check_helper(&helper).unwrap());
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(w.check_helper(&helper).unwrap());
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o750
    );
    assert!(!w.check_helper(&helper).unwrap());
    // No longer in process mode: no longer checked.
    helper.forget();
    std::fs::remove_file(&installed).unwrap();
    assert!(!w.check_helper(&helper).unwrap());
    assert!(!installed.exists());
}

#[test]
fn endpoint_only_profiles_are_in_config_and_status_and_nowhere_else() {
    let now = SystemTime::now();
    let states = [
        state(
            profile("api", CredentialsMode::Endpoint, Some("eu-west-1")),
            Some(session("EEE", now + Duration::from_secs(3600))),
        ),
        state(
            profile("svc", CredentialsMode::Process, None),
            Some(session("PPP", now + Duration::from_secs(3600))),
        ),
    ];
    let refs: Vec<&ProfileState> = states.iter().collect();
    let r = render(&refs, &[], Path::new("/aws"), now);
    assert!(!r.credentials.contains("EEE") && !r.credentials.contains("[api]"));
    assert!(
        r.config
            .contains("[profile api]\nregion = eu-west-1\n\n[profile svc]\ncredential_process"),
        "{}",
        r.config
    );
    let process = r.process.unwrap();
    assert!(
        !process.contains("EEE") && !process.contains("\"api\""),
        "{process}"
    );
    assert!(
        r.status.contains("\"credentials\": \"endpoint\""),
        "{}",
        r.status
    );
    // Nothing to adopt it from after a restart.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CREDENTIALS_FILE), &r.credentials).unwrap();
    std::fs::write(dir.path().join(PROCESS_FILE), &process).unwrap();
    assert!(adopt(dir.path(), &[states[0].profile.clone()], now).is_empty());
}
