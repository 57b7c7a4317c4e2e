use super::*;

/// A certificate valid until 2036-12-04T20:40:16Z (UTCTime).
const UTC_TIME: &str = r"-----BEGIN CERTIFICATE-----
MIIBbTCCAROgAwIBAgIUf6s22JPInB4CoRFnTpEOVSdoy9wwCgYIKoZIzj0EAwIw
DDEKMAgGA1UEAwwBdDAeFw0yNjEyMDcyMDQwMTZaFw0zNjEyMDQyMDQwMTZaMAwx
CjAIBgNVBAMMAXQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASVeDXGqFUv6mM8
qLcivVLGt6XwKNCNEqVcv2cph9yF7Mhh3F6ZCV9/etAACRln2IcWwDWHn0bbV1V/
RjQ+aX9lo1MwUTAdBgNVHQ4EFgQUKtfgKap2ClmzmwhSYafHnI2mUTYwHwYDVR0j
BBgwFoAUKtfgKap2ClmzmwhSYafHnI2mUTYwDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNIADBFAiEAwd88ijSU69y3cVVqgglnpf1/GXN3jljb8FBL97UKCkoC
IEdM8JyGqw9/6Y2It9uQm+vBFttPTqsoR+P8ROM29kfu
-----END CERTIFICATE-----
";

/// A certificate valid until 2054-04-24T20:40:19Z (GeneralizedTime).
const GENERALIZED: &str = r"-----BEGIN CERTIFICATE-----
MIIBbzCCARWgAwIBAgIUfgJ8DNYJzn98snqqnQm/AxKYfbwwCgYIKoZIzj0EAwIw
DDEKMAgGA1UEAwwBdDAgFw0yNjEyMDcyMDQwMTlaGA8yMDU0MDQyNDIwNDAxOVow
DDEKMAgGA1UEAwwBdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKnOmA4qYmwQ
pxXZF9H83fbWOJtdItSd0b9eltZH6JjMghT6c/QqHd2mlJ9jXBwMiRNvlhzYe/1s
ERNaKBDP7hqjUzBRMB0GA1UdDgQWBBSicCsjiOEhusHH617YteF+0LM8SjAfBgNV
HSMEGDAWgBSicCsjiOEhusHH617YteF+0LM8SjAPBgNVHRMBAf8EBTADAQH/MAoG
CCqGSM49BAMCA0gAMEUCIBXjaa81qelP/6m1U5FI3FprEf0LZLvqXmn/u2Ebo4IR
AiEA0D0n2hP1+sCwIdjv7ByUGo0Mkb5h2WR2HcEXKpEztKk=
-----END CERTIFICATE-----
";

fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[test]
fn not_after_reads_utc_and_generalized_times() {
    assert_eq!(metrics::not_after(&der(UTC_TIME)), Some(2_112_036_016));
    assert_eq!(metrics::not_after(&der(GENERALIZED)), Some(2_660_676_019));
}

#[test]
fn not_after_of_a_truncated_or_foreign_der_is_none() {
    let d = der(UTC_TIME);
    for n in [0, 1, 2, 10, 40, 100] {
        assert_eq!(metrics::not_after(&d[..n]), None, "{n} bytes");
    }
    assert_eq!(
        metrics::not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
        None
    );
    assert_eq!(metrics::not_after(b"not DER at all"), None);
}

fn flags() -> Flags {
    Flags {
        listen: "0.0.0.0:8443".into(),
        tls_cert_file: Some("/tls/tls.crt".into()),
        tls_key_file: Some("/tls/tls.key".into()),
        health_addr: "0.0.0.0:9911".into(),
        image: None,
        log_format: "text".into(),
    }
}

#[test]
fn the_defaults_and_two_files_are_a_configuration() {
    let s = check(&flags()).unwrap();
    assert_eq!(s.listen.port(), 8443);
    assert_eq!(s.health_addr.port(), 9911);
    assert_eq!(s.image, None);
    assert_eq!(s.log_format, LogFormat::Text);
}

#[test]
fn every_bad_flag_is_named_at_once() {
    let f = Flags {
        listen: "8443".into(),
        tls_cert_file: None,
        tls_key_file: Some("".into()),
        health_addr: "0.0.0.0:9911".into(),
        image: Some("a b".into()),
        log_format: "yaml".into(),
    };
    let problems = check(&f).unwrap_err();
    assert_eq!(
        problems,
        [
            "--listen \"8443\" is not an address (IP:PORT)",
            "--tls-cert-file (or ROLECALL_WEBHOOK_TLS_CERT_FILE) is required",
            "--tls-key-file (or ROLECALL_WEBHOOK_TLS_KEY_FILE) is required",
            "--image \"a b\" is not an image reference",
            "--log-format \"yaml\" is neither text nor json",
        ]
    );
    let same = Flags {
        health_addr: "0.0.0.0:8443".into(),
        ..flags()
    };
    assert_eq!(
        check(&same).unwrap_err(),
        ["--listen and --health-addr must differ"]
    );
}
