//! Hostile input to the real binary: broken tokens, broken configuration
//! files, values that try to inject lines into the INI outputs, and a
//! credentials endpoint on a public address.
//!
//! Every case runs `rolecall` as a process against a [`FakeSts`] and asserts
//! that it exits with the documented code (1 for an unusable token, 64 for
//! invalid configuration), says what is wrong in a plain sentence, never
//! panics, and never sends anything to STS. Configuration cases also assert
//! that nothing was written (the output dir is not even created).
//!
//! Each case adds a line to `target/reliability/hostile.txt`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const READER: &str = "arn:aws:iam::111122223333:role/reader";
/// Longest a case may take before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

fn run(cmd: &mut Command) -> Run {
    run_for(cmd, LIMIT)
}

/// The checks every case shares: no panic, no hang, no STS call.
fn assert_sane(case: &str, what: &str, r: &Run, sts: &FakeSts) {
    assert!(!r.hung, "{case}: {what} hung:\n{}", r.describe());
    assert!(
        !r.all().contains("panicked"),
        "{case}: {what} panicked:\n{}",
        r.describe()
    );
    assert!(
        r.code.is_some(),
        "{case}: {what} was killed by a signal:\n{}",
        r.describe()
    );
    let calls: Vec<String> = sts
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.action, r.role_arn))
        .collect();
    assert!(calls.is_empty(), "{case}: {what} called STS: {calls:?}");
}

/// What a case runs against: a fake STS, a kubelet-style token, and an
/// output dir inside `tmp` that does not exist yet.
struct World {
    sts: FakeSts,
    token: TokenDir,
    tmp: tempfile::TempDir,
    out: PathBuf,
}

impl World {
    fn new(token: &str, out_name: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        World {
            sts: FakeSts::start(),
            token: TokenDir::new(token),
            out: tmp.path().join(out_name),
            tmp,
        }
    }
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

/// `target/reliability/hostile.txt`: one line per case, kept across runs,
/// so a filtered run does not erase the table.
static TABLE: Table = Table::new("hostile.txt", "case\tinjected\toutcome");

/// A case's line in the table: its outcome when it passes, FAILED when its
/// test panics first.
struct CaseGuard {
    case: &'static str,
    report: ReportGuard,
    /// `case<TAB>injected`, control characters escaped.
    line: String,
}

impl CaseGuard {
    fn new(case: &'static str, injected: impl Into<String>) -> CaseGuard {
        let line = format!("{case}\t{}", one_line(&injected.into()));
        let failed = format!("{line}\tFAILED (see the test output)");
        CaseGuard {
            case,
            report: ReportGuard::new(&TABLE, case, failed),
            line,
        }
    }

