//! `Config::load_text` on arbitrary bytes: it never panics, a configuration
//! it accepts holds only values that are safe to write into the INI outputs
//! and to send to STS, and a configuration it refuses is reported one line
//! per problem (the file cannot forge lines of the report).
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rolecall::aws::{MAX_CHAINED_DURATION, MAX_DURATION, MAX_POLICY_ARNS, MIN_DURATION};
use rolecall::config::{Config, Env, Flags};

fn no_newline(what: &str, v: &str) {
    assert!(
        !v.contains('\n') && !v.contains('\r'),
        "{what} holds a line break: {v:?}"
    );
}

fn no_control(what: &str, v: &str) {
    assert!(
        !v.chars().any(char::is_control),
        "{what} holds a control character: {v:?}"
    );
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn check(config: &Config) {
    for (what, p) in [
        ("token_file", &config.token_file),
        ("output_dir", &config.output_dir),
        ("app_output_dir", &config.app_output_dir),
    ] {
        let s = p.to_string_lossy();
        no_control(what, &s);
        assert!(!s.is_empty(), "{what} is empty");
    }
    if let Some(sock) = &config.control_socket {
        let s = sock.to_string_lossy();
        no_control("control_socket", &s);
        assert!(
            sock.is_absolute() && s.len() <= 107,
            "control_socket {s:?} is not absolute or too long for sun_path"
        );
        let out = std::path::absolute(&config.output_dir).unwrap();
        assert!(
            !sock.starts_with(&out),
            "control_socket {s:?} is inside the output dir"
        );
    }
    let names: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "profiles are sorted by name and unique");
    let set: BTreeSet<&str> = names.iter().copied().collect();
    for p in &config.profiles {
        assert!(
            valid_name(&p.name),
            "profile name {:?} is not [A-Za-z0-9_.-]{{1,64}}",
            p.name
        );
        // Values written into the INI files.
        no_control("role_arn", &p.role_arn);
        if let Some(r) = &p.region {
            no_control("region", r);
            assert!(
                !r.contains(char::is_whitespace),
                "region {r:?} holds whitespace"
            );
        }
        // Values sent to STS or printed in logs.
        for (what, v) in [
            ("session_name", Some(&p.session_name)),
            ("sts_endpoint", p.sts_endpoint.as_ref()),
            ("policy", p.policy.as_ref()),
            ("source_profile", p.source_profile.as_ref()),
            ("external_id", p.external_id.as_ref()),
        ] {
            if let Some(v) = v {
                no_newline(what, v);
            }
        }
        for a in &p.policy_arns {
            no_newline("policy_arns", a);
        }
        assert!(p.policy_arns.len() <= MAX_POLICY_ARNS);
        if let Some(policy) = &p.policy {
            // Compacted JSON: one line, and an object.
            assert!(
                policy.starts_with('{') && policy.ends_with('}'),
                "policy {policy:?}"
            );
        }
        assert!(
            (2..=64).contains(&p.session_name.len()),
            "session name {:?}",
            p.session_name
        );
        let d = p.duration.as_secs();
        let max = if p.source_profile.is_some() {
            MAX_CHAINED_DURATION
        } else {
            MAX_DURATION
        };
        assert!(
            (u64::from(MIN_DURATION)..=u64::from(max)).contains(&d),
            "duration {d} out of range for {}",
            p.name
        );
        if let Some(src) = &p.source_profile {
            assert!(
                set.contains(src.as_str()),
                "source_profile {src:?} is not a profile"
            );
        }
    }
    // No source_profile cycle survives validation.
    'profiles: for p in &config.profiles {
        let mut cur = p;
        for _ in 0..=config.profiles.len() {
            match cur
                .source_profile
                .as_deref()
                .and_then(|s| config.profile(s))
            {
                Some(next) => cur = next,
                None => continue 'profiles,
            }
        }
        panic!("source_profile cycle through {}", p.name);
    }
}

fuzz_target!(|data: &[u8]| {
    match Config::load_text(&Flags::default(), &Env::new(), Path::new("fuzz.yaml"), data) {
        Ok(config) => check(&config),
        Err(e) => {
            assert!(!e.problems.is_empty());
            // Each problem is one line of the report: nothing in the file
            // can add a line of its own (values and keys are escaped).
            for p in &e.problems {
                no_newline("a problem's origin", &p.origin);
                no_newline("a problem's message", &p.message);
            }
            let _ = e.to_string();
        }
    }
});
