//! The loopback credentials endpoint as SDKs of every age use it: a token
//! that survives a restart, a token supplied from a Secret (validated, and
//! reloaded when kubelet swaps it), JSON error bodies, and endpoint-only
//! profiles that no file can shadow.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use rolecall::Options;
use rolecall::config::{Config, Env, Flags};
use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
const WRITER: &str = "arn:aws:iam::111122223333:role/writer";

fn opts() -> Options {
    Options {
        helper_binary: None,
        ..test_options()
    }
}

/// One request with any method; `(status, headers, body)`, headers
/// lower-cased, or `(0, "", "")` when nothing listens.
async fn request(port: u16, method: &str, path: &str, auth: Option<&str>) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new(), String::new());
    };
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new(), String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Asserts an error answer: `status`, JSON with `code` (and the same
/// `Code`, for JS v3) and a `message` holding `needle`.
fn assert_json_error(got: &(u16, String, String), status: u16, code: &str, needle: &str) {
    let (s, head, body) = got;
    assert_eq!(*s, status, "{head}\n{body}");
    assert!(
        head.contains("content-type: application/json"),
        "{status}: {head}"
    );
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {body}"));
    assert_eq!(v["code"], code, "{body}");
    assert_eq!(v["Code"], code, "{body}");
    let message = v["message"].as_str().expect("a message");
    assert!(message.contains(needle), "{status}: {message}");
    assert_eq!(v["Message"], message, "{body}");
}

async fn listening(port: u16) -> bool {
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await
}

/// Waits until `GET /v1/credentials/NAME` with `auth` answers 200.
async fn served(port: u16, name: &str, auth: &str) -> Option<serde_json::Value> {
    for _ in 0..1000 {
        let (status, body) = http_get(port, &format!("/v1/credentials/{name}"), Some(auth)).await;
        if status == 200 {
            return serde_json::from_str(&body).ok();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// The rolecall binary running as a sidecar, its debug log in the file `log`.
fn sidecar(args: &[String], env: &[(&str, &str)], log: &Path) -> ChildSidecar {
    ChildSidecar::spawn_logging_to(
        rolecall_command()
            .env("RUST_LOG", "debug")
            .env("ROLECALL_HEALTH_ADDR", "")
            .envs(env.iter().copied())
            .arg("run")
            .args(args),
        log,
    )
}

fn endpoint_args(sts: &FakeSts, token: &TokenDir, out: &Path, port: u16) -> Vec<String> {
    let mut a = base_args(sts, token, out);
    a.extend([
        "--profile".into(),
        format!("reader={READER}"),
        "--endpoint-addr".into(),
        format!("127.0.0.1:{port}"),
    ]);
    a
}

#[tokio::test]
async fn a_restarted_sidecar_keeps_its_token_and_serves_clients_holding_it() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("aws");
    let port = free_port();
    let args = endpoint_args(&sts, &token, &out, port);

    let first = sidecar(&args, &[], &root.path().join("first.log"));
    let copy = out.join("endpoint-token");
    assert!(wait_until(Duration::from_secs(10), || copy.exists()).await);
    // An app that copied it into AWS_CONTAINER_AUTHORIZATION_TOKEN.
    let held = fs::read_to_string(&copy).unwrap();
    assert!(
        served(port, "reader", &held).await.is_some(),
        "{}",
        first.log()
    );
    drop(first); // killed: a crash, or the kubelet restarting the container

    let second = sidecar(&args, &[], &root.path().join("second.log"));
    assert!(listening(port).await, "{}", second.log());
    assert!(
        served(port, "reader", &held).await.is_some(),
        "the old token is still accepted after the restart:\n{}",
        second.log()
    );
    assert_eq!(fs::read_to_string(&copy).unwrap(), held, "the file is kept");
    // A client asking for a profile rolecall lacks: SDKs that show only the
    // status leave the operator this log line.
    let (status, _) = http_get(port, "/v1/credentials/writer", Some(&held)).await;
    assert_eq!(status, 404);
    assert!(
        wait_until(Duration::from_secs(5), || second
            .log()
            .contains("request for a profile that is not configured"))
        .await,
        "{}",
        second.log()
    );
    assert!(
        second.log().contains("profile=\"writer\""),
        "{}",
        second.log()
    );
    assert!(
        second
            .log()
            .contains("kept the endpoint token of the previous run")
    );
    for log in [
        root.path().join("first.log"),
        root.path().join("second.log"),
    ] {
        let text = fs::read_to_string(&log).unwrap();
        assert!(!text.contains(&held), "the token is never logged: {text}");
    }
}

#[tokio::test]
async fn a_supplied_token_is_used_copied_and_followed_through_a_secret_rotation() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    // A mounted Secret: kubelet's `..data` layout, with a trailing newline
    // as `kubectl create secret --from-file` often leaves.
    let first = "first-supplied-token-0123456789abcdef";
    let secret = TokenDir::new(&format!("{first}\n"));
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("aws");
    let port = free_port();
    let args = endpoint_args(&sts, &token, &out, port);
    let secret_path = secret.path().display().to_string();
    let sc = sidecar(
        &args,
        &[("ROLECALL_ENDPOINT_TOKEN_FILE", secret_path.as_str())],
        &root.path().join("rolecall.log"),
    );
    let copy = out.join("endpoint-token");
    assert!(
        served(port, "reader", first).await.is_some(),
        "{}",
        sc.log()
    );
    assert_eq!(
        fs::read_to_string(&copy).unwrap(),
        first,
        "copied without the newline, for AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
    );

    let second = "second-supplied-token-ABCDEFGHIJKLMNOP";
    secret.rotate(second);
    let (status, body) = http_get(port, "/v1/credentials/reader", Some(second)).await;
    assert_eq!(status, 200, "the new token is accepted at once: {body}");
    assert_json_error(
        &request(port, "GET", "/v1/credentials/reader", Some(first)).await,
        403,
        "InvalidToken",
        "does not match",
    );
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(&copy)
            .is_ok_and(|t| t == second))
        .await,
        "the copy follows"
    );

    // A bad new version is refused; the current token stays valid.
    let bad = "bad-token\nwith-a-newline-inside-it-000000";
    secret.rotate(bad);
    let (status, body) = http_get(port, "/v1/credentials/reader", Some(second)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(Duration::from_secs(10), || sc
            .log()
            .contains("endpoint token file changed but is not usable"))
        .await,
        "{}",
        sc.log()
    );
    assert!(sc.log().contains("newline inside"), "{}", sc.log());
    assert_eq!(fs::read_to_string(&copy).unwrap(), second);

    let third = "third-supplied-token-zyxwvutsrqponmlk";
    secret.rotate(third);
    assert!(served(port, "reader", third).await.is_some());
    let log = sc.log();
    for t in [first, second, third, "bad-token", "with-a-newline"] {
        assert!(!log.contains(t), "{t} is never logged:\n{log}");
    }
}

