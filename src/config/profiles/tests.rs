use super::*;
use crate::config::validate::tests::{check, values};
use crate::config::values::src;

const ARN: &str = "arn:aws:iam::111122223333:role/r";

fn raw(name: &str, keys: &[(&'static str, &str)]) -> (String, (Sourced, RawProfile)) {
    let mut p = RawProfile::role(src(ARN, format!("p.{name}")));
    for (k, v) in keys {
        *p.slot(k).expect("a profile key").0 = Some(src(*v, format!("p.{name}.{k}")));
    }
    (name.to_owned(), (src(name, format!("p.{name}")), p))
}

/// The merged options `pairs`, and their globals.
fn with_defaults(pairs: &[(&'static str, &str)]) -> (Layer, Globals) {
    let layer = values(pairs);
    let g = check(&layer).0;
    (layer, g)
}

/// [`resolve`] with a list of its own; `file_reported`: the file already
/// has a problem (`file: bad`).
fn run(
    merged: &RawProfiles,
    d: &Layer,
    g: &Globals,
    session: &str,
    file_reported: bool,
) -> (Vec<Profile>, Problems) {
    let mut p = Problems::default();
    if file_reported {
        p.in_file("file", "bad");
    }
    (resolve(merged, d, g, session, &mut p), p)
}

#[test]
fn a_bad_default_is_one_problem_and_one_nobody_inherits_is_none() {
    let (d, g) = with_defaults(&[("region", "BAD"), ("role_session_name", "x")]);
    let merged = RawProfiles::from([
        raw("a", &[("role_session_name", "own-name")]),
        raw("b", &[("role_session_name", "own-name")]),
    ]);
    let (ps, p) = run(&merged, &d, &g, "host", false);
    assert_eq!(
        p.lines(),
        ["--region: \"BAD\" is not an AWS region such as eu-west-1"]
    );
    assert_eq!(ps.len(), 2, "a bad region does not drop the profile");
    assert_eq!(ps[0].session_name, "own-name");
}

#[test]
fn profiles_inherit_and_override_the_defaults() {
    let (d, g) = with_defaults(&[
        ("region", "eu-west-1"),
        ("duration_seconds", "7200"),
        ("credentials", "process"),
    ]);
    let merged = RawProfiles::from([
        raw("a", &[("region", "us-east-1")]),
        raw("b", &[("source_profile", "a")]),
        raw("c", &[("credentials", "file"), ("duration_seconds", "900")]),
    ]);
    let (ps, p) = run(&merged, &d, &g, "rolecall-host", false);
    assert!(p.lines().is_empty());
    let [a, b, c] = &ps[..] else { panic!("{ps:?}") };
    assert_eq!(a.region.as_deref(), Some("us-east-1"));
    assert_eq!(b.region.as_deref(), Some("eu-west-1"));
    assert_eq!(a.duration, Duration::from_secs(7200));
    assert_eq!(b.duration, Duration::from_secs(3600), "chained: capped");
    assert_eq!(c.duration, Duration::from_secs(900));
    assert_eq!(
        (a.credentials, c.credentials),
        (CredentialsMode::Process, CredentialsMode::File)
    );
    assert_eq!(a.session_name, "rolecall-host");
    assert_eq!(b.source_profile.as_deref(), Some("a"));
}

#[test]
fn a_missing_region_is_said_once_and_no_profiles_unless_the_file_was_reported() {
    let (d, g) = with_defaults(&[]);
    let merged = RawProfiles::from([raw("a", &[]), raw("b", &[])]);
    let (_, p) = run(&merged, &d, &g, "h", false);
    let m = p.lines();
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].starts_with("region: no AWS region"));
    let (_, p) = run(&RawProfiles::new(), &d, &g, "h", false);
    assert!(p.lines()[0].starts_with("profiles: no profiles configured"));
    let (_, p) = run(&RawProfiles::new(), &d, &g, "h", true);
    assert_eq!(p.lines(), ["file: bad"]);
}

#[test]
fn each_profile_s_own_problems_name_it() {
    let (d, g) = with_defaults(&[("region", "eu-west-1"), ("credentials", "endpoint")]);
    let mut merged = RawProfiles::from([raw("a", &[("source_profile", "nope")])]);
    merged.get_mut("a").unwrap().1.role_arn = None;
    let (ps, p) = run(&merged, &d, &g, "h", false);
    assert!(ps.is_empty());
    let m = p.lines();
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(m[0], "p.a.role_arn: missing role_arn");
    assert!(m[1].starts_with("--credentials: profile \"a\" uses credentials: endpoint"));
    assert_eq!(m[2], "p.a.source_profile: unknown source_profile \"nope\"");
}

#[test]
fn process_mode_needs_a_shell_safe_app_output_dir() {
    let (d, g) = with_defaults(&[
        ("region", "eu-west-1"),
        ("credentials", "process"),
        ("app_output_dir", "/a$b"),
    ]);
    let (_, p) = run(&RawProfiles::from([raw("a", &[])]), &d, &g, "h", false);
    let m = p.lines();
    assert!(
        m.len() == 1 && m[0].starts_with("app_output_dir: process mode"),
        "{m:?}"
    );
}