    fn pass(self, outcome: &str) {
        self.report.pass(&format!("{}\t{outcome}", self.line));
    }
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// What sits at the token path.
enum TokenAt {
    Bytes(Vec<u8>),
    Directory,
    DanglingSymlink,
    Fifo,
    /// An existing path outside the test's directory (e.g. `/dev/zero`).
    Path(&'static str),
}

/// `once`, `check` and `check --assume` with this token: each exits 1 and
/// names the problem (`phrase`), no STS call, no token in the output, and no
/// credentials written for the profile.
fn token_case(case: &'static str, injected: &str, at: TokenAt, phrase: &str) {
    let guard = CaseGuard::new(case, injected);
    let sts = FakeSts::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut token = tmp.path().join("token");
    let mut secret = None;
    match at {
        TokenAt::Bytes(b) => {
            fs::write(&token, &b).unwrap();
            let text = String::from_utf8_lossy(&b).trim().to_owned();
            if text.len() >= 16 {
                secret = Some(text);
            }
        }
        TokenAt::Directory => fs::create_dir(&token).unwrap(),
        TokenAt::DanglingSymlink => {
            std::os::unix::fs::symlink(tmp.path().join("..data/token"), &token).unwrap()
        }
        TokenAt::Fifo => {
            let ok = Command::new("mkfifo")
                .arg(&token)
                .status()
                .unwrap()
                .success();
            assert!(ok, "mkfifo");
        }
        TokenAt::Path(p) => token = PathBuf::from(p),
    }
    let out = tmp.path().join("out");
    let args = |cmd: &mut Command| {
        cmd.args(["--token-file", token.to_str().unwrap()])
            .args(["--output-dir", out.to_str().unwrap()])
            .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
            .args(["--credentials", TEST_MODE])
            .args(["--profile", &format!("reader={READER}")]);
    };

    let mut cmd = rolecall_piped();
    cmd.arg("once");
    args(&mut cmd);
    let r = run(&mut cmd);
    assert_sane(case, "once", &r, &sts);
    assert_eq!(r.code, Some(1), "{case}: once:\n{}", r.describe());
    assert!(
        r.stderr.contains(phrase),
        "{case}: once does not say {phrase:?}:\n{}",
        r.describe()
    );
    if let Some(s) = &secret {
        assert!(
            !r.all().contains(s.as_str()),
            "{case}: once printed the token"
        );
    }
    let creds = fs::read_to_string(out.join("credentials")).unwrap_or_default();
    assert!(
        !parse_ini(&creds).contains_key("reader"),
        "{case}: credentials written without a token:\n{creds}"
    );

    for assume in [false, true] {
        let what = if assume { "check --assume" } else { "check" };
        let mut cmd = rolecall_piped();
        cmd.arg("check");
        if assume {
            cmd.arg("--assume");
        }
        args(&mut cmd);
        let r = run(&mut cmd);
        assert_sane(case, what, &r, &sts);
        assert_eq!(r.code, Some(1), "{case}: {what}:\n{}", r.describe());
        assert!(
            r.all().contains(phrase),
            "{case}: {what} does not say {phrase:?}:\n{}",
            r.describe()
        );
        if let Some(s) = &secret {
            assert!(
                !r.all().contains(s.as_str()),
                "{case}: {what} printed the token"
            );
        }
    }
    guard.pass(&format!(
        "once, check, check --assume: exit 1, \"{phrase}\", 0 STS calls"
    ));
}

/// A JWT-shaped token whose payload is `payload` (not necessarily JSON).
fn jwt_with_payload(payload: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","kid":"test"}"#),
        b64(payload),
        b64(b"fake-signature-never-verified")
    )
}

/// One hostile token: what sits at the token path, and the phrase every
/// command must say about it.
struct TokenCase {
    case: &'static str,
    injected: &'static str,
    at: fn() -> TokenAt,
    phrase: &'static str,
}

const TOKEN_CASES: &[TokenCase] = &[
    TokenCase {
        case: "token: binary bytes",
        injected: "263 bytes, not UTF-8",
        at: || {
            let mut bytes = vec![0xff, 0xfe, 0x00, 0x01, 0x80, 0xc3, 0x28];
            bytes.extend((0..=255u8).rev());
            TokenAt::Bytes(bytes)
        },
        phrase: "does not hold a JWT",
    },
    TokenCase {
        case: "token: empty",
        injected: "",
        at: || TokenAt::Bytes(Vec::new()),
        phrase: "is empty",
    },
    TokenCase {
        case: "token: whitespace only",
        injected: " \n\t \r\n",
        at: || TokenAt::Bytes(b" \n\t \r\n".to_vec()),
        phrase: "is empty",
    },
    // A well-formed JWT, but over the size cap: refused before it is parsed.
    TokenCase {
        case: "token: larger than 64 KiB",
        injected: "a valid JWT of 95 KiB",
        at: || {
            let claims = serde_json::json!({
                "iss": TEST_ISSUER, "sub": TEST_SUBJECT, "aud": TEST_AUDIENCE,
                "exp": now_unix() + 3600, "pad": "x".repeat(70 * 1024),
            });
            let token = jwt_from_claims(&claims);
            assert!(token.len() > 64 * 1024);
            TokenAt::Bytes(token.into_bytes())
        },
        phrase: "is larger than 65536 bytes",
    },
    TokenCase {
        case: "token: /dev/zero",
        injected: "/dev/zero as the token file",
        at: || TokenAt::Path("/dev/zero"),
        phrase: "is not a regular file",
    },
    TokenCase {
        case: "token: abc",
        injected: "abc",
        at: || TokenAt::Bytes(b"abc".to_vec()),
        phrase: "does not hold a JWT",
    },
    TokenCase {
        case: "token: a.b",
        injected: "a.b",
        at: || TokenAt::Bytes(b"a.b".to_vec()),
        phrase: "does not hold a JWT",
    },
    TokenCase {
        case: "token: a.b.c.d",
        injected: "a.b.c.d",
        at: || TokenAt::Bytes(b"a.b.c.d".to_vec()),
        phrase: "does not hold a JWT",
    },
    TokenCase {
        case: "token: two JWTs, one per line",
        injected: "JWT\\nJWT",
        at: || TokenAt::Bytes(format!("{}\n{}\n", valid_jwt(), valid_jwt()).into_bytes()),
        phrase: "does not hold a JWT",
    },
    TokenCase {
        case: "token: NUL byte inside a JWT",
        injected: "a valid JWT with \\0 at offset 10",
        at: || {
            let mut t = valid_jwt().into_bytes();
            t.insert(10, 0);
            TokenAt::Bytes(t)
        },
        phrase: "does not hold a JWT",
    },
    TokenCase {
        case: "token: payload not JSON",
        injected: "header.base64(\"not json {\").sig",
        at: || TokenAt::Bytes(jwt_with_payload(b"not json {").into_bytes()),
        phrase: "does not hold a JWT",
    },
    TokenCase {
        case: "token: payload a JSON list",
        injected: "header.base64(\"[1,2,3]\").sig",
        at: || TokenAt::Bytes(jwt_with_payload(b"[1,2,3]").into_bytes()),
        phrase: "does not hold a JWT",
    },
    TokenCase {
        case: "token: payload not base64url",
        injected: "header.!!!!.sig",
        at: || TokenAt::Bytes(b"eyJhbGciOiJSUzI1NiJ9.!!!!.c2ln".to_vec()),
        phrase: "does not hold a JWT",
    },
    TokenCase {
        case: "token: a directory",
        injected: "mkdir at the token path",
        at: || TokenAt::Directory,
        phrase: "is a directory",
    },
    TokenCase {
        case: "token: dangling symlink",
        injected: "token -> ..data/token (missing)",
        at: || TokenAt::DanglingSymlink,
        phrase: "does not exist",
    },
    // A claim `exp` larger than the system clock can hold (1e300 would become
    // u64::MAX): refused as not a JWT, rather than overflowing the clock (it
    // made `check` panic before).
    TokenCase {
        case: "token: exp 1e300",
        injected: "JWT with \"exp\": 1e300",
        at: || {
            let payload = format!(
                r#"{{"iss":"{TEST_ISSUER}","sub":"{TEST_SUBJECT}","aud":"{TEST_AUDIENCE}","exp":1e300}}"#
            );
            TokenAt::Bytes(jwt_with_payload(payload.as_bytes()).into_bytes())
        },
        phrase: "the exp claim is not a time",
    },
    // A FIFO at the token path would block `open(2)` until a writer appears
    // (before it was refused, `once` hung, and `run` stopped answering /livez
    // and SIGTERM). Every case runs with a 30 s limit.
    TokenCase {
        case: "token: a FIFO",
        injected: "mkfifo at the token path",
        at: || TokenAt::Fifo,
        phrase: "is not a regular file",
    },
];

#[test]
fn hostile_tokens_are_refused_by_once_check_and_check_assume() {
    run_cases(
        TOKEN_CASES,
        |c| c.case,
        |c| token_case(c.case, c.injected, (c.at)(), c.phrase),
    );
}

/// `once` refuses an expired token; `check` decodes it (that is its job)
/// and says it expired. `check --assume` is in
/// [`check_assume_never_sends_an_expired_token`].
#[test]
fn token_expired() {
    let case = "token: expired an hour ago";
    let guard = CaseGuard::new(case, "JWT with exp = now - 3600");
    let w = World::new(&expired_jwt(), "out");
    let (sts, token, out) = (&w.sts, &w.token, &w.out);
    for sub in ["once", "check"] {
        let r = run(rolecall_piped()
            .arg(sub)
            .args(base_args(sts, token, out))
            .args(["--profile", &format!("reader={READER}")]));
        assert_sane(case, sub, &r, sts);
        assert_eq!(r.code, Some(1), "{case}: {sub}:\n{}", r.describe());
        assert!(
            r.all().contains("expired"),
            "{case}: {sub}:\n{}",
            r.describe()
        );
        assert!(
            !r.all().contains(&token.read()),
            "{case}: {sub} printed the token"
        );
    }
    guard.pass("once, check: exit 1, \"expired\", 0 STS calls");
}

/// The spec: "a token whose exp is more than a minute past is not sent to
/// STS". `check --assume` decodes it all the same, says it expired, and
/// skips the call (it used to send it).
#[test]
fn check_assume_never_sends_an_expired_token() {
    let case = "token: expired, check --assume";
    let guard = CaseGuard::new(case, "JWT with exp = now - 3600");
    let sts = FakeSts::start();
    let token = TokenDir::new(&expired_jwt());
    let r = run(rolecall_piped()
        .args(["check", "--assume"])
        .args(["--token-file", token.path().to_str().unwrap()])
        .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
        .args(["--profile", &format!("reader={READER}")]));
    assert_sane(case, "check --assume", &r, &sts);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(r.all().contains("expired"), "{}", r.describe());
    guard.pass("check --assume: exit 1, \"expired\", 0 STS calls");
}

// ---------------------------------------------------------------------------
// Configuration files
// ---------------------------------------------------------------------------

/// `once --config FILE` with a valid token and STS at hand: exit 64, every
/// needle in stderr, no STS call, no output dir created.
fn config_case(case: &'static str, injected: &str, yaml: &[u8], needles: &[&str]) -> Run {
    let guard = CaseGuard::new(case, injected);
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("rolecall.yaml");
    fs::write(&file, yaml).unwrap();
    let out = tmp.path().join("out");
    let r = run(rolecall_piped()
        .arg("once")
        .args(["--config", file.to_str().unwrap()])
        .args(["--token-file", token.path().to_str().unwrap()])
        .args(["--output-dir", out.to_str().unwrap()])
        .args(["--sts-endpoint", &sts.endpoint()]));
    assert_sane(case, "once", &r, &sts);
    assert_eq!(r.code, Some(64), "{case}:\n{}", r.describe());
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "{case}: stderr does not say {n:?}:\n{}",
            r.describe()
        );
    }
    assert!(!out.exists(), "{case}: the output dir was created");
    let first = r
        .stderr
        .lines()
        .find(|l| needles.iter().any(|n| l.contains(n)))
        .unwrap_or_default()
        .trim()
        .trim_start_matches("- ")
        .replace(file.to_str().unwrap(), "FILE");
    guard.pass(&format!("exit 64, 0 STS calls, nothing written: {first}"));
    r
}