#[test]
fn a_bad_supplied_token_exits_64_naming_the_problem_but_not_the_token() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("supplied");
    let out = dir.path().join("aws");
    for (content, problem) in [
        ("tooshort-XYZZY!", "15 characters long; at least 32"),
        (
            "line-one-of-the-XYZZY-000000000000\nline-two",
            "newline inside",
        ),
        (
            "XYZZY-with-an-escape-\u{1b}[31m-00000000000",
            "not visible ASCII",
        ),
    ] {
        fs::write(&file, content).unwrap();
        let mut c = rolecall_piped();
        c.arg("run")
            .args(endpoint_args(&sts, &token, &out, free_port()))
            .args(["--endpoint-token-file", &file.display().to_string()]);
        let r = run_for(&mut c, Duration::from_secs(20));
        assert_eq!(r.code, Some(64), "{}", r.describe());
        let all = r.all();
        assert!(all.contains("--endpoint-token-file"), "{}", r.describe());
        assert!(all.contains(problem), "{}", r.describe());
        assert!(!all.contains("XYZZY"), "the token is not shown: {all}");
    }
    // From the YAML file, with the key path.
    fs::write(&file, "short").unwrap();
    let yaml = dir.path().join("rolecall.yaml");
    fs::write(&yaml, format!("endpoint_token_file: {}\n", file.display())).unwrap();
    let mut c = rolecall_piped();
    c.arg("run")
        .args(endpoint_args(&sts, &token, &out, free_port()))
        .args(["--config", &yaml.display().to_string()]);
    let r = run_for(&mut c, Duration::from_secs(20));
    assert_eq!(r.code, Some(64), "{}", r.describe());
    assert!(
        r.stderr.contains("rolecall.yaml: endpoint_token_file: ")
            && r.stderr.contains("5 characters long"),
        "{}",
        r.describe()
    );
    // Without the endpoint it has no use.
    let mut c = rolecall_piped();
    c.arg("run")
        .args(base_args(&sts, &token, &out))
        .args(["--profile", &format!("reader={READER}")])
        .args(["--endpoint-token-file", &file.display().to_string()]);
    let r = run_for(&mut c, Duration::from_secs(20));
    assert_eq!(r.code, Some(64), "{}", r.describe());
    assert!(r.stderr.contains("set endpoint_addr"), "{}", r.describe());
}

