//! `rolecall credential-process --profile NAME`: the helper that SDKs run
//! for `credential_process` profiles. It prints the session the sidecar last
//! wrote for NAME in the AWS `credential_process` JSON format, reads nothing
//! over the network, and fails clearly for an unknown, missing or expired
//! profile (the SDK then reports the message).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::fsread::{self, Follow, ReadError};
use crate::output::{HELPER_FILE, MAX_OUTPUT_BYTES, PROCESS_FILE, ProcessFile};
use crate::schedule;
use crate::session::{format_time, parse_time};
use crate::status::escape_controls;

/// Why the helper printed nothing. Every value shown comes from the
/// command line or the file and is escaped ([`escape_controls`]): the SDK
/// shows this message to the user, often on a terminal.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error(
        "no {PROCESS_FILE} in {dir}: is the rolecall sidecar running with a process-mode profile?"
    )]
    Missing { dir: String },
    #[error("{path} {source}: it is not a file the rolecall sidecar wrote")]
    Unreadable {
        path: String,
        #[source]
        source: ReadError,
    },
    #[error("{path} is not readable as rolecall's credential file: {reason}")]
    Invalid { path: String, reason: String },
    #[error(
        "profile {profile} has no credentials in {dir} (published: {known}); is it configured with credentials: process, and did its last refresh succeed? (`rolecall status`)"
    )]
    Unknown {
        profile: String,
        dir: String,
        known: String,
    },
    #[error(
        "the credentials of profile {profile} expired at {expiration}; is the rolecall sidecar running? (`rolecall status`)"
    )]
    Expired { profile: String, expiration: String },
}

/// Where the helper looks when `--output-dir` is not given: beside itself
/// (it is installed in the output dir), then `ROLECALL_OUTPUT_DIR`, then the
/// default.
pub fn default_dir(exe: Option<PathBuf>, env_dir: Option<&str>) -> PathBuf {
    if let Some(dir) = exe
        .as_deref()
        .filter(|e| e.file_name().is_some_and(|n| n == HELPER_FILE))
        .and_then(Path::parent)
        .filter(|d| d.join(PROCESS_FILE).exists())
    {
        return dir.to_owned();
    }
    env_dir
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_OUTPUT_DIR))
}

