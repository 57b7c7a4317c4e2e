//! The side-by-side comparison of a configuration redesign (issue 21 item
//! 3): random mixes of flags, environment and YAML fed to the old
//! configuration code (`crate::config_old`, a temporary copy of
//! `src/config` at a base commit, made by run.sh) and to the current one;
//! the results (the whole `Config` or every problem, by `Debug`), the
//! restart rule between consecutive results, and `Config::load` through a
//! real file must be identical. Not part of the tree's tests: run.sh
//! mounts it beside the old copy and removes both afterwards.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, FromArgMatches};

use crate::config as new;
use crate::config_old as old;

/// Files the values may name: good and bad token files, CA bundles, dirs.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
        w("good-token", &[b'k'; 40]);
        w("good-token-nl", &[&[b'k'; 33][..], b"\n"].concat());
        w("short-token", b"abc");
        w("spaced-token", &[&[b'k'; 20][..], b" ", &[b'k'; 20][..]].concat());
        w("garbage.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        w("empty.pem", b"");
        if let Ok(ca) = std::env::var("SIDEBYSIDE_CA") {
            std::fs::copy(ca, dir.path().join("ca.pem")).unwrap();
        }
        std::fs::create_dir(dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("out"), dir.path().join("link")).unwrap();
        Files { dir }
    }

    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// Whether this case keeps to good values (the first two of each list),
/// so that many cases give a configuration to compare whole.
static VALID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn valid() -> bool {
    VALID.load(std::sync::atomic::Ordering::Relaxed)
}

fn pick<'a>(r: &mut fastrand::Rng, xs: &[&'a str]) -> &'a str {
    let n = if valid() { xs.len().min(2) } else { xs.len() };
    xs[r.usize(..n)]
}

const ARNS: &[&str] = &[
    "arn:aws:iam::111122223333:role/r",
    "arn:aws:iam::111122223333:role/path/x",
    "arn:aws-cn:iam::111122223333:role/c",
    "arn:aws:iam::11112222333:role/short",
    "not-an-arn",
    "",
];
const NAMES: &[&str] = &["a", "b", "c", "default", "bad name", "x.y_z-1", ""];
const GOOD_NAMES: &[&str] = &["a", "b", "c", "default"];

