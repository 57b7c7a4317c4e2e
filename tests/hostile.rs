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

#[test]
fn token_binary_bytes() {
    let mut bytes = vec![0xff, 0xfe, 0x00, 0x01, 0x80, 0xc3, 0x28];
    bytes.extend((0..=255u8).rev());
    token_case(
        "token: binary bytes",
        "263 bytes, not UTF-8",
        TokenAt::Bytes(bytes),
        "does not hold a JWT",
    );
}

#[test]
fn token_empty() {
    token_case("token: empty", "", TokenAt::Bytes(Vec::new()), "is empty");
}

#[test]
fn token_whitespace_only() {
    token_case(
        "token: whitespace only",
        " \n\t \r\n",
        TokenAt::Bytes(b" \n\t \r\n".to_vec()),
        "is empty",
    );
}

#[test]
fn token_larger_than_64_kib() {
    // A well-formed JWT, but over the size cap: refused before it is parsed.
    let claims = serde_json::json!({
        "iss": TEST_ISSUER, "sub": TEST_SUBJECT, "aud": TEST_AUDIENCE,
        "exp": now_unix() + 3600, "pad": "x".repeat(70 * 1024),
    });
    let token = jwt_from_claims(&claims);
    assert!(token.len() > 64 * 1024);
    token_case(
        "token: larger than 64 KiB",
        "a valid JWT of 95 KiB",
        TokenAt::Bytes(token.into_bytes()),
        "is larger than 65536 bytes",
    );
}

#[test]
fn token_endless_device() {
    token_case(
        "token: /dev/zero",
        "/dev/zero as the token file",
        TokenAt::Path("/dev/zero"),
        "is not a regular file",
    );
}

#[test]
fn token_not_a_jwt_one_part() {
    token_case(
        "token: abc",
        "abc",
        TokenAt::Bytes(b"abc".to_vec()),
        "does not hold a JWT",
    );
}

#[test]
fn token_not_a_jwt_two_parts() {
    token_case(
        "token: a.b",
        "a.b",
        TokenAt::Bytes(b"a.b".to_vec()),
        "does not hold a JWT",
    );
}

#[test]
fn token_not_a_jwt_four_parts() {
    token_case(
        "token: a.b.c.d",
        "a.b.c.d",
        TokenAt::Bytes(b"a.b.c.d".to_vec()),
        "does not hold a JWT",
    );
}

#[test]
fn token_two_jwts_on_two_lines() {
    let two = format!("{}\n{}\n", valid_jwt(), valid_jwt());
    token_case(
        "token: two JWTs, one per line",
        "JWT\\nJWT",
        TokenAt::Bytes(two.into_bytes()),
        "does not hold a JWT",
    );
}

#[test]
fn token_with_a_nul_inside() {
    let mut t = valid_jwt().into_bytes();
    t.insert(10, 0);
    token_case(
        "token: NUL byte inside a JWT",
        "a valid JWT with \\0 at offset 10",
        TokenAt::Bytes(t),
        "does not hold a JWT",
    );
}

#[test]
fn token_payload_not_json() {
    token_case(
        "token: payload not JSON",
        "header.base64(\"not json {\").sig",
        TokenAt::Bytes(jwt_with_payload(b"not json {").into_bytes()),
        "does not hold a JWT",
    );
}

#[test]
fn token_payload_json_but_not_an_object() {
    token_case(
        "token: payload a JSON list",
        "header.base64(\"[1,2,3]\").sig",
        TokenAt::Bytes(jwt_with_payload(b"[1,2,3]").into_bytes()),
        "does not hold a JWT",
    );
}

#[test]
fn token_payload_not_base64() {
    token_case(
        "token: payload not base64url",
        "header.!!!!.sig",
        TokenAt::Bytes(b"eyJhbGciOiJSUzI1NiJ9.!!!!.c2ln".to_vec()),
        "does not hold a JWT",
    );
}

