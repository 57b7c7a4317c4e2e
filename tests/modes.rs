//! Process mode and the loopback credentials endpoint, in-process against a
//! fake STS, with the real binary as the credential_process helper.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rolecall::config::{Config, Env, Flags};
use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";

fn flags(sts: &FakeSts, token: &TokenDir, out: &Path) -> Flags {
    test_flags(
        sts,
        token,
        out,
        &[&format!("reader={READER}"), &format!("writer={WRITER}")],
    )
}

/// Runs the installed helper as an SDK would; a helper not installed yet
/// counts as a failed run.
fn helper(dir: &Path, profile: &str) -> std::process::Output {
    Command::new(dir.join("rolecall"))
        .args(["credential-process", "--profile", profile])
        .env_clear()
        .output()
        .unwrap_or_else(|e| std::process::Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: e.to_string().into_bytes(),
        })
}

#[tokio::test]
async fn process_mode_publishes_a_helper_that_prints_the_latest_session() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let mut f = flags(&sts, &token, out.path());
    f.credentials = Some("process".into());
    f.app_output_dir = Some("/aws".into());
    let config = Config::load(&f, &Env::new()).unwrap();
    let report = rolecall::once(&config, &test_options()).await.unwrap();
    assert!(report.failed.is_empty());

    // config names the helper where the app sees the volume; credentials has no keys.
    let cfg = parse_ini(&std::fs::read_to_string(out.path().join("config")).unwrap());
    assert_eq!(
        cfg["profile reader"]["credential_process"],
        "/aws/rolecall credential-process --profile reader"
    );
    let creds = parse_ini(&std::fs::read_to_string(out.path().join("credentials")).unwrap());
    assert!(creds.is_empty(), "{creds:?}");

    // The helper is the binary itself, executable by the group.
    let installed = out.path().join("rolecall");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_rolecall")).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o750
    );

    let o = helper(out.path(), "writer");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let issued = sts.last_issued_for_role(WRITER).unwrap();
    assert_eq!(v["Version"], 1);
    assert_eq!(v["AccessKeyId"], issued.access_key_id);
    assert_eq!(v["SecretAccessKey"], issued.secret_access_key);
    assert_eq!(v["SessionToken"], issued.session_token);
    assert_eq!(
        parse_utc(v["Expiration"].as_str().unwrap()),
        issued.expiration
    );

    let o = helper(out.path(), "nope");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("profile nope has no credentials") && err.contains("reader, writer"),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    // Reinstalling an identical helper does not rewrite it.
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&installed).unwrap());
    rolecall::once(&config, &test_options()).await.unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&installed).unwrap()),
        ino
    );
}

/// The default publication: the binary with no mode option (nor a
/// `credentials` key) publishes in process mode: `config` names the helper
/// (at the output dir: no `--app-output-dir`), the helper is the binary
/// itself, `credentials` holds no keys, `status.json` says `process`.
#[test]
fn with_no_mode_option_profiles_are_published_in_process_mode() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let r = run_for(
        rolecall_piped()
            .arg("once")
            .args(base_args_with(&sts, &token, out.path(), None))
            .args(["--profile", &format!("reader={READER}")]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let cfg = parse_ini(&std::fs::read_to_string(out.path().join("config")).unwrap());
    assert_eq!(
        cfg["profile reader"]["credential_process"],
        format!(
            "{}/rolecall credential-process --profile reader",
            out.path().display()
        )
    );
    let creds = parse_ini(&std::fs::read_to_string(out.path().join("credentials")).unwrap());
    assert!(creds.is_empty(), "{creds:?}");
    assert_eq!(
        std::fs::read(out.path().join("rolecall")).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_rolecall")).unwrap(),
        "the helper is the binary itself"
    );
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("status.json")).unwrap())
            .unwrap();
    assert_eq!(status["profiles"][0]["credentials"], "process", "{status}");
    let o = helper(out.path(), "reader");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let issued = sts.last_issued_for_role(READER).unwrap();
    assert_eq!(v["AccessKeyId"], issued.access_key_id);
}