/// The `credential_process` JSON for `profile`.
pub fn credentials(dir: &Path, profile: &str, now: SystemTime) -> Result<String, HelperError> {
    let path = dir.join(PROCESS_FILE);
    let shown = |p: &Path| escape_controls(&p.display().to_string());
    let bytes = fsread::read(&path, MAX_OUTPUT_BYTES, Follow::No).map_err(|source| {
        if source.is_missing() {
            HelperError::Missing { dir: shown(dir) }
        } else {
            HelperError::Unreadable {
                path: shown(&path),
                source,
            }
        }
    })?;
    let file: ProcessFile = serde_json::from_slice(&bytes).map_err(|e| HelperError::Invalid {
        path: shown(&path),
        reason: e.to_string(),
    })?;
    let Some(entry) = file.profiles.get(profile) else {
        let known: Vec<String> = file.profiles.keys().map(|k| escape_controls(k)).collect();
        return Err(HelperError::Unknown {
            profile: escape_controls(profile),
            dir: shown(dir),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    };
    // `real_expiration` (absent in older files) is the keys' own expiry;
    // `slide_until` (present while the session is healthy, absent in older
    // files) the latest `Expiration` to print, slid from now.
    let c = &entry.credentials;
    let real = entry.real_expiration.as_ref().unwrap_or(&c.expiration);
    let Some(real_t) = parse_time(real).filter(|&t| t > now) else {
        return Err(HelperError::Expired {
            profile: escape_controls(profile),
            expiration: escape_controls(real),
        });
    };
    let mut c = c.clone();
    if let Some(cap) = entry.slide_until.as_deref().and_then(parse_time) {
        // The same arithmetic as the endpoint's: now plus the slide, under
        // the cap, or the real expiry once the cap has passed.
        c.expiration = format_time(schedule::sliding_expiry(real_t, cap, now));
    } else if parse_time(&c.expiration).is_none_or(|t| t <= now) {
        // A file without `slide_until` (unhealthy, or written by an older
        // sidecar) whose fixed expiry passed without the refresh it was
        // set after (rolecall stopped or stuck, or the clock stepped): the
        // keys are still valid, so the real expiry rather than one in the
        // past.
        c.expiration.clone_from(real);
    }
    Ok(serde_json::to_string(&c).expect("serialisable"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn write(dir: &Path, expiration: &str) {
        std::fs::write(
            dir.join(PROCESS_FILE),
            format!(
                r#"{{"profiles":{{"svc":{{"role_arn":"arn:aws:iam::111122223333:role/svc","credentials":{{"Version":1,"AccessKeyId":"ASIAX","SecretAccessKey":"s3cr3t","SessionToken":"tok","Expiration":"{expiration}"}}}}}}}}"#
            ),
        )
        .unwrap();
    }

    #[test]
    fn prints_version_1_json_for_a_live_profile() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "2030-01-01T00:00:00Z");
        let out = credentials(dir.path(), "svc", SystemTime::now()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Version"], 1);
        assert_eq!(v["AccessKeyId"], "ASIAX");
        assert_eq!(v["SecretAccessKey"], "s3cr3t");
        assert_eq!(v["SessionToken"], "tok");
        assert_eq!(v["Expiration"], "2030-01-01T00:00:00Z");
    }

    #[test]
    fn unknown_missing_and_expired_profiles_fail_clearly_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let e = credentials(dir.path(), "svc", SystemTime::now()).unwrap_err();
        assert!(
            e.to_string().contains("is the rolecall sidecar running"),
            "{e}"
        );
        write(dir.path(), "2020-01-01T00:00:00Z");
        let e = credentials(dir.path(), "other", SystemTime::now()).unwrap_err();
        assert!(e.to_string().contains("published: svc"), "{e}");
        let e = credentials(dir.path(), "svc", SystemTime::now()).unwrap_err();
        assert!(
            e.to_string().contains("expired at 2020-01-01T00:00:00Z"),
            "{e}"
        );
        assert!(!e.to_string().contains("s3cr3t") && !format!("{e:?}").contains("s3cr3t"));
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        assert!(credentials(dir.path(), "svc", later).is_ok());
    }

    #[test]
    fn a_file_without_the_slide_prints_its_fixed_expiry_and_the_real_one_once_that_passed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PROCESS_FILE),
            r#"{"profiles":{"svc":{"role_arn":"arn:aws:iam::111122223333:role/svc","real_expiration":"2030-01-01T01:00:00Z","credentials":{"Version":1,"AccessKeyId":"ASIAX","SecretAccessKey":"s3cr3t","SessionToken":"tok","Expiration":"2030-01-01T00:46:00Z"}}}}"#,
        )
        .unwrap();
        let at = |s: &str| crate::session::parse_time(s).unwrap();
        let expiration = |now: SystemTime| {
            let out = credentials(dir.path(), "svc", now).unwrap();
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["AccessKeyId"], "ASIAX");
            assert!(v.get("real_expiration").is_none(), "{out}");
            v["Expiration"].as_str().unwrap().to_owned()
        };
        // Before the fixed expiry (a file from an older sidecar, or one
        // that carries no `slide_until`): the fixed one.
        assert_eq!(
            expiration(at("2030-01-01T00:00:00Z")),
            "2030-01-01T00:46:00Z"
        );
        // rolecall did not refresh as planned (stopped, stuck, a clock
        // step): the keys are still valid, so the real expiry, not an
        // expiry in the past that would make the SDK fail.
        assert_eq!(
            expiration(at("2030-01-01T00:46:00Z")),
            "2030-01-01T01:00:00Z"
        );
        assert_eq!(
            expiration(at("2030-01-01T00:59:59Z")),
            "2030-01-01T01:00:00Z"
        );
        let e = credentials(dir.path(), "svc", at("2030-01-01T01:00:00Z")).unwrap_err();
        assert!(
            e.to_string().contains("expired at 2030-01-01T01:00:00Z"),
            "{e}"
        );
    }

    #[test]
    fn prints_an_expiry_slid_from_now_under_the_cap_while_the_file_allows_it() {
        let dir = tempfile::tempdir().unwrap();
        // Written at 00:00 for a session expiring at 01:00: fixed
        // `Expiration` 00:46 (what an older helper prints), cap 00:55.
        std::fs::write(
            dir.path().join(PROCESS_FILE),
            r#"{"profiles":{"svc":{"role_arn":"arn:aws:iam::111122223333:role/svc","real_expiration":"2030-01-01T01:00:00Z","slide_until":"2030-01-01T00:55:00Z","credentials":{"Version":1,"AccessKeyId":"ASIAX","SecretAccessKey":"s3cr3t","SessionToken":"tok","Expiration":"2030-01-01T00:46:00Z"}}}}"#,
        )
        .unwrap();
        let at = |s: &str| crate::session::parse_time(s).unwrap();
        let expiration = |now: SystemTime| {
            let out = credentials(dir.path(), "svc", now).unwrap();
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["AccessKeyId"], "ASIAX");
            assert!(v.get("slide_until").is_none(), "{out}");
            at(v["Expiration"].as_str().unwrap())
        };
        // 17 minutes from now, in whole seconds, whenever the helper runs.
        for now in ["2030-01-01T00:00:00Z", "2030-01-01T00:20:30Z"] {
            assert_eq!(
                expiration(at(now)),
                at(now) + crate::schedule::REPORT_SLIDE,
                "{now}"
            );
        }
        let odd = at("2030-01-01T00:10:00Z") + Duration::from_millis(900);
        assert_eq!(expiration(odd), at("2030-01-01T00:27:00Z"));
        // Past the fixed 00:46 the slide goes on (this helper does not
        // stop at it); within 17 minutes of the cap, the cap.
        assert_eq!(
            expiration(at("2030-01-01T00:45:00Z")),
            at("2030-01-01T00:55:00Z")
        );
        // The cap passed without a refresh: the real expiry.
        assert_eq!(
            expiration(at("2030-01-01T00:55:00Z")),
            at("2030-01-01T01:00:00Z")
        );
        assert!(credentials(dir.path(), "svc", at("2030-01-01T01:00:00Z")).is_err());
    }

    #[test]
    fn a_field_from_a_newer_sidecar_does_not_break_the_helper() {
        // How `slide_until` reaches a helper of the previous version (one
        // copied into an app image): as a field it does not know, ignored;
        // it prints `credentials.Expiration`. This version must do the same
        // for whatever a later sidecar adds.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PROCESS_FILE),
            r#"{"version_2_field":1,"profiles":{"svc":{"role_arn":"r","later":"x","real_expiration":"2030-01-01T01:00:00Z","credentials":{"Version":1,"AccessKeyId":"ASIAX","SecretAccessKey":"s","SessionToken":"t","Expiration":"2030-01-01T00:46:00Z","Later":2}}}}"#,
        )
        .unwrap();
        let at = crate::session::parse_time("2030-01-01T00:00:00Z").unwrap();
        let out = credentials(dir.path(), "svc", at).unwrap();
        assert!(
            out.contains(r#""Expiration":"2030-01-01T00:46:00Z""#),
            "{out}"
        );
    }

    #[test]
    fn escapes_in_the_profile_name_or_the_file_are_not_printed_raw() {
        let dir = tempfile::tempdir().unwrap();
        // JSON's escape: the file holds a raw ESC once decoded.
        write(dir.path(), "2020-01-01T00:00:00Z\\u001b[2J");
        let e = credentials(dir.path(), "x\u{1b}]0;t\u{7}\nforged", SystemTime::now())
            .unwrap_err()
            .to_string();
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.contains("x\\u{1b}]0;t\\u{7}\\u{a}forged"), "{e}");
        let e = credentials(dir.path(), "svc", SystemTime::now())
            .unwrap_err()
            .to_string();
        assert!(!e.chars().any(char::is_control), "{e:?}");
    }

    #[test]
    fn a_fifo_or_a_symlink_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PROCESS_FILE);
        crate::sys::mkfifo(&p, 0o640).unwrap();
        let e = credentials(dir.path(), "svc", SystemTime::now()).unwrap_err();
        assert!(
            matches!(
                e,
                HelperError::Unreadable {
                    source: ReadError::NotRegular,
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_file(&p).unwrap();
        let other = tempfile::tempdir().unwrap();
        write(other.path(), "2030-01-01T00:00:00Z");
        std::os::unix::fs::symlink(other.path().join(PROCESS_FILE), &p).unwrap();
        let e = credentials(dir.path(), "svc", SystemTime::now()).unwrap_err();
        assert!(
            matches!(
                e,
                HelperError::Unreadable {
                    source: ReadError::Symlink,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn the_helper_finds_the_output_dir_beside_itself() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "2030-01-01T00:00:00Z");
        let exe = dir.path().join(HELPER_FILE);
        assert_eq!(default_dir(Some(exe), Some("/elsewhere")), dir.path());
        let other = dir.path().join("bin/rolecall");
        assert_eq!(
            default_dir(Some(other), Some("/elsewhere")),
            PathBuf::from("/elsewhere")
        );
        assert_eq!(default_dir(None, None), PathBuf::from("/aws"));
    }
}
