//! STS over TLS, end to end: rolecall's real HTTPS client (rustls, the
//! platform's roots plus `ca_bundle`) against the fake STS behind a TLS
//! front whose certificate a CA made for the test signed (`openssl`).
//! Trusted through `ca_bundle` / `AWS_CA_BUNDLE`, refused without it with
//! an error that names the certificate problem and the fix; and every bad
//! bundle is a configuration error (exit 64) found before any call.

mod support;

use std::time::Duration;

use rolecall::config::{Config, Env, Flags};
use support::*;

const READER: &str = "reader=arn:aws:iam::111122223333:role/reader";

/// A fake STS behind TLS, signed by `ca`.
struct Secure {
    sb: Sandbox,
    ca: TestCa,
    front: TlsFront,
}

impl Secure {
    fn new() -> Secure {
        let sb = Sandbox::granting(Duration::from_secs(3600));
        let ca = TestCa::new("rolecall test CA");
        let front = TlsFront::start(sb.sts.addr(), &ca);
        Secure { sb, ca, front }
    }

    fn flags(&self, ca_bundle: Option<&std::path::Path>) -> Flags {
        Flags {
            sts_endpoint: Some(self.front.endpoint()),
            ca_bundle: ca_bundle.map(|p| p.display().to_string()),
            ..test_flags(&self.sb.sts, &self.sb.token, self.sb.out.path(), &[READER])
        }
    }

    async fn once(&self, flags: &Flags, env: &Env) -> Vec<String> {
        let config = Config::load(flags, env).expect("valid configuration");
        rolecall::once(&config, &test_options())
            .await
            .expect("once runs")
            .failed
    }

