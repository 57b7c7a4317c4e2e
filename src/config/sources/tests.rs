use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn flags_are_read_with_their_flag_as_origin() {
    let s = from_flags(&Flags {
        region: Some("eu-west-1".into()),
        duration: Some("900".into()),
        profiles: vec!["a=arn".into(), " b = arn2 ".into(), "".into()],
        ..Flags::default()
    });
    assert_eq!(s.values.region, Some(src("eu-west-1", "--region")));
    assert_eq!(s.values.duration, Some(src("900", "--duration")));
    let names: Vec<_> = s.profiles.iter().map(|(n, _)| n.value.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(s.profiles[1].0.origin, "--profile  b = arn2 ");
    assert_eq!(s.profiles[1].1.role_arn.as_ref().unwrap().value, "arn2");
    assert!(s.problems.into_vec().is_empty() && s.fallback.is_none());
}

#[test]
fn the_environment_skips_empty_values_but_an_empty_health_address_counts() {
    let s = from_env(&env(&[
        ("AWS_REGION", ""),
        ("AWS_DEFAULT_REGION", "us-west-1"),
        ("ROLECALL_OUTPUT_DIR", ""),
        ("ROLECALL_HEALTH_ADDR", ""),
        ("AWS_ROLE_ARN", "arn"),
    ]));
    assert_eq!(
        s.values.region,
        Some(src("us-west-1", "environment AWS_DEFAULT_REGION"))
    );
    assert!(s.values.output_dir.is_none());
    assert_eq!(
        s.values.health_addr,
        Some(src("", "environment ROLECALL_HEALTH_ADDR"))
    );
    let (name, raw) = s.fallback.unwrap();
    assert_eq!(name, src("default", "environment AWS_ROLE_ARN"));
    assert_eq!(raw.role_arn, Some(src("arn", "environment AWS_ROLE_ARN")));
}

#[test]
fn a_malformed_profile_list_is_one_problem_per_bad_item() {
    let s = from_env(&env(&[("ROLECALL_PROFILES", "a=x,,oops,oops,b=y")]));
    assert_eq!(s.profiles.len(), 2);
    let p = s.problems.into_vec();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].origin, "environment ROLECALL_PROFILES");
    assert_eq!(p[0].message, "expected NAME=ROLE_ARN, got \"oops\"");
}

#[test]
fn problems_keep_their_order_list_each_once_and_know_the_file_s() {
    let mut p = Problems::default();
    p.push("b", "two");
    p.push("a", "one");
    p.push("b", "two");
    assert!(!p.touch_file());
    let mut q = Problems::default();
    q.at(
        &Sourced {
            in_file: true,
            ..src("x", "/c.yaml: region")
        },
        "bad",
    );
    q.push("a", "one");
    p.append(q);
    assert!(p.touch_file());
    assert_eq!(p.lines(), ["b: two", "a: one", "/c.yaml: region: bad"]);
}

fn source(values: &[(&'static str, &str, &str)], profiles: &[(&str, &str, &str)]) -> Source {
    let mut layer = Layer::default();
    for (k, v, o) in values {
        *layer.slot(k, false).unwrap().0 = Some(src(*v, *o));
    }
    Source {
        values: layer,
        profiles: profiles
            .iter()
            .map(|(n, arn, o)| (src(*n, *o), RawProfile::role(src(*arn, *o))))
            .collect(),
        ..Source::default()
    }
}

#[test]
fn a_later_source_wins_each_value() {
    let file = source(
        &[("region", "r-file", "f"), ("log_format", "json", "f")],
        &[],
    );
    let env = source(&[("region", "r-env", "e"), ("output_dir", "/e", "e")], &[]);
    let flags = source(&[("output_dir", "/f", "--output-dir")], &[]);
    let m = merge([&file, &env, &flags]);
    let v = |s: &Option<Sourced>| s.as_ref().map(|s| s.value.clone());
    let got = [&m.values.log_format, &m.values.output_dir, &m.values.region].map(v);
    assert_eq!(got.map(Option::unwrap), ["json", "/f", "r-env"]);
    assert!(m.values.token_file.is_none());
}

#[test]
fn a_later_source_replaces_a_profile_s_role_and_keeps_its_settings() {
    let mut file = source(&[], &[("a", "arn-file", "f.a"), ("b", "arn-b", "f.b")]);
    file.profiles[0].1.own.region = Some(src("us-east-1", "f.a.region"));
    let flags = source(&[], &[("a", "arn-flag", "--profile a=arn-flag")]);
    let m = merge([&file, &Source::default(), &flags]);
    let (name, a) = &m.profiles["a"];
    assert_eq!(name.origin, "f.a");
    assert_eq!(a.role_arn.as_ref().unwrap().value, "arn-flag");
    assert_eq!(a.own.region.as_ref().unwrap().value, "us-east-1");
    assert_eq!(m.profiles.len(), 2);
    assert!(m.problems.into_vec().is_empty());
}

#[test]
fn a_name_twice_in_one_source_is_a_problem_but_not_across_sources() {
    let env = source(
        &[],
        &[("a", "x", "env"), ("a", "y", "env"), ("a", "z", "env")],
    );
    let flags = source(&[], &[("a", "w", "--profile a=w")]);
    let m = merge([&Source::default(), &env, &flags]);
    assert_eq!(m.profiles["a"].1.role_arn.as_ref().unwrap().value, "w");
    let p = m.problems.into_vec();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        (p[0].origin.as_str(), p[0].message.as_str()),
        ("env", "duplicate profile \"a\"")
    );
}

#[test]
fn the_fallback_profile_only_stands_in_for_none() {
    let mut env = source(&[], &[]);
    env.fallback = Some((src("default", "env"), RawProfile::role(src("arn", "env"))));
    let m = merge([&env]);
    assert_eq!(m.profiles.keys().collect::<Vec<_>>(), ["default"]);
    let file = source(&[], &[("a", "x", "f")]);
    let m = merge([&file, &env]);
    assert_eq!(m.profiles.keys().collect::<Vec<_>>(), ["a"]);
}