#[tokio::test]
async fn every_error_answer_is_json_with_a_code_and_a_message() {
    let sts = FakeSts::start();
    // No session ever: every call is refused.
    sts.set_default(Reply::access_denied());
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let config =
        Config::load(&endpoint_flags(&sts, &token, out.path(), port), &Env::new()).unwrap();
    let r = Running::start(config, opts());
    let copy = out.path().join("endpoint-token");
    assert!(wait_until(Duration::from_secs(10), || copy.exists()).await);
    assert!(listening(port).await);
    let good = fs::read_to_string(&copy).unwrap();
    let url = "/v1/credentials/reader";

    assert_json_error(
        &request(port, "GET", url, None).await,
        401,
        "MissingToken",
        "no Authorization header",
    );
    assert_json_error(
        &request(port, "GET", url, Some("wrong")).await,
        403,
        "InvalidToken",
        "does not match",
    );
    assert_json_error(
        &request(port, "GET", url, Some(&good[..63])).await,
        403,
        "InvalidToken",
        "does not match",
    );
    assert_json_error(
        &request(port, "GET", "/v1/credentials/nope", Some(&good)).await,
        404,
        "UnknownProfile",
        "no profile \"nope\"",
    );
    assert_json_error(
        &request(port, "GET", "/latest/meta-data/", Some(&good)).await,
        404,
        "NotFound",
        "/v1/credentials/PROFILE",
    );
    let post = request(port, "POST", url, Some(&good)).await;
    assert_json_error(&post, 405, "MethodNotAllowed", "only answers GET");
    assert!(post.1.contains("allow: get"), "{}", post.1);
    assert!(
        wait_until(Duration::from_secs(10), || sts.calls() >= 2).await,
        "both profiles tried"
    );
    let unready = request(port, "GET", url, Some(&good)).await;
    assert_json_error(
        &unready,
        503,
        "CredentialsNotReady",
        "profile reader has no valid credentials yet",
    );
    assert!(
        unready.2.contains("AccessDenied"),
        "says why: {}",
        unready.2
    );
    assert!(unready.1.contains("retry-after: 5"), "{}", unready.1);
    r.stop().await;
}

#[tokio::test]
async fn endpoint_only_profiles_are_served_but_never_written_as_keys() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = out.path().join("rolecall.yaml");
    let dir = out.path().join("aws");
    fs::write(
        &yaml,
        format!(
            "output_dir: {}\nendpoint_addr: 127.0.0.1:{port}\nprofiles:\n  reader:\n    role_arn: {READER}\n    credentials: endpoint\n  writer:\n    role_arn: {WRITER}\n    credentials: process\n",
            dir.display()
        ),
    )
    .unwrap();
    let f = Flags {
        config: Some(yaml),
        token_file: Some(token.path().display().to_string()),
        region: Some("eu-west-1".into()),
        sts_endpoint: Some(sts.endpoint()),
        health_addr: Some(String::new()),
        control_socket: Some(String::new()), // no socket in the host's /run
        ..Flags::default()
    };
    let config = Config::load(&f, &Env::new()).unwrap();
    let mut o = opts();
    o.helper_binary = Some(env!("CARGO_BIN_EXE_rolecall").into());
    let r = Running::start(config, o);
    let status_file = dir.join("status.json");
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(&status_file)
            .is_ok_and(|s| s.matches("\"expiration\": \"").count() == 2))
        .await
    );
    let good = fs::read_to_string(dir.join("endpoint-token")).unwrap();
    let v = served(port, "reader", &good).await.expect("served");
    let issued = sts.last_issued_for_role(READER).unwrap();
    assert_eq!(v["AccessKeyId"], issued.access_key_id);

    let credentials = fs::read_to_string(dir.join("credentials")).unwrap();
    assert!(
        !credentials.contains("[reader]") && !credentials.contains(&issued.access_key_id),
        "no static copy to shadow the endpoint:\n{credentials}"
    );
    let process = fs::read_to_string(dir.join("credential-process.json")).unwrap();
    assert!(
        !process.contains("\"reader\"") && !process.contains(&issued.access_key_id),
        "{process}"
    );
    assert!(process.contains("\"writer\""), "{process}");
    let config = parse_ini(&fs::read_to_string(dir.join("config")).unwrap());
    let section = &config["profile reader"];
    assert_eq!(section.get("region").map(String::as_str), Some("eu-west-1"));
    assert!(!section.contains_key("credential_process"), "{section:?}");
    assert!(config["profile writer"].contains_key("credential_process"));
    let status: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&status_file).unwrap()).unwrap();
    let modes: Vec<(&str, &str)> = status["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["credentials"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(modes, [("reader", "endpoint"), ("writer", "process")]);
    r.stop().await;

    let st = rolecall_command()
        .args(["status", "--output-dir", &dir.display().to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("reader") && l.contains("endpoint")),
        "rolecall status shows the mode:\n{text}"
    );
}

#[test]
fn endpoint_only_profiles_without_the_endpoint_exit_64() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let mut c = rolecall_piped();
    c.arg("run")
        .args(base_args_with(&sts, &token, out.path(), Some("endpoint")))
        .args(["--profile", &format!("reader={READER}")]);
    let r = run_for(&mut c, Duration::from_secs(20));
    assert_eq!(r.code, Some(64), "{}", r.describe());
    assert!(
        r.stderr
            .contains("--credentials: profile \"reader\" uses credentials: endpoint"),
        "{}",
        r.describe()
    );
    assert!(r.stderr.contains("set endpoint_addr"), "{}", r.describe());
    assert_eq!(sts.calls(), 0);
}