    fn last_error(&self) -> String {
        let text = std::fs::read_to_string(self.sb.out.path().join("status.json")).unwrap();
        let status: serde_json::Value = serde_json::from_str(&text).unwrap();
        status["profiles"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

#[tokio::test]
async fn sts_over_tls_is_trusted_through_the_ca_bundle() {
    let s = Secure::new();
    let failed = s.once(&s.flags(Some(&s.ca.ca_pem())), &Env::new()).await;
    assert!(failed.is_empty(), "failed: {failed:?}; {}", s.last_error());
    assert_eq!(s.sb.sts.calls(), 1, "the call went through the TLS front");
    let creds = std::fs::read_to_string(s.sb.out.path().join("credentials")).unwrap();
    assert!(parse_ini(&creds).contains_key("reader"));
}

#[tokio::test]
async fn aws_ca_bundle_is_read_and_the_flag_wins_over_it() {
    let s = Secure::new();
    let env = Env::from([("AWS_CA_BUNDLE".into(), s.ca.ca_pem().display().to_string())]);
    assert!(
        s.once(&s.flags(None), &env).await.is_empty(),
        "{}",
        s.last_error()
    );
    // A flag naming another CA replaces the variable: refused.
    let other = TestCa::new("another CA");
    let failed = s.once(&s.flags(Some(&other.ca_pem())), &env).await;
    assert_eq!(failed, ["reader"]);
    assert!(
        s.last_error().starts_with("CertificateRefused"),
        "{}",
        s.last_error()
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_naming_the_problem_and_the_fix() {
    let s = Secure::new();
    let failed = s.once(&s.flags(None), &Env::new()).await;
    assert_eq!(failed, ["reader"]);
    assert_eq!(s.sb.sts.calls(), 0, "no request left the TLS handshake");
    let e = s.last_error();
    assert!(e.starts_with("CertificateRefused"), "{e}");
    assert!(e.contains("UnknownIssuer"), "the rustls reason: {e}");
}

#[test]
fn the_log_names_the_certificate_problem_and_the_fix() {
    let s = Secure::new();
    let run = run_for(
        rolecall_piped()
            .arg("once")
            .arg("--token-file")
            .arg(s.sb.token.path())
            .arg("--output-dir")
            .arg(s.sb.out.path())
            .args(["--region", "eu-west-1", "--profile", READER])
            .args(["--credentials", TEST_MODE])
            .args(["--sts-endpoint", &s.front.endpoint()]),
        Duration::from_secs(60),
    );
    run.assert_says(
        1,
        &[
            "CertificateRefused",
            "UnknownIssuer",
            "config_error",
            "ca_bundle",
            "AWS_CA_BUNDLE",
        ],
        "an untrusted STS certificate",
    );
}

#[tokio::test]
async fn a_refused_certificate_is_a_configuration_error_in_the_metrics_and_logs() {
    let s = Secure::new();
    let port = free_port();
    let flags = Flags {
        health_addr: Some(format!("127.0.0.1:{port}")),
        ..s.flags(None)
    };
    let running = Running::start(Config::load(&flags, &Env::new()).unwrap(), test_options());
    let counted = || async {
        let (_, body) = http_get(port, "/metrics", None).await;
        body.contains("rolecall_refresh_total{profile=\"reader\",result=\"config_error\"} 1")
    };
    let mut seen = false;
    for _ in 0..500 {
        if counted().await {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "one config_error refresh is counted");
    running.stop().await;
}

#[test]
fn every_bad_bundle_is_a_configuration_error_listed_with_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let key_only = dir.path().join("key.pem");
    std::fs::write(
        &key_only,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let huge = dir.path().join("huge.pem");
    std::fs::write(&huge, vec![b'A'; 2 << 20]).unwrap();
    let fifo = dir.path().join("fifo.pem");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let cases = [
        (dir.path().join("missing.pem"), "cannot read the CA bundle"),
        (dir.path().to_owned(), "cannot read the CA bundle"),
        (fifo, "cannot read the CA bundle"),
        (key_only, "holds no certificate"),
        (broken, "cannot be used as a trust anchor"),
        (huge, "larger than 1024 KiB"),
    ];
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    for (path, want) in cases {
        let flags = Flags {
            ca_bundle: Some(path.display().to_string()),
            duration: Some("12".into()),
            ..test_flags(&sts, &token, out.path(), &[READER])
        };
        let e = Config::load(&flags, &Env::new()).expect_err("refused");
        let text = e.to_string();
        assert!(
            text.contains(&format!("--ca-bundle: {want}")) || text.contains(want),
            "{}: {text}",
            path.display()
        );
        assert!(text.contains("--ca-bundle"), "names the flag: {text}");
        assert!(
            text.contains("--duration"),
            "and every other problem: {text}"
        );
    }
}

#[test]
fn the_binary_exits_64_for_a_bad_bundle_before_any_call() {
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tempfile::tempdir().unwrap();
    let run = run_for(
        rolecall_piped()
            .arg("once")
            .args(base_args(&sts, &token, out.path()))
            .args(["--profile", READER])
            .env("AWS_CA_BUNDLE", "/nonexistent/ca.pem"),
        Duration::from_secs(30),
    );
    run.assert_says(
        64,
        &["AWS_CA_BUNDLE", "cannot read the CA bundle"],
        "bad bundle",
    );
    assert_eq!(sts.calls(), 0);
}

#[tokio::test]
async fn the_yaml_key_is_read_as_the_flag_is() {
    let s = Secure::new();
    let yaml = format!("ca_bundle: {}\n", s.ca.ca_pem().display());
    let config = Config::load_text(
        &s.flags(None),
        &Env::new(),
        std::path::Path::new("rolecall.yaml"),
        yaml.as_bytes(),
    )
    .expect("valid");
    assert_eq!(
        config
            .ca_bundle
            .as_ref()
            .map(|b| (b.path.clone(), b.certificates)),
        Some((s.ca.ca_pem(), 1))
    );
    let failed = rolecall::once(&config, &test_options())
        .await
        .unwrap()
        .failed;
    assert!(failed.is_empty(), "{}", s.last_error());
}

#[tokio::test]
async fn a_bundle_mounted_from_a_configmap_is_read_through_its_data_link() {
    // kubelet's layout: ca.pem -> ..data/ca.pem -> ..2026_…/ca.pem.
    let s = Secure::new();
    let pem = std::fs::read_to_string(s.ca.ca_pem()).unwrap();
    let mounted = ConfigDir::configmap(&pem);
    assert!(
        std::fs::symlink_metadata(mounted.path())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let failed = s.once(&s.flags(Some(&mounted.path())), &Env::new()).await;
    assert!(failed.is_empty(), "{}", s.last_error());
}