/// A profile in process mode beside file-mode ones (`test_flags` sets
/// file mode for all: the profile's own key wins).
#[tokio::test]
async fn a_profile_can_choose_process_mode_alone_in_yaml() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("..rolecall.yaml");
    std::fs::write(
        &file,
        format!("profiles:\n  reader: {{role_arn: '{READER}'}}\n  writer: {{role_arn: '{WRITER}', credentials: process}}\n"),
    )
    .unwrap();
    let mut f = flags(&sts, &token, out.path());
    f.profiles.clear();
    f.config = Some(file);
    let config = Config::load(&f, &Env::new()).unwrap();
    rolecall::once(&config, &test_options()).await.unwrap();
    let creds = parse_ini(&std::fs::read_to_string(out.path().join("credentials")).unwrap());
    assert_eq!(creds.keys().collect::<Vec<_>>(), ["reader"]);
    assert!(helper(out.path(), "writer").status.success());
    assert!(
        !helper(out.path(), "reader").status.success(),
        "file-mode profiles are not served by the helper"
    );
}

#[tokio::test]
async fn the_endpoint_serves_container_credentials_only_with_the_token() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut f = flags(&sts, &token, out.path());
    f.endpoint_addr = Some(format!("127.0.0.1:{port}"));
    let config = Config::load(&f, &Env::new()).unwrap();
    let r = Running::start(config, test_options());
    let token_path = out.path().join("endpoint-token");
    assert!(
        wait_until(Duration::from_secs(5), || sts.calls() == 2
            && token_path.exists())
        .await
    );
    let secret = std::fs::read_to_string(&token_path).unwrap();
    assert_eq!(secret.len(), 64);
    assert!(!secret.ends_with('\n'));

    let url = "/v1/credentials/reader";
    assert!(
        wait_until(Duration::from_secs(5), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok())
        .await
    );
    let asked = std::time::SystemTime::now();
    let (status, body) = http_get(port, url, Some(&secret)).await;
    let answered = std::time::SystemTime::now();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let issued = sts.last_issued_for_role(READER).unwrap();
    assert_eq!(v["AccessKeyId"], issued.access_key_id);
    assert_eq!(v["SecretAccessKey"], issued.secret_access_key);
    assert_eq!(v["Token"], issued.session_token);
    // The reported expiry (tests/reported_expiry.rs): 17 minutes from the
    // request, in whole seconds, well before the real one.
    let reported = parse_utc(v["Expiration"].as_str().unwrap());
    let slide = Duration::from_secs(17 * 60);
    assert!(
        asked + slide - Duration::from_secs(1) <= reported && reported <= answered + slide,
        "reported {} for a request at {}",
        format_utc(reported),
        format_utc(asked)
    );

    assert_eq!(http_get(port, url, None).await.0, 401);
    assert_eq!(http_get(port, url, Some("wrong")).await.0, 403);
    assert_eq!(http_get(port, url, Some(&secret[..63])).await.0, 403);
    let (status, body) = http_get(port, url, Some("wrong")).await;
    assert_eq!(status, 403);
    assert!(!body.contains(&issued.secret_access_key));
    assert_eq!(
        http_get(port, "/v1/credentials/nope", Some(&secret))
            .await
            .0,
        404
    );

    // A refresh is served at once (SIGUSR1 runs at most every 5 s per profile).
    r.controls
        .send(rolecall::Command::refresh_all())
        .await
        .unwrap();
    // Requests are recorded on arrival, credentials when issued: wait for those.
    assert!(wait_until(Duration::from_secs(10), || sts.issued().len() >= 4).await);
    let fresh = sts.last_issued_for_role(READER).unwrap();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = http_get(port, url, Some(&secret)).await.1;
        if seen.contains(&fresh.access_key_id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.contains(&fresh.access_key_id));
    r.stop().await;
}

const AUDIT: &str = "arn:aws:iam::444455556666:role/audit";

