//! `output::render` on profiles that passed the program's own validation
//! (built by `Config::load_text` from a generated YAML file) and sessions
//! with arbitrary strings. The rendered `credentials` and `config` files are
//! then parsed strictly: every line is a comment, empty, the header of a
//! rendered profile, or one of the keys the renderer means to write, with
//! exactly the intended value. No fuzzed string can add a section or a key,
//! and a live session with well-formed keys is never left out.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rolecall::config::{Config, CredentialsMode, Env, Flags};
use rolecall::output::{ProcessFile, Status, render};
use rolecall::session::{Secret, Session};
use rolecall::state::{ProfileState, RefreshPlan};

const NAMES: &[&str] = &[
    "default", "reader", "writer", "a", "A.b_c-9", "profile", "x.y",
];
const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "cn-north-1", "us-gov-west-1"];
/// Output directories, plain and with what a shell would act on.
const DIRS: &[&str] = &[
    "/aws",
    "out",
    "/var/run/aws-profiles/app_1.d",
    "/aws dir",
    "/aws$(id)",
    "/aws;id",
    "/a'b",
    "/a\"b",
    "/aws/*",
    "/aws`id`",
    "/aws|x",
    "/a\\b",
    "~/aws",
    "/aws/ζ",
];
/// Realistic session values, and a few that try to break the file.
const KEYS: &[&str] = &[
    "ASIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "FwoGZXIvYXdzEBYaDH+/MzAwMDAwMDAwMDAwMDAw==",
    "x\n[evil]\naws_access_key_id = AKIAEVIL",
    "a = b",
    "#comment",
    "[default]",
    " padded ",
    "",
];

#[derive(Arbitrary, Debug)]
enum Text {
    Known(u8),
    Raw(String),
}

impl Text {
    fn get(&self, known: &[&str]) -> String {
        match self {
            Text::Known(i) => known[usize::from(*i) % known.len()].to_owned(),
            Text::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct FuzzSession {
    access_key_id: Text,
    secret_access_key: Text,
    session_token: Text,
    /// Seconds from `now` to the expiry (negative: already expired).
    expires_in: i32,
}

#[derive(Arbitrary, Debug)]
struct FuzzProfile {
    name: Text,
    region: Option<Text>,
    session_name: Option<String>,
    process: Option<bool>,
    session: Option<FuzzSession>,
    last_error: Option<String>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    region: Option<Text>,
    output_dir: Option<Text>,
    app_output_dir: Option<Text>,
    process: bool,
    profiles: Vec<FuzzProfile>,
}

/// Bugs that are known and reported but not fixed yet can be skipped by name
/// with `ROLECALL_FUZZ_KNOWN_BUGS=name,name` (see scripts/fuzz.sh), so that
/// fuzzing goes on past them. Empty by default: every check is on.
fn known_bug(name: &str) -> bool {
    static SKIP: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SKIP.get_or_init(|| {
        std::env::var("ROLECALL_FUZZ_KNOWN_BUGS")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect()
    })
    .iter()
    .any(|b| b == name)
}

/// A YAML double-quoted scalar holding exactly `s`.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn yaml(input: &Input) -> String {
    let mut y = String::new();
    if let Some(r) = &input.region {
        y += &format!("region: {}\n", quote(&r.get(REGIONS)));
    } else {
        y += "sts_endpoint: http://127.0.0.1:1\n";
    }
    if let Some(d) = &input.output_dir {
        y += &format!("output_dir: {}\n", quote(&d.get(DIRS)));
    }
    if let Some(d) = &input.app_output_dir {
        y += &format!("app_output_dir: {}\n", quote(&d.get(DIRS)));
    }
    if input.process {
        y += "credentials: process\n";
    }
    y += "profiles:\n";
    for (i, p) in input.profiles.iter().enumerate() {
        y += &format!(
            "  {}:\n    role_arn: arn:aws:iam::111122223333:role/r{i}\n",
            quote(&p.name.get(NAMES))
        );
        if let Some(r) = &p.region {
            y += &format!("    region: {}\n", quote(&r.get(REGIONS)));
        }
        if let Some(s) = &p.session_name {
            y += &format!("    role_session_name: {}\n", quote(s));
        }
        if let Some(process) = p.process {
            y += &format!(
                "    credentials: {}\n",
                if process { "process" } else { "file" }
            );
        }
    }
    y
}

/// The words a POSIX shell makes of `line`, or why it would do more than
/// split it (expansion, a command separator, a redirection, a glob...).
fn sh_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated '".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('$' | '`' | '"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated \"".into()),
                        },
                        Some(c @ ('$' | '`')) => return Err(format!("{c} expands inside \"\"")),
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \"".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next().ok_or("trailing \\")?);
            }
            '$' | '`' | ';' | '&' | '|' | '<' | '>' | '(' | ')' | '*' | '?' | '[' | ']' | '{'
            | '}' | '!' | '\n' => return Err(format!("unquoted {c:?}")),
            '#' | '~' if !in_word => return Err(format!("{c:?} at the start of a word")),
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// What a well-formed INI value is here: one non-empty word of printable ASCII.
fn well_formed(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic())
}