const ARN_A: &str = "arn:aws:iam::111122223333:role/a";

/// One broken configuration file, and what the error report must say.
struct ConfigCase {
    case: &'static str,
    injected: &'static str,
    yaml: fn() -> Vec<u8>,
    needles: &'static [&'static str],
}

const CONFIG_CASES: &[ConfigCase] = &[
    ConfigCase {
        case: "yaml: duplicate key",
        injected: "region twice",
        yaml: || {
            format!("region: eu-west-1\nregion: us-east-1\nprofiles:\n  a: {ARN_A}\n").into_bytes()
        },
        needles: &["rolecall.yaml", "duplicate entry with key \"region\""],
    },
    ConfigCase {
        case: "yaml: duplicate profile",
        injected: "profiles.a twice",
        yaml: || format!("region: eu-west-1\nprofiles:\n  a: {ARN_A}\n  a: {ARN_A}\n").into_bytes(),
        needles: &["profiles: duplicate entry with key \"a\""],
    },
    ConfigCase {
        case: "yaml: duplicate profile key",
        injected: "profiles.a.role_arn twice",
        yaml: || {
            format!(
                "region: eu-west-1\nprofiles:\n  a:\n    role_arn: {ARN_A}\n    role_arn: {ARN_A}\n"
            )
            .into_bytes()
        },
        needles: &["profiles.a: duplicate entry with key \"role_arn\""],
    },
    ConfigCase {
        case: "yaml: unknown key",
        injected: "regoin: eu-west-1",
        yaml: || format!("regoin: eu-west-1\nprofiles:\n  a: {ARN_A}\n").into_bytes(),
        needles: &["rolecall.yaml: regoin: unknown key `regoin`"],
    },
    ConfigCase {
        case: "yaml: unknown profile key",
        injected: "profiles.a.rolearn",
        yaml: || format!("region: eu-west-1\nprofiles:\n  a:\n    rolearn: {ARN_A}\n").into_bytes(),
        needles: &[
            "profiles.a.rolearn: unknown key `rolearn`",
            "profiles.a.role_arn: missing role_arn",
        ],
    },
    ConfigCase {
        case: "yaml: list for a string",
        injected: "region: [eu-west-1]",
        yaml: || format!("region: [eu-west-1]\nprofiles:\n  a: {ARN_A}\n").into_bytes(),
        needles: &["region: expected a single value, found a list"],
    },
    ConfigCase {
        case: "yaml: bool for a duration",
        injected: "duration_seconds: true",
        yaml: || {
            format!("region: eu-west-1\nduration_seconds: true\nprofiles:\n  a: {ARN_A}\n")
                .into_bytes()
        },
        needles: &["duration_seconds: expected a string or number, found a boolean"],
    },
    ConfigCase {
        case: "yaml: mapping for a role ARN",
        injected: "profiles.a.role_arn: {x: 1}",
        yaml: || b"region: eu-west-1\nprofiles:\n  a:\n    role_arn: {x: 1}\n".to_vec(),
        needles: &["profiles.a.role_arn: expected a single value, found a mapping"],
    },
    ConfigCase {
        case: "yaml: profiles as a list",
        injected: "profiles: [a, b]",
        yaml: || b"region: eu-west-1\nprofiles: [a, b]\n".to_vec(),
        needles: &["profiles: expected a mapping of profile name to settings"],
    },
    ConfigCase {
        case: "yaml: a scalar file",
        injected: "just some text",
        yaml: || b"just some text\n".to_vec(),
        needles: &["rolecall.yaml: the file must hold a mapping of options"],
    },
    ConfigCase {
        case: "yaml: non-UTF-8 bytes",
        injected: "\\xff\\xfe\\xc3\\x28 after region",
        yaml: || {
            let mut yaml = b"region: eu-west-1".to_vec();
            yaml.extend([0xff, 0xfe, 0xc3, 0x28]);
            yaml.extend(format!("\nprofiles:\n  a: {ARN_A}\n").as_bytes());
            yaml
        },
        needles: &["rolecall.yaml: not valid YAML", "UTF-8"],
    },
    ConfigCase {
        case: "yaml: 10,000-deep nesting",
        injected: "[[[[... 10,000 deep",
        yaml: || {
            let yaml = format!(
                "region: eu-west-1\nprofiles:\n  a: {}{}\n",
                "[".repeat(10_000),
                "]".repeat(10_000)
            );
            yaml.into_bytes()
        },
        needles: &["rolecall.yaml: the file nests deeper than 32 levels"],
    },
    ConfigCase {
        case: "yaml: 10,000-deep mappings",
        injected: "{a: {a: ... 10,000 deep",
        yaml: || {
            let yaml = format!(
                "profiles: {}1{}\n",
                "{a: ".repeat(10_000),
                "}".repeat(10_000)
            );
            yaml.into_bytes()
        },
        needles: &["rolecall.yaml: the file nests deeper than 32 levels"],
    },
    ConfigCase {
        case: "yaml: alias bomb",
        injected: "9 levels of 9 aliases (387M nodes)",
        yaml: || {
            let mut yaml = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
            for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
                .iter()
                .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
            {
                let refs = vec![format!("*{prev}"); 9].join(", ");
                yaml += &format!("{name}: &{name} [{refs}]\n");
            }
            yaml.into_bytes()
        },
        needles: &["rolecall.yaml: the file holds more than 100000 values"],
    },
    ConfigCase {
        case: "yaml: apostrophe, then 120,000 levels",
        injected: "x: a:'b, then y: [[[... 120,000 deep",
        yaml: || {
            // The apostrophe is text inside a plain scalar; the old nesting
            // scan took it for a quote and let the parser spend minutes on
            // the brackets (issue 20).
            let yaml = format!(
                "profiles:\n  a: {ARN_A}\nx: a:'b\ny: {}{}\n",
                "[".repeat(120_000),
                "]".repeat(120_000)
            );
            yaml.into_bytes()
        },
        needles: &["rolecall.yaml: the file nests deeper than 32 levels"],
    },
    ConfigCase {
        case: "yaml: source_profile cycle",
        injected: "a -> b -> a, c -> c",
        yaml: || {
            let yaml = format!(
                "region: eu-west-1\nprofiles:\n  a: {{role_arn: \"{ARN_A}\", source_profile: b}}\n  b: {{role_arn: \"{ARN_A}\", source_profile: a}}\n  c: {{role_arn: \"{ARN_A}\", source_profile: c}}\n"
            );
            yaml.into_bytes()
        },
        needles: &[
            "profiles.a.source_profile: source_profile cycle: a -> b -> a",
            "profiles.c.source_profile: source_profile cycle: c -> c",
        ],
    },
    ConfigCase {
        case: "yaml: 2,100-char policy",
        injected: "a 2210-character session policy",
        yaml: || {
            let policy = format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::{}/*"}}]}}"#,
                "b".repeat(2100)
            );
            assert!(policy.len() > 2100);
            let yaml = format!(
                "region: eu-west-1\nprofiles:\n  a:\n    role_arn: {ARN_A}\n    policy: '{policy}'\n"
            );
            yaml.into_bytes()
        },
        needles: &["profiles.a.policy: the session policy is longer than 2048 characters"],
    },
    ConfigCase {
        case: "yaml: unknown source_profile",
        injected: "source_profile: ghost",
        yaml: || {
            let yaml = format!(
                "region: eu-west-1\nprofiles:\n  a:\n    role_arn: {ARN_A}\n    source_profile: ghost\n"
            );
            yaml.into_bytes()
        },
        needles: &["profiles.a.source_profile: unknown source_profile \"ghost\""],
    },
];

#[test]
fn broken_configuration_files_exit_64_saying_what_is_wrong() {
    run_cases(
        CONFIG_CASES,
        |c| c.case,
        |c| {
            config_case(c.case, c.injected, &(c.yaml)(), c.needles);
        },
    );
}

#[test]
fn config_every_problem_at_once() {
    let yaml = format!(
        "region: [x]\nduration_seconds: true\nfile_mode: \"999\"\nbogus: 1\nprofiles:\n  \"bad name\": {{role_arn: nope}}\n  ok:\n    role_arn: {ARN_A}\n    source_profile: ghost\n    policy: \"[1]\"\n"
    );
    let r = config_case(
        "yaml: every problem at once",
        "8 different mistakes in one file",
        yaml.as_bytes(),
        &[
            "region: expected a single value",
            "duration_seconds: expected a string or number",
            "file_mode: \"999\" is not an octal file mode",
            "bogus: unknown key",
            "must be 1-64 characters",
            "\"nope\" is not an IAM role ARN",
            "unknown source_profile",
            "the session policy must be a JSON object",
        ],
    );
    assert!(r.stderr.contains("problems"), "{}", r.describe());
}

#[test]
fn config_file_is_a_directory() {
    let case = "yaml: --config is a directory";
    let guard = CaseGuard::new(case, "--config DIR");
    let sts = FakeSts::start();
    let tmp = tempfile::tempdir().unwrap();
    let r = run(rolecall_piped()
        .arg("once")
        .args(["--config", tmp.path().to_str().unwrap()])
        .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
        .args(["--profile", &format!("reader={READER}")]));
    assert_sane(case, "once", &r, &sts);
    assert_eq!(r.code, Some(64), "{}", r.describe());
    assert!(
        r.stderr.contains("cannot read the configuration file"),
        "{}",
        r.describe()
    );
    guard.pass("exit 64, \"cannot read the configuration file\"");
}

// ---------------------------------------------------------------------------
// INI injection through flags, environment and the file
// ---------------------------------------------------------------------------

/// `once` with `args` and `env`: exit 64, `needle` in stderr, no STS call,
/// no output dir created, and the injected line never appears as a line of
/// its own in the output.
fn injection_case(
    case: &'static str,
    injected: &str,
    args: &[&str],
    env: &[(&str, &str)],
    needle: &str,
) {
    injection_checks(CaseGuard::new(case, injected), args, env, needle);
}

fn injection_checks(guard: CaseGuard, args: &[&str], env: &[(&str, &str)], needle: &str) {
    let case = guard.case;
    let w = World::new(&valid_jwt(), "out");
    let (sts, token, out) = (&w.sts, &w.token, &w.out);
    let mut cmd = rolecall_piped();
    cmd.arg("once")
        .args(["--token-file", token.path().to_str().unwrap()])
        .args(["--sts-endpoint", &sts.endpoint()])
        .env("ROLECALL_OUTPUT_DIR", out)
        .args(args);
    if !args.contains(&"--region") && !env.iter().any(|(k, _)| *k == "AWS_REGION") {
        cmd.args(["--region", "eu-west-1"]);
    }
    if !args.contains(&"--profile") && !env.iter().any(|(k, _)| *k == "ROLECALL_PROFILES") {
        cmd.args(["--profile", &format!("reader={READER}")]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let r = run(&mut cmd);
    assert_sane(case, "once", &r, sts);
    assert_eq!(r.code, Some(64), "{case}:\n{}", r.describe());
    assert!(
        r.stderr.contains(needle),
        "{case}: stderr does not say {needle:?}:\n{}",
        r.describe()
    );
    assert!(!out.exists(), "{case}: the output dir was created");
    let written: Vec<_> = fs::read_dir(w.tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert!(
        written.is_empty(),
        "{case}: something was written: {written:?}"
    );
    for line in r.stderr.lines() {
        let l = line.trim_start();
        assert!(
            !l.starts_with("[evil") && !l.starts_with("aws_"),
            "{case}: the injected line reached stderr as a line of its own: {line:?}"
        );
    }
    guard.pass(&format!(
        "exit 64, 0 STS calls, nothing written, \"{needle}\""
    ));
}

/// Where an injected value goes: after these flags, or into a variable.
enum Via {
    Flags(&'static [&'static str]),
    Var(&'static str),
}

/// A value with a line break (or a bad address) in one option, and what
/// the error report must say.
struct InjectionCase {
    case: &'static str,
    value: fn() -> String,
    via: Via,
    needle: &'static str,
}

#[rustfmt::skip]
const INJECTION_CASES: &[InjectionCase] = &[
    InjectionCase { case: "inject: --profile name", value: || format!("a\n[evil]={READER}"), via: Via::Flags(&["--profile"]), needle: "must be 1-64 characters" },
    InjectionCase { case: "inject: --profile role ARN", value: || format!("reader={READER}\n[evil]\naws_access_key_id = AKIAEVIL"), via: Via::Flags(&["--profile"]), needle: "is not an IAM role ARN" },
    InjectionCase { case: "inject: --region", value: || "eu-west-1\naws_access_key_id=x".into(), via: Via::Flags(&["--region"]), needle: "is not an AWS region" },
    InjectionCase { case: "inject: AWS_REGION", value: || "eu-west-1\n[evil]".into(), via: Via::Var("AWS_REGION"), needle: "environment AWS_REGION" },
    InjectionCase { case: "inject: --session-name", value: || "pod\naws_secret_access_key=x".into(), via: Via::Flags(&["--session-name"]), needle: "role session name" },
    InjectionCase { case: "inject: AWS_ROLE_SESSION_NAME", value: || "pod\r\n[evil]".into(), via: Via::Var("AWS_ROLE_SESSION_NAME"), needle: "environment AWS_ROLE_SESSION_NAME" },
    InjectionCase { case: "inject: ROLECALL_PROFILES", value: || format!("a={ARN_A}\n[evil]={READER}"), via: Via::Var("ROLECALL_PROFILES"), needle: "environment ROLECALL_PROFILES" },
    InjectionCase { case: "inject: ROLECALL_PROFILES name", value: || format!("a\n[evil]={READER},b={ARN_A}"), via: Via::Var("ROLECALL_PROFILES"), needle: "must be 1-64 characters" },
    InjectionCase { case: "inject: --app-output-dir", value: || "/aws dir\n[evil]".into(), via: Via::Flags(&["--credentials", "process", "--app-output-dir"]), needle: "--app-output-dir" },
];

#[test]
fn values_with_injected_lines_exit_64() {
    run_cases(
        INJECTION_CASES,
        |c| c.case,
        |c| {
            let value = (c.value)();
            match c.via {
                Via::Flags(flags) => {
                    let args: Vec<&str> = flags.iter().copied().chain([value.as_str()]).collect();
                    injection_case(c.case, &value, &args, &[], c.needle);
                }
                Via::Var(var) => injection_case(c.case, &value, &[], &[(var, &value)], c.needle),
            }
        },
    );
}

#[test]
fn inject_through_the_output_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let v = format!("{}/out\n[evil]", tmp.path().display());
    injection_case(
        "inject: --output-dir",
        "DIR/out\\n[evil]",
        &["--output-dir", &v],
        &[],
        "without control characters",
    );
    assert!(!Path::new(&v).exists());
}

/// Lines injected through the configuration file, and what the error
/// report must say.
struct FileInjection {
    case: &'static str,
    injected: &'static str,
    yaml: fn() -> String,
    needle: &'static str,
}

const FILE_INJECTIONS: &[FileInjection] = &[
    FileInjection {
        case: "inject: YAML region and session name",
        injected: "region: \"eu-west-1\\n[evil]\\naws_access_key_id = x\", role_session_name: \"pod\\n[evil]\"",
        yaml: || {
            format!(
                "profiles:\n  a:\n    role_arn: {ARN_A}\n    region: \"eu-west-1\\n[evil]\\naws_access_key_id = x\"\n    role_session_name: \"pod\\n[evil]\"\n"
            )
        },
        needle: "profiles.a.region: \"eu-west-1",
    },
    // A key or profile name with a line break in the YAML file is refused,
    // and echoed escaped: the file cannot forge lines of the error report
    // (it could before: the raw key was the problem's origin).
    FileInjection {
        case: "inject: YAML keys with a line break",
        injected: "key \"x\\n[evil]\", profile \"b\\n[evil]\"",
        yaml: || {
            format!("region: eu-west-1\n\"x\\n[evil]\": 1\nprofiles:\n  \"b\\n[evil]\": {ARN_A}\n")
        },
        needle: "must be 1-64 characters",
    },
    // The credentials endpoint on a public address, from the file.
    FileInjection {
        case: "endpoint: 0.0.0.0 in the file",
        injected: "endpoint_addr: 0.0.0.0:9912",
        yaml: || "endpoint_addr: 0.0.0.0:9912\n".into(),
        needle: "rolecall.yaml: endpoint_addr: 0.0.0.0:9912 is not a loopback address",
    },
];

#[test]
fn lines_injected_through_the_file_exit_64() {
    run_cases(
        FILE_INJECTIONS,
        |c| c.case,
        |c| {
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("rolecall.yaml");
            fs::write(&file, (c.yaml)()).unwrap();
            injection_case(
                c.case,
                c.injected,
                &["--config", file.to_str().unwrap()],
                &[],
                c.needle,
            );
        },
    );
}

/// Process mode writes `credential_process = <dir>/rolecall ...` into
/// `config`. With an output dir holding a space (and no --app-output-dir)
/// the line used to be written unquoted, and the SDKs split the path: the
/// profile was lost to the application. Now: refused (exit 64), or else a
/// line whose first shell word is the whole helper path.
#[test]
fn process_mode_output_dir_with_a_space() {
    let w = World::new(&valid_jwt(), "out dir");
    process_mode_case(
        "inject: process mode, output dir with a space",
        "--credentials process --output-dir '/tmp/x/out dir'".into(),
        &w,
        &[],
        |r| {
            assert!(
                r.stderr.contains("app-output-dir") || r.stderr.contains("app_output_dir"),
                "{}",
                r.describe()
            );
            "(use --app-output-dir without spaces)"
        },
        |case, command| {
            let words = shell_split(command);
            assert_eq!(
                words.first().map(String::as_str),
                Some(w.out.join("rolecall").to_str().unwrap()),
                "{case}: the SDKs split the helper path: {command:?}"
            );
            "helper path read back whole"
        },
    );
}

/// The Rust, Go, JS and Java SDKs run `credential_process` through `sh -c`.
/// An app output dir with shell syntax in it (`;`, `$(...)`, quotes) is
/// accepted and written into the line as it is, so the app's SDK runs
/// whatever the path says instead of the helper. Expected: refused (exit
/// 64), or quoted so that `sh` reads the helper path back whole.
#[test]
fn process_mode_app_output_dir_with_shell_syntax() {
    let w = World::new(&valid_jwt(), "out");
    let marker = w.tmp.path().join("pwned");
    let app_dir = format!("/aws;touch${{IFS}}{};#", marker.display());
    process_mode_case(
        "inject: process mode, shell syntax in app_output_dir",
        format!("--credentials process --app-output-dir '{app_dir}'"),
        &w,
        &["--app-output-dir", &app_dir],
        |_| "",
        |case, command| {
            // What an SDK does with the line (the helper is not there: only
            // whether the shell ran something else matters).
            let _ = Command::new("sh").args(["-c", command]).output();
            assert!(
                !marker.exists(),
                "{case}: the app's shell ran a command from the path: {command:?}"
            );
            "the shell ran nothing but the helper"
        },
    );
}

/// `once` in process mode with `extra` arguments: refused (exit 64, no STS
/// call, nothing written, and `refused` holds), or else `accepted` checks
/// the command written as `credential_process` into `config`. Each returns
/// what the table line adds.
fn process_mode_case(
    case: &'static str,
    injected: String,
    w: &World,
    extra: &[&str],
    refused: impl Fn(&Run) -> &'static str,
    accepted: impl Fn(&str, &str) -> &'static str,
) {
    let guard = CaseGuard::new(case, injected);
    let r = run(rolecall_piped()
        .arg("once")
        .args(base_args_with(&w.sts, &w.token, &w.out, Some("process")))
        .args(extra)
        .args(["--profile", &format!("reader={READER}")]));
    assert!(!r.hung && !r.all().contains("panicked"), "{}", r.describe());
    let outcome = if r.code == Some(64) {
        assert_sane(case, "once", &r, &w.sts);
        assert!(!w.out.exists(), "{case}: the output dir was created");
        let why = refused(&r);
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" {why}")
        };
        format!("exit 64{why}, 0 STS calls, nothing written")
    } else {
        let config = fs::read_to_string(w.out.join("config")).unwrap_or_default();
        let command = config
            .lines()
            .find_map(|l| l.strip_prefix("credential_process = "))
            .unwrap_or_default();
        format!("exit {:?}, {}", r.code, accepted(case, command))
    };
    guard.pass(&outcome);
}

/// Splits a command line the way the SDKs split `credential_process`
/// (POSIX shell words: quotes and backslashes, no expansion).
fn shell_split(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.extend(chars.next());
                in_word = true;
            }
            '\'' => {
                cur.extend(chars.by_ref().take_while(|&c| c != '\''));
                in_word = true;
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        c => cur.push(c),
                    }
                }
                in_word = true;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

// ---------------------------------------------------------------------------
// The credentials endpoint on a public address
// ---------------------------------------------------------------------------

/// (case, address) of a credentials endpoint on a public address.
const PUBLIC_ENDPOINTS: [(&str, &str); 3] = [
    ("endpoint: 0.0.0.0", "0.0.0.0:9912"),
    ("endpoint: [::]", "[::]:9912"),
    ("endpoint: 10.0.0.7", "10.0.0.7:9912"),
];

#[test]
fn an_endpoint_on_a_public_address_exits_64() {
    run_cases(
        &PUBLIC_ENDPOINTS,
        |c| c.0,
        |&(case, addr)| {
            injection_case(
                case,
                &format!("--endpoint-addr {addr}"),
                &["--endpoint-addr", addr],
                &[],
                "is not a loopback address",
            )
        },
    );
}