#[tokio::test(start_paused = true)]
async fn a_chained_profile_is_refreshed_when_its_source_session_changes() {
    // Paused time: the fake STS on this runtime and on the sidecar's clock.
    let clock = rolecall::clock::Clock::tokio();
    let sts = FakeSts::start_local();
    sts.set_clock(clock);
    sts.set_default(Reply::ok());
    for _ in 0..3 {
        sts.push_for_role(AUDIT, Reply::ok_for(Duration::from_secs(12 * 3600)));
    }
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("..chain.yaml");
    std::fs::write(
        &file,
        format!(
            "profiles:\n  reader: {{role_arn: '{READER}'}}\n  audit: {{role_arn: '{AUDIT}', source_profile: reader, external_id: ext-1, policy_arns: [arn:aws:iam::aws:policy/ReadOnlyAccess], policy: '{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":\"s3:GetObject\",\"Resource\":\"*\"}}]}}'}}\n"
        ),
    )
    .unwrap();
    let mut f = flags(&sts, &token, out.path());
    f.profiles.clear();
    f.config = Some(file);
    let config = Config::load(&f, &Env::new()).unwrap();
    let opts = rolecall::Options {
        clock,
        ..test_options()
    };
    let r = Running::start(config, opts);
    // reader refreshes at 27 min (one-hour sessions); audit (12 h, so not
    // due itself) follows its source at once.
    assert!(sts.wait_for_calls(4, Duration::from_secs(10)).await);
    let reqs = sts.requests();
    let at = |i: usize| reqs[i].received - reqs[0].received;
    assert_eq!(reqs[2].role_arn, READER);
    assert!(at(2) >= Duration::from_secs(1619), "{:?}", at(2));
    assert_eq!(reqs[3].role_arn, AUDIT);
    assert!(
        at(3) - at(2) < Duration::from_secs(1),
        "{:?}",
        at(3) - at(2)
    );
    let readers = sts
        .issued()
        .into_iter()
        .filter(|c| c.role_arn == READER)
        .collect::<Vec<_>>();
    let audits = sts.requests_for_role(AUDIT);
    assert_eq!(audits[0].action, "AssumeRole");
    for (i, req) in audits.iter().take(2).enumerate() {
        let key = signing_key(req.authorization.as_deref().unwrap()).unwrap();
        assert_eq!(
            key, readers[i].access_key_id,
            "AssumeRole {i} signed with reader session {i}"
        );
        assert_eq!(req.external_id.as_deref(), Some("ext-1"));
        assert_eq!(req.policy_arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
        assert!(req.policy.as_deref().unwrap().contains("s3:GetObject"));
        assert_eq!(req.duration_seconds, Some(3600));
    }
    r.stop().await;
}

#[tokio::test]
async fn reload_adds_and_removes_process_and_endpoint_profiles_in_every_output() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = out.path().join("..rolecall.yaml");
    let write = |profiles: &str| {
        std::fs::write(
            &file,
            format!("endpoint_addr: 127.0.0.1:{port}\nprofiles:\n{profiles}"),
        )
        .unwrap()
    };
    write(&format!(
        "  reader: {{role_arn: '{READER}', credentials: process}}\n"
    ));
    let mut f = flags(&sts, &token, out.path());
    f.profiles.clear();
    f.config = Some(file.clone());
    let config = Config::load(&f, &Env::new()).unwrap();
    let reload_flags = f.clone();
    let r = Running::start_with_reload(
        config,
        move || Config::load(&reload_flags, &Env::new()),
        test_options(),
    );
    let token_file = out.path().join("endpoint-token");
    assert!(
        wait_until(Duration::from_secs(5), || helper(out.path(), "reader")
            .status
            .success()
            && token_file.exists())
        .await
    );
    let secret = std::fs::read_to_string(&token_file).unwrap();

    // writer added (process), reader dropped.
    write(&format!(
        "  writer: {{role_arn: '{WRITER}', credentials: process}}\n"
    ));
    r.controls.send(rolecall::Command::reload()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || helper(out.path(), "writer")
            .status
            .success())
        .await
    );
    let o = helper(out.path(), "reader");
    assert!(
        !o.status.success(),
        "a dropped profile is gone from the helper's file"
    );
    let cfg = std::fs::read_to_string(out.path().join("config")).unwrap();
    assert!(
        cfg.contains("[profile writer]") && !cfg.contains("[profile reader]"),
        "{cfg}"
    );
    assert_eq!(
        http_get(port, "/v1/credentials/reader", Some(&secret))
            .await
            .0,
        404
    );
    assert_eq!(
        http_get(port, "/v1/credentials/writer", Some(&secret))
            .await
            .0,
        200
    );

    // No process profile left: the helper's file is removed.
    write(&format!("  writer: {{role_arn: '{WRITER}'}}\n"));
    r.controls.send(rolecall::Command::reload()).await.unwrap();
    let process_file = out.path().join("credential-process.json");
    assert!(wait_until(Duration::from_secs(5), || !process_file.exists()).await);
    assert!(
        std::fs::read_to_string(out.path().join("credentials"))
            .unwrap()
            .contains("[writer]")
    );
    r.stop().await;
}
