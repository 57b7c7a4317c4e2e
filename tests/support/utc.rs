//! UTC timestamps as STS and rolecall write them (no chrono).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// (year, month, day) for days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn civil_parts(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `2026-11-29T01:02:03Z` (UTC, whole seconds), as STS formats `Expiration`.
pub fn format_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_secs();
    let (y, m, d, h, mi, s) = civil_parts(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` (what rolecall and
/// STS write); panics on anything else. Fractions are truncated.
pub fn parse_utc(s: &str) -> SystemTime {
    let fail = || -> ! { panic!("not a UTC RFC 3339 timestamp: {s:?}") };
    let rest = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or_else(|| fail());
    let (date, time) = rest.split_once('T').unwrap_or_else(|| fail());
    let time = time.split_once('.').map_or(time, |(whole, frac)| {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            fail()
        }
        whole
    });
    let num = |part: &str, len: usize| -> u64 {
        if part.len() != len || !part.bytes().all(|b| b.is_ascii_digit()) {
            fail()
        }
        part.parse().unwrap_or_else(|_| fail())
    };
    let date: Vec<&str> = date.split('-').collect();
    let time: Vec<&str> = time.split(':').collect();
    if date.len() != 3 || time.len() != 3 {
        fail()
    }
    let (y, m, d) = (num(date[0], 4), num(date[1], 2), num(date[2], 2));
    let (h, mi, sec) = (num(time[0], 2), num(time[1], 2), num(time[2], 2));
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        fail()
    }
    let days = days_from_civil(y as i64, m as u32, d as u32);
    let days = u64::try_from(days).unwrap_or_else(|_| fail());
    UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + sec)
}