/// A value for the option `key`, good or bad.
fn value(r: &mut fastrand::Rng, f: &Files, key: &str) -> String {
    let v = match key {
        "token_file" => pick(r, &["/t", "/var/run/token", "", "rel", "/x\u{1}y"]),
        "output_dir" => pick(r, &["/aws", "OUTDIR", "/out", "", "rel", "/run"]),
        "app_output_dir" => pick(r, &["/app", "/aws", "rel", "/a b", "/a$b", ""]),
        "region" => pick(r, &["eu-west-1", "cn-north-1", "us-gov-west-1", "BAD", "", " us-east-1 ", "ca-central-1"]),
        "sts_endpoint" => pick(r, &["https://sts.example.com", "http://localhost:4566", "ftp://x", "https://", "https://x/", "http://10.0.0.5:80"]),
        "use_fips_endpoint" | "use_dualstack_endpoint" | "allow_world_readable" | "kubernetes_tags" => {
            pick(r, &["true", "false", "yes", "", "true "])
        }
        "duration_seconds" => pick(r, &["900", "3600", "7200", "43200", "899", "abc", "43201", " 1000"]),
        "role_session_name" => pick(r, &["ab", "ok-name@x", "a", "bad name", "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"]),
        "credentials" => pick(r, &["file", "process", "endpoint", "bogus", ""]),
        "file_mode" => pick(r, &["0640", "0600", "0644", "0666", "999", "0o640", "-1", "0604", "0620"]),
        "health_addr" => pick(r, &["0.0.0.0:9911", "", " ", "bad", "127.0.0.1:1"]),
        "endpoint_addr" => pick(r, &["127.0.0.1:9912", "[::1]:80", "10.0.0.1:1", "", "bad", " "]),
        "endpoint_token_file" => pick(r, &["GOOD", "GOODNL", "SHORT", "SPACED", "/nonexistent", "", "rel"]),
        "ca_bundle" => pick(r, &["CA", "CA", "GARBAGE", "EMPTY", "/nonexistent.pem", "", "/dev/null"]),
        "control_socket" => pick(r, &["/run/rolecall/control.sock", "", "rel.sock", "/a.sock", "/aws/x.sock", "/out/s/c.sock", "/run/../x.sock", "OUTDIR/c.sock", "/run/rolecall/cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc.sock"]),
        "proxy" => pick(r, &["http://proxy:3128", "http://u:p%40ss@proxy:3128", "https://x", "bad", "", "http://[::1]:1"]),
        "no_proxy" => pick(r, &["localhost,.svc", "*", "10.0.0.0/8", "a b", "", "10.0.0.0/99"]),
        "log_format" => pick(r, &["text", "json", "xml", ""]),
        "role_arn" => pick(r, ARNS),
        "policy" => pick(r, &[r#"{"Version":"2012-10-17"}"#, "{ \"a\" :\n 1 }", "[1]", "{bad"]),
        "source_profile" => pick(r, NAMES),
        "external_id" => pick(r, &["ext-1", "a:b/c", "x", "bad id"]),
        "source_identity" => pick(r, &["alice", "bob1", "a", "a b", "aws:x"]),
        _ => "?",
    };
    match v {
        "GOOD" => f.p("good-token"),
        "GOODNL" => f.p("good-token-nl"),
        "SHORT" => f.p("short-token"),
        "SPACED" => f.p("spaced-token"),
        "CA" => f.p("ca.pem"),
        "GARBAGE" => f.p("garbage.pem"),
        "EMPTY" => f.p("empty.pem"),
        "OUTDIR" => f.p("out"),
        "OUTDIR/c.sock" => f.p("out/c.sock"),
        v => v.to_owned(),
    }
}

const GLOBAL: &[(&str, &str, &[&str])] = &[
    ("token_file", "token-file", &["AWS_WEB_IDENTITY_TOKEN_FILE"]),
    ("output_dir", "output-dir", &["ROLECALL_OUTPUT_DIR"]),
    ("app_output_dir", "app-output-dir", &["ROLECALL_APP_OUTPUT_DIR"]),
    ("region", "region", &["AWS_REGION", "AWS_DEFAULT_REGION"]),
    ("sts_endpoint", "sts-endpoint", &["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"]),
    ("use_fips_endpoint", "use-fips-endpoint", &["AWS_USE_FIPS_ENDPOINT"]),
    ("use_dualstack_endpoint", "use-dualstack-endpoint", &["AWS_USE_DUALSTACK_ENDPOINT"]),
    ("duration_seconds", "duration", &[]),
    ("role_session_name", "session-name", &["AWS_ROLE_SESSION_NAME"]),
    ("credentials", "credentials", &[]),
    ("file_mode", "file-mode", &[]),
    ("allow_world_readable", "allow-world-readable", &["ROLECALL_ALLOW_WORLD_READABLE"]),
    ("health_addr", "health-addr", &["ROLECALL_HEALTH_ADDR"]),
    ("endpoint_addr", "endpoint-addr", &[]),
    ("endpoint_token_file", "endpoint-token-file", &["ROLECALL_ENDPOINT_TOKEN_FILE"]),
    ("ca_bundle", "ca-bundle", &["AWS_CA_BUNDLE"]),
    ("control_socket", "control-socket", &["ROLECALL_CONTROL_SOCKET"]),
    ("proxy", "proxy", &["HTTPS_PROXY", "https_proxy"]),
    ("no_proxy", "no-proxy", &["NO_PROXY", "no_proxy"]),
    ("log_format", "log-format", &["ROLECALL_LOG_FORMAT"]),
];
const INHERITED: &[&str] = &[
    "region", "sts_endpoint", "use_fips_endpoint", "use_dualstack_endpoint",
    "duration_seconds", "role_session_name", "credentials",
];
const OWN: &[&str] = &["role_arn", "policy", "source_profile", "external_id", "source_identity", "kubernetes_tags"];

/// A YAML scalar for `v`, sometimes as a number, boolean or odd shape.
fn yaml_value(r: &mut fastrand::Rng, key: &str, v: &str) -> String {
    match if valid() { 19 } else { r.u8(..20) } {
        0 => "~".into(),
        1 => "[a, b]".into(),
        2 => "{k: v}".into(),
        3 => "!tag x".into(),
        4 if key == "file_mode" => pick(r, &["0o640", "0o644", "416", "-1", "1.5"]).into(),
        5 => pick(r, &["true", "false", "1234", "0.5"]).into(),
        _ => format!("{v:?}"),
    }
}

fn profile_yaml(r: &mut fastrand::Rng, f: &Files, out: &mut String) {
    for _ in 0..r.usize(0..4) {
        let name = if valid() { GOOD_NAMES[r.usize(..4)] } else { pick(r, NAMES) };
        if r.u8(..6) == 0 {
            let _ = writeln!(out, "  {name:?}: {:?}", pick(r, ARNS));
            continue;
        }
        let _ = writeln!(out, "  {name:?}:");
        if r.u8(..8) != 0 {
            let _ = writeln!(out, "    role_arn: {:?}", pick(r, ARNS));
        }
        for _ in 0..r.usize(0..4) {
            let key = if r.bool() { pick(r, INHERITED) } else { pick(r, OWN) };
            let v = value(r, f, key);
            let _ = writeln!(out, "    {key}: {}", yaml_value(r, key, &v));
        }
        match if valid() { 3 + r.u8(..5) } else { r.u8(..12) } {
            0 => out.push_str("    policy_arns: [arn:aws:iam::aws:policy/ReadOnlyAccess, bad]\n"),
            1 => {
                let _ = writeln!(out, "    policy_arns: [{}]", vec!["arn:aws:iam::aws:policy/P"; 11].join(", "));
            }
            2 => out.push_str("    tags: {team: a, Team: b, kubernetes-namespace: c, \"aws:x\": d, e: ~, f: true}\n"),
            3 => out.push_str("    tags: {team: platform, cost: \"1\"}\n    transitive_tag_keys: [team, other]\n"),
            4 => out.push_str("    tags: [1]\n    transitive_tag_keys: x\n"),
            5 if !valid() => out.push_str("    bogus: 1\n"),
            6 => out.push_str("    kubernetes_tags: true\n    transitive_tag_keys: [kubernetes-pod-name]\n"),
            _ => {}
        }
    }
}

fn outputs_yaml(r: &mut fastrand::Rng, f: &Files, out: &mut String) {
    out.push_str("outputs:\n");
    for _ in 0..r.usize(0..4) {
        let name = pick(r, &["app", "web", "Bad", "app", "x-"]);
        let _ = writeln!(out, "  {name}:");
        if r.u8(..6) != 0 {
            let dir = pick(r, &["/aws/app", "/aws/web", "/aws/app/sub", "rel", "/aws/../x", "LINK", "OUT"]);
            let dir = match dir {
                "LINK" => f.p("link"),
                "OUT" => f.p("out"),
                d => d.to_owned(),
            };
            let _ = writeln!(out, "    dir: {dir:?}");
        }
        if r.u8(..4) == 0 {
            let _ = writeln!(out, "    app_dir: {:?}", pick(r, &["/app", "/a b", "rel"]));
        }
        if r.u8(..4) == 0 {
            let _ = writeln!(out, "    endpoint_token_file: {:?}", value(r, f, "endpoint_token_file"));
        }
        match r.u8(..8) {
            0 => {}
            1 => out.push_str("    profiles: []\n"),
            2 => out.push_str("    profiles: [a, a, nope]\n"),
            3 => out.push_str("    bogus: 1\n"),
            _ => {
                let _ = writeln!(out, "    profiles: [{}]", pick(r, &["a", "b", "a, b", "c", "default"]));
            }
        }
    }
}

/// A configuration file: top-level options, profiles, maybe output sets,
/// now and then cut short or nested too deep.
fn file(r: &mut fastrand::Rng, f: &Files) -> String {
    let mut out = String::new();
    for _ in 0..r.usize(0..5) {
        let (key, _, _) = GLOBAL[r.usize(..GLOBAL.len())];
        let v = value(r, f, key);
        let _ = writeln!(out, "{key}: {}", yaml_value(r, key, &v));
    }
    if !valid() && r.u8(..10) == 0 {
        out.push_str("regoin: x\n");
    }
    if r.u8(..5) != 0 {
        out.push_str("profiles:\n");
        profile_yaml(r, f, &mut out);
    }
    if r.u8(..4) == 0 {
        outputs_yaml(r, f, &mut out);
    }
    match if valid() { 29 } else { r.u8(..30) } {
        0 => out.truncate(r.usize(..=out.len())),
        1 => out = format!("{}{}", "[".repeat(r.usize(30..40)), "]".repeat(35)),
        2 => out = "- a list\n".into(),
        3 => out = "a: &x [*x]\n".into(),
        _ => {}
    }
    out
}

/// Command-line arguments and an environment.
fn flags_and_env(r: &mut fastrand::Rng, f: &Files) -> (Vec<String>, new::Env) {
    let mut args = vec!["rolecall".to_owned()];
    let mut env = new::Env::new();
    env.insert("HOSTNAME".into(), pick(r, &["pod-1", "", "a b"]).into());
    for (key, flag, vars) in GLOBAL {
        if r.u8(..8) == 0 {
            args.push(format!("--{flag}={}", value(r, f, key)));
        }
        for var in vars.iter() {
            if r.u8(..10) == 0 {
                env.insert((*var).into(), value(r, f, key));
            }
        }
    }
    for _ in 0..r.usize(0..3).saturating_sub(1) {
        let p = format!("{}={}", pick(r, NAMES), pick(r, ARNS));
        let bad = !valid() && r.u8(..8) == 0;
        args.push(format!("--profile={}", if bad { "noeq" } else { &p }));
    }
    if valid() && r.u8(..4) != 0 && !args.iter().any(|a| a.starts_with("--region=")) {
        args.push("--region=eu-west-1".into());
    }
    if r.u8(..5) == 0 {
        let list = ["a=arn:aws:iam::111122223333:role/r", "b=arn:aws:iam::111122223333:role/b", "", "oops", "a=arn:aws:iam::111122223333:role/q", "b=x"];
        let n = r.usize(1..4);
        let items: Vec<&str> = (0..n).map(|_| pick(r, &list)).collect();
        env.insert("ROLECALL_PROFILES".into(), items.join(","));
    }
    if r.u8(..4) == 0 {
        env.insert("AWS_ROLE_ARN".into(), pick(r, ARNS).into());
    }
    (args, env)
}

fn parse<F: Args + FromArgMatches>(args: &[String]) -> Result<F, String> {
    let cmd = F::augment_args(clap::Command::new("rolecall"));
    let m = cmd.try_get_matches_from(args).map_err(|e| e.to_string())?;
    F::from_arg_matches(&m).map_err(|e| e.to_string())
}

#[test]
#[ignore = "run by scripts/config-sidebyside/run.sh"]
fn old_and_new_configuration_code_agree_on_random_mixes() {
    let cases: usize = std::env::var("SIDEBYSIDE_CASES").map_or(60_000, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("SIDEBYSIDE_SEED").map_or(21, |v| v.parse().unwrap());
    let mut r = fastrand::Rng::with_seed(seed);
    let f = Files::new();
    let (mut ok, mut prev): (usize, Option<(old::Config, new::Config)>) = (0, None);
    for case in 0..cases {
        VALID.store(r.bool(), std::sync::atomic::Ordering::Relaxed);
        let (args, mut env) = flags_and_env(&mut r, &f);
        let (of, nf) = match (parse::<old::Flags>(&args), parse::<new::Flags>(&args)) {
            (Ok(o), Ok(n)) => (o, n),
            (o, n) => {
                assert_eq!(o.err(), n.err(), "case {case}: {args:?}");
                continue;
            }
        };
        let text = file(&mut r, &f);
        let name = Path::new("/etc/rolecall/config.yaml");
        let (o, n) = match r.u8(..10) {
            // Without a file.
            0 => (old::Config::load(&of, &env), new::Config::load(&nf, &env)),
            // Through a real file, named by the environment (or missing).
            1 => {
                let path = f.dir.path().join(format!("c{}.yaml", case % 4));
                if r.u8(..5) != 0 {
                    std::fs::write(&path, &text).unwrap();
                } else {
                    let _ = std::fs::remove_file(&path);
                }
                env.insert("ROLECALL_CONFIG".into(), path.display().to_string());
                (old::Config::load(&of, &env), new::Config::load(&nf, &env))
            }
            _ => (
                old::Config::load_text(&of, &env, name, text.as_bytes()),
                new::Config::load_text(&nf, &env, name, text.as_bytes()),
            ),
        };
        let (od, nd) = (format!("{o:#?}"), format!("{n:#?}"));
        assert_eq!(od, nd, "case {case}: args {args:?}\nenv {env:?}\nfile:\n{text}");
        if let (Err(o), Err(n)) = (&o, &n) {
            assert_eq!(o.to_string(), n.to_string());
        }
        if let (Ok(o), Ok(n)) = (o, n) {
            ok += 1;
            if let Some((po, pn)) = &prev {
                assert_eq!(
                    old::Config::restart_needed(po, &o),
                    new::Config::restart_needed(pn, &n),
                    "case {case}"
                );
                assert_eq!(o.order().iter().map(|p| &p.name).collect::<Vec<_>>(), n.order().iter().map(|p| &p.name).collect::<Vec<_>>());
            }
            prev = Some((o, n));
        }
    }
    eprintln!("side by side: {cases} cases (seed {seed}), {ok} valid configurations, no difference");
    let _: Option<PathBuf> = None;
}
