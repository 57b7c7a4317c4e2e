//! `rolecall webhook`, the real binary, over real HTTPS on loopback: its
//! certificate signed by a CA made for the test (`openssl`), a rustls
//! client trusting that CA, raw HTTP/1.1 requests.
//!
//! - the AdmissionReview fixtures of tests/webhook (`*.request.json`):
//!   the answer's patch, applied to the request's pod, is byte for byte
//!   `rolecall inject`'s output for that pod (and every golden case of
//!   tests/inject/golden, as the Pod its template makes); the decoded
//!   patch is compared with `*.patch.json` (`ROLECALL_BLESS=1` rewrites);
//! - the certificate swapped as kubelet swaps a Secret volume: a new
//!   connection gets the new certificate, no restart;
//! - hostile and wrong requests each get their answer, and the server
//!   answers a good request after them;
//! - bad flags and certificates at start; SIGTERM: exit 0.
#![cfg(feature = "inject")]

mod support;

#[path = "webhook/client.rs"]
mod client;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use client::{CertDir, Webhook, apply, https, tls};
use serde_yaml_ng::Value;
use support::{TestCa, rolecall_command};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook")
}

/// `rolecall inject` of `pod` (JSON on stdin), as a user runs it.
fn offline_inject(pod: &[u8]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rolecall"))
        .arg("inject")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(pod).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn review(object: &Value, operation: &str) -> Vec<u8> {
    // Built as an ordered value: serde_json's own Value would sort the
    // pod's keys.
    let text = format!(
        r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {{"uid": "uid-1", "kind": {{"group": "", "version": "v1", "kind": "Pod"}},
            "namespace": "shop", "operation": "{operation}", "object": {}}}}}"#,
        serde_json::to_string(object).unwrap()
    );
    text.into_bytes()
}

/// The response of an AdmissionReview answer, checked for its envelope.
fn response(body: &[u8], uid: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON answer");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], uid);
    v["response"].clone()
}

/// The decoded JSON Patch of a response (as an ordered value).
fn patch_of(response: &serde_json::Value) -> Option<Value> {
    let b64 = response["patch"].as_str()?;
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// The pod of a request body, keys in order.
fn object_of(request: &[u8]) -> Value {
    let doc: Value = serde_json::from_slice(request).unwrap();
    doc["request"]["object"].clone()
}

async fn mutate(hook: &Webhook, body: &[u8]) -> (u16, Vec<u8>) {
    let r = https(hook.addr, &[hook.ca_pem()], &client::post("/mutate", body)).await;
    (r.status, r.body)
}

async fn patch_equals_offline_injection(hook: &Webhook, request: &[u8], uid: &str) -> Value {
    let (status, body) = mutate(hook, request).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let r = response(&body, uid);
    assert_eq!(r["allowed"], true, "{r}");
    let pod = object_of(request);
    let patch = patch_of(&r).expect("a patch");
    let patched = apply(&pod, &patch).expect("the patch applies");
    let want = offline_inject(&serde_json::to_vec(&pod).unwrap());
    assert_eq!(serde_yaml_ng::to_string(&patched).unwrap(), want);
    patch
}

#[tokio::test]
async fn the_patch_applied_to_the_pod_is_what_rolecall_inject_writes() {
    let hook = Webhook::start();
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.to_str().and_then(|p| p.strip_suffix(".request.json")) else {
            continue;
        };
        let request = std::fs::read(&path).unwrap();
        let uid = serde_json::from_slice::<serde_json::Value>(&request).unwrap()["request"]["uid"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, body) = mutate(&hook, &request).await;
        assert_eq!(status, 200);
        let patch = patch_of(&response(&body, &uid));
        if patch.is_some() {
            patch_equals_offline_injection(&hook, &request, &uid).await;
        }
        let got = match &patch {
            Some(p) => serde_json::to_string_pretty(p).unwrap() + "\n",
            None => "no patch\n".to_owned(),
        };
        let want = PathBuf::from(format!("{name}.patch.json"));
        if std::env::var_os("ROLECALL_BLESS").is_some() {
            std::fs::write(&want, &got).unwrap();
        } else if std::fs::read_to_string(&want).unwrap_or_default() != got {
            failures.push(format!("{} differs:\n{got}", want.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        !hook.log().contains("do-not-log-me"),
        "an env value in the log"
    );
}

/// Each golden case's pod templates, as the Pods a controller creates.
fn golden_pods() -> Vec<(String, Value)> {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inject/golden");
    let mut pods = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(golden)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = std::fs::read_to_string(dir.join("in.yaml")) else {
            continue;
        };
        if !dir.join("out.yaml").exists() {
            continue;
        }
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc).unwrap();
            collect_pods(&v, &dir.display().to_string(), &mut pods);
        }
    }
    pods
}