/// Parses `text` strictly: `[header]` lines, `key = value` lines, comments
/// and empty lines, nothing else. Returns the sections in order.
fn parse_strict(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    assert!(text.ends_with('\n'), "the file ends with a newline");
    assert!(!text.contains('\r'), "no carriage return in {text:?}");
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# ") {
            continue;
        }
        assert_eq!(
            line,
            line.trim(),
            "a line with surrounding whitespace: {line:?}"
        );
        if let Some(h) = line.strip_prefix('[') {
            let h = h
                .strip_suffix(']')
                .unwrap_or_else(|| panic!("bad header {line:?}"));
            assert!(!h.contains(['[', ']']), "bad header {line:?}");
            sections.push((h.to_owned(), Vec::new()));
            continue;
        }
        let (k, v) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("a line that is not `key = value`: {line:?}"));
        let section = sections
            .last_mut()
            .unwrap_or_else(|| panic!("a key before any section: {line:?}"));
        section.1.push((k.to_owned(), v.to_owned()));
    }
    sections
}

fuzz_target!(|input: Input| {
    let text = yaml(&input);
    let Ok(config) = Config::load_text(
        &Flags::default(),
        &Env::new(),
        Path::new("fuzz.yaml"),
        text.as_bytes(),
    ) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // The first input profile of each name provides the session.
    let mut by_name: BTreeMap<String, &FuzzProfile> = BTreeMap::new();
    for p in &input.profiles {
        by_name.entry(p.name.get(NAMES)).or_insert(p);
    }
    let states: Vec<ProfileState> = config
        .profiles
        .iter()
        .map(|profile| {
            let fp = by_name[&profile.name];
            let mut st = ProfileState::new(Arc::new(profile.clone()));
            st.session = fp.session.as_ref().map(|s| Session {
                access_key_id: Secret::new(s.access_key_id.get(KEYS)),
                secret_access_key: Secret::new(s.secret_access_key.get(KEYS)),
                session_token: Secret::new(s.session_token.get(KEYS)),
                expiration: if s.expires_in >= 0 {
                    now + Duration::from_secs(s.expires_in.unsigned_abs().into())
                } else {
                    now - Duration::from_secs(s.expires_in.unsigned_abs().into())
                },
                assumed_role_arn: None,
            });
            st.last_error = fp.last_error.clone();
            st.plan = Some(RefreshPlan {
                received: now,
                next_refresh: None,
            });
            st
        })
        .collect();
    let refs: Vec<&ProfileState> = states.iter().collect();
    // A refused configuration's problems are text from the operator's file:
    // the profiles' fuzzed errors stand in for them.
    let rejected: Vec<String> = states.iter().filter_map(|s| s.last_error.clone()).collect();
    let out = render(&refs, &rejected, &config.app_output_dir, now);

    // credentials: exactly the file-mode profiles with a live, well-formed session.
    let expected: Vec<(&str, [&str; 3])> = states
        .iter()
        .filter(|s| s.profile.credentials == CredentialsMode::File)
        .filter_map(|s| {
            let sess = s.session.as_ref().filter(|x| x.expiration > now)?;
            let keys = [
                sess.access_key_id.expose(),
                sess.secret_access_key.expose(),
                sess.session_token.expose(),
            ];
            keys.iter()
                .all(|k| well_formed(k))
                .then_some((s.profile.name.as_str(), keys))
        })
        .collect();
    let sections = parse_strict(&out.credentials);
    assert_eq!(
        sections.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "credentials sections"
    );
    for ((_, keys), (_, [id, secret, token])) in sections.iter().zip(&expected) {
        let want = [
            ("aws_access_key_id".to_owned(), id.to_string()),
            ("aws_secret_access_key".to_owned(), secret.to_string()),
            ("aws_session_token".to_owned(), token.to_string()),
        ];
        assert_eq!(keys.as_slice(), want.as_slice(), "credentials keys");
    }

    if std::env::var_os("ROLECALL_FUZZ_TRACE").is_some() {
        eprintln!(
            "TRACE ok profiles={} creds={}",
            config.profiles.len(),
            expected.len()
        );
    }
    // config: one section per profile, with its region and (process mode)
    // its credential_process line, nothing else.
    let sections = parse_strict(&out.config);
    assert_eq!(sections.len(), config.profiles.len(), "config sections");
    for ((header, keys), p) in sections.iter().zip(&config.profiles) {
        let want_header = if p.name == "default" {
            "default".to_owned()
        } else {
            format!("profile {}", p.name)
        };
        assert_eq!(header, &want_header);
        let mut want = Vec::new();
        if let Some(r) = &p.region {
            want.push(("region".to_owned(), r.clone()));
        }
        if p.credentials == CredentialsMode::Process {
            // The SDKs run this line through `sh -c` (Rust, Go, JS, Java)
            // or split it like a POSIX shell (Python): it must come out as
            // exactly these words, with nothing for the shell to expand.
            let helper = config.app_output_dir.join("rolecall");
            let helper = helper.display().to_string();
            let line = keys
                .iter()
                .find(|(k, _)| k == "credential_process")
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no credential_process for {}", p.name));
            let words = sh_words(line);
            let expected = vec![
                helper.clone(),
                "credential-process".to_owned(),
                "--profile".to_owned(),
                p.name.clone(),
            ];
            assert!(
                words.as_ref() == Ok(&expected) || known_bug("shell-unsafe-output-dir"),
                "credential_process {line:?} is not the words {expected:?} for the shell: {words:?}"
            );
            want.push(("credential_process".to_owned(), line.to_owned()));
        }
        assert_eq!(keys, &want, "config keys of {}", p.name);
    }

    // status.json and credential-process.json parse back to the same profiles.
    let status: Status = serde_json::from_str(&out.status).expect("status.json parses");
    assert_eq!(status.rejected_config, rejected, "refused problems round-trip");
    let names: BTreeSet<&str> = status.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), config.profiles.len());
    let process_live: BTreeSet<&str> = states
        .iter()
        .filter(|s| s.profile.credentials == CredentialsMode::Process)
        .filter(|s| s.session.as_ref().is_some_and(|x| x.expiration > now))
        .map(|s| s.profile.name.as_str())
        .collect();
    match &out.process {
        Some(p) => {
            let file: ProcessFile =
                serde_json::from_str(p).expect("credential-process.json parses");
            let got: BTreeSet<&str> = file.profiles.keys().map(String::as_str).collect();
            assert_eq!(got, process_live, "process-mode sessions");
        }
        None => assert!(process_live.is_empty()),
    }
});
