use super::*;
use crate::config::Profile;
use crate::session::{Secret, Session};
use std::time::Duration;

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
    let r = render(&refs, Path::new("/aws"), now);
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
    let r = render(&refs, Path::new("/aws"), now);
    assert!(!r.credentials.contains("PPP"));
    assert!(r.config.contains("[profile svc]\nregion = eu-west-1\ncredential_process = /aws/rolecall credential-process --profile svc\n"));
}

#[test]
fn a_session_value_with_a_newline_is_never_rendered() {
    let now = SystemTime::now();
    let mut s = session("X", now + Duration::from_secs(60));
    s.session_token = Secret::new("tok\n[evil]\naws_access_key_id = stolen");
    let states = [state(profile("a", CredentialsMode::File, None), Some(s))];
    let refs: Vec<&ProfileState> = states.iter().collect();
    let r = render(&refs, Path::new("/aws"), now);
    assert!(!r.credentials.contains("evil"));
    assert!(!r.credentials.contains("[a]"));
}

#[test]
fn writes_both_files_and_reports_a_failure_without_touching_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::new();
    let p = profile("reader", CredentialsMode::File, Some("eu-west-1"));
    shared.lock().insert(
        "reader".into(),
        state(
            p,
            Some(session("W1", SystemTime::now() + Duration::from_secs(600))),
        ),
    );
    let w = Writer {
        dir: dir.path().to_owned(),
        app_dir: dir.path().to_owned(),
        mode: 0o640,
    };
    w.prepare().unwrap();
    w.write(&shared, SystemTime::now()).unwrap();
    let creds = std::fs::read_to_string(dir.path().join("credentials")).unwrap();
    assert!(creds.contains("ASIAW1"));
    assert!(shared.outputs_ok.load(Ordering::Acquire));
    // Make the directory unwritable for the temporary file: root ignores
    // permissions, so replace the directory path with a file instead.
    let broken = Writer {
        dir: dir.path().join("credentials"),
        app_dir: dir.path().to_owned(),
        mode: 0o640,
    };
    let e = broken.write(&shared, SystemTime::now()).unwrap_err();
    assert!(e.to_string().contains("previous file is kept"), "{e}");
    assert!(!e.to_string().contains("ASIAW1"));
    assert!(!shared.outputs_ok.load(Ordering::Acquire));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("credentials")).unwrap(),
        creds
    );
}