/// `once` refuses an expired token; `check` decodes it (that is its job)
/// and says it expired. `check --assume` is in
/// [`check_assume_never_sends_an_expired_token`].
#[test]
fn token_expired() {
    let case = "token: expired an hour ago";
    let guard = CaseGuard::new(case, "JWT with exp = now - 3600");
    let sts = FakeSts::start();
    let token = TokenDir::new(&expired_jwt());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for sub in ["once", "check"] {
        let r = run(rolecall_piped()
            .arg(sub)
            .args(["--token-file", token.path().to_str().unwrap()])
            .args(["--output-dir", out.to_str().unwrap()])
            .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
            .args(["--profile", &format!("reader={READER}")]));
        assert_sane(case, sub, &r, &sts);
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

#[test]
fn token_path_is_a_directory() {
    token_case(
        "token: a directory",
        "mkdir at the token path",
        TokenAt::Directory,
        "is a directory",
    );
}

#[test]
fn token_path_is_a_dangling_symlink() {
    token_case(
        "token: dangling symlink",
        "token -> ..data/token (missing)",
        TokenAt::DanglingSymlink,
        "does not exist",
    );
}

/// A claim `exp` larger than the system clock can hold (1e300 would become
/// u64::MAX): refused as not a JWT, rather than overflowing the clock (it
/// made `check` panic before).
#[test]
fn token_exp_beyond_the_clock() {
    let payload = format!(
        r#"{{"iss":"{TEST_ISSUER}","sub":"{TEST_SUBJECT}","aud":"{TEST_AUDIENCE}","exp":1e300}}"#
    );
    token_case(
        "token: exp 1e300",
        "JWT with \"exp\": 1e300",
        TokenAt::Bytes(jwt_with_payload(payload.as_bytes()).into_bytes()),
        "the exp claim is not a time",
    );
}

/// A FIFO at the token path would block `open(2)` until a writer appears
/// (before it was refused, `once` hung, and `run` stopped answering /livez
/// and SIGTERM). Every case runs with a 30 s limit.
#[test]
fn token_path_is_a_fifo() {
    token_case(
        "token: a FIFO",
        "mkfifo at the token path",
        TokenAt::Fifo,
        "is not a regular file",
    );
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

#[test]
fn config_duplicate_top_level_key() {
    config_case(
        "yaml: duplicate key",
        "region twice",
        format!("region: eu-west-1\nregion: us-east-1\nprofiles:\n  a: {ARN_A}\n").as_bytes(),
        &["rolecall.yaml", "duplicate entry with key \"region\""],
    );
}

#[test]
fn config_duplicate_profile() {
    config_case(
        "yaml: duplicate profile",
        "profiles.a twice",
        format!("region: eu-west-1\nprofiles:\n  a: {ARN_A}\n  a: {ARN_A}\n").as_bytes(),
        &["profiles: duplicate entry with key \"a\""],
    );
}

#[test]
fn config_duplicate_profile_key() {
    config_case(
        "yaml: duplicate profile key",
        "profiles.a.role_arn twice",
        format!(
            "region: eu-west-1\nprofiles:\n  a:\n    role_arn: {ARN_A}\n    role_arn: {ARN_A}\n"
        )
        .as_bytes(),
        &["profiles.a: duplicate entry with key \"role_arn\""],
    );
}

#[test]
fn config_unknown_top_level_key() {
    config_case(
        "yaml: unknown key",
        "regoin: eu-west-1",
        format!("regoin: eu-west-1\nprofiles:\n  a: {ARN_A}\n").as_bytes(),
        &["rolecall.yaml: regoin: unknown key `regoin`"],
    );
}

#[test]
fn config_unknown_profile_key() {
    config_case(
        "yaml: unknown profile key",
        "profiles.a.rolearn",
        format!("region: eu-west-1\nprofiles:\n  a:\n    rolearn: {ARN_A}\n").as_bytes(),
        &[
            "profiles.a.rolearn: unknown key `rolearn`",
            "profiles.a.role_arn: missing role_arn",
        ],
    );
}

#[test]
fn config_list_where_a_string_is_expected() {
    config_case(
        "yaml: list for a string",
        "region: [eu-west-1]",
        format!("region: [eu-west-1]\nprofiles:\n  a: {ARN_A}\n").as_bytes(),
        &["region: expected a single value, found a list"],
    );
}

#[test]
fn config_bool_for_a_duration() {
    config_case(
        "yaml: bool for a duration",
        "duration_seconds: true",
        format!("region: eu-west-1\nduration_seconds: true\nprofiles:\n  a: {ARN_A}\n").as_bytes(),
        &["duration_seconds: expected a string or number, found a boolean"],
    );
}

#[test]
fn config_mapping_for_a_role_arn() {
    config_case(
        "yaml: mapping for a role ARN",
        "profiles.a.role_arn: {x: 1}",
        b"region: eu-west-1\nprofiles:\n  a:\n    role_arn: {x: 1}\n",
        &["profiles.a.role_arn: expected a single value, found a mapping"],
    );
}

#[test]
fn config_profiles_as_a_list() {
    config_case(
        "yaml: profiles as a list",
        "profiles: [a, b]",
        b"region: eu-west-1\nprofiles: [a, b]\n",
        &["profiles: expected a mapping of profile name to settings"],
    );
}

#[test]
fn config_not_a_mapping() {
    config_case(
        "yaml: a scalar file",
        "just some text",
        b"just some text\n",
        &["rolecall.yaml: the file must hold a mapping of options"],
    );
}

#[test]
fn config_non_utf8_bytes() {
    let mut yaml = b"region: eu-west-1".to_vec();
    yaml.extend([0xff, 0xfe, 0xc3, 0x28]);
    yaml.extend(format!("\nprofiles:\n  a: {ARN_A}\n").as_bytes());
    config_case(
        "yaml: non-UTF-8 bytes",
        "\\xff\\xfe\\xc3\\x28 after region",
        &yaml,
        &["rolecall.yaml: not valid YAML", "UTF-8"],
    );
}

#[test]
fn config_nested_10000_deep() {
    let yaml = format!(
        "region: eu-west-1\nprofiles:\n  a: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    config_case(
        "yaml: 10,000-deep nesting",
        "[[[[... 10,000 deep",
        yaml.as_bytes(),
        &["rolecall.yaml: the file nests deeper than 32 levels"],
    );
}

#[test]
fn config_nested_mappings_10000_deep() {
    let yaml = format!(
        "profiles: {}1{}\n",
        "{a: ".repeat(10_000),
        "}".repeat(10_000)
    );
    config_case(
        "yaml: 10,000-deep mappings",
        "{a: {a: ... 10,000 deep",
        yaml.as_bytes(),
        &["rolecall.yaml: the file nests deeper than 32 levels"],
    );
}

#[test]
fn config_alias_bomb() {
    let mut yaml = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        yaml += &format!("{name}: &{name} [{refs}]\n");
    }
    config_case(
        "yaml: alias bomb",
        "9 levels of 9 aliases (387M nodes)",
        yaml.as_bytes(),
        &["rolecall.yaml: not valid YAML: repetition limit exceeded"],
    );
}

#[test]
fn config_source_profile_cycle() {
    let yaml = format!(
        "region: eu-west-1\nprofiles:\n  a: {{role_arn: \"{ARN_A}\", source_profile: b}}\n  b: {{role_arn: \"{ARN_A}\", source_profile: a}}\n  c: {{role_arn: \"{ARN_A}\", source_profile: c}}\n"
    );
    config_case(
        "yaml: source_profile cycle",
        "a -> b -> a, c -> c",
        yaml.as_bytes(),
        &[
            "profiles.a.source_profile: source_profile cycle: a -> b -> a",
            "profiles.c.source_profile: source_profile cycle: c -> c",
        ],
    );
}

#[test]
fn config_policy_of_2100_characters() {
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::{}/*"}}]}}"#,
        "b".repeat(2100)
    );
    assert!(policy.len() > 2100);
    let yaml = format!(
        "region: eu-west-1\nprofiles:\n  a:\n    role_arn: {ARN_A}\n    policy: '{policy}'\n"
    );
    config_case(
        "yaml: 2,100-char policy",
        &format!("a {}-character session policy", policy.len()),
        yaml.as_bytes(),
        &["profiles.a.policy: the session policy is longer than 2048 characters"],
    );
}

#[test]
fn config_unknown_source_profile() {
    let yaml = format!(
        "region: eu-west-1\nprofiles:\n  a:\n    role_arn: {ARN_A}\n    source_profile: ghost\n"
    );
    config_case(
        "yaml: unknown source_profile",
        "source_profile: ghost",
        yaml.as_bytes(),
        &["profiles.a.source_profile: unknown source_profile \"ghost\""],
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
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut cmd = rolecall_piped();
    cmd.arg("once")
        .args(["--token-file", token.path().to_str().unwrap()])
        .args(["--sts-endpoint", &sts.endpoint()])
        .env("ROLECALL_OUTPUT_DIR", &out)
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
    assert_sane(case, "once", &r, &sts);
    assert_eq!(r.code, Some(64), "{case}:\n{}", r.describe());
    assert!(
        r.stderr.contains(needle),
        "{case}: stderr does not say {needle:?}:\n{}",
        r.describe()
    );
    assert!(!out.exists(), "{case}: the output dir was created");
    let written: Vec<_> = fs::read_dir(tmp.path())
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

#[test]
fn inject_through_the_profile_name() {
    let v = format!("a\n[evil]={READER}");
    injection_case(
        "inject: --profile name",
        &v,
        &["--profile", &v],
        &[],
        "must be 1-64 characters",
    );
}

#[test]
fn inject_through_the_role_arn() {
    let v = format!("reader={READER}\n[evil]\naws_access_key_id = AKIAEVIL");
    injection_case(
        "inject: --profile role ARN",
        &v,
        &["--profile", &v],
        &[],
        "is not an IAM role ARN",
    );
}

#[test]
fn inject_through_the_region_flag() {
    let v = "eu-west-1\naws_access_key_id=x";
    injection_case(
        "inject: --region",
        v,
        &["--region", v],
        &[],
        "is not an AWS region",
    );
}

#[test]
fn inject_through_the_region_variable() {
    let v = "eu-west-1\n[evil]";
    injection_case(
        "inject: AWS_REGION",
        v,
        &[],
        &[("AWS_REGION", v)],
        "environment AWS_REGION",
    );
}

#[test]
fn inject_through_the_session_name_flag() {
    let v = "pod\naws_secret_access_key=x";
    injection_case(
        "inject: --session-name",
        v,
        &["--session-name", v],
        &[],
        "role session name",
    );
}

#[test]
fn inject_through_the_session_name_variable() {
    let v = "pod\r\n[evil]";
    injection_case(
        "inject: AWS_ROLE_SESSION_NAME",
        v,
        &[],
        &[("AWS_ROLE_SESSION_NAME", v)],
        "environment AWS_ROLE_SESSION_NAME",
    );
}

#[test]
fn inject_through_rolecall_profiles() {
    let v = format!("a={ARN_A}\n[evil]={READER}");
    injection_case(
        "inject: ROLECALL_PROFILES",
        &v,
        &[],
        &[("ROLECALL_PROFILES", &v)],
        "environment ROLECALL_PROFILES",
    );
}

#[test]
fn inject_through_rolecall_profiles_name() {
    let v = format!("a\n[evil]={READER},b={ARN_A}");
    injection_case(
        "inject: ROLECALL_PROFILES name",
        &v,
        &[],
        &[("ROLECALL_PROFILES", &v)],
        "must be 1-64 characters",
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

#[test]
fn inject_through_the_app_output_dir() {
    let v = "/aws dir\n[evil]";
    injection_case(
        "inject: --app-output-dir",
        v,
        &["--credentials", "process", "--app-output-dir", v],
        &[],
        "--app-output-dir",
    );
}

#[test]
fn inject_through_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("rolecall.yaml");
    fs::write(
        &file,
        format!(
            "profiles:\n  a:\n    role_arn: {ARN_A}\n    region: \"eu-west-1\\n[evil]\\naws_access_key_id = x\"\n    role_session_name: \"pod\\n[evil]\"\n"
        ),
    )
    .unwrap();
    injection_case(
        "inject: YAML region and session name",
        "region: \"eu-west-1\\n[evil]\\naws_access_key_id = x\", role_session_name: \"pod\\n[evil]\"",
        &["--config", file.to_str().unwrap()],
        &[],
        "profiles.a.region: \"eu-west-1",
    );
}

/// A key or profile name with a line break in the YAML file is refused, and
/// echoed escaped: the file cannot forge lines of the error report (it
/// could before: the raw key was the problem's origin).
#[test]
fn inject_through_a_yaml_key() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("rolecall.yaml");
    fs::write(
        &file,
        format!("region: eu-west-1\n\"x\\n[evil]\": 1\nprofiles:\n  \"b\\n[evil]\": {ARN_A}\n"),
    )
    .unwrap();
    injection_case(
        "inject: YAML keys with a line break",
        "key \"x\\n[evil]\", profile \"b\\n[evil]\"",
        &["--config", file.to_str().unwrap()],
        &[],
        "must be 1-64 characters",
    );
}

/// Process mode writes `credential_process = <dir>/rolecall ...` into
/// `config`. With an output dir holding a space (and no --app-output-dir)
/// the line used to be written unquoted, and the SDKs split the path: the
/// profile was lost to the application. Now: refused (exit 64), or else a
/// line whose first shell word is the whole helper path.
#[test]
fn process_mode_output_dir_with_a_space() {
    let case = "inject: process mode, output dir with a space";
    let guard = CaseGuard::new(case, "--credentials process --output-dir '/tmp/x/out dir'");
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out dir");
    let r = run(rolecall_piped()
        .arg("once")
        .args(["--token-file", token.path().to_str().unwrap()])
        .args(["--output-dir", out.to_str().unwrap()])
        .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
        .args(["--credentials", "process"])
        .args(["--profile", &format!("reader={READER}")]));
    assert!(!r.hung && !r.all().contains("panicked"), "{}", r.describe());
    let outcome = if r.code == Some(64) {
        assert_sane(case, "once", &r, &sts);
        assert!(!out.exists(), "{case}: the output dir was created");
        assert!(
            r.stderr.contains("app-output-dir") || r.stderr.contains("app_output_dir"),
            "{}",
            r.describe()
        );
        "exit 64 (use --app-output-dir without spaces), 0 STS calls, nothing written".to_owned()
    } else {
        let config = fs::read_to_string(out.join("config")).unwrap_or_default();
        let line = config
            .lines()
            .find(|l| l.starts_with("credential_process"))
            .unwrap_or_default()
            .to_owned();
        let command = line.split_once(" = ").map(|(_, v)| v).unwrap_or_default();
        let words = shell_split(command);
        assert_eq!(
            words.first().map(String::as_str),
            Some(out.join("rolecall").to_str().unwrap()),
            "{case}: the SDKs split the helper path: {line:?}"
        );
        format!("exit {:?}, helper path read back whole", r.code)
    };
    guard.pass(&outcome);
}

/// The Rust, Go, JS and Java SDKs run `credential_process` through `sh -c`.
/// An app output dir with shell syntax in it (`;`, `$(...)`, quotes) is
/// accepted and written into the line as it is, so the app's SDK runs
/// whatever the path says instead of the helper. Expected: refused (exit
/// 64), or quoted so that `sh` reads the helper path back whole.
#[test]
fn process_mode_app_output_dir_with_shell_syntax() {
    let case = "inject: process mode, shell syntax in app_output_dir";
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    let app_dir = format!("/aws;touch${{IFS}}{};#", marker.display());
    let guard = CaseGuard::new(
        case,
        format!("--credentials process --app-output-dir '{app_dir}'"),
    );
    let sts = FakeSts::start();
    let token = TokenDir::new(&valid_jwt());
    let out = tmp.path().join("out");
    let r = run(rolecall_piped()
        .arg("once")
        .args(["--token-file", token.path().to_str().unwrap()])
        .args(["--output-dir", out.to_str().unwrap()])
        .args(["--app-output-dir", &app_dir])
        .args(["--region", "eu-west-1", "--sts-endpoint", &sts.endpoint()])
        .args(["--credentials", "process"])
        .args(["--profile", &format!("reader={READER}")]));
    assert!(!r.hung && !r.all().contains("panicked"), "{}", r.describe());
    let outcome = if r.code == Some(64) {
        assert_sane(case, "once", &r, &sts);
        assert!(!out.exists(), "{case}: the output dir was created");
        "exit 64, 0 STS calls, nothing written".to_owned()
    } else {
        let config = fs::read_to_string(out.join("config")).unwrap_or_default();
        let line = config
            .lines()
            .find_map(|l| l.strip_prefix("credential_process = "))
            .unwrap_or_default()
            .to_owned();
        // What an SDK does with the line (the helper is not there: only
        // whether the shell ran something else matters).
        let _ = Command::new("sh").args(["-c", &line]).output();
        assert!(
            !marker.exists(),
            "{case}: the app's shell ran a command from the path: {line:?}"
        );
        format!("exit {:?}, the shell ran nothing but the helper", r.code)
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

fn endpoint_case(case: &'static str, addr: &str) {
    injection_case(
        case,
        &format!("--endpoint-addr {addr}"),
        &["--endpoint-addr", addr],
        &[],
        "is not a loopback address",
    );
}

#[test]
fn endpoint_on_all_interfaces() {
    endpoint_case("endpoint: 0.0.0.0", "0.0.0.0:9912");
}

#[test]
fn endpoint_on_all_ipv6_interfaces() {
    endpoint_case("endpoint: [::]", "[::]:9912");
}

#[test]
fn endpoint_on_a_pod_address() {
    endpoint_case("endpoint: 10.0.0.7", "10.0.0.7:9912");
}

#[test]
fn endpoint_on_all_interfaces_from_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("rolecall.yaml");
    fs::write(&file, "endpoint_addr: 0.0.0.0:9912\n").unwrap();
    injection_case(
        "endpoint: 0.0.0.0 in the file",
        "endpoint_addr: 0.0.0.0:9912",
        &["--config", file.to_str().unwrap()],
        &[],
        "rolecall.yaml: endpoint_addr: 0.0.0.0:9912 is not a loopback address",
    );
}
