//! `Token::parse` on arbitrary text: it never panics, a decoded token keeps
//! exactly the trimmed input, and its `Debug` output never shows the token.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rolecall::config::{Config, Env, Flags, Profile};
use rolecall::token::Token;

fn check(input: &str) {
    let Ok(token) = Token::parse(input) else {
        return;
    };
    let trimmed = input.trim();
    assert_eq!(
        token.expose(),
        trimmed,
        "the token sent to STS is the trimmed input"
    );
    let dbg = format!("{token:?}");
    if input.len() > 20 {
        assert!(!dbg.contains(input), "Debug shows the raw input: {dbg}");
    }
    if trimmed.len() > 20 {
        assert!(!dbg.contains(trimmed), "Debug shows the token: {dbg}");
    }
    // Everything the program derives from the claims must not panic either:
    // the expiry (an `exp` of 1e300 once overflowed SystemTime), `check`'s
    // trust policy and the hints in error logs.
    if let Some(t) = token.expires_at() {
        let _ = rolecall::session::format_time(t);
    }
    let profile = profile();
    let _ = rolecall::trust::trust_policy(profile, &token.claims);
    for code in ["AccessDenied", "IDPRejectedClaim", "InvalidIdentityToken"] {
        let _ = rolecall::trust::hint(code, profile, Some(&token.claims));
    }
}

/// A profile as the program builds it (so a new field does not break this).
fn profile() -> &'static Profile {
    static PROFILE: OnceLock<Profile> = OnceLock::new();
    PROFILE.get_or_init(|| {
        let yaml =
            b"region: eu-west-1\nprofiles:\n  reader: arn:aws:iam::111122223333:role/reader\n";
        Config::load_text(&Flags::default(), &Env::new(), Path::new("fuzz.yaml"), yaml)
            .expect("a valid configuration")
            .profiles
            .remove(0)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        check(s);
    }
    check(&String::from_utf8_lossy(data));
});