fn collect_pods(v: &Value, case: &str, pods: &mut Vec<(String, Value)>) {
    if let Some(items) = v.get("items").and_then(Value::as_sequence) {
        for item in items {
            collect_pods(item, case, pods);
        }
        return;
    }
    let tpl = match v.get("kind").and_then(Value::as_str) {
        Some("Pod") => Some(v.clone()),
        Some("CronJob") => v["spec"]["jobTemplate"]["spec"].get("template").cloned(),
        Some(_) => v["spec"].get("template").cloned(),
        None => None,
    };
    let Some(Value::Mapping(tpl)) = tpl else {
        return;
    };
    let mut pod = serde_yaml_ng::Mapping::new();
    pod.insert("apiVersion".into(), "v1".into());
    pod.insert("kind".into(), "Pod".into());
    for (k, val) in tpl {
        if k != "apiVersion" && k != "kind" {
            pod.insert(k, val);
        }
    }
    pods.push((case.to_owned(), Value::Mapping(pod)));
}

#[tokio::test]
async fn every_golden_case_gives_the_same_pod_through_the_webhook() {
    let hook = Webhook::start();
    let pods = golden_pods();
    assert!(pods.len() >= 15, "{} pods", pods.len());
    for (case, pod) in pods {
        let request = review(&pod, "CREATE");
        let (status, body) = mutate(&hook, &request).await;
        assert_eq!(status, 200, "{case}");
        let r = response(&body, "uid-1");
        assert_eq!(r["allowed"], true, "{case}: {r}");
        match patch_of(&r) {
            Some(_) => {
                patch_equals_offline_injection(&hook, &request, "uid-1").await;
            }
            None => {
                let same = offline_inject(&serde_json::to_vec(&pod).unwrap());
                assert_eq!(serde_yaml_ng::to_string(&pod).unwrap(), same, "{case}");
            }
        }
    }
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let (one, two) = (TestCa::new("webhook CA one"), TestCa::new("webhook CA two"));
    let certs = CertDir::new(&one);
    let hook = Webhook::start_with(certs, &one);
    let both = [one.ca_pem(), two.ca_pem()];
    let before = https(hook.addr, &both, &client::get("/nothing")).await;
    assert_eq!(before.status, 404);
    hook.certs.rotate(&two);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = https(hook.addr, &both, &client::get("/nothing")).await;
        if now.peer != before.peer {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Trusting only the new CA now works; the old CA no longer does.
    let only_two = https(hook.addr, &[two.ca_pem()], &client::get("/livez")).await;
    assert_eq!(only_two.status, 404);
    assert!(hook.metric("rolecall_webhook_certificate_reloads_total{result=\"ok\"}") >= 1.0);
    // A broken pair is refused and the one in use stays.
    hook.certs.rotate_raw(b"not a certificate", b"not a key");
    client::wait_for(|| {
        hook.metric("rolecall_webhook_certificate_reloads_total{result=\"failed\"}") >= 1.0
    })
    .await;
    let still = https(hook.addr, &[two.ca_pem()], &client::get("/nothing")).await;
    assert_eq!((still.status, &still.peer), (404, &only_two.peer));
    assert!(hook.log().contains("new TLS certificate or key not loaded"));
}

/// The fixture's pod, opted in: a request that gets a patch.
fn good_request() -> Vec<u8> {
    std::fs::read(fixtures().join("pod-create.request.json")).unwrap()
}

async fn raw(hook: &Webhook, request: &[u8]) -> (u16, String) {
    let r = https(hook.addr, &[hook.ca_pem()], request).await;
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[tokio::test]
async fn wrong_and_hostile_requests_get_their_answer_and_the_server_stays_up() {
    let hook = Webhook::start();
    let good = good_request();
    let text = String::from_utf8(good.clone()).unwrap();
    let v1beta1 = text.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
    let other_kind = text.replace(r#""kind": "Pod"}"#, r#""kind": "Secret"}"#);
    let update = text.replace(r#""operation": "CREATE""#, r#""operation": "UPDATE""#);
    let json_head = |len: usize| {
        format!(
            "POST /mutate HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n"
        )
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            client::post("/mutate", b"{\"apiVersion\":"),
            400,
            "not JSON",
        ),
        (
            "wrong apiVersion",
            client::post("/mutate", v1beta1.as_bytes()),
            400,
            "admission.k8s.io/v1beta1",
        ),
        (
            "declared too large",
            json_head(3 * 1024 * 1024 + 1).into_bytes(),
            413,
            "larger than 3145728",
        ),
        (
            "another path",
            client::post("/validate", &good),
            404,
            "only /mutate",
        ),
        ("another method", client::get("/mutate"), 405, "takes POST"),
        (
            "not JSON",
            String::from_utf8(client::post("/mutate", &good))
                .unwrap()
                .replace("application/json", "text/yaml")
                .into_bytes(),
            415,
            "application/json",
        ),
    ];
    for (what, request, status, says) in cases {
        let (got, body) = raw(&hook, &request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert!(body.contains(says), "{what}: {body}");
    }
    for (what, request) in [("a Secret", other_kind), ("an UPDATE", update)] {
        let (got, body) = raw(&hook, &client::post("/mutate", request.as_bytes())).await;
        assert_eq!(got, 200, "{what}");
        let r = response(body.as_bytes(), "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r["allowed"], true, "{what}");
        assert!(r.get("patch").is_none(), "{what}: {r}");
    }
    assert_eq!(oversized_chunked_body(&hook).await, 413);
    slow_client_is_closed_after_the_header_timeout(&hook).await;
    let (got, body) = raw(&hook, &client::post("/mutate", &good)).await;
    assert_eq!(got, 200);
    assert!(
        patch_of(&response(
            body.as_bytes(),
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        ))
        .is_some()
    );
    assert_eq!(
        hook.metric("rolecall_webhook_requests_total{outcome=\"invalid\"}"),
        7.0
    );
    assert_eq!(
        hook.metric("rolecall_webhook_requests_total{outcome=\"unchanged\"}"),
        2.0
    );
    assert_eq!(
        hook.metric("rolecall_webhook_requests_total{outcome=\"injected\"}"),
        1.0
    );
    assert_eq!(
        hook.metric("rolecall_webhook_refusals_total{reason=\"too_large\"}"),
        2.0
    );
    assert!(hook.metric("rolecall_webhook_certificate_expiry_timestamp_seconds") > 1.7e9);
    let metrics = hook.health_get("/metrics").await.1;
    for family in [
        "rolecall_webhook_request_duration_seconds_count 10",
        "rolecall_watch_polling{file=\"tls_cert\"} 0",
    ] {
        assert!(metrics.contains(family), "{family}: {metrics}");
    }
    assert_eq!(hook.health_get("/livez").await.0, 200);
    assert_eq!(hook.health_get("/readyz").await.0, 200);
    assert_eq!(hook.health_get("/nothing").await.0, 404);
}

/// A chunked body that never ends below the cap: 413 once 3 MiB are read.
async fn oversized_chunked_body(hook: &Webhook) -> u16 {
    let s = tls(hook.addr, &[hook.ca_pem()]).await.expect("handshake");
    let (mut rd, mut wr) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let head = "POST /mutate HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        wr.write_all(head.as_bytes()).await?;
        let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
        for _ in 0..64 {
            wr.write_all(chunk.as_bytes()).await?;
        }
        std::io::Result::Ok(())
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut answer)).await;
    let _ = writer.await;
    client::parse(&answer).0
}

/// A client that never finishes its request head is closed after the
/// header timeout (5 s, the real one: the webhook is another process).
async fn slow_client_is_closed_after_the_header_timeout(hook: &Webhook) {
    let started = Instant::now();
    let slow_head = async {
        let mut s = tls(hook.addr, &[hook.ca_pem()]).await.expect("handshake");
        s.write_all(b"POST /mutate HTTP/1.1\r\nHost: w\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest)).await;
        (read.is_ok(), started.elapsed())
    };
    // A TCP client that never even starts TLS: closed the same way.
    let no_handshake = async {
        let mut tcp = tokio::net::TcpStream::connect(hook.addr).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut rest)).await;
        (read.is_ok(), started.elapsed())
    };
    let (head, handshake) = tokio::join!(slow_head, no_handshake);
    for (what, (closed, after)) in [("slow head", head), ("no handshake", handshake)] {
        assert!(closed, "{what}: the connection stayed open");
        assert!(
            after >= Duration::from_secs(4),
            "{what}: closed after {after:?}"
        );
    }
}

fn run_webhook(args: &[&str]) -> (Option<i32>, String) {
    let out = rolecall_command()
        .arg("webhook")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_and_certificates_stop_the_start_with_every_problem() {
    let (code, err) = run_webhook(&[
        "--listen=nowhere",
        "--health-addr=:1",
        "--log-format=xml",
        "--image= ",
    ]);
    assert_eq!(code, Some(64), "{err}");
    for says in [
        "--listen \"nowhere\"",
        "--health-addr \":1\"",
        "--tls-cert-file (or ROLECALL_WEBHOOK_TLS_CERT_FILE) is required",
        "--tls-key-file",
        "--log-format \"xml\"",
        "--image must not be empty",
    ] {
        assert!(err.contains(says), "{says}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&key, "not a key, and no PEM block\n").unwrap();
    let flag = |name: &str, p: &Path| format!("--{name}={}", p.display());
    let (code, err) = run_webhook(&[
        &flag("tls-cert-file", &missing),
        &flag("tls-key-file", &key),
    ]);
    assert_eq!(code, Some(66), "{err}");
    assert!(
        err.contains("TLS certificate file") && err.contains("does not exist"),
        "{err}"
    );
    let ca = TestCa::new("webhook flags CA");
    let (code, err) = run_webhook(&[
        &flag("tls-cert-file", &ca.server_pem()),
        &flag("tls-key-file", &key),
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("holds no PEM private key") && !err.contains("no PEM block\n"),
        "{err}"
    );
    let other = TestCa::new("another CA");
    let (code, err) = run_webhook(&[
        &flag("tls-cert-file", &ca.server_pem()),
        &flag("tls-key-file", &other.server_key()),
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("do not make a pair"), "{err}");
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let mut hook = Webhook::start();
    let good = good_request();
    let mut s = tls(hook.addr, &[hook.ca_pem()]).await.expect("handshake");
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        good.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // hyper says 100 Continue once the handler reads the body: in flight.
    let mut cont = [0u8; 25];
    s.read_exact(&mut cont).await.unwrap();
    assert!(
        cont.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&cont)
    );
    hook.child.signal(libc::SIGTERM);
    client::wait_for(|| hook.log().contains("stopping")).await;
    s.write_all(&good).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let (status, body) = client::parse(&answer);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (exit, hung) = hook.child.exit_within(Duration::from_secs(15));
    assert!(!hung && exit.code() == Some(0), "{exit:?}: {}", hook.log());
    assert!(hook.log().contains("webhook stopped"), "{}", hook.log());
}
