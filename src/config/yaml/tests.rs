use super::*;

fn read(text: &str) -> Source {
    source(Path::new("/c.yaml"), Ok(text.as_bytes().to_vec()))
}

#[test]
fn values_keep_their_key_path_and_are_marked_as_the_file_s() {
    let s = read(
        "region: eu-west-1\nduration_seconds: 900\nfile_mode: 0o640\nallow_world_readable: true\n",
    );
    let r = s.values.region.as_ref().unwrap();
    assert_eq!(
        (r.value.as_str(), r.origin.as_str()),
        ("eu-west-1", "/c.yaml: region")
    );
    assert!(r.in_file);
    assert_eq!(s.values.duration.as_ref().unwrap().value, "900");
    assert_eq!(
        s.values.file_mode.as_ref().unwrap().value,
        "640",
        "a YAML number is the mode"
    );
    assert_eq!(
        s.values.allow_world_readable.as_ref().unwrap().value,
        "true"
    );
    assert!(s.problems.into_vec().is_empty());
}

#[test]
fn a_later_key_or_a_null_replaces_an_earlier_one() {
    let s = read("region: a\nregion: ~\n");
    assert!(s.values.region.is_none(), "{:?}", s.values);
}

#[test]
fn profiles_are_read_as_mappings_or_a_role_arn() {
    let s = read(
        "profiles:\n  a: arn-a\n  b:\n    role_arn: arn-b\n    source_profile: a\n    policy_arns: [p1, p2]\n",
    );
    let names: Vec<_> = s.profiles.iter().map(|(n, _)| n.origin.as_str()).collect();
    assert_eq!(names, ["/c.yaml: profiles.a", "/c.yaml: profiles.b"]);
    let b = &s.profiles[1].1;
    assert_eq!(b.source_profile.as_ref().unwrap().value, "a");
    assert_eq!(
        b.policy_arns[1].origin,
        "/c.yaml: profiles.b.policy_arns[1]"
    );
    assert_eq!(s.profiles[0].1.role_arn.as_ref().unwrap().value, "arn-a");
}

#[test]
fn every_problem_is_the_file_s() {
    let s = read("regoin: x\nfile_mode: -1\nprofiles:\n  a: {bogus: 1}\n  b: [1]\n");
    assert!(s.problems.touch_file());
    let p = s.problems.into_vec();
    let listed: Vec<_> = p.iter().map(|p| p.origin.as_str()).collect();
    assert_eq!(
        listed,
        [
            "/c.yaml: regoin",
            "/c.yaml: file_mode",
            "/c.yaml: profiles.a.bogus",
            "/c.yaml: profiles.b"
        ]
    );
    assert!(
        p[0].message
            .contains("known keys: token_file, identity, pod_identity_endpoint")
    );
    assert!(
        p[2].message
            .contains("known profile keys: role_arn, region")
    );
    for bad in ["- a list\n", "a: [\n"] {
        let s = read(bad);
        assert!(s.problems.touch_file(), "{bad}");
    }
    assert!(read("").problems.into_vec().is_empty());
}
